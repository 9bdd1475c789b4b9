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

use arrow_buffer::Buffer;
use base64::Engine;
use serde::Deserialize;

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

/// The keys flowlog reads from any JSON object; the kind of envelope follows from which
/// are present. Unknown keys are ignored.
#[derive(Deserialize)]
struct JsonObject<'a> {
    #[serde(rename = "messageType", borrow, default)]
    message_type: Option<Cow<'a, str>>,
    #[serde(rename = "logEvents", borrow, default)]
    log_events: Option<Vec<LogEvent<'a>>>,
    #[serde(borrow, default)]
    records: Option<Vec<FirehoseRecord<'a>>>,
    #[serde(borrow, default)]
    awslogs: Option<AwsLogs<'a>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
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
    next_event: u64,
}

impl<'d> JsonDecoder<'d> {
    pub fn new(lines: &'d mut LineDecoder) -> Self {
        Self {
            lines,
            block: Vec::with_capacity(BLOCK_BYTES),
            numbers: Vec::new(),
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
                        self.decode_object(object, None, 0, sink)?
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
            Ok(object) => self.decode_object(object, Some(line_no), 0, sink),
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
    /// it stands on a line of its own.
    fn decode_object(
        &mut self,
        object: JsonObject<'_>,
        line_no: Option<u64>,
        depth: usize,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        if let Some(kind) = object.message_type.as_deref() {
            // CloudWatch Logs subscription payload.
            if kind == "CONTROL_MESSAGE" {
                self.lines.stats_mut().control_messages += 1;
                return Ok(());
            }
            for event in object.log_events.unwrap_or_default() {
                let line = self.take_event();
                self.push_message(&event.message, line, sink)?;
            }
            return Ok(());
        }
        if let Some(records) = object.records {
            // Firehose HTTP endpoint request: each record's data is base64.
            for record in records {
                self.decode_base64(&record.data, depth + 1, sink)?;
            }
            return Ok(());
        }
        if let Some(awslogs) = object.awslogs {
            // Lambda subscription event: base64(gzip(CloudWatch payload)).
            return self.decode_base64(&awslogs.data, depth + 1, sink);
        }
        if let Some(message) = object.message {
            let line = match line_no {
                Some(n) => n,
                None => self.take_event(),
            };
            return self.push_message(&message, line, sink);
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
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        match base64::engine::general_purpose::STANDARD.decode(data.trim()) {
            Ok(bytes) => self.decode_nested(bytes, depth, sink),
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
                    Ok(_) => self.decode_nested(plain, depth + 1, sink),
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
                        Ok(object) => self.decode_object(object, None, depth, sink)?,
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
                    self.push_bytes(line, n, sink)?;
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

    fn push_message(
        &mut self,
        message: &str,
        line: u64,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        self.push_bytes(message.as_bytes(), line, sink)
    }

    fn push_bytes(
        &mut self,
        message: &[u8],
        line: u64,
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
        self.lines
            .decode_block(Buffer::from_vec(block), LineNumbers::Listed(&numbers), sink)?;
        Ok(())
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
