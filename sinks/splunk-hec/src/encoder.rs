//! Turning batches into HEC events: envelopes for `/event`, lines for `/raw`, written
//! row by row into the shared request layer's buffers.

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, RecordBatch, StringViewArray, TimestampMillisecondArray};
use flowlog_model::{enrichment_fields, is_json_field, EnrichKind, FlowBatch};
use flowlog_normalize::lines::next_line;
use flowlog_normalize::{EncodeOptions, Encoder, RawEncoder};
use flowlog_sink::request::WriteRow;
use flowlog_sink::SinkError;

use crate::settings::{Endpoint, HecConfig, TimeField};

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

/// A batch ready to be written as events, one row after the other.
pub(crate) struct Prepared<'a> {
    raw_endpoint: bool,
    /// The encoder's NDJSON and the position of the next document.
    documents: Option<(&'a [u8], usize)>,
    /// Indexed fields, one flat object per line, and the position of the next.
    fields: Option<(Vec<u8>, usize)>,
    /// The recording interface's tags as `"tag_<key>":"<value>"` members: per row a
    /// key into the members rendered once per distinct tag set.
    tags: Option<(arrow_array::UInt32Array, Vec<Vec<u8>>)>,
    lines: Option<StringViewArray>,
    verbatim_lines: bool,
    head: Vec<u8>,
    times: Option<TimestampMillisecondArray>,
    line_numbers: arrow_buffer::ScalarBuffer<u64>,
    itoa: itoa::Buffer,
}

impl WriteRow for Prepared<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) {
        if self.raw_endpoint {
            match (&mut self.documents, &self.lines) {
                (Some((text, at)), _) => out.extend_from_slice(next_line(text, at)),
                (None, Some(lines)) => out.extend_from_slice(lines.value(row).as_bytes()),
                (None, None) => unreachable!("lines are rebuilt when missing"),
            }
            out.push(b'\n');
            return;
        }
        out.push(b'{');
        let time = self
            .times
            .as_ref()
            .filter(|t| t.is_valid(row))
            .map(|t| t.value(row));
        if let Some(ms) = time {
            out.extend_from_slice(b"\"time\":");
            write_seconds(out, ms, &mut self.itoa);
            out.extend_from_slice(&self.head);
        } else {
            // No time: Splunk uses the time of receipt. Drop the leading comma.
            out.extend_from_slice(&self.head[1..]);
        }
        out.extend_from_slice(self.itoa.format(self.line_numbers[row]).as_bytes());
        out.push(b'"');
        if let Some((fields, at)) = &mut self.fields {
            let object = next_line(fields, at);
            // `{"k":v,...}` from the raw encoder: its members join ours.
            if object.len() > 2 {
                out.push(b',');
                out.extend_from_slice(&object[1..object.len() - 1]);
            }
        }
        if let Some((keys, members)) = &self.tags {
            let members = keys
                .is_valid(row)
                .then(|| &members[keys.value(row) as usize])
                .filter(|m| !m.is_empty());
            if let Some(members) = members {
                out.push(b',');
                out.extend_from_slice(members);
            }
        }
        out.extend_from_slice(b"},\"event\":");
        match (&mut self.documents, &self.lines) {
            (Some((text, at)), _) => out.extend_from_slice(next_line(text, at)),
            (None, Some(lines)) => {
                let line = lines.value(row);
                // `plain_text` vouches for the tokens, not for the separators between
                // them: a tab (or another control byte) still needs escaping.
                if self.verbatim_lines && line.bytes().all(|b| b >= 0x20) {
                    out.push(b'"');
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'"');
                } else {
                    json_string(out, line);
                }
            }
            (None, None) => unreachable!("lines are rebuilt when missing"),
        }
        out.extend_from_slice(b"}\n");
    }
}

/// `eni_tags` (a JSON object per distinct tag set) as flat indexed fields: HEC refuses
/// objects in `fields`, so `{"team":"checkout"}` becomes `"tag_team":"checkout"`, with
/// characters Splunk does not allow in field names replaced by `_`.
fn tag_members(records: &RecordBatch) -> Option<(arrow_array::UInt32Array, Vec<Vec<u8>>)> {
    let column = records.column_by_name("eni_tags")?;
    let tags = column.as_dictionary_opt::<arrow_array::types::UInt32Type>()?;
    let values = tags.values().as_string_view_opt()?;
    let members = (0..values.len())
        .map(|i| {
            let mut out = Vec::new();
            if values.is_null(i) {
                return out;
            }
            let Ok(map) =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(values.value(i))
            else {
                return out;
            };
            for (key, value) in &map {
                let Some(value) = value.as_str() else {
                    continue;
                };
                let key: String = key
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                if !out.is_empty() {
                    out.push(b',');
                }
                json_string(&mut out, &format!("tag_{key}"));
                out.push(b':');
                json_string(&mut out, value);
            }
            out
        })
        .collect();
    Some((tags.keys().clone(), members))
}

impl EventWriter {
    pub fn new(config: &HecConfig) -> Result<Self, SinkError> {
        Ok(Self {
            endpoint: config.endpoint_kind,
            time_field: config.time_field,
            documents: config.target()?.map(|t| {
                t.encoder_with(&EncodeOptions {
                    envelope_key: config.envelope_key.clone(),
                })
            }),
            fields: RawEncoder::default(),
            host: config.host.clone(),
            source: config.source.clone(),
            sourcetype: config.sourcetype().to_string(),
            index: config.index.clone(),
        })
    }

    /// Readies the events of `batch`; [`WriteRow::write`] then writes them row by row
    /// straight into a request's buffer.
    fn prepare_batch(&mut self, batch: &FlowBatch) -> Result<Prepared<'_>, SinkError> {
        let fields = match (&self.documents, self.endpoint) {
            (None, Endpoint::Event) => self.indexed_fields(batch)?,
            _ => None,
        };
        let tags = match (&self.documents, self.endpoint) {
            (None, Endpoint::Event) => tag_members(&batch.records),
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
        // The kept lines, or (Parquet) lines rebuilt in the default format.
        let lines = documents
            .is_none()
            .then(|| flowlog_normalize::lines::lines_of(batch));
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
        Ok(Prepared {
            raw_endpoint: self.endpoint == Endpoint::Raw,
            documents: documents.map(|d| (d, 0)),
            tags,
            fields: fields.map(|f| (f, 0)),
            // Kept lines of a plain batch need no escaping; rebuilt ones are checked.
            verbatim_lines: batch.plain_text && batch.lines.is_some(),
            lines,
            head,
            times: times(&batch.records, self.time_field).cloned(),
            line_numbers: batch.line_numbers.clone(),
            itoa: itoa::Buffer::new(),
        })
    }
}

impl flowlog_sink::request::EventWriter for EventWriter {
    fn prepare<'a>(
        &'a mut self,
        batch: &'a FlowBatch,
    ) -> Result<Box<dyn WriteRow + 'a>, SinkError> {
        Ok(Box::new(self.prepare_batch(batch)?))
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
    /// code 15, so the tag map is left out here and flattened by [`tag_members`]).
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
