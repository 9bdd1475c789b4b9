//! What an OTLP receiver answers: over gRPC (HTTP status, `grpc-status`, `grpc-message`,
//! `grpc-status-details-bin` with a RetryInfo, a length-prefixed response message) and
//! over HTTP (status, `Retry-After`, a protobuf or JSON response or `google.rpc.Status`).
//! Any answer gets a verdict, and the verdicts the specification fixes are those.
#![no_main]

use flowlog_fuzz::answer;
use flowlog_sink::request::Verdict;
use flowlog_sink_otlp::encoder::Encoding;
use flowlog_sink_otlp::response::{grpc_verdict, http_verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((mut response, header)) = answer(input, 2) else {
        return;
    };
    let status = response.status;
    // How many records the export held.
    let events = header[1] as usize;
    let verdict = match header[0] % 3 {
        0 => {
            // The body holds the trailers' values, then the message.
            let body = response.body.clone();
            let mut parts = body.splitn(4, |&b| b == 0);
            for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
                let Some(value) = parts.next() else { break };
                if let Ok(value) = http::HeaderValue::from_bytes(value) {
                    response.trailers.insert(name, value);
                }
            }
            response.body = body.slice_ref(parts.next().unwrap_or_default());
            grpc_verdict(&response, events)
        }
        1 => http_verdict(&response, Encoding::Protobuf, events),
        _ => http_verdict(&response, Encoding::Json, events),
    };
    assert!(!matches!(verdict, Verdict::Events(_)), "OTLP answers are per request");
    if let Verdict::Partial { rejected, .. } = verdict {
        assert!(rejected > 0, "a partial success rejects something");
        assert!(rejected <= events as u64, "never more than were sent");
    }
    if status == 401 || status == 403 {
        assert!(matches!(verdict, Verdict::Fatal { .. }), "{status}: {verdict:?}");
    }
    if header[0] % 3 != 0 && matches!(status, 429 | 502 | 503 | 504) {
        assert!(matches!(verdict, Verdict::Retry { .. }), "{status}: {verdict:?}");
    }
});
