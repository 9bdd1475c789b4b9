//! OCSF events as the objects hold them: normalize's columns, with each record's
//! deterministic event id as `metadata.uid` (what the other sinks send as the event id),
//! so that a reader can tell a record written twice (a crash between an upload and the
//! checkpoint) from two records.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, StructArray};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};
use flowlog_model::FlowBatch;
use flowlog_normalize::{ColumnarError, OcsfColumns, OcsfVersion};

pub struct Events {
    columns: OcsfColumns,
    schema: SchemaRef,
}

impl Events {
    pub fn new(version: OcsfVersion) -> Self {
        let columns = OcsfColumns::new(version);
        let fields: Vec<Field> = columns
            .schema()
            .fields()
            .iter()
            .map(|f| match (f.name().as_str(), f.data_type()) {
                ("metadata", DataType::Struct(members)) => {
                    let mut members: Vec<Field> =
                        members.iter().map(|m| m.as_ref().clone()).collect();
                    members.push(uid_field());
                    Field::new("metadata", DataType::Struct(Fields::from(members)), true)
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        Self {
            columns,
            schema: Arc::new(Schema::new(fields)),
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
                let (fields, mut arrays, nulls) = metadata.clone().into_parts();
                let mut fields: Vec<Field> = fields.iter().map(|f| f.as_ref().clone()).collect();
                fields.push(uid_field());
                arrays.push(Arc::new(ids.clone()));
                Arc::new(StructArray::new(Fields::from(fields), arrays, nulls)) as ArrayRef
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
        let whole = match self.convert(batch) {
            Ok(events) => events,
            Err(e) if batch.num_rows() <= 1 => {
                return Ok(Converted {
                    events: RecordBatch::new_empty(Arc::clone(&self.schema)),
                    rows: Vec::new(),
                    rejected: (0..batch.num_rows()).map(|r| (r, e.to_string())).collect(),
                })
            }
            Err(_) => {
                // One record at a time, to find the ones at fault.
                let mut parts = Vec::new();
                let mut converted = Converted {
                    events: RecordBatch::new_empty(Arc::clone(&self.schema)),
                    rows: Vec::new(),
                    rejected: Vec::new(),
                };
                for row in 0..batch.num_rows() {
                    match self.convert(&batch.slice(row, 1)) {
                        Ok(events) => {
                            parts.push(events);
                            converted.rows.push(row);
                        }
                        Err(e) => converted.rejected.push((row, e.to_string())),
                    }
                }
                converted.events = arrow_select::concat::concat_batches(&self.schema, &parts)?;
                return Ok(converted);
            }
        };
        Ok(Converted {
            rows: (0..whole.num_rows()).collect(),
            events: whole,
            rejected: Vec::new(),
        })
    }
}

fn uid_field() -> Field {
    Field::new("uid", DataType::Utf8, true)
}
