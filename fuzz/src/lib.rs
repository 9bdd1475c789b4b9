//! What the fuzz targets share: a [`RecordSink`] that checks every batch it is given
//! against the promises [`FlowBatch`] makes, and keeps what a differential comparison needs.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use flowlog_decode::{DeadLetter, RecordSink, SinkError};
use flowlog_model::FlowBatch;

/// Collects batches (their records and line numbers) and dead letters.
#[derive(Default, Debug, PartialEq)]
pub struct Collect {
    pub batches: Vec<(RecordBatch, Vec<u64>)>,
    pub rows: usize,
    pub dead_letters: Vec<DeadLetter>,
}

impl Collect {
    /// The line number of every row, in order, whatever the batches.
    pub fn line_numbers(&self) -> Vec<u64> {
        self.batches
            .iter()
            .flat_map(|(_, l)| l.iter().copied())
            .collect()
    }
}

impl RecordSink for Collect {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        check(&batch);
        self.rows += batch.records.num_rows();
        self.batches
            .push((batch.records, batch.line_numbers.to_vec()));
        Ok(())
    }

    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        assert!(!letter.reason.is_empty(), "a dead letter says why");
        self.dead_letters.push(letter);
        Ok(())
    }
}

/// The promises a batch makes to its writers.
pub fn check(batch: &FlowBatch) {
    let rows = batch.records.num_rows();
    assert!(rows > 0, "no empty batches");
    assert_eq!(batch.line_numbers.len(), rows, "a line number per row");
    if let Some(lines) = &batch.lines {
        assert_eq!(lines.len(), rows, "a kept line per row");
    }
    // `plain_text` lets writers copy text values into JSON unescaped: no control byte, quote
    // or backslash in any of them. Kept lines also hold the separators between tokens
    // (tabs, other control bytes), so for them it vouches only for quotes and backslashes.
    if batch.plain_text {
        for column in batch.records.columns() {
            for value in strings(column.as_ref()) {
                let bad = value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
                assert!(!bad, "plain_text batch holds the value {value:?}");
            }
        }
        for line in batch.lines.iter().flat_map(|l| strings(l)) {
            let bad = line.bytes().any(|b| b == b'"' || b == b'\\');
            assert!(!bad, "plain_text batch holds the line {line:?}");
        }
    }
}

fn strings(column: &dyn Array) -> Vec<&str> {
    match column.data_type() {
        DataType::Utf8View => column.as_string_view().iter().flatten().collect(),
        DataType::Utf8 => column.as_string::<i32>().iter().flatten().collect(),
        DataType::LargeUtf8 => column.as_string::<i64>().iter().flatten().collect(),
        _ => Vec::new(),
    }
}

/// A reader that hands out its bytes in pieces of at most `piece` bytes, so decoders see
/// every split of their input that a pipe or a socket could produce.
pub struct Trickle<'a> {
    pub data: &'a [u8],
    pub piece: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.len().min(buf.len()).min(self.piece.max(1));
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// A receiver's answer made from fuzz input: two bytes of status (100 to 599), then
/// `header` bytes the target reads itself (returned), then either "Retry-After value, NUL,
/// body" or just the body. None when the input is too short.
pub fn answer(input: &[u8], header: usize) -> Option<(flowlog_sink::http::Response, &[u8])> {
    if input.len() < 2 + header {
        return None;
    }
    let status = 100 + u16::from_le_bytes([input[0], input[1]]) % 500;
    let (header, rest) = input[2..].split_at(header);
    let (retry_after, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let mut headers = http::HeaderMap::new();
    if let Some(value) = retry_after.and_then(|v| http::HeaderValue::from_bytes(v).ok()) {
        headers.insert(http::header::RETRY_AFTER, value);
    }
    let response = flowlog_sink::http::Response {
        status,
        headers,
        body: bytes::Bytes::copy_from_slice(body),
        ..Default::default()
    };
    Some((response, header))
}
