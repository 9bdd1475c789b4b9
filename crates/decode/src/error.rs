use flowlog_model::{FormatError, SourceId};
use thiserror::Error;

/// What a record sink may fail with (closed pipe, full disk, a stopped pipeline...).
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a source could not be read (as opposed to a record that could not be decoded, which
/// becomes a [`crate::DeadLetter`] and does not stop the source).
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("{source_id}: cannot read: {error}")]
    Io {
        source_id: SourceId,
        #[source]
        error: std::io::Error,
    },
    #[error("{source_id}: not a readable Parquet file: {error}")]
    Parquet {
        source_id: SourceId,
        #[source]
        error: parquet::errors::ParquetError,
    },
    #[error("{source_id}: Parquet column `{column}` cannot be read as {expected}: {detail}")]
    ParquetColumn {
        source_id: SourceId,
        column: String,
        expected: String,
        detail: String,
    },
    #[error("{source_id}: Parquet columns do not form a flow-log format: {error}")]
    ParquetFormat {
        source_id: SourceId,
        #[source]
        error: FormatError,
    },
    #[error("{source_id}: envelopes nested deeper than {depth} levels")]
    TooDeep { source_id: SourceId, depth: usize },
    #[error("output failed: {0}")]
    Sink(#[source] SinkError),
}

impl DecodeError {
    pub(crate) fn io(source_id: &SourceId, error: std::io::Error) -> Self {
        DecodeError::Io {
            source_id: source_id.clone(),
            error,
        }
    }
}
