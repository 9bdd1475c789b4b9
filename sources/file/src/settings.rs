//! The sources' settings, as they appear under `[sources.<name>]` with `type = "file"`,
//! `"directory"` or `"stdin"`.

use std::path::PathBuf;

use flowlog_source::SourceError;
use serde::Deserialize;

/// `type = "file"`: files, read once or followed as they grow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    pub paths: Vec<PathBuf>,
    /// Keep reading lines appended to the files (plain text only), and start over when a
    /// file is replaced (rotated) or truncated.
    #[serde(default)]
    pub follow: bool,
    /// Format of lines before any header line (default: the version 2 format).
    pub format: Option<String>,
    /// Seconds between looks for appended lines when following.
    #[serde(default = "default_poll")]
    pub poll_secs: f64,
}

/// `type = "directory"`: every object put in a directory (and its subdirectories) is read
/// once (any envelope: gzip, Parquet, CloudWatch Logs or Firehose JSON, text).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySource {
    pub path: PathBuf,
    /// Read subdirectories too (the `AWSLogs/<account>/vpcflowlogs/<region>/YYYY/MM/DD/`
    /// tree that `aws s3 sync` leaves).
    #[serde(default = "default_recursive")]
    pub recursive: bool,
    /// Levels of subdirectories read when recursive (AWS's hourly layout is 8 deep).
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    pub format: Option<String>,
    /// Seconds between looks for new objects.
    #[serde(default = "default_poll")]
    pub poll_secs: f64,
}

/// `type = "stdin"`: standard input, read once (no checkpoint: it cannot be re-read).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinSource {
    pub format: Option<String>,
}

impl DirectorySource {
    /// Levels of subdirectories read (0: the directory alone).
    pub(crate) fn depth(&self) -> usize {
        if self.recursive {
            self.max_depth
        } else {
            0
        }
    }
}

fn default_poll() -> f64 {
    1.0
}

fn default_recursive() -> bool {
    true
}

fn default_max_depth() -> usize {
    16
}

pub(crate) fn positive_poll(poll_secs: f64) -> Result<(), SourceError> {
    flowlog_component::duration::seconds("poll_secs", poll_secs, false)
        .map(|_| ())
        .map_err(SourceError::Config)
}
