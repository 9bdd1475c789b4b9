//! Turning batches into HEC events: envelopes for `/event`, lines for `/raw`, and the
//! bookkeeping (where each event came from, which batches it belongs to) that splitting,
//! dead-lettering and acknowledgement need.

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, RecordBatch, TimestampMillisecondArray};
use bytes::Bytes;
use flowlog_model::{enrichment_fields, is_json_field, EnrichKind, FlowBatch, SourceId};
use flowlog_normalize::{Encoder, RawEncoder};
use flowlog_sink::{Ack, SinkError};

use crate::config::{Endpoint, HecConfig, TimeField};

/// Where an event came from: what a dead letter names.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub source: SourceId,
    pub line: u64,
}

/// Events ready to send, back to back, with their boundaries.
#[derive(Debug, Default)]
pub(crate) struct Piece {
    pub data: Bytes,
    /// End of each event in `data` (events are contiguous).
    pub ends: Vec<usize>,
    pub origins: Vec<Origin>,
    /// A share of the acknowledgement of every batch with events in this piece.
    pub acks: Vec<Ack>,
}

impl Piece {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Event `i`'s bytes.
    pub fn event(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    /// Splits after `at` events. Both halves carry shares of every acknowledgement (the
    /// original shares move into the second).
    pub fn split(self, at: usize) -> (Piece, Piece) {
        let cut = if at == 0 { 0 } else { self.ends[at - 1] };
        let first = Piece {
            data: self.data.slice(..cut),
            ends: self.ends[..at].to_vec(),
            origins: self.origins[..at].to_vec(),
            acks: self.acks.iter().map(Ack::clone).collect(),
        };
        let second = Piece {
            data: self.data.slice(cut..),
            ends: self.ends[at..].iter().map(|e| e - cut).collect(),
            origins: self.origins[at..].to_vec(),
            acks: self.acks,
        };
        (first, second)
    }

    /// Every event delivered or dead-lettered: confirm the shares.
    pub fn confirm(self) {
        for ack in self.acks {
            ack.confirm();
        }
    }
}

/// Gathers events into pieces of at most `max_bytes`.
pub(crate) struct PieceBuilder {
    max_bytes: usize,
    data: Vec<u8>,
    ends: Vec<usize>,
    origins: Vec<Origin>,
    acks: Vec<Ack>,
}

impl PieceBuilder {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            data: Vec::with_capacity(max_bytes),
            ends: Vec::new(),
            origins: Vec::new(),
            acks: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Whether `len` more bytes fit (a lone event always fits).
    pub fn fits(&self, len: usize) -> bool {
        self.is_empty() || self.data.len() + len <= self.max_bytes
    }

    pub fn push(&mut self, event: &[u8], origin: Origin) {
        self.data.extend_from_slice(event);
        self.ends.push(self.data.len());
        self.origins.push(origin);
    }

    /// The batch whose events are being pushed has a share in the current piece.
    pub fn share(&mut self, ack: &Ack) {
        self.acks.push(ack.clone());
    }

    pub fn take(&mut self) -> Piece {
        let data = std::mem::replace(&mut self.data, Vec::with_capacity(self.max_bytes));
        Piece {
            data: Bytes::from(data),
            ends: std::mem::take(&mut self.ends),
            origins: std::mem::take(&mut self.origins),
            acks: std::mem::take(&mut self.acks),
        }
    }
}

/// Writes the events of batches: what the sink's configuration makes of each record.
pub(crate) struct EventWriter {
    endpoint: Endpoint,
    time_field: TimeField,
    /// JSON documents (`format` other than `line`).
    documents: Option<Box<dyn Encoder + Send>>,
    /// Indexed fields from enrichment columns (`format = "line"`, event endpoint).
    fields: RawEncoder,
    host: Option<String>,
    source: Option<String>,
    sourcetype: String,
    index: Option<String>,
}

/// The events of one batch: bytes, and where each ends.
#[derive(Debug, Default)]
pub(crate) struct BatchEvents {
    pub data: Vec<u8>,
    pub ends: Vec<usize>,
}

impl BatchEvents {
    pub fn event(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

impl EventWriter {
    pub fn new(config: &HecConfig) -> Result<Self, SinkError> {
        Ok(Self {
            endpoint: config.endpoint_kind,
            time_field: config.time_field,
            documents: config.target()?.map(|t| t.encoder()),
            fields: RawEncoder::default(),
            host: config.host.clone(),
            source: config.source.clone(),
            sourcetype: config.sourcetype().to_string(),
            index: config.index.clone(),
        })
    }

    /// The events of every row of `batch`, in row order.
    pub fn write(&mut self, batch: &FlowBatch, out: &mut BatchEvents) -> Result<(), SinkError> {
        out.data.clear();
        out.ends.clear();
        let rows = batch.num_rows();
        let fields = match (&self.documents, self.endpoint) {
            (None, Endpoint::Event) => self.indexed_fields(batch)?,
            _ => None,
        };
        let documents = match &mut self.documents {
            Some(encoder) => Some(
                encoder
                    .encode(batch)
                    .map_err(|e| SinkError::Config(e.to_string()))?,
            ),
            None => None,
        };
        let raw_line;
        let lines: Option<&arrow_array::StringViewArray> = match (&documents, &batch.lines) {
            (Some(_), _) => None,
            (None, Some(lines)) => Some(lines),
            (None, None) => {
                raw_line = rebuild_lines(&batch.records);
                Some(&raw_line)
            }
        };
        if self.endpoint == Endpoint::Raw {
            match (documents, lines) {
                (Some(docs), _) => {
                    // Documents are already one per line: the block is the body.
                    out.data.extend_from_slice(docs);
                    let base = out.data.len() - docs.len();
                    out.ends
                        .extend(memchr::memchr_iter(b'\n', docs).map(|i| base + i + 1));
                }
                (None, Some(lines)) => {
                    for row in 0..rows {
                        out.data.extend_from_slice(lines.value(row).as_bytes());
                        out.data.push(b'\n');
                        out.ends.push(out.data.len());
                    }
                }
                (None, None) => unreachable!("lines are rebuilt when missing"),
            }
            return Ok(());
        }

        // `,"host":..,"source":..,"sourcetype":..,"index":..,"fields":{"flowlog_id":"<prefix>-`
        let mut head = Vec::with_capacity(256);
        if let Some(host) = &self.host {
            head.extend_from_slice(b",\"host\":");
            json_string(&mut head, host);
        }
        head.extend_from_slice(b",\"source\":");
        json_string(
            &mut head,
            self.source.as_deref().unwrap_or(batch.source.as_str()),
        );
        head.extend_from_slice(b",\"sourcetype\":");
        json_string(&mut head, &self.sourcetype);
        if let Some(index) = &self.index {
            head.extend_from_slice(b",\"index\":");
            json_string(&mut head, index);
        }
        head.extend_from_slice(b",\"fields\":{\"flowlog_id\":\"");
        head.extend_from_slice(flowlog_sink::event_id_prefix(&batch.source).as_bytes());
        head.push(b'-');

        let times = times(&batch.records, self.time_field);
        let mut docs = documents.map(lines_of);
        let mut field_lines = fields.as_deref().map(lines_of);
        let mut itoa = itoa::Buffer::new();
        for row in 0..rows {
            let data = &mut out.data;
            data.extend_from_slice(b"{");
            if let Some(ms) = times.filter(|t| t.is_valid(row)).map(|t| t.value(row)) {
                data.extend_from_slice(b"\"time\":");
                write_seconds(data, ms, &mut itoa);
                data.extend_from_slice(&head);
            } else {
                // No time: Splunk uses the time of receipt. Drop the leading comma.
                data.extend_from_slice(&head[1..]);
            }
            data.extend_from_slice(itoa.format(batch.line_numbers[row]).as_bytes());
            data.push(b'"');
            if let Some(object) = field_lines.as_mut().and_then(Iterator::next) {
                // `{"k":v,...}` from the raw encoder: its members join ours.
                if object.len() > 2 {
                    data.push(b',');
                    data.extend_from_slice(&object[1..object.len() - 1]);
                }
            }
            data.extend_from_slice(b"},\"event\":");
            match (&mut docs, lines) {
                (Some(docs), _) => data.extend_from_slice(docs.next().unwrap_or(b"null")),
                (None, Some(lines)) => {
                    let line = lines.value(row);
                    if batch.plain_text && batch.lines.is_some() {
                        data.push(b'"');
                        data.extend_from_slice(line.as_bytes());
                        data.push(b'"');
                    } else {
                        json_string(data, line);
                    }
                }
                (None, None) => unreachable!("lines are rebuilt when missing"),
            }
            data.extend_from_slice(b"}\n");
            out.ends.push(data.len());
        }
        Ok(())
    }
}

/// The column that gives events their time.
fn times(records: &RecordBatch, field: TimeField) -> Option<&TimestampMillisecondArray> {
    {
        let name = match field {
            TimeField::Start => "start",
            TimeField::End => "end",
        };
        let column = records.column_by_name(name)?;
        column.as_primitive_opt::<TimestampMillisecondType>()
    }
}

impl EventWriter {
    /// The enrichment columns of `batch` as one flat JSON object per line (HEC indexed
    /// fields are flat: text, numbers, arrays of text; an object would be refused with
    /// code 15, so JSON objects such as the tag map are left out).
    fn indexed_fields(&mut self, batch: &FlowBatch) -> Result<Option<Vec<u8>>, SinkError> {
        let schema = batch.records.schema();
        let mut keep = Vec::new();
        for field in enrichment_fields() {
            let Ok(i) = schema.index_of(field.column) else {
                continue;
            };
            // Security groups are an array of text (a multi-value field); the tag map
            // is an object.
            let object = field.kind == EnrichKind::Json
                && is_json_field(schema.field(i))
                && field.column == "eni_tags";
            if !object {
                keep.push(i);
            }
        }
        if keep.is_empty() {
            return Ok(None);
        }
        let projected = batch
            .records
            .project(&keep)
            .map_err(|e| SinkError::Config(e.to_string()))?;
        let mut view = FlowBatch::new(projected, batch.source.clone(), batch.line_numbers.clone());
        view.plain_text = batch.plain_text;
        let encoded = self
            .fields
            .encode(&view)
            .map_err(|e| SinkError::Config(e.to_string()))?;
        Ok(Some(encoded.to_vec()))
    }
}

/// The lines of NDJSON, without their newlines (memchr: documents are long).
fn lines_of(ndjson: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', ndjson).map(move |end| {
        let line = &ndjson[start..end];
        start = end + 1;
        line
    })
}

/// Lines in the default (version 2) format, for batches that kept none (Parquet): the
/// format the Splunk Add-on for AWS parses, `-` for absent values.
fn rebuild_lines(records: &RecordBatch) -> arrow_array::StringViewArray {
    let v2 = flowlog_model::FlowFormat::default_v2();
    let columns: Vec<Option<&dyn Array>> = v2
        .fields()
        .iter()
        .map(|f| match f {
            flowlog_model::FormatField::Known(id) => records
                .column_by_name(flowlog_model::FIELDS[*id].column)
                .map(|c| c.as_ref()),
            flowlog_model::FormatField::Unknown(_) => None,
        })
        .collect();
    let mut lines = arrow_array::builder::StringViewBuilder::with_capacity(records.num_rows());
    let mut line = String::new();
    for row in 0..records.num_rows() {
        line.clear();
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            match column.filter(|c| c.is_valid(row)) {
                None => line.push('-'),
                Some(c) => push_value(&mut line, c, row),
            }
        }
        lines.append_value(&line);
    }
    lines.finish()
}

fn push_value(line: &mut String, column: &dyn Array, row: usize) {
    use arrow_array::types::{Int32Type, Int64Type};
    use arrow_schema::DataType;
    use std::fmt::Write;
    let _ = match column.data_type() {
        DataType::Utf8View => write!(line, "{}", column.as_string_view().value(row)),
        DataType::Int32 => write!(line, "{}", column.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => write!(line, "{}", column.as_primitive::<Int64Type>().value(row)),
        DataType::Timestamp(_, _) => write!(
            line,
            "{}",
            column.as_primitive::<TimestampMillisecondType>().value(row) / 1000
        ),
        _ => write!(line, "-"),
    };
}

/// Epoch milliseconds as seconds with up to three decimals.
fn write_seconds(out: &mut Vec<u8>, ms: i64, itoa: &mut itoa::Buffer) {
    let (secs, frac) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    out.extend_from_slice(itoa.format(secs).as_bytes());
    if frac != 0 {
        out.push(b'.');
        let digits = format!("{frac:03}");
        out.extend_from_slice(digits.trim_end_matches('0').as_bytes());
    }
}

pub(crate) fn json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing to a Vec cannot fail");
}
