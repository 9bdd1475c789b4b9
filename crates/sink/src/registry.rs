//! What a kind of sink gives the pipeline.
//!
//! A sink crate's settings type (what `[sinks.<name>]` with its `type` parses into)
//! implements [`SinkKind`]; the pipeline's registry maps each `type` to one of those
//! types and knows sinks only through this trait: validation without the network, what
//! the sink needs of batches, and one constructor that `run` and `check` both use.

use std::sync::Arc;

use crate::{BoxFuture, ComponentMetrics, DeadLetters, Sink, SinkError};

/// What a sink needs of the batches it is given (decided once, from its settings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The original text of each record (e.g. HEC's `format = "line"`): sources keep it.
    pub lines: bool,
}

impl Needs {
    /// What a set of sinks needs together.
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            lines: self.lines || other.lines,
        }
    }
}

/// What a sink is built with.
#[derive(Clone)]
pub struct SinkContext {
    /// The configured name (`[sinks.<name>]`): metrics labels, logs, dead-letter reasons.
    pub name: String,
    pub metrics: ComponentMetrics,
    /// Where records the receiver refuses for good go.
    pub dead_letters: Arc<dyn DeadLetters>,
}

/// A kind of sink, implemented by its settings type.
pub trait SinkKind: Send + Sync {
    /// Checks the settings without the network (URLs, numbers, credentials present).
    fn validate(&self) -> Result<(), SinkError>;

    /// What the sink needs of batches.
    fn needs(&self) -> Needs {
        Needs::default()
    }

    /// The sink, ready to [`Sink::run`] or [`Sink::check`]. Called inside the runtime,
    /// sending nothing.
    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, SinkError>;
}

/// The longest time any setting may name: a year. Past it a number is a mistake (or
/// `inf`), and `Duration` itself overflows soon after.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A setting in seconds, checked: finite, not negative (`allow_zero`) or positive, and at
/// most [`MAX_SECONDS`]. The error names the setting.
pub fn seconds(name: &str, value: f64, allow_zero: bool) -> Result<std::time::Duration, String> {
    let low_ok = if allow_zero {
        value >= 0.0
    } else {
        value > 0.0
    };
    if !(value.is_finite() && low_ok && value <= MAX_SECONDS) {
        let least = if allow_zero { "0" } else { "more than 0" };
        return Err(format!(
            "{name} must be a number of seconds from {least} to {MAX_SECONDS} (one year), not {value}"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(value))
}

/// A setting in seconds as a `Duration`, saturating (so even an unvalidated value cannot
/// panic; [`seconds`] is the check).
pub fn duration(s: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(std::time::Duration::MAX)
}

/// Runs blocking work (file I/O, an fsync) on a thread of its own and resolves with its
/// result: for sinks and sources whose work is not async, so it never stalls the
/// runtime's workers. The thread is not joined at shutdown: a read blocked on a pipe
/// cannot hold the process.
pub fn on_thread<T: Send + 'static>(
    name: String,
    work: impl FnOnce() -> T + Send + 'static,
) -> BoxFuture<'static, T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let _ = tx.send(work());
    });
    Box::pin(async move {
        if let Err(e) = spawned {
            panic!("cannot start a thread: {e}");
        }
        match rx.await {
            Ok(result) => result,
            // The thread panicked (with panic = "abort" the process is gone already).
            Err(_) => panic!("a worker thread panicked"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_finite_bounded_and_named() {
        assert_eq!(
            seconds("x", 1.5, false).unwrap(),
            std::time::Duration::from_millis(1500)
        );
        assert!(seconds("x", 0.0, true).is_ok());
        for bad in [0.0, -1.0, f64::INFINITY, f64::NAN, 1e300] {
            let err = seconds("shutdown_timeout_secs", bad, bad != 0.0).unwrap_err();
            assert!(err.starts_with("shutdown_timeout_secs must be"), "{err}");
        }
    }
}
