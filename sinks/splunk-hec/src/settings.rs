//! The sink's settings, as they appear under `[sinks.<name>]` with `type = "splunk_hec"`.

use std::path::PathBuf;

use flowlog_component::duration::seconds;
pub use flowlog_normalize::RecordFormat as Format;
use flowlog_normalize::Target;
pub use flowlog_sink::settings::Compression;
use flowlog_sink::SinkError;
use serde::Deserialize;

/// Which collector endpoint receives the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `/services/collector/event`: one JSON envelope per event (time, host, source,
    /// sourcetype, index, indexed fields).
    #[default]
    Event,
    /// `/services/collector/raw`: events one per line, metadata as query parameters
    /// (no per-event time or indexed fields; Splunk extracts the time).
    Raw,
}

/// Which record time becomes the event's `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TimeField {
    /// The start of the capture window (what the Splunk Add-on for AWS extracts).
    #[default]
    Start,
    /// Its end (ECS `@timestamp`).
    End,
}

fn default_max_bytes() -> usize {
    // Splunk Cloud's default limit is 1 MB per request; stay under it.
    1_000_000
}
fn default_ack_poll() -> f64 {
    10.0
}
fn default_ack_timeout() -> f64 {
    300.0
}

flowlog_sink::http_sink_settings! {
/// `[sinks.<name>]` of `type = "splunk_hec"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HecConfig {
    /// Base URL of the collector, e.g. `https://splunk.example.com:8088`.
    pub endpoint: String,
    /// The HEC token (use `${ENV_VAR}` rather than writing it here).
    pub token: Option<String>,
    /// A file holding the token (trailing white space ignored).
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub format: Format,
    /// OCSF version for `format = "ocsf"` (default 1.1.0).
    pub ocsf_version: Option<String>,
    /// Envelope metadata the format has no field for, as one object under this key
    /// (JSON formats).
    pub envelope_key: Option<String>,
    #[serde(default, rename = "endpoint_kind")]
    pub endpoint_kind: Endpoint,
    pub index: Option<String>,
    /// Default: `aws:cloudwatchlogs:vpcflow` for lines, `_json` for documents.
    pub sourcetype: Option<String>,
    /// Default: where the record came from (file path, S3 URI).
    pub source: Option<String>,
    pub host: Option<String>,
    #[serde(default)]
    pub time_field: TimeField,
    /// Use indexer acknowledgement (the token must have it enabled).
    #[serde(default)]
    pub indexer_acknowledgement: bool,
    #[serde(default = "default_ack_poll")]
    pub ack_poll_interval_secs: f64,
    /// Seconds to wait for an acknowledgement before sending the request again.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_secs: f64,
}
max_bytes = "default_max_bytes";
}

impl HecConfig {
    /// A configuration with every default, for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        flowlog_sink::settings::with_defaults(serde_json::json!({ "endpoint": endpoint.into() }))
    }

    /// The token, from `token` or `token_file`.
    pub fn resolve_token(&self) -> Result<String, SinkError> {
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                return Err(SinkError::Config(
                    "give `token` or `token_file`, not both".into(),
                ))
            }
            (Some(t), None) => t.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| SinkError::Config(format!("token_file {}: {e}", path.display())))?
                .trim()
                .to_string(),
            (None, None) => {
                return Err(SinkError::Config(
                    "no HEC token: set `token` (e.g. \"${SPLUNK_HEC_TOKEN}\") or `token_file`"
                        .into(),
                ))
            }
        };
        if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
            return Err(SinkError::Config(
                "the HEC token is empty or holds spaces or control characters".into(),
            ));
        }
        Ok(token)
    }

    /// The document target, for JSON formats.
    pub fn target(&self) -> Result<Option<Target>, SinkError> {
        self.format
            .target(self.ocsf_version.as_deref())
            .map_err(SinkError::Config)
    }

    pub fn sourcetype(&self) -> &str {
        match (&self.sourcetype, self.format) {
            (Some(s), _) => s,
            (None, Format::Line) => "aws:cloudwatchlogs:vpcflow",
            (None, _) => "_json",
        }
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), SinkError> {
        flowlog_sink::http::http_endpoint(&self.endpoint)?;
        self.tuning().validate()?;
        for (name, v) in [
            ("ack_poll_interval_secs", self.ack_poll_interval_secs),
            ("ack_timeout_secs", self.ack_timeout_secs),
        ] {
            seconds(name, v, false).map_err(SinkError::Config)?;
        }
        self.target()?;
        self.resolve_token()?;
        Ok(())
    }
}
