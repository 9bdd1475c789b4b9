//! Hostile inputs: whatever their size, over-long lines and over-size envelopes become one
//! dead letter each (the head of the input and its real length) and decoding goes on. The
//! peak memory of each case, on a release build, is measured by `scripts/hostile-inputs.py`.

use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use base64::Engine;
use flowlog_decode::{
    decode_file, decode_reader, DeadLetter, DecodeError, DecodeOptions, RecordSink, SinkError,
};
use flowlog_model::{FlowBatch, SourceId};

#[derive(Default)]
struct Collect {
    lines: Vec<u64>,
    dead: Vec<DeadLetter>,
}

impl RecordSink for Collect {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        self.lines.extend(batch.line_numbers.iter());
        Ok(())
    }
    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        self.dead.push(letter);
        Ok(())
    }
}

const GOOD: &str = "2 123456789010 eni-1235b8ca123456789 10.0.0.1 10.0.0.2 443 22 6 20 4249 1418530010 1418530070 ACCEPT OK";

fn decode(bytes: &[u8]) -> Collect {
    let mut sink = Collect::default();
    decode_reader(
        bytes,
        SourceId::new("t"),
        &DecodeOptions::default(),
        &mut sink,
    )
    .unwrap();
    sink
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Flow-log-like text without a newline: every token is one a record could hold.
fn endless(bytes: usize) -> Vec<u8> {
    b"2 1 eni-1 ".iter().copied().cycle().take(bytes).collect()
}

fn assert_over_long(letter: &DeadLetter, line: u64, length: usize) {
    assert_eq!(letter.line, line, "{}", letter.reason);
    assert_eq!(letter.raw_length, Some(length as u64), "{}", letter.reason);
    assert_eq!(letter.raw.len(), DeadLetter::MAX_RAW);
    assert!(
        letter.reason.contains("longer than the 64 KiB"),
        "{}",
        letter.reason
    );
}

#[test]
fn over_long_lines_are_one_dead_letter_each_in_files_streams_and_gzip() {
    // One line longer than a mapping window, one longer than the limit but shorter than a
    // block, and one at the very end without a newline.
    let (huge, long, last) = (20 << 20, 100 << 10, 70 << 10);
    let mut text = Vec::new();
    for part in [
        GOOD.as_bytes().to_vec(),
        endless(huge),
        GOOD.as_bytes().to_vec(),
        endless(long),
        GOOD.as_bytes().to_vec(),
    ] {
        text.extend_from_slice(&part);
        text.push(b'\n');
    }
    text.extend_from_slice(&endless(last));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.log");
    std::fs::write(&path, &text).unwrap();
    let mut mapped = Collect::default();
    decode_file(
        &path,
        SourceId::new("t"),
        &DecodeOptions::default(),
        &mut mapped,
    )
    .unwrap();

    for (how, sink) in [
        ("mapped file", mapped),
        ("stream", decode(&text)),
        ("gzip stream", decode(&gzip(&text))),
    ] {
        assert_eq!(sink.lines, [1, 3, 5], "{how}");
        assert_eq!(sink.dead.len(), 3, "{how}");
        assert_over_long(&sink.dead[0], 2, huge);
        assert_over_long(&sink.dead[1], 4, long);
        assert_over_long(&sink.dead[2], 6, last);
    }
}

fn lambda_event(payload: &[u8]) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(gzip(payload));
    format!("{{\"awslogs\":{{\"data\":\"{data}\"}}}}\n")
}

#[test]
fn a_gzip_bomb_inside_an_envelope_is_dead_lettered_unread() {
    // Less than a megabyte that decompresses to 17 MiB of tokens without a newline (the
    // case measured by scripts/hostile-inputs.py decompresses to 1 GiB).
    let bomb = endless(17 << 20);
    let lambda = lambda_event(&bomb);
    let firehose = format!(
        "{{\"requestId\":\"r\",\"records\":[{{\"data\":\"{}\"}}]}}\n",
        base64::engine::general_purpose::STANDARD.encode(gzip(&bomb))
    );
    assert!(lambda.len() < 1 << 20);
    for input in [lambda, firehose] {
        let good = format!("{{\"message\":\"{GOOD}\"}}\n");
        let sink = decode(format!("{input}{good}").as_bytes());
        assert_eq!(sink.lines, [2]);
        assert_eq!(sink.dead.len(), 1);
        assert!(
            sink.dead[0]
                .reason
                .contains("decompresses to more than 16 MiB"),
            "{}",
            sink.dead[0].reason
        );
    }
}

#[test]
fn a_log_event_longer_than_a_record_can_be_is_dead_lettered_with_its_length() {
    let message = String::from_utf8(endless(1 << 20)).unwrap();
    let payload = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","logEvents":[{{"id":"1","timestamp":1,"message":"{message}"}},{{"id":"2","timestamp":1,"message":"{GOOD}"}}]}}"#
    );
    let sink = decode(lambda_event(payload.as_bytes()).as_bytes());
    assert_eq!(sink.lines, [2]);
    assert_over_long(&sink.dead[0], 1, 1 << 20);
}

#[test]
fn json_documents_over_the_limit_are_dead_lettered_and_skipped() {
    // One JSON object per line: the over-size line is skipped, the next one decoded.
    let big = format!("{{\"message\":\"{}\"}}\n", "x".repeat(17 << 20));
    let good = format!("{{\"message\":\"{GOOD}\"}}\n");
    let sink = decode(format!("{good}{big}{good}").as_bytes());
    assert_eq!(sink.lines, [1, 3]);
    assert_eq!(sink.dead.len(), 1);
    assert_eq!(sink.dead[0].line, 2);
    assert_eq!(sink.dead[0].raw_length, Some(big.len() as u64 - 1));
    assert!(sink.dead[0].reason.contains("larger than the 16 MiB"));

    // Objects spanning lines: one whose event list goes on past the limit stops the source
    // with a dead letter, after what came before it.
    let event = format!("{{\"message\":\"{GOOD}\"}},\n");
    let mut stream = format!(
        "{{\n\"messageType\": \"DATA_MESSAGE\", \"logEvents\": [{}]}}\n",
        event.trim_end().trim_end_matches(',')
    );
    stream.push_str("{\n\"messageType\": \"DATA_MESSAGE\", \"logEvents\": [\n");
    while stream.len() < 17 << 20 {
        stream.push_str(&event);
    }
    let sink = decode(stream.as_bytes());
    assert_eq!(sink.lines, [1]);
    assert_eq!(sink.dead.len(), 1);
    assert!(
        sink.dead[0].reason.contains("larger than 16 MiB"),
        "{}",
        sink.dead[0].reason
    );
}

#[test]
fn a_gzipped_parquet_stream_is_decoded_from_a_temporary_file() {
    let batch = RecordBatch::try_from_iter(vec![
        (
            "version",
            Arc::new(Int32Array::from(vec![5, 5])) as ArrayRef,
        ),
        (
            "srcaddr",
            Arc::new(StringArray::from(vec!["10.0.0.1", "10.0.0.2"])),
        ),
    ])
    .unwrap();
    let mut file = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let sink = decode(&gzip(&file));
    assert_eq!(sink.lines, [1, 2]);

    // A stream that breaks off is an error naming the source, not a panic or a hang.
    let mut sink = Collect::default();
    let half = &file[..file.len() / 2];
    let err = decode_reader(
        &gzip(half)[..],
        SourceId::new("t"),
        &DecodeOptions::default(),
        &mut sink,
    )
    .unwrap_err();
    assert!(matches!(err, DecodeError::Parquet { .. }), "{err}");
    assert!(err.is_corrupt_input());
}
