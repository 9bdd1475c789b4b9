//! Turning the columns of one format into a canonical-schema `RecordBatch`.
//!
//! Both the line decoder and the Parquet reader produce arrays only for the fields their
//! format has; every other catalogue column is null. Null columns are sliced from one
//! cached all-null array per type, so a v2 batch does not allocate 58 null arrays.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{new_null_array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use flowlog_model::{canonical_width, schema_with_extras, FlowFormat, FormatField, FIELDS};

/// Where each position of a format lands in the canonical schema.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub format: FlowFormat,
    pub schema: SchemaRef,
    /// `targets[i]` = schema column of format position `i`.
    pub targets: Vec<usize>,
}

impl Layout {
    pub fn new(format: FlowFormat) -> Self {
        let extras: Vec<&str> = format.unknown_fields().map(|s| &**s).collect();
        let schema = schema_with_extras(&extras);
        let mut next_extra = canonical_width();
        let targets = format
            .fields()
            .iter()
            .map(|f| match f {
                FormatField::Known(id) => *id,
                FormatField::Unknown(_) => {
                    next_extra += 1;
                    next_extra - 1
                }
            })
            .collect();
        Self {
            format,
            schema,
            targets,
        }
    }

    /// The catalogue kind of format position `i` (unknown fields are text).
    pub fn kind(&self, i: usize) -> flowlog_model::FieldKind {
        match &self.format.fields()[i] {
            FormatField::Known(id) => FIELDS[*id].kind,
            FormatField::Unknown(_) => flowlog_model::FieldKind::Text,
        }
    }
}

/// Cached all-null arrays, one per data type, grown on demand and sliced per batch.
#[derive(Default)]
pub(crate) struct NullColumns {
    cache: HashMap<DataType, ArrayRef>,
}

impl NullColumns {
    fn get(&mut self, data_type: &DataType, rows: usize) -> ArrayRef {
        let entry = self
            .cache
            .entry(data_type.clone())
            .or_insert_with(|| new_null_array(data_type, rows));
        if entry.len() < rows {
            *entry = new_null_array(data_type, rows.next_power_of_two());
        }
        entry.slice(0, rows)
    }

    /// Builds the canonical batch from the arrays of a layout's format positions.
    pub fn assemble(
        &mut self,
        layout: &Layout,
        columns: Vec<ArrayRef>,
        rows: usize,
    ) -> RecordBatch {
        debug_assert_eq!(columns.len(), layout.targets.len());
        let mut arrays: Vec<Option<ArrayRef>> = vec![None; layout.schema.fields().len()];
        for (target, array) in layout.targets.iter().zip(columns) {
            arrays[*target] = Some(array);
        }
        let arrays = arrays
            .into_iter()
            .zip(layout.schema.fields())
            .map(|(a, f)| a.unwrap_or_else(|| self.get(f.data_type(), rows)))
            .collect();
        RecordBatch::try_new(Arc::clone(&layout.schema), arrays)
            .expect("columns are built to the layout's schema")
    }
}
