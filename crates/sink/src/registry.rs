//! What a kind of sink gives the pipeline.
//!
//! A sink crate's settings type (what `[sinks.<name>]` with its `type` parses into)
//! implements [`SinkKind`]; the pipeline's registry maps each `type` to one of those
//! types and knows sinks only through this trait: validation without the network, what
//! the sink needs of batches, and one constructor that `run` and `check` both use.

use std::sync::Arc;

use flowlog_component::{ComponentMetrics, DeadLetters};

use crate::{Sink, SinkError};

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
    /// The run's `data_dir`, locked by the run: a sink that keeps records on disk before
    /// sending them (Security Lake's spool) keeps them in a folder of its own there.
    pub data_dir: std::path::PathBuf,
}

/// A kind of sink, implemented by its settings type.
pub trait SinkKind: Send + Sync {
    /// Checks the settings without the network (URLs, numbers, credentials present).
    fn validate(&self) -> Result<(), SinkError>;

    /// What the sink needs of batches.
    fn needs(&self) -> Needs {
        Needs::default()
    }

    /// Whether the sink can carry finished documents (detection findings:
    /// `FlowBatch::documents`) as its events, written as `format` (`ocsf` or `ecs`); the
    /// error says what to change. No, unless a sink says it can.
    fn carries_documents(&self, format: &str) -> Result<(), String> {
        let _ = format;
        Err("this kind of sink does not carry findings".into())
    }

    /// Whether the sink takes detection findings and nothing else (it must then be on the
    /// findings route). No, unless a sink says so.
    fn findings_only(&self) -> bool {
        false
    }

    /// The sink, ready to [`Sink::run`] or [`Sink::check`]. Called inside the runtime,
    /// sending nothing.
    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, SinkError>;
}
