//! The source's settings, as they appear under `[sources.<name>]` with `type = "firehose"`.

use flowlog_component::listen::ListenAddress;
use std::path::PathBuf;

use serde::Deserialize;

fn default_max_requests() -> usize {
    8
}
fn default_max_body() -> usize {
    // Firehose's own limit for an HTTP endpoint request.
    64 << 20
}
fn default_max_bytes_in_flight() -> usize {
    // One of Firehose's largest requests gzip'd and inflated, or many of its usual 1 to
    // 5 MiB ones.
    136 << 20
}
fn default_max_inflated_bytes() -> u64 {
    1 << 30
}
fn default_body_timeout() -> u64 {
    30
}
fn default_header_timeout() -> u64 {
    10
}
fn default_max_connections() -> usize {
    512
}

/// `[sources.<name>]` of `type = "firehose"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseSource {
    /// Where to listen, e.g. `0.0.0.0:8443`.
    pub address: ListenAddress,
    /// The access key configured in the Firehose stream's destination.
    pub access_key: String,
    /// HTTPS (Firehose requires it; a load balancer in front may end TLS instead).
    pub tls: Option<ServerTls>,
    /// The format of the lines, for CloudWatch Logs subscriptions with a custom format.
    pub format: Option<String>,
    /// Requests taken in at once; more are answered 503.
    #[serde(default = "default_max_requests")]
    pub max_requests: usize,
    /// Largest request body, as received and after its `Content-Encoding` is undone;
    /// larger is 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The most one request's records may decompress to (gzip'd CloudWatch Logs
    /// payloads); it is also held to 64 times the request's size (at least 64 MiB).
    /// Past it the request is 413.
    #[serde(default = "default_max_inflated_bytes")]
    pub max_inflated_bytes: u64,
    /// Bytes of request bodies taken in at once; more are answered 503.
    #[serde(default = "default_max_bytes_in_flight")]
    pub max_bytes_in_flight: usize,
    /// A request whose body has not all arrived this long after its headers is answered
    /// 408: a client that stalls must not hold one of `max_requests` for ever.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// A connection that does not send a request's headers within this long (an idle
    /// keep-alive connection, or a slow client) is closed.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Connections open at once (lowered to fit the process's descriptor limit); at the
    /// cap the oldest idle connection is closed for a new one.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

/// The server's certificate (PEM, with its chain) and key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl FirehoseSource {
    /// The limits agree with each other (and a key is set).
    pub(crate) fn limits_hold(&self) -> Result<(), String> {
        if self.access_key.trim().is_empty() {
            return Err("access_key is empty: Firehose sends one; set it here".into());
        }
        if self.max_requests == 0
            || self.max_body_bytes == 0
            || self.body_timeout_secs == 0
            || self.header_timeout_secs == 0
            || self.max_connections == 0
        {
            return Err(
                "max_requests, max_body_bytes, body_timeout_secs, header_timeout_secs \
                 and max_connections must be at least 1"
                    .into(),
            );
        }
        if self.max_inflated_bytes < self.max_body_bytes as u64 {
            return Err("max_inflated_bytes must be at least max_body_bytes".into());
        }
        // A gzip'd request of the largest size and its inflated body must fit together,
        // or it would be answered 503 for ever.
        if self.max_bytes_in_flight < 2 * self.max_body_bytes + (1 << 20) {
            return Err(
                "max_bytes_in_flight must be at least twice max_body_bytes and 1 MiB".into(),
            );
        }
        Ok(())
    }
}
