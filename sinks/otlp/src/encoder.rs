//! Rows as OTLP log records.
//!
//! Each row becomes one event in the request layer's buffer: its `Resource` and its
//! `LogRecord`, each encoded by the official message types (prost for protobuf, their
//! serde support for OTLP/JSON), framed as `resource length (u32 LE) | resource | record`.
//! A request is made from events by [`crate::export`], which puts consecutive records of
//! the same resource under one `ResourceLogs`. Encoding each record once, when the batch
//! is taken, keeps retries and splits (which re-send a subset) from encoding again.
//!
//! The messages are reused from row to row: attribute keys and string values are
//! overwritten in place, so a record costs no allocation once the first row has sized
//! them.

use flowlog_model::FlowBatch;
use flowlog_normalize::otel::{AttributeValue, Naming, OtelView, Visitor};
use flowlog_sink::request::{EventWriter, WriteRow};
use flowlog_sink::SinkError;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// How messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// The sink's [`EventWriter`].
pub struct RecordWriter {
    naming: Naming,
    encoding: Encoding,
    /// The body is the record's line (else empty).
    body_line: bool,
    scratch: Scratch,
}

/// The messages rows are written through, reused.
#[derive(Default)]
struct Scratch {
    record: LogRecord,
    attributes: usize,
    resource: Resource,
    resource_attributes: usize,
}

impl RecordWriter {
    pub fn new(naming: Naming, encoding: Encoding, body_line: bool) -> Self {
        Self {
            naming,
            encoding,
            body_line,
            scratch: Scratch::default(),
        }
    }
}

impl EventWriter for RecordWriter {
    fn prepare<'a>(
        &'a mut self,
        batch: &'a FlowBatch,
    ) -> Result<Box<dyn WriteRow + 'a>, SinkError> {
        let observed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        Ok(Box::new(Rows {
            view: OtelView::new(batch, self.naming),
            batch,
            id_prefix: flowlog_sink::event_id_prefix(&batch.source),
            id: String::new(),
            lines: self
                .body_line
                .then(|| flowlog_normalize::lines::lines_of(batch)),
            encoding: self.encoding,
            observed,
            scratch: &mut self.scratch,
        }))
    }
}

struct Rows<'a> {
    view: OtelView<'a>,
    batch: &'a FlowBatch,
    /// The source's part of every record's id (`flowlog_sink::event_id`), and the id
    /// of the row at hand.
    id_prefix: String,
    id: String,
    /// With `body = "line"`: each row's line.
    lines: Option<arrow_array::StringViewArray>,
    encoding: Encoding,
    /// When the batch was taken: every record's `observed_time_unix_nano`.
    observed: u64,
    scratch: &'a mut Scratch,
}

impl WriteRow for Rows<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) {
        let s = &mut *self.scratch;
        s.attributes = 0;
        s.resource_attributes = 0;
        self.view.visit(row, s);
        self.id.clear();
        self.id.push_str(&self.id_prefix);
        self.id.push('-');
        self.id
            .push_str(itoa::Buffer::new().format(self.batch.line_numbers[row]));
        s.attribute("flowlog.id", AttributeValue::Str(&self.id));
        s.record.attributes.truncate(s.attributes);
        s.resource.attributes.truncate(s.resource_attributes);
        s.record.time_unix_nano = self.view.time_unix_nano(row).unwrap_or(0);
        s.record.observed_time_unix_nano = self.observed;
        // An empty body, as the Collector writes it, or the line.
        let body = s.record.body.get_or_insert_with(AnyValue::default);
        if let Some(lines) = &self.lines {
            set_string(body, lines.value(row));
        }

        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self.encoding {
            Encoding::Protobuf => s.resource.encode_raw(out),
            Encoding::Json => serde_json::to_writer(&mut *out, &s.resource).expect("to memory"),
        }
        let length = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&length.to_le_bytes());
        match self.encoding {
            Encoding::Protobuf => s.record.encode_raw(out),
            Encoding::Json => serde_json::to_writer(&mut *out, &s.record).expect("to memory"),
        }
    }
}

/// An event's resource and record, as written by [`Rows::write`].
pub fn split_event(event: &[u8]) -> Option<(&[u8], &[u8])> {
    let length = u32::from_le_bytes(event.get(..4)?.try_into().ok()?) as usize;
    let resource = event.get(4..4 + length)?;
    Some((resource, &event[4 + length..]))
}

impl Visitor for Scratch {
    fn resource(&mut self, key: &str, value: AttributeValue<'_>) {
        put(
            &mut self.resource.attributes,
            &mut self.resource_attributes,
            key,
            value,
        );
    }

    fn attribute(&mut self, key: &str, value: AttributeValue<'_>) {
        put(
            &mut self.record.attributes,
            &mut self.attributes,
            key,
            value,
        );
    }
}

/// Sets the `n`th attribute of `list` (reusing what is there), then counts it.
fn put(list: &mut Vec<KeyValue>, n: &mut usize, key: &str, value: AttributeValue<'_>) {
    if *n == list.len() {
        list.push(KeyValue::default());
    }
    let kv = &mut list[*n];
    *n += 1;
    kv.key.clear();
    kv.key.push_str(key);
    let any = kv.value.get_or_insert_with(AnyValue::default);
    match value {
        AttributeValue::Str(text) => set_string(any, text),
        AttributeValue::Int(n) => any.value = Some(any_value::Value::IntValue(n)),
        AttributeValue::Double(x) => any.value = Some(any_value::Value::DoubleValue(x)),
        AttributeValue::StrArray(text) => {
            let mut item = AnyValue::default();
            set_string(&mut item, text);
            any.value = Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![item],
            }));
        }
        AttributeValue::Json(text) => {
            *any = serde_json::from_str(text)
                .map(|v| from_json(&v))
                .unwrap_or_else(|_| string(text));
        }
    }
}

fn set_string(any: &mut AnyValue, text: &str) {
    match &mut any.value {
        Some(any_value::Value::StringValue(s)) => {
            s.clear();
            s.push_str(text);
        }
        other => *other = Some(any_value::Value::StringValue(text.to_string())),
    }
}

fn string(text: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text.to_string())),
    }
}

/// A JSON value as an OTLP value: objects as key-value lists, arrays as arrays.
fn from_json(value: &serde_json::Value) -> AnyValue {
    use serde_json::Value as J;
    let value = match value {
        J::Null => None,
        J::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        J::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        J::String(s) => Some(any_value::Value::StringValue(s.clone())),
        J::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(from_json).collect(),
        })),
        J::Object(members) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: members
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(from_json(v)),
                    ..KeyValue::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

/// An event as OTLP/JSON text, for the dead letter: `{"resource":...,"logRecord":...}`.
pub fn event_text(event: &[u8], encoding: Encoding) -> Vec<u8> {
    let Some((resource, record)) = split_event(event) else {
        return event.to_vec();
    };
    match encoding {
        Encoding::Json => {
            let mut text = b"{\"resource\":".to_vec();
            text.extend_from_slice(resource);
            text.extend_from_slice(b",\"logRecord\":");
            text.extend_from_slice(record);
            text.push(b'}');
            text
        }
        Encoding::Protobuf => {
            let resource = Resource::decode(resource).unwrap_or_default();
            let record = LogRecord::decode(record).unwrap_or_default();
            serde_json::to_vec(&serde_json::json!({"resource": resource, "logRecord": record}))
                .expect("to memory")
        }
    }
}
