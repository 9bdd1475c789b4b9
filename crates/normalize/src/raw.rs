//! `--to raw`: each record's fields under AWS's names in snake_case, numbers as numbers,
//! `start`/`end` as Unix seconds, absent (`-`) fields left out, unknown fields as strings;
//! envelope metadata only under the key the user names.

use arrow_array::Array;
use arrow_buffer::NullBuffer;
use flowlog_model::envelope::ENVELOPE_PREFIX;
use flowlog_model::FlowBatch;

use crate::columns::Column;
use crate::envelope::EnvelopeObject;
use crate::json::{MemberKey, Object, OutBuffer, Rows};
use crate::{EncodeError, Encoder};

/// The raw NDJSON encoder.
#[derive(Debug, Default)]
pub struct RawEncoder {
    buffer: OutBuffer,
    /// `,"key":` of the envelope object (see [`crate::EncodeOptions::envelope_key`]).
    envelope: Option<MemberKey>,
}

impl RawEncoder {
    /// With `envelope_key`, envelope metadata is written as one object under that key.
    pub fn new(envelope_key: Option<&str>) -> Self {
        Self {
            buffer: OutBuffer::default(),
            envelope: envelope_key.map(MemberKey::new),
        }
    }
}

/// A column with its member name.
struct Member<'a> {
    key: MemberKey,
    column: Column<'a>,
}

impl Encoder for RawEncoder {
    fn encode(&mut self, batch: &FlowBatch) -> Result<&[u8], EncodeError> {
        let records = &batch.records;
        let schema = records.schema();
        // Only columns with at least one value take part; a v2 batch has 14 of 72. Rows
        // where all of them have a value (most rows) are written without a null check per
        // member.
        let mut columns = Vec::new();
        let mut complete = None;
        for (field, array) in schema.fields().iter().zip(records.columns()) {
            if field.name().starts_with(ENVELOPE_PREFIX) {
                continue;
            }
            if array.logical_null_count() < array.len() {
                columns.push(Member {
                    key: MemberKey::new(field.name()),
                    column: Column::new(field, array.as_ref())?,
                });
                complete = NullBuffer::union(complete.as_ref(), array.logical_nulls().as_ref());
            }
        }
        let envelope = match &self.envelope {
            Some(key) => EnvelopeObject::bind(key, records, |_| false)?,
            None => None,
        };
        let row_bound = columns
            .iter()
            .map(|m| m.key.len() + m.column.value_bound())
            .sum::<usize>()
            + envelope.as_ref().map_or(0, EnvelopeObject::bound)
            + Object::BOUND
            + 1;
        let mut rows = self.buffer.rows();
        let batch_rows = Batch {
            columns: &columns,
            envelope: envelope.as_ref(),
            complete: complete.as_ref(),
            num_rows: records.num_rows(),
            row_bound,
        };
        // The check for bytes to escape is compiled out of the loop for plain batches.
        if batch.plain_text {
            batch_rows.write::<true>(&mut rows);
        } else {
            batch_rows.write::<false>(&mut rows);
        }
        let written = rows.finish();
        Ok(self.buffer.written(written))
    }
}

/// What one batch's rows are written from.
struct Batch<'c, 'a> {
    columns: &'c [Member<'a>],
    envelope: Option<&'c EnvelopeObject<'c, 'a>>,
    /// Rows where every column has a value, when some do not.
    complete: Option<&'c NullBuffer>,
    num_rows: usize,
    row_bound: usize,
}

impl Batch<'_, '_> {
    fn write<const PLAIN: bool>(&self, rows: &mut Rows<'_>) {
        for row in 0..self.num_rows {
            let complete = self.complete.is_none_or(|c| c.is_valid(row));
            rows.row(self.row_bound, |out| {
                let object = Object::begin(out);
                for member in self.columns {
                    if !complete && member.column.is_null(row) {
                        continue;
                    }
                    member.key.write(out);
                    member.column.write_value::<PLAIN>(out, row);
                }
                if let Some(envelope) = self.envelope {
                    envelope.write::<PLAIN>(out, row);
                }
                object.end(out);
                out.byte(b'\n');
            });
        }
    }
}
