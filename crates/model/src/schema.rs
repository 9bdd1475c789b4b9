//! The canonical Arrow schema: one nullable column per catalogue field, in catalogue order,
//! followed by one text column per unknown field of the format a batch was decoded with.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::catalogue::FIELDS;

/// Number of catalogue columns at the front of every FlowBatch schema.
pub fn canonical_width() -> usize {
    FIELDS.len()
}

/// The schema of a batch with no unknown fields.
pub fn canonical_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| Arc::new(Schema::new(catalogue_fields())))
        .clone()
}

/// The canonical schema extended with text columns for unknown fields (snake_case names).
pub fn schema_with_extras<S: AsRef<str>>(extras: &[S]) -> SchemaRef {
    if extras.is_empty() {
        return canonical_schema();
    }
    let mut fields = catalogue_fields();
    fields.extend(
        extras
            .iter()
            .map(|name| Field::new(name.as_ref(), DataType::Utf8View, true)),
    );
    Arc::new(Schema::new(fields))
}

fn catalogue_fields() -> Vec<Field> {
    FIELDS
        .iter()
        .map(|f| Field::new(f.column, f.kind.data_type(), true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_columns_follow_the_catalogue() {
        let schema = canonical_schema();
        assert_eq!(schema.fields().len(), FIELDS.len());
        assert_eq!(schema.field(1).name(), "account_id");
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8View);
        let extended = schema_with_extras(&["future_field"]);
        assert_eq!(extended.fields().len(), FIELDS.len() + 1);
        assert_eq!(
            extended.field(FIELDS.len()).data_type(),
            &DataType::Utf8View
        );
    }
}
