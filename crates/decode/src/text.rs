//! Framing a byte stream into blocks of whole lines for the line decoder.

use std::io::Read;

use arrow_buffer::Buffer;

use crate::line::LineDecoder;
use crate::{DeadLetter, DecodeError, RecordSink, Streaming};

/// Target size of a block: large enough to amortise per-block work, small enough that a
/// batch's memory stays in the low megabytes.
pub const BLOCK_BYTES: usize = 1 << 20;

/// Longest line decoded. Flow-log lines are under 2 KB; a longer "line" is not one, and
/// is dead-lettered (its head and its length) instead of buffered: the framing below never
/// holds more than this much of a line that has not ended.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// The most a streaming read asks for at once (what a Linux pipe holds).
const READ_BYTES: usize = 64 << 10;

/// Size of the windows a plain-text file is mapped in. Each window is unmapped once the
/// batches pointing into it are dropped, so memory stays bounded for any file size.
pub(crate) const WINDOW_BYTES: u64 = 16 << 20;

/// What a [`Framer`] hands out.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// Whole lines; the last line of the input may lack its newline.
    Lines(Buffer),
    /// A line longer than [`MAX_LINE_BYTES`], skipped: its first bytes (as many as a dead
    /// letter keeps) and its length without the newline.
    LongLine { head: Vec<u8>, length: u64 },
}

impl Frame {
    /// How many bytes of input the frame stands for, its newlines aside.
    pub fn input_bytes(&self) -> u64 {
        match self {
            Frame::Lines(block) => block.len() as u64,
            Frame::LongLine { length, .. } => *length,
        }
    }
}

/// Cuts a stream of chunks (mapped windows, blocks read from a file or a pipe) into blocks
/// of whole lines: zero-copy slices of a chunk, except the line that straddles two chunks,
/// which is copied. Lines longer than [`MAX_LINE_BYTES`] are handed out as
/// [`Frame::LongLine`] (their first bytes and length) and skipped, however long they are,
/// so the framer never holds more than a line's limit.
///
/// Each frame comes with the input offset where it ends (the resume point of a file being
/// read again). The decoder's own text paths and the file source's growing files both
/// frame through this.
pub struct Framer {
    /// Input offset up to which frames were handed out.
    offset: u64,
    /// The start of a line that continues in the next chunk (shorter than the limit).
    carry: Vec<u8>,
    /// An over-long line being skipped.
    skipping: Option<LongLine>,
}

struct LongLine {
    head: Vec<u8>,
    length: u64,
}

impl Framer {
    /// A framer for input that starts at `offset`.
    pub fn new(offset: u64) -> Self {
        Self {
            offset,
            carry: Vec::new(),
            skipping: None,
        }
    }

    /// Input offset up to which frames were handed out.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes held for a line that has not ended (its start, or an over-long line's head).
    pub fn held(&self) -> usize {
        self.carry.len() + self.skipping.as_ref().map_or(0, |l| l.head.len())
    }

    /// Frames the next chunk of the input; `last` when the input ends with it (a line
    /// without a newline is then handed out). Without `last`, the end of a line that has
    /// not ended waits for the next chunk: a file that grows, or a pipe.
    pub fn feed<E>(
        &mut self,
        chunk: Buffer,
        last: bool,
        out: &mut impl FnMut(Frame, u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let bytes = chunk.as_slice();
        let mut start = 0;
        if let Some(long) = &mut self.skipping {
            match memchr::memchr(b'\n', bytes) {
                Some(p) => {
                    long.length += p as u64;
                    start = p + 1;
                    self.end_long_line(true, out)?;
                }
                None => {
                    long.length += bytes.len() as u64;
                    return match last {
                        true => self.end_long_line(false, out),
                        false => Ok(()),
                    };
                }
            }
        }
        if !self.carry.is_empty() {
            // Finish the line the previous chunk ended in.
            let found = memchr::memchr(b'\n', &bytes[start..]).map(|p| start + p);
            let end = found.unwrap_or(bytes.len());
            let length = self.carry.len() + end - start;
            if length > MAX_LINE_BYTES {
                let carried = std::mem::take(&mut self.carry);
                self.start_long_line(carried, &bytes[start..end], length);
                if found.is_none() && !last {
                    return Ok(());
                }
                self.end_long_line(found.is_some(), out)?;
                start = (end + 1).min(bytes.len());
            } else if found.is_some() || last {
                let through = (end + 1).min(bytes.len());
                self.carry.extend_from_slice(&bytes[start..through]);
                start = through;
                let block = Buffer::from_vec(std::mem::take(&mut self.carry));
                self.lines(block, out)?;
            } else {
                self.carry.extend_from_slice(&bytes[start..]);
                return Ok(());
            }
        }
        while start < bytes.len() {
            let limit = start + BLOCK_BYTES;
            if limit >= bytes.len() {
                let cut = match last {
                    true => bytes.len(),
                    false => {
                        memchr::memrchr(b'\n', &bytes[start..]).map_or(start, |p| start + p + 1)
                    }
                };
                if cut > start {
                    self.lines(chunk.slice_with_length(start, cut - start), out)?;
                }
                let tail = &bytes[cut..];
                if tail.len() > MAX_LINE_BYTES {
                    self.start_long_line(Vec::new(), tail, tail.len());
                } else {
                    self.carry.extend_from_slice(tail);
                }
                return Ok(());
            }
            match memchr::memrchr(b'\n', &bytes[start..limit]) {
                Some(p) => {
                    let cut = start + p + 1;
                    self.lines(chunk.slice_with_length(start, cut - start), out)?;
                    start = cut;
                }
                // A line longer than a block, so longer than any line decoded.
                None => match memchr::memchr(b'\n', &bytes[limit..]) {
                    Some(p) => {
                        let end = limit + p;
                        self.start_long_line(Vec::new(), &bytes[start..end], end - start);
                        self.end_long_line(true, out)?;
                        start = end + 1;
                    }
                    None => {
                        let rest = &bytes[start..];
                        self.start_long_line(Vec::new(), rest, rest.len());
                        if last {
                            self.end_long_line(false, out)?;
                        }
                        return Ok(());
                    }
                },
            }
        }
        Ok(())
    }

    fn lines<E>(
        &mut self,
        block: Buffer,
        out: &mut impl FnMut(Frame, u64) -> Result<(), E>,
    ) -> Result<(), E> {
        self.offset += block.len() as u64;
        out(Frame::Lines(block), self.offset)
    }

    /// Starts skipping a line whose first bytes are `carried` then `more`, `length` in all
    /// so far; only the head a dead letter keeps is copied.
    fn start_long_line(&mut self, mut carried: Vec<u8>, more: &[u8], length: usize) {
        carried.truncate(DeadLetter::MAX_RAW);
        let room = DeadLetter::MAX_RAW - carried.len();
        carried.extend_from_slice(&more[..more.len().min(room)]);
        self.skipping = Some(LongLine {
            head: carried,
            length: length as u64,
        });
    }

    /// Hands out the line being skipped, which ended with a newline or with the input.
    fn end_long_line<E>(
        &mut self,
        newline: bool,
        out: &mut impl FnMut(Frame, u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let LongLine { head, length } = self.skipping.take().expect("a line is being skipped");
        self.offset += length + u64::from(newline);
        out(Frame::LongLine { head, length }, self.offset)
    }
}

/// Frames chunks and decodes each frame, counting lines from `first_line`.
struct DecodeFrames<'a> {
    framer: Framer,
    next_line: u64,
    decoder: &'a mut LineDecoder,
    sink: &'a mut dyn RecordSink,
}

impl<'a> DecodeFrames<'a> {
    fn new(first_line: u64, decoder: &'a mut LineDecoder, sink: &'a mut dyn RecordSink) -> Self {
        Self {
            framer: Framer::new(0),
            next_line: first_line,
            decoder,
            sink,
        }
    }

    fn feed(&mut self, chunk: Buffer, last: bool) -> Result<(), DecodeError> {
        let Self {
            framer,
            next_line,
            decoder,
            sink,
        } = self;
        framer.feed(chunk, last, &mut |frame, _end| {
            *next_line += decoder.decode_frame(frame, *next_line, *sink)?;
            Ok(())
        })
    }
}

/// Decodes a plain-text file through memory-mapped windows (see [`Framer`]). `map(offset,
/// len)` maps part of the file.
pub(crate) fn decode_mapped(
    file_len: u64,
    mut map: impl FnMut(u64, usize) -> std::io::Result<Buffer>,
    decoder: &mut LineDecoder,
    sink: &mut dyn RecordSink,
) -> Result<u64, DecodeError> {
    let source = decoder.source().clone();
    let mut frames = DecodeFrames::new(1, decoder, sink);
    let mut offset = 0u64;
    while offset < file_len {
        let len = (file_len - offset).min(WINDOW_BYTES) as usize;
        let window = map(offset, len).map_err(|e| DecodeError::io(&source, e))?;
        offset += len as u64;
        frames.feed(window, offset == file_len)?;
    }
    Ok(frames.next_line - 1)
}

/// Reads `reader` to the end in blocks, framed into lines (see [`Framer`]). Memory stays
/// bounded by a couple of blocks whatever the input. With `streaming`, a block is handed on
/// as soon as it is due rather than full, and what was decoded is emitted.
pub(crate) fn decode_text(
    mut reader: impl Read,
    decoder: &mut LineDecoder,
    first_line: u64,
    streaming: Option<&Streaming>,
    sink: &mut dyn RecordSink,
) -> Result<u64, DecodeError> {
    let source = decoder.source().clone();
    let io = |e| DecodeError::io(&source, e);
    let mut frames = DecodeFrames::new(first_line, decoder, sink);
    loop {
        let mut buf = Vec::with_capacity(BLOCK_BYTES);
        let last = match streaming {
            // `read_to_end` on a `Take` stops at the limit or at the end of the input, so
            // falling short of a block means the input has ended.
            None => {
                let read = reader
                    .by_ref()
                    .take(BLOCK_BYTES as u64)
                    .read_to_end(&mut buf);
                read.map_err(io)?;
                buf.len() < BLOCK_BYTES
            }
            Some(streaming) => read_until_due(&mut reader, &mut buf, streaming).map_err(io)?,
        };
        frames.feed(Buffer::from_vec(buf), last)?;
        if last {
            return Ok(frames.next_line - first_line);
        }
        if streaming.is_some() {
            frames.decoder.flush(frames.sink)?;
            frames.sink.idle().map_err(DecodeError::Sink)?;
        }
    }
}

/// Reads into `buf` until a block is full or it is due (see [`Streaming`]); true at the
/// end of the input.
fn read_until_due(
    reader: &mut impl Read,
    buf: &mut Vec<u8>,
    streaming: &Streaming,
) -> std::io::Result<bool> {
    let mut since = None;
    loop {
        // Straight into the block: a read returns what the pipe holds (64 KiB at most on
        // Linux), so the block grows read by read.
        let start = buf.len();
        buf.resize((start + READ_BYTES).min(BLOCK_BYTES), 0);
        let read = reader.read(&mut buf[start..]);
        buf.truncate(start + read.as_ref().map_or(0, |&n| n));
        match read {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // Only once a line has ended is there anything to emit; the bytes before this read
        // were looked at already.
        if since.is_none() && memchr::memchr(b'\n', &buf[start..]).is_some() {
            since = Some(std::time::Instant::now());
        }
        if buf.len() >= BLOCK_BYTES || (since.is_some() && streaming.due(since)) {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeadLetter, SinkError};
    use flowlog_model::{FlowBatch, SourceId};

    #[derive(Default, Debug, PartialEq)]
    struct Collect {
        lines: Vec<u64>,
        dead: Vec<(u64, Option<u64>, usize)>,
    }

    impl RecordSink for Collect {
        fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
            self.lines.extend(batch.line_numbers.iter());
            Ok(())
        }
        fn dead_letter(&mut self, l: DeadLetter) -> Result<(), SinkError> {
            self.dead.push((l.line, l.raw_length, l.raw.len()));
            Ok(())
        }
    }

    /// Frames `input` fed in chunks of `size` bytes; checks that no more than a line's
    /// limit is ever held between chunks.
    fn frame(input: &[u8], size: usize) -> Collect {
        let mut decoder = LineDecoder::new(SourceId::new("t"), None, 4);
        let mut sink = Collect::default();
        let mut frames = DecodeFrames::new(1, &mut decoder, &mut sink);
        let chunks: Vec<&[u8]> = input.chunks(size.max(1)).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            frames.feed(Buffer::from_vec(chunk.to_vec()), last).unwrap();
            let framer = &frames.framer;
            assert!(framer.carry.len() <= MAX_LINE_BYTES);
            assert!(framer
                .skipping
                .as_ref()
                .is_none_or(|l| l.head.len() <= DeadLetter::MAX_RAW));
        }
        if chunks.is_empty() {
            let empty = Buffer::from_vec(Vec::<u8>::new());
            frames.feed(empty, true).unwrap();
        }
        // Offsets account for every byte of the input.
        assert_eq!(frames.framer.offset(), input.len() as u64);
        decoder.flush(&mut sink).unwrap();
        sink
    }

    #[test]
    fn framing_does_not_depend_on_where_chunks_end() {
        let good = b"2 123456789010 eni-1 10.0.0.1 10.0.0.2 443 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n";
        let long = |n: usize| [vec![b'7'; n], b"\n".to_vec()].concat();
        let mut input = Vec::new();
        for part in [
            &good[..],
            &long(MAX_LINE_BYTES), // the longest line decoded (a dead letter: one field)
            good,
            &long(MAX_LINE_BYTES + 1), // the shortest skipped
            good,
            good,
            &long(3 * BLOCK_BYTES / 2), // longer than a block
            b"\n",
            good,
            &long(70_000)[..70_000], // the last line, without a newline
        ] {
            input.extend_from_slice(part);
        }
        let whole = frame(&input, input.len());
        assert_eq!(whole.lines, [1, 3, 5, 6, 9]);
        let max = DeadLetter::MAX_RAW;
        let skipped = |line, len: usize| (line, Some(len as u64), max);
        assert_eq!(
            whole.dead,
            [
                (2, Some(MAX_LINE_BYTES as u64), max),
                skipped(4, MAX_LINE_BYTES + 1),
                skipped(7, 3 * BLOCK_BYTES / 2),
                skipped(10, 70_000),
            ]
        );
        for size in [1 << 20, 65_537, 65_535, 4096, 1000, 89, 90, 91] {
            assert_eq!(frame(&input, size), whole, "chunks of {size}");
        }
        assert_eq!(frame(b"", 1), Collect::default());
    }
}
