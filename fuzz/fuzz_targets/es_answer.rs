//! What an Elasticsearch cluster answers to `_bulk`: the status, `Retry-After` and body.
//! Any answer gets a verdict that fits the request it answers.
#![no_main]

use flowlog_fuzz::answer;
use flowlog_sink::request::Verdict;
use flowlog_sink_elasticsearch::response::verdict;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((response, header)) = answer(input, 1) else {
        return;
    };
    let status = response.status;
    let events = 1 + header[0] as usize % 64;
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
