//! Checking one field value against its catalogue kind.
//!
//! Shared by the line decoder (text tokens) and the Parquet reader (string columns), so a
//! value is accepted or rejected the same way whatever envelope it arrived in.

use std::net::Ipv6Addr;

use flowlog_model::FieldKind;

/// A value that does not fit its field's kind; the message completes "field `x`: ...".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadValue(pub &'static str);

/// Parses a non-negative decimal integer (no sign, no spaces) with overflow checking.
#[inline]
pub(crate) fn parse_unsigned(token: &[u8]) -> Option<u64> {
    if token.is_empty() || token.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in token {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(n)
}

/// Parses an integer token of `kind` and checks its range.
#[inline]
pub(crate) fn parse_integer(kind: FieldKind, token: &[u8]) -> Result<i64, BadValue> {
    let Some(n) = parse_unsigned(token) else {
        return Err(BadValue("is not a non-negative integer"));
    };
    let (lo, hi) = kind.range().unwrap_or((0, i64::MAX));
    if n > hi as u64 || (n as i64) < lo {
        return Err(match kind {
            FieldKind::Port => BadValue("is out of range for a port (0-65535)"),
            FieldKind::Code => BadValue("is out of range (0-255)"),
            _ => BadValue("is out of range"),
        });
    }
    Ok(n as i64)
}

/// Milliseconds since the epoch from a `start`/`end` value given in seconds or, when it has
/// 13 or more digits (any time after 2001-09-09 in milliseconds, or after year 33658 in
/// seconds), in milliseconds.
#[inline]
pub(crate) fn parse_epoch_millis(token: &[u8]) -> Result<i64, BadValue> {
    let n = parse_unsigned(token).ok_or(BadValue("is not a Unix time"))?;
    let millis = if token.len() >= 13 {
        n
    } else {
        n * 1000 // at most 12 digits: cannot overflow
    };
    i64::try_from(millis).map_err(|_| BadValue("is out of range for a Unix time"))
}

/// Normalizes a seconds-or-milliseconds integer from a typed (Parquet) column.
pub(crate) fn epoch_millis_from_int(n: i64) -> Result<i64, BadValue> {
    if n < 0 {
        return Err(BadValue("is a negative Unix time"));
    }
    if n >= 1_000_000_000_000 {
        Ok(n)
    } else {
        Ok(n * 1000)
    }
}

/// Checks an IPv4 or IPv6 address in its text form, accepting what `std::net` accepts.
#[inline]
pub(crate) fn check_ip(token: &[u8]) -> Result<(), BadValue> {
    let ok = if token.contains(&b':') {
        std::str::from_utf8(token)
            .ok()
            .and_then(|s| s.parse::<Ipv6Addr>().ok())
            .is_some()
    } else {
        is_ipv4(token)
    };
    if ok {
        Ok(())
    } else {
        Err(BadValue("is not an IPv4 or IPv6 address"))
    }
}

/// Dotted-quad IPv4 without leading zeros (as `std::net::Ipv4Addr` parses it), without the
/// cost of going through `str`.
#[inline]
fn is_ipv4(b: &[u8]) -> bool {
    let mut octets = 0;
    let mut i = 0;
    while i <= b.len() {
        let start = i;
        let mut value: u32 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            value = value * 10 + (b[i] - b'0') as u32;
            i += 1;
            if i - start > 3 {
                return false;
            }
        }
        let len = i - start;
        if len == 0 || value > 255 || (len > 1 && b[start] == b'0') {
            return false;
        }
        octets += 1;
        if i == b.len() {
            break;
        }
        if b[i] != b'.' || octets == 4 {
            return false;
        }
        i += 1;
    }
    octets == 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn ipv4_agrees_with_std() {
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.1.1.1",
            "1..1.1",
            "1.1.1.",
            ".1.1.1",
            "1.1.1.1a",
            "",
            "1234.1.1.1",
            "0.00.0.0",
        ] {
            assert_eq!(is_ipv4(s.as_bytes()), s.parse::<Ipv4Addr>().is_ok(), "{s}");
        }
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(parse_integer(FieldKind::Port, b"65535"), Ok(65535));
        assert!(parse_integer(FieldKind::Port, b"65536").is_err());
        assert!(parse_integer(FieldKind::Code, b"256").is_err());
        assert!(parse_integer(FieldKind::Count, b"-1").is_err());
        assert!(parse_integer(FieldKind::Count, b"99999999999999999999").is_err());
        assert_eq!(
            parse_integer(FieldKind::Count, b"9223372036854775807"),
            Ok(i64::MAX)
        );
        assert!(parse_integer(FieldKind::Count, b"9223372036854775808").is_err());
    }

    #[test]
    fn epoch_seconds_and_millis() {
        assert_eq!(parse_epoch_millis(b"1418530010"), Ok(1_418_530_010_000));
        assert_eq!(parse_epoch_millis(b"1418530010123"), Ok(1_418_530_010_123));
        assert_eq!(parse_epoch_millis(b"0"), Ok(0));
        assert!(parse_epoch_millis(b"14185300x0").is_err());
        assert_eq!(epoch_millis_from_int(1_418_530_010), Ok(1_418_530_010_000));
        assert_eq!(
            epoch_millis_from_int(1_418_530_010_123),
            Ok(1_418_530_010_123)
        );
    }
}
