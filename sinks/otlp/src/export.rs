//! Requests made of encoded records: an `ExportLogsServiceRequest` in which consecutive
//! records of the same resource share one `ResourceLogs` (one per source object, as the
//! Collector groups them), each with one `ScopeLogs` naming flowlog.
//!
//! The records and resources were encoded by the official message types when the batch
//! was taken ([`crate::encoder`]); here they are placed in their containers as the
//! encodings define (protobuf: length-delimited fields 1 and 2 of each container, which
//! is how an embedded message is written; JSON: the members `resourceLogs`, `resource`,
//! `scopeLogs`, `scope`, `logRecords`), without decoding them again.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

use crate::encoder::{split_event, Encoding};

/// The scope every record is under: flowlog, and the format the Collector marks.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "flowlog".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        attributes: vec![KeyValue {
            key: "encoding.format".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("aws.vpcflow".into())),
            }),
            ..KeyValue::default()
        }],
        dropped_attributes_count: 0,
    }
}

/// Builds request bodies for one encoding.
pub struct Exporter {
    encoding: Encoding,
    /// The scope, encoded once.
    scope: Vec<u8>,
}

impl Exporter {
    pub fn new(encoding: Encoding) -> Self {
        let scope = scope();
        let scope = match encoding {
            Encoding::Protobuf => scope.encode_to_vec(),
            Encoding::Json => serde_json::to_vec(&scope).expect("to memory"),
        };
        Self { encoding, scope }
    }

    /// The request body for `events` (each as [`crate::encoder`] writes them).
    pub fn body<'a>(&self, events: impl Iterator<Item = &'a [u8]>, size_hint: usize) -> Vec<u8> {
        let mut groups: Vec<(&[u8], Vec<&[u8]>)> = Vec::new();
        for event in events {
            let Some((resource, record)) = split_event(event) else {
                continue;
            };
            match groups.last_mut() {
                Some((last, records)) if *last == resource => records.push(record),
                _ => groups.push((resource, vec![record])),
            }
        }
        let mut out = Vec::with_capacity(size_hint + 64 * groups.len() + 32);
        match self.encoding {
            Encoding::Protobuf => self.protobuf(&groups, &mut out),
            Encoding::Json => self.json(&groups, &mut out),
        }
        out
    }

    fn protobuf(&self, groups: &[(&[u8], Vec<&[u8]>)], out: &mut Vec<u8>) {
        // Field 1 or 2 of a container holding `len` bytes: key, length, bytes.
        let field = |len: usize| key_len(1) + encoded_len_varint(len as u64) + len;
        for (resource, records) in groups {
            let scope_logs =
                field(self.scope.len()) + records.iter().map(|r| field(r.len())).sum::<usize>();
            let resource_logs = field(resource.len()) + field(scope_logs);
            // ExportLogsServiceRequest.resource_logs = 1
            delimited(1, resource_logs, out);
            // ResourceLogs.resource = 1, .scope_logs = 2
            delimited(1, resource.len(), out);
            out.extend_from_slice(resource);
            delimited(2, scope_logs, out);
            // ScopeLogs.scope = 1, .log_records = 2
            delimited(1, self.scope.len(), out);
            out.extend_from_slice(&self.scope);
            for record in records {
                delimited(2, record.len(), out);
                out.extend_from_slice(record);
            }
        }
    }

    fn json(&self, groups: &[(&[u8], Vec<&[u8]>)], out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"resourceLogs\":[");
        for (i, (resource, records)) in groups.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"resource\":");
            out.extend_from_slice(resource);
            out.extend_from_slice(b",\"scopeLogs\":[{\"scope\":");
            out.extend_from_slice(&self.scope);
            out.extend_from_slice(b",\"logRecords\":[");
            for (j, record) in records.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(record);
            }
            out.extend_from_slice(b"]}]}");
        }
        out.extend_from_slice(b"]}");
    }
}

fn delimited(tag: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn resource(account: &str) -> Resource {
        Resource {
            attributes: vec![KeyValue {
                key: "cloud.account.id".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(account.into())),
                }),
                ..KeyValue::default()
            }],
            ..Resource::default()
        }
    }

    fn record(time: u64) -> LogRecord {
        LogRecord {
            time_unix_nano: time,
            body: Some(AnyValue::default()),
            ..LogRecord::default()
        }
    }

    /// Events as the writer frames them.
    fn event(resource: &Resource, record: &LogRecord, encoding: Encoding) -> Vec<u8> {
        let (r, l) = match encoding {
            Encoding::Protobuf => (resource.encode_to_vec(), record.encode_to_vec()),
            Encoding::Json => (
                serde_json::to_vec(resource).unwrap(),
                serde_json::to_vec(record).unwrap(),
            ),
        };
        let mut e = (r.len() as u32).to_le_bytes().to_vec();
        e.extend(r);
        e.extend(l);
        e
    }

    /// What the official types build for the same records, grouped by resource.
    fn expected() -> ExportLogsServiceRequest {
        use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
        let group = |account: &str, times: &[u64]| ResourceLogs {
            resource: Some(resource(account)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: times.iter().map(|&t| record(t)).collect(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![group("1", &[10, 11]), group("2", &[12]), group("1", &[13])],
        }
    }

    #[test]
    fn bodies_equal_what_the_official_types_encode() {
        for encoding in [Encoding::Protobuf, Encoding::Json] {
            let events: Vec<Vec<u8>> = [("1", 10), ("1", 11), ("2", 12), ("1", 13)]
                .iter()
                .map(|(a, t)| event(&resource(a), &record(*t), encoding))
                .collect();
            let body = Exporter::new(encoding).body(events.iter().map(Vec::as_slice), 0);
            let decoded = match encoding {
                Encoding::Protobuf => {
                    assert_eq!(body, expected().encode_to_vec());
                    ExportLogsServiceRequest::decode(body.as_slice()).unwrap()
                }
                Encoding::Json => serde_json::from_slice(&body).unwrap(),
            };
            assert_eq!(decoded, expected(), "{encoding:?}");
        }
    }
}
