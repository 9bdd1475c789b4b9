//! Reading plain text from a byte offset in blocks of whole lines, knowing where each
//! block ends in the file (the resume point of a checkpoint).

use std::fs::File;
use std::io::Read;

use flowlog_decode::{DeadLetter, MAX_LINE_BYTES};

/// Target size of a block (what the decoder's own framing uses).
const BLOCK_BYTES: usize = 1 << 20;

/// What [`TextReader::next_block`] hands out.
#[derive(Debug, PartialEq)]
pub(crate) enum Block {
    /// Whole lines.
    Lines(Vec<u8>),
    /// A line longer than [`MAX_LINE_BYTES`], skipped: its first bytes and its length.
    LongLine { head: Vec<u8>, length: u64 },
}

pub(crate) struct TextReader {
    file: File,
    /// File offset of `carry[0]` (or of the line being skipped).
    start: u64,
    /// The start of a line that has not ended yet.
    carry: Vec<u8>,
    /// A line longer than the limit being skipped: its head and length so far.
    skipping: Option<(Vec<u8>, u64)>,
}

impl TextReader {
    /// Reads `file` from `offset`, where the file's position must already be.
    pub fn new(file: File, offset: u64) -> Self {
        Self {
            file,
            start: offset,
            carry: Vec::new(),
            skipping: None,
        }
    }

    /// File offset up to which lines were handed out.
    pub fn offset(&self) -> u64 {
        self.start
    }

    /// The next block of whole lines (or an over-long line) and the file offset where it
    /// ends. At the end of the file, a last line without a newline is handed out only when
    /// `at_end` (read once); when following, it waits for the rest of the line.
    pub fn next_block(&mut self, at_end: bool) -> std::io::Result<Option<(Block, u64)>> {
        loop {
            let before = self.carry.len();
            (&mut self.file)
                .take(BLOCK_BYTES as u64)
                .read_to_end(&mut self.carry)?;
            let eof = self.carry.len() - before < BLOCK_BYTES;
            if let Some((_, length)) = &mut self.skipping {
                let end = memchr::memchr(b'\n', &self.carry);
                let skipped = end.unwrap_or(self.carry.len());
                *length += skipped as u64;
                self.carry.drain(..end.map_or(skipped, |p| p + 1));
                if end.is_none() && !(eof && at_end) {
                    if eof {
                        return Ok(None);
                    }
                    continue;
                }
                let (head, length) = self.skipping.take().expect("skipping");
                self.start += length + end.map_or(0, |_| 1);
                return Ok(Some((Block::LongLine { head, length }, self.start)));
            }
            let cut = match memchr::memrchr(b'\n', &self.carry) {
                Some(p) if !eof || !at_end => p + 1,
                _ if eof && at_end => self.carry.len(),
                None if self.carry.len() > MAX_LINE_BYTES => {
                    // Not a record: keep what a dead letter shows, skip the rest.
                    let head = self.carry[..DeadLetter::MAX_RAW].to_vec();
                    self.skipping = Some((head, self.carry.len() as u64));
                    self.carry.clear();
                    continue;
                }
                _ if eof => 0,
                _ => continue,
            };
            if cut == 0 {
                return Ok(None);
            }
            let rest = self.carry.split_off(cut);
            let block = std::mem::replace(&mut self.carry, rest);
            self.start += block.len() as u64;
            return Ok(Some((Block::Lines(block), self.start)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn blocks_end_after_newlines_and_a_partial_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        std::fs::write(&path, "a b\nc d\npart").unwrap();
        let mut reader = TextReader::new(File::open(&path).unwrap(), 0);
        let lines = |b: &[u8]| Block::Lines(b.to_vec());
        let (block, end) = reader.next_block(false).unwrap().unwrap();
        assert_eq!((block, end), (lines(b"a b\nc d\n"), 8));
        assert!(reader.next_block(false).unwrap().is_none());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"ial\nnext")
            .unwrap();
        let (block, end) = reader.next_block(false).unwrap().unwrap();
        assert_eq!((block, end), (lines(b"partial\n"), 16));
        let (block, end) = reader.next_block(true).unwrap().unwrap();
        assert_eq!((block, end), (lines(b"next"), 20));
        assert!(reader.next_block(true).unwrap().is_none());
    }

    #[test]
    fn a_line_longer_than_the_limit_is_skipped_while_the_file_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let long = vec![b'x'; 3 << 20];
        std::fs::write(&path, [&b"a b\n"[..], &long].concat()).unwrap();
        let mut reader = TextReader::new(File::open(&path).unwrap(), 0);
        assert_eq!(
            reader.next_block(false).unwrap(),
            Some((Block::Lines(b"a b\n".to_vec()), 4))
        );
        // Following: the long line has not ended, and only its head is held.
        assert_eq!(reader.next_block(false).unwrap(), None);
        assert!(reader.carry.is_empty());
        let mut append = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        append.write_all(&long).unwrap();
        append.write_all(b"\nc d\n").unwrap();
        let (block, end) = reader.next_block(false).unwrap().unwrap();
        let head = long[..DeadLetter::MAX_RAW].to_vec();
        let length = 2 * long.len() as u64;
        assert_eq!(block, Block::LongLine { head, length });
        assert_eq!(end, 4 + length + 1);
        assert_eq!(
            reader.next_block(false).unwrap(),
            Some((Block::Lines(b"c d\n".to_vec()), end + 4))
        );
    }
}
