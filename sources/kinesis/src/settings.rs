//! The source's settings, as they appear under `[sources.<name>]` with `type = "kinesis"`.

use std::time::Duration;

use serde::Deserialize;

use crate::balance::Balance;

/// Where a shard that has no checkpoint yet is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartingPosition {
    /// The oldest record the stream keeps.
    TrimHorizon,
    /// Records put from when the shard's lease is first taken.
    Latest,
    /// Records put from `starting_timestamp` on.
    AtTimestamp,
}

fn default_position() -> StartingPosition {
    StartingPosition::TrimHorizon
}
fn default_lease_secs() -> f64 {
    10.0
}
fn default_max_leases() -> usize {
    usize::MAX
}
fn default_steal() -> usize {
    1
}
fn default_max_records() -> i32 {
    10_000
}
fn default_idle() -> f64 {
    1.0
}

/// `[sources.<name>]` of `type = "kinesis"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSource {
    /// The stream, by name (in the region of the settings or the environment)...
    pub stream_name: Option<String>,
    /// ...or by ARN (which names its region and account).
    pub stream_arn: Option<String>,
    /// Names the lease table (`flowlog-<application_name>`) unless `lease_table` does;
    /// every process that splits one stream between them uses the same.
    pub application_name: Option<String>,
    /// The DynamoDB table of the leases; created (on-demand capacity) when missing.
    pub lease_table: Option<String>,
    pub region: Option<String>,
    /// A profile of the shared AWS config files (otherwise `AWS_PROFILE` or the default).
    pub profile: Option<String>,
    /// Another endpoint for Kinesis and DynamoDB (VPC endpoints, moto, LocalStack);
    /// `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
    #[serde(default = "default_position")]
    pub starting_position: StartingPosition,
    /// With `starting_position = "at_timestamp"`: RFC 3339.
    pub starting_timestamp: Option<String>,
    /// The format of flow-log lines in the log events (otherwise the default format).
    pub format: Option<String>,
    /// How long a lease's counter may stand still before another worker takes it (the
    /// KCL's failover time). Leases are renewed three times within it.
    #[serde(default = "default_lease_secs")]
    pub lease_duration_secs: f64,
    /// The most shards this process reads at once.
    #[serde(default = "default_max_leases")]
    pub max_leases_per_worker: usize,
    /// The most leases taken from busier workers in one round.
    #[serde(default = "default_steal")]
    pub max_leases_to_steal: usize,
    /// The most records one GetRecords call returns (Kinesis allows 10,000).
    #[serde(default = "default_max_records")]
    pub max_records: i32,
    /// How long a shard's reader waits after a call that returned nothing.
    #[serde(default = "default_idle")]
    pub idle_poll_secs: f64,
}

impl KinesisSource {
    /// The settings are usable: one way to name the stream, and Kinesis's own limits.
    pub fn settings_hold(&self) -> Result<(), String> {
        match (&self.stream_name, &self.stream_arn) {
            (Some(_), Some(_)) => return Err("set stream_name or stream_arn, not both".into()),
            (None, None) => return Err("stream_name or stream_arn is required".into()),
            (None, Some(arn)) if !arn.starts_with("arn:") || !arn.contains(":stream/") => {
                return Err(format!(
                    "stream_arn {arn:?} is not a stream's ARN (arn:aws:kinesis:<region>:<account>:stream/<name>)"
                ))
            }
            _ => {}
        }
        if self.application_name.is_none() && self.lease_table.is_none() {
            return Err(
                "application_name (or lease_table) is required: it names the lease table the \
                 processes reading this stream share"
                    .into(),
            );
        }
        match (self.starting_position, &self.starting_timestamp) {
            (StartingPosition::AtTimestamp, None) => {
                return Err("starting_position = \"at_timestamp\" needs starting_timestamp".into())
            }
            (StartingPosition::AtTimestamp, Some(t)) if !looks_like_rfc3339(t) => {
                return Err(format!("starting_timestamp {t:?} is not an RFC 3339 time"))
            }
            (StartingPosition::TrimHorizon | StartingPosition::Latest, Some(_)) => {
                return Err(
                    "starting_timestamp goes with starting_position = \"at_timestamp\"".into(),
                )
            }
            _ => {}
        }
        if !(self.lease_duration_secs.is_finite() && self.lease_duration_secs >= 1.0) {
            return Err("lease_duration_secs must be at least 1".into());
        }
        if self.max_leases_per_worker == 0 || self.max_leases_to_steal == 0 {
            return Err("max_leases_per_worker and max_leases_to_steal must be at least 1".into());
        }
        if !(1..=10_000).contains(&self.max_records) {
            return Err("max_records must be from 1 to 10000 (Kinesis's limit)".into());
        }
        if !(self.idle_poll_secs.is_finite() && (0.2..=60.0).contains(&self.idle_poll_secs)) {
            // Five GetRecords calls a second per shard is Kinesis's limit.
            return Err("idle_poll_secs must be from 0.2 to 60".into());
        }
        Ok(())
    }

    /// The lease table's name.
    pub fn lease_table(&self) -> String {
        match (&self.lease_table, &self.application_name) {
            (Some(table), _) => table.clone(),
            (None, Some(application)) => format!("flowlog-{application}"),
            (None, None) => unreachable!("settings_hold requires one"),
        }
    }

    /// The lease taker's settings.
    pub fn balance(&self) -> Balance {
        Balance {
            lease_duration: Duration::from_secs_f64(self.lease_duration_secs),
            max_leases: self.max_leases_per_worker,
            max_steal: self.max_leases_to_steal,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS` and a zone: enough to refuse what is plainly not a time before
/// the stream is asked.
fn looks_like_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':'
        && (text.ends_with('Z') || text.ends_with('z') || text[19..].contains(['+', '-']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> KinesisSource {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_follow_the_kcl() {
        let s = parse("stream_name = \"flow-logs\"\napplication_name = \"siem\"");
        s.settings_hold().unwrap();
        assert_eq!(s.lease_table(), "flowlog-siem");
        assert_eq!(s.starting_position, StartingPosition::TrimHorizon);
        let b = s.balance();
        assert_eq!(b.lease_duration, Duration::from_secs(10));
        assert_eq!((b.max_leases, b.max_steal), (usize::MAX, 1));
        assert_eq!(s.max_records, 10_000);
    }

    #[test]
    fn wrong_settings_say_what_is_wrong() {
        let cases = [
            ("application_name = \"a\"", "stream_name or stream_arn is required"),
            (
                "stream_name = \"s\"\nstream_arn = \"arn:aws:kinesis:us-east-1:1:stream/s\"\napplication_name = \"a\"",
                "not both",
            ),
            ("stream_arn = \"s\"\napplication_name = \"a\"", "is not a stream's ARN"),
            ("stream_name = \"s\"", "application_name (or lease_table) is required"),
            (
                "stream_name = \"s\"\napplication_name = \"a\"\nstarting_position = \"at_timestamp\"",
                "needs starting_timestamp",
            ),
            (
                "stream_name = \"s\"\napplication_name = \"a\"\nstarting_position = \"at_timestamp\"\nstarting_timestamp = \"yesterday\"",
                "is not an RFC 3339 time",
            ),
            ("stream_name = \"s\"\napplication_name = \"a\"\nmax_records = 20000", "Kinesis's limit"),
            ("stream_name = \"s\"\napplication_name = \"a\"\nidle_poll_secs = 0.01", "from 0.2 to 60"),
            ("stream_name = \"s\"\napplication_name = \"a\"\nlease_duration_secs = 0.5", "at least 1"),
        ];
        for (text, expected) in cases {
            let why = parse(text).settings_hold().unwrap_err();
            assert!(why.contains(expected), "{text}: {why}");
        }
        let at = parse(
            "stream_arn = \"arn:aws:kinesis:eu-west-1:123456789012:stream/flow-logs\"\n\
             lease_table = \"leases\"\nstarting_position = \"at_timestamp\"\n\
             starting_timestamp = \"2026-12-01T00:00:00Z\"",
        );
        at.settings_hold().unwrap();
        assert_eq!(at.lease_table(), "leases");
        assert!(toml::from_str::<KinesisSource>("stream_name = \"s\"\nshard = 1").is_err());
    }
}
