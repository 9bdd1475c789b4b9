//! The HEC test receiver as a process, for measuring `flowlog run` by hand:
//!
//! ```sh
//! hec-receiver [--acks] [--down-secs N] [--failure-rate P] [--lose-ack-rate P]
//! ```
//! prints its URL, then a line of counts every second; stops on end of standard input.

use flowlog_test_receivers::hec::{HecOptions, HecReceiver};
use flowlog_test_receivers::server::{run_until_stdin_ends, Args};

fn main() {
    let mut options = HecOptions {
        keep_events: false,
        ..HecOptions::default()
    };
    let args = Args::parse(
        &["--acks"],
        &["--down-secs", "--failure-rate", "--lose-ack-rate"],
    );
    options.acks = args.switch("--acks");
    options.failure_rate = args.number("--failure-rate", options.failure_rate);
    options.lose_ack_rate = args.number("--lose-ack-rate", options.lose_ack_rate);
    let receiver = HecReceiver::start(options);
    run_until_stdin_ends(
        &receiver.url(),
        &args,
        |down| receiver.set_down(down),
        || format!("{:?}", receiver.stats()),
    );
}
