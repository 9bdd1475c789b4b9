//! Parquet flow logs (S3 delivery with `FileFormat=parquet`): underscore column names and
//! typed columns, read with the `parquet` crate's Arrow reader.
//!
//! Columns are matched to the catalogue by name and converted to the canonical types; the
//! values are held to the same checks as text (`-` is null, addresses and ranges are
//! checked), and a row that fails them is dead-lettered, rendered as a text record.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, TimestampMillisecondArray,
};
use arrow_buffer::ScalarBuffer;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_cast::{cast, cast_with_options, CastOptions};
use arrow_schema::{DataType, TimeUnit};
use flowlog_model::{FieldKind, FlowBatch, FlowFormat, FormatField, SourceId};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::file::reader::ChunkReader;

use crate::assemble::{Layout, NullColumns};
use crate::values::{
    check_ip, epoch_millis_from_int, in_range, max_value, parse_epoch_millis, parse_integer,
    BadValue,
};
use crate::{DeadLetter, DecodeError, DecodeOptions, DecodeStats, RecordSink};

/// Reads a whole Parquet file into batches of at most `options.batch_rows` rows, only the
/// columns `options.columns` wants.
pub(crate) fn decode_parquet<T: ChunkReader + 'static>(
    input: T,
    source: &SourceId,
    options: &DecodeOptions,
    stats: &mut DecodeStats,
    sink: &mut dyn RecordSink,
) -> Result<(), DecodeError> {
    let batch_rows = options.batch_rows;
    let parquet_error = |error| DecodeError::Parquet {
        source_id: source.clone(),
        error,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(input).map_err(parquet_error)?;
    let names: Vec<&str> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let format_error = |error| DecodeError::ParquetFormat {
        source_id: source.clone(),
        error,
    };
    // The whole file's columns form a format (or the file is not flow logs), whatever is
    // read of it.
    let format = FlowFormat::from_names(&names).map_err(format_error)?;
    let (format, mask) = match &options.columns {
        None => (format, ProjectionMask::all()),
        Some(wanted) => {
            let mut kept: Vec<usize> = (0..names.len())
                .filter(|&i| match &format.fields()[i] {
                    FormatField::Known(id) => wanted.get(*id).copied().unwrap_or(false),
                    FormatField::Unknown(_) => false,
                })
                .collect();
            // Rows are still counted when no column is wanted (`count(*)`).
            if kept.is_empty() {
                kept.push(0);
            }
            let kept_names: Vec<&str> = kept.iter().map(|&i| names[i]).collect();
            let projected = FlowFormat::from_names(&kept_names).map_err(format_error)?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), kept);
            (projected, mask)
        }
    };
    let layout = Layout::new(format);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(parquet_error)?;
    let mut nulls = NullColumns::default();
    let mut next_row: u64 = 1;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(e.into()))?;
        let first = next_row;
        next_row += batch.num_rows() as u64;
        decode_batch(&batch, first, &layout, &mut nulls, source, stats, sink)?;
    }
    Ok(())
}

fn decode_batch(
    batch: &RecordBatch,
    first_row: u64,
    layout: &Layout,
    nulls: &mut NullColumns,
    source: &SourceId,
    stats: &mut DecodeStats,
    sink: &mut dyn RecordSink,
) -> Result<(), DecodeError> {
    let rows = batch.num_rows();
    let mut bad: BTreeMap<usize, String> = BTreeMap::new();
    let mut columns = Vec::with_capacity(layout.targets.len());
    for (position, array) in batch.columns().iter().enumerate() {
        let name = layout.format.fields()[position].column();
        let converted =
            convert(layout.kind(position), name, array, &mut bad).map_err(|detail| {
                DecodeError::ParquetColumn {
                    source_id: source.clone(),
                    column: name.to_string(),
                    expected: layout.kind(position).name().to_string(),
                    detail,
                }
            })?;
        columns.push(converted);
    }
    let mut line_numbers: Vec<u64> = (0..rows as u64).map(|i| first_row + i).collect();
    if !bad.is_empty() {
        for (&row, reason) in &bad {
            stats.dead_letters += 1;
            let raw = render_row(batch, row);
            let letter = DeadLetter::new(
                source,
                first_row + row as u64,
                reason.clone(),
                raw.as_bytes(),
            );
            sink.dead_letter(letter).map_err(DecodeError::Sink)?;
        }
        let keep = BooleanArray::from_iter((0..rows).map(|i| Some(!bad.contains_key(&i))));
        columns = columns
            .iter()
            .map(|c| arrow_select::filter::filter(c, &keep).expect("same length"))
            .collect();
        line_numbers.retain(|n| !bad.contains_key(&((n - first_row) as usize)));
    }
    let kept = line_numbers.len();
    if kept == 0 {
        return Ok(());
    }
    stats.records += kept as u64;
    let records = nulls.assemble(layout, columns, kept);
    sink.batch(FlowBatch::new(
        records,
        source.clone(),
        ScalarBuffer::from(line_numbers),
    ))
    .map_err(DecodeError::Sink)
}

/// Converts one column to its canonical type, recording rows whose values fail the checks.
fn convert(
    kind: FieldKind,
    name: &str,
    array: &ArrayRef,
    bad: &mut BTreeMap<usize, String>,
) -> Result<ArrayRef, String> {
    let mut reject = |row: usize, value: &str, why: BadValue| {
        bad.entry(row)
            .or_insert_with(|| format!("field `{name}`: `{value}` {}", why.0));
    };
    match kind {
        FieldKind::Text | FieldKind::IpAddr => {
            let text = cast(array, &DataType::Utf8View).map_err(|e| e.to_string())?;
            let text = text.as_string_view();
            let mut dash = Vec::with_capacity(text.len());
            for (row, value) in text.iter().enumerate() {
                let is_dash = value == Some("-");
                if let (Some(v), false, FieldKind::IpAddr) = (value, is_dash, kind) {
                    if let Err(why) = check_ip(v.as_bytes()) {
                        reject(row, v, why);
                    }
                }
                dash.push(is_dash);
            }
            let dash = BooleanArray::from(dash);
            let cleaned = arrow_select::nullif::nullif(text, &dash).map_err(|e| e.to_string())?;
            Ok(cleaned)
        }
        FieldKind::Port
        | FieldKind::Code
        | FieldKind::Int32
        | FieldKind::Count
        | FieldKind::EpochTime => {
            let values = integers(kind, array, &mut reject)?;
            Ok(match kind {
                FieldKind::Count => Arc::new(Int64Array::from(values)) as ArrayRef,
                FieldKind::EpochTime => {
                    Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
                }
                _ => Arc::new(Int32Array::from_iter(
                    values.into_iter().map(|v| v.map(|v| v as i32)),
                )),
            })
        }
    }
}

/// The values of an integer-kind column as checked `i64`s (milliseconds for times); text
/// columns are parsed like text tokens.
fn integers(
    kind: FieldKind,
    array: &ArrayRef,
    reject: &mut impl FnMut(usize, &str, BadValue),
) -> Result<Vec<Option<i64>>, String> {
    let mut out = Vec::with_capacity(array.len());
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(array, &DataType::Utf8View).map_err(|e| e.to_string())?;
            for (row, value) in text.as_string_view().iter().enumerate() {
                out.push(match value {
                    None | Some("-") => None,
                    Some(v) => {
                        let parsed = if kind == FieldKind::EpochTime {
                            parse_epoch_millis(v.as_bytes())
                        } else {
                            parse_integer(kind, v.as_bytes())
                        };
                        parsed.map_err(|why| reject(row, v, why)).ok()
                    }
                });
            }
        }
        data_type => {
            let timestamp = matches!(data_type, DataType::Timestamp(..));
            let as_ints = if timestamp {
                let millis = cast(array, &DataType::Timestamp(TimeUnit::Millisecond, None))
                    .map_err(|e| e.to_string())?;
                cast(&millis, &DataType::Int64)
            } else {
                let strict = CastOptions {
                    safe: false,
                    ..Default::default()
                };
                cast_with_options(array, &DataType::Int64, &strict)
            }
            .map_err(|e| e.to_string())?;
            for (row, value) in as_ints.as_primitive::<Int64Type>().iter().enumerate() {
                out.push(value.and_then(|v| {
                    let checked = match kind {
                        FieldKind::EpochTime if timestamp => Ok(v),
                        FieldKind::EpochTime => epoch_millis_from_int(v),
                        _ => u64::try_from(v)
                            .map_err(|_| BadValue("is negative"))
                            .and_then(|n| in_range(kind, max_value(kind), n)),
                    };
                    checked.map_err(|why| reject(row, &v.to_string(), why)).ok()
                }));
            }
        }
    }
    Ok(out)
}

/// A row as a text record (`-` for nulls), for dead letters.
fn render_row(batch: &RecordBatch, row: usize) -> String {
    let options = FormatOptions::default();
    batch
        .columns()
        .iter()
        .map(|c| {
            if c.is_null(row) {
                "-".to_string()
            } else {
                ArrayFormatter::try_new(c.as_ref(), &options)
                    .map(|f| f.value(row).to_string())
                    .unwrap_or_else(|_| "?".to_string())
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use arrow_array::StringArray;

    use super::*;
    use crate::{decode_reader, Collected};

    /// Three rows; the second has an address out of range in `dstaddr`.
    fn file() -> Vec<u8> {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "srcaddr",
                Arc::new(StringArray::from(vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"])) as ArrayRef,
            ),
            (
                "dstaddr",
                Arc::new(StringArray::from(vec!["10.0.1.1", "10.0.1.999", "-"])),
            ),
            ("dstport", Arc::new(Int32Array::from(vec![22, 443, 80]))),
        ])
        .unwrap();
        let mut out = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    }

    fn decode(columns: Option<&[&str]>) -> Collected {
        let wanted = columns.map(|names| {
            let mut wanted = vec![false; flowlog_model::canonical_width()];
            for name in names {
                wanted[flowlog_model::canonical_schema().index_of(name).unwrap()] = true;
            }
            Arc::from(wanted)
        });
        let options = DecodeOptions {
            columns: wanted,
            ..DecodeOptions::default()
        };
        let mut collected = Collected::default();
        decode_reader(
            &file()[..],
            SourceId::new("f.parquet"),
            &options,
            &mut collected,
        )
        .unwrap();
        collected
    }

    #[test]
    fn only_the_columns_wanted_are_read_and_checked() {
        let whole = decode(None);
        assert_eq!(whole.dead_letters.len(), 1);
        assert_eq!(whole.batches[0].records.num_rows(), 2);

        let some = decode(Some(&["srcaddr", "dstport"]));
        assert!(some.dead_letters.is_empty());
        let records = &some.batches[0].records;
        assert_eq!(records.num_rows(), 3);
        assert_eq!(records.column_by_name("dstaddr").unwrap().null_count(), 3);
        assert_eq!(records.column_by_name("srcaddr").unwrap().null_count(), 0);
        assert_eq!(some.batches[0].line_numbers.to_vec(), [1, 2, 3]);

        // No column at all (`count(*)`): every row is still there.
        let none = decode(Some(&[]));
        assert_eq!(none.batches[0].records.num_rows(), 3);
    }
}
