//! A batch's records as flow-log lines, for outputs that carry the original text (HEC's
//! `aws:cloudwatchlogs:vpcflow`, an OTLP body): the lines the decoder kept, or for
//! batches that have none (Parquet) lines rebuilt in the default (version 2) format, the
//! one the Splunk Add-on for AWS parses, with `-` for absent values.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch, StringViewArray};
use arrow_schema::DataType;
use flowlog_model::{FlowBatch, FlowFormat, FormatField, FIELDS};

/// Each row's text, one after the other: the document an encoder wrote for it (from its
/// NDJSON), or else the record's flow-log line. What a sink that sends one text per
/// record (a message, an entry) writes from.
pub struct RowTexts<'a> {
    documents: Option<(&'a [u8], usize)>,
    lines: Option<StringViewArray>,
}

impl<'a> RowTexts<'a> {
    /// The documents `encoder` writes for `batch`, or without one its lines.
    pub fn new(
        encoder: Option<&'a mut (dyn crate::Encoder + Send)>,
        batch: &FlowBatch,
    ) -> Result<Self, crate::EncodeError> {
        Ok(match encoder {
            Some(encoder) => Self {
                documents: Some((encoder.encode(batch)?, 0)),
                lines: None,
            },
            None => Self {
                documents: None,
                lines: Some(lines_of(batch)),
            },
        })
    }

    /// The text of `row`, without a newline (rows in order, each once).
    pub fn next(&mut self, row: usize) -> &[u8] {
        match (&mut self.documents, &self.lines) {
            (Some((text, at)), _) => next_line(text, at),
            (None, Some(lines)) => lines.value(row).as_bytes(),
            (None, None) => unreachable!("one or the other is set"),
        }
    }
}

/// The next line of `text` (NDJSON, as an encoder wrote it) at `at`, without its newline;
/// moves `at` past it.
pub fn next_line<'a>(text: &'a [u8], at: &mut usize) -> &'a [u8] {
    let start = *at;
    let end = memchr::memchr(b'\n', &text[start..]).map_or(text.len(), |i| start + i);
    *at = (end + 1).min(text.len());
    &text[start..end]
}

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
