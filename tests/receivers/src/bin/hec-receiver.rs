//! The HEC test receiver as a process, for measuring `flowlog run` by hand:
//!
//! ```sh
//! hec-receiver [--acks] [--down-secs N] [--failure-rate P] [--lose-ack-rate P]
//! ```
//! prints its URL, then a line of counts every second; stops on end of standard input.

use std::io::BufRead;
use std::time::{Duration, Instant};

use flowlog_test_receivers::hec::{HecOptions, HecReceiver};

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
    println!("{}", receiver.url());
    receiver.set_down(down_secs > 0.0);
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in std::io::stdin().lock().lines() {}
        let _ = tx.send(());
    });
    loop {
        let end = rx.recv_timeout(Duration::from_secs(1)).is_ok();
        if down_secs > 0.0 && started.elapsed().as_secs_f64() >= down_secs {
            receiver.set_down(false);
            down_secs = 0.0;
        }
        let s = receiver.stats();
        eprintln!(
            "{:.0} s: {} indexed, {} requests, {} answered 503",
            started.elapsed().as_secs_f64(),
            s.indexed,
            s.requests,
            s.failed_503
        );
        if end {
            break;
        }
    }
}
