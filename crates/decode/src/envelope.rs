//! What an envelope says about the records it carries (CloudWatch Logs `owner`,
//! `logGroup`, `logStream`; Firehose `requestId` and `timestamp`; the other members of a
//! `{"message"}` event), kept while a block and then a batch is built, and appended to
//! the batch as the envelope columns of [`flowlog_model::envelope`].
//!
//! Envelopes are shared, not copied: a record points at the [`Metadata`] of its innermost
//! envelope, which points at the one around it, and consecutive records of one envelope
//! (or of `{"message"}` events that say the same) share one. In a batch the shared
//! columns are dictionaries over the batch's distinct envelopes; only a log event's id and
//! times are stored per row.

use std::sync::Arc;

use arrow_array::builder::StringViewBuilder;
use arrow_array::types::UInt32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, RecordBatch, StringViewArray, TimestampMillisecondArray, UInt32Array,
};
use arrow_schema::Schema;
use flowlog_model::envelope::envelope_schema_fields;
use flowlog_model::needs_json_escape;

/// What one envelope says itself; what it inherits is its `parent`'s.
#[derive(Debug, Default)]
pub(crate) struct Metadata {
    parent: Option<Arc<Metadata>>,
    owner: Option<Box<str>>,
    log_group: Option<Box<str>>,
    log_stream: Option<Box<str>>,
    /// A JSON array, as the envelope had it.
    subscription_filters: Option<Box<str>>,
    request_id: Option<Box<str>>,
    /// Milliseconds since the epoch.
    received: Option<i64>,
    /// A JSON object of members flowlog has no column for.
    fields: Option<Box<str>>,
}

/// What an object being decoded says, borrowed from it.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Own<'a> {
    pub owner: Option<&'a str>,
    pub log_group: Option<&'a str>,
    pub log_stream: Option<&'a str>,
    pub subscription_filters: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub received: Option<i64>,
    pub fields: Option<&'a str>,
}

impl Own<'_> {
    pub fn is_empty(&self) -> bool {
        *self == Own::default()
    }
}

impl Metadata {
    /// The envelope of an object that says `own` inside `parent`: `parent` itself when
    /// the object says nothing, `last` when that said the same inside the same parent
    /// (consecutive `{"message"}` events of one engine), else a new one.
    pub fn of(
        parent: Option<&Arc<Metadata>>,
        own: &Own<'_>,
        last: Option<&Arc<Metadata>>,
    ) -> Option<Arc<Metadata>> {
        if own.is_empty() {
            return parent.cloned();
        }
        if let Some(last) = last.filter(|last| last.says(parent, own)) {
            return Some(Arc::clone(last));
        }
        let owned = |s: Option<&str>| s.map(Box::from);
        Some(Arc::new(Metadata {
            parent: parent.cloned(),
            owner: owned(own.owner),
            log_group: owned(own.log_group),
            log_stream: owned(own.log_stream),
            subscription_filters: owned(own.subscription_filters),
            request_id: owned(own.request_id),
            received: own.received,
            fields: owned(own.fields),
        }))
    }

    fn says(&self, parent: Option<&Arc<Metadata>>, own: &Own<'_>) -> bool {
        let same_parent = match (&self.parent, parent) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same_parent
            && Own {
                owner: self.owner.as_deref(),
                log_group: self.log_group.as_deref(),
                log_stream: self.log_stream.as_deref(),
                subscription_filters: self.subscription_filters.as_deref(),
                request_id: self.request_id.as_deref(),
                received: self.received,
                fields: self.fields.as_deref(),
            } == *own
    }

    /// The innermost value an envelope or one around it has.
    fn find<'s, T>(&'s self, get: impl Fn(&'s Metadata) -> Option<T>) -> Option<T> {
        let mut envelope = Some(self);
        while let Some(e) = envelope {
            if let Some(value) = get(e) {
                return Some(value);
            }
            envelope = e.parent.as_deref();
        }
        None
    }
}

/// The index of `envelope` in `list`, which gains it unless it is the last one already
/// (records of one envelope come together, so comparing with the last is enough).
fn index_of(list: &mut Vec<Arc<Metadata>>, envelope: &Arc<Metadata>) -> u32 {
    if !list.last().is_some_and(|last| Arc::ptr_eq(last, envelope)) {
        list.push(Arc::clone(envelope));
    }
    list.len() as u32 - 1
}

/// What a record's envelopes say, as a message waits in a block.
#[derive(Debug, Default, Clone, Copy)]
struct RowMetadata {
    /// Index into [`BlockMetadata::shared`].
    shared: Option<u32>,
    /// Range in [`BlockMetadata::ids`].
    event_id: Option<(u32, u32)>,
    event_time: Option<i64>,
    received: Option<i64>,
}

/// The envelopes of the messages of a block, one entry per message.
#[derive(Debug, Default)]
pub(crate) struct BlockMetadata {
    rows: Vec<RowMetadata>,
    shared: Vec<Arc<Metadata>>,
    /// Log event ids, back to back.
    ids: String,
}

/// What a log event says about itself.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Event<'a> {
    pub id: Option<&'a str>,
    pub time: Option<i64>,
    /// When the pipeline in front of flowlog took it (a `{"message"}` event's timestamp).
    pub received: Option<i64>,
}

impl BlockMetadata {
    /// Notes the envelope of the next message.
    pub fn push(&mut self, envelope: Option<&Arc<Metadata>>, event: Event<'_>) {
        let shared = envelope.map(|e| index_of(&mut self.shared, e));
        let event_id = event.id.map(|id| {
            let start = self.ids.len() as u32;
            self.ids.push_str(id);
            (start, id.len() as u32)
        });
        self.rows.push(RowMetadata {
            shared,
            event_id,
            event_time: event.time,
            received: event.received,
        });
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.shared.clear();
        self.ids.clear();
    }
}

/// The envelope columns of the batch being built.
#[derive(Default)]
pub(crate) struct EnvelopeColumns {
    /// Per row: the index of its envelope in `shared`.
    keys: Vec<Option<u32>>,
    /// The batch's distinct envelopes.
    shared: Vec<Arc<Metadata>>,
    event_ids: StringViewBuilder,
    event_times: Vec<Option<i64>>,
    received: Vec<Option<i64>>,
    /// Some row has envelope metadata.
    any: bool,
    /// No event id needs escaping in JSON.
    plain: bool,
}

impl EnvelopeColumns {
    /// Adds the row for message `index` of a block.
    pub fn push(&mut self, block: &BlockMetadata, index: usize) {
        if self.keys.is_empty() {
            self.plain = true;
        }
        let row = block.rows[index];
        let key = row
            .shared
            .map(|i| index_of(&mut self.shared, &block.shared[i as usize]));
        match row.event_id {
            Some((start, len)) => {
                let id = &block.ids[start as usize..][..len as usize];
                self.plain &= !needs_json_escape(id);
                self.event_ids.append_value(id);
            }
            None => self.event_ids.append_null(),
        }
        self.any |= key.is_some()
            || row.event_id.is_some()
            || row.event_time.is_some()
            || row.received.is_some();
        self.keys.push(key);
        self.event_times.push(row.event_time);
        self.received.push(row.received);
    }

    /// Appends the envelope columns to `records` (which has a row for every
    /// [`EnvelopeColumns::push`] since the last call), unless no row has envelope
    /// metadata; clears `plain_text` when a text value needs escaping in JSON. Leaves
    /// the builder empty.
    pub fn finish(&mut self, records: RecordBatch, plain_text: &mut bool) -> RecordBatch {
        if self.keys.is_empty() {
            return records;
        }
        let rows = std::mem::take(&mut self.keys);
        let shared = std::mem::take(&mut self.shared);
        let event_ids = self.event_ids.finish();
        let event_times = std::mem::take(&mut self.event_times);
        let received = std::mem::take(&mut self.received);
        debug_assert_eq!(rows.len(), records.num_rows(), "an envelope for every row");
        if !std::mem::take(&mut self.any) || rows.len() != records.num_rows() {
            return records;
        }
        *plain_text &= self.plain;
        let keys = UInt32Array::from(rows);
        let mut dictionary = |get: fn(&Metadata) -> Option<&str>, json: bool| -> ArrayRef {
            let values: Vec<Option<&str>> = shared.iter().map(|e| e.find(get)).collect();
            if !json && *plain_text {
                *plain_text = !values.iter().flatten().any(|v| needs_json_escape(v));
            }
            let values = Arc::new(StringViewArray::from(values));
            Arc::new(
                DictionaryArray::<UInt32Type>::try_new(keys.clone(), values)
                    .expect("keys index the distinct envelopes"),
            )
        };
        // For times, the event's own, else its envelopes'.
        let received: Vec<Option<i64>> = received
            .iter()
            .zip(keys.iter())
            .map(|(own, key)| own.or_else(|| shared[key? as usize].find(|e| e.received)))
            .collect();
        let time = |values: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
        };
        // In the order of `ENVELOPE_FIELDS`.
        let added: Vec<ArrayRef> = vec![
            dictionary(|e| e.owner.as_deref(), false),
            dictionary(|e| e.log_group.as_deref(), false),
            dictionary(|e| e.log_stream.as_deref(), false),
            dictionary(|e| e.subscription_filters.as_deref(), true),
            dictionary(|e| e.request_id.as_deref(), false),
            dictionary(|e| e.fields.as_deref(), true),
            Arc::new(event_ids),
            time(event_times),
            time(received),
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
}
