//! The Elasticsearch test receiver as a process, for measuring `flowlog run` by hand:
//!
//! ```sh
//! es-receiver [--item-reject-rate P] [--failure-rate P] [--down-secs N] [--sigv4]
//! ```
//! prints its URL, then a line of counts every second; stops on end of standard input.
//! It accepts the API key `test-id:test-key`; with `--sigv4`, it is Amazon OpenSearch
//! Service in us-east-1 and takes only requests signed by the key
//! `AKIDFLOWLOGTEST` / `flowlog-test-secret`.

use flowlog_test_receivers::elasticsearch::Flavor;
use flowlog_test_receivers::elasticsearch::{EsOptions, EsReceiver};
use flowlog_test_receivers::server::run_until_stdin_ends;
use flowlog_test_receivers::sigv4::SigV4Key;

fn main() {
    let mut options = EsOptions {
        keep_documents: false,
        ..EsOptions::default()
    };
    let mut down_secs = 0.0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .and_then(|v| v.parse::<f64>().ok())
                .expect("a number")
        };
        match arg.as_str() {
            "--item-reject-rate" => options.item_reject_rate = value(),
            "--failure-rate" => options.failure_rate = value(),
            "--down-secs" => down_secs = value(),
            "--sigv4" => {
                options.flavor = Flavor::OpenSearch;
                options.sigv4 = Some(SigV4Key {
                    access_key_id: "AKIDFLOWLOGTEST".into(),
                    secret_access_key: "flowlog-test-secret".into(),
                    session_token: None,
                    region: "us-east-1".into(),
                    service: "es".into(),
                });
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let receiver = EsReceiver::start(options);
    run_until_stdin_ends(
        &receiver.url(),
        down_secs,
        |down| receiver.set_down(down),
        |elapsed| {
            let s = receiver.stats();
            eprintln!(
                "{:.0} s: {} stored, {} bulk requests, {} failed whole, {} items rejected",
                elapsed.as_secs_f64(),
                s.created,
                s.bulk_requests,
                s.failed_requests,
                s.rejected_items
            );
        },
    );
}
