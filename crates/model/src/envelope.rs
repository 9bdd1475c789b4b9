//! The columns the decoder adds when an input envelope says something about a record
//! (who owns the log group it came through, which Firehose request carried it, what the
//! log engine that forwarded it knew), so that nothing an envelope carries is lost.
//!
//! They follow the flow-log columns, before enrichment's, and only in batches of records
//! that came in an envelope with such metadata; encoders find them by name.
//!
//! Each column's name without the `envelope_` prefix is the member name it has under
//! the key a user names for envelope metadata a target has no field for.

use std::sync::OnceLock;

use arrow_schema::Fields;

use crate::enrichment::{EnrichField, EnrichKind};

/// The prefix of every envelope column.
pub const ENVELOPE_PREFIX: &str = "envelope_";

/// Every envelope column, in the order they follow a batch's flow-log columns: first the
/// [`SHARED_ENVELOPE_FIELDS`] an envelope says about all its records, dictionary-encoded
/// (a batch holds few envelopes), then what each log event says, one value per row.
pub const ENVELOPE_FIELDS: [EnrichField; 9] = [
    EnrichField { column: "envelope_owner", kind: EnrichKind::Text, meaning: "AWS account that owns the log group (CloudWatch Logs subscription `owner`)" },
    EnrichField { column: "envelope_log_group", kind: EnrichKind::Text, meaning: "CloudWatch Logs log group (`logGroup`)" },
    EnrichField { column: "envelope_log_stream", kind: EnrichKind::Text, meaning: "CloudWatch Logs log stream (`logStream`; one per interface for flow logs)" },
    EnrichField { column: "envelope_subscription_filters", kind: EnrichKind::Json, meaning: "subscription filters that matched (`subscriptionFilters`), as a JSON array" },
    EnrichField { column: "envelope_request_id", kind: EnrichKind::Text, meaning: "Firehose request that carried the record (`requestId`)" },
    EnrichField { column: "envelope_fields", kind: EnrichKind::Json, meaning: "the other members of a `{\"message\"}` event (Vector's `host`, `file`, `source_type`...), as a JSON object" },
    EnrichField { column: "envelope_event_id", kind: EnrichKind::Text, meaning: "CloudWatch Logs log event id (`logEvents[].id`)" },
    EnrichField { column: "envelope_event_time", kind: EnrichKind::Time, meaning: "CloudWatch Logs log event time (`logEvents[].timestamp`)" },
    EnrichField { column: "envelope_received", kind: EnrichKind::Time, meaning: "when the pipeline in front of flowlog took the record: the `timestamp` of a `{\"message\"}` event (Vector's, when it read the line), else of the Firehose request" },
];

/// How many of [`ENVELOPE_FIELDS`] (the first ones) are the same for every record of an
/// envelope, and so dictionary-encoded.
pub const SHARED_ENVELOPE_FIELDS: usize = 6;

/// The envelope field named `column`.
pub fn envelope_field(column: &str) -> Option<&'static EnrichField> {
    ENVELOPE_FIELDS.iter().find(|f| f.column == column)
}

/// The Arrow fields of the envelope columns.
pub fn envelope_schema_fields() -> Fields {
    static FIELDS: OnceLock<Fields> = OnceLock::new();
    FIELDS
        .get_or_init(|| {
            ENVELOPE_FIELDS
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    f.arrow_field(if i < SHARED_ENVELOPE_FIELDS {
                        f.kind.data_type()
                    } else {
                        f.kind.value_type()
                    })
                })
                .collect()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_unique_across_added_columns() {
        for (i, f) in ENVELOPE_FIELDS.iter().enumerate() {
            assert!(f.column.starts_with(ENVELOPE_PREFIX), "{}", f.column);
            assert!(ENVELOPE_FIELDS[..i].iter().all(|g| g.column != f.column));
            assert!(crate::lookup(f.column).is_none());
            assert!(crate::enrichment_field(f.column).is_none());
        }
        assert!(crate::is_json_field(&envelope_schema_fields()[5]));
    }
}
