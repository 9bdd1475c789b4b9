//! The HEC test receiver as a process, for measuring `flowlog run` by hand:
//!
//! ```sh
//! hec-receiver [--acks] [--down-secs N] [--failure-rate P] [--lose-ack-rate P]
//! ```
//! prints its URL, then a line of counts every second; stops on end of standard input.

use flowlog_test_receivers::hec::{HecOptions, HecReceiver};
use flowlog_test_receivers::server::run_until_stdin_ends;

fn main() {
    let mut options = HecOptions {
        keep_events: false,
        ..HecOptions::default()
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
            "--acks" => options.acks = true,
            "--down-secs" => down_secs = value(),
            "--failure-rate" => options.failure_rate = value(),
            "--lose-ack-rate" => options.lose_ack_rate = value(),
            other => panic!("unknown argument {other}"),
        }
    }
    let receiver = HecReceiver::start(options);
    run_until_stdin_ends(
        &receiver.url(),
        down_secs,
        |down| receiver.set_down(down),
        |elapsed| {
            let s = receiver.stats();
            eprintln!(
                "{:.0} s: {} indexed, {} requests, {} answered 503",
                elapsed.as_secs_f64(),
                s.indexed,
                s.requests,
                s.failed_503
            );
        },
    );
}
