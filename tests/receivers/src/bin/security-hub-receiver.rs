//! The Security Hub test peer (`BatchImportFindings`, STS `GetCallerIdentity`) as a
//! process, for measuring `flowlog run` with `[detect]` by hand:
//!
//! ```sh
//! security-hub-receiver [--failure-rate P]
//! ```
//! prints the endpoint (give the process under test the credentials in
//! `flowlog_test_receivers::security_hub`), then a line of counts every second; stops on
//! end of standard input.

use flowlog_test_receivers::security_hub::{HubOptions, HubPeer};
use flowlog_test_receivers::server::{run_until_stdin_ends, Args};

fn main() {
    let args = Args::parse(&[], &["--failure-rate"]);
    let mut options = HubOptions::default();
    options.failure_rate = args.number("--failure-rate", options.failure_rate);
    let hub = HubPeer::start(options);
    run_until_stdin_ends(&hub.url(), &args, |_| {}, || format!("{:?}", hub.stats()));
}
