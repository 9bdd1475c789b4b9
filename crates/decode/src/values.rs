//! Checking one field value against its catalogue kind.
//!
//! Shared by the line decoder (text tokens) and the Parquet reader (string columns), so a
//! value is accepted or rejected the same way whatever envelope it arrived in.

use flowlog_model::address::parse_ipv4;
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
    if token.len() <= 19 {
        // 19 digits fit in a u64: no overflow checks needed.
        for &c in token {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            n = n * 10 + d as u64;
        }
        return Some(n);
    }
    for &c in token {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(n)
}

/// Parses the decimal digits `block[start..end]`. The block continues past `end` (the
/// separator and the lines after it), so eight-byte windows can usually be read from it
/// and converted eight digits at a time; near the end of the block, digit by digit.
#[inline(always)]
pub(crate) fn parse_unsigned_in(block: &[u8], start: usize, end: usize) -> Option<u64> {
    let len = end - start;
    match (len, block.get(start..start + 8)) {
        (1..=8, Some(window)) => eight_digits(window, len),
        (9..=16, Some(window)) => {
            let high = eight_digits(window, len - 8)?;
            let low = eight_digits(&block[end - 8..end], 8)?;
            Some(high * 100_000_000 + low)
        }
        _ => parse_unsigned(&block[start..end]),
    }
}

/// The value of the first `len` (1 to 8) bytes of `window` read as decimal digits, or
/// None if one is not a digit. (Lemire's method: three multiplications combine pairs,
/// then quads, then the eight digits.)
#[inline(always)]
fn eight_digits(window: &[u8], len: usize) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    let x = u64::from_le_bytes(window[..8].try_into().expect("eight bytes"));
    // The first digit is the lowest byte: shift the digits to the top and fill the bytes
    // below with '0', making a zero-padded eight-digit number.
    let x = x << (8 * (8 - len)) | ZEROS.checked_shr(8 * len as u32).unwrap_or(0);
    let high_nibbles_are_3 = x & 0xF0F0_F0F0_F0F0_F0F0 == ZEROS;
    let low_nibbles_below_10 = (x & 0x0F0F_0F0F_0F0F_0F0F).wrapping_add(0x0606_0606_0606_0606)
        & 0xF0F0_F0F0_F0F0_F0F0
        == 0;
    if !(high_nibbles_are_3 && low_nibbles_below_10) {
        return None;
    }
    let x = (x & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let x = (x & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    Some((x & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32)
}

/// Parses the integer `block[start..end]` of `kind` and checks its range.
#[inline(always)]
pub(crate) fn parse_integer_in(
    kind: FieldKind,
    max: u64,
    block: &[u8],
    start: usize,
    end: usize,
) -> Result<i64, BadValue> {
    match parse_unsigned_in(block, start, end) {
        Some(n) => in_range(kind, max, n),
        None => Err(BadValue("is not a non-negative integer")),
    }
}

/// `n` as a value of `kind`, if it is at most `max` (see [`max_value`]).
#[inline(always)]
pub(crate) fn in_range(kind: FieldKind, max: u64, n: u64) -> Result<i64, BadValue> {
    if n <= max {
        Ok(n as i64)
    } else {
        Err(out_of_range(kind))
    }
}

/// The largest value of an integer kind.
pub(crate) fn max_value(kind: FieldKind) -> u64 {
    kind.range().map_or(i64::MAX as u64, |(_, hi)| hi as u64)
}

#[cold]
fn out_of_range(kind: FieldKind) -> BadValue {
    match kind {
        FieldKind::Port => BadValue("is out of range for a port (0-65535)"),
        FieldKind::Code => BadValue("is out of range (0-255)"),
        _ => BadValue("is out of range"),
    }
}

/// Parses an integer token of `kind` and checks its range.
#[inline]
pub(crate) fn parse_integer(kind: FieldKind, token: &[u8]) -> Result<i64, BadValue> {
    parse_integer_in(kind, max_value(kind), token, 0, token.len())
}

/// Milliseconds since the epoch from a `start`/`end` value given in seconds or, when it has
/// 13 or more digits (any time after 2001-09-09 in milliseconds, or after year 33658 in
/// seconds), in milliseconds.
#[inline]
pub(crate) fn parse_epoch_millis(token: &[u8]) -> Result<i64, BadValue> {
    epoch_millis_in(token, 0, token.len())
}

/// [`parse_epoch_millis`] of `block[start..end]`, reading windows past `end` like
/// [`parse_unsigned_in`].
#[inline(always)]
pub(crate) fn epoch_millis_in(block: &[u8], start: usize, end: usize) -> Result<i64, BadValue> {
    let n = parse_unsigned_in(block, start, end).ok_or(BadValue("is not a Unix time"))?;
    let millis = if end - start >= 13 {
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
    // IPv4 first: nine in ten addresses, and it fails within a few bytes on IPv6.
    let ok = parse_ipv4(token).is_some() || is_ipv6(token);
    if ok {
        Ok(())
    } else {
        Err(BadValue("is not an IPv4 or IPv6 address"))
    }
}

/// Addresses that passed [`check_ip`] lately, so that checking one again is a compare.
///
/// Flow logs repeat addresses: one side of most records is an interface of the VPC, and
/// `pkt-srcaddr`/`pkt-dstaddr` usually equal `srcaddr`/`dstaddr`. A direct-mapped table
/// of the last address seen per slot, keyed by the address text (up to 16 bytes; longer
/// IPv6 forms are always checked), answers nine checks in ten on the side-by-side
/// benchmark's corpus, where a full check costs a hundred instructions or more.
pub(crate) struct CheckedAddresses {
    /// Address text as a little-endian number, zero past its end; 0 is an empty slot (a
    /// token is never empty and holds no NUL byte).
    slots: Box<[u128; Self::SLOTS]>,
}

impl Default for CheckedAddresses {
    fn default() -> Self {
        Self {
            slots: Box::new([0; Self::SLOTS]),
        }
    }
}

impl CheckedAddresses {
    const SLOTS: usize = 256;

    /// [`check_ip`] of `block[start..end]`, remembering addresses that pass.
    #[inline(always)]
    pub(crate) fn check(&mut self, block: &[u8], start: usize, end: usize) -> Result<(), BadValue> {
        let len = end - start;
        let Some(window) = block.get(start..start + 16).filter(|_| len <= 16) else {
            return check_ip(&block[start..end]);
        };
        let window = u128::from_le_bytes(window.try_into().expect("16 bytes"));
        let key = window & (u128::MAX >> (8 * (16 - len)));
        let folded = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
        let slot = (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize;
        if self.slots[slot] == key {
            return Ok(());
        }
        check_ip(&block[start..end])?;
        self.slots[slot] = key;
        Ok(())
    }
}

/// RFC 4291 text form as `std::net::Ipv6Addr` parses it: eight groups of one to four hex
/// digits, or fewer with one `::` standing for at least one zero group, optionally ending
/// in a dotted quad that counts as two groups. (std's parser costs ten times as much.)
fn is_ipv6(b: &[u8]) -> bool {
    let (head, tail) = match b.windows(2).position(|w| w == b"::") {
        Some(i) => (&b[..i], Some(&b[i + 2..])),
        None => (b, None),
    };
    match tail {
        None => ipv6_groups(head, true) == Some(8),
        Some(tail) => match (ipv6_groups(head, false), ipv6_groups(tail, true)) {
            (Some(h), Some(t)) => h + t <= 7,
            _ => false,
        },
    }
}

/// Counts the groups of `s` (`a:b:c`), an empty `s` having none; a dotted quad may end
/// it when `ipv4_last`. None if any part is malformed.
fn ipv6_groups(s: &[u8], ipv4_last: bool) -> Option<usize> {
    if s.is_empty() {
        return Some(0);
    }
    let mut count = 0;
    let mut parts = s.split(|&c| c == b':').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        if last && ipv4_last && part.contains(&b'.') {
            parse_ipv4(part)?;
            count += 2;
        } else if (1..=4).contains(&part.len()) && part.iter().all(u8::is_ascii_hexdigit) {
            count += 1;
        } else {
            return None;
        }
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn remembered_addresses_still_reject_what_std_rejects() {
        let mut checked = CheckedAddresses::default();
        let tokens = [
            "10.0.0.1",
            "10.0.0.1x",
            "10.0.0.10",
            "10.0.0.256",
            "2600:1f18:42ba:931c::4cb6",
            "2600:1f18:42ba:931c::4cb6:1:2:3:4",
            "::1",
            ":::1",
            "1.2.3.4",
            "1.2.3.04",
        ];
        // Each token alone in a block and inside a longer one (a window past its end),
        // several rounds, so the second round is answered from the slots.
        for _ in 0..3 {
            for t in tokens {
                let expected = t.parse::<std::net::IpAddr>().is_ok();
                let alone = t.as_bytes();
                let inside = format!("{t} 10.0.0.1 1.2.3.4 ::1 and more text after it");
                for block in [alone, inside.as_bytes()] {
                    assert_eq!(checked.check(block, 0, t.len()).is_ok(), expected, "{t}");
                }
            }
        }
    }

    #[test]
    fn ipv6_agrees_with_std() {
        let groups = [
            "",
            "0",
            "1",
            "ab",
            "fFfF",
            "12345",
            "g",
            "1.2.3.4",
            "255.1.1.256",
        ];
        let mut cases = vec![
            "::".to_string(),
            ":::".to_string(),
            "::1".to_string(),
            "1::".to_string(),
            "::ffff:1.2.3.4".to_string(),
            "1.2.3.4::".to_string(),
            "1::2::3".to_string(),
            "2001:db8:1234:a100:8d6e:3477:df66:f105".to_string(),
            "2a02:cf40::".to_string(),
            "1:2:3:4:5:6:7:8:9".to_string(),
            "1:2:3:4:5:6:1.2.3.4".to_string(),
            "1:2:3:4:5:6:7::".to_string(),
            "::1:2:3:4:5:6:7".to_string(),
            "1:2:3:4::5:6:7:8".to_string(),
            "fe80::1%eth0".to_string(),
        ];
        // Every combination of up to three groups around and without a `::`.
        for a in groups {
            for b in groups {
                for c in groups {
                    cases.push(format!("{a}:{b}:{c}"));
                    cases.push(format!("{a}::{b}:{c}"));
                    cases.push(format!("{a}:{b}::{c}"));
                    cases.push(format!("1:2:3:4:5:{a}:{b}:{c}"));
                    cases.push(format!("{a}:{b}:{c}:4:5:6:7:8"));
                }
            }
        }
        for s in &cases {
            assert_eq!(is_ipv6(s.as_bytes()), s.parse::<Ipv6Addr>().is_ok(), "{s}");
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
    fn windowed_parsing_agrees_with_digit_by_digit() {
        let mut values: Vec<String> = (0..2000u64).map(|n| n.to_string()).collect();
        for n in [
            9_999_999u64,
            99_999_999,
            100_000_000,
            1_418_530_010,
            1_418_530_010_123,
            9_999_999_999_999_999,
            u64::MAX,
        ] {
            values.push(n.to_string());
            values.push(format!("0{n}"));
        }
        for bad in [
            "",
            "1a",
            "a1",
            "12345678x",
            "1234567:",
            "123456789012/",
            " 1",
            "-1",
            "1.5",
        ] {
            values.push(bad.to_string());
        }
        for v in &values {
            // Followed by a separator and more text, and at the very end of a block.
            for block in [format!("{v} 12345678 rest"), v.clone()] {
                assert_eq!(
                    parse_unsigned_in(block.as_bytes(), 0, v.len()),
                    parse_unsigned(v.as_bytes()),
                    "{v:?} in {block:?}"
                );
            }
        }
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
