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
    #[error("{source_id}: {what} larger than {limit} bytes")]
    TooLarge {
        source_id: SourceId,
        what: &'static str,
        limit: u64,
    },
    /// A body that should be one request of a known shape (a Firehose HTTP endpoint
    /// request) is not.
    #[error("{source_id}: not a Firehose request: {reason}")]
    NotARequest { source_id: SourceId, reason: String },
    #[error("output failed: {0}")]
    Sink(#[source] SinkError),
}

impl DecodeError {
    /// The bytes themselves are at fault (a corrupt or truncated gzip stream, a Parquet
    /// file that cannot be read, envelopes nested too deep): reading the same object again
    /// gives the same error. Other errors (permissions, a failing disk, the output) may
    /// pass.
    pub fn is_corrupt_input(&self) -> bool {
        match self {
            DecodeError::Io { error, .. } => matches!(
                error.kind(),
                std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::UnexpectedEof
            ),
            DecodeError::Parquet { .. }
            | DecodeError::ParquetColumn { .. }
            | DecodeError::ParquetFormat { .. }
            | DecodeError::TooDeep { .. }
            | DecodeError::TooLarge { .. }
            | DecodeError::NotARequest { .. } => true,
            DecodeError::Sink(_) => false,
        }
    }

    pub(crate) fn io(source_id: &SourceId, error: std::io::Error) -> Self {
        DecodeError::Io {
            source_id: source_id.clone(),
            error,
        }
    }
}
