//! A query's rows written out: an aligned table for a person, CSV, NDJSON or Parquet for
//! another program.

use std::io::Write;

use arrow_array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::QueryError;

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns with borders, at most a set number of rows.
    Table,
    /// RFC 4180, with a header line.
    Csv,
    /// One JSON object per row; null values are left out.
    Ndjson,
    /// A Parquet file (zstd).
    Parquet,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "ndjson" | "json" => Ok(Format::Ndjson),
            "parquet" => Ok(Format::Parquet),
            _ => Err(format!(
                "{s:?} is not an output format: table, csv, ndjson or parquet"
            )),
        }
    }
}

/// What was written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Rows the query returned.
    pub rows: u64,
    /// Of them, rows written (a table shows at most its limit).
    pub shown: u64,
}

/// Writes every row of `stream` to `out` as `format`. A table holds at most `max_rows`
/// rows; the rest are counted, not shown.
pub async fn write(
    mut stream: SendableRecordBatchStream,
    format: Format,
    max_rows: usize,
    out: &mut (dyn Write + Send),
) -> Result<Written, QueryError> {
    let schema = stream.schema();
    let failed = |e: datafusion::error::DataFusionError| QueryError::from_datafusion(&e);
    let output = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    let mut written = Written::default();
    match format {
        Format::Table => {
            let mut shown: Vec<RecordBatch> = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(failed)?;
                let rows = batch.num_rows() as u64;
                let room = (max_rows as u64).saturating_sub(written.shown);
                if room > 0 {
                    let take = room.min(rows) as usize;
                    shown.push(batch.slice(0, take));
                    written.shown += take as u64;
                }
                written.rows += rows;
            }
            if shown.is_empty() {
                shown.push(RecordBatch::new_empty(schema));
            }
            let table = pretty_format_batches(&shown).map_err(|e| output(&e))?;
            writeln!(out, "{table}").map_err(|e| output(&e))?;
        }
        Format::Csv => {
            let mut writer = CsvWriterBuilder::new().with_header(true).build(out);
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(failed)?;
                writer.write(&batch).map_err(|e| output(&e))?;
                written.rows += batch.num_rows() as u64;
            }
            if written.rows == 0 {
                // The header alone, so that an empty answer still names its columns.
                writer
                    .write(&RecordBatch::new_empty(schema))
                    .map_err(|e| output(&e))?;
            }
            written.shown = written.rows;
        }
        Format::Ndjson => {
            let mut writer = LineDelimitedWriter::new(out);
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(failed)?;
                writer.write(&batch).map_err(|e| output(&e))?;
                written.rows += batch.num_rows() as u64;
            }
            writer.finish().map_err(|e| output(&e))?;
            written.shown = written.rows;
        }
        Format::Parquet => {
            let properties = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let mut writer =
                ArrowWriter::try_new(out, schema, Some(properties)).map_err(|e| output(&e))?;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(failed)?;
                writer.write(&batch).map_err(|e| output(&e))?;
                written.rows += batch.num_rows() as u64;
            }
            writer.close().map_err(|e| output(&e))?;
            written.shown = written.rows;
        }
    }
    Ok(written)
}
