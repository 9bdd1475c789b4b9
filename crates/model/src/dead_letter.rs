//! Records that could not be decoded or delivered, with everything needed to find and replay them.

use crate::SourceId;
use serde::Serialize;

/// One input record that was not emitted. Written as one NDJSON object per dead letter:
/// `{"source":..,"line":..,"reason":..,"raw":..}`, plus `"raw_length"` when `raw` holds only
/// the first [`DeadLetter::MAX_RAW`] bytes of something longer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The input it came from (file path, `-`, S3 URI...).
    #[serde(serialize_with = "source_as_str")]
    pub source: SourceId,
    /// Its position in the source, numbered as [`crate::FlowBatch`] numbers rows.
    pub line: u64,
    /// Why it was not decoded, naming the field where one is at fault.
    pub reason: String,
    /// The record as it was read (invalid UTF-8 replaced by U+FFFD), at most
    /// [`DeadLetter::MAX_RAW`] bytes of it.
    pub raw: String,
    /// The record's real length in bytes, when `raw` is cut short.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_length: Option<u64>,
}

fn source_as_str<S: serde::Serializer>(s: &SourceId, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

impl DeadLetter {
    /// How much of an input record a decoder's dead letter keeps. A flow-log line is under
    /// 2 KB, so every real record is kept whole; what is longer is not one, and a dead
    /// letter must not copy a hostile input whole.
    pub const MAX_RAW: usize = 4096;

    /// A dead letter that keeps all of `raw` (an event a sink refused: replayable as is).
    pub fn new(source: &SourceId, line: u64, reason: impl Into<String>, raw: &[u8]) -> Self {
        Self {
            source: source.clone(),
            line,
            reason: reason.into(),
            raw: String::from_utf8_lossy(raw).into_owned(),
            raw_length: None,
        }
    }

    /// A dead letter for an input record of `length` bytes of which `head` are the first
    /// (the rest may have been skipped, never read into memory); it keeps at most
    /// [`DeadLetter::MAX_RAW`] bytes.
    pub fn truncated(
        source: &SourceId,
        line: u64,
        reason: impl Into<String>,
        head: &[u8],
        length: u64,
    ) -> Self {
        let kept = &head[..head.len().min(Self::MAX_RAW)];
        Self {
            source: source.clone(),
            line,
            reason: reason.into(),
            raw: String::from_utf8_lossy(kept).into_owned(),
            raw_length: (length > kept.len() as u64).then_some(length),
        }
    }

    /// The dead letter as one line of NDJSON (no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a dead letter always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_records_keep_their_head_and_length() {
        let source = SourceId::new("s");
        let short = DeadLetter::truncated(&source, 1, "r", b"2 1 eni-1", 9);
        assert_eq!(short.raw_length, None);
        assert_eq!(
            short.to_json(),
            r#"{"source":"s","line":1,"reason":"r","raw":"2 1 eni-1"}"#
        );

        let head = vec![b'x'; 10_000];
        let long = DeadLetter::truncated(&source, 2, "r", &head, 1 << 30);
        assert_eq!(long.raw.len(), DeadLetter::MAX_RAW);
        assert_eq!(long.raw_length, Some(1 << 30));
        assert!(long.to_json().ends_with(r#","raw_length":1073741824}"#));

        // A refused event is kept whole, to be replayed.
        let event = DeadLetter::new(&source, 3, "r", &head);
        assert_eq!((event.raw.len(), event.raw_length), (10_000, None));
    }
}
