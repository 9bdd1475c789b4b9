//! Records that could not be decoded or delivered, with everything needed to find and replay them.

use crate::SourceId;
use serde::Serialize;

/// One input record that was not emitted. Written as one NDJSON object per dead letter:
/// `{"source":..,"line":..,"reason":..,"raw":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The input it came from (file path, `-`, S3 URI...).
    #[serde(serialize_with = "source_as_str")]
    pub source: SourceId,
    /// Its position in the source, numbered as [`crate::FlowBatch`] numbers rows.
    pub line: u64,
    /// Why it was not decoded, naming the field where one is at fault.
    pub reason: String,
    /// The record as it was read (invalid UTF-8 replaced by U+FFFD).
    pub raw: String,
}

fn source_as_str<S: serde::Serializer>(s: &SourceId, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

impl DeadLetter {
    pub fn new(source: &SourceId, line: u64, reason: impl Into<String>, raw: &[u8]) -> Self {
        Self {
            source: source.clone(),
            line,
            reason: reason.into(),
            raw: String::from_utf8_lossy(raw).into_owned(),
        }
    }

    /// The dead letter as one line of NDJSON (no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a dead letter always serializes")
    }
}
