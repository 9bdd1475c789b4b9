//! The sinks against SIEM endpoints that misbehave as a misconfigured load balancer or a
//! malicious server would: redirects of every kind (to the same host and to another, over
//! HTTP and HTTPS), `_bulk` answers that account for nothing, OTLP partial successes with
//! 64-bit counts written as strings. Nothing may count as delivered that the configured
//! endpoint did not accept, no header of a sink's may reach another server, and `check`
//! must fail naming the redirect.

use std::sync::Arc;
use std::time::Duration;

use flowlog_registry::{Configured, SinkConfig};
use flowlog_sink::{BatchStatus, Metrics, Sink, SinkContext};
use flowlog_test_receivers::corpus::v2_lines;
use flowlog_test_receivers::harness::{batches, run_sink_until, Letters};
use flowlog_test_receivers::scripted::{answer, ScriptedPeer, Seen};

/// The longest each sink is left to meet what a test waits for (it stops as soon as it
/// has: a time is only the bound of a test that would otherwise hang).
const LIMIT: Duration = Duration::from_secs(60);
const SECRET: &str = "s3cr3t-value";

/// The five ways a sink sends (HEC, `_bulk`, OTLP/HTTP, Sumo Logic, OTLP/gRPC), each with a secret in
/// a header, pointed at `url` (trusting `ca` for HTTPS).
fn sink_settings(url: &str, ca: Option<&std::path::Path>) -> Vec<(&'static str, String)> {
    let tls = ca
        .map(|ca| format!("tls = {{ ca_file = \"{}\" }}\n", ca.display()))
        .unwrap_or_default();
    // The request timeout is not what these tests are about: generous, so that 80 cases
    // at once (TLS handshakes in a debug build, on two busy cores) do not time out.
    let quick = "batch_timeout_secs = 0.05\nrequest_timeout_secs = 15\nretry_initial_backoff_secs = 0.02\nretry_max_backoff_secs = 0.1\n";
    vec![
        (
            "splunk_hec",
            format!(
                "type = \"splunk_hec\"\nendpoint = \"{url}\"\ntoken = \"{SECRET}\"\n{quick}{tls}"
            ),
        ),
        (
            "elasticsearch",
            format!(
                "type = \"elasticsearch\"\nendpoints = [\"{url}\"]\ninstall_template = false\n\
                 auth = {{ api_key = \"{SECRET}\" }}\n{quick}{tls}"
            ),
        ),
        (
            "otlp http",
            format!(
                "type = \"otlp\"\nendpoint = \"{url}\"\nprotocol = \"http/json\"\n\
                 headers = {{ \"x-api-key\" = \"{SECRET}\" }}\n{quick}{tls}"
            ),
        ),
        (
            "sumo_logic",
            format!(
                "type = \"sumo_logic\"\nendpoint = \"{url}/receiver/v1/http\"\ntoken = \"{SECRET}\"\n\
                 category = \"aws/{{{{ account-id }}}}\"\n{quick}{tls}"
            ),
        ),
        (
            "otlp grpc",
            format!(
                "type = \"otlp\"\nendpoint = \"{url}\"\nprotocol = \"grpc\"\n\
                 headers = {{ \"x-api-key\" = \"{SECRET}\" }}\n{quick}{tls}"
            ),
        ),
    ]
}

fn build(settings: &str, metrics: &Metrics) -> Box<dyn Sink> {
    let config: SinkConfig = toml::from_str(settings).unwrap_or_else(|e| panic!("{settings}: {e}"));
    config.spec().validate().unwrap();
    config
        .spec()
        .build(SinkContext {
            name: "peer".into(),
            metrics: metrics.component("sink", "peer"),
            dead_letters: Arc::new(Letters::default()),
            data_dir: std::env::temp_dir(),
        })
        .unwrap()
}

/// The value of `flowlog_<name>_total` for the sink, 0 when absent.
fn counter(metrics: &Metrics, name: &str) -> u64 {
    let prefix = format!("flowlog_{name}_total{{component_kind=\"sink\",component=\"peer\"}} ");
    metrics
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn carries_secret(seen: &Seen) -> bool {
    seen.headers
        .values()
        .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(SECRET))
}

/// Runs a sink made of `settings` over 30 records until `done` holds of its metrics (or
/// [`LIMIT`]): each batch's outcome, and the sink's metrics.
async fn run_until(settings: &str, done: impl Fn(&Metrics) -> bool) -> (Vec<BatchStatus>, Metrics) {
    let metrics = Metrics::new();
    let sink = build(settings, &metrics);
    let seen = metrics.clone();
    let statuses = run_sink_until(
        sink,
        batches(&v2_lines(0, 30), 10),
        move || done(&seen),
        LIMIT,
    )
    .await;
    (statuses, metrics)
}

/// [`run_until`] the sink has had `answers` answers it could not take.
async fn run_for(settings: &str, answers: u64) -> (Vec<BatchStatus>, Metrics) {
    run_until(settings, |m| counter(m, "protocol_errors") >= answers).await
}

/// Nothing was counted delivered, and the answers were counted as protocol errors.
fn assert_nothing_delivered(statuses: &[BatchStatus], metrics: &Metrics, label: &str) {
    assert!(
        statuses.iter().all(|s| *s == BatchStatus::Failed),
        "{label}: {statuses:?}"
    );
    assert_eq!(counter(metrics, "records_out"), 0, "{label}");
    assert!(counter(metrics, "protocol_errors") > 0, "{label}");
}

/// What happened to one sink pointed at one redirecting endpoint.
struct Case {
    label: String,
    check: Result<String, String>,
    statuses: Vec<BatchStatus>,
    metrics: Metrics,
}

async fn try_sink(label: String, settings: String) -> Case {
    let check = build(&settings, &Metrics::new())
        .check()
        .await
        .map_err(|e| e.to_string());
    let (statuses, metrics) = run_for(&settings, 1).await;
    Case {
        label,
        check,
        statuses,
        metrics,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed_nor_taken_as_delivery() {
    let dir = tempfile_dir();
    // The server a redirect points away to: it takes anything, as a real receiver would.
    let elsewhere = |seen: &Seen| {
        if seen.path.ends_with("LogsService/Export") {
            answer(
                200,
                &[("content-type", "application/grpc"), ("grpc-status", "0")],
                "",
            )
        } else {
            answer(
                200,
                &[("content-type", "application/json")],
                r#"{"text":"Success","code":0,"errors":false,"items":[]}"#,
            )
        }
    };
    let mut cases = tokio::task::JoinSet::new();
    let mut peers = Vec::new();
    for tls in [false, true] {
        // One CA for both: the sink would trust the other server, so a followed redirect
        // would reach it (and show there).
        let pki = tls.then(flowlog_test_receivers::tls::TestPki::new);
        let other = Arc::new(ScriptedPeer::start_with(pki.clone(), elsewhere));
        for status in [301u16, 302, 303, 307, 308] {
            for same_host in [true, false] {
                let location = if same_host {
                    "/moved/here".to_string()
                } else {
                    format!("{}/moved/here", other.url())
                };
                let redirector = ScriptedPeer::start_with(pki.clone(), {
                    let location = location.clone();
                    move |seen: &Seen| {
                        if seen.path.starts_with("/moved") {
                            elsewhere(seen)
                        } else {
                            answer(status, &[("location", &location)], "")
                        }
                    }
                });
                let ca = redirector.ca_pem().map(|pem| {
                    let path = dir.join(format!("ca-{}.pem", peers.len()));
                    std::fs::write(&path, pem).unwrap();
                    path
                });
                for (kind, settings) in sink_settings(&redirector.url(), ca.as_deref()) {
                    let label = format!("{kind} -> {status} to {location} (tls {tls})");
                    cases.spawn(try_sink(label, settings));
                }
                peers.push((redirector, Arc::clone(&other)));
            }
        }
    }
    let mut n = 0;
    while let Some(case) = cases.join_next().await {
        let case = case.unwrap();
        n += 1;
        let label = &case.label;
        let check = case.check.expect_err(label);
        assert!(check.contains("redirect"), "{label}: {check}");
        // Where it points, but never its path (a path can be a credential).
        let location = label
            .split(" to ")
            .nth(1)
            .unwrap()
            .split(" (tls")
            .next()
            .unwrap();
        let named = match location.strip_suffix("/moved/here") {
            Some("") => "another path of the same server".to_string(),
            Some(origin) => format!("{origin}/..."),
            None => unreachable!("{location}"),
        };
        assert!(
            check.contains(&named) && !check.contains("/moved/here"),
            "{label}: the Location's server is named, not its path: {check}"
        );
        assert_nothing_delivered(&case.statuses, &case.metrics, label);
    }
    assert_eq!(n, 2 * 5 * 2 * 5);
    for (redirector, other) in &peers {
        let at_redirector = redirector.seen();
        assert!(!at_redirector.is_empty());
        assert!(
            at_redirector.iter().all(|s| !s.path.starts_with("/moved")),
            "a redirect within the host was followed"
        );
        assert!(
            other.seen().is_empty(),
            "a redirect to another host was followed: {:?}",
            other.seen().iter().filter(|s| carries_secret(s)).count()
        );
    }
}

/// `_bulk` answers `200 {}`: no `errors`, no `items`, nothing said of the documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elasticsearch_answer_that_accounts_for_nothing_is_not_delivery() {
    for body in ["{}", r#"{"took":2}"#, r#"{"errors":true}"#] {
        let peer = ScriptedPeer::start(false, move |_: &Seen| {
            answer(200, &[("content-type", "application/json")], body)
        });
        let settings = &sink_settings(&peer.url(), None)[1].1;
        let (statuses, metrics) = run_for(settings, 2).await;
        assert_nothing_delivered(&statuses, &metrics, body);
        assert!(peer.seen().len() > 1, "{body}: sent again");
    }
}

/// OTLP/JSON writes 64-bit integers as strings: a partial success of `"5"` rejects five
/// records, and one rejecting more than were sent cannot be right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_partial_success_counts_as_strings_are_read() {
    let partial = |rejected: &'static str| {
        ScriptedPeer::start(false, move |_: &Seen| {
            let body = format!(
                r#"{{"partialSuccess":{{"rejectedLogRecords":{rejected},"errorMessage":"dropped"}}}}"#
            );
            answer(200, &[("content-type", "application/json")], &body)
        })
    };
    // One request of 30 records (batch timeout gathers them) of which "5" were dropped.
    for rejected in [r#""5""#, "5"] {
        let peer = partial(rejected);
        let settings = sink_settings(&peer.url(), None)[2]
            .1
            .replace("batch_timeout_secs = 0.05", "batch_timeout_secs = 0.5");
        let (statuses, metrics) = run_until(&settings, |m| {
            counter(m, "records_out") + counter(m, "records_rejected") >= 30
        })
        .await;
        assert!(
            statuses.iter().all(|s| *s == BatchStatus::Delivered),
            "{rejected}: {statuses:?}"
        );
        assert_eq!(peer.seen().len(), 1, "{rejected}");
        assert_eq!(counter(&metrics, "records_rejected"), 5, "{rejected}");
        assert_eq!(counter(&metrics, "records_out"), 25, "{rejected}");
    }
    for rejected in [r#""999999""#, "999999", r#""-1""#, r#""many""#] {
        let peer = partial(rejected);
        let settings = &sink_settings(&peer.url(), None)[2].1;
        let (statuses, metrics) = run_for(settings, 1).await;
        assert_nothing_delivered(&statuses, &metrics, rejected);
        assert_eq!(
            counter(&metrics, "records_rejected"),
            0,
            "{rejected}: never clamped"
        );
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A HEC success status whose body is not HEC's (no `code`: a proxy's page, `{}`) says
/// nothing of the events: sent again, never counted delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hec_answer_without_its_code_is_not_delivery() {
    for body in ["{}", "<html>ok</html>", ""] {
        let peer = ScriptedPeer::start(false, move |_: &Seen| answer(200, &[], body));
        let settings = &sink_settings(&peer.url(), None)[0].1;
        let (statuses, metrics) = run_for(settings, 2).await;
        assert_nothing_delivered(&statuses, &metrics, body);
        assert!(peer.seen().len() > 1, "{body}: sent again");
    }
}

/// A series that only one kind has is registered by that kind: HEC's capacity warnings
/// (its 503 "server is busy" answers) are exported when a HEC sink is built, and by no
/// other sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_warnings_are_exported_only_by_a_hec_sink() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = sink_settings("http://127.0.0.1:9", None);
    settings.push((
        "file",
        format!(
            "type = \"file\"\npath = \"{}\"\n",
            dir.path().join("out.ndjson").display()
        ),
    ));
    for (label, settings) in settings {
        let metrics = Metrics::new();
        let _sink = build(&settings, &metrics);
        let exported = metrics.render().contains("flowlog_capacity_warnings");
        assert_eq!(exported, label == "splunk_hec", "{label}");
    }
}
