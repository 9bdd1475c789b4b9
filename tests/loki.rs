//! `flowlog run` and `check` into Loki (the test receiver): 100,000 records of the bench
//! generator's corpus with the default labels make a few streams, counted; a `kill -9`
//! midway and a restart lose nothing (Loki drops the entries sent again as duplicates);
//! the credentials never appear in what the process prints, at any log level.

mod common;

use std::process::Command;

use common::runs::{
    checkpoint, dead_letters, finish, flowlog, run_to_end, wait_for_a_checkpoint, write_config,
};
use common::tempdir;
use flowlog_test_receivers::loki::{LokiOptions, LokiReceiver};

const PASSWORD: &str = "glc_s3cr3t-loki-password";

#[test]
fn a_hundred_thousand_records_make_a_few_streams_and_a_kill_9_loses_nothing() {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("flowlog:{PASSWORD}"));
    let receiver = LokiReceiver::start(LokiOptions {
        tenant: Some("network".into()),
        authorization: Some(format!("Basic {basic}")),
        failure_rate: 0.05,
        ..LokiOptions::default()
    });
    let dir = tempdir();
    let input = dir.join("flows.log");
    let n = 100_000;
    let corpus = Command::new("python3")
        .arg(common::manifest_dir().join("../shared/bench/gen_flowlogs.py"))
        .args([&n.to_string(), "--format", "v5"])
        .output()
        .unwrap();
    assert!(corpus.status.success());
    std::fs::write(&input, &corpus.stdout).unwrap();
    let source = format!("type = \"file\"\npaths = [\"{}\"]", input.display());
    let sink = format!(
        r#"[sinks.loki]
type = "loki"
endpoint = "{}"
tenant_id = "network"
auth = {{ user = "flowlog", password = "${{FLOWLOG_TEST_LOKI_PASSWORD}}" }}
max_bytes = 20000
concurrency = 1
max_in_flight = 2
batch_timeout_secs = 0.05
retry_initial_backoff_secs = 0.01
retry_max_backoff_secs = 0.2
"#,
        receiver.url()
    );
    let config = write_config(&dir, &source, &sink);
    let data = dir.join("data");
    let command = |args: &[&str]| {
        let mut command = flowlog(args, &config);
        command
            .env("FLOWLOG_TEST_LOKI_PASSWORD", PASSWORD)
            .env("RUST_LOG", "debug");
        command
    };
    let start = || command(&["run"]);
    let (ok, printed) = run_to_end(command(&["check"]));
    assert!(ok && printed.contains("empty push accepted"), "{printed}");
    let mut child = start().spawn().unwrap();
    wait_for_a_checkpoint(&data, &input);
    child.kill().unwrap(); // SIGKILL: no drain, no last checkpoint
    child.wait().unwrap();
    let logged = std::fs::read_to_string(common::runs::stderr_file(&config)).unwrap();
    let (at_kill, done) = checkpoint(&data, &input).unwrap();
    assert!(
        !done && at_kill < n as u64,
        "killed too late to test anything"
    );

    let (ok, stderr) = finish(start().spawn().unwrap(), &config);
    assert!(ok, "{stderr}");
    for text in [&printed, &logged, &stderr] {
        assert!(
            !text.contains(PASSWORD) && !text.contains(&basic),
            "a credential was printed"
        );
    }
    let lines = receiver.lines();
    let want: Vec<&str> = std::str::from_utf8(&corpus.stdout)
        .unwrap()
        .lines()
        .skip(1) // the v5 header
        .collect();
    assert_eq!(want.len(), n);
    // Each record once: records identical to another are entries of their own, and those
    // sent again after the kill land on their first copies (same time), which Loki drops.
    let mut copies: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    for line in &want {
        *copies.entry(line).or_default() += 1;
    }
    for (line, count) in &copies {
        assert_eq!(lines.get(*line), Some(count), "{line}");
    }
    let streams = receiver.streams();
    let stats = receiver.stats();
    eprintln!(
        "{n} records in {} streams; checkpointed {at_kill} at the kill; {stats:?}",
        streams.len()
    );
    assert!(streams.len() <= 36, "{} streams", streams.len());
    assert!(stats.failed_429 + stats.failed_503 + stats.dropped_connections > 0);
    assert_eq!(stats.unordered_streams, 0);
    assert!(dead_letters(&dir).is_empty());
}
