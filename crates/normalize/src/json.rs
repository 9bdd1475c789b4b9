//! Writing JSON straight into a byte buffer: the primitives every encoder shares.
//!
//! Encoders write from Arrow columns to bytes without building `serde_json::Value`s; these
//! functions are the only place string escaping and number formatting live.
//!
//! Writes go through [`Out`], a pre-sized byte slice and a position, rather than
//! `Vec::push`: a byte stored through a `Vec` may alias the `Vec`'s own length (bytes may
//! alias anything), so the compiler reloads it after every store, while a position in a
//! local stays in a register. Short values are written as fixed-size windows (a fixed-size
//! copy is a couple of vector moves; a variable-length one is a call to `memcpy`), so the
//! slice always keeps [`SLACK`] spare bytes past what a row can need; [`Rows`] sees to it.

use arrow_array::StringViewArray;

/// Spare bytes kept past the end of what is written, for fixed-size windows.
pub const SLACK: usize = 64;

/// The most bytes a JSON string of `len` bytes takes: every byte escaped (`\u00XX`) and
/// two quotes.
pub const fn str_bound(len: usize) -> usize {
    len * 6 + 2
}

/// The most bytes a [`Number`] takes.
pub const NUMBER_BOUND: usize = 24;

/// A byte slice being written from `pos` on. Every write is bounds-checked (a value that
/// does not fit is a bug in the bound given to [`Rows::row`], and panics rather than
/// corrupting output).
pub struct Out<'a> {
    dst: &'a mut [u8],
    pos: usize,
}

impl<'a> Out<'a> {
    pub fn new(dst: &'a mut [u8], pos: usize) -> Self {
        Self { dst, pos }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Writes the first `len` bytes of `window` (copying all N).
    #[inline(always)]
    pub fn window<const N: usize>(&mut self, window: &[u8; N], len: usize) {
        debug_assert!(len <= N);
        self.dst[self.pos..self.pos + N].copy_from_slice(window);
        self.pos += len;
    }

    #[inline(always)]
    pub fn byte(&mut self, b: u8) {
        self.dst[self.pos] = b;
        self.pos += 1;
    }

    #[inline]
    pub fn bytes(&mut self, b: &[u8]) {
        self.dst[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }

    /// Drops what was written from `pos` on (a member that turned out to be absent).
    #[inline(always)]
    pub fn truncate(&mut self, pos: usize) {
        debug_assert!(pos <= self.pos);
        self.pos = pos;
    }

    /// What was written from `start` on.
    pub fn since(&self, start: usize) -> &[u8] {
        &self.dst[start..self.pos]
    }

    /// Overwrites an earlier byte.
    #[inline(always)]
    pub fn set(&mut self, at: usize, b: u8) {
        self.dst[at] = b;
    }

    /// Writes `s` as a JSON string (with quotes), escaping as RFC 8259 requires.
    #[inline]
    pub fn str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        self.byte(b'"');
        // Flow-log values almost never need escaping: check eight bytes at a time and copy
        // the whole value at once.
        if needs_escape(bytes) {
            self.escaped(bytes);
        } else {
            match bytes.first_chunk::<32>() {
                Some(_) => self.bytes(bytes),
                None => self.short(bytes),
            }
        }
        self.byte(b'"');
    }

    /// Writes text known to need no escaping (names from the program's own tables) as a
    /// JSON string.
    #[inline]
    pub fn plain_str(&mut self, s: &str) {
        debug_assert!(!needs_escape(s.as_bytes()));
        self.byte(b'"');
        match s.as_bytes().first_chunk::<32>() {
            Some(_) => self.bytes(s.as_bytes()),
            None => self.short(s.as_bytes()),
        }
        self.byte(b'"');
    }

    /// A value of fewer than 32 bytes through a fixed 32-byte window.
    #[inline(always)]
    fn short(&mut self, bytes: &[u8]) {
        let mut window = [0u8; 32];
        window[..bytes.len()].copy_from_slice(bytes);
        self.window(&window, bytes.len());
    }

    /// Writes value `row` of a string-view array as a JSON string, reading the view
    /// directly: values of up to 12 bytes are in the view itself and are quoted in a
    /// register; longer ones are copied through a fixed-size window of their buffer when
    /// it has room. `PLAIN` skips the search for bytes to escape, for batches whose
    /// decoder vouched that there are none ([`flowlog_model::FlowBatch::plain_text`]).
    #[inline(always)]
    pub fn view_str<const PLAIN: bool>(&mut self, array: &StringViewArray, row: usize) {
        let view = array.views()[row];
        let len = view as u32 as usize;
        if len <= 12 {
            let text = view >> 32;
            if !PLAIN && word_needs_escape(text, len) {
                return self.str(array.value(row));
            }
            let quoted = b'"' as u128 | text << 8 | (b'"' as u128) << (8 * (len + 1));
            return self.window(&quoted.to_le_bytes(), len + 2);
        }
        let buffer = &array.data_buffers()[(view >> 64) as u32 as usize];
        let offset = (view >> 96) as u32 as usize;
        let value = &buffer[offset..offset + len];
        if !PLAIN && needs_escape(value) {
            return self.str(array.value(row));
        }
        self.byte(b'"');
        match buffer.get(offset..offset + 32) {
            Some(window) if len <= 32 => {
                self.window::<32>(window.try_into().expect("32 bytes"), len)
            }
            _ => self.bytes(value),
        }
        self.byte(b'"');
    }

    #[cold]
    fn escaped(&mut self, bytes: &[u8]) {
        for &c in bytes {
            match c {
                b'"' => self.bytes(b"\\\""),
                b'\\' => self.bytes(b"\\\\"),
                b'\n' => self.bytes(b"\\n"),
                b'\r' => self.bytes(b"\\r"),
                b'\t' => self.bytes(b"\\t"),
                0..=0x1f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    self.bytes(b"\\u00");
                    self.byte(HEX[(c >> 4) as usize]);
                    self.byte(HEX[(c & 15) as usize]);
                }
                _ => self.byte(c),
            }
        }
    }
}

/// An encoder's output buffer. Its bytes stay initialised from one batch to the next, so
/// writing a batch neither reallocates nor re-zeroes it.
#[derive(Debug, Default)]
pub struct OutBuffer {
    bytes: Vec<u8>,
}

impl OutBuffer {
    /// Starts writing at the beginning of the buffer.
    pub fn rows(&mut self) -> Rows<'_> {
        Rows {
            vec: &mut self.bytes,
            pos: 0,
        }
    }

    /// The first `len` bytes, as [`Rows::finish`] reported them.
    pub fn written(&self, len: usize) -> &[u8] {
        &self.bytes[..len]
    }
}

/// Rows being written into an [`OutBuffer`] through [`Out`].
pub struct Rows<'v> {
    vec: &'v mut Vec<u8>,
    pos: usize,
}

impl Rows<'_> {
    /// Writes one row of at most `bound` bytes with `write`.
    #[inline]
    pub fn row(&mut self, bound: usize, write: impl FnOnce(&mut Out<'_>)) {
        let need = self.pos + bound + SLACK;
        if self.vec.len() < need {
            self.grow(need);
        }
        let mut out = Out::new(self.vec.as_mut_slice(), self.pos);
        write(&mut out);
        debug_assert!(out.pos() <= self.pos + bound, "row bound too small");
        self.pos = out.pos();
    }

    #[cold]
    fn grow(&mut self, need: usize) {
        let len = need.max(self.vec.len() * 2).max(1 << 16);
        self.vec.resize(len, 0);
    }

    /// How many bytes were written.
    pub fn finish(self) -> usize {
        self.pos
    }
}

/// [`needs_escape`] for the first `len` (at most 12) bytes of `text`, without memory.
#[inline(always)]
fn word_needs_escape(text: u128, len: usize) -> bool {
    // Bytes past the value become 'a', which needs no escaping.
    let keep = (1u128 << (8 * len)) - 1;
    let text = (text & keep) | (0x6161_6161_6161_6161_6161_6161_6161_6161 & !keep);
    word_has_special(text as u64) | word_has_special((text >> 64) as u64)
}

/// True if any byte of the word is a control character, `"` or `\`. For each byte b,
/// `(b - k) & !b & 0x80` is set when b < k (k <= 0x80); comparing with zero after XOR
/// finds equal bytes the same way.
#[inline(always)]
fn word_has_special(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, k: u64| x.wrapping_sub(ONES * k) & !x & HIGH;
    let quote = x ^ (ONES * b'"' as u64);
    let backslash = x ^ (ONES * b'\\' as u64);
    below(x, 0x20) | below(quote, 1) | below(backslash, 1) != 0
}

/// True if any byte is a control character, `"` or `\`, eight bytes at a time.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        if word_has_special(u64::from_le_bytes(
            chunk.try_into().expect("chunks of eight"),
        )) {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// A number already formatted. Up to 16 characters (every flow-log value, including
/// `start` with milliseconds) stay in a register and are written with one 16-byte store:
/// going through a byte array on the stack would be stored and reloaded at other widths,
/// which stalls the store-to-load forwarding of the CPU.
#[derive(Debug, Clone, Copy)]
pub enum Number {
    /// ASCII text, first character in the lowest byte.
    Short {
        text: u128,
        len: u8,
    },
    Long {
        window: [u8; 24],
        len: u8,
    },
}

impl Number {
    /// Formats a non-negative integer.
    #[inline(always)]
    pub fn unsigned(n: u64) -> Self {
        let len = decimal_digits(n);
        if n < 100_000_000 {
            // Ports, protocols, most counters: one eight-digit half.
            let text = eight_ascii_digits(n as u32) >> (8 * (8 - len));
            Number::Short {
                text: text as u128,
                len: len as u8,
            }
        } else if n < 10_000_000_000_000_000 {
            // Sixteen zero-padded digits, two eight-digit halves computed without a chain of
            // divisions; dropping the leading zeros is a shift.
            let high = eight_ascii_digits((n / 100_000_000) as u32) as u128;
            let low = eight_ascii_digits((n % 100_000_000) as u32) as u128;
            let text = (high | low << 64) >> (8 * (16 - len));
            Number::Short {
                text,
                len: len as u8,
            }
        } else {
            Self::from_text(itoa::Buffer::new().format(n))
        }
    }

    /// Formats any integer.
    #[inline(always)]
    pub fn integer(n: i64) -> Self {
        match u64::try_from(n) {
            Ok(n) => Self::unsigned(n),
            Err(_) => Self::from_text(itoa::Buffer::new().format(n)),
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
    pub fn write(&self, out: &mut Out<'_>) {
        match self {
            Number::Short { text, len } => out.window(&text.to_le_bytes(), *len as usize),
            Number::Long { window, len } => out.window(window, *len as usize),
        }
    }
}

/// The eight decimal digits of `x` (< 10^8, zero-padded) as ASCII, first digit in the
/// lowest byte. The halves, then quarters, then digits are split in parallel lanes of one
/// u64: `* 10486 >> 20` is `/ 100` below 10^4 and `* 103 >> 10` is `/ 10` below 100.
#[inline(always)]
fn eight_ascii_digits(x: u32) -> u64 {
    let halves = (x / 10_000) as u64 | ((x % 10_000) as u64) << 32;
    let hundreds = ((halves * 10_486) >> 20) & 0x0000_007F_0000_007F;
    let quarters = hundreds | (halves - hundreds * 100) << 16;
    let tens = ((quarters * 103) >> 10) & 0x000F_000F_000F_000F;
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
    let log = (bits * 1233) >> 12;
    log + 1 - (n < POWERS[log]) as usize
}

/// A member name with the separator before it, `,"key":`, ready to copy.
#[derive(Debug, Clone)]
pub struct MemberKey {
    window: [u8; 48],
    bytes: Vec<u8>,
}

impl MemberKey {
    pub fn new(key: &str) -> Self {
        Self::with_value(key, b"")
    }

    /// A whole member whose value never changes, `,"key":value`, written as one copy.
    /// `json` must be one JSON value.
    pub fn with_value(key: &str, json: &[u8]) -> Self {
        let mut bytes = vec![0u8; str_bound(key.len()) + 2 + json.len() + SLACK];
        let mut out = Out::new(&mut bytes, 0);
        out.byte(b',');
        out.str(key);
        out.byte(b':');
        out.bytes(json);
        let len = out.pos();
        Self::from_bytes(&bytes[..len])
    }

    /// Bytes written as they are (a run of members rendered ahead of time).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut window = [0u8; 48];
        if bytes.len() <= window.len() {
            window[..bytes.len()].copy_from_slice(bytes);
        }
        Self {
            window,
            bytes: bytes.to_vec(),
        }
    }

    /// The bytes it writes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many bytes it writes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Writes `,"key":`. The first member of an object is written the same way and its
    /// comma overwritten by the `{` (see [`Object`]).
    #[inline(always)]
    pub fn write(&self, out: &mut Out<'_>) {
        let len = self.bytes.len();
        if len <= 16 {
            // Most member names: one 16-byte store.
            let first: &[u8; 16] = self.window.first_chunk().expect("16 bytes");
            out.window(first, len);
        } else if len <= self.window.len() {
            out.window(&self.window, len);
        } else {
            out.bytes(&self.bytes);
        }
    }
}

/// Writes one JSON object whose members are written with [`MemberKey::write`].
pub struct Object {
    start: usize,
}

impl Object {
    /// Bytes an object adds to its members: the closing brace (the opening one replaces
    /// the first member's comma, or is the only byte of an empty object).
    pub const BOUND: usize = 2;

    #[inline(always)]
    pub fn begin(out: &Out<'_>) -> Self {
        Self { start: out.pos() }
    }

    /// Closes the object: the first member's comma becomes the opening brace.
    #[inline(always)]
    pub fn end(self, out: &mut Out<'_>) {
        if out.pos() == self.start {
            out.byte(b'{');
        } else {
            out.set(self.start, b'{');
        }
        out.byte(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    fn s(bound: usize, f: impl FnOnce(&mut Out<'_>)) -> String {
        let mut buffer = OutBuffer::default();
        let mut rows = buffer.rows();
        rows.row(bound, f);
        let n = rows.finish();
        String::from_utf8(buffer.written(n).to_vec()).unwrap()
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
            "a value longer than thirty-two bytes, copied plainly",
            "\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}",
        ] {
            let json = s(str_bound(input.len()), |o| o.str(input));
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
                    if len <= 12 {
                        let mut word = [0u8; 16];
                        word[..len].copy_from_slice(&v);
                        let text = u128::from_le_bytes(word);
                        assert_eq!(word_needs_escape(text, len), naive(&v));
                    }
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
                let bound = str_bound(value.len());
                assert_eq!(
                    s(bound, |o| o.view_str::<false>(&array, row)),
                    s(bound, |o| o.str(value))
                );
                if !value.contains(['"', '\\']) {
                    assert_eq!(
                        s(bound, |o| o.view_str::<true>(&array, row)),
                        s(bound, |o| o.str(value))
                    );
                }
            }
        }
        assert!(array.is_null(1));
    }

    #[test]
    fn integers_match_itoa() {
        let mut values: Vec<u64> = (0..2_000_000u64).step_by(7).collect();
        values.extend((0..64).map(|b| 1u64 << b));
        values.extend((0..20).flat_map(|i| [10u64.pow(i) - 1, 10u64.pow(i)]));
        values.push(u64::MAX);
        // One buffer for all of them: a row per number.
        let mut buffer = OutBuffer::default();
        let mut rows = buffer.rows();
        for &n in &values {
            rows.row(NUMBER_BOUND + 1, |o| {
                Number::unsigned(n).write(o);
                o.byte(b' ');
            });
        }
        let n = rows.finish();
        let expected: String = values.iter().map(|n| format!("{n} ")).collect();
        assert_eq!(buffer.written(n), expected.as_bytes());
        assert_eq!(s(NUMBER_BOUND, |o| Number::integer(-42).write(o)), "-42");
        assert_eq!(
            s(NUMBER_BOUND, |o| Number::integer(i64::MIN).write(o)),
            i64::MIN.to_string()
        );
    }

    #[test]
    fn objects_and_members() {
        let long = "k".repeat(60);
        let out = s(200, |o| {
            o.byte(b'[');
            let object = Object::begin(o);
            MemberKey::new("a").write(o);
            Number::unsigned(1).write(o);
            MemberKey::new(&long).write(o);
            o.str("v");
            object.end(o);
            let empty = Object::begin(o);
            empty.end(o);
        });
        assert_eq!(out, format!("[{{\"a\":1,\"{long}\":\"v\"}}{{}}"));
        assert_eq!(MemberKey::new("log_status").len(), ",\"log_status\":".len());
    }

    #[test]
    fn epoch_seconds_keep_milliseconds() {
        let t = |ms: i64| s(NUMBER_BOUND, |o| Number::epoch_seconds(ms).write(o));
        assert_eq!(t(1_418_530_010_000), "1418530010");
        assert_eq!(t(1_418_530_010_007), "1418530010.007");
        assert_eq!(t(1_418_530_010_120), "1418530010.120");
        assert_eq!(t(0), "0");
        assert_eq!(t(-1500), "-2.500");
    }

    #[test]
    fn buffer_is_reused_between_batches() {
        let mut buffer = OutBuffer::default();
        for round in 0..3u64 {
            let mut rows = buffer.rows();
            for i in 0..10_000u64 {
                rows.row(NUMBER_BOUND + 1, |o| {
                    Number::unsigned(i * round).write(o);
                    o.byte(b' ');
                });
            }
            let n = rows.finish();
            let text = std::str::from_utf8(buffer.written(n)).unwrap();
            assert!(text.starts_with(&format!("0 {round} ")));
            assert!(text.ends_with(&format!(" {} ", 9999 * round)));
        }
    }
}
