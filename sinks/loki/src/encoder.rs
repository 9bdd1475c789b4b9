//! Batches as Loki entries: per record its stream's labels, its time and its line
//! ([`crate::push`] says how an event is laid out).
//!
//! Loki keeps one entry per stream, timestamp and line, and flow logs hold records
//! identical in every field (the same flow reported twice in one capture window). So an
//! entry's time is the record's, plus its place in its source in nanoseconds below the
//! millisecond: identical records stay distinct entries, and a record sent again after a
//! restart (same source, same line) lands on its first copy, which Loki drops as the
//! duplicate it is.

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, PrimitiveArray};
use flowlog_model::FlowBatch;
use flowlog_normalize::lines::RowTexts;
use flowlog_normalize::Encoder;
use flowlog_sink::request::{EventWriter, WriteRow};
use flowlog_sink::template::{Columns, Template};
use flowlog_sink::SinkError;

use crate::settings::{LokiConfig, TimeField};

const NANOS_PER_MILLI: u64 = 1_000_000;

/// Writes the entries of batches.
pub(crate) struct EntryWriter {
    documents: Option<Box<dyn Encoder + Send>>,
    labels: Vec<(String, Template)>,
    time_field: TimeField,
}

impl EntryWriter {
    pub fn new(config: &LokiConfig) -> Result<Self, SinkError> {
        Ok(Self {
            documents: config
                .target()?
                .map(|t| t.encoder_with(&config.encode_options())),
            labels: config.label_templates()?,
            time_field: config.time_field,
        })
    }
}

/// One batch, ready to be written row by row.
struct Prepared<'a> {
    texts: RowTexts<'a>,
    labels: &'a [(String, Template)],
    columns: Columns,
    times: Option<PrimitiveArray<TimestampMillisecondType>>,
    /// The source's place among others (a hash of its name) and each row's line in it:
    /// the entries' nanoseconds below the millisecond.
    source_offset: u64,
    lines: &'a [u64],
    /// When a record has no time: when the batch was written.
    now_nanos: i64,
    /// The last row's label values and their JSON object (rows of one object mostly
    /// share them).
    values: String,
    last_values: String,
    last_json: Vec<u8>,
}

impl Prepared<'_> {
    /// `{"name":"value",...}` for `row`, labels that render empty left out.
    fn labels(&mut self, row: usize) -> &[u8] {
        self.values.clear();
        for (_, template) in self.labels {
            template.render(&self.columns, row, &mut self.values);
            self.values.push('\u{1f}');
        }
        if self.values != self.last_values || self.last_json.is_empty() {
            self.last_json.clear();
            self.last_json.push(b'{');
            for ((name, _), value) in self.labels.iter().zip(self.values.split('\u{1f}')) {
                if value.is_empty() {
                    continue;
                }
                if self.last_json.len() > 1 {
                    self.last_json.push(b',');
                }
                serde_json::to_writer(&mut self.last_json, name).expect("writing to a Vec");
                self.last_json.push(b':');
                serde_json::to_writer(&mut self.last_json, value).expect("writing to a Vec");
            }
            self.last_json.push(b'}');
            std::mem::swap(&mut self.values, &mut self.last_values);
        }
        &self.last_json
    }
}

impl WriteRow for Prepared<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self.labels(row));
        out.push(b'\t');
        let nanos = match &self.times {
            Some(times) if times.is_valid(row) => {
                let place = self.source_offset.wrapping_add(self.lines[row]) % NANOS_PER_MILLI;
                times
                    .value(row)
                    .saturating_mul(NANOS_PER_MILLI as i64)
                    .saturating_add(place as i64)
            }
            _ => self.now_nanos,
        };
        out.extend_from_slice(itoa::Buffer::new().format(nanos).as_bytes());
        out.push(b'\t');
        out.extend_from_slice(self.texts.next(row));
        out.push(b'\n');
    }
}

impl EventWriter for EntryWriter {
    fn prepare<'a>(
        &'a mut self,
        batch: &'a FlowBatch,
    ) -> Result<Box<dyn WriteRow + 'a>, SinkError> {
        let encoder = self.documents.as_deref_mut().map(|e| e as _);
        let texts = RowTexts::new(encoder, batch).map_err(|e| SinkError::Config(e.to_string()))?;
        let names = self.labels.iter().flat_map(|(_, t)| t.columns());
        let column = match self.time_field {
            TimeField::Start => "start",
            TimeField::End => "end",
        };
        let times = batch
            .records
            .column_by_name(column)
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
            .cloned();
        let now_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        // The hex of the first 64 bits of the SHA-1 of the source's name: stable across
        // runs, unlike the standard library's hashers.
        let source_offset = u64::from_str_radix(&batch.source.event_id_prefix(), 16).unwrap_or(0);
        Ok(Box::new(Prepared {
            texts,
            labels: &self.labels,
            columns: Columns::of(&batch.records, names),
            times,
            source_offset,
            lines: &batch.line_numbers,
            now_nanos,
            values: String::new(),
            last_values: String::new(),
            last_json: Vec::new(),
        }))
    }
}
