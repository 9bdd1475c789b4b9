//! Writing JSON straight into a byte buffer: the primitives every encoder shares.
//!
//! Encoders write from Arrow columns to bytes without building `serde_json::Value`s; these
//! functions are the only place string escaping and number formatting live.

use arrow_array::StringViewArray;

/// Appends `s` as a JSON string (with quotes), escaping as RFC 8259 requires.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.push(b'"');
    // Flow-log values almost never need escaping: check eight bytes at a time and copy the
    // whole value at once.
    if needs_escape(bytes) {
        write_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Appends value `row` of a string-view array as a JSON string, reading the view directly:
/// values of up to 12 bytes are copied out of the view itself, longer ones through a
/// fixed-size window of their buffer when it has room.
#[inline]
pub fn write_view_str(out: &mut Vec<u8>, array: &StringViewArray, row: usize) {
    let view = array.views()[row];
    let len = view as u32 as usize;
    if len <= 12 {
        // The value is in the view itself: quote it in a register and store it once.
        let text = view >> 32;
        if word_needs_escape(text, len) {
            return write_str(out, array.value(row));
        }
        let quoted = b'"' as u128 | text << 8 | (b'"' as u128) << (8 * (len + 1));
        return extend_padded(out, &quoted.to_le_bytes(), len + 2);
    } else {
        let buffer = &array.data_buffers()[(view >> 64) as u32 as usize];
        let offset = (view >> 96) as u32 as usize;
        let value = &buffer[offset..offset + len];
        if needs_escape(value) {
            return write_str(out, array.value(row));
        }
        out.push(b'"');
        match buffer.get(offset..offset + 32) {
            Some(window) if len <= 32 => {
                extend_padded::<32>(out, window.try_into().expect("32 bytes"), len)
            }
            _ => out.extend_from_slice(value),
        }
    }
    out.push(b'"');
}

/// [`needs_escape`] for the first `len` (at most 12) bytes of `text`, without memory.
#[inline(always)]
fn word_needs_escape(text: u128, len: usize) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes past the value become 'a', which needs no escaping.
    let keep = (1u128 << (8 * len)) - 1;
    let text = (text & keep) | (0x6161_6161_6161_6161_6161_6161_6161_6161 & !keep);
    let below = |x: u64, k: u64| x.wrapping_sub(ONES * k) & !x & HIGH;
    let check = |x: u64| {
        below(x, 0x20) | below(x ^ (ONES * b'"' as u64), 1) | below(x ^ (ONES * b'\\' as u64), 1)
    };
    check(text as u64) | check((text >> 64) as u64) != 0
}

#[cold]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut run = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let escape: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[run..i]);
                out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
                run = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(escape);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
}

/// True if any byte is a control character, `"` or `\`. Word-at-a-time: for each byte b,
/// `(b - k) & !b & 0x80` is set when b < k (k <= 0x80); comparing with zero after XOR
/// finds equal bytes the same way.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, k: u64| x.wrapping_sub(ONES * k) & !x & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().expect("chunks of eight"));
        let quote = x ^ (ONES * b'"' as u64);
        let backslash = x ^ (ONES * b'\\' as u64);
        if below(x, 0x20) | below(quote, 1) | below(backslash, 1) != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// Appends an integer.
#[inline]
pub fn write_int<I: itoa::Integer + TryInto<u64> + Copy>(out: &mut Vec<u8>, n: I) {
    match n.try_into() {
        Ok(unsigned) => Number::unsigned(unsigned).write(out),
        Err(_) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
    }
}

/// A number already formatted. Up to 16 characters (every flow-log value, including
/// `start` with milliseconds) stay in a register and are written with one 16-byte store:
/// going through a byte array on the stack would be stored and reloaded at other widths,
/// which stalls the store-to-load forwarding of the CPU.
#[derive(Debug, Clone, Copy)]
pub enum Number {
    /// ASCII text, first character in the lowest byte.
    Short { text: u128, len: u8 },
    Long { window: [u8; 24], len: u8 },
}

impl Number {
    /// Formats a non-negative integer.
    #[inline(always)]
    pub fn unsigned(n: u64) -> Self {
        let len = decimal_digits(n);
        if n < 10_000_000_000_000_000 {
            // Sixteen zero-padded digits, two eight-digit halves computed without a chain of
            // divisions; dropping the leading zeros is a shift.
            let high = eight_ascii_digits((n / 100_000_000) as u32) as u128;
            let low = eight_ascii_digits((n % 100_000_000) as u32) as u128;
            let text = (high | low << 64) >> (8 * (16 - len));
            Number::Short { text, len: len as u8 }
        } else {
            let mut window = [0u8; 24];
            window[..len].copy_from_slice(itoa::Buffer::new().format(n).as_bytes());
            Number::Long { window, len: len as u8 }
        }
    }

    /// Formats Unix time in seconds from milliseconds: `1418530010`, or `1418530010.123`
    /// when the value has a fractional second, so no precision is lost.
    #[inline(always)]
    pub fn epoch_seconds(millis: i64) -> Self {
        let (secs, frac) = (millis.div_euclid(1000), millis.rem_euclid(1000));
        match (u64::try_from(secs), Self::unsigned(secs.unsigned_abs())) {
            (Ok(_), Number::Short { text, len }) if frac == 0 => Number::Short { text, len },
            (Ok(_), Number::Short { text, len }) if len <= 12 => {
                let frac = frac as u128;
                let tail = b'.' as u128
                    | (b'0' as u128 + frac / 100) << 8
                    | (b'0' as u128 + frac / 10 % 10) << 16
                    | (b'0' as u128 + frac % 10) << 24;
                Number::Short {
                    text: text | tail << (8 * len),
                    len: len + 4,
                }
            }
            // Before 1970 or after year 33658: not a flow-log time, still written exactly.
            _ => Self::from_text(&format!("{secs}.{frac:03}")),
        }
    }

    /// A number from its text (at most 24 bytes).
    pub fn from_text(text: &str) -> Self {
        let mut window = [0u8; 24];
        window[..text.len()].copy_from_slice(text.as_bytes());
        Number::Long {
            window,
            len: text.len() as u8,
        }
    }

    #[inline(always)]
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Number::Short { text, len } => extend_padded(out, &text.to_le_bytes(), *len as usize),
            Number::Long { window, len } => extend_padded(out, window, *len as usize),
        }
    }
}

/// The eight decimal digits of `x` (< 10^8, zero-padded) as ASCII, first digit in the
/// lowest byte. The halves, then quarters, then digits are split in parallel lanes of one
/// u64: `* 10486 >> 20` is `/ 100` below 10^4 and `* 103 >> 10` is `/ 10` below 100.
#[inline(always)]
fn eight_ascii_digits(x: u32) -> u64 {
    let halves = (x / 10_000) as u64 | ((x % 10_000) as u64) << 32;
    let hundreds = (halves * 10_486 >> 20) & 0x0000_007F_0000_007F;
    let quarters = hundreds | (halves - hundreds * 100) << 16;
    let tens = (quarters * 103 >> 10) & 0x000F_000F_000F_000F;
    let digits = tens | (quarters - tens * 10) << 8;
    digits + 0x3030_3030_3030_3030
}

/// How many decimal digits `n` has (at least one): log10 estimated from the bit length
/// (1233/4096 ~ log10 2, an estimate at most one too high), corrected by one comparison.
#[inline]
fn decimal_digits(n: u64) -> usize {
    const POWERS: [u64; 20] = {
        let mut p = [1u64; 20];
        let mut i = 1;
        while i < 20 {
            p[i] = p[i - 1] * 10;
            i += 1;
        }
        p
    };
    let n = n | 1; // 0 has one digit, like 1
    let bits = 64 - n.leading_zeros() as usize;
    let log = bits * 1233 >> 12;
    log + 1 - (n < POWERS[log]) as usize
}

/// Appends the first `len` bytes of `window`. Copying the whole fixed-size window and
/// then dropping the excess compiles to a few vector moves, where a variable-length copy
/// of a short value costs a call to `memcpy`.
#[inline(always)]
pub fn extend_padded<const N: usize>(out: &mut Vec<u8>, window: &[u8; N], len: usize) {
    debug_assert!(len <= N);
    out.extend_from_slice(window);
    out.truncate(out.len() - (N - len));
}

/// Appends Unix time in seconds from milliseconds (see [`Number::epoch_seconds`]).
#[inline]
pub fn write_epoch_seconds(out: &mut Vec<u8>, millis: i64) {
    Number::epoch_seconds(millis).write(out);
}

/// The bytes of `"key":`, computed once per column instead of once per value.
pub fn key_prefix(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 3);
    write_str(&mut out, key);
    out.push(b':');
    out
}

/// A member name with the separator before it, `,"key":`, ready to copy.
#[derive(Debug, Clone)]
pub struct MemberKey {
    window: [u8; 48],
    len: usize,
    long: Option<Vec<u8>>,
}

impl MemberKey {
    pub fn new(key: &str) -> Self {
        let mut bytes = vec![b','];
        bytes.extend_from_slice(&key_prefix(key));
        let mut window = [0u8; 48];
        let len = bytes.len();
        let long = if len <= window.len() {
            window[..len].copy_from_slice(&bytes);
            None
        } else {
            Some(bytes)
        };
        Self { window, len, long }
    }

    /// Appends `,"key":`. The first member of an object is written the same way and its
    /// comma overwritten by the `{` (see [`Object`]).
    #[inline(always)]
    pub fn write(&self, out: &mut Vec<u8>) {
        match &self.long {
            None => extend_padded(out, &self.window, self.len),
            Some(bytes) => out.extend_from_slice(bytes),
        }
    }
}

/// Writes one JSON object whose members are appended with [`MemberKey::write`].
pub struct Object {
    start: usize,
}

impl Object {
    /// Starts an object at the end of `out`.
    #[inline(always)]
    pub fn begin(out: &[u8]) -> Self {
        Self { start: out.len() }
    }

    /// Closes the object: the first member's comma becomes the opening brace.
    #[inline(always)]
    pub fn end(self, out: &mut Vec<u8>) {
        if out.len() == self.start {
            out.push(b'{');
        } else {
            out[self.start] = b'{';
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn strings_round_trip_through_serde_json() {
        for input in [
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\nx",
            "ctl\u{1}x",
            "subnet-3fbc536e360c36caб",
            "",
            "exactly8",
            "sixteen-bytes-xx",
            "0123456789abcde\"",
            "0123456\u{7f}\u{1f}",
            "\u{80}\u{1f}",
        ] {
            let json = s(|o| write_str(o, input));
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, input);
        }
    }

    #[test]
    fn escape_check_agrees_with_bytewise_check() {
        let naive = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        for special in 0u8..=255 {
            for len in 1..20 {
                for at in 0..len {
                    let mut v = vec![b'a'; len];
                    v[at] = special;
                    assert_eq!(
                        needs_escape(&v),
                        naive(&v),
                        "byte {special:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn string_views_are_written_like_strings() {
        let values = [
            Some("ACCEPT"),
            None,
            Some("exactly12byt"),
            Some("eni-1235b8ca123456789"),
            Some("a\"quote"),
            Some("long value with a \" quote in it"),
            Some("a value longer than thirty-two bytes, copied plainly"),
            Some("subnet-3fbc536e360c36caб"),
            Some(""),
        ];
        let array = StringViewArray::from_iter(values);
        for (row, value) in values.iter().enumerate() {
            if let Some(value) = value {
                assert_eq!(
                    s(|o| write_view_str(o, &array, row)),
                    s(|o| write_str(o, value))
                );
            }
        }
        assert!(array.is_null(1));
    }

    #[test]
    fn integers_match_itoa() {
        for n in [
            0u64,
            1,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            65535,
            1418530010,
            u64::MAX,
        ] {
            assert_eq!(s(|o| Number::unsigned(n).write(o)), n.to_string());
        }
        for n in (0..2_000_000u64).step_by(7).chain((0..64).map(|b| 1u64 << b)) {
            assert_eq!(s(|o| Number::unsigned(n).write(o)), n.to_string());
        }
        for i in 0..20 {
            let n = 10u64.pow(i);
            assert_eq!(s(|o| Number::unsigned(n - 1).write(o)), (n - 1).to_string());
            assert_eq!(s(|o| Number::unsigned(n).write(o)), n.to_string());
        }
        assert_eq!(s(|o| write_int(o, -42i64)), "-42");
        assert_eq!(s(|o| write_int(o, 42i32)), "42");
    }

    #[test]
    fn objects_and_members() {
        let mut out = b"[".to_vec();
        let object = Object::begin(&out);
        MemberKey::new("a").write(&mut out);
        write_int(&mut out, 1u8);
        MemberKey::new(&"k".repeat(60)).write(&mut out);
        write_str(&mut out, "v");
        object.end(&mut out);
        Object::begin(&out).end(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("[{{\"a\":1,\"{}\":\"v\"}}{{}}", "k".repeat(60))
        );
    }

    #[test]
    fn epoch_seconds_keep_milliseconds() {
        assert_eq!(
            s(|o| write_epoch_seconds(o, 1_418_530_010_000)),
            "1418530010"
        );
        assert_eq!(
            s(|o| write_epoch_seconds(o, 1_418_530_010_007)),
            "1418530010.007"
        );
        assert_eq!(s(|o| write_epoch_seconds(o, 0)), "0");
        assert_eq!(s(|o| write_epoch_seconds(o, -1500)), "-2.500");
        assert_eq!(key_prefix("log_status"), b"\"log_status\":");
    }
}
