//! The proleptic Gregorian calendar as day counts from 1970-01-01 (Howard Hinnant's
//! algorithms), and RFC 3339 date-times read from text, for every crate that reads or
//! writes dates without a time library.

/// Days since 1970-01-01 of a civil date (`month` 1-12, `day` 1-31).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Milliseconds since the epoch of an RFC 3339 date-time (`2024-05-01T12:00:00.123456Z`,
/// `2024-05-01T14:00:00+02:00`; `t`/`z` in either case, a space for `T` as RFC 3339
/// allows). Digits past the millisecond are dropped. None for anything else.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    // Leap seconds (60) are allowed by RFC 3339 and folded into the next second.
    if !(1..=12).contains(&month) || day < 1 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let month_days = [
        31,
        28 + i64::from(is_leap(year)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day > month_days[month as usize - 1] {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let end = i.min(start + 3);
        millis = digits(start..end)? * 10i64.pow(3 - (end - start) as u32);
    }
    let offset_minutes = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Milliseconds since the epoch of a moment a person types: an RFC 3339 date-time, or a
/// date alone (`2026-08-01`: its midnight, UTC). None for anything else.
pub fn parse_instant(text: &str) -> Option<i64> {
    let text = text.trim();
    match text.len() {
        10 => parse_rfc3339(&format!("{text}T00:00:00Z")),
        _ => parse_rfc3339(text),
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_alone_is_its_midnight_utc() {
        assert_eq!(
            parse_instant("2024-05-01"),
            parse_rfc3339("2024-05-01T00:00:00Z")
        );
        assert_eq!(
            parse_instant(" 2024-05-01T12:00:00Z "),
            Some(1_714_564_800_000)
        );
        assert_eq!(parse_instant("2024-02-30"), None);
        assert_eq!(parse_instant("yesterday"), None);
    }

    #[test]
    fn rfc3339_times_parse_to_milliseconds() {
        let base = 1_714_564_800_000; // 2024-05-01T12:00:00Z
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00Z"), Some(base));
        assert_eq!(parse_rfc3339("2024-05-01t12:00:00z"), Some(base));
        assert_eq!(parse_rfc3339("2024-05-01 12:00:00Z"), Some(base));
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.5Z"), Some(base + 500));
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.123456789Z"),
            Some(base + 123)
        );
        assert_eq!(parse_rfc3339("2024-05-01T14:30:00+02:30"), Some(base));
        assert_eq!(parse_rfc3339("2024-05-01T09:00:00-03:00"), Some(base));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1000));
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-13-01T12:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00+2:00",
            "2024-05-01T12:00:00Zjunk",
            "2024-05-01T12:00:00+24:00",
            "２024-05-01T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_day_for_four_centuries_round_trips() {
        let mut previous = civil_from_days(-1);
        assert_eq!(previous, (1969, 12, 31));
        for days in 0..146_097 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
            assert!((y, m, d) > previous);
            previous = (y, m, d);
        }
        assert_eq!(civil_from_days(20_601), (2026, 5, 28));
    }
}
