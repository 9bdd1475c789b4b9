//! The sink's settings, as they appear under `[sinks.<name>]` with `type = "security_lake"`.

use std::path::PathBuf;
use std::time::Duration;

use flowlog_component::duration::seconds;
use flowlog_sink::SinkError;
use serde::Deserialize;

/// The shortest and longest time an object may stay open (AWS's guidance for custom
/// sources: between five minutes and a day).
pub const ROLL_INTERVAL_RANGE: (f64, f64) = (300.0, 86_400.0);

/// `[sinks.<name>]` of `type = "security_lake"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityLakeConfig {
    /// The lake's bucket (`aws-security-data-lake-<region>-<id>`); or `directory`.
    pub bucket: Option<String>,
    /// A local directory to write the same layout into instead of a bucket.
    pub directory: Option<PathBuf>,
    /// The custom source's name, as registered (`CreateCustomLogSource`).
    pub source_name: String,
    /// Where the source's objects go in the bucket or directory (default `ext/<source_name>`;
    /// set it to the location `CreateCustomLogSource` gave when that differs).
    pub prefix: Option<String>,
    /// The bucket's region; also the partition of records that name none (else the AWS
    /// chain's region, for a bucket).
    pub region: Option<String>,
    /// The partition of records that name no account, or not 12 digits (custom formats
    /// without `account-id`, `unknown`).
    pub account_id: Option<String>,
    /// A profile of the shared AWS files.
    pub profile: Option<String>,
    /// Another S3 endpoint (an S3-compatible store, moto).
    pub endpoint_url: Option<String>,
    /// Address the bucket as `<endpoint>/<bucket>`.
    #[serde(default)]
    pub force_path_style: bool,
    /// The provider role Security Lake created for the source, assumed for every request.
    pub role_arn: Option<String>,
    /// The external id the provider role's trust policy requires.
    pub external_id: Option<String>,
    /// How long an object stays open before it is written (seconds, 300 to 86400).
    #[serde(default = "default_roll_interval")]
    pub roll_interval_secs: f64,
    /// An object is written once the records it holds take this much memory (bytes).
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: usize,
    /// All open objects together, in the spool: past this, the largest is written early
    /// (bytes).
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// Rows per Parquet row group.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// Objects open at once (each holds a spool file open): past this, the largest is
    /// written early.
    #[serde(default = "default_max_open_objects")]
    pub max_open_objects: usize,
    /// zstd level (1 to 22).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Retries of a failed upload start this far apart, doubling (seconds).
    #[serde(default = "default_retry_initial")]
    pub retry_initial_backoff_secs: f64,
    /// ... up to this (seconds).
    #[serde(default = "default_retry_max")]
    pub retry_max_backoff_secs: f64,
}

fn default_roll_interval() -> f64 {
    300.0
}

fn default_max_object_bytes() -> usize {
    256 << 20
}

fn default_max_buffered_bytes() -> usize {
    1 << 30
}

fn default_row_group_rows() -> usize {
    128 * 1024
}

fn default_max_open_objects() -> usize {
    256
}

fn default_zstd_level() -> i32 {
    3
}

fn default_retry_initial() -> f64 {
    1.0
}

fn default_retry_max() -> f64 {
    60.0
}

/// Where objects are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Bucket(String),
    Directory(PathBuf),
}

impl SecurityLakeConfig {
    pub fn destination(&self) -> Result<Destination, SinkError> {
        match (&self.bucket, &self.directory) {
            (Some(bucket), None) if !bucket.is_empty() && !bucket.contains('/') => {
                Ok(Destination::Bucket(bucket.clone()))
            }
            (Some(bucket), None) => Err(SinkError::Config(format!(
                "bucket `{bucket}` is not a bucket name (give the location's path in `prefix`)"
            ))),
            (None, Some(dir)) if !dir.as_os_str().is_empty() => {
                Ok(Destination::Directory(dir.clone()))
            }
            _ => Err(SinkError::Config(
                "set either `bucket` (S3) or `directory` (a local directory), not both".into(),
            )),
        }
    }

    /// The key prefix of every object, without a trailing slash.
    pub fn prefix(&self) -> String {
        match &self.prefix {
            Some(prefix) => prefix.trim_matches('/').to_string(),
            None => format!("ext/{}", self.source_name),
        }
    }

    pub fn roll_interval(&self) -> Duration {
        flowlog_component::duration::duration(self.roll_interval_secs)
    }

    pub(crate) fn check(&self) -> Result<(), SinkError> {
        let config = |m: String| SinkError::Config(m);
        self.destination()?;
        // Security Lake's own rule for a custom source's name.
        let name_ok = (1..=64).contains(&self.source_name.len())
            && self
                .source_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(config(format!(
                "source_name `{}` must be 1 to 64 letters, digits, `-` or `_`",
                self.source_name
            )));
        }
        let (least, most) = ROLL_INTERVAL_RANGE;
        if !(least..=most).contains(&self.roll_interval_secs) {
            return Err(config(format!(
                "roll_interval_secs must be from {least} (five minutes) to {most} (a day), \
                 as Security Lake asks of custom sources, not {}",
                self.roll_interval_secs
            )));
        }
        if self.max_object_bytes < 1 << 20 || self.max_buffered_bytes < self.max_object_bytes {
            return Err(config(
                "max_object_bytes must be at least 1 MiB and max_buffered_bytes at least \
                 max_object_bytes"
                    .into(),
            ));
        }
        if self.row_group_rows == 0 {
            return Err(config("row_group_rows must be more than 0".into()));
        }
        if !(1..=4096).contains(&self.max_open_objects) {
            return Err(config(format!(
                "max_open_objects must be from 1 to 4096, not {}",
                self.max_open_objects
            )));
        }
        let prefix = self.prefix();
        if prefix.is_empty()
            || prefix
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(config(format!(
                "prefix `{}` must name a folder inside the bucket or directory (as \
                 `ext/<source>`)",
                self.prefix.as_deref().unwrap_or_default()
            )));
        }
        if let Some(region) = &self.region {
            if !crate::object::is_region(region) {
                return Err(config(format!(
                    "region `{region}` is not a region name (as `us-east-1`)"
                )));
            }
        }
        if let Some(account) = &self.account_id {
            if !crate::object::is_account(account) {
                return Err(config(format!(
                    "account_id `{account}` is not an AWS account id (12 digits)"
                )));
            }
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(config(format!(
                "zstd_level must be from 1 to 22, not {}",
                self.zstd_level
            )));
        }
        seconds(
            "retry_initial_backoff_secs",
            self.retry_initial_backoff_secs,
            false,
        )
        .map_err(config)?;
        seconds("retry_max_backoff_secs", self.retry_max_backoff_secs, false).map_err(config)?;
        if self.external_id.is_some() && self.role_arn.is_none() {
            return Err(config("external_id needs role_arn".into()));
        }
        if self.directory.is_some()
            && (self.role_arn.is_some() || self.endpoint_url.is_some() || self.profile.is_some())
        {
            return Err(config(
                "role_arn, endpoint_url and profile are for a bucket, not a directory".into(),
            ));
        }
        Ok(())
    }
}
