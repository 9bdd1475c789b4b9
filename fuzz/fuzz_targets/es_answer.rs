//! What an Elasticsearch cluster answers to `_bulk`: the status, `Retry-After` and body.
//! Any answer gets a verdict that fits the request it answers.
#![no_main]

use bytes::Bytes;
use flowlog_sink::http::Response;
use flowlog_sink::request::Verdict;
use flowlog_sink_elasticsearch::response::verdict;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    let status = 100 + u16::from_le_bytes([input[0], input[1]]) % 500;
    let events = 1 + input[2] as usize % 64;
    let rest = &input[3..];
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
    let verdict = verdict(&response, events);
    match &verdict {
        Verdict::Events(each) => {
            assert_eq!(each.len(), events, "a verdict per document");
            assert!((200..300).contains(&status), "{status} with items");
        }
        Verdict::Delivered { receipt, .. } => {
            assert!((200..300).contains(&status), "{status} delivered");
            assert!(receipt.is_none(), "bulk answers carry no receipt");
        }
        _ => {}
    }
    if status == 429 || (500..600).contains(&status) {
        assert!(
            matches!(verdict, Verdict::Retry { .. }),
            "{status}: {verdict:?}"
        );
    }
    if status == 401 || status == 403 {
        assert!(
            matches!(verdict, Verdict::Fatal { .. }),
            "{status}: {verdict:?}"
        );
    }
});
