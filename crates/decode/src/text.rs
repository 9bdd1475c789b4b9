//! Framing a byte stream into blocks of whole lines for the line decoder.

use std::io::Read;

use arrow_buffer::Buffer;

use crate::line::{LineDecoder, LineNumbers};
use crate::{DecodeError, RecordSink};

/// Target size of a block: large enough to amortise per-block work, small enough that a
/// batch's memory stays in the low megabytes.
pub(crate) const BLOCK_BYTES: usize = 1 << 20;

/// Longest line accepted. Flow-log lines are a few hundred bytes; anything this long is
/// not one, and is dead-lettered (truncated) instead of buffered without limit.
pub(crate) const MAX_LINE_BYTES: usize = 16 << 20;

/// Size of the windows a plain-text file is mapped in. Each window is unmapped once the
/// batches pointing into it are dropped, so memory stays bounded for any file size.
pub(crate) const WINDOW_BYTES: u64 = 16 << 20;

/// Decodes a plain-text file through memory-mapped windows: blocks are zero-copy slices of
/// a window, cut after the last newline before [`BLOCK_BYTES`]; the line that straddles
/// two windows is copied. `map(offset, len)` maps part of the file.
pub(crate) fn decode_mapped(
    file_len: u64,
    mut map: impl FnMut(u64, usize) -> std::io::Result<Buffer>,
    decoder: &mut LineDecoder,
    sink: &mut dyn RecordSink,
) -> Result<u64, DecodeError> {
    let mut next_line = 1;
    let mut carry: Vec<u8> = Vec::new();
    let mut offset = 0u64;
    while offset < file_len {
        let len = (file_len - offset).min(WINDOW_BYTES) as usize;
        let window = map(offset, len).map_err(|e| DecodeError::io(decoder.source(), e))?;
        offset += len as u64;
        let last_window = offset == file_len;
        let bytes = window.as_slice();
        let mut start = 0;
        if !carry.is_empty() {
            // Finish the line the previous window ended in.
            match memchr::memchr(b'\n', bytes) {
                Some(p) => {
                    carry.extend_from_slice(&bytes[..=p]);
                    start = p + 1;
                }
                None if !last_window => {
                    carry.extend_from_slice(bytes);
                    continue;
                }
                None => {
                    carry.extend_from_slice(bytes);
                    start = bytes.len();
                }
            }
            let block = Buffer::from_vec(std::mem::take(&mut carry));
            next_line += decoder.decode_block(block, LineNumbers::From(next_line), sink)?;
        }
        let end = if last_window {
            bytes.len()
        } else {
            memchr::memrchr(b'\n', &bytes[start..]).map_or(start, |p| start + p + 1)
        };
        carry.extend_from_slice(&bytes[end..]);
        while start < end {
            let limit = (start + BLOCK_BYTES).min(end);
            let cut = if limit == end {
                end
            } else {
                match memchr::memrchr(b'\n', &bytes[start..limit]) {
                    Some(p) => start + p + 1,
                    // A line longer than a block: the block ends with it.
                    None => {
                        memchr::memchr(b'\n', &bytes[limit..end]).map_or(end, |p| limit + p + 1)
                    }
                }
            };
            let block = window.slice_with_length(start, cut - start);
            next_line += decoder.decode_block(block, LineNumbers::From(next_line), sink)?;
            start = cut;
        }
    }
    if !carry.is_empty() {
        next_line +=
            decoder.decode_block(Buffer::from_vec(carry), LineNumbers::From(next_line), sink)?;
    }
    Ok(next_line - 1)
}

/// Reads `reader` to the end, handing the decoder blocks of whole lines. Memory stays
/// bounded by a couple of blocks whatever the input size.
pub(crate) fn decode_text(
    mut reader: impl Read,
    decoder: &mut LineDecoder,
    first_line: u64,
    sink: &mut dyn RecordSink,
) -> Result<u64, DecodeError> {
    let mut next_line = first_line;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut buf = Vec::with_capacity(BLOCK_BYTES + carry.len());
        buf.append(&mut carry);
        let eof = fill(&mut reader, &mut buf, BLOCK_BYTES, decoder)?;
        let cut = if eof {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf) {
                Some(p) => p + 1,
                None if buf.len() >= MAX_LINE_BYTES => {
                    next_line = skip_long_line(&mut reader, buf, next_line, decoder, sink)?;
                    continue;
                }
                None => {
                    // One line longer than a block: keep reading.
                    carry = buf;
                    continue;
                }
            }
        };
        carry = buf.split_off(cut);
        if !buf.is_empty() {
            next_line +=
                decoder.decode_block(Buffer::from_vec(buf), LineNumbers::From(next_line), sink)?;
        }
        if eof {
            return Ok(next_line - first_line);
        }
    }
}

/// Reads until `buf` has grown by `want` bytes or the input ends; true at the end.
fn fill(
    reader: &mut impl Read,
    buf: &mut Vec<u8>,
    want: usize,
    decoder: &LineDecoder,
) -> Result<bool, DecodeError> {
    let target = buf.len() + want;
    // `read_to_end` on a `Take` stops at the limit or at the end of the input, so falling
    // short of the target means the input has ended.
    reader
        .by_ref()
        .take(want as u64)
        .read_to_end(buf)
        .map_err(|e| DecodeError::io(decoder.source(), e))?;
    Ok(buf.len() < target)
}

/// Dead-letters an over-long line (its first kilobytes) and skips to the next line.
fn skip_long_line(
    reader: &mut impl Read,
    head: Vec<u8>,
    line: u64,
    decoder: &mut LineDecoder,
    sink: &mut dyn RecordSink,
) -> Result<u64, DecodeError> {
    let reason = format!("line longer than {} MiB", MAX_LINE_BYTES >> 20);
    decoder.dead_letter(line, reason, &head[..4096], sink)?;
    // Unbuffered on purpose: a buffer would swallow what follows the line. This path is
    // only taken for inputs that are not flow logs.
    let mut byte = [0u8; 1];
    loop {
        match reader.read(&mut byte) {
            Ok(0) => return Ok(line + 1),
            Ok(_) if byte[0] == b'\n' => return Ok(line + 1),
            Ok(_) => {}
            Err(e) => return Err(DecodeError::io(decoder.source(), e)),
        }
    }
}
