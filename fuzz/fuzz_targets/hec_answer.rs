//! What a HEC collector answers: the status, `Retry-After` and body of a send, and the body
//! of an `/ack` poll. Any answer gets a verdict that fits the request it answers.
#![no_main]

use flowlog_fuzz::answer;
use flowlog_sink::request::Verdict;
use flowlog_sink_splunk_hec::response::{acknowledged, verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((response, header)) = answer(input, 2) else {
        return;
    };
    let status = response.status;
    let events = 1 + header[0] as usize % 64;
    let acking = header[1] & 1 == 1;
    let body = response.body.clone();
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
    let _ = acknowledged(&body);
});
