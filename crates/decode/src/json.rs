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
use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;

use arrow_buffer::Buffer;
use base64::Engine;
use flowlog_model::needs_json_escape;
use flowlog_model::time::parse_rfc3339;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::envelope::{BlockMetadata, Event, Metadata, Own};
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
pub const MAX_ENVELOPE_BYTES: usize = 16 << 20;

/// The most members of a `{"message"}` event flowlog has no column for that are kept (in
/// the envelope's `fields`); the rest are left out.
const MAX_OTHER_MEMBERS: usize = 64;

/// The members flowlog reads from any JSON object; the kind of envelope follows from which
/// are present. Of a `{"message"}` event, the members it has no name for are kept as
/// they are (`other`); of other envelopes they are ignored.
///
/// `R` holds raw JSON values: `&RawValue` when the object is read from memory (no copy),
/// `Box<RawValue>` when it is read from a stream.
struct JsonObject<'a, R> {
    message_type: Option<Cow<'a, str>>,
    log_events: Option<Vec<LogEvent<'a>>>,
    records: Option<Vec<FirehoseRecord<'a>>>,
    awslogs: Option<AwsLogs<'a>>,
    message: Option<Cow<'a, str>>,
    owner: Option<Scalar<'a>>,
    log_group: Option<Scalar<'a>>,
    log_stream: Option<Scalar<'a>>,
    subscription_filters: Option<R>,
    request_id: Option<Scalar<'a>>,
    timestamp: Option<R>,
    other: Vec<(Cow<'a, str>, R)>,
}

impl<R> JsonObject<'_, R> {
    /// An object with no members.
    fn empty() -> Self {
        Self {
            message_type: None,
            log_events: None,
            records: None,
            awslogs: None,
            message: None,
            owner: None,
            log_group: None,
            log_stream: None,
            subscription_filters: None,
            request_id: None,
            timestamp: None,
            other: Vec::new(),
        }
    }
}

impl<'de: 'a, 'a, R: Deserialize<'de>> Deserialize<'de> for JsonObject<'a, R> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<'a, R>(std::marker::PhantomData<(&'a (), R)>);
        impl<'de: 'a, 'a, R: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<'a, R> {
            type Value = JsonObject<'a, R>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonObject<'a, R>, A::Error> {
                let mut object = JsonObject::empty();
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
                        _ if object.other.len() < MAX_OTHER_MEMBERS => {
                            object.other.push((key, map.next_value()?))
                        }
                        // Kept members cost memory per member, whatever their size.
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
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

/// A Firehose HTTP endpoint request, as [`JsonDecoder::decode_request`] reads it.
#[derive(Deserialize)]
struct FirehoseRequest<'a> {
    #[serde(borrow, rename = "requestId", default)]
    request_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    records: Vec<FirehoseRecord<'a>>,
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
    /// What the envelopes said about each message of `block`.
    envelopes: BlockMetadata,
    /// The envelope made last, for `{"message"}` events that say the same as the one
    /// before.
    last_envelope: Option<Arc<Metadata>>,
    /// Where the members of an event flowlog has no column for are written (reused).
    fields: String,
    next_event: u64,
    /// What decompressing record data may still produce (`DecodeOptions::max_inflated_bytes`).
    inflation_left: Option<u64>,
    /// A record whose data a dead letter could not keep whole (not base64, not gzip, too
    /// large once inflated) fails the source instead: a Firehose request is then refused,
    /// and Firehose keeps the record (it retries, then backs it up to S3), where a dead
    /// letter would have kept at most its head.
    whole_records: bool,
}

impl<'d> JsonDecoder<'d> {
    pub fn new(lines: &'d mut LineDecoder, max_inflated_bytes: Option<u64>) -> Self {
        Self {
            inflation_left: max_inflated_bytes,
            whole_records: false,
            lines,
            block: Vec::with_capacity(BLOCK_BYTES),
            numbers: Vec::new(),
            envelopes: BlockMetadata::default(),
            last_envelope: None,
            fields: String::new(),
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
            let stream = serde_json::Deserializer::from_reader(budget)
                .into_iter::<JsonObject<Box<RawValue>>>();
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

    /// Decodes one Firehose HTTP endpoint request held in memory (see
    /// [`crate::decode_firehose_request`]): the whole body is parsed and checked before
    /// any record is decoded.
    pub fn decode_request(
        mut self,
        body: &[u8],
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        let not_a_request = |reason: String| DecodeError::NotARequest {
            source_id: self.lines.source().clone(),
            reason,
        };
        self.whole_records = true;
        // Only what a request has is read: other members are skipped, not kept.
        let request = match serde_json::from_slice::<FirehoseRequest>(body) {
            Ok(request) => request,
            Err(e) => {
                let reason = format!("the body is not a JSON object with records: {e}");
                return Err(not_a_request(reason));
            }
        };
        let object = JsonObject {
            records: Some(request.records),
            request_id: request.request_id,
            timestamp: request.timestamp,
            ..JsonObject::empty()
        };
        self.decode_object(object, None, 0, None, sink)?;
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
        match serde_json::from_slice::<JsonObject<&RawValue>>(trimmed) {
            Ok(object) => self.decode_object(object, Some(line_no), 0, None, sink),
            Err(err) => {
                let reason = format!("not a JSON envelope: {err}");
                self.lines.dead_letter(line_no, reason, trimmed, sink)
            }
        }
    }

    /// The error of a record that is not kept whole (see `whole_records`).
    fn unkept(&self, record: u64, reason: String) -> DecodeError {
        DecodeError::NotARequest {
            source_id: self.lines.source().clone(),
            reason: format!("record {record}: {reason}"),
        }
    }

    fn take_event(&mut self) -> u64 {
        self.next_event += 1;
        self.next_event - 1
    }

    /// Handles one JSON object of any supported kind. `line_no` is its physical line when
    /// it stands on a line of its own; `parent` is what enclosing envelopes said.
    fn decode_object<R: Deref<Target = RawValue>>(
        &mut self,
        object: JsonObject<'_, R>,
        line_no: Option<u64>,
        depth: usize,
        parent: Option<&Arc<Metadata>>,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        let is_event = object.message.is_some()
            && object.message_type.is_none()
            && object.records.is_none()
            && object.awslogs.is_none();
        let (own, received) = own_metadata(&object, is_event, &mut self.fields);
        let envelope = Metadata::of(parent, &own, self.last_envelope.as_ref());
        if envelope.is_some() && !own.is_empty() {
            self.last_envelope.clone_from(&envelope);
        }
        let envelope = envelope.as_ref();
        if let Some(kind) = object.message_type.as_deref() {
            // CloudWatch Logs subscription payload.
            if kind == "CONTROL_MESSAGE" {
                self.lines.stats_mut().control_messages += 1;
                return Ok(());
            }
            for event in object.log_events.unwrap_or_default() {
                let line = self.take_event();
                let id = match &event.id {
                    Some(Scalar::Text(id)) => Some(Cow::Borrowed(id.as_ref())),
                    Some(Scalar::Int(n)) => Some(Cow::Owned(n.to_string())),
                    _ => None,
                };
                let about = Event {
                    id: id.as_deref(),
                    time: match event.timestamp {
                        Some(Scalar::Int(ms)) => Some(ms),
                        _ => None,
                    },
                    received: None,
                };
                self.push_bytes(event.message.as_bytes(), line, envelope, about, sink)?;
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
            let about = Event {
                received,
                ..Event::default()
            };
            return self.push_bytes(message.as_bytes(), line, envelope, about, sink);
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
                if self.whole_records {
                    return Err(self.unkept(line, reason));
                }
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
                // The source's budget, when it has one and it is the tighter bound.
                let (limit, budget) = match self.inflation_left {
                    Some(left) if left < limit => (left + 1, true),
                    _ => (limit, false),
                };
                let inflated = read_bounded(
                    flate2::read::MultiGzDecoder::new(&bytes[..]),
                    limit,
                    &mut plain,
                );
                if let Some(left) = &mut self.inflation_left {
                    *left = left.saturating_sub(plain.len() as u64);
                }
                match inflated {
                    Ok(n) if n as u64 == limit && budget => Err(DecodeError::TooLarge {
                        source_id: self.lines.source().clone(),
                        what: "data decompressed from the records",
                        limit: limit - 1,
                    }),
                    Ok(n) if n as u64 == limit && self.whole_records => {
                        Err(DecodeError::TooLarge {
                            source_id: self.lines.source().clone(),
                            what: "a record's data, decompressed,",
                            limit: limit - 1,
                        })
                    }
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
                        let reason = format!("record data is not valid gzip: {err}");
                        if self.whole_records {
                            return Err(self.unkept(line, reason));
                        }
                        self.lines.dead_letter(line, reason, b"", sink)
                    }
                }
            }
            Envelope::Json => {
                let mut stream = serde_json::Deserializer::from_slice(&bytes)
                    .into_iter::<JsonObject<&RawValue>>();
                while let Some(item) = stream.next() {
                    match item {
                        Ok(object) => self.decode_object(object, None, depth, envelope, sink)?,
                        Err(err) => {
                            let line = self.take_event();
                            let reason = format!("record is not a JSON envelope: {err}");
                            if self.whole_records {
                                return Err(self.unkept(line, reason));
                            }
                            // From where the object that failed began.
                            let offset = stream.byte_offset().min(bytes.len());
                            let raw = &bytes[offset..bytes.len().min(offset + 4096)];
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
                    self.push_bytes(line, n, envelope, Event::default(), sink)?;
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
        envelope: Option<&Arc<Metadata>>,
        event: Event<'_>,
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
        self.envelopes.push(envelope, event);
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
        let result = self.lines.decode_block(
            Buffer::from_vec(block),
            LineNumbers::Listed(&numbers, &self.envelopes),
            sink,
        );
        self.envelopes.clear();
        result.map(|_| ())
    }
}

/// What `object` says about the records it carries, borrowed from it; and, for a
/// `{"message"}` event (`is_event`), when the pipeline in front of flowlog took it. The
/// members of an event flowlog has no column for are written to `fields` as a JSON object.
fn own_metadata<'o, R: Deref<Target = RawValue>>(
    object: &'o JsonObject<'_, R>,
    is_event: bool,
    fields: &'o mut String,
) -> (Own<'o>, Option<i64>) {
    fields.clear();
    let mut time = None;
    if let Some(raw) = &object.timestamp {
        // Firehose: Unix milliseconds; Vector and most engines: RFC 3339.
        let text = raw.get();
        time = match text.as_bytes().first() {
            Some(b'"') => text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .and_then(parse_rfc3339),
            _ => text.parse::<i64>().ok(),
        };
        if time.is_none() && is_event {
            add_member(fields, "timestamp", text);
        }
    }
    if is_event {
        for (key, value) in &object.other {
            add_member(fields, key, value.get());
        }
    }
    if !fields.is_empty() {
        fields.push('}');
    }
    let text = |value: &'o Option<Scalar<'_>>| match value {
        Some(Scalar::Text(t)) => Some(t.as_ref()),
        _ => None,
    };
    let own = Own {
        owner: text(&object.owner),
        log_group: text(&object.log_group),
        log_stream: text(&object.log_stream),
        subscription_filters: object.subscription_filters.as_deref().map(RawValue::get),
        request_id: text(&object.request_id),
        received: if is_event { None } else { time },
        fields: (!fields.is_empty()).then_some(fields.as_str()),
    };
    (own, if is_event { time } else { None })
}

/// Adds `"key":value` to the JSON object being written in `out` (opened by the first).
fn add_member(out: &mut String, key: &str, json: &str) {
    out.push(if out.is_empty() { '{' } else { ',' });
    if needs_json_escape(key) {
        out.push_str(&serde_json::to_string(key).expect("a string serializes"));
    } else {
        out.push('"');
        out.push_str(key);
        out.push('"');
    }
    out.push(':');
    out.push_str(json);
}

/// Reads `reader` into `out` up to `limit` bytes; returns how many were read. The buffer
/// grows to at most `limit` (`read_to_end` doubles it: a bomb stopped at the limit would
/// cost twice the limit in memory).
fn read_bounded(reader: impl Read, limit: u64, out: &mut Vec<u8>) -> std::io::Result<usize> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut reader = reader.take(limit as u64);
    let mut chunk = vec![0u8; 64 << 10];
    let start = out.len();
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out.len() - start),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if out.capacity() - out.len() < n {
            let read = out.len() - start;
            let grow = out.capacity().max(n).min(limit - read).max(n);
            out.reserve_exact(grow);
        }
        out.extend_from_slice(&chunk[..n]);
    }
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
