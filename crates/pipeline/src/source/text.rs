//! Reading plain text from a byte offset in blocks of whole lines, knowing where each
//! block ends in the file (the resume point of a checkpoint).

use std::fs::File;
use std::io::Read;

/// Target size of a block (what the decoder's own framing uses).
const BLOCK_BYTES: usize = 1 << 20;
/// A "line" this long without a newline is handed over as it is (the decoder
/// dead-letters it) rather than buffered without limit.
const MAX_LINE_BYTES: usize = 16 << 20;

pub(crate) struct TextReader {
    file: File,
    /// File offset of `carry[0]`.
    start: u64,
    carry: Vec<u8>,
}

impl TextReader {
    /// Reads `file` from `offset`, where the file's position must already be.
    pub fn new(file: File, offset: u64) -> Self {
        Self {
            file,
            start: offset,
            carry: Vec::new(),
        }
    }

    /// File offset up to which lines were handed out.
    pub fn offset(&self) -> u64 {
        self.start
    }

    /// The next block of whole lines and the file offset where it ends. At the end of
    /// the file, a last line without a newline is handed out only when `at_end` (read
    /// once); when following, it waits for the rest of the line.
    pub fn next_block(&mut self, at_end: bool) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        loop {
            let before = self.carry.len();
            (&mut self.file)
                .take(BLOCK_BYTES as u64)
                .read_to_end(&mut self.carry)?;
            let eof = self.carry.len() - before < BLOCK_BYTES;
            let cut = match memchr_last(&self.carry) {
                Some(p) if !eof || !at_end => p + 1,
                _ if eof && at_end => self.carry.len(),
                None if self.carry.len() >= MAX_LINE_BYTES => self.carry.len(),
                _ if eof => 0,
                _ => continue,
            };
            if cut == 0 {
                return Ok(None);
            }
            let rest = self.carry.split_off(cut);
            let block = std::mem::replace(&mut self.carry, rest);
            self.start += block.len() as u64;
            return Ok(Some((block, self.start)));
        }
    }
}

fn memchr_last(bytes: &[u8]) -> Option<usize> {
    bytes.iter().rposition(|&b| b == b'\n')
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
        let (block, end) = reader.next_block(false).unwrap().unwrap();
        assert_eq!((block.as_slice(), end), (&b"a b\nc d\n"[..], 8));
        assert!(reader.next_block(false).unwrap().is_none());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"ial\nnext")
            .unwrap();
        let (block, end) = reader.next_block(false).unwrap().unwrap();
        assert_eq!((block.as_slice(), end), (&b"partial\n"[..], 16));
        let (block, end) = reader.next_block(true).unwrap().unwrap();
        assert_eq!((block.as_slice(), end), (&b"next"[..], 20));
        assert!(reader.next_block(true).unwrap().is_none());
    }
}
