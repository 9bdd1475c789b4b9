//! A batch's records as flow-log lines, for outputs that carry the original text (HEC's
//! `aws:cloudwatchlogs:vpcflow`, an OTLP body): the lines the decoder kept, or for
//! batches that have none (Parquet) lines rebuilt in the default (version 2) format, the
//! one the Splunk Add-on for AWS parses, with `-` for absent values.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch, StringViewArray};
use arrow_schema::DataType;
use flowlog_model::{FlowBatch, FlowFormat, FormatField, FIELDS};

/// The lines of `batch`: kept, else rebuilt.
pub fn lines_of(batch: &FlowBatch) -> StringViewArray {
    match &batch.lines {
        Some(lines) => lines.clone(),
        None => rebuild_v2_lines(&batch.records),
    }
}

/// Lines in the default (version 2) format, `-` for absent values.
pub fn rebuild_v2_lines(records: &RecordBatch) -> StringViewArray {
    let v2 = FlowFormat::default_v2();
    let columns: Vec<Option<&dyn Array>> = v2
        .fields()
        .iter()
        .map(|f| match f {
            FormatField::Known(id) => records
                .column_by_name(FIELDS[*id].column)
                .map(|c| c.as_ref()),
            FormatField::Unknown(_) => None,
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
