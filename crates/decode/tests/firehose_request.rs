//! `decode_firehose_request`: a body is a whole Firehose request or it is refused, with
//! nothing emitted; members a request does not have are skipped, however many; a record a
//! dead letter could not keep whole refuses the request, so that Firehose keeps it.

use base64::Engine;
use flowlog_decode::{
    decode_firehose_request, DeadLetter, DecodeError, DecodeOptions, RecordSink, SinkError,
};
use flowlog_model::{FlowBatch, SourceId};

#[derive(Default)]
struct Count {
    rows: usize,
    letters: Vec<DeadLetter>,
}

impl RecordSink for Count {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        self.rows += batch.num_rows();
        Ok(())
    }
    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        self.letters.push(letter);
        Ok(())
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode(body: &[u8]) -> (Result<(), DecodeError>, Count) {
    let mut count = Count::default();
    let result = decode_firehose_request(
        body,
        SourceId::new("firehose:r"),
        &DecodeOptions::default(),
        &mut count,
    );
    (result.map(|_| ()), count)
}

fn request(records: &[String], extra: &str) -> Vec<u8> {
    let records: Vec<String> = records
        .iter()
        .map(|d| format!(r#"{{"data":"{d}"}}"#))
        .collect();
    format!(
        r#"{{"requestId":"r","timestamp":1{extra},"records":[{}]}}"#,
        records.join(",")
    )
    .into_bytes()
}

const LINE: &str =
    "2 123456789012 eni-1 10.0.0.1 10.0.0.2 443 1024 6 1 100 1700000000 1700000060 ACCEPT OK";

#[test]
fn a_request_is_decoded_whole_and_what_is_not_one_is_refused_with_nothing_emitted() {
    let message = |l: &str| b64(format!(r#"{{"message":"{l}"}}"#).as_bytes());
    let good = request(
        &[
            message(LINE),
            message("junk"),
            b64(format!("{LINE}\n{LINE}\n").as_bytes()),
        ],
        "",
    );
    let (result, count) = decode(&good);
    result.unwrap();
    assert_eq!(count.rows, 3);
    assert_eq!(count.letters.len(), 1, "the junk line, with its text");
    assert_eq!(count.letters[0].raw, "junk");

    let cut = &good[..good.len() - 3];
    for body in [
        &b"[]"[..],
        b"{}",
        b"not json",
        cut,
        br#"{"records":[{"nodata":1}]}"#,
    ] {
        let (result, count) = decode(body);
        assert!(
            matches!(result, Err(DecodeError::NotARequest { .. })),
            "{result:?}"
        );
        assert_eq!((count.rows, count.letters.len()), (0, 0));
    }
}

#[test]
fn members_a_request_does_not_have_are_skipped_not_kept() {
    // A million unknown members beside the records: read past, nothing kept of them.
    let extra: String = (0..1_000_000).map(|i| format!(r#","m{i}":0"#)).collect();
    let body = request(&[b64(LINE.as_bytes())], &extra);
    let (result, count) = decode(&body);
    result.unwrap();
    assert_eq!(count.rows, 1);
}

#[test]
fn a_record_a_dead_letter_could_not_keep_whole_refuses_the_request() {
    let gzip = |bytes: &[u8]| {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    };
    let line = b64(LINE.as_bytes());
    let too_large = b64(&gzip(&vec![b'x'; 17 << 20]));
    let mut not_gzip = gzip(LINE.as_bytes());
    not_gzip.truncate(not_gzip.len() / 2);
    for (record, expected) in [
        ("!!not base64!!".to_string(), "not base64"),
        (b64(&not_gzip), "not valid gzip"),
        (b64(b"{\"messageType\":"), "not a JSON envelope"),
        (too_large, "decompressed"),
    ] {
        let (result, _) = decode(&request(&[line.clone(), record], ""));
        let error = result.unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
    }
}
