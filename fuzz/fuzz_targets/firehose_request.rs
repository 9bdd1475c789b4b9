//! The Firehose endpoint's request path: the headers a request arrives with (its
//! `Content-Encoding`, any number of values) and its body, through the same unpacking,
//! bounds and decoding the handler uses, into a sink. Whatever arrives gets one of the
//! statuses the endpoint answers with; a 200 means the body was a whole Firehose request,
//! and every record of it was either emitted or dead-lettered, and no more.
#![no_main]

use flowlog_decode::{DeadLetter, RecordSink, SinkError};
use flowlog_model::FlowBatch;
use flowlog_source_firehose::{offline_answer, FirehoseSource};
use libfuzzer_sys::fuzz_target;

#[derive(Default)]
struct Count {
    records: usize,
    dead_letters: usize,
}

impl RecordSink for Count {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        assert_eq!(batch.line_numbers.len(), batch.num_rows());
        self.records += batch.num_rows();
        Ok(())
    }
    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        assert!(!letter.reason.is_empty());
        self.dead_letters += 1;
        Ok(())
    }
}

fuzz_target!(|input: &[u8]| {
    // Small bounds, so that the fuzzer reaches them: a line of header values, then the body.
    let settings: FirehoseSource = toml_settings();
    let (head, body) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (&[][..], input),
    };
    let mut headers = http::HeaderMap::new();
    for value in head.split(|&b| b == b';') {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.append(http::header::CONTENT_ENCODING, value);
        }
    }
    let mut count = Count::default();
    let status = offline_answer(&settings, &headers, body, None, &mut count);
    assert!(
        matches!(status, 200 | 400 | 413 | 415 | 503),
        "status {status}"
    );
    if status == 415 {
        assert_eq!(count.records + count.dead_letters, 0, "refused before decoding");
    }
});

fn toml_settings() -> FirehoseSource {
    let text = "address = \"127.0.0.1:0\"\naccess_key = \"k\"\nmax_body_bytes = 65536\nmax_inflated_bytes = 1048576";
    toml::from_str(text).expect("valid settings")
}
