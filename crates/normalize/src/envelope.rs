//! Envelope metadata a target has no field for, as one object under a key the user
//! names (`--envelope-key`): the envelope columns of [`flowlog_model::envelope`] under
//! their names without the `envelope_` prefix, times as RFC 3339, and the members of a
//! `{"message"}` event flowlog has no column for (`envelope_fields`) in place.
//!
//! Every target shares this; what a target maps (ECS `aws.cloudwatch.log_group`, OCSF
//! `metadata.log_name`...) is left out of the object.

use arrow_array::RecordBatch;
use flowlog_model::envelope::ENVELOPE_PREFIX;

use crate::columns::{Column, Values};
use crate::json::{MemberKey, Out};
use crate::time::{DateCache, RFC3339_BOUND};
use crate::EncodeError;

/// The column whose JSON object's members are written in place.
const FIELDS_COLUMN: &str = "envelope_fields";

/// The envelope object of one batch.
pub(crate) struct EnvelopeObject<'k, 'a> {
    key: &'k MemberKey,
    members: Vec<(MemberKey, Column<'a>)>,
    fields: Option<Column<'a>>,
    dates: DateCache,
}

impl<'k, 'a> EnvelopeObject<'k, 'a> {
    /// Binds the envelope columns of `records` that `skip` does not claim (by column
    /// name); None when the batch has none with a value.
    pub fn bind(
        key: &'k MemberKey,
        records: &'a RecordBatch,
        skip: impl Fn(&str) -> bool,
    ) -> Result<Option<Self>, EncodeError> {
        let schema = records.schema_ref();
        let mut members = Vec::new();
        let mut fields = None;
        for (field, array) in schema.fields().iter().zip(records.columns()) {
            let name = field.name().as_str();
            let Some(member) = name.strip_prefix(ENVELOPE_PREFIX) else {
                continue;
            };
            if skip(name) || array.null_count() == array.len() {
                continue;
            }
            let column = Column::new(field, array.as_ref())?;
            if name == FIELDS_COLUMN {
                fields = Some(column);
            } else {
                members.push((MemberKey::new(member), column));
            }
        }
        Ok((!members.is_empty() || fields.is_some()).then(|| Self {
            key,
            members,
            fields,
            dates: DateCache::default(),
        }))
    }

    /// The most bytes [`EnvelopeObject::write`] writes for any row.
    pub fn bound(&self) -> usize {
        let members: usize = self
            .members
            .iter()
            .map(|(key, column)| key.len() + column.value_bound().max(RFC3339_BOUND))
            .sum();
        self.key.len() + members + self.fields.map_or(0, |c| c.value_bound() + 1) + 2
    }

    /// Writes `,"key":{...}` for `row`, or nothing when the row has no envelope metadata.
    pub fn write<const PLAIN: bool>(&self, out: &mut Out<'_>, row: usize) {
        let before = out.pos();
        self.key.write(out);
        let start = out.pos();
        for (key, column) in &self.members {
            if column.is_null(row) {
                continue;
            }
            key.write(out);
            match column.values {
                Values::Time(times) => self.dates.write(out, times.value(column.index(row))),
                _ => column.write_value::<PLAIN>(out, row),
            }
        }
        // The event's own members, in place: `{"host":"a"}` adds `,"host":"a"`.
        if let Some(inner) = self
            .fields
            .and_then(|c| c.json(row))
            .and_then(|object| object.strip_prefix('{')?.strip_suffix('}'))
            .filter(|inner| !inner.trim().is_empty())
        {
            out.byte(b',');
            out.bytes(inner.as_bytes());
        }
        if out.pos() == start {
            out.truncate(before);
        } else {
            // The first member's comma opens the object.
            out.set(start, b'{');
            out.byte(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        new_null_array, ArrayRef, RecordBatch, StringViewArray, TimestampMillisecondArray,
        UInt32Array, UInt32DictionaryArray,
    };
    use arrow_buffer::ScalarBuffer;
    use arrow_schema::Schema;
    use flowlog_model::envelope::{envelope_schema_fields, SHARED_ENVELOPE_FIELDS};
    use flowlog_model::{canonical_schema, EnrichKind, FlowBatch, SourceId, ENVELOPE_FIELDS};

    use crate::otel::{Naming, OtelView, Owned};
    use crate::{EncodeOptions, OcsfVersion, Target};

    /// One record whose every envelope column holds a value found nowhere else: text
    /// `marker-<column>`, times 1000 days and a column's index of seconds.
    fn batch() -> FlowBatch {
        let canonical = canonical_schema();
        let mut columns: Vec<ArrayRef> = canonical
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "srcaddr" | "dstaddr" => Arc::new(StringViewArray::from(vec!["10.0.0.1"])) as _,
                _ => new_null_array(f.data_type(), 1),
            })
            .collect();
        for (i, field) in ENVELOPE_FIELDS.iter().enumerate() {
            let values: ArrayRef = match field.kind {
                EnrichKind::Time => {
                    Arc::new(TimestampMillisecondArray::from(vec![time(i)]).with_timezone("UTC"))
                }
                EnrichKind::Json => Arc::new(StringViewArray::from(vec![format!(
                    "{{\"marker-{}\":[1]}}",
                    field.column
                )])),
                _ => Arc::new(StringViewArray::from(vec![format!(
                    "marker-{}",
                    field.column
                )])),
            };
            columns.push(if i < SHARED_ENVELOPE_FIELDS {
                Arc::new(
                    UInt32DictionaryArray::try_new(UInt32Array::from(vec![0]), values).unwrap(),
                )
            } else {
                values
            });
        }
        let fields: Vec<_> = canonical
            .fields()
            .iter()
            .chain(envelope_schema_fields().iter())
            .cloned()
            .collect();
        let records = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        FlowBatch::new(records, SourceId::new("t"), ScalarBuffer::from(vec![1u64]))
    }

    fn time(i: usize) -> i64 {
        (1000 * 86_400 + i as i64) * 1000
    }

    #[test]
    fn every_target_writes_every_envelope_column_mapped_or_under_the_key() {
        let batch = batch();
        let mut targets = vec![Target::Raw, Target::Ecs, Target::Cim];
        targets.extend(OcsfVersion::ALL.map(Target::Ocsf));
        for target in targets {
            let options = EncodeOptions {
                envelope_key: Some("kept \"here\"".into()),
            };
            let mut encoder = target.encoder_with(&options);
            let text = String::from_utf8(encoder.encode(&batch).unwrap().to_vec()).unwrap();
            let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
            for (i, field) in ENVELOPE_FIELDS.iter().enumerate() {
                let seconds = format!("1972-09-27T00:00:0{i}.000Z");
                let found = text.contains(&format!("marker-{}", field.column))
                    || (field.kind == EnrichKind::Time
                        && (text.contains(&seconds) || text.contains(&time(i).to_string())));
                assert!(found, "{target:?} drops {}: {text}", field.column);
            }
            // Mapped columns are not repeated under the key; the key is escaped.
            let kept = &doc["kept \"here\""];
            assert!(kept.is_object(), "{target:?}: {text}");
            if matches!(target, Target::Ecs) {
                assert!(kept.get("log_group").is_none() && kept.get("owner").is_none());
                assert_eq!(kept["marker-envelope_fields"], serde_json::json!([1]));
            }
            // Without a key, nothing but what the target maps.
            let mut encoder = target.encoder();
            let text = String::from_utf8(encoder.encode(&batch).unwrap().to_vec()).unwrap();
            for unmapped in [
                "envelope_fields",
                "envelope_request_id",
                "envelope_subscription",
            ] {
                assert!(!text.contains(unmapped), "{target:?}: {text}");
            }
            assert!(!text.contains("\"envelope_"), "{target:?}: {text}");
        }
    }

    #[test]
    fn otel_puts_log_group_and_stream_on_the_resource() {
        let batch = batch();
        let resource = |naming| {
            let collected = OtelView::new(&batch, naming).collect(0);
            assert!(collected
                .attributes
                .iter()
                .all(|(k, _)| !k.contains("envelope")));
            collected
                .resource
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>()
        };
        let collector = resource(Naming::Collector);
        let group = "marker-envelope_log_group";
        assert_eq!(collector["aws.log.group.names"], Owned::Str(group.into()));
        assert_eq!(
            collector["aws.log.stream.names"],
            Owned::Str("marker-envelope_log_stream".into())
        );
        assert_eq!(
            collector["cloud.account.id"],
            Owned::Str("marker-envelope_owner".into())
        );
        // The conventions make the names arrays.
        let semconv = resource(Naming::Semconv);
        assert_eq!(
            semconv["aws.log.group.names"],
            Owned::StrArray(vec![group.into()])
        );
    }
}
