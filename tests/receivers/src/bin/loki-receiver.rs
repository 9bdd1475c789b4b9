//! The Loki test receiver as a process, for measuring `flowlog run` by hand:
//!
//! ```sh
//! loki-receiver [--down-secs N] [--failure-rate P]
//! ```
//! prints its URL, then a line of counts every second; stops on end of standard input.

use flowlog_test_receivers::loki::{LokiOptions, LokiReceiver};
use flowlog_test_receivers::server::{run_until_stdin_ends, Args};

fn main() {
    let mut options = LokiOptions::default();
    let args = Args::parse(&[], &["--down-secs", "--failure-rate"]);
    options.failure_rate = args.number("--failure-rate", options.failure_rate);
    let receiver = LokiReceiver::start(options);
    run_until_stdin_ends(
        &receiver.url(),
        &args,
        |down| receiver.set_down(down),
        || format!("{:?}", receiver.stats()),
    );
}
