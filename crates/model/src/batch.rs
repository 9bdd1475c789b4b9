//! [`FlowBatch`]: decoded records plus where they came from.

use std::fmt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, BooleanArray, RecordBatch, StringViewArray};
use arrow_buffer::ScalarBuffer;

/// Where records came from: a file path, `-` for standard input, an S3 URI, ...
///
/// Together with a record's line number this identifies the record, which is what dead
/// letters report and what deterministic event ids are derived from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceId(Arc<str>);

impl SourceId {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The start of the deterministic ids of this source's records: the first 64 bits of
    /// the SHA-1 of the source's name (object URI, path), in hex. A record's id is this,
    /// `-`, and its line number ([`SourceId::event_id`]); a redelivered object gives the
    /// same ids, so receivers that index by id (Elasticsearch `create`) or users who
    /// search by it (a HEC indexed field) see duplicates for what they are, and a finding
    /// can name the flows it saw.
    pub fn event_id_prefix(&self) -> String {
        use sha1::Digest;
        let digest = sha1::Sha1::digest(self.0.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The deterministic id of the record at `line` of this source.
    pub fn event_id(&self, line: u64) -> String {
        format!("{}-{line}", self.event_id_prefix())
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True if `text` holds a byte JSON must escape (a control character, `"` or `\`): what a
/// writer of [`FlowBatch::plain_text`] batches must rule out for every text value.
pub fn needs_json_escape(text: &str) -> bool {
    text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// The schema metadata key that marks a batch of documents ([`FlowBatch::documents`]).
pub const DOCUMENTS: &str = "flowlog:documents";
const DOCUMENT_COLUMN: &str = "document";

/// A batch of decoded flow records in the canonical schema.
///
/// `line_numbers[i]` is the position of row `i` in its source: the physical line for text,
/// the row for Parquet, the log event's position for CloudWatch Logs and Firehose payloads
/// (all counted from 1). Rows are in source order, so the first entry is the first line.
#[derive(Debug, Clone)]
pub struct FlowBatch {
    pub records: RecordBatch,
    pub source: SourceId,
    pub line_numbers: ScalarBuffer<u64>,
    /// True when the decoder knows that no text value contains a control character, a
    /// quote (`"`) or a backslash, so writers may copy values into JSON without looking
    /// for bytes to escape. False (the safe default) when it does not know.
    pub plain_text: bool,
    /// Each row's line as it was read (tokens from first to last, surrounding blanks
    /// removed), when the decoder was asked to keep them: sinks that forward the
    /// original text (Splunk's `aws:cloudwatchlogs:vpcflow`) need it. Views into the
    /// same blocks as the columns, so keeping them costs a view per row, not a copy.
    pub lines: Option<StringViewArray>,
}

impl FlowBatch {
    /// The rows whose `keep` is true, with their line numbers and lines (the batch itself
    /// when every row is kept).
    pub fn keep_rows(self, keep: Vec<bool>) -> FlowBatch {
        if keep.iter().all(|&k| k) {
            return self;
        }
        self.filter(&BooleanArray::from(keep))
    }

    /// The rows where `mask` is true (it has no nulls, one value per row).
    pub fn filter(self, mask: &BooleanArray) -> FlowBatch {
        if mask.true_count() == self.num_rows() {
            return self;
        }
        let records = arrow_select::filter::filter_record_batch(&self.records, mask)
            .expect("the mask has one value per row");
        let line_numbers: ScalarBuffer<u64> = self
            .line_numbers
            .iter()
            .zip(mask.values().iter())
            .filter_map(|(&line, k)| k.then_some(line))
            .collect();
        let lines = self.lines.as_ref().map(|lines| {
            arrow_select::filter::filter(lines, mask)
                .expect("the mask has one value per row")
                .as_string_view()
                .clone()
        });
        let mut out = FlowBatch::new(records, self.source.clone(), line_numbers);
        out.plain_text = self.plain_text;
        out.lines = lines;
        out
    }

    pub fn new(records: RecordBatch, source: SourceId, line_numbers: ScalarBuffer<u64>) -> Self {
        debug_assert_eq!(records.num_rows(), line_numbers.len());
        Self {
            records,
            source,
            line_numbers,
            plain_text: false,
            lines: None,
        }
    }

    /// A batch of finished JSON documents rather than flow records (findings): a `start`
    /// column (each document's time, which sinks date events by) and a `document`
    /// column, marked in the schema's metadata ([`DOCUMENTS`]) so that every encoder
    /// writes the documents as they are. The documents are also the batch's lines, for
    /// sinks that forward lines.
    pub fn documents(source: SourceId, documents: Vec<(i64, String)>) -> FlowBatch {
        use arrow_array::{ArrayRef, TimestampMillisecondArray};
        use arrow_schema::{DataType, Field, Schema, TimeUnit};
        let times = TimestampMillisecondArray::from_iter_values(documents.iter().map(|d| d.0))
            .with_timezone("UTC");
        let texts = StringViewArray::from_iter_values(documents.iter().map(|d| d.1.as_str()));
        let schema = Schema::new(vec![
            Field::new(
                "start",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new(DOCUMENT_COLUMN, DataType::Utf8View, false),
        ])
        .with_metadata([(DOCUMENTS.to_owned(), "true".to_owned())].into());
        let columns: Vec<ArrayRef> = vec![Arc::new(times), Arc::new(texts.clone())];
        let records =
            RecordBatch::try_new(Arc::new(schema), columns).expect("the columns match the schema");
        let lines: ScalarBuffer<u64> = (1..=documents.len() as u64).collect();
        FlowBatch::new(records, source, lines).with_lines(texts)
    }

    /// The documents of a [`documents`](Self::documents) batch; `None` for flow records.
    pub fn document_column(&self) -> Option<&StringViewArray> {
        if !self.records.schema_ref().metadata().contains_key(DOCUMENTS) {
            return None;
        }
        self.records
            .column_by_name(DOCUMENT_COLUMN)
            .and_then(|c| c.as_any().downcast_ref::<StringViewArray>())
    }

    /// Declares that no text value contains a control character, `"` or `\`.
    pub fn with_plain_text(mut self, plain_text: bool) -> Self {
        self.plain_text = plain_text;
        self
    }

    /// Attaches the rows' original lines.
    pub fn with_lines(mut self, lines: StringViewArray) -> Self {
        debug_assert_eq!(lines.len(), self.num_rows());
        self.lines = Some(lines);
        self
    }

    /// Rows `offset..offset + len`, sharing the buffers.
    pub fn slice(&self, offset: usize, len: usize) -> Self {
        Self {
            records: self.records.slice(offset, len),
            source: self.source.clone(),
            line_numbers: self.line_numbers.slice(offset, len),
            plain_text: self.plain_text,
            lines: self.lines.as_ref().map(|l| l.slice(offset, len)),
        }
    }

    pub fn num_rows(&self) -> usize {
        self.records.num_rows()
    }

    /// Line number of the first row (0 for an empty batch).
    pub fn first_line(&self) -> u64 {
        self.line_numbers.first().copied().unwrap_or(0)
    }
}
