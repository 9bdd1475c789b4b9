//! The Sumo Logic test receiver (an HTTP Logs source) as a process, for measuring
//! `flowlog run` by hand:
//!
//! ```sh
//! sumo-receiver [--down-secs N] [--failure-rate P]
//! ```
//! prints the source's unique URL, then a line of counts every second; stops on end of
//! standard input.

use flowlog_test_receivers::server::{run_until_stdin_ends, Args};
use flowlog_test_receivers::sumo::{SumoOptions, SumoReceiver};

fn main() {
    let mut options = SumoOptions {
        keep_messages: false,
        ..SumoOptions::default()
    };
    let args = Args::parse(&[], &["--down-secs", "--failure-rate"]);
    options.failure_rate = args.number("--failure-rate", options.failure_rate);
    let receiver = SumoReceiver::start(options);
    run_until_stdin_ends(
        &receiver.url(),
        &args,
        |down| receiver.set_down(down),
        || format!("{:?}", receiver.stats()),
    );
}
