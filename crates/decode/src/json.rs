//! JSON envelopes: CloudWatch Logs subscription payloads, Firehose HTTP endpoint requests,
//! Lambda `awslogs` events and `{"message": ...}` events, in any mix.
//!
//! Every envelope reduces to flow-log lines ("messages") with a position; messages are
//! gathered into blocks and handed to the line decoder, so they are decoded exactly like
//! lines of a text file.
//!
//! Positions: a `{"message": ...}` object on a line of its own keeps its physical line
//! number; log events inside payloads are numbered in order across the source (1, 2, ...).

use std::borrow::Cow;
use std::cell::Cell;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::rc::Rc;
use std::sync::Arc;

use arrow_buffer::Buffer;
use base64::Engine;
use flowlog_model::time::parse_rfc3339;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::envelope::{Metadata, RowMetadata};
use crate::line::{LineDecoder, LineNumbers};
use crate::sniff::{sniff, Envelope};
use crate::text::{BLOCK_BYTES, MAX_LINE_BYTES};
use crate::{DecodeError, RecordSink, Streaming};

/// How deep envelopes may nest (Firehose record -> gzip -> CloudWatch payload is 3).
const MAX_DEPTH: usize = 6;

/// The largest JSON document read (a line, or one object of a concatenated stream), and
/// the most a record's data may decompress to. Real envelopes are far smaller: a
/// CloudWatch Logs batch holds at most 1 MiB of messages, a Firehose record at most
/// 1000 KiB, a Lambda event 6 MB. Anything larger is dead-lettered, never loaded, so a
/// few megabytes of gzip cannot make the decoder allocate gigabytes.
pub(crate) const MAX_ENVELOPE_BYTES: usize = 16 << 20;

/// The members flowlog reads from any JSON object; the kind of envelope follows from which
/// are present. Of a `{"message"}` event, the members it has no name for are kept as
/// they are (`other`); of other envelopes they are ignored.
#[derive(Default)]
struct JsonObject<'a> {
    message_type: Option<Cow<'a, str>>,
    log_events: Option<Vec<LogEvent<'a>>>,
    records: Option<Vec<FirehoseRecord<'a>>>,
    awslogs: Option<AwsLogs<'a>>,
    message: Option<Cow<'a, str>>,
    owner: Option<Scalar<'a>>,
    log_group: Option<Scalar<'a>>,
    log_stream: Option<Scalar<'a>>,
    subscription_filters: Option<Box<RawValue>>,
    request_id: Option<Scalar<'a>>,
    timestamp: Option<Box<RawValue>>,
    other: Vec<(Cow<'a, str>, Box<RawValue>)>,
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonObject<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for ObjectVisitor<'a> {
            type Value = JsonObject<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonObject<'a>, A::Error> {
                let mut object = JsonObject::default();
                while let Some(Key(key)) = map.next_key::<Key<'a>>()? {
                    match &*key {
                        "messageType" => object.message_type = Some(map.next_value::<Text>()?.0),
                        "logEvents" => object.log_events = map.next_value()?,
                        "records" => object.records = map.next_value()?,
                        "awslogs" => object.awslogs = map.next_value()?,
                        "message" => object.message = Some(map.next_value::<Text>()?.0),
                        "owner" => object.owner = Some(map.next_value()?),
                        "logGroup" => object.log_group = Some(map.next_value()?),
                        "logStream" => object.log_stream = Some(map.next_value()?),
                        "subscriptionFilters" => {
                            object.subscription_filters = Some(map.next_value()?)
                        }
                        "requestId" => object.request_id = Some(map.next_value()?),
                        "timestamp" => object.timestamp = Some(map.next_value()?),
                        _ => object.other.push((key, map.next_value()?)),
                    }
                }
                Ok(object)
            }
        }
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Text::deserialize(deserializer).map(|t| Key(t.0))
    }
}

/// A string, borrowed from the input when it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A string or a number, read leniently: metadata of another shape is not worth losing a
/// record over, so it reads as `Other`.
enum Scalar<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Other,
}

impl Scalar<'_> {
    fn text(&self) -> Option<Box<str>> {
        match self {
            Scalar::Text(t) => Some(t.as_ref().into()),
            Scalar::Int(n) => Some(n.to_string().into()),
            Scalar::Other => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for ScalarVisitor<'a> {
            type Value = Scalar<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'a>, E> {
                Ok(i64::try_from(v).map_or(Scalar::Other, Scalar::Int))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Scalar<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Scalar<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        deserializer.deserialize_any(ScalarVisitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
struct FirehoseRecord<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

#[derive(Deserialize)]
struct AwsLogs<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// Collects messages into blocks for the line decoder.
pub(crate) struct JsonDecoder<'d> {
    lines: &'d mut LineDecoder,
    block: Vec<u8>,
    numbers: Vec<u64>,
    /// What the envelope said about each message of `block`.
    envelopes: Vec<RowMetadata>,
    next_event: u64,
}

impl<'d> JsonDecoder<'d> {
    pub fn new(lines: &'d mut LineDecoder) -> Self {
        Self {
            lines,
            block: Vec::with_capacity(BLOCK_BYTES),
            numbers: Vec::new(),
            envelopes: Vec::new(),
            next_event: 1,
        }
    }

    /// Decodes a JSON stream: one object per line (NDJSON), or objects that span lines or
    /// follow each other without separators (pretty-printed payloads, Firehose's
    /// concatenated records in S3).
    /// With `streaming`, records of `{"message"}` and other one-per-line objects are emitted
    /// as their lines arrive (see [`Streaming`]).
    pub fn decode_stream(
        mut self,
        reader: impl Read,
        streaming: Option<&Streaming>,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        let mut reader = BufReader::with_capacity(1 << 16, reader);
        let mut first = Vec::new();
        let first_length = self.read_line(&mut reader, &mut first)?;
        let one_per_line = first_length == first.len() as u64
            && serde_json::from_slice::<serde::de::IgnoredAny>(&first).is_ok();
        if one_per_line {
            let mut line = first;
            let mut length = first_length;
            let mut line_no = 1;
            let mut pending_since = None;
            loop {
                if length > line.len() as u64 {
                    let reason = format!(
                        "JSON line of {length} bytes, larger than the {} MiB an envelope can be",
                        MAX_ENVELOPE_BYTES >> 20
                    );
                    self.lines
                        .dead_letter_of(line_no, reason, &line, length, sink)?;
                } else {
                    self.decode_json_line(&line, line_no, sink)?;
                }
                if let Some(streaming) = streaming {
                    // Before a read that may wait: emit what was decoded, if it is due.
                    pending_since.get_or_insert_with(std::time::Instant::now);
                    if reader.buffer().is_empty() && streaming.due(pending_since) {
                        self.flush(sink)?;
                        self.lines.flush(sink)?;
                        sink.idle().map_err(DecodeError::Sink)?;
                        pending_since = None;
                    }
                }
                line.clear();
                length = self.read_line(&mut reader, &mut line)?;
                if length == 0 {
                    break;
                }
                line_no += 1;
            }
        } else {
            // Objects that span lines: each may be at most MAX_ENVELOPE_BYTES long.
            let used = Rc::new(Cell::new(0));
            let budget = Budget {
                inner: Cursor::new(first).chain(reader),
                used: Rc::clone(&used),
            };
            let stream = serde_json::Deserializer::from_reader(budget).into_iter::<JsonObject>();
            for item in stream {
                match item {
                    Ok(object) => {
                        used.set(0);
                        self.decode_object(object, None, 0, None, sink)?
                    }
                    Err(_) if used.get() > MAX_ENVELOPE_BYTES => {
                        let reason = format!(
                            "JSON envelope larger than {} MiB; the rest of the source was not read",
                            MAX_ENVELOPE_BYTES >> 20
                        );
                        let line = self.take_event();
                        self.lines.dead_letter(line, reason, b"", sink)?;
                        break;
                    }
                    Err(err) if err.is_io() => {
                        return Err(DecodeError::io(self.lines.source(), err.into()))
                    }
                    Err(err) => {
                        // A JSON stream cannot be resynchronised after a syntax error.
                        let reason = format!(
                            "not a JSON envelope ({err}); the rest of the source was not read"
                        );
                        let line = self.take_event();
                        self.lines.dead_letter(line, reason, b"", sink)?;
                        break;
                    }
                }
            }
        }
        self.flush(sink)
    }

    /// Reads a line into `buf`, at most [`MAX_ENVELOPE_BYTES`] of it (the rest of a longer
    /// line is skipped); returns the line's whole length, 0 at the end of the input.
    fn read_line(&self, reader: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<u64, DecodeError> {
        let io = |e| DecodeError::io(self.lines.source(), e);
        let n = reader
            .by_ref()
            .take(MAX_ENVELOPE_BYTES as u64 + 1)
            .read_until(b'\n', buf)
            .map_err(io)?;
        if n <= MAX_ENVELOPE_BYTES || buf.ends_with(b"\n") {
            return Ok(n as u64);
        }
        buf.truncate(MAX_ENVELOPE_BYTES);
        Ok(n as u64 + skip_line(reader).map_err(io)?)
    }

    fn decode_json_line(
        &mut self,
        line: &[u8],
        line_no: u64,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            self.lines.stats_mut().blank_lines += 1;
            return Ok(());
        }
        match serde_json::from_slice::<JsonObject>(trimmed) {
            Ok(object) => self.decode_object(object, Some(line_no), 0, None, sink),
            Err(err) => {
                let reason = format!("not a JSON envelope: {err}");
                self.lines.dead_letter(line_no, reason, trimmed, sink)
            }
        }
    }

    fn take_event(&mut self) -> u64 {
        self.next_event += 1;
        self.next_event - 1
    }

    /// Handles one JSON object of any supported kind. `line_no` is its physical line when
    /// it stands on a line of its own; `parent` is what enclosing envelopes said.
    fn decode_object(
        &mut self,
        mut object: JsonObject<'_>,
        line_no: Option<u64>,
        depth: usize,
        parent: Option<&Arc<Metadata>>,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        let envelope = envelope_of(&mut object, parent);
        let envelope = envelope.as_ref();
        if let Some(kind) = object.message_type.as_deref() {
            // CloudWatch Logs subscription payload.
            if kind == "CONTROL_MESSAGE" {
                self.lines.stats_mut().control_messages += 1;
                return Ok(());
            }
            for event in object.log_events.unwrap_or_default() {
                let line = self.take_event();
                let row = RowMetadata {
                    shared: envelope.cloned(),
                    event_id: event.id.and_then(|id| id.text()),
                    event_time: match event.timestamp {
                        Some(Scalar::Int(ms)) => Some(ms),
                        _ => None,
                    },
                };
                self.push_bytes(event.message.as_bytes(), line, row, sink)?;
            }
            return Ok(());
        }
        if let Some(records) = object.records {
            // Firehose HTTP endpoint request: each record's data is base64.
            for record in records {
                self.decode_base64(&record.data, depth + 1, envelope, sink)?;
            }
            return Ok(());
        }
        if let Some(awslogs) = object.awslogs {
            // Lambda subscription event: base64(gzip(CloudWatch payload)).
            return self.decode_base64(&awslogs.data, depth + 1, envelope, sink);
        }
        if let Some(message) = object.message {
            let line = match line_no {
                Some(n) => n,
                None => self.take_event(),
            };
            let row = RowMetadata {
                shared: envelope.cloned(),
                ..RowMetadata::default()
            };
            return self.push_bytes(message.as_bytes(), line, row, sink);
        }
        let line = line_no.unwrap_or_else(|| self.take_event());
        self.lines.dead_letter(
            line,
            "JSON object has none of `messageType`, `records`, `awslogs`, `message`".into(),
            b"",
            sink,
        )
    }

    fn decode_base64(
        &mut self,
        data: &str,
        depth: usize,
        envelope: Option<&Arc<Metadata>>,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        match base64::engine::general_purpose::STANDARD.decode(data.trim()) {
            Ok(bytes) => self.decode_nested(bytes, depth, envelope, sink),
            Err(err) => {
                let line = self.take_event();
                let reason = format!("record data is not base64: {err}");
                self.lines.dead_letter(line, reason, data.as_bytes(), sink)
            }
        }
    }

    /// Decodes the content of a record: gzip, JSON or plain lines, detected from the bytes.
    fn decode_nested(
        &mut self,
        bytes: Vec<u8>,
        depth: usize,
        envelope: Option<&Arc<Metadata>>,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            let line = self.take_event();
            let reason = format!("envelopes nested deeper than {MAX_DEPTH} levels");
            return self
                .lines
                .dead_letter(line, reason, &bytes[..bytes.len().min(4096)], sink);
        }
        match sniff(&bytes) {
            Envelope::Gzip => {
                let mut plain = Vec::new();
                let limit = MAX_ENVELOPE_BYTES as u64 + 1;
                match flate2::read::MultiGzDecoder::new(&bytes[..])
                    .take(limit)
                    .read_to_end(&mut plain)
                {
                    Ok(n) if n as u64 == limit => {
                        let line = self.take_event();
                        let reason = format!(
                            "record data decompresses to more than {} MiB",
                            MAX_ENVELOPE_BYTES >> 20
                        );
                        self.lines.dead_letter(line, reason, b"", sink)
                    }
                    Ok(_) => self.decode_nested(plain, depth + 1, envelope, sink),
                    Err(err) => {
                        let line = self.take_event();
                        self.lines.dead_letter(
                            line,
                            format!("record data is not valid gzip: {err}"),
                            b"",
                            sink,
                        )
                    }
                }
            }
            Envelope::Json => {
                let stream = serde_json::Deserializer::from_slice(&bytes).into_iter::<JsonObject>();
                for item in stream {
                    match item {
                        Ok(object) => self.decode_object(object, None, depth, envelope, sink)?,
                        Err(err) => {
                            let line = self.take_event();
                            let offset = err.column();
                            let reason = format!("record is not a JSON envelope: {err}");
                            let raw = &bytes[..bytes.len().min(offset.max(1) + 4096)];
                            return self.lines.dead_letter(line, reason, raw, sink);
                        }
                    }
                }
                Ok(())
            }
            Envelope::Text => {
                for line in bytes.split(|&c| c == b'\n') {
                    if line.trim_ascii().is_empty() {
                        continue;
                    }
                    let n = self.take_event();
                    let row = RowMetadata {
                        shared: envelope.cloned(),
                        ..RowMetadata::default()
                    };
                    self.push_bytes(line, n, row, sink)?;
                }
                Ok(())
            }
            Envelope::Parquet => {
                let line = self.take_event();
                self.lines.dead_letter(
                    line,
                    "Parquet inside a JSON envelope is not supported".into(),
                    b"",
                    sink,
                )
            }
            Envelope::Empty => Ok(()),
        }
    }

    /// Adds a message to the block; `envelope` is what its envelopes said about it.
    fn push_bytes(
        &mut self,
        message: &[u8],
        line: u64,
        envelope: RowMetadata,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        let message = message.strip_suffix(b"\n").unwrap_or(message);
        if message.len() > MAX_LINE_BYTES {
            return self
                .lines
                .over_long_line(line, message, message.len() as u64, sink);
        }
        if message.contains(&b'\n') {
            // A flow-log record is one line; joining this into the block would split it.
            return self.lines.dead_letter(
                line,
                "message holds more than one line".into(),
                message,
                sink,
            );
        }
        self.block.extend_from_slice(message);
        self.block.push(b'\n');
        self.numbers.push(line);
        self.envelopes.push(envelope);
        if self.block.len() >= BLOCK_BYTES {
            self.flush(sink)?;
        }
        Ok(())
    }

    fn flush(&mut self, sink: &mut dyn RecordSink) -> Result<(), DecodeError> {
        if self.numbers.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_BYTES));
        let numbers = std::mem::take(&mut self.numbers);
        let envelopes = std::mem::take(&mut self.envelopes);
        self.lines.decode_block(
            Buffer::from_vec(block),
            LineNumbers::Listed(&numbers, &envelopes),
            sink,
        )?;
        Ok(())
    }
}

/// What `object` says about the records it carries, added to what `parent` said (its
/// own members win); `parent` itself when it adds nothing. Takes the members it keeps.
fn envelope_of(
    object: &mut JsonObject<'_>,
    parent: Option<&Arc<Metadata>>,
) -> Option<Arc<Metadata>> {
    let is_event = object.message.is_some()
        && object.message_type.is_none()
        && object.records.is_none()
        && object.awslogs.is_none();
    let mut other = if is_event {
        std::mem::take(&mut object.other)
    } else {
        Vec::new()
    };
    let mut received = None;
    if let Some(raw) = object.timestamp.take() {
        // Firehose: Unix milliseconds; Vector and most engines: RFC 3339.
        received = match serde_json::from_str::<Scalar>(raw.get()) {
            Ok(Scalar::Int(ms)) => Some(ms),
            Ok(Scalar::Text(text)) => parse_rfc3339(&text),
            _ => None,
        };
        if received.is_none() && is_event {
            other.push((Cow::Borrowed("timestamp"), raw));
        }
    }
    let text = |value: &Option<Scalar<'_>>| value.as_ref().and_then(Scalar::text);
    let own = Metadata {
        owner: text(&object.owner),
        log_group: text(&object.log_group),
        log_stream: text(&object.log_stream),
        subscription_filters: object
            .subscription_filters
            .take()
            .map(|raw| raw.get().into()),
        request_id: text(&object.request_id),
        received,
        fields: (!other.is_empty()).then(|| json_object(&other)),
    };
    if own.is_empty() {
        return parent.cloned();
    }
    let mut merged = parent.map(|p| Metadata::clone(p)).unwrap_or_default();
    macro_rules! take_own {
        ($($field:ident),*) => {$(
            if own.$field.is_some() {
                merged.$field = own.$field;
            }
        )*};
    }
    take_own!(
        owner,
        log_group,
        log_stream,
        subscription_filters,
        request_id,
        received,
        fields
    );
    Some(Arc::new(merged))
}

/// A JSON object of members given as raw JSON values.
fn json_object(members: &[(Cow<'_, str>, Box<RawValue>)]) -> Box<str> {
    let mut out = String::from("{");
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key.as_ref()).expect("a string serializes"));
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    out.into()
}

/// Skips the rest of a line (through its newline); returns how many bytes it held before
/// the newline.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<u64> {
    let mut skipped = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(skipped);
        }
        match memchr::memchr(b'\n', available) {
            Some(p) => {
                reader.consume(p + 1);
                return Ok(skipped + p as u64);
            }
            None => {
                let n = available.len();
                reader.consume(n);
                skipped += n as u64;
            }
        }
    }
}

/// Counts what a JSON object of a stream reads, and fails the read past
/// [`MAX_ENVELOPE_BYTES`] (the caller resets `used` after each object).
struct Budget<R> {
    inner: R,
    used: Rc<Cell<usize>>,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.used.get() > MAX_ENVELOPE_BYTES {
            return Err(std::io::Error::other("JSON envelope too large"));
        }
        let room = MAX_ENVELOPE_BYTES + 1 - self.used.get();
        let len = buf.len().min(room);
        let n = self.inner.read(&mut buf[..len])?;
        self.used.set(self.used.get() + n);
        Ok(n)
    }
}
