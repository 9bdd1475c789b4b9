//! `flowlog run` into the Elasticsearch test receiver: 1M lines through item and
//! request faults with a `kill -9` and a restart midway; every record is stored exactly
//! once (ids make this exact), poison documents are dead-lettered with the reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{expected_ids, large_lines, tempdir};
use flowlog_test_receivers::elasticsearch::{EsOptions, EsReceiver};

const STREAM: &str = "logs-aws.vpcflow-default";

struct Setup {
    dir: PathBuf,
    config: PathBuf,
    input: PathBuf,
}

fn setup(receiver: &EsReceiver, lines: usize, sink_extra: &str) -> Setup {
    let dir = tempdir();
    let input = dir.join("flows.log");
    std::fs::write(&input, flowlog_test_receivers::corpus::v2_lines(0, lines)).unwrap();
    let config = dir.join("flowlog.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{data}"
shutdown_timeout_secs = 10

[sources.vpc]
type = "file"
paths = ["{input}"]

[sinks.elastic]
type = "elasticsearch"
endpoints = ["{url}"]
auth = {{ api_key = "${{FLOWLOG_TEST_ES_KEY}}" }}
batch_timeout_secs = 0.05
request_timeout_secs = 5
retry_initial_backoff_secs = 0.01
retry_max_backoff_secs = 0.2
{sink_extra}
"#,
            data = dir.join("data").display(),
            input = input.display(),
            url = receiver.url(),
        ),
    )
    .unwrap();
    Setup { dir, config, input }
}

fn flowlog(args: &[&str], config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowlog"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("FLOWLOG_TEST_ES_KEY", "test-id:test-key")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        // A file, not a pipe: nobody reads a pipe while the run goes on, and a full one
        // would block the process on its next log line.
        .stderr(std::fs::File::create(stderr_file(config)).unwrap());
    command
}

fn stderr_file(config: &Path) -> PathBuf {
    config.with_extension("stderr")
}

fn finish(mut child: Child, config: &Path) -> (bool, String) {
    let status = child.wait().unwrap();
    (
        status.success(),
        std::fs::read_to_string(stderr_file(config)).unwrap_or_default(),
    )
}

fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("data/dead-letter.ndjson"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_million_lines_through_faults_and_a_kill_are_stored_exactly_once() {
    let receiver = EsReceiver::start(EsOptions {
        item_reject_rate: 0.2,
        failure_rate: 0.05,
        // Every 200th record goes to this address: the cluster refuses those for good.
        poison: Some("\"198.51.100.77\"".into()),
        keep_documents: false,
        seed: 7,
        ..EsOptions::default()
    });
    let n = large_lines();
    let setup = setup(&receiver, n, "max_bytes = 500000");
    let mut child = flowlog(&["run"], &setup.config).spawn().unwrap();
    // Waits for a third of the records, failing if none arrives for a minute.
    let (mut last, mut since) = (0, Instant::now());
    while receiver.count(STREAM) < n / 3 {
        let count = receiver.count(STREAM);
        if count != last {
            (last, since) = (count, Instant::now());
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "no record arrived for a minute, {count} stored: {:?}",
            receiver.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no drain, no final checkpoint
    child.wait().unwrap();
    let at_kill = receiver.count(STREAM);
    assert!(at_kill < n, "killed too late to test anything");

    let (ok, stderr) = finish(
        flowlog(&["run"], &setup.config).spawn().unwrap(),
        &setup.config,
    );
    assert!(ok, "{stderr}");

    let stored = receiver.ids(STREAM);
    let letters = dead_letters(&setup.dir);
    let refused: std::collections::HashSet<u64> = letters
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    for letter in &letters {
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains("400 document_parsing_exception"),
            "{reason}"
        );
        assert!(letter["raw"].as_str().unwrap().contains("198.51.100.77"));
    }
    assert!(!refused.is_empty(), "the poison address is in the corpus");
    for (line, id) in (1..).zip(expected_ids(&setup.input, 1..=n as u64)) {
        assert_eq!(
            stored.contains(&id),
            !refused.contains(&line),
            "line {line}: stored {} , dead-lettered {}",
            stored.contains(&id),
            refused.contains(&line)
        );
    }
    assert_eq!(stored.len() + refused.len(), n);
    // Exactly once: nothing was ever written over (a second `create` is refused).
    assert_eq!(receiver.max_writes(), 1);
    let stats = receiver.stats();
    assert!(
        stats.conflicts > 0,
        "the restart sent records again: {stats:?}"
    );
    assert!(stats.rejected_items > n as u64 / 10, "{stats:?}");
    eprintln!(
        "{n} lines: killed with {at_kill} stored; {} bulk requests, {} failed whole, {} dropped, {} items rejected (429), {} conflicts (409, counted delivered), {} dead-lettered",
        stats.bulk_requests, stats.failed_requests, stats.dropped_connections, stats.rejected_items, stats.conflicts, refused.len()
    );
}

/// Runs `flowlog check`: whether it passed, and what it printed (stdout, then stderr).
fn check(config: &Path) -> (bool, String) {
    let output = flowlog(&["check"], config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

#[test]
fn check_says_what_it_found_and_fails_on_a_read_only_user() {
    let receiver = EsReceiver::start(EsOptions::default());
    let setup = setup(&receiver, 10, "");
    let (ok, printed) = check(&setup.config);
    assert!(ok, "{printed}");
    assert!(printed.contains("Elasticsearch 8.15.0"), "{printed}");
    assert!(printed.contains("may create documents"), "{printed}");

    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "auth = { api_key = \"${FLOWLOG_TEST_ES_KEY}\" }",
        "auth = { user = \"viewer\", password = \"viewer-password\" }",
    );
    std::fs::write(&setup.config, text).unwrap();
    let (ok, printed) = check(&setup.config);
    assert!(!ok, "{printed}");
    assert!(printed.contains("may not create documents"), "{printed}");
    assert!(!printed.contains("viewer-password"), "{printed}");
}

/// The receiver as Elastic's own Python client sees it (`scripts/es_client_check.py`;
/// `scripts/test.sh` installs the client in its venv).
#[test]
fn elastics_python_client_talks_to_the_receiver() {
    let receiver = EsReceiver::start(EsOptions::default());
    let output = Command::new(common::python())
        .arg(common::manifest_dir().join("scripts/es_client_check.py"))
        .arg(receiver.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("wrong key: 401"), "{stdout}");
    assert_eq!(receiver.ids("client-check").len(), 1);
    assert_eq!(receiver.ids(STREAM_OF_CLIENT).len(), 1);
}

const STREAM_OF_CLIENT: &str = "logs-aws.vpcflow-client";
