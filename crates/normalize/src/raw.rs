//! `--to raw`: each record's fields under AWS's names in snake_case, numbers as numbers,
//! `start`/`end` as Unix seconds, absent (`-`) fields left out, unknown fields as strings.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, PrimitiveArray, StringViewArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, TimeUnit};
use flowlog_model::FlowBatch;

use crate::json::{extend_padded, write_view_str, MemberKey, Number, Object};
use crate::{EncodeError, Encoder};

/// The raw NDJSON encoder.
#[derive(Debug, Default)]
pub struct RawEncoder;

enum Values<'a> {
    Text(&'a StringViewArray),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    Time(&'a PrimitiveArray<TimestampMillisecondType>),
}

struct Column<'a> {
    key: MemberKey,
    values: Values<'a>,
    nulls: Option<NullBuffer>,
    /// The last number written and its text (when short): records of one capture window
    /// share start and end, protocol and often ports, so most numbers repeat the row above.
    last_value: i64,
    last_text: u128,
    last_len: usize,
}

impl Column<'_> {
    #[inline(always)]
    fn write_value(&mut self, out: &mut Vec<u8>, row: usize) {
        let value = match self.values {
            Values::Text(a) => return write_view_str(out, a, row),
            Values::Int32(a) => a.value(row) as i64,
            Values::Int64(a) => a.value(row),
            Values::Time(a) => a.value(row),
        };
        if value == self.last_value && self.last_len > 0 {
            return extend_padded(out, &self.last_text.to_le_bytes(), self.last_len);
        }
        // Called directly (not through a function pointer) so the number stays in
        // registers: a copy through the stack stalls store-to-load forwarding.
        let number = match self.values {
            Values::Time(_) => Number::epoch_seconds(value),
            _ => integer(value),
        };
        number.write(out);
        (self.last_value, self.last_len) = (value, 0);
        if let Number::Short { text, len } = number {
            (self.last_text, self.last_len) = (text, len as usize);
        }
    }
}

impl Encoder for RawEncoder {
    fn encode(&mut self, batch: &FlowBatch, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let records = &batch.records;
        let schema = records.schema();
        // Only columns with at least one value take part; a v2 batch has 14 of 72.
        let mut columns = Vec::new();
        for (field, array) in schema.fields().iter().zip(records.columns()) {
            if array.null_count() == array.len() {
                continue;
            }
            let values = match array.data_type() {
                DataType::Utf8View => Values::Text(array.as_string_view()),
                DataType::Int32 => Values::Int32(array.as_primitive()),
                DataType::Int64 => Values::Int64(array.as_primitive()),
                DataType::Timestamp(TimeUnit::Millisecond, _) => Values::Time(array.as_primitive()),
                other => {
                    return Err(EncodeError::UnsupportedColumn {
                        column: field.name().clone(),
                        data_type: other.to_string(),
                    })
                }
            };
            columns.push(Column {
                key: MemberKey::new(field.name()),
                values,
                nulls: array.logical_nulls().filter(|n| n.null_count() > 0),
                last_value: 0,
                last_text: 0,
                last_len: 0,
            });
        }
        for row in 0..records.num_rows() {
            let object = Object::begin(out);
            for column in &mut columns {
                if column.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                    continue;
                }
                column.key.write(out);
                column.write_value(out, row);
            }
            object.end(out);
            out.push(b'\n');
        }
        Ok(())
    }
}

/// Formats a column integer; the decoder only stores non-negative values, anything else is
/// written exactly all the same.
#[inline(always)]
fn integer(value: i64) -> Number {
    match u64::try_from(value) {
        Ok(n) => Number::unsigned(n),
        Err(_) => Number::from_text(&value.to_string()),
    }
}
