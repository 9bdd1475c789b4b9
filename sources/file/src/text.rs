//! Reading plain text from a byte offset in blocks of whole lines, knowing where each
//! block ends in the file (the resume point of a checkpoint). The framing is the decoder's
//! own ([`Framer`]); this adds the file, and waiting for a line a writer has not finished.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fs::File;
use std::io::Read;

use arrow_buffer::Buffer;
use flowlog_decode::{Frame, Framer, BLOCK_BYTES};

pub(crate) struct TextReader {
    file: File,
    framer: Framer,
    /// Frames of the last read not handed out yet, with the file offset each ends at.
    ready: VecDeque<(Frame, u64)>,
    /// File offset up to which frames were handed out.
    handed: u64,
}

impl TextReader {
    /// Reads `file` from `offset`, where the file's position must already be.
    pub fn new(file: File, offset: u64) -> Self {
        Self {
            file,
            framer: Framer::new(offset),
            ready: VecDeque::new(),
            handed: offset,
        }
    }

    /// File offset up to which lines were handed out.
    pub fn offset(&self) -> u64 {
        self.handed
    }

    /// The next block of whole lines (or an over-long line) and the file offset where it
    /// ends. At the end of the file, a last line without a newline is handed out only when
    /// `at_end` (read once); when following, it waits for the rest of the line.
    pub fn next_block(&mut self, at_end: bool) -> std::io::Result<Option<(Frame, u64)>> {
        loop {
            if let Some((frame, end)) = self.ready.pop_front() {
                self.handed = end;
                return Ok(Some((frame, end)));
            }
            let mut block = Vec::with_capacity(BLOCK_BYTES);
            (&mut self.file)
                .take(BLOCK_BYTES as u64)
                .read_to_end(&mut block)?;
            // `read_to_end` on a `Take` stops at the limit or at the end of the file.
            let eof = block.len() < BLOCK_BYTES;
            let ready = &mut self.ready;
            let fed =
                self.framer
                    .feed(Buffer::from_vec(block), eof && at_end, &mut |frame, end| {
                        ready.push_back((frame, end));
                        Ok::<(), Infallible>(())
                    });
            let Ok(()) = fed;
            if eof && self.ready.is_empty() {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowlog_decode::DeadLetter;
    use std::io::Write;

    #[test]
    fn blocks_end_after_newlines_and_a_partial_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        std::fs::write(&path, "a b\nc d\npart").unwrap();
        let mut reader = TextReader::new(File::open(&path).unwrap(), 0);
        let lines = |b: &[u8]| Frame::Lines(Buffer::from(b.to_vec()));
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
            Some((Frame::Lines(Buffer::from(b"a b\n".to_vec())), 4))
        );
        // Following: the long line has not ended, and only its head is held.
        assert_eq!(reader.next_block(false).unwrap(), None);
        assert!(reader.framer.held() <= DeadLetter::MAX_RAW);
        let mut append = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        append.write_all(&long).unwrap();
        append.write_all(b"\nc d\n").unwrap();
        let (block, end) = reader.next_block(false).unwrap().unwrap();
        let head = long[..DeadLetter::MAX_RAW].to_vec();
        let length = 2 * long.len() as u64;
        assert_eq!(block, Frame::LongLine { head, length });
        assert_eq!(end, 4 + length + 1);
        assert_eq!(
            reader.next_block(false).unwrap(),
            Some((Frame::Lines(Buffer::from(b"c d\n".to_vec())), end + 4))
        );
    }
}
