//! `flowlog run` and `check` with detection findings into AWS Security Hub, against the
//! test hub of flowlog-test-receivers (moto's Security Hub, in `tests/iam.rs`, makes no
//! faults): every finding imported once through throttling, server errors, dropped
//! connections and a call never answered; a finding the hub refuses dead-lettered with its
//! reason, and a call it refuses as a whole halved down to the finding at fault; a `kill -9` while a call is unanswered and a restart, with nothing lost and
//! findings updated rather than duplicated; `check` honest about refusals, a hub not
//! enabled and an endpoint that does not answer; the credentials never printed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::runs::{dead_letters, finish, flowlog, run_to_end, stderr_file, write_config};
use flowlog_test_receivers::security_hub::{
    HubOptions, HubPeer, ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN,
};
use serde_json::Value;

/// Scanners in the input, each one finding.
const SCANNERS: usize = 250;

/// The scanners' sources, in order.
fn scanner(i: usize) -> String {
    format!("10.1.{}.{}", i / 200, i % 200 + 1)
}

/// A data dir, the input (each scanner tries 25 ports of one host, refused) and a
/// configuration: records to a file, findings (a vertical scan of 20 ports) to the hub at
/// `url` with `extra` settings.
fn setup(url: &str, extra: &str) -> (PathBuf, PathBuf) {
    let dir = common::tempdir();
    let input = dir.join("flows.log");
    let mut lines = String::new();
    for i in 0..SCANNERS {
        for port in 1..=25 {
            let start = 1_763_800_000 + i as i64;
            lines.push_str(&format!(
                "2 123456789012 eni-0a{i:03} {} 10.0.3.9 40000 {port} 6 1 44 {start} {} REJECT OK\n",
                scanner(i),
                start + 30
            ));
        }
    }
    std::fs::write(&input, lines).unwrap();
    let sinks = format!(
        "[detect]\nfindings = [\"hub\"]\n\
         [detect.vertical_scan]\nmin_ports = 20\nmin_privileged_ports = 0\n\
         [detect.admin_ports]\nenabled = false\n[detect.outbound_dns]\nenabled = false\n\
         [sinks.flows]\ntype = \"file\"\npath = \"{}\"\n\
         [sinks.hub]\ntype = \"security_hub\"\nendpoint_url = \"{url}\"\nregion = \"us-east-1\"\n\
         batch_timeout_secs = 0.2\nretry_initial_backoff_secs = 0.01\nretry_max_backoff_secs = 0.2\n\
         {extra}\n",
        dir.join("flows.ndjson").display(),
    );
    let source = format!("type = \"file\"\npaths = [\"{}\"]", input.display());
    let config = write_config(&dir, &source, &sinks);
    (dir, config)
}

/// `flowlog ARGS` with the hub's temporary credentials and nothing else of AWS's, logging
/// at `level`.
fn with_keys(mut command: Command, dir: &Path, level: &str) -> Command {
    for name in [
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
    ] {
        command.env_remove(name);
    }
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", level);
    command
}

fn assert_no_secret(printed: &str) {
    for secret in [SECRET_ACCESS_KEY, SESSION_TOKEN] {
        assert!(
            !printed.contains(secret),
            "a credential was printed:\n{printed}"
        );
    }
}

/// The scanners whose findings the hub holds, each checked as a vertical scan's.
fn scanners_held(hub: &HubPeer) -> BTreeSet<String> {
    hub.findings()
        .values()
        .map(|held| {
            let f = &held.finding;
            assert_eq!(f["GeneratorId"], "flowlog/vertical_scan", "{f:#}");
            assert_eq!(f["Network"]["DestinationIpV4"], "10.0.3.9", "{f:#}");
            f["Network"]["SourceIpV4"].as_str().unwrap().to_string()
        })
        .collect()
}

fn all_scanners() -> BTreeSet<String> {
    (0..SCANNERS).map(scanner).collect()
}

/// The findings the detection state still holds as not yet delivered.
fn pending(dir: &Path) -> Vec<Value> {
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("data/detect.json")).unwrap()).unwrap();
    state["pending"].as_array().unwrap().clone()
}

#[test]
fn every_finding_is_imported_once_through_faults_and_a_refused_one_is_dead_lettered() {
    let (poisoned, unreadable) = (scanner(7), scanner(42));
    let hub = HubPeer::start(HubOptions {
        failure_rate: 0.4,
        seed: 3,
        hang_requests: 1,
        poison: Some(format!("\"{poisoned}\"")),
        refuse_call_with: Some(format!("\"{unreadable}\"")),
        ..HubOptions::default()
    });
    // No account in the settings: the caller's, from STS.
    let (dir, config) = setup(&hub.url(), "request_timeout_secs = 1\nmax_findings = 10");
    let child = with_keys(flowlog(&["run", "--once"], &config), &dir, "debug")
        .spawn()
        .unwrap();
    let (ok, stderr) = finish(child, &config);
    // A run that dead-lettered says so in its status.
    assert!(
        !ok && stderr.contains("record(s) were dead-lettered"),
        "{stderr}"
    );
    assert_no_secret(&stderr);

    let mut expected = all_scanners();
    expected.remove(&poisoned);
    expected.remove(&unreadable);
    assert_eq!(scanners_held(&hub), expected);
    // Faults came before anything was imported: nothing was imported twice.
    let findings = hub.findings();
    assert!(findings.values().all(|held| held.imports == 1));
    let stats = hub.stats();
    eprintln!("{stats:?}");
    assert!(
        stats.throttled > 0 && stats.internal_errors > 0 && stats.dropped_connections > 0,
        "{stats:?}"
    );
    assert_eq!(stats.hung, 1);
    assert_eq!(stats.bad_signatures, 0);
    assert!(stats.identity_calls >= 1, "{stats:?}");
    assert_eq!(stats.largest_call, 10);

    // The call holding the unreadable finding was halved down to it: one refused call
    // per halving (10, 5, 3 or 2, 1 or 2, 1).
    assert!((3..=5).contains(&stats.refused_calls), "{stats:?}");
    let letters = dead_letters(&dir);
    assert_eq!(letters.len(), 2, "{letters:#?}");
    let letter = |ip: &str| {
        letters
            .iter()
            .find(|l| l["raw"].as_str().unwrap_or_default().contains(ip))
            .unwrap_or_else(|| panic!("no dead letter holds {ip}: {letters:#?}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let reason = letter(&format!("\"{poisoned}\""));
    assert!(
        reason.contains("sink hub: Security Hub refused the finding: InvalidInput"),
        "{reason}"
    );
    let reason = letter(&format!("\"{unreadable}\""));
    assert!(
        reason.contains("InvalidInputException") && reason.contains("could not be read"),
        "{reason}"
    );
    // Every record went on to its own sink.
    let flows = std::fs::read_to_string(dir.join("flows.ndjson")).unwrap();
    assert_eq!(flows.lines().count(), SCANNERS * 25);
}

#[test]
fn kill_9_while_a_call_is_unanswered_then_restart_updates_and_loses_no_finding() {
    // The first call is answered, the second never: the process is killed while it waits.
    let hub = HubPeer::start(HubOptions {
        hang_from: 1,
        hang_requests: 1,
        ..HubOptions::default()
    });
    let (dir, config) = setup(
        &hub.url(),
        "aws_account_id = \"123456789012\"\nmax_findings = 100",
    );
    let mut child = with_keys(flowlog(&["run", "--once"], &config), &dir, "debug")
        .spawn()
        .unwrap();
    let began = std::time::Instant::now();
    while hub.stats().hung == 0 {
        assert!(
            began.elapsed() < std::time::Duration::from_secs(120),
            "no call reached the hub: {:?}\n{}",
            hub.stats(),
            std::fs::read_to_string(stderr_file(&config)).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no drain, no last checkpoint
    child.wait().unwrap();
    let logged = std::fs::read_to_string(stderr_file(&config)).unwrap();
    let before = scanners_held(&hub).len();
    assert!(
        before > 0 && before < SCANNERS,
        "{before} findings held at the kill"
    );

    let (ok, stderr) = finish(
        with_keys(flowlog(&["run", "--once"], &config), &dir, "debug")
            .spawn()
            .unwrap(),
        &config,
    );
    assert!(ok, "{stderr}");
    for printed in [&logged, &stderr] {
        assert_no_secret(printed);
    }
    // Every finding held once: those imported before the kill and sent again were updated.
    assert_eq!(scanners_held(&hub), all_scanners());
    let findings = hub.findings();
    assert_eq!(findings.len(), SCANNERS);
    let again = findings.values().filter(|h| h.imports > 1).count();
    assert!(
        again <= before,
        "{again} imported twice, {before} before the kill"
    );
    assert!(findings.values().all(|h| h.imports <= 2));
    assert!(dead_letters(&dir).is_empty());
    assert_eq!(pending(&dir), Vec::<Value>::new());
    eprintln!(
        "{before} imported before the kill, {again} of them again; {:?}",
        hub.stats()
    );
}

#[test]
fn check_and_run_say_what_stops_them_and_import_nothing() {
    let hub = HubPeer::start(HubOptions::default());
    let (dir, config) = setup(&hub.url(), "request_timeout_secs = 1");
    let (ok, printed) = run_to_end(with_keys(flowlog(&["check"], &config), &dir, "debug"));
    assert!(ok, "{printed}");
    assert!(
        printed.contains("product/123456789012/default; securityhub:BatchImportFindings: allowed"),
        "{printed}"
    );
    assert_no_secret(&printed);
    assert!(hub.findings().is_empty(), "check imported something");

    let refusing = |options: HubOptions, says: &str| {
        let hub = HubPeer::start(options);
        let (dir, config) = setup(&hub.url(), "request_timeout_secs = 1");
        let (ok, printed) = run_to_end(with_keys(flowlog(&["check"], &config), &dir, "warn"));
        assert!(!ok && printed.contains(says), "check: {printed}");
        assert!(!printed.contains(": allowed"), "{printed}");
        let (ok, stderr) = finish(
            with_keys(flowlog(&["run", "--once"], &config), &dir, "warn")
                .spawn()
                .unwrap(),
            &config,
        );
        assert!(!ok && stderr.contains(says), "run: {stderr}");
        assert!(hub.findings().is_empty());
        // What was not imported is kept to be sent by the next run.
        assert_eq!(pending(&dir).len(), SCANNERS, "{stderr}");
    };
    refusing(
        HubOptions {
            deny: true,
            ..HubOptions::default()
        },
        "refused: flowlog needs securityhub:BatchImportFindings",
    );
    refusing(
        HubOptions {
            not_enabled: true,
            ..HubOptions::default()
        },
        "enable Security Hub in",
    );

    // A hub that takes the call and never answers: check gives up and says so.
    let silent = HubPeer::start(HubOptions {
        hang_requests: u64::MAX,
        ..HubOptions::default()
    });
    let (dir, config) = setup(&silent.url(), "request_timeout_secs = 0.5");
    let (ok, printed) = run_to_end(with_keys(flowlog(&["check"], &config), &dir, "warn"));
    assert!(!ok && printed.contains("could not be reached"), "{printed}");
    assert!(!printed.contains(": allowed"), "{printed}");
}
