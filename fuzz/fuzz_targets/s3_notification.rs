//! An SQS message body, as anyone who may send to the queue writes it: every body is read
//! as objects to fetch, nothing to read, or a reason to dead-letter it; never a panic.
#![no_main]

use flowlog_source_sqs::parse_notification;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(body) = std::str::from_utf8(input) else {
        return;
    };
    match parse_notification(body) {
        Ok(notice) => {
            assert!(!notice.test || notice.objects.is_empty(), "a test event names no object");
            for object in &notice.objects {
                assert!(object.identity().starts_with(&format!("s3://{}/", object.bucket)));
            }
        }
        Err(reason) => assert!(!reason.is_empty(), "a refusal says why"),
    }
});
