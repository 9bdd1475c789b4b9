//! The names AWS gives a flow log's folders and objects in S3, and the time each covers.
//!
//! ```text
//! <prefix>/AWSLogs/<account>/vpcflowlogs/<region>/<yyyy>/<mm>/<dd>/[<HH>/]<object>
//! <prefix>/AWSLogs/aws-account-id=<account>/aws-service=vpcflowlogs/aws-region=<region>/
//!     year=<yyyy>/month=<mm>/day=<dd>/[hour=<HH>/]<object>
//! <object> = <account>_vpcflowlogs_<region>_<flow-log-id>_<YYYYMMDDTHHmmZ>_<hash>.log.gz
//!            (or .log.parquet)
//! ```
//!
//! Transit Gateway flow logs are delivered under the same names (service `vpcflowlogs`,
//! a `tgw-flow-log` id being an `fl-` id too).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// The root of every layout AWS writes; the part of a key before it is the user's prefix.
pub const AWS_LOGS: &str = "AWSLogs";

/// The folder of the flow-log service under an account.
pub const SERVICE: &str = "vpcflowlogs";

/// How the folders under `AWSLogs/` are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `123456789012/vpcflowlogs/us-east-1/2026/08/01/`
    Plain,
    /// `aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=us-east-1/year=2026/...`
    Hive,
}

/// The folder levels under `AWSLogs/`, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Account,
    Service,
    Region,
    Year,
    Month,
    Day,
    Hour,
}

impl Level {
    /// The level below this one; the hour (present with hourly partitions only) is last.
    pub fn next(self) -> Option<Level> {
        use Level::*;
        Some(match self {
            Account => Service,
            Service => Region,
            Region => Year,
            Year => Month,
            Month => Day,
            Day => Hour,
            Hour => return None,
        })
    }

    /// The level's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Level::Account => "account",
            Level::Service => "service",
            Level::Region => "region",
            Level::Year => "year",
            Level::Month => "month",
            Level::Day => "day",
            Level::Hour => "hour",
        }
    }

    /// The key of this level in the Hive-compatible layout.
    pub fn hive_key(self) -> &'static str {
        match self {
            Level::Account => "aws-account-id",
            Level::Service => "aws-service",
            Level::Region => "aws-region",
            Level::Year => "year",
            Level::Month => "month",
            Level::Day => "day",
            Level::Hour => "hour",
        }
    }

    /// Reads a folder name (without its `/`) at this level: its style and value, or
    /// `None` when it is not one (another service's folder, a stray upload).
    pub fn read(self, folder: &str) -> Option<(Style, &str)> {
        let (style, value) = match folder.split_once('=') {
            Some((key, value)) if key == self.hive_key() => (Style::Hive, value),
            Some(_) => return None,
            None => (Style::Plain, folder),
        };
        self.valid(value).then_some((style, value))
    }

    fn valid(self, value: &str) -> bool {
        let digits = |n: usize| value.len() == n && value.bytes().all(|b| b.is_ascii_digit());
        let number = || value.parse::<u32>().unwrap_or(u32::MAX);
        match self {
            Level::Account => digits(12),
            Level::Service => value == SERVICE,
            Level::Region => {
                !value.is_empty()
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }
            Level::Year => digits(4),
            Level::Month => digits(2) && (1..=12).contains(&number()),
            Level::Day => digits(2) && (1..=31).contains(&number()),
            Level::Hour => digits(2) && number() <= 23,
        }
    }
}

/// The date parts read so far on the way down to a partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DateParts {
    pub year: Option<i32>,
    pub month: Option<u32>,
    pub day: Option<u32>,
    pub hour: Option<u32>,
}

impl DateParts {
    /// These parts with the value of a date level added (other levels change nothing).
    pub fn with(mut self, level: Level, value: &str) -> Self {
        let Ok(n) = value.parse::<u32>() else {
            return self;
        };
        match level {
            Level::Year => self.year = Some(n as i32),
            Level::Month => self.month = Some(n),
            Level::Day => self.day = Some(n),
            Level::Hour => self.hour = Some(n),
            _ => {}
        }
        self
    }

    /// The time the partition these parts name covers, `[from, to)`; `None` before the
    /// year is known, or for a date that does not exist (February 30).
    pub fn span(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let year = self.year?;
        let (from, to) = match (self.month, self.day) {
            (None, _) => (
                NaiveDate::from_ymd_opt(year, 1, 1)?,
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?,
            ),
            (Some(month), None) => {
                let from = NaiveDate::from_ymd_opt(year, month, 1)?;
                (from, from.checked_add_months(chrono::Months::new(1))?)
            }
            (Some(month), Some(day)) => {
                let from = NaiveDate::from_ymd_opt(year, month, day)?;
                (from, from.succ_opt()?)
            }
        };
        let from = Utc.from_utc_datetime(&from.and_hms_opt(0, 0, 0)?);
        let to = Utc.from_utc_datetime(&to.and_hms_opt(0, 0, 0)?);
        match (self.day, self.hour) {
            (Some(_), Some(hour)) => {
                let from = from + Duration::hours(i64::from(hour));
                Some((from, from + Duration::hours(1)))
            }
            _ => Some((from, to)),
        }
    }
}

/// What an object's name says (AWS's own names only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectName<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub flow_log_id: &'a str,
    /// The 5-minute window the object belongs to (AWS's pages differ on whether it is the
    /// window's start or end).
    pub stamp: DateTime<Utc>,
}

impl<'a> ObjectName<'a> {
    /// Reads the last part of a key (`<account>_vpcflowlogs_<region>_<id>_<stamp>_<hash>.log.gz`).
    pub fn read(file: &'a str) -> Option<Self> {
        let mut parts = file.splitn(6, '_');
        let account = parts.next()?;
        let service = parts.next()?;
        let region = parts.next()?;
        let flow_log_id = parts.next()?;
        let stamp = parts.next()?;
        let _hash_and_extension = parts.next()?;
        if !Level::Account.valid(account)
            || service != SERVICE
            || !Level::Region.valid(region)
            || !flow_log_id.starts_with("fl-")
        {
            return None;
        }
        let stamp = NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%MZ").ok()?;
        Some(Self {
            account,
            region,
            flow_log_id,
            stamp: Utc.from_utc_datetime(&stamp),
        })
    }
}

/// The records asked for, `since <= start < until`, and how far beyond that the places
/// that may hold them are looked for.
///
/// A record is kept by its own `start`, which puts each flow in exactly one of two
/// adjacent ranges (a flow crossing midnight is not read twice by two nights' backfills),
/// and which every record has (`end` may be absent, `-`, in a NODATA or SKIPDATA record).
/// The folders and object names date an object's delivery, not its flows: a flow starts
/// up to the aggregation interval (10 minutes at most) before its window closes, and
/// delivery lags behind by minutes, so an object for a given time sits in a later folder,
/// and the stamp may mark either end of its window. The margin widens the partitions and
/// stamps looked at, on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub margin: Duration,
}

impl TimeRange {
    /// The margin `flowlog backfill` takes unless told otherwise: hours of delivery lag
    /// have been seen, and an hour's extra listing is cheap.
    pub const DEFAULT_MARGIN: Duration = Duration::hours(1);

    /// The times partitions and stamps are looked at: the range and its margin.
    pub fn widened(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.since - self.margin, self.until + self.margin)
    }

    /// Whether something covering `[from, to)` may hold a record in the range.
    pub fn may_hold(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        let (a, b) = self.widened();
        from < b && to > a
    }

    /// Whether `[from, to)` lies inside the widened range (nothing in it needs a closer look).
    pub fn covers(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        let (a, b) = self.widened();
        a <= from && to <= b
    }

    /// Whether a record that started at `start` is asked for.
    pub fn holds(&self, start: DateTime<Utc>) -> bool {
        self.since <= start && start < self.until
    }
}

/// A moment written in RFC 3339, for tests.
#[cfg(test)]
pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_read_in_either_style_and_others_are_not() {
        assert_eq!(
            Level::Account.read("123456789012"),
            Some((Style::Plain, "123456789012"))
        );
        assert_eq!(
            Level::Account.read("aws-account-id=123456789012"),
            Some((Style::Hive, "123456789012"))
        );
        assert_eq!(Level::Account.read("12345"), None);
        assert_eq!(Level::Service.read("elasticloadbalancing"), None);
        assert_eq!(
            Level::Service.read("aws-service=vpcflowlogs"),
            Some((Style::Hive, SERVICE))
        );
        assert_eq!(
            Level::Region.read("aws-region=eu-west-1").unwrap().1,
            "eu-west-1"
        );
        assert_eq!(Level::Region.read("EU_WEST"), None);
        assert_eq!(Level::Month.read("13"), None);
        assert_eq!(Level::Month.read("month=08").unwrap().1, "08");
        assert_eq!(Level::Day.read("day=8"), None);
        assert_eq!(Level::Hour.read("23").unwrap().1, "23");
        assert_eq!(Level::Hour.read("24"), None);
        // A key of another level is not this level's.
        assert_eq!(Level::Month.read("day=08"), None);
    }

    #[test]
    fn partitions_cover_their_calendar_span() {
        let parts = |y: &str, m: Option<&str>, d: Option<&str>, h: Option<&str>| {
            let mut p = DateParts::default().with(Level::Year, y);
            if let Some(m) = m {
                p = p.with(Level::Month, m);
            }
            if let Some(d) = d {
                p = p.with(Level::Day, d);
            }
            if let Some(h) = h {
                p = p.with(Level::Hour, h);
            }
            p.span()
        };
        assert_eq!(
            parts("2024", Some("02"), None, None),
            Some((at("2024-02-01T00:00:00Z"), at("2024-03-01T00:00:00Z")))
        );
        assert_eq!(
            parts("2026", Some("12"), Some("31"), None),
            Some((at("2026-12-31T00:00:00Z"), at("2027-01-01T00:00:00Z")))
        );
        assert_eq!(
            parts("2026", Some("08"), Some("01"), Some("23")),
            Some((at("2026-08-01T23:00:00Z"), at("2026-08-02T00:00:00Z")))
        );
        assert_eq!(
            parts("2026", None, None, None),
            Some((at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z")))
        );
        assert_eq!(parts("2026", Some("02"), Some("30"), None), None);
        assert_eq!(DateParts::default().span(), None);
    }

    #[test]
    fn object_names_say_account_region_flow_log_and_window() {
        let name = ObjectName::read(
            "123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20260801T0005Z_a1b2c3d4.log.gz",
        )
        .unwrap();
        assert_eq!(name.account, "123456789012");
        assert_eq!(name.region, "us-east-1");
        assert_eq!(name.flow_log_id, "fl-1234abcd");
        assert_eq!(name.stamp, at("2026-08-01T00:05:00Z"));
        let parquet = ObjectName::read(
            "123456789012_vpcflowlogs_eu-west-1_fl-0a_20261231T2355Z_ffff.log.parquet",
        )
        .unwrap();
        assert_eq!(parquet.stamp, at("2026-12-31T23:55:00Z"));
        for other in [
            "notes.txt",
            "123456789012_vpcflowlogs_us-east-1_fl-1_2026080_x.log.gz",
            "123456789012_CloudTrail_us-east-1_20260801T0005Z_x.json.gz",
            "123456789012_vpcflowlogs_us-east-1_eni-1_20260801T0005Z_x.log.gz",
        ] {
            assert_eq!(ObjectName::read(other), None, "{other}");
        }
    }

    #[test]
    fn a_record_is_kept_by_its_start_and_places_are_widened_by_the_margin() {
        let range = TimeRange {
            since: at("2026-08-01T00:00:00Z"),
            until: at("2026-08-02T00:00:00Z"),
            margin: Duration::hours(1),
        };
        assert!(range.holds(at("2026-08-01T00:00:00Z")));
        assert!(!range.holds(at("2026-08-02T00:00:00Z")));
        assert!(!range.holds(at("2026-07-31T23:59:59Z")));
        // The day before and after each hold an hour that may matter.
        assert!(range.may_hold(at("2026-07-31T00:00:00Z"), at("2026-08-01T00:00:00Z")));
        assert!(range.may_hold(at("2026-08-02T00:00:00Z"), at("2026-08-03T00:00:00Z")));
        assert!(!range.may_hold(at("2026-08-03T00:00:00Z"), at("2026-08-04T00:00:00Z")));
        assert!(!range.may_hold(at("2026-08-02T01:00:00Z"), at("2026-08-02T02:00:00Z")));
        assert!(range.covers(at("2026-08-01T00:00:00Z"), at("2026-08-02T00:00:00Z")));
        assert!(!range.covers(at("2026-07-31T00:00:00Z"), at("2026-08-01T00:00:00Z")));
    }
}
