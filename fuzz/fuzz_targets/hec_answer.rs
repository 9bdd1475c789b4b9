//! What a HEC collector answers: the status, `Retry-After` and body of a send, and the body
//! of an `/ack` poll. Any answer gets a verdict that fits the request it answers.
#![no_main]

use bytes::Bytes;
use flowlog_sink::http::Response;
use flowlog_sink::request::Verdict;
use flowlog_sink_splunk_hec::response::{acknowledged, verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 4 {
        return;
    }
    let status = 100 + u16::from_le_bytes([input[0], input[1]]) % 500;
    let events = 1 + input[2] as usize % 64;
    let acking = input[3] & 1 == 1;
    let rest = &input[4..];
    // The body, optionally after a Retry-After value and a NUL.
    let (retry_after, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let mut headers = http::HeaderMap::new();
    if let Some(value) = retry_after.and_then(|v| http::HeaderValue::from_bytes(v).ok()) {
        headers.insert(http::header::RETRY_AFTER, value);
    }
    let response = Response {
        status,
        headers,
        body: Bytes::copy_from_slice(body),
    };
    let verdict = verdict(&response, events, acking);
    match &verdict {
        Verdict::Events(each) => assert_eq!(each.len(), events, "a verdict per event"),
        Verdict::Delivered { receipt, .. } => {
            assert!((200..300).contains(&status), "{status} delivered");
            assert!(
                acking || receipt.is_none(),
                "a receipt without acknowledgement"
            );
        }
        _ => {}
    }
    // Busy and throttled answers are retried, whatever their body says.
    if status == 429 || (500..600).contains(&status) {
        assert!(
            matches!(verdict, Verdict::Retry { .. }),
            "{status}: {verdict:?}"
        );
    }
    let _ = acknowledged(body);
});
