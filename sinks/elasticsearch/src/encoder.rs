//! Batches as `_bulk` bodies: per record a `create` action naming the target and the
//! record's deterministic id, then its document, each on its own line.

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, PrimitiveArray};
use arrow_buffer::ScalarBuffer;
use flowlog_model::FlowBatch;
use flowlog_normalize::Encoder;
use flowlog_sink::request::{EventWriter, WriteRow};
use flowlog_sink::{event_id_prefix, SinkError};

use crate::settings::{Destination, EsConfig};

/// Writes actions and documents.
pub(crate) struct BulkWriter {
    encoder: Box<dyn Encoder + Send>,
    destination: Destination,
    /// A dated index name per day (days since 1970), for index patterns.
    names: std::collections::HashMap<i64, String>,
}

impl BulkWriter {
    pub fn new(config: &EsConfig) -> Result<Self, SinkError> {
        Ok(Self {
            encoder: config.target()?.encoder_with(&config.encode_options()),
            destination: config.destination(),
            names: std::collections::HashMap::new(),
        })
    }
}

/// One batch, ready to be written row by row.
struct Prepared<'a> {
    documents: &'a [u8],
    at: usize,
    /// `{"create":{"_index":"` ... per row the index name ... `","_id":"<prefix>-`.
    open: &'static [u8],
    /// Per row: the index (an index into `names`).
    indices: Vec<u32>,
    names: Vec<Vec<u8>>,
    id_prefix: String,
    line_numbers: ScalarBuffer<u64>,
    itoa: itoa::Buffer,
}

impl EventWriter for BulkWriter {
    fn prepare<'a>(
        &'a mut self,
        batch: &'a FlowBatch,
    ) -> Result<Box<dyn WriteRow + 'a>, SinkError> {
        let rows = batch.num_rows();
        let (indices, names) = match &self.destination {
            Destination::DataStream(name) => (vec![0; rows], vec![name.as_bytes().to_vec()]),
            Destination::Index(pattern) => {
                let times = Times::of(batch);
                let mut names: Vec<Vec<u8>> = Vec::new();
                let mut days: Vec<i64> = Vec::new();
                let mut indices = Vec::with_capacity(rows);
                for row in 0..rows {
                    let day = times.millis(row).div_euclid(86_400_000);
                    let index = match days.iter().position(|&d| d == day) {
                        Some(i) => i,
                        None => {
                            let name = self
                                .names
                                .entry(day)
                                .or_insert_with(|| dated(pattern, day))
                                .clone();
                            days.push(day);
                            names.push(name.into_bytes());
                            days.len() - 1
                        }
                    };
                    indices.push(index as u32);
                }
                (indices, names)
            }
        };
        let documents = self
            .encoder
            .encode(batch)
            .map_err(|e| SinkError::Config(e.to_string()))?;
        Ok(Box::new(Prepared {
            documents,
            at: 0,
            open: b"{\"create\":{\"_index\":\"",
            indices,
            names,
            id_prefix: event_id_prefix(&batch.source),
            line_numbers: batch.line_numbers.clone(),
            itoa: itoa::Buffer::new(),
        }))
    }
}

impl WriteRow for Prepared<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self.open);
        out.extend_from_slice(&self.names[self.indices[row] as usize]);
        out.extend_from_slice(b"\",\"_id\":\"");
        out.extend_from_slice(self.id_prefix.as_bytes());
        out.push(b'-');
        out.extend_from_slice(self.itoa.format(self.line_numbers[row]).as_bytes());
        out.extend_from_slice(b"\"}}\n");
        // The encoder's NDJSON: one document per row, each ending with a newline.
        let rest = &self.documents[self.at..];
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        out.extend_from_slice(&rest[..end]);
        self.at += end;
    }
}

/// The time of each row's `@timestamp` as ECS writes it: the flow's end, else its start,
/// else now.
struct Times<'a> {
    end: Option<&'a PrimitiveArray<TimestampMillisecondType>>,
    start: Option<&'a PrimitiveArray<TimestampMillisecondType>>,
    now: i64,
}

impl<'a> Times<'a> {
    fn of(batch: &'a FlowBatch) -> Self {
        let column = |name| {
            batch
                .records
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        };
        Self {
            end: column("end"),
            start: column("start"),
            now: flowlog_normalize::time::now_millis(),
        }
    }

    fn millis(&self, row: usize) -> i64 {
        let at = |c: Option<&PrimitiveArray<TimestampMillisecondType>>| {
            c.filter(|c| c.is_valid(row)).map(|c| c.value(row))
        };
        at(self.end).or_else(|| at(self.start)).unwrap_or(self.now)
    }
}

/// `pattern` with `%Y`, `%m` and `%d` replaced by the date of `day` (days since 1970).
pub(crate) fn dated(pattern: &str, day: i64) -> String {
    let (year, month, d) = flowlog_model::time::civil_from_days(day);
    pattern
        .replace("%Y", &format!("{year:04}"))
        .replace("%m", &format!("{month:02}"))
        .replace("%d", &format!("{d:02}"))
}
