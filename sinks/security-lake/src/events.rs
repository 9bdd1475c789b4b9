//! OCSF events as the objects hold them: normalize's columns, with each record's
//! deterministic event id as `metadata.uid` (what the other sinks send as the event id),
//! so that a reader can tell a record written twice (a crash between an upload and the
//! checkpoint) from two records.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, StructArray};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};
use flowlog_model::{DeadLetter, FlowBatch};
use flowlog_normalize::{ColumnarError, OcsfColumns, OcsfVersion};

pub struct Events {
    columns: OcsfColumns,
    schema: SchemaRef,
    /// The members of `metadata`, `uid` last.
    metadata: Fields,
}

impl Events {
    pub fn new(version: OcsfVersion) -> Self {
        let columns = OcsfColumns::new(version);
        let mut metadata = Fields::empty();
        let fields: Vec<Field> = columns
            .schema()
            .fields()
            .iter()
            .map(|f| match (f.name().as_str(), f.data_type()) {
                ("metadata", DataType::Struct(members)) => {
                    let mut members: Vec<Field> =
                        members.iter().map(|m| m.as_ref().clone()).collect();
                    members.push(Field::new("uid", DataType::Utf8, true));
                    metadata = Fields::from(members);
                    Field::new("metadata", DataType::Struct(metadata.clone()), true)
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        Self {
            columns,
            schema: Arc::new(Schema::new(fields)),
            metadata,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The batch's records as events, in order, each with its event id.
    pub fn convert(&mut self, batch: &FlowBatch) -> Result<RecordBatch, ColumnarError> {
        let events = self.columns.convert(batch)?;
        let prefix = flowlog_sink::event_id_prefix(&batch.source);
        let ids: StringArray = batch
            .line_numbers
            .iter()
            .map(|line| Some(format!("{prefix}-{line}")))
            .collect();
        let columns: Vec<ArrayRef> = events
            .schema()
            .fields()
            .iter()
            .zip(events.columns())
            .map(|(field, column)| {
                if field.name() != "metadata" {
                    return Arc::clone(column);
                }
                let metadata = column
                    .as_any()
                    .downcast_ref::<StructArray>()
                    .expect("metadata is a struct");
                let (_, mut arrays, nulls) = metadata.clone().into_parts();
                arrays.push(Arc::new(ids.clone()));
                Arc::new(StructArray::new(self.metadata.clone(), arrays, nulls)) as ArrayRef
            })
            .collect();
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// A batch's events, the batch row of each, and the rows the columns cannot hold (a
/// time past year 9999), with why.
pub struct Converted {
    pub events: RecordBatch,
    pub rows: Vec<usize>,
    pub rejected: Vec<(usize, String)>,
}

impl Events {
    /// The batch as events; a record that cannot be one is set apart, the others go on.
    pub fn convert_each(&mut self, batch: &FlowBatch) -> Result<Converted, ArrowError> {
        if let Ok(events) = self.convert(batch) {
            return Ok(Converted {
                rows: (0..events.num_rows()).collect(),
                events,
                rejected: Vec::new(),
            });
        }
        // One record at a time, to find the ones at fault.
        let mut parts = Vec::new();
        let mut rows = Vec::new();
        let mut rejected = Vec::new();
        for row in 0..batch.num_rows() {
            match self.convert(&batch.slice(row, 1)) {
                Ok(events) => {
                    parts.push(events);
                    rows.push(row);
                }
                Err(e) => rejected.push((row, e.to_string())),
            }
        }
        Ok(Converted {
            events: arrow_select::concat::concat_batches(&self.schema, &parts)?,
            rows,
            rejected,
        })
    }
}

/// The dead letter of a record the columns cannot hold: its line when the batch kept
/// lines.
pub fn rejected(batch: &FlowBatch, row: usize, why: &str) -> DeadLetter {
    let line = batch.line_numbers.get(row).copied().unwrap_or_default();
    let raw = batch.lines.as_ref().map_or("", |l| l.value(row));
    DeadLetter::new(
        &batch.source,
        line,
        format!("cannot be written as OCSF columns: {why}"),
        raw.as_bytes(),
    )
}
