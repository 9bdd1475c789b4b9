//! Writing JSON straight into a byte buffer: the primitives every encoder shares.
//!
//! Encoders write from Arrow columns to bytes without building `serde_json::Value`s; these
//! functions are the only place string escaping and number formatting live.

/// Appends `s` as a JSON string (with quotes), escaping as RFC 8259 requires.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Flow-log values almost never need escaping: copy runs of safe bytes at once.
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
    out.push(b'"');
}

/// Appends an integer.
#[inline]
pub fn write_int<I: itoa::Integer>(out: &mut Vec<u8>, n: I) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends Unix time in seconds from milliseconds: `1418530010`, or `1418530010.123` when
/// the value has a fractional second, so no precision is lost.
#[inline]
pub fn write_epoch_seconds(out: &mut Vec<u8>, millis: i64) {
    let (secs, frac) = (millis.div_euclid(1000), millis.rem_euclid(1000));
    write_int(out, secs);
    if frac != 0 {
        out.push(b'.');
        let digits = [
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        out.extend_from_slice(&digits);
    }
}

/// The bytes of `"key":`, computed once per column instead of once per value.
pub fn key_prefix(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 3);
    write_str(&mut out, key);
    out.push(b':');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            let json = s(|o| write_str(o, input));
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, input);
        }
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
        assert_eq!(s(|o| key_prefix("log_status")), "\"log_status\":");
    }
}
