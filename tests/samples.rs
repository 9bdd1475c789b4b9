//! The sample sessions of docs/operations.md that need a receiver or a running flowlog,
//! run from the configuration the page shows (see `common::samples`): `check` against
//! each sink's test receiver, the summary a run logs, `/metrics` and `/health`.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::samples::{sample, Stage};
use flowlog_test_receivers::elasticsearch::{EsOptions, EsReceiver, Flavor};
use flowlog_test_receivers::hec::{HecOptions, HecReceiver};
use flowlog_test_receivers::otlp::{OtlpOptions, OtlpReceiver};
use flowlog_test_receivers::sigv4::SigV4Key;

const PAGE: &str = "docs/operations.md";

/// `host:port` of a receiver's URL.
fn address(url: &str) -> String {
    url.rsplit("//")
        .next()
        .unwrap()
        .trim_end_matches('/')
        .into()
}

/// An address nothing listens on yet, for the metrics endpoint.
fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// The page's input: 1,000 lines at `PLACE/flows.log`, an empty drop box beside it.
fn inputs(stage: &Stage) {
    std::fs::write(
        stage.path("flows.log"),
        flowlog_test_receivers::corpus::v2_lines(0, 1000),
    )
    .unwrap();
    std::fs::create_dir_all(stage.path("incoming")).unwrap();
}

/// The HEC sample's stage: its receiver, files and inputs.
fn hec_stage() -> (HecReceiver, Stage) {
    let receiver = HecReceiver::start(HecOptions::default());
    let stage = Stage::new()
        .replace("127.0.0.1:8088", &address(&receiver.url()))
        .replace("127.0.0.1:9598", &free_address())
        .env("SPLUNK_HEC_TOKEN", "test-token");
    stage.write(&sample(PAGE, "check-hec"));
    inputs(&stage);
    (receiver, stage)
}

/// A stage with the inputs written, where the page's receiver address is `url`'s.
fn staged_for(shown: &str, url: &str) -> Stage {
    let stage = Stage::new().replace(shown, &address(url));
    inputs(&stage);
    stage
}

#[test]
fn check_against_splunk_hec() {
    let (_receiver, stage) = hec_stage();
    stage.check(&sample(PAGE, "check-hec"));
}

#[test]
fn check_against_elasticsearch() {
    let receiver = EsReceiver::start(EsOptions::default());
    staged_for("127.0.0.1:9200", &receiver.url()).check(&sample(PAGE, "check-elasticsearch"));
}

#[test]
fn check_against_amazon_opensearch_with_sigv4() {
    let key = SigV4Key {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
        region: "us-east-1".into(),
        service: "es".into(),
    };
    let receiver = EsReceiver::start(EsOptions {
        flavor: Flavor::OpenSearch,
        sigv4: Some(key),
        ..EsOptions::default()
    });
    let mut stage = Stage::new().replace("127.0.0.1:9200", &address(&receiver.url()));
    // The keys the commands name, and nothing else of this machine's AWS set-up.
    for name in [
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
    ] {
        stage = stage.env_remove(name);
    }
    // Empty AWS files, so that the machine's own do not count (and none is missing).
    let empty = stage.path("empty-aws-file");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.display().to_string();
    let stage = stage
        .env("AWS_CONFIG_FILE", &empty)
        .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    inputs(&stage);
    stage.check(&sample(PAGE, "check-opensearch-sigv4"));
}

#[test]
fn check_against_an_otlp_receiver() {
    let receiver = OtlpReceiver::start(OtlpOptions::default());
    staged_for("127.0.0.1:4317", &receiver.url()).check(&sample(PAGE, "check-otlp"));
}

#[test]
fn a_finite_run_logs_its_summary() {
    let (receiver, stage) = hec_stage();
    stage.check(&sample(PAGE, "finished"));
    assert_eq!(receiver.ids().len(), 1000);
}

/// `flowlog run --config PLACE/FILE` in the background, as the samples describe it.
fn run_in_background(stage: &Stage, file: &str, unprivileged: bool) -> Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flowlog"));
    command
        .args(["run", "--config"])
        .arg(stage.path(file))
        .env("SPLUNK_HEC_TOKEN", "test-token")
        .env("RUST_LOG", "warn");
    if unprivileged {
        command = common::as_unprivileged(command);
    }
    command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stage.path("run.log")).unwrap())
        .spawn()
        .unwrap()
}

/// Stops `child` with SIGTERM; whether it ended well, and what it logged.
fn stop(child: Child, stage: &Stage) -> (bool, String) {
    // SAFETY: kill sends a signal to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        std::fs::read_to_string(stage.path("run.log")).unwrap_or_default(),
    )
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What `path` on the stage's metrics address answers, if anything.
fn get(stage: &Stage, path: &str) -> Option<String> {
    common::http_get(stage.actual("127.0.0.1:9598"), path)
}

#[test]
fn metrics_after_a_delivery() {
    let (receiver, stage) = hec_stage();
    let child = run_in_background(&stage, "flowlog.toml", false);
    wait_until("the records were not confirmed", || {
        get(&stage, "/metrics").is_some_and(|m| {
            m.contains(
                r#"flowlog_records_out_total{component_kind="sink",component="splunk"} 1000"#,
            )
        })
    });
    stage.check(&sample(PAGE, "metrics"));
    let (ok, log) = stop(child, &stage);
    assert!(ok, "{log}");
    assert_eq!(receiver.ids().len(), 1000);
}

#[test]
fn health_with_an_unreadable_drop_box() {
    let stage = Stage::new().replace("127.0.0.1:9598", &free_address());
    let health = sample(PAGE, "health");
    stage.write(&health);
    inputs(&stage);
    // Root reads any directory: flowlog runs without that power, so `chmod 000` counts.
    let child = run_in_background(&stage, "health.toml", true);
    wait_until("/health never answered", || {
        get(&stage, "/health").is_some()
    });
    stage.check(&health);
    let (ok, log) = stop(child, &stage);
    assert!(ok, "{log}");
}
