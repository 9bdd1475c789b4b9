//! The delivery contract every flowlog sink follows, and the parts sinks share.
//!
//! Acknowledgements, metrics and dead letters are `flowlog-component`'s, which sources
//! share; this crate is what only sinks need.
//!
//! - [`retry`]: exponential backoff with full jitter, capped per attempt, without a limit
//!   in time, `Retry-After` honoured.
//! - [`request`]: what every HTTP sink shares: events cut into requests by size and time,
//!   compressed, bounded in flight, retried, halved on 413, settled per request or per
//!   event as the sink's [`request::Protocol`] classifies each answer.
//! - [`gzip`]: request bodies compressed in one call (libdeflate, or ISA-L igzip with the
//!   `isal` feature).
//! - [`http`]: the pooled HTTP/1.1 + HTTP/2 client (reqwest), TLS verified against the
//!   system roots and/or a CA file, proxies from the environment or the sink's settings.
//! - [`settings`]: the request-tuning settings every HTTP sink has, defined once
//!   ([`http_sink_settings!`]).
//! - [`registry`]: what a sink kind gives the pipeline ([`SinkKind`]): validation, what it
//!   needs of batches, and a constructor that `run` and `check` share.
//! - [`Sink`]: what the pipeline runs: a task that takes [`SinkInput`]s from a bounded
//!   channel (so a slow receiver holds the sources back instead of filling memory) and
//!   confirms each batch once every record is delivered or dead-lettered.
//!
//! Records a receiver refuses for good go to the [`DeadLetters`] with the receiver's
//! reason, in the decoder's dead-letter format; transient failures are retried for as
//! long as they last.

pub mod gzip;
pub mod http;
pub mod registry;
pub mod request;
pub mod retry;
pub mod settings;
pub mod template;

use std::sync::Arc;

use flowlog_model::{FlowBatch, SourceId};
use tokio::sync::mpsc;

// The parts of the component core a sink's contract is made of, re-exported so that a sink
// crate depends on this crate alone.
pub use flowlog_component::{
    Ack, AckWait, BatchStatus, BoxFuture, ComponentMetrics, DeadLetterError, DeadLetters, Metrics,
};
pub use flowlog_model::DeadLetter;
pub use http::{ClientOptions, HttpClient, ProxyOptions, TlsOptions};
pub use registry::{Needs, SinkContext, SinkKind};
pub use retry::{Backoff, RetryPolicy};

/// The start of the deterministic ids of a source's records ([`SourceId::event_id_prefix`]).
pub fn event_id_prefix(source: &SourceId) -> String {
    source.event_id_prefix()
}

/// The deterministic id of the record at `line` of `source` ([`SourceId::event_id`]).
pub fn event_id(source: &SourceId, line: u64) -> String {
    source.event_id(line)
}

/// One batch for a sink, and the sink's share of its acknowledgement.
#[derive(Debug)]
pub struct SinkInput {
    /// Decoded (and enriched) records; the sink encodes them as it is configured to.
    pub batch: Arc<FlowBatch>,
    pub ack: Ack,
}

/// A sink the pipeline can run.
pub trait Sink: Send {
    /// The configured name (metrics, logs).
    fn name(&self) -> &str;

    /// Delivers batches until the channel closes and every batch taken is settled.
    /// An error means the sink cannot go on (rejected credentials): the pipeline stops.
    fn run(
        self: Box<Self>,
        input: mpsc::Receiver<SinkInput>,
    ) -> BoxFuture<'static, Result<(), SinkError>>;

    /// Reaches the receiver and checks what can be checked without sending records
    /// (health, credentials); returns a line describing what was found.
    fn check(&self) -> BoxFuture<'_, Result<String, SinkError>>;
}

/// Why a sink cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A setting is wrong (bad URL, unreadable CA file, missing token).
    #[error("{0}")]
    Config(String),
    /// The receiver refused us for good (bad or disabled token): retrying cannot help.
    #[error("{sink}: the receiver refused the request ({status}): {message}")]
    Rejected {
        sink: String,
        status: u16,
        message: String,
    },
    /// The sink's own output failed (a file that cannot be written).
    #[error("{sink}: {message}")]
    Io { sink: String, message: String },
    /// The receiver could not be reached or answered unexpectedly (check only).
    #[error("{sink}: {message}")]
    Unreachable { sink: String, message: String },
}
