//! Turning [`FlowBatch`]es into output documents.
//!
//! Each target is an [`Encoder`] that writes one JSON document per record (NDJSON) into a
//! buffer it owns and lends out, reading Arrow columns directly: no per-record
//! `serde_json::Value`. The JSON primitives in [`json`] are shared by every target.
//!
//! Targets: [`Target::Raw`] (the record's own fields). ECS, OCSF, Splunk CIM and the OTel
//! attribute mapping are added here as further targets.

pub mod json;
mod raw;

use flowlog_model::FlowBatch;
use thiserror::Error;

pub use raw::RawEncoder;

/// The shape of the documents to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The record's fields under AWS's names in snake_case.
    Raw,
}

impl Target {
    /// A fresh encoder for this target.
    pub fn encoder(self) -> Box<dyn Encoder + Send> {
        match self {
            Target::Raw => Box::new(RawEncoder::default()),
        }
    }
}

/// Writes documents for every record of a batch, one per line.
pub trait Encoder {
    /// The batch as NDJSON, in a buffer the encoder keeps for the next batch (so its
    /// memory is neither reallocated nor re-zeroed per batch).
    fn encode(&mut self, batch: &FlowBatch) -> Result<&[u8], EncodeError>;
}

/// A batch an encoder cannot write.
#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("column `{column}` has type {data_type}, which this encoder does not write")]
    UnsupportedColumn { column: String, data_type: String },
}
