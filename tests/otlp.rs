//! `flowlog run` into the OTLP test receiver, over gRPC and over HTTP: a large file
//! through UNAVAILABLE storms, RESOURCE_EXHAUSTED with RetryInfo (429 with Retry-After),
//! partial successes, resets and silent requests, with a `kill -9` and a restart
//! midway. Every record arrives at least once (or was dropped by a partial success the
//! receiver owned up to); a record arrives twice only if it had arrived before the kill
//! (at-least-once: what was delivered but not yet checkpointed is sent again); requests
//! holding a poison record are refused whole and their records dead-lettered with the
//! receiver's reason.

mod common;

use std::collections::HashSet;

use common::runs::{self, dead_letters, finish, run_setup, wait_for};
use common::{expected_ids, large_lines};
use flowlog_test_receivers::otlp::{OtlpOptions, OtlpReceiver};

fn otlp_sink(receiver: &OtlpReceiver, protocol: &str) -> String {
    format!(
        r#"[sinks.otel]
type = "otlp"
endpoint = "{url}"
protocol = "{protocol}"
headers = {{ "x-api-key" = "${{FLOWLOG_TEST_OTLP_KEY}}" }}
batch_timeout_secs = 0.05
request_timeout_secs = 3
retry_initial_backoff_secs = 0.01
retry_max_backoff_secs = 0.2
max_bytes = 500000
"#,
        url = receiver.url(),
    )
}

fn flowlog(args: &[&str], config: &std::path::Path) -> std::process::Command {
    let mut command = runs::flowlog(args, config);
    command.env("FLOWLOG_TEST_OTLP_KEY", "the-key");
    command
}

fn through_faults_and_a_kill(protocol: &str, n: usize) {
    let setup = run_setup(n, "");
    let expected = expected_ids(&setup.input, 1..=n as u64);
    // The receiver refuses whole any request holding this record (INVALID_ARGUMENT).
    let poison = expected[n / 2].clone();
    let receiver = OtlpReceiver::start(OtlpOptions {
        unavailable_rate: 0.05,
        exhausted_rate: 0.05,
        partial_rate: 0.02,
        reset_rate: 0.02,
        hang_rate: 0.005,
        poison: Some(poison.clone()),
        required_header: Some(("x-api-key".into(), "the-key".into())),
        keep_requests: false,
        seed: 11,
        ..OtlpOptions::default()
    });
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, text + &otlp_sink(&receiver, protocol)).unwrap();
    let mut child = flowlog(&["run"], &setup.config).spawn().unwrap();
    wait_for(
        || receiver.ids().len(),
        n / 3,
        || format!("{:?}", receiver.stats()),
    );
    child.kill().unwrap(); // SIGKILL: no drain, no final checkpoint
    child.wait().unwrap();
    // Requests the process had sent in full before it died are still being read.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let at_kill: HashSet<String> = receiver.ids().into_keys().collect();
    assert!(at_kill.len() < n, "killed too late to test anything");

    let (ok, stderr) = finish(
        flowlog(&["run"], &setup.config).spawn().unwrap(),
        &setup.config,
    );
    assert!(ok, "{stderr}");

    let ids = receiver.ids();
    let rejected: HashSet<String> = receiver.rejected().into_iter().collect();
    let letters = dead_letters(&setup.dir);
    let refused: HashSet<u64> = letters
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    for letter in &letters {
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.contains(&poison), "{reason}");
        // Dead letters carry the record as OTLP/JSON.
        let raw: serde_json::Value = serde_json::from_str(letter["raw"].as_str().unwrap()).unwrap();
        assert!(raw["logRecord"]["attributes"].is_array(), "{raw}");
    }
    let mut duplicates = 0;
    for (line, id) in (1..).zip(expected) {
        if id == poison {
            assert!(
                refused.contains(&line),
                "{protocol}: poison line {line} not dead-lettered"
            );
            assert!(
                !ids.contains_key(&id),
                "{protocol}: poison line {line} stored"
            );
            continue;
        }
        let count = ids.get(&id).copied().unwrap_or(0);
        assert!(
            count > 0 || refused.contains(&line) || rejected.contains(&id),
            "{protocol}: line {line} lost"
        );
        if count > 1 {
            duplicates += 1;
            assert!(
                at_kill.contains(&id),
                "{protocol}: line {line} twice, not sent before the kill"
            );
        }
    }
    let stats = receiver.stats();
    assert!(
        stats.unavailable > 0 && stats.exhausted > 0 && stats.partial > 0,
        "{stats:?}"
    );
    assert!(stats.resets > 0 && stats.invalid > 0, "{stats:?}");
    eprintln!(
        "{protocol}, {n} lines: killed with {} stored; after the restart {} stored, {duplicates} twice (sent before the kill, not yet checkpointed), {} dropped by partial successes, {} dead-lettered; {stats:?}",
        at_kill.len(),
        ids.len(),
        rejected.len(),
        letters.len()
    );
}

#[test]
fn over_grpc_every_record_arrives_through_faults_and_a_kill() {
    through_faults_and_a_kill("grpc", large_lines());
}

#[test]
fn over_http_every_record_arrives_through_faults_and_a_kill() {
    through_faults_and_a_kill("http/protobuf", large_lines() / 2);
}
