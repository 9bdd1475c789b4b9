//! The OpenTelemetry mapping of a record: resource and log-record attributes, times and
//! severity, for the OTLP sink to put into `LogRecord`s.
//!
//! Semantic conventions where they name a field (`source.address`, `network.transport`,
//! `cloud.account.id`...), the Collector's `awslogsencodingextension` names
//! (`aws.vpc.flow.*`) where they are silent, except that the transport goes in
//! `network.transport` (the extension misuses `network.protocol.name`). Log time is `end`,
//! as the extension has it. Kept free of protobuf types so this crate stays light; the
//! sink converts [`AttributeValue`]s to `AnyValue`s.

use flowlog_model::envelope::ENVELOPE_PREFIX;
use flowlog_model::FlowBatch;

use crate::columns::{Column, Values};
use crate::network::{address_family, transport_name};

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    /// An array of strings (`aws.log.group.names`).
    StrArray(Vec<&'a str>),
}

/// One record as OpenTelemetry sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelRecord<'a> {
    /// Unix nanoseconds of `end` (else `start`), if the record has either.
    pub time_unix_nano: Option<u64>,
    /// `SeverityNumber` INFO.
    pub severity_number: i32,
    pub severity_text: &'static str,
    /// Attributes of the `Resource`: where the flow was recorded.
    pub resource: Vec<(&'static str, AttributeValue<'a>)>,
    /// Attributes of the `LogRecord`.
    pub attributes: Vec<(String, AttributeValue<'a>)>,
}

/// Where each field goes: the resource, or the log record under a name.
enum Place {
    Resource(&'static str),
    Record(&'static str),
}

/// Fields with a semantic-convention name (or the extension's); every other field goes to
/// `aws.vpc.flow.<column>`, except envelope columns, of which only these are written.
const PLACES: &[(&str, Place)] = &[
    ("envelope_log_group", Place::Resource("aws.log.group.names")),
    (
        "envelope_log_stream",
        Place::Resource("aws.log.stream.names"),
    ),
    ("account_id", Place::Resource("cloud.account.id")),
    ("region", Place::Resource("cloud.region")),
    ("az_id", Place::Resource("cloud.availability_zone")),
    ("instance_id", Place::Resource("host.id")),
    ("interface_id", Place::Record("network.interface.name")),
    ("srcaddr", Place::Record("source.address")),
    ("srcport", Place::Record("source.port")),
    ("dstaddr", Place::Record("destination.address")),
    ("dstport", Place::Record("destination.port")),
    ("flow_direction", Place::Record("network.io.direction")),
    ("action", Place::Record("aws.vpc.flow.action")),
    ("log_status", Place::Record("aws.vpc.flow.status")),
    ("start", Place::Record("aws.vpc.flow.start")),
];

/// A batch bound for OpenTelemetry: columns looked up once, rows mapped on demand.
pub struct OtelView<'a> {
    columns: Vec<(&'a str, Column<'a>)>,
}

impl<'a> OtelView<'a> {
    pub fn new(batch: &'a FlowBatch) -> Self {
        let records = &batch.records;
        let columns = records
            .schema_ref()
            .fields()
            .iter()
            .zip(records.columns())
            .filter(|(_, array)| array.null_count() < array.len())
            .filter_map(|(field, array)| {
                // Every column of a FlowBatch has a type Column reads.
                Column::new(field, array.as_ref())
                    .ok()
                    .map(|c| (field.name().as_str(), c))
            })
            .collect();
        Self { columns }
    }

    /// The OpenTelemetry view of row `row`.
    pub fn record(&self, row: usize) -> OtelRecord<'a> {
        let mut resource = vec![("cloud.provider", AttributeValue::Str("aws"))];
        let mut attributes = Vec::new();
        let mut time = None;
        let mut start = None;
        let mut owner = None;
        for &(name, ref column) in &self.columns {
            if column.is_null(row) {
                continue;
            }
            let value = match column.values {
                Values::Text(a) | Values::Json(a) => {
                    AttributeValue::Str(a.value(column.index(row)))
                }
                Values::Float64(a) => AttributeValue::Double(a.value(column.index(row))),
                _ => AttributeValue::Int(column.int(row).expect("not null")),
            };
            match name {
                "envelope_owner" => owner = column.text(row),
                "end" => time = column.int(row),
                "start" => start = column.int(row),
                "protocol" => {
                    if let Some(transport) = column.int(row).and_then(transport_name) {
                        attributes
                            .push(("network.transport".into(), AttributeValue::Str(transport)));
                    }
                }
                "srcaddr" => {
                    if let Some(address) = column.text(row) {
                        attributes.push((
                            "network.type".into(),
                            AttributeValue::Str(address_family(address)),
                        ));
                    }
                }
                _ => {}
            }
            // Times are Unix seconds in the extension's attributes.
            let value = match (name, value) {
                ("start" | "end", AttributeValue::Int(ms)) => {
                    AttributeValue::Int(ms.div_euclid(1000))
                }
                (_, value) => value,
            };
            match PLACES.iter().find(|(column, _)| *column == name) {
                // The semantic conventions make log group and stream names arrays.
                Some((_, Place::Resource(key))) if key.ends_with(".names") => {
                    if let AttributeValue::Str(text) = value {
                        resource.push((key, AttributeValue::StrArray(vec![text])));
                    }
                }
                Some((_, Place::Resource(key))) => resource.push((key, value)),
                Some((_, Place::Record(key))) => attributes.push((key.to_string(), value)),
                None if name == "end" || name.starts_with(ENVELOPE_PREFIX) => {}
                None => attributes.push((format!("aws.vpc.flow.{name}"), value)),
            }
        }
        // The account that owns the log group, when the record does not name its own.
        if let Some(owner) = owner {
            if !resource.iter().any(|(key, _)| *key == "cloud.account.id") {
                resource.push(("cloud.account.id", AttributeValue::Str(owner)));
            }
        }
        let nanos = |ms: i64| u64::try_from(ms).ok().map(|ms| ms * 1_000_000);
        OtelRecord {
            time_unix_nano: time.or(start).and_then(nanos),
            severity_number: 9,
            severity_text: "INFO",
            resource,
            attributes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        ArrayRef, Int32Array, Int64Array, RecordBatch, StringViewArray, TimestampMillisecondArray,
    };
    use arrow_buffer::ScalarBuffer;
    use flowlog_model::{canonical_schema, lookup, SourceId};
    use std::sync::Arc;

    /// A one-row batch in the canonical schema with the given values set.
    fn batch(text: &[(&str, &str)], ints: &[(&str, i64)]) -> FlowBatch {
        let schema = canonical_schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| {
                let name = f.name().as_str();
                let text_value = text.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
                let int_value = ints.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
                match f.data_type() {
                    arrow_schema::DataType::Utf8View => {
                        Arc::new(StringViewArray::from(vec![text_value])) as ArrayRef
                    }
                    arrow_schema::DataType::Int32 => {
                        Arc::new(Int32Array::from(vec![int_value.map(|v| v as i32)]))
                    }
                    arrow_schema::DataType::Int64 => Arc::new(Int64Array::from(vec![int_value])),
                    _ => Arc::new(
                        TimestampMillisecondArray::from(vec![int_value]).with_timezone("UTC"),
                    ),
                }
            })
            .collect();
        assert!(lookup("srcaddr").is_some());
        FlowBatch::new(
            RecordBatch::try_new(schema, columns).unwrap(),
            SourceId::new("test"),
            ScalarBuffer::from(vec![1u64]),
        )
    }

    #[test]
    fn a_v5_record_maps_to_semantic_conventions() {
        let b = batch(
            &[
                ("account_id", "123456789012"),
                ("interface_id", "eni-1"),
                ("srcaddr", "10.0.0.1"),
                ("dstaddr", "2600::1"),
                ("action", "ACCEPT"),
                ("log_status", "OK"),
                ("region", "us-east-1"),
                ("az_id", "use1-az1"),
                ("instance_id", "i-1"),
                ("flow_direction", "ingress"),
                ("reject_reason", "BPA"),
            ],
            &[
                ("version", 5),
                ("srcport", 443),
                ("dstport", 50000),
                ("protocol", 6),
                ("packets", 3),
                ("bytes", 120),
                ("start", 1_700_000_000_000),
                ("end", 1_700_000_060_000),
                ("traffic_path", 8),
            ],
        );
        let r = OtelView::new(&b).record(0);
        assert_eq!(r.time_unix_nano, Some(1_700_000_060_000_000_000));
        assert_eq!(r.severity_number, 9);
        let resource: std::collections::HashMap<_, _> = r.resource.iter().cloned().collect();
        assert_eq!(resource["cloud.provider"], AttributeValue::Str("aws"));
        assert_eq!(
            resource["cloud.account.id"],
            AttributeValue::Str("123456789012")
        );
        assert_eq!(resource["cloud.region"], AttributeValue::Str("us-east-1"));
        assert_eq!(
            resource["cloud.availability_zone"],
            AttributeValue::Str("use1-az1")
        );
        assert_eq!(resource["host.id"], AttributeValue::Str("i-1"));
        let attrs: std::collections::HashMap<_, _> = r
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        assert_eq!(attrs["source.address"], AttributeValue::Str("10.0.0.1"));
        assert_eq!(attrs["source.port"], AttributeValue::Int(443));
        assert_eq!(attrs["destination.address"], AttributeValue::Str("2600::1"));
        assert_eq!(attrs["destination.port"], AttributeValue::Int(50000));
        assert_eq!(attrs["network.transport"], AttributeValue::Str("tcp"));
        assert_eq!(attrs["network.type"], AttributeValue::Str("ipv4"));
        assert_eq!(
            attrs["network.interface.name"],
            AttributeValue::Str("eni-1")
        );
        assert_eq!(
            attrs["network.io.direction"],
            AttributeValue::Str("ingress")
        );
        assert_eq!(attrs["aws.vpc.flow.action"], AttributeValue::Str("ACCEPT"));
        assert_eq!(attrs["aws.vpc.flow.status"], AttributeValue::Str("OK"));
        assert_eq!(
            attrs["aws.vpc.flow.start"],
            AttributeValue::Int(1_700_000_000)
        );
        assert_eq!(attrs["aws.vpc.flow.bytes"], AttributeValue::Int(120));
        assert_eq!(attrs["aws.vpc.flow.packets"], AttributeValue::Int(3));
        assert_eq!(attrs["aws.vpc.flow.traffic_path"], AttributeValue::Int(8));
        assert_eq!(
            attrs["aws.vpc.flow.reject_reason"],
            AttributeValue::Str("BPA")
        );
        assert_eq!(attrs["aws.vpc.flow.protocol"], AttributeValue::Int(6));
        // The transport is never misfiled as the protocol name, and nothing is null.
        assert!(!attrs.contains_key("network.protocol.name"));
        assert!(!attrs.contains_key("aws.vpc.flow.end"));
        assert!(!attrs.contains_key("aws.vpc.flow.vpc_id"));
    }

    #[test]
    fn a_record_without_times_has_no_time() {
        let b = batch(&[("log_status", "NODATA")], &[]);
        let r = OtelView::new(&b).record(0);
        assert_eq!(r.time_unix_nano, None);
        assert_eq!(
            r.attributes,
            vec![(
                "aws.vpc.flow.status".to_string(),
                AttributeValue::Str("NODATA")
            )]
        );
        assert_eq!(r.resource.len(), 1);
    }
}
