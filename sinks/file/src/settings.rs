//! The sink's settings, as they appear under `[sinks.<name>]` with `type = "file"`.

use std::path::PathBuf;

use flowlog_normalize::Target;
use flowlog_sink::SinkError;
use serde::Deserialize;

/// `[sinks.<name>]` of `type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file records are appended to (created, with its directory, if missing).
    pub path: PathBuf,
    /// `raw`, `ecs`, `ocsf` or `cim`.
    #[serde(default = "default_format")]
    pub format: String,
    /// OCSF version for `format = "ocsf"` (default 1.1.0).
    pub ocsf_version: Option<String>,
    /// Envelope metadata the format has no field for, as one object under this key.
    pub envelope_key: Option<String>,
    /// Make each batch durable (fsync) before acknowledging it.
    #[serde(default = "yes")]
    pub sync: bool,
}

fn default_format() -> String {
    "raw".into()
}

fn yes() -> bool {
    true
}

impl FileConfig {
    pub(crate) fn target(&self) -> Result<Target, SinkError> {
        Target::named(&self.format, self.ocsf_version.as_deref()).map_err(SinkError::Config)
    }
}
