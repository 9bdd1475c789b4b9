//! The source's settings, as they appear under `[sources.<name>]` with `type = "s3"`.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::layout::TimeRange;
use crate::plan::Filter;
use crate::progress::Tally;

fn default_margin() -> u64 {
    3600
}
fn default_workers() -> usize {
    8
}
fn default_read_timeout() -> u64 {
    60
}

/// `[sources.<name>]` of `type = "s3"`: the flow-log objects under a prefix whose
/// partitions and names fit a time range, read once each (what `flowlog backfill` runs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Source {
    /// `s3://bucket/prefix/`, or a local directory holding a copy of such a tree (what
    /// `aws s3 sync` leaves).
    pub url: String,
    /// The first moment asked for: RFC 3339, or a date (its midnight UTC).
    pub since: String,
    /// The moment after the last one asked for (same forms).
    pub until: String,
    /// Only these accounts (empty: all).
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Only these regions (empty: all).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Only these flow logs, by id (`fl-...`; empty: all).
    #[serde(default)]
    pub flow_logs: Vec<String>,
    /// How far beyond the range partitions and object names are looked at: folders date
    /// an object's delivery, not its flows.
    #[serde(default = "default_margin")]
    pub margin_secs: u64,
    /// Objects read at once.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Otherwise the AWS environment's (`AWS_REGION`, the profile's).
    pub region: Option<String>,
    /// A profile of the shared AWS config files (otherwise `AWS_PROFILE` or the default).
    pub profile: Option<String>,
    /// Another endpoint for S3 (a VPC endpoint, moto); `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
    /// Address buckets as `<endpoint>/<bucket>` (S3-compatible stores, moto).
    #[serde(default)]
    pub s3_force_path_style: bool,
    /// The format of lines in objects without a header line.
    pub format: Option<String>,
    /// An object whose body sends nothing for this long is given up for this attempt.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
    /// Read the objects this plan file lists instead of listing the bucket (what
    /// `flowlog backfill` writes, so that a resumed run reads what was planned).
    pub plan_file: Option<PathBuf>,
    /// Counts a caller watches (the backfill's progress line); not a setting.
    #[serde(skip)]
    pub tally: Option<Arc<Tally>>,
}

/// Where the objects are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    S3 {
        bucket: String,
        prefix: String,
    },
    /// A directory: keys are paths under `/`, so the layout's names above the directory
    /// given are seen too.
    Directory {
        prefix: String,
    },
}

impl Location {
    /// Reads `url`: `s3://bucket/prefix`, or a path (relative to the working directory).
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{url:?} names no bucket (s3://bucket/prefix/)"));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: folder(prefix),
            });
        }
        if url.contains("://") {
            return Err(format!(
                "{url:?} is neither s3://bucket/prefix/ nor a local directory"
            ));
        }
        let path = std::path::absolute(url).map_err(|e| format!("{url}: {e}"))?;
        let text = path
            .to_str()
            .ok_or_else(|| format!("{url:?}: the path is not UTF-8"))?;
        Ok(Location::Directory {
            prefix: folder(text.trim_start_matches('/')),
        })
    }

    /// The location as a URL of its own kind, absolute: what names it whatever the
    /// working directory.
    pub fn url(&self) -> String {
        match self {
            Location::S3 { prefix, .. } | Location::Directory { prefix } => self.describe(prefix),
        }
    }

    /// How a key here is named in messages.
    pub fn describe(&self, key: &str) -> String {
        match self {
            Location::S3 { bucket, .. } => format!("s3://{bucket}/{key}"),
            Location::Directory { .. } => format!("/{key}"),
        }
    }
}

/// A prefix as a folder: empty, or ending with `/`.
fn folder(prefix: &str) -> String {
    match prefix {
        "" => String::new(),
        p if p.ends_with('/') => p.to_string(),
        p => format!("{p}/"),
    }
}

impl S3Source {
    /// The time range and what else the settings ask for.
    pub fn filter(&self) -> Result<Filter, String> {
        let moment = |name: &str, text: &str| {
            flowlog_model_time(text).ok_or_else(|| {
                format!(
                    "{name} {text:?} is not a moment: RFC 3339 (`2026-08-01T00:00:00Z`) or a \
                     date (`2026-08-01`, its midnight UTC)"
                )
            })
        };
        let since = moment("since", &self.since)?;
        let until = moment("until", &self.until)?;
        if since >= until {
            return Err(format!(
                "since ({}) must be before until ({})",
                self.since, self.until
            ));
        }
        Ok(Filter {
            range: TimeRange {
                since,
                until,
                margin: chrono::Duration::seconds(self.margin_secs.min(i64::MAX as u64) as i64),
            },
            accounts: self.accounts.clone(),
            regions: self.regions.clone(),
            flow_logs: self.flow_logs.clone(),
        })
    }

    /// The settings are usable.
    pub(crate) fn settings_hold(&self) -> Result<(), String> {
        Location::parse(&self.url)?;
        self.filter()?;
        if !(1..=256).contains(&self.workers) {
            return Err("workers must be from 1 to 256".into());
        }
        if self.read_timeout_secs == 0 {
            return Err("read_timeout_secs must be at least 1".into());
        }
        if self.margin_secs > 7 * 86_400 {
            return Err("margin_secs must be at most a week (604800)".into());
        }
        for account in &self.accounts {
            if crate::layout::Level::Account.read(account).is_none() {
                return Err(format!(
                    "accounts: {account:?} is not a 12-digit account id"
                ));
            }
        }
        Ok(())
    }
}

/// A moment from RFC 3339 or a date, as the rest of flowlog reads them.
fn flowlog_model_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let millis = flowlog_model::time::parse_instant(text)?;
    chrono::DateTime::from_timestamp_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_a_bucket_and_prefix_or_a_directory() {
        assert_eq!(
            Location::parse("s3://logs/team/flows").unwrap(),
            Location::S3 {
                bucket: "logs".into(),
                prefix: "team/flows/".into()
            }
        );
        assert_eq!(
            Location::parse("s3://logs").unwrap(),
            Location::S3 {
                bucket: "logs".into(),
                prefix: String::new()
            }
        );
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("https://bucket/x").is_err());
        assert_eq!(
            Location::parse("/srv/archive").unwrap(),
            Location::Directory {
                prefix: "srv/archive/".into()
            }
        );
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let base = "url = \"s3://b/\"\nsince = \"2026-08-01\"\nuntil = \"2026-08-02\"\n";
        let ok: S3Source = toml::from_str(base).unwrap();
        ok.settings_hold().unwrap();
        assert_eq!((ok.workers, ok.margin_secs), (8, 3600));
        for (extra, needle) in [
            ("workers = 0", "workers"),
            ("accounts = [\"12\"]", "12-digit"),
            ("margin_secs = 9999999", "margin_secs"),
        ] {
            let s: S3Source = toml::from_str(&format!("{base}{extra}")).unwrap();
            let err = s.settings_hold().unwrap_err();
            assert!(err.contains(needle), "{extra}: {err}");
        }
        let backwards: S3Source =
            toml::from_str("url = \"s3://b/\"\nsince = \"2026-08-02\"\nuntil = \"2026-08-01\"\n")
                .unwrap();
        assert!(backwards
            .settings_hold()
            .unwrap_err()
            .contains("must be before"));
        let vague: S3Source =
            toml::from_str("url = \"s3://b/\"\nsince = \"august\"\nuntil = \"2026-08-01\"\n")
                .unwrap();
        assert!(vague
            .settings_hold()
            .unwrap_err()
            .contains("is not a moment"));
    }
}
