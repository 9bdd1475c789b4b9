//! What every flowlog component stands on: the parts sources, sinks and the runtime that
//! wires them share, and nothing particular to any one of them.
//!
//! - [`ack`]: a batch's acknowledgement, confirmed by every holder of a share of it (each
//!   sink, each request); a source acts only on [`BatchStatus::Delivered`].
//! - [`metrics`]: the process's Prometheus registry and each component's handles onto it;
//!   a kind registers the series only it has.
//! - [`DeadLetters`]: where records that cannot be decoded or delivered are kept, and
//!   [`DeadLetterError`] when they cannot be.
//! - [`Stop`]: the shutdown request every component watches.
//! - [`status`]: each component's state (failing since when, and why) for `/health`.
//! - [`thread`]: blocking work on a thread of its own, awaited without stalling the runtime.
//! - [`duration`]: settings in seconds, checked.
//! - [`tls`]: certificate chains and keys from PEM files.
//! - [`listen`]: accepting connections without spinning, and warnings a peer cannot flood.
//! - [`writable`]: what `check` says about a path `run` would write, without writing it.
//! - [`append`]: files of lines opened for appending, a line a crash cut short removed.

pub mod ack;
pub mod append;
pub mod duration;
pub mod listen;
pub mod metrics;
pub mod status;
pub mod stop;
pub mod thread;
pub mod tls;
pub mod writable;

use std::future::Future;
use std::pin::Pin;

pub use ack::{Ack, AckWait, BatchStatus};
pub use flowlog_model::DeadLetter;
pub use metrics::{ComponentMetrics, LabelledCounter, LabelledGauge, Metrics, Totals};
pub use stop::Stop;

/// A boxed, sendable future (what trait methods return here instead of `async fn`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where records that cannot be decoded or delivered are kept.
pub trait DeadLetters: Send + Sync {
    /// Keeps `letter`. An error means it was not kept: what it stands for is then not
    /// handled, and nothing that covers it may be acknowledged.
    fn write(&self, letter: DeadLetter) -> Result<(), DeadLetterError>;
}

/// Why a dead letter was not kept.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The store holds its cap: nothing more is written (or acknowledged) until files are
    /// moved away.
    #[error(
        "the dead-letter store {path} is full ({stored} of its {cap} bytes): move or remove \
         its rotated files ({path}.N) to go on"
    )]
    Full { path: String, stored: u64, cap: u64 },
    #[error("cannot write to the dead letter {path}: {error}")]
    Io {
        path: String,
        #[source]
        error: std::io::Error,
    },
}
