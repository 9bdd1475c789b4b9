//! What an envelope says about the records it carries (CloudWatch Logs `owner`,
//! `logGroup`, `logStream`; Firehose `requestId` and `timestamp`; the other members of a
//! `{"message"}` event), kept per row while a batch is built and appended to it as the
//! envelope columns of [`flowlog_model::envelope`].

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringViewArray, TimestampMillisecondArray};
use arrow_schema::Schema;
use flowlog_model::envelope::envelope_schema_fields;
use flowlog_model::needs_json_escape;

/// Metadata of an envelope, shared by every record it carries. Nested envelopes (a
/// CloudWatch Logs payload inside a Firehose record) add to their parent's.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Metadata {
    pub owner: Option<Box<str>>,
    pub log_group: Option<Box<str>>,
    pub log_stream: Option<Box<str>>,
    /// A JSON array, as the envelope had it.
    pub subscription_filters: Option<Box<str>>,
    pub request_id: Option<Box<str>>,
    /// Milliseconds since the epoch.
    pub received: Option<i64>,
    /// A JSON object of members flowlog has no column for.
    pub fields: Option<Box<str>>,
}

impl Metadata {
    pub fn is_empty(&self) -> bool {
        *self == Metadata::default()
    }
}

/// The envelope of one record: what it shares with its neighbours, and what its log
/// event alone says.
#[derive(Debug, Default, Clone)]
pub(crate) struct RowMetadata {
    pub shared: Option<Arc<Metadata>>,
    pub event_id: Option<Box<str>>,
    pub event_time: Option<i64>,
}

impl RowMetadata {
    fn is_empty(&self) -> bool {
        self.shared.is_none() && self.event_id.is_none() && self.event_time.is_none()
    }
}

/// Appends the envelope columns for `rows` (one per row of `records`) to `records`,
/// unless no row has any envelope metadata. Clears `plain_text` when a text value needs
/// escaping in JSON.
pub(crate) fn append_columns(
    records: RecordBatch,
    rows: &[RowMetadata],
    plain_text: &mut bool,
) -> RecordBatch {
    debug_assert_eq!(records.num_rows(), rows.len());
    if rows.iter().all(RowMetadata::is_empty) {
        return records;
    }
    let shared = |f: fn(&Metadata) -> Option<&str>| {
        rows.iter()
            .map(move |r| r.shared.as_deref().and_then(f))
            .collect::<Vec<_>>()
    };
    let mut text = |values: Vec<Option<&str>>, json: bool| -> ArrayRef {
        if !json && *plain_text {
            *plain_text = !values.iter().flatten().any(|v| needs_json_escape(v));
        }
        Arc::new(StringViewArray::from(values))
    };
    let time = |values: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
    };
    // In the order of `ENVELOPE_FIELDS`.
    let added: Vec<ArrayRef> = vec![
        text(shared(|e| e.owner.as_deref()), false),
        text(shared(|e| e.log_group.as_deref()), false),
        text(shared(|e| e.log_stream.as_deref()), false),
        text(shared(|e| e.subscription_filters.as_deref()), true),
        text(rows.iter().map(|r| r.event_id.as_deref()).collect(), false),
        time(rows.iter().map(|r| r.event_time).collect()),
        text(shared(|e| e.request_id.as_deref()), false),
        time(
            rows.iter()
                .map(|r| r.shared.as_ref().and_then(|e| e.received))
                .collect(),
        ),
        text(shared(|e| e.fields.as_deref()), true),
    ];
    let schema = records.schema();
    let fields = schema
        .fields()
        .iter()
        .chain(envelope_schema_fields().iter())
        .cloned()
        .collect::<Vec<_>>();
    let mut columns = records.columns().to_vec();
    columns.extend(added);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .expect("envelope columns match their fields, one value per row")
}
