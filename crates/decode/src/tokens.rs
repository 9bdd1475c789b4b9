//! Finding the separators of a block of flow-log lines, eight bytes at a time.
//!
//! A byte-at-a-time loop spends compares and a branch on every byte, and a `memchr` call
//! per line costs more than the line. Here each 8-byte word yields a mask of its spaces,
//! tabs and newlines, and work is done per separator: one pass over the block finds both
//! the tokens and the line ends.

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// High bit of each byte of `x` set exactly where the byte is below 0x21: space, tab, CR,
/// LF and the other control characters, none of which occur inside a flow-log value.
///
/// `(x & 0x7f) + 0x5f` reaches 0x80 exactly when a byte's low seven bits are 0x21 or more,
/// and cannot carry into the next byte; OR-ing `x` adds bytes whose own high bit is set.
/// What is left clear is a byte below 0x21.
#[inline(always)]
fn separators(x: u64) -> u64 {
    !(((x & LOW7) + ONES * (0x80 - 0x21)) | x) & HIGH
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
    // Work per word, for the whole words and then the last, partial one padded with a byte
    // that is not a separator. (Padding every word in the loop costs a `memcpy` call each.)
    let mut each_word = |word_at: usize, word: &[u8; 8]| -> Result<(), E> {
        let mut seps = separators(u64::from_le_bytes(*word));
        while seps != 0 {
            let at = word_at + (seps.trailing_zeros() / 8) as usize;
            if separator(at, word[at - word_at] == b'\n', spans) {
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
    let chunks = block.chunks_exact(8);
    let mut tail = [b'a'; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    let whole = chunks.len();
    for (w, word) in chunks.enumerate() {
        each_word(w * 8, word.try_into().expect("chunks of eight"))?;
    }
    each_word(whole * 8, &tail)?;
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
