//! The sink's settings, as they appear under `[sinks.<name>]` with `type = "security_hub"`.

use flowlog_component::duration::seconds;
use flowlog_sink::SinkError;
use serde::Deserialize;

fn default_batch_timeout() -> f64 {
    1.0
}
fn default_max_findings() -> usize {
    // BatchImportFindings takes at most 100 findings a call.
    100
}
fn default_request_timeout() -> f64 {
    30.0
}
fn default_initial_backoff() -> f64 {
    0.2
}
fn default_max_backoff() -> f64 {
    30.0
}

/// `[sinks.<name>]` of `type = "security_hub"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityHubConfig {
    /// Default: the environment's (`AWS_REGION`, the profile).
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Another endpoint (a VPC endpoint, moto).
    pub endpoint_url: Option<String>,
    /// The account whose default product imports the findings; default: the caller's
    /// (STS `GetCallerIdentity`).
    pub aws_account_id: Option<String>,
    /// Seconds findings wait for more before a call.
    #[serde(default = "default_batch_timeout")]
    pub batch_timeout_secs: f64,
    /// Most findings in one call (at most 100).
    #[serde(default = "default_max_findings")]
    pub max_findings: usize,
    /// Seconds a call (STS or Security Hub) may take before it is given up on and, for an
    /// import, made again.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: f64,
    #[serde(default = "default_initial_backoff")]
    pub retry_initial_backoff_secs: f64,
    #[serde(default = "default_max_backoff")]
    pub retry_max_backoff_secs: f64,
}

impl SecurityHubConfig {
    /// A configuration with every default.
    pub fn new() -> Self {
        flowlog_sink::settings::with_defaults(serde_json::json!({}))
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), SinkError> {
        for (name, v) in [
            ("batch_timeout_secs", self.batch_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            (
                "retry_initial_backoff_secs",
                self.retry_initial_backoff_secs,
            ),
            ("retry_max_backoff_secs", self.retry_max_backoff_secs),
        ] {
            seconds(name, v, false).map_err(SinkError::Config)?;
        }
        if !(1..=100).contains(&self.max_findings) {
            return Err(SinkError::Config(
                "max_findings must be 1 to 100 (BatchImportFindings takes at most 100)".into(),
            ));
        }
        if let Some(account) = &self.aws_account_id {
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SinkError::Config(format!(
                    "aws_account_id `{account}` is not a 12-digit AWS account id"
                )));
            }
        }
        if let Some(url) = &self.endpoint_url {
            flowlog_sink::http::http_endpoint(url)?;
        }
        Ok(())
    }
}

impl Default for SecurityHubConfig {
    fn default() -> Self {
        Self::new()
    }
}
