//! Times as RFC 3339 text: `2021-12-20T11:38:17.000Z`, UTC with milliseconds, the form
//! Elasticsearch's `date` type and OCSF's `*_dt` attributes accept and Elastic's own
//! pipeline writes.

use std::cell::Cell;

use crate::json::Out;

/// Most bytes of a timestamp with milliseconds, quotes included: 26 for the years 0 to
/// 9999, 32 for the widest expanded year a millisecond `i64` reaches
/// (`"-292275055-05-16T16:47:04.192Z"`). The decoder accepts any time, so rows are sized
/// for the widest.
pub const RFC3339_BOUND: usize = 32;

/// The current time in Unix milliseconds: the time of records whose format has none.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Writes `millis` (Unix time in milliseconds) as a quoted RFC 3339 UTC timestamp.
pub fn write_rfc3339(out: &mut Out<'_>, millis: i64) {
    DateCache::default().write(out, millis)
}

/// `millis` as RFC 3339 UTC text (`2021-12-20T11:38:17.000Z`), unquoted: for documents
/// built as values rather than written row by row (findings).
pub fn rfc3339_string(millis: i64) -> String {
    let mut buffer = crate::json::OutBuffer::default();
    let mut rows = buffer.rows();
    rows.row(64, |o| write_rfc3339(o, millis));
    let n = rows.finish();
    let quoted = String::from_utf8_lossy(buffer.written(n));
    quoted.trim_matches('"').to_owned()
}

/// Writes timestamps, remembering the date of the last one: the times of a batch fall on
/// a day or two, and the calendar arithmetic costs more than the rest.
#[derive(Debug)]
pub struct DateCache {
    day: Cell<i64>,
    /// `"YYYY-MM-DD` of `day`.
    date: Cell<[u8; 11]>,
}

impl Default for DateCache {
    fn default() -> Self {
        Self {
            day: Cell::new(i64::MIN),
            date: Cell::new([0; 11]),
        }
    }
}

impl DateCache {
    /// Writes `millis` (Unix time in milliseconds) as a quoted RFC 3339 UTC timestamp.
    #[inline]
    pub fn write(&self, out: &mut Out<'_>, millis: i64) {
        let days = millis.div_euclid(86_400_000);
        let in_day = millis.rem_euclid(86_400_000) as u32;
        if days != self.day.get() {
            let (year, month, day) = flowlog_model::time::civil_from_days(days);
            if !(0..=9999).contains(&year) {
                return write_wide_year(out, year, month, day, in_day);
            }
            let mut date = *b"\"0000-00-00";
            let year = year as u32;
            date[1..3].copy_from_slice(pair(year / 100));
            date[3..5].copy_from_slice(pair(year % 100));
            date[6..8].copy_from_slice(pair(month));
            date[9..11].copy_from_slice(pair(day));
            self.date.set(date);
            self.day.set(days);
        }
        write_time_of_day(out, &self.date.get(), in_day);
    }
}

/// The date (as [`DateCache`] keeps it) and the time of day, written together.
#[inline(always)]
fn write_time_of_day(out: &mut Out<'_>, date: &[u8; 11], in_day: u32) {
    let (secs, ms) = (in_day / 1000, in_day % 1000);
    let mut text = *b"\"0000-00-00T00:00:00.000Z\"";
    text[..11].copy_from_slice(date);
    text[12..14].copy_from_slice(pair(secs / 3600));
    text[15..17].copy_from_slice(pair(secs / 60 % 60));
    text[18..20].copy_from_slice(pair(secs % 60));
    text[21] = b'0' + (ms / 100) as u8;
    text[22..24].copy_from_slice(pair(ms % 100));
    let mut window = [0u8; 32];
    window[..text.len()].copy_from_slice(&text);
    out.window(&window, text.len());
}

/// Years before 0 or after 9999 do not fit RFC 3339; flow logs never have them, but the
/// decoder accepts any time, so they are still written exactly (ISO 8601 expanded years).
#[cold]
fn write_wide_year(out: &mut Out<'_>, year: i64, month: u32, day: u32, in_day: u32) {
    let (secs, ms) = (in_day / 1000, in_day % 1000);
    let text = format!(
        "\"{year:+}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z\"",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    out.bytes(text.as_bytes());
}

/// The two ASCII digits of `n` (< 100).
#[inline(always)]
fn pair(n: u32) -> &'static [u8] {
    const PAIRS: [u8; 200] = {
        let mut t = [0u8; 200];
        let mut i = 0;
        while i < 100 {
            t[2 * i] = b'0' + (i / 10) as u8;
            t[2 * i + 1] = b'0' + (i % 10) as u8;
            i += 1;
        }
        t
    };
    let i = n as usize * 2;
    &PAIRS[i..i + 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339(ms: i64) -> String {
        format!("\"{}\"", rfc3339_string(ms))
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "\"1970-01-01T00:00:00.000Z\"");
        assert_eq!(rfc3339(1_640_000_297_000), "\"2021-12-20T11:38:17.000Z\"");
        assert_eq!(rfc3339(164_000_066_000), "\"1975-03-14T03:34:26.000Z\"");
        assert_eq!(rfc3339(951_825_599_999), "\"2000-02-29T11:59:59.999Z\"");
        assert_eq!(rfc3339(253_402_300_799_000), "\"9999-12-31T23:59:59.000Z\"");
        assert_eq!(
            rfc3339(253_402_300_800_000),
            "\"+10000-01-01T00:00:00.000Z\""
        );
        assert_eq!(rfc3339(-1), "\"1969-12-31T23:59:59.999Z\"");
    }
}
