//! `--to raw`: each record's fields under AWS's names in snake_case, numbers as numbers,
//! `start`/`end` as Unix seconds, absent (`-`) fields left out, unknown fields as strings.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, PrimitiveArray, StringViewArray};
use arrow_schema::{DataType, TimeUnit};
use flowlog_model::FlowBatch;

use crate::json::{key_prefix, write_epoch_seconds, write_int, write_str};
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
    key: Vec<u8>,
    values: Values<'a>,
    nullable: bool,
    array: &'a dyn Array,
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
                key: key_prefix(field.name()),
                values,
                nullable: array.null_count() > 0,
                array: array.as_ref(),
            });
        }
        out.reserve(records.num_rows() * 32 * columns.len().max(1));
        for row in 0..records.num_rows() {
            out.push(b'{');
            let mut first = true;
            for column in &columns {
                if column.nullable && column.array.is_null(row) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(&column.key);
                match column.values {
                    Values::Text(a) => write_str(out, a.value(row)),
                    Values::Int32(a) => write_int(out, a.value(row)),
                    Values::Int64(a) => write_int(out, a.value(row)),
                    Values::Time(a) => write_epoch_seconds(out, a.value(row)),
                }
            }
            out.extend_from_slice(b"}\n");
        }
        Ok(())
    }
}
