//! `--to raw`: each record's fields under AWS's names in snake_case, numbers as numbers,
//! `start`/`end` as Unix seconds, absent (`-`) fields left out, unknown fields as strings.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, PrimitiveArray, StringViewArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, TimeUnit};
use flowlog_model::FlowBatch;

use crate::json::{str_bound, MemberKey, Number, Object, Out, OutBuffer, Rows, NUMBER_BOUND};
use crate::{EncodeError, Encoder};

/// The raw NDJSON encoder.
#[derive(Debug, Default)]
pub struct RawEncoder {
    buffer: OutBuffer,
}

enum Values<'a> {
    Text(&'a StringViewArray),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    Time(&'a PrimitiveArray<TimestampMillisecondType>),
}

struct Column<'a> {
    key: MemberKey,
    values: Values<'a>,
    /// Validity bits (Arrow's layout, from bit `offset` on) when the column has nulls.
    validity: Option<(&'a [u8], usize)>,
}

impl<'a> Column<'a> {
    fn new(name: &str, array: &'a dyn Array) -> Result<Self, EncodeError> {
        let values = match array.data_type() {
            DataType::Utf8View => Values::Text(array.as_string_view()),
            DataType::Int32 => Values::Int32(array.as_primitive()),
            DataType::Int64 => Values::Int64(array.as_primitive()),
            DataType::Timestamp(TimeUnit::Millisecond, _) => Values::Time(array.as_primitive()),
            other => {
                return Err(EncodeError::UnsupportedColumn {
                    column: name.to_string(),
                    data_type: other.to_string(),
                })
            }
        };
        Ok(Self {
            key: MemberKey::new(name),
            values,
            validity: array
                .nulls()
                .filter(|n| n.null_count() > 0)
                .map(|n| (n.validity(), n.offset())),
        })
    }

    /// Read from the bits directly: `NullBuffer::is_null` asserts the index and goes
    /// through the buffer's length every time, which costs more than writing a value.
    #[inline(always)]
    fn is_null(&self, row: usize) -> bool {
        self.validity.is_some_and(|(bits, offset)| {
            let i = row + offset;
            bits[i / 8] & (1 << (i % 8)) == 0
        })
    }

    /// The most bytes this column's member takes in any row of the batch.
    fn bound(&self) -> usize {
        let value = match self.values {
            Values::Text(a) => {
                let longest = a.views().iter().map(|v| *v as u32).max().unwrap_or(0);
                str_bound(longest as usize)
            }
            _ => NUMBER_BOUND,
        };
        self.key.len() + value
    }

    /// Numbers are formatted inline (not behind a function pointer) so they stay in
    /// registers: a copy through the stack stalls store-to-load forwarding.
    #[inline(always)]
    fn write_value<const PLAIN: bool>(&self, out: &mut Out<'_>, row: usize) {
        match self.values {
            Values::Text(a) => out.view_str::<PLAIN>(a, row),
            Values::Int32(a) => Number::integer(a.value(row).into()).write(out),
            Values::Int64(a) => Number::integer(a.value(row)).write(out),
            Values::Time(a) => Number::epoch_seconds(a.value(row)).write(out),
        }
    }
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
            if array.null_count() < array.len() {
                columns.push(Column::new(field.name(), array.as_ref())?);
                complete = NullBuffer::union(complete.as_ref(), array.nulls());
            }
        }
        let row_bound = columns.iter().map(Column::bound).sum::<usize>() + Object::BOUND + 1;
        let mut rows = self.buffer.rows();
        let batch_rows = Batch {
            columns: &columns,
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
    columns: &'c [Column<'a>],
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
                for column in self.columns {
                    if !complete && column.is_null(row) {
                        continue;
                    }
                    column.key.write(out);
                    column.write_value::<PLAIN>(out, row);
                }
                object.end(out);
                out.byte(b'\n');
            });
        }
    }
}
