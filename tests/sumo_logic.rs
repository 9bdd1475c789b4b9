//! `flowlog run` and `check` into a Sumo Logic HTTP Logs source (the test receiver):
//! every line through throttling and dropped connections, a `kill -9` and a restart,
//! a message the source refuses dead-lettered, and the source's unique URL (a credential)
//! never in what the process prints, at any log level.

mod common;

use common::runs::{
    checkpoint, dead_letters, finish, flowlog, run_setup, run_to_end, wait_for_a_checkpoint,
};
use flowlog_test_receivers::sumo::{SumoOptions, SumoReceiver};

/// The part of the receiver's URL that is the credential.
const CODE: &str = "ZaVnC4dhaV0qF8bq5Ezs0UhmJRzDmWplmzEa-test-code";

/// A Sumo Logic sink section, the URL from `FLOWLOG_TEST_SUMO_URL` as a user would give it;
/// `extra` adds settings.
fn sumo_sink(extra: &str) -> String {
    format!(
        r#"[sinks.sumo]
type = "sumo_logic"
endpoint = "${{FLOWLOG_TEST_SUMO_URL}}"
category = "aws/vpc/{{{{ account-id }}}}"
batch_timeout_secs = 0.05
retry_initial_backoff_secs = 0.01
retry_max_backoff_secs = 0.2
{extra}
"#
    )
}

#[test]
fn kill_9_then_restart_loses_nothing_and_resends_only_the_unacknowledged() {
    let receiver = SumoReceiver::start(SumoOptions {
        failure_rate: 0.1,
        keep_messages: false,
        ..SumoOptions::default()
    });
    let n = 60_000;
    // Small requests, one at a time: the run takes long enough to be killed midway.
    let setup = run_setup(
        n,
        &sumo_sink("max_bytes = 8000\nconcurrency = 1\nmax_in_flight = 2"),
    );
    let data = setup.dir.join("data");
    let start = |level: &str| {
        let mut command = flowlog(&["run"], &setup.config);
        command
            .env("FLOWLOG_TEST_SUMO_URL", receiver.url())
            .env("RUST_LOG", level);
        command.spawn().unwrap()
    };
    let mut child = start("debug");
    wait_for_a_checkpoint(&data, &setup.input);
    child.kill().unwrap(); // SIGKILL: no drain, no last checkpoint
    child.wait().unwrap();
    let logged = std::fs::read_to_string(common::runs::stderr_file(&setup.config)).unwrap();
    let (at_kill, done) = checkpoint(&data, &setup.input).unwrap();
    assert!(
        !done && at_kill < n as u64,
        "killed too late to test anything"
    );

    let (ok, stderr) = finish(start("debug"), &setup.config);
    assert!(ok, "{stderr}");
    for printed in [&logged, &stderr] {
        assert!(
            !printed.contains(CODE),
            "the URL's code was printed:\n{printed}"
        );
    }
    let counts = receiver.counts();
    let lines = flowlog_test_receivers::corpus::v2_lines(0, n);
    let mut resent = 0;
    for (i, line) in lines.lines().enumerate() {
        let number = i as u64 + 1;
        let count = counts.get(line).copied().unwrap_or(0);
        assert!(count >= 1, "line {number} was lost");
        if count > 1 {
            assert!(
                number > at_kill,
                "line {number} was checkpointed (through {at_kill}) yet sent again"
            );
            resent += 1;
        }
    }
    let stats = receiver.stats();
    assert!(
        stats.failed_429 + stats.failed_503 + stats.dropped_connections > 0,
        "{stats:?}"
    );
    eprintln!("checkpointed {at_kill} of {n} at the kill; {resent} sent again; {stats:?}");
    assert!(dead_letters(&setup.dir).is_empty());
}

#[test]
fn a_refused_message_is_dead_lettered_and_a_refused_url_fails_check_and_run() {
    let receiver = SumoReceiver::start(SumoOptions {
        poison: Some("198.51.100.7 ".into()),
        keep_messages: false,
        ..SumoOptions::default()
    });
    let n = 2_000;
    let setup = run_setup(n, &sumo_sink(""));
    let with_url = |url: &str, args: &[&str]| {
        let mut command = flowlog(args, &setup.config);
        command
            .env("FLOWLOG_TEST_SUMO_URL", url)
            .env("RUST_LOG", "debug");
        command
    };
    let (ok, printed) = run_to_end(with_url(&receiver.url(), &["check"]));
    assert!(ok, "{printed}");
    assert!(
        printed.contains("URL accepted") && !printed.contains(CODE),
        "{printed}"
    );

    let (ok, stderr) = finish(
        with_url(&receiver.url(), &["run", "--once"])
            .spawn()
            .unwrap(),
        &setup.config,
    );
    // A run that dead-lettered records says so in its status.
    assert!(
        !ok && stderr.contains("record(s) were dead-lettered"),
        "{stderr}"
    );
    let letters = dead_letters(&setup.dir);
    let poisoned = (0..n)
        .filter(|&i| flowlog_test_receivers::corpus::v2_line(i).contains("198.51.100.7 "))
        .count();
    assert_eq!(letters.len(), poisoned);
    for letter in &letters {
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains("sink sumo: HTTP 400: message refused"),
            "{reason}"
        );
    }
    assert_eq!(receiver.counts().len() + poisoned, n);
    assert!(!stderr.contains(CODE), "{stderr}");

    let wrong = receiver.url().replace("-test-code", "-other-code");
    let (ok, printed) = run_to_end(with_url(&wrong, &["check"]));
    assert!(!ok && printed.contains("401"), "{printed}");
    assert!(!printed.contains("other-code"), "{printed}");
    let again = run_setup(10, &sumo_sink(""));
    let mut run = flowlog(&["run", "--once"], &again.config);
    run.env("FLOWLOG_TEST_SUMO_URL", &wrong)
        .env("RUST_LOG", "debug");
    let (ok, stderr) = finish(run.spawn().unwrap(), &again.config);
    assert!(!ok && stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("other-code"), "{stderr}");
}
