//! Finding the separators of a block of flow-log lines, sixteen bytes at a time.
//!
//! A byte-at-a-time loop spends compares and a branch on every byte, and a `memchr` call
//! per line costs more than the line. Here each 16-byte chunk yields a mask of its spaces,
//! tabs and newlines, and work is done per separator: one pass over the block finds both
//! the tokens and the line ends.

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// High bit of each byte of `x` set exactly where the byte is below `k` (1 to 0x80).
///
/// `(x & 0x7f) + (0x80 - k)` reaches 0x80 exactly when a byte's low seven bits are `k` or
/// more, and cannot carry into the next byte; OR-ing `x` adds bytes whose own high bit is
/// set. What is left clear is a byte below `k`.
#[inline(always)]
fn below(x: u64, k: u8) -> u64 {
    !(((x & LOW7) + ONES * (0x80 - k as u64)) | x) & HIGH
}

/// High bit of each byte of `x` set exactly where the byte is below 0x21: space, tab, CR,
/// LF and the other control characters, none of which occur inside a flow-log value.
#[inline(always)]
fn separators(x: u64) -> u64 {
    below(x, 0x21)
}

/// Bit i set where byte i of `chunk` is a separator (below 0x21), and where it is `\n`.
#[inline(always)]
fn masks(chunk: &[u8; 16]) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    return masks_sse2(chunk);
    #[cfg(not(target_arch = "x86_64"))]
    return masks_swar(chunk);
}

/// [`masks`] with SSE2, which every x86_64 CPU has: one compare for sixteen bytes, and
/// the byte mask straight to bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn masks_sse2(chunk: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is enabled on every x86_64 target, so the intrinsics are available;
    // the load reads exactly the sixteen bytes of `chunk` (unaligned).
    unsafe {
        let x = _mm_loadu_si128(chunk.as_ptr().cast());
        // Unsigned "below 0x21" is "max(b, 0x20) == 0x20".
        let space = _mm_set1_epi8(0x20);
        let seps = _mm_cmpeq_epi8(_mm_max_epu8(x, space), space);
        let newlines = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\n' as i8));
        (
            _mm_movemask_epi8(seps) as u16 as u32,
            _mm_movemask_epi8(newlines) as u16 as u32,
        )
    }
}

/// [`masks`] eight bytes at a time in general-purpose registers, for other CPUs.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn masks_swar(chunk: &[u8; 16]) -> (u32, u32) {
    // The high bit of each byte, moved to one bit per byte: a multiply by a constant with
    // one bit per byte shifts each to its place in the top byte, with no carries.
    let bits = |high: u64| ((high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32;
    let word = |i: usize| u64::from_le_bytes(chunk[i..i + 8].try_into().expect("8 bytes"));
    // Bytes equal to `\n` are the zero bytes of x ^ "\n\n..".
    let newlines = |x: u64| below(x ^ (ONES * b'\n' as u64), 1);
    let (low, high) = (word(0), word(8));
    (
        bits(separators(low)) | bits(separators(high)) << 8,
        bits(newlines(low)) | bits(newlines(high)) << 8,
    )
}

/// One line of a block: its byte range (without the `\n`) and its tokens.
pub(crate) struct Line<'s> {
    pub start: usize,
    pub end: usize,
    /// `(start, end)` offsets of the tokens in the block.
    pub tokens: &'s [(u32, u32)],
}

/// Calls `each_line` for every line of `block` with its tokens, split at runs of spaces,
/// tabs, carriage returns (so CRLF line ends leave no trace) and other control characters;
/// no empty tokens. Stops at the first error `each_line` returns.
#[inline]
pub(crate) fn for_each_line<E>(
    block: &[u8],
    spans: &mut Vec<(u32, u32)>,
    mut each_line: impl FnMut(Line<'_>) -> Result<(), E>,
) -> Result<(), E> {
    spans.clear();
    let mut token_start = 0usize;
    let mut line_start = 0usize;
    let mut separator = |at: usize, newline: bool, spans: &mut Vec<(u32, u32)>| {
        if at > token_start {
            spans.push((token_start as u32, at as u32));
        }
        token_start = at + 1;
        newline
    };
    // Work per 16-byte chunk, for the whole chunks and then the last, partial one padded
    // with a byte that is not a separator. (Padding every chunk in the loop would cost a
    // `memcpy` call each.)
    let mut each_chunk = |chunk_at: usize, chunk: &[u8; 16]| -> Result<(), E> {
        let (mut seps, newlines) = masks(chunk);
        while seps != 0 {
            let i = seps.trailing_zeros();
            let at = chunk_at + i as usize;
            if separator(at, newlines >> i & 1 == 1, spans) {
                each_line(Line {
                    start: line_start,
                    end: at,
                    tokens: spans,
                })?;
                spans.clear();
                line_start = at + 1;
            }
            seps &= seps - 1;
        }
        Ok(())
    };
    let chunks = block.chunks_exact(16);
    let mut tail = [b'a'; 16];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    let whole = chunks.len();
    for (c, chunk) in chunks.enumerate() {
        each_chunk(c * 16, chunk.try_into().expect("chunks of sixteen"))?;
    }
    each_chunk(whole * 16, &tail)?;
    if block.len() > line_start {
        separator(block.len(), true, spans);
        each_line(Line {
            start: line_start,
            end: block.len(),
            tokens: spans,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(block: &str) -> Vec<(String, Vec<&str>)> {
        let mut spans = Vec::new();
        let mut out = Vec::new();
        for_each_line::<()>(block.as_bytes(), &mut spans, |line| {
            let tokens = line
                .tokens
                .iter()
                .map(|&(a, b)| &block[a as usize..b as usize])
                .collect();
            out.push((block[line.start..line.end].to_string(), tokens));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn splits_lines_and_tokens_like_the_std_library() {
        for block in [
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA\n",
            "  leading and trailing  \n\nsecond\tline  x\r\nlast-without-newline",
            "a\tb \t c",
            "ctl\x01char\x1fsplit \x7f kept \u{a0} kept",
            "",
            "\n\n\n",
            "x",
            "12345678 12345678\n1234567\n 12345678 ",
            "tgw-attach-3e0bbb28e9ac7e3d8  123456789123  123456789123 subnet-3fbc536e360c36caб\n",
        ] {
            let expected: Vec<(String, Vec<&str>)> = block
                .split_inclusive('\n')
                .map(|l| {
                    let l = l.strip_suffix('\n').unwrap_or(l);
                    let tokens = l
                        .split(|c: char| c < '!')
                        .filter(|t| !t.is_empty())
                        .collect();
                    (l.to_string(), tokens)
                })
                .collect();
            assert_eq!(lines(block), expected, "{block:?}");
        }
    }

    #[test]
    fn chunk_masks_are_exact() {
        let naive = |chunk: &[u8; 16]| {
            let bit = |i: usize, yes: bool| (yes as u32) << i;
            let seps = (0..16).map(|i| bit(i, chunk[i] < 0x21)).sum::<u32>();
            let newlines = (0..16).map(|i| bit(i, chunk[i] == b'\n')).sum::<u32>();
            (seps, newlines)
        };
        for b in 0u8..=255 {
            for at in 0..16 {
                let mut chunk = *b"a b\nc\td\re\x00f\x7f\xa0\x80\n!";
                chunk[at] = b;
                assert_eq!(masks(&chunk), naive(&chunk), "byte {b:#x} at {at}");
                assert_eq!(masks_swar(&chunk), naive(&chunk), "byte {b:#x} at {at}");
            }
        }
    }

    #[test]
    fn separator_mask_is_exact() {
        for b in 0u8..=255 {
            let x = u64::from_le_bytes([b, 0x20, 0x21, b, 0x00, 0xa0, b, 0x80]);
            let mask = separators(x);
            for (i, &byte) in x.to_le_bytes().iter().enumerate() {
                assert_eq!(
                    mask >> (8 * i + 7) & 1 == 1,
                    byte < 0x21,
                    "byte {byte:#x} at {i}"
                );
            }
        }
    }
}
