//! OCSF events as Arrow columns, for Parquet (Amazon Security Lake's custom sources).
//!
//! The Arrow schema is derived from the same OCSF table the JSON encoder writes: each
//! leaf's type follows from where its value comes from (a field's column type, a literal's
//! JSON, a time as milliseconds or as a timestamp), objects become structs, and the
//! members a function writes are declared beside it ([`derived_members`]). Rows are the
//! encoder's own JSON read by arrow-json in strict mode, so a member the table writes and
//! the schema lacks is an error, not a silently dropped column: the two cannot drift.
//!
//! Types: OCSF `integer_t` is Int32, `long_t` (times, `type_uid`, counters) Int64,
//! `datetime_t` (the `*_dt` members) a UTC timestamp in milliseconds, arrays lists, and
//! `unmapped` a map of strings (as Security Lake's own tables have it), JSON-valued
//! enrichment (ENI tags, security groups) kept there as its JSON text.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::reader::Decoder;
use arrow_json::ReaderBuilder;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use flowlog_model::{added_field, is_json_field, lookup, EnrichKind, FlowBatch, FIELDS};

use crate::ocsf::{self, OcsfVersion};
use crate::template::{Derivation, Member, TemplateEncoder, Value};
use crate::{EncodeError, Encoder};

/// How a member's value is stored.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// OCSF `integer_t`.
    Int,
    /// OCSF `long_t`.
    Long,
    Text,
    /// OCSF `datetime_t`.
    Time,
    Texts,
    /// `[longitude, latitude]`.
    Floats,
    /// OCSF `observable` objects.
    Observables,
}

impl Kind {
    fn data_type(self) -> DataType {
        let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
        match self {
            Kind::Int => DataType::Int32,
            Kind::Long => DataType::Int64,
            Kind::Text => DataType::Utf8,
            // An offset, not the name "UTC": arrow-json reads only offsets without chrono-tz
            // (Parquet stores either as UTC-adjusted).
            Kind::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            Kind::Texts => list(DataType::Utf8),
            Kind::Floats => list(DataType::Float64),
            Kind::Observables => list(DataType::Struct(Fields::from(vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("type", DataType::Utf8, true),
                Field::new("type_id", DataType::Int32, true),
                Field::new("value", DataType::Utf8, true),
            ]))),
        }
    }
}

/// The members a derivation writes, with their kinds: for a [`Member::Members`]
/// derivation every member it may write, for a [`Value::Derived`] leaf one unnamed entry.
fn derived_members(derivation: &'static Derivation) -> &'static [(&'static str, Kind)] {
    ocsf::DERIVED_MEMBERS
        .iter()
        .find(|(d, _)| std::ptr::eq(*d, derivation))
        .map(|(_, members)| *members)
        .unwrap_or_else(|| {
            panic!(
                "an OCSF derivation reading {:?} declares no members (ocsf::DERIVED_MEMBERS)",
                derivation.inputs
            )
        })
}

/// The Arrow schema of OCSF Network Activity events in `version`.
pub fn ocsf_schema(version: OcsfVersion) -> SchemaRef {
    Arc::new(Schema::new(fields(version.table())))
}

fn fields(members: &'static [Member]) -> Vec<Field> {
    let mut out = Vec::new();
    for member in members {
        match member {
            Member::Leaf(name, value) => out.push(Field::new(*name, leaf_type(value), true)),
            Member::Object("unmapped", _) => out.push(Field::new_map(
                "unmapped",
                "entries",
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
                false,
                true,
            )),
            Member::Object(name, inner) => out.push(Field::new(
                *name,
                DataType::Struct(Fields::from(fields(inner))),
                true,
            )),
            Member::Group(inner) => out.extend(fields(inner)),
            Member::Members(derivation) => out.extend(
                derived_members(derivation)
                    .iter()
                    .map(|(name, kind)| Field::new(*name, kind.data_type(), true)),
            ),
            // Only inside `unmapped`, which is a map.
            Member::Rest => unreachable!("the rest of the fields belongs in `unmapped`"),
        }
    }
    out
}

fn leaf_type(value: &Value) -> DataType {
    match value {
        Value::Field(name) => column_type(name),
        Value::FieldAsText(_) => DataType::Utf8,
        Value::Rfc3339(_) => Kind::Time.data_type(),
        Value::EpochMillis(_) => DataType::Int64,
        Value::Literal(json) => literal_type(json),
        Value::Map { cases, .. } => literal_type(cases[0].1),
        Value::Derived(derivation) => derived_members(derivation)[0].1.data_type(),
    }
}

/// The type a column's values keep (text as Utf8: Parquet readers know it best).
fn column_type(name: &str) -> DataType {
    let kind = |kind: EnrichKind| match kind {
        EnrichKind::Int => DataType::Int64,
        EnrichKind::Float => DataType::Float64,
        EnrichKind::Time => Kind::Time.data_type(),
        EnrichKind::Text | EnrichKind::Json => DataType::Utf8,
    };
    if let Some(id) = lookup(name) {
        match FIELDS[id].kind.data_type() {
            DataType::Utf8View => DataType::Utf8,
            other => other,
        }
    } else if let Some(field) = added_field(name) {
        kind(field.kind)
    } else {
        panic!("the OCSF table names unknown field `{name}`")
    }
}

fn literal_type(json: &str) -> DataType {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Number(n))
            if n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()) =>
        {
            DataType::Int32
        }
        Ok(serde_json::Value::Number(_)) => DataType::Int64,
        Ok(serde_json::Value::String(_)) => DataType::Utf8,
        Ok(serde_json::Value::Array(_)) => Kind::Texts.data_type(),
        other => panic!("OCSF literal {json} has no column type ({other:?})"),
    }
}

/// Turns [`FlowBatch`]es into OCSF record batches of [`ocsf_schema`].
pub struct OcsfColumns {
    encoder: TemplateEncoder,
    decoder: Decoder,
    schema: SchemaRef,
}

/// A batch that could not be turned into OCSF columns.
#[derive(Debug, thiserror::Error)]
pub enum ColumnarError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The encoder wrote what the schema cannot hold (a defect: the table and the schema
    /// are meant to agree).
    #[error("OCSF event does not fit its Arrow schema: {0}")]
    Schema(#[from] arrow_schema::ArrowError),
}

impl OcsfColumns {
    pub fn new(version: OcsfVersion) -> Self {
        let schema = ocsf_schema(version);
        let decoder = decoder(&schema);
        Self {
            encoder: TemplateEncoder::new(version.table(), None),
            decoder,
            schema,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The batch's records as OCSF events, one row per record, in order.
    pub fn convert(&mut self, batch: &FlowBatch) -> Result<RecordBatch, ColumnarError> {
        let converted = self.convert_rows(batch);
        if converted.is_err() {
            // The decoder may hold part of the batch: the next one starts afresh.
            self.decoder = decoder(&self.schema);
        }
        converted
    }

    fn convert_rows(&mut self, batch: &FlowBatch) -> Result<RecordBatch, ColumnarError> {
        let batch = json_as_text(batch);
        let mut json = self.encoder.encode(&batch)?;
        let mut parts = Vec::new();
        while !json.is_empty() {
            let read = self.decoder.decode(json)?;
            json = &json[read..];
            if read == 0 || !json.is_empty() {
                parts.extend(self.decoder.flush()?);
            }
        }
        parts.extend(self.decoder.flush()?);
        Ok(arrow_select::concat::concat_batches(&self.schema, &parts)?)
    }
}

fn decoder(schema: &SchemaRef) -> Decoder {
    ReaderBuilder::new(schema.clone())
        .with_strict_mode(true)
        // `unmapped` holds every value as text.
        .with_coerce_primitive(true)
        .with_batch_size(8192)
        .build_decoder()
        .expect("the OCSF schema is one arrow-json reads")
}

/// The batch with JSON-valued columns marked as plain text, so that the encoder writes
/// them as strings (`unmapped` is a map of strings).
fn json_as_text(batch: &FlowBatch) -> std::borrow::Cow<'_, FlowBatch> {
    let schema = batch.records.schema();
    if !schema.fields().iter().any(|f| is_json_field(f)) {
        return std::borrow::Cow::Borrowed(batch);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_metadata(Default::default()))
        .collect();
    let records = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        batch.records.columns().to_vec(),
    )
    .expect("the same columns under the same names and types");
    std::borrow::Cow::Owned(FlowBatch {
        records,
        ..batch.clone()
    })
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type};
    use arrow_array::Array;
    use flowlog_model::SourceId;

    use super::*;
    use crate::Target;

    fn decoded(text: &str) -> FlowBatch {
        struct One(Vec<FlowBatch>);
        impl flowlog_decode::RecordSink for One {
            fn batch(&mut self, b: FlowBatch) -> Result<(), flowlog_decode::SinkError> {
                self.0.push(b);
                Ok(())
            }
            fn dead_letter(
                &mut self,
                letter: flowlog_model::DeadLetter,
            ) -> Result<(), flowlog_decode::SinkError> {
                panic!("{}", letter.to_json())
            }
        }
        let mut one = One(Vec::new());
        let options = flowlog_decode::DecodeOptions::default();
        flowlog_decode::decode_reader(text.as_bytes(), SourceId::new("t"), &options, &mut one)
            .unwrap();
        assert_eq!(one.0.len(), 1);
        one.0.pop().unwrap()
    }

    const V5: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path
5 123456789012 eni-0a1b2c3d 10.0.1.5 52.94.0.10 49152 443 6 10 840 1620000000 1620000060 ACCEPT OK vpc-1 subnet-1 i-1 3 IPv4 10.0.1.5 52.94.0.10 us-east-1 use1-az1 wavelength wl-1 - AMAZON egress 8
5 123456789012 eni-0a1b2c3d 203.0.113.9 10.0.1.5 3389 22 6 1 40 1620000001 1620000061 REJECT OK vpc-1 subnet-1 i-1 2 IPv4 203.0.113.9 10.0.1.6 us-east-1 use1-az1 - - - - ingress -
5 123456789012 eni-0a1b2c3d - - - - - - - 1620000002 1620000062 - NODATA vpc-1 subnet-1 i-1 - - - - us-east-1 use1-az1 - - - - - -
";

    #[test]
    fn every_event_fits_the_schema_and_reads_as_the_json_says() {
        let batch = decoded(V5);
        let mut columns = OcsfColumns::new(OcsfVersion::V1_1_0);
        let events = columns.convert(&batch).unwrap();
        assert_eq!(events.num_rows(), 3);
        let json = Target::Ocsf(OcsfVersion::V1_1_0)
            .encoder()
            .encode(&batch)
            .unwrap()
            .to_vec();
        let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&json)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let time = events
            .column_by_name("time")
            .unwrap()
            .as_primitive::<Int64Type>();
        let class = events
            .column_by_name("class_uid")
            .unwrap()
            .as_primitive::<Int32Type>();
        for (row, doc) in docs.iter().enumerate() {
            assert_eq!(time.value(row), doc["time"].as_i64().unwrap());
            assert_eq!(class.value(row), 4001);
        }
        let src = events.column_by_name("src_endpoint").unwrap().as_struct();
        let ip = src.column_by_name("ip").unwrap().as_string::<i32>();
        assert_eq!(ip.value(0), "10.0.1.5");
        assert!(ip.is_null(2));
        // `unmapped` holds what the JSON's does, every value as text.
        let unmapped = events.column_by_name("unmapped").unwrap().as_map();
        for (row, doc) in docs.iter().enumerate() {
            let want: Vec<(String, String)> = doc["unmapped"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_string)))
                .collect();
            let entries = unmapped.value(row);
            let keys = entries.column(0).as_string::<i32>();
            let values = entries.column(1).as_string::<i32>();
            let mut got: Vec<(String, String)> = (0..entries.len())
                .map(|i| (keys.value(i).to_string(), values.value(i).to_string()))
                .collect();
            // serde_json's objects are sorted by key.
            got.sort();
            assert_eq!(got, want, "row {row}");
        }
        assert!(!unmapped.value(0).is_empty(), "the sublocation is unmapped");
    }

    #[test]
    fn every_version_has_a_schema() {
        for version in OcsfVersion::ALL {
            let schema = ocsf_schema(version);
            assert!(schema.field_with_name("class_uid").is_ok());
            assert!(schema.field_with_name("unmapped").is_ok());
        }
    }
}
