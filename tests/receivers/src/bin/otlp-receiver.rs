//! The OTLP test receiver as a process, for measuring `flowlog run` by hand:
//!
//! ```sh
//! otlp-receiver [--unavailable-rate P] [--partial-rate P] [--down-secs N]
//! ```
//! prints its URL (gRPC and HTTP `/v1/logs` on one port), then a line of counts every
//! second; stops on end of standard input.

use flowlog_test_receivers::otlp::{OtlpOptions, OtlpReceiver};
use flowlog_test_receivers::server::{run_until_stdin_ends, Args};

fn main() {
    let mut options = OtlpOptions {
        keep_requests: false,
        // Large requests are the point of a throughput run.
        max_message: 64 << 20,
        ..OtlpOptions::default()
    };
    let args = Args::parse(
        &[],
        &["--down-secs", "--unavailable-rate", "--partial-rate"],
    );
    options.unavailable_rate = args.number("--unavailable-rate", options.unavailable_rate);
    options.partial_rate = args.number("--partial-rate", options.partial_rate);
    let receiver = OtlpReceiver::start(options);
    run_until_stdin_ends(
        &receiver.url(),
        &args,
        |down| receiver.set_down(down),
        || format!("{:?}", receiver.stats()),
    );
}
