//! `flowlog run` and `flowlog check` end to end: the real binary against the HEC test
//! receiver (tests/receivers), with its scripted faults.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tempdir;
use flowlog_test_receivers::hec::{HecOptions, HecReceiver};

/// How many lines the fault run uses: 1M (the acceptance size; about 40 s in a debug
/// build), or `FLOWLOG_E2E_LINES`.
fn large_lines() -> usize {
    std::env::var("FLOWLOG_E2E_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Appends records `from..from + n` to `path`.
fn write_lines(path: &Path, from: usize, n: usize) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(flowlog_test_receivers::corpus::v2_lines(from, n).as_bytes())
        .unwrap();
}

struct Setup {
    dir: PathBuf,
    config: PathBuf,
}

/// A file of `lines` records read by a file source (`source_extra` adds settings to it)
/// and delivered by a HEC sink (`sink_extra` adds settings); returns the file too.
fn file_setup(
    receiver: &HecReceiver,
    lines: usize,
    source_extra: &str,
    sink_extra: &str,
) -> (Setup, PathBuf) {
    let input = tempdir().join("flows.log");
    write_lines(&input, 0, lines);
    let source = format!(
        "type = \"file\"\npaths = [\"{}\"]\n{source_extra}",
        input.display()
    );
    (setup(receiver, &source, sink_extra), input)
}

/// A config with one file source and one HEC sink; `extra_sink` adds sink settings.
fn setup(receiver: &HecReceiver, source: &str, extra_sink: &str) -> Setup {
    let dir = tempdir();
    let config = dir.join("flowlog.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{data}"
shutdown_timeout_secs = 10

[api]

[sources.vpc]
{source}

[sinks.splunk]
type = "splunk_hec"
endpoint = "{url}"
token = "${{FLOWLOG_TEST_HEC_TOKEN}}"
batch_timeout_secs = 0.05
retry_initial_backoff_secs = 0.01
retry_max_backoff_secs = 0.2
ack_poll_interval_secs = 0.02
ack_timeout_secs = 1.0
{extra_sink}
"#,
            data = dir.join("data").display(),
            url = receiver.url(),
        ),
    )
    .unwrap();
    Setup { dir, config }
}

fn flowlog(args: &[&str], config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowlog"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("FLOWLOG_TEST_HEC_TOKEN", "test-token")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn expected_ids(source: &Path, lines: std::ops::RangeInclusive<u64>) -> Vec<String> {
    let source = flowlog_model::SourceId::new(source.to_string_lossy().into_owned());
    lines.map(|l| flowlog_sink::event_id(&source, l)).collect()
}

fn checkpoint_line(data: &Path, file: &Path) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(data.join("checkpoints.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let cp = &json["files"][file.to_string_lossy().as_ref()];
    Some((cp["line"].as_u64()?, cp["done"].as_bool().unwrap_or(false)))
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(child: Child) -> (bool, String) {
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_event_arrives_through_random_faults_and_lost_acks() {
    let receiver = HecReceiver::start(HecOptions {
        acks: true,
        failure_rate: 0.3,
        lose_ack_rate: 0.1,
        keep_events: false,
        seed: 11,
        ..HecOptions::default()
    });
    let n = large_lines();
    let (setup, input) = file_setup(
        &receiver,
        n,
        "",
        "indexer_acknowledgement = true\nmax_bytes = 200000",
    );

    let (ok, stderr) = finish(flowlog(&["run"], &setup.config).spawn().unwrap());
    assert!(ok, "{stderr}");

    let ids = receiver.ids();
    let lost = receiver.lost_ack_events();
    let stats = receiver.stats();
    let mut duplicates = 0u64;
    for id in expected_ids(&input, 1..=n as u64) {
        let count = *ids.get(&id).unwrap_or(&0);
        assert!(count >= 1, "{id} never arrived");
        if count > 1 {
            assert!(
                lost.contains(&id),
                "{id} arrived {count} times but its ack was not lost"
            );
            duplicates += u64::from(count - 1);
        }
    }
    assert_eq!(ids.len(), n);
    assert!(stats.failed_503 > 0 && stats.failed_429 > 0 && stats.dropped_connections > 0);
    eprintln!(
        "{n} lines: {} requests, {} 503, {} 429, {} dropped, {} acks lost, {duplicates} duplicate events (all from requests whose ack was lost)",
        stats.requests, stats.failed_503, stats.failed_429, stats.dropped_connections, stats.acks_lost
    );
    assert_eq!(
        checkpoint_line(&setup.dir.join("data"), &input),
        Some((n as u64, true))
    );
}

#[test]
fn kill_9_then_restart_resends_at_most_the_unacknowledged() {
    let receiver = HecReceiver::start(HecOptions {
        acks: true,
        keep_events: false,
        ..HecOptions::default()
    });
    let n = 100_000;
    // Small requests, one at a time: the run takes long enough to be killed midway.
    let (setup, input) = file_setup(
        &receiver,
        n,
        "",
        "indexer_acknowledgement = true\nmax_bytes = 20000\nconcurrency = 1\nmax_in_flight = 2",
    );
    let data = setup.dir.join("data");
    let mut child = flowlog(&["run"], &setup.config).spawn().unwrap();
    wait_for("a checkpoint", Duration::from_secs(120), || {
        checkpoint_line(&data, &input).is_some_and(|(line, _)| line > 0)
    });
    child.kill().unwrap(); // SIGKILL: no drain, no final checkpoint
    child.wait().unwrap();
    let (at_kill, done) = checkpoint_line(&data, &input).unwrap();
    assert!(
        !done && at_kill < n as u64,
        "killed too late to test anything"
    );
    let before = receiver.ids();

    let (ok, stderr) = finish(flowlog(&["run"], &setup.config).spawn().unwrap());
    assert!(ok, "{stderr}");
    let ids = receiver.ids();
    let all = expected_ids(&input, 1..=n as u64);
    let mut resent = 0;
    for (i, id) in all.iter().enumerate() {
        let line = i as u64 + 1;
        let count = *ids.get(id).unwrap_or(&0);
        assert!(count >= 1, "line {line} was lost");
        if count > 1 {
            // Only what the checkpoint did not cover is sent again.
            assert!(
                line > at_kill,
                "line {line} was checkpointed (through {at_kill}) yet sent again"
            );
            resent += 1;
        }
    }
    assert!(before.len() as u64 >= at_kill);
    eprintln!(
        "killed with {} of {n} indexed and {at_kill} checkpointed; {resent} sent again after the restart",
        before.len()
    );
    assert!(resent as u64 <= n as u64 - at_kill);
}

#[test]
fn over_size_and_poison_events_and_the_stream_goes_on() {
    let receiver = HecReceiver::start(HecOptions {
        max_body: 3000,
        poison: Some("198.51.100.77 ".into()),
        ..HecOptions::default()
    });
    let (setup, input) = file_setup(
        &receiver,
        2000,
        "",
        "compression = \"none\"\nmax_bytes = 50000",
    );
    let (ok, stderr) = finish(flowlog(&["run"], &setup.config).spawn().unwrap());
    assert!(ok, "{stderr}");
    assert!(receiver.stats().too_large > 0);
    let ids = receiver.ids();
    assert_eq!(ids.len(), 2000 - 10);
    assert!(ids.values().all(|&c| c == 1));
    let letters: Vec<serde_json::Value> =
        std::fs::read_to_string(setup.dir.join("data/dead-letter.ndjson"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(letters.len(), 10);
    for letter in &letters {
        assert_eq!(letter["line"].as_u64().unwrap() % 200, 78);
        assert_eq!(letter["source"], input.to_string_lossy().as_ref());
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains("sink splunk: HEC 400 (code 6): Invalid data format"),
            "{reason}"
        );
        assert!(letter["raw"].as_str().unwrap().contains("198.51.100.77 "));
    }
}

#[test]
fn a_refused_token_stops_the_run_and_check_says_why() {
    let receiver = HecReceiver::start(HecOptions {
        token: "another".into(),
        ..HecOptions::default()
    });
    let (setup, input) = file_setup(&receiver, 100, "", "");
    let output = flowlog(&["check"], &setup.config).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(stdout.contains("FAIL sink splunk (splunk_hec)"), "{stdout}");
    assert!(stdout.contains("403"), "{stdout}");
    assert!(!stdout.contains("test-token"), "the token leaked: {stdout}");

    let (ok, stderr) = finish(flowlog(&["run"], &setup.config).spawn().unwrap());
    assert!(!ok);
    assert!(stderr.contains("403"), "{stderr}");
    assert!(!stderr.contains("test-token"), "the token leaked: {stderr}");
    let (line, done) = checkpoint_line(&setup.dir.join("data"), &input).unwrap_or((0, false));
    assert_eq!(
        (line, done),
        (0, false),
        "nothing was delivered, nothing may be checkpointed"
    );
}

#[test]
fn check_reports_each_part() {
    let receiver = HecReceiver::start(HecOptions::default());
    let (setup, _) = file_setup(&receiver, 10, "", "");
    let output = flowlog(&["check"], &setup.config).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("ok   source vpc (file)"), "{stdout}");
    assert!(stdout.contains("ok   sink splunk (splunk_hec)"), "{stdout}");
    assert!(stdout.contains("token accepted"), "{stdout}");

    std::fs::write(
        &setup.config,
        std::fs::read_to_string(&setup.config).unwrap() + "\nbogus = 1\n",
    )
    .unwrap();
    let output = flowlog(&["check"], &setup.config).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("flowlog.toml:"), "{stderr}");
    assert!(stderr.contains("bogus"), "{stderr}");
}

#[test]
fn followed_files_deliver_appended_lines_and_sigterm_drains() {
    let receiver = HecReceiver::start(HecOptions {
        acks: true,
        ..HecOptions::default()
    });
    let (setup, input) = file_setup(
        &receiver,
        1000,
        "follow = true\npoll_secs = 0.05",
        "indexer_acknowledgement = true",
    );
    let child = flowlog(&["run"], &setup.config).spawn().unwrap();
    wait_for("the first lines", Duration::from_secs(60), || {
        receiver.ids().len() == 1000
    });
    write_lines(&input, 1000, 500);
    wait_for("the appended lines", Duration::from_secs(60), || {
        receiver.ids().len() == 1500
    });
    // SIGTERM: drain, save the checkpoint, exit 0.
    let status = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let (ok, stderr) = finish(child);
    assert!(ok, "{stderr}");
    assert_eq!(
        checkpoint_line(&setup.dir.join("data"), &input),
        Some((1500, false))
    );
    let ids: HashMap<String, u32> = receiver.ids();
    assert!(ids.values().all(|&c| c == 1));
}

#[test]
fn a_directory_is_read_once_per_object_and_removed_objects_leave_the_checkpoints() {
    let receiver = HecReceiver::start(HecOptions::default());
    let incoming = tempdir().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let (first, second) = (incoming.join("a.log"), incoming.join("b.log"));
    write_lines(&first, 0, 300);
    write_lines(&second, 300, 200);
    let source = format!(
        "type = \"directory\"\npath = \"{}\"\npoll_secs = 0.05",
        incoming.display()
    );
    let setup = setup(&receiver, &source, "");
    let data = setup.dir.join("data");
    let child = flowlog(&["run"], &setup.config).spawn().unwrap();
    wait_for("both objects delivered", Duration::from_secs(60), || {
        checkpoint_line(&data, &first) == Some((300, true))
            && checkpoint_line(&data, &second) == Some((200, true))
    });
    // A cleaned-up object's checkpoint goes at the next scan; the other one stays, so it
    // is not read again.
    std::fs::remove_file(&first).unwrap();
    wait_for(
        "the removed object forgotten",
        Duration::from_secs(60),
        || checkpoint_line(&data, &first).is_none(),
    );
    assert_eq!(checkpoint_line(&data, &second), Some((200, true)));
    write_lines(&incoming.join("c.log"), 500, 100);
    wait_for("a new object delivered", Duration::from_secs(60), || {
        receiver.ids().len() == 600
    });
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let (ok, stderr) = finish(child);
    assert!(ok, "{stderr}");
    let ids = receiver.ids();
    assert_eq!(ids.len(), 600);
    assert!(ids.values().all(|&c| c == 1), "an object was read twice");
}

#[test]
fn sinks_go_through_the_environment_proxy_unless_no_proxy_names_the_host() {
    let receiver = HecReceiver::start(HecOptions::default());
    let proxy = flowlog_test_receivers::proxy::Proxy::start();
    let host = receiver.url().trim_start_matches("http://").to_string();
    let run = |no_proxy: &str, sink_extra: &str| {
        let (setup, input) = file_setup(&receiver, 500, "", sink_extra);
        let mut command = flowlog(&["run"], &setup.config);
        for var in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
        ] {
            command.env_remove(var);
        }
        command
            .env("HTTP_PROXY", proxy.url())
            .env("NO_PROXY", no_proxy)
            .env("no_proxy", no_proxy);
        let (ok, stderr) = finish(command.spawn().unwrap());
        assert!(ok, "{stderr}");
        input
    };

    let through = run("", "");
    let seen = proxy.seen();
    assert!(!seen.is_empty(), "the proxy saw no request");
    for request in &seen {
        assert!(
            request.starts_with("POST http://") && request.contains(&host),
            "{request}"
        );
    }
    let ids = receiver.ids();
    for id in expected_ids(&through, 1..=500) {
        assert_eq!(ids.get(&id), Some(&1), "{id}");
    }

    let direct = run("127.0.0.1", "");
    assert_eq!(proxy.seen(), seen, "NO_PROXY should bypass the proxy");
    let ids = receiver.ids();
    for id in expected_ids(&direct, 1..=500) {
        assert_eq!(ids.get(&id), Some(&1), "{id}");
    }

    // The sink's own setting wins over the environment's NO_PROXY.
    let configured = run(
        "127.0.0.1",
        &format!("proxy = {{ http = \"{}\" }}", proxy.url()),
    );
    assert!(
        proxy.seen().len() > seen.len(),
        "the configured proxy was not used"
    );
    let ids = receiver.ids();
    for id in expected_ids(&configured, 1..=500) {
        assert_eq!(ids.get(&id), Some(&1), "{id}");
    }
}

#[test]
fn a_file_sink_beside_hec_gets_every_record_and_check_reaches_both() {
    let receiver = HecReceiver::start(HecOptions::default());
    let archive = tempdir().join("archive/flows.ndjson");
    let file_sink = format!(
        "\n[sinks.archive]\ntype = \"file\"\npath = \"{}\"\nformat = \"ocsf\"\n",
        archive.display()
    );
    let (setup, input) = file_setup(&receiver, 2000, "", &file_sink);

    let check = flowlog(&["check"], &setup.config).output().unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{report}");
    assert!(report.contains("sink archive (file)"), "{report}");
    assert!(report.contains("sink splunk (splunk_hec)"), "{report}");

    let (ok, stderr) = finish(flowlog(&["run"], &setup.config).spawn().unwrap());
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&archive).unwrap();
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 2000);
    assert!(docs.iter().all(|d| d["class_uid"] == 4001));
    assert_eq!(receiver.ids().len(), 2000);
    // The checkpoint passed every line only once both sinks had them.
    assert_eq!(
        checkpoint_line(&setup.dir.join("data"), &input),
        Some((2000, true))
    );
}

#[test]
fn https_through_a_connect_proxy_verified_against_a_private_ca_over_http2() {
    let receiver = HecReceiver::start(HecOptions {
        tls: true,
        ..HecOptions::default()
    });
    let proxy = flowlog_test_receivers::proxy::Proxy::start();
    let ca = tempdir().join("ca.pem");
    std::fs::write(&ca, receiver.ca_pem().unwrap()).unwrap();
    let with_proxy = |command: &mut Command| {
        for var in [
            "HTTP_PROXY",
            "http_proxy",
            "https_proxy",
            "ALL_PROXY",
            "no_proxy",
        ] {
            command.env_remove(var);
        }
        command.env("HTTPS_PROXY", proxy.url()).env("NO_PROXY", "");
    };

    // The system roots do not know the test CA: check says so and sends nothing.
    let (untrusted, _) = file_setup(&receiver, 10, "", "");
    let mut command = flowlog(&["check"], &untrusted.config);
    with_proxy(&mut command);
    let report = command.output().unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(!report.status.success(), "{text}");
    assert!(text.contains("FAIL sink splunk"), "{text}");
    assert!(receiver.ids().is_empty());

    let trust = format!(
        "\n[sinks.splunk.tls]\nca_file = \"{}\"\nsystem_roots = false\n",
        ca.display()
    );
    let (setup, input) = file_setup(&receiver, 500, "", &trust);
    let mut command = flowlog(&["run"], &setup.config);
    with_proxy(&mut command);
    let (ok, stderr) = finish(command.spawn().unwrap());
    assert!(ok, "{stderr}");
    let ids = receiver.ids();
    for id in expected_ids(&input, 1..=500) {
        assert_eq!(ids.get(&id), Some(&1), "{id}");
    }
    let host = receiver.url().trim_start_matches("https://").to_string();
    let seen = proxy.seen();
    assert!(
        seen.iter().any(|r| *r == format!("CONNECT {host}")),
        "{seen:?}"
    );
    assert!(seen.iter().all(|r| r.starts_with("CONNECT ")), "{seen:?}");
    let stats = receiver.stats();
    assert_eq!(
        stats.http2_requests, stats.requests,
        "ALPN should have chosen HTTP/2"
    );
}

#[test]
fn one_run_per_data_dir_and_a_second_signal_ends_the_drain_at_once() {
    let receiver = HecReceiver::start(HecOptions::default());
    let (setup, input) = file_setup(&receiver, 1000, "follow = true\npoll_secs = 0.05", "");
    // A drain deadline far past the test's own: only the second signal can end it.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace("shutdown_timeout_secs = 10", "shutdown_timeout_secs = 3600"),
    )
    .unwrap();
    let mut first = flowlog(&["run"], &setup.config).spawn().unwrap();
    wait_for("the first lines", Duration::from_secs(60), || {
        receiver.ids().len() == 1000
    });

    let second = flowlog(&["run"], &setup.config).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(stderr.contains("held by another flowlog run"), "{stderr}");

    // The collector goes down with lines in flight: the drain cannot finish.
    receiver.set_down(true);
    write_lines(&input, 1000, 200);
    wait_for("requests refused", Duration::from_secs(60), || {
        receiver.stats().failed_503 > 0
    });
    let pid = first.id().to_string();
    let signal = |name: &str| Command::new("kill").args([name, &pid]).status().unwrap();
    assert!(signal("-TERM").success());
    // The first signal starts the drain; a later one (sent until the process is gone,
    // since one that arrives before the drain starts is the same first signal) ends it.
    wait_for("the run to end", Duration::from_secs(60), || {
        if first.try_wait().unwrap().is_some() {
            return true;
        }
        signal("-INT");
        std::thread::sleep(Duration::from_millis(200));
        false
    });
    let (_, stderr) = finish(first);
    assert!(stderr.contains("second signal"), "{stderr}");
    // Nothing unacknowledged was checkpointed.
    assert_eq!(
        checkpoint_line(&setup.dir.join("data"), &input),
        Some((1000, false))
    );
}
