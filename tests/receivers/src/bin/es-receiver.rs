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
use flowlog_test_receivers::server::{run_until_stdin_ends, Args};
use flowlog_test_receivers::sigv4::SigV4Key;

fn main() {
    let mut options = EsOptions {
        keep_documents: false,
        ..EsOptions::default()
    };
    let args = Args::parse(
        &["--sigv4"],
        &["--down-secs", "--item-reject-rate", "--failure-rate"],
    );
    options.item_reject_rate = args.number("--item-reject-rate", options.item_reject_rate);
    options.failure_rate = args.number("--failure-rate", options.failure_rate);
    if args.switch("--sigv4") {
        options.flavor = Flavor::OpenSearch;
        options.sigv4 = Some(SigV4Key {
            access_key_id: "AKIDFLOWLOGTEST".into(),
            secret_access_key: "flowlog-test-secret".into(),
            session_token: None,
            region: "us-east-1".into(),
            service: "es".into(),
        });
    }
    let receiver = EsReceiver::start(options);
    run_until_stdin_ends(
        &receiver.url(),
        &args,
        |down| receiver.set_down(down),
        || format!("{:?}", receiver.stats()),
    );
}
