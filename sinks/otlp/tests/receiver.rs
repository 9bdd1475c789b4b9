//! The sink against the OTLP test receiver (a tonic `LogsService` and `/v1/logs`), over
//! each protocol: every record arrives through UNAVAILABLE storms, RESOURCE_EXHAUSTED
//! with RetryInfo, 503/429 with Retry-After, resets and silent requests; partial
//! successes are counted, not retried; a refused request is dead-lettered as OTLP/JSON;
//! over-size messages are halved; refused credentials stop the sink; `check`.

use std::collections::HashSet;
use std::sync::Arc;

use flowlog_model::FlowBatch;
use flowlog_sink::{BatchStatus, Metrics, Sink, SinkError};
use flowlog_sink_otlp::{OtlpConfig, OtlpSink, Protocol};
use flowlog_test_receivers::harness::{self, batches, run_sink, Letters};
use flowlog_test_receivers::otlp::{OtlpOptions, OtlpReceiver};

const PROTOCOLS: [Protocol; 3] = [Protocol::Grpc, Protocol::HttpProtobuf, Protocol::HttpJson];

fn lines(n: usize) -> String {
    flowlog_test_receivers::corpus::v2_lines(0, n)
}

fn config(receiver: &OtlpReceiver, protocol: Protocol) -> OtlpConfig {
    let mut config = OtlpConfig::new(receiver.url());
    config.protocol = protocol;
    config.batch_timeout_secs = 0.05;
    config.max_bytes = 200_000;
    config.retry_initial_backoff_secs = 0.005;
    config.retry_max_backoff_secs = 0.05;
    config.request_timeout_secs = 2.0;
    config
}

fn sink(config: OtlpConfig, letters: &Arc<Letters>, metrics: &Metrics) -> Box<dyn Sink> {
    Box::new(
        OtlpSink::new(
            "otel",
            config,
            metrics.component("sink", "otel"),
            Arc::clone(letters) as _,
        )
        .unwrap(),
    )
}

/// What `check` says (its error as text).
async fn check(config: &OtlpConfig) -> Result<String, String> {
    let letters = Arc::new(Letters::default());
    let metrics = Metrics::new();
    let sink = sink(config.clone(), &letters, &metrics);
    sink.check().await.map_err(|e| e.to_string())
}

async fn run(
    config: OtlpConfig,
    batches: Vec<FlowBatch>,
    letters: &Arc<Letters>,
) -> (Vec<BatchStatus>, Result<(), SinkError>, Metrics) {
    let metrics = Metrics::new();
    let (statuses, result) = run_sink(sink(config, letters, &metrics), batches).await;
    (statuses, result, metrics)
}

fn ids_of(batches: &[FlowBatch]) -> HashSet<String> {
    harness::ids_of(batches).into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_through_faults_over_each_protocol() {
    for protocol in PROTOCOLS {
        let receiver = OtlpReceiver::start(OtlpOptions {
            unavailable_rate: 0.1,
            exhausted_rate: 0.1,
            partial_rate: 0.05,
            reset_rate: 0.05,
            hang_rate: 0.02,
            keep_requests: false,
            seed: 3,
            ..OtlpOptions::default()
        });
        let batches = batches(&lines(20_000), 1_000);
        let expected = ids_of(&batches);
        let letters = Arc::new(Letters::default());
        let (statuses, result, metrics) = run(config(&receiver, protocol), batches, &letters).await;
        result.unwrap();
        assert!(
            statuses.iter().all(|s| *s == BatchStatus::Delivered),
            "{protocol:?}"
        );
        let ids = receiver.ids();
        let rejected: HashSet<String> = receiver.rejected().into_iter().collect();
        let stats = receiver.stats();
        // Every record arrived, or was dropped by a partial success (which is final).
        for id in &expected {
            assert!(
                ids.contains_key(id) || rejected.contains(id),
                "{protocol:?}: {id} lost; {stats:?}"
            );
        }
        assert_eq!(ids.len() + rejected.len(), expected.len(), "{protocol:?}");
        assert!(letters.0.lock().unwrap().is_empty());
        assert!(
            stats.unavailable > 0 && stats.exhausted > 0 && stats.partial > 0,
            "{stats:?}"
        );
        assert!(stats.resets > 0, "{stats:?}");
        let text = metrics.render();
        let line = format!(
            "flowlog_records_rejected_total{{component_kind=\"sink\",component=\"otel\"}} {}",
            rejected.len()
        );
        assert!(text.contains(&line), "{protocol:?}: {text}");
        match protocol {
            Protocol::Grpc => assert!(stats.grpc_requests > 0 && stats.http_requests == 0),
            Protocol::HttpJson => assert!(stats.json_requests > 0),
            Protocol::HttpProtobuf => assert!(stats.http_requests > stats.json_requests),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_dead_lettered_as_otlp_json_and_large_ones_are_halved() {
    for protocol in PROTOCOLS {
        let receiver = OtlpReceiver::start(OtlpOptions {
            // Records to this address make their request refused (INVALID_ARGUMENT / 400).
            poison: Some("198.51.100.77".into()),
            max_message: 60_000,
            keep_requests: false,
            ..OtlpOptions::default()
        });
        let text = lines(3_000);
        let poisoned = text.lines().filter(|l| l.contains("198.51.100.77")).count();
        assert!(poisoned > 0);
        let batches = batches(&text, 1_000);
        let letters = Arc::new(Letters::default());
        let mut config = config(&receiver, protocol);
        // Larger than the receiver takes: requests are halved until they fit.
        config.max_bytes = 1_000_000;
        config.compression = flowlog_sink_otlp::Compression::None;
        let (statuses, result, _) = run(config, batches, &letters).await;
        result.unwrap();
        assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
        let stats = receiver.stats();
        assert!(
            stats.too_large > 0 || protocol == Protocol::Grpc,
            "{stats:?}"
        );
        let letters = letters.0.lock().unwrap();
        // A request with a poison record is refused whole, so its every record is
        // dead-lettered with the receiver's reason; with what arrived, that is all.
        assert_eq!(letters.len() + receiver.ids().len(), 3_000, "{protocol:?}");
        assert!(letters.len() >= poisoned);
        let letter = letters
            .iter()
            .find(|l| l.raw.contains("198.51.100.77"))
            .expect("a poison record dead-lettered");
        assert!(letter.reason.contains("198.51.100.77"), "{}", letter.reason);
        let json: serde_json::Value = serde_json::from_str(&letter.raw).unwrap();
        assert!(json["logRecord"]["attributes"].is_array(), "{json}");
        assert_eq!(json["resource"]["attributes"][0]["key"], "cloud.provider");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_stop_the_sink_and_check_finds_them_first() {
    for protocol in PROTOCOLS {
        let receiver = OtlpReceiver::start(OtlpOptions {
            required_header: Some(("x-api-key".into(), "right".into())),
            ..OtlpOptions::default()
        });
        let mut config = config(&receiver, protocol);
        config
            .headers
            .insert("x-api-key".into(), "wrong\"key".into());
        let letters = Arc::new(Letters::default());
        let err = check(&config).await.unwrap_err();
        assert!(err.contains("x-api-key"), "{protocol:?}: {err}");
        assert!(!err.contains("wrong\"key"), "{err}");
        let (statuses, result, _) = run(config.clone(), batches(&lines(10), 10), &letters).await;
        assert!(
            matches!(result, Err(SinkError::Rejected { .. })),
            "{result:?}"
        );
        assert!(statuses.iter().all(|s| *s == BatchStatus::Failed));

        config.headers.insert("x-api-key".into(), "right".into());
        let said = check(&config).await.unwrap();
        assert!(said.contains("empty"), "{said}");
        assert_eq!(receiver.stats().empty, 1);
        let (_, result, _) = run(config, batches(&lines(10), 10), &letters).await;
        result.unwrap();
        assert_eq!(receiver.ids().len(), 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_client_certificate_over_each_protocol() {
    let dir = std::env::temp_dir().join(format!("flowlog-otlp-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for protocol in PROTOCOLS {
        let receiver = OtlpReceiver::start(OtlpOptions {
            mutual_tls: true,
            ..OtlpOptions::default()
        });
        assert!(receiver.url().starts_with("https://"));
        let ca = dir.join("ca.pem");
        let (cert_pem, key_pem) = receiver.client_identity().unwrap();
        let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
        std::fs::write(&ca, receiver.ca_pem().unwrap()).unwrap();
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        let mut config = config(&receiver, protocol);
        config.tls.ca_file = Some(ca);
        config.tls.system_roots = false;
        let letters = Arc::new(Letters::default());
        let metrics = Metrics::new();

        // Without a client certificate the handshake fails, and check says so.
        let err = check(&config).await.unwrap_err();
        assert!(err.contains("127.0.0.1"), "{protocol:?}: {err}");

        config.tls.cert_file = Some(cert);
        config.tls.key_file = Some(key.clone());
        sink(config.clone(), &letters, &metrics)
            .check()
            .await
            .unwrap();
        let (_, result, _) = run(config.clone(), batches(&lines(100), 50), &letters).await;
        result.unwrap();
        assert_eq!(receiver.ids().len(), 100, "{protocol:?}");

        // A key file that is not a key is a configuration error naming the file only.
        std::fs::write(&key, "not a key").unwrap();
        let err = match OtlpSink::new(
            "otel",
            config,
            metrics.component("sink", "otel"),
            Arc::clone(&letters) as _,
        ) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a bad key file was accepted"),
        };
        assert!(
            err.contains("tls.key_file") && err.contains("client.key"),
            "{err}"
        );
        assert!(!err.contains("not a key"), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_can_be_the_line_the_record_came_from() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let receiver = OtlpReceiver::start(OtlpOptions::default());
    let mut config = config(&receiver, Protocol::Grpc);
    config.body = flowlog_sink_otlp::Body::Line;
    let text = lines(50);
    let letters = Arc::new(Letters::default());
    let (_, result, _) = run(config, batches(&text, 20), &letters).await;
    result.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut seen = 0;
    for request in receiver.requests() {
        for record in request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
        {
            let id = record
                .attributes
                .iter()
                .find(|kv| kv.key == "flowlog.id")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap();
            let line: usize = id.rsplit('-').next().unwrap().parse().unwrap();
            let body = record.body.as_ref().and_then(|b| b.value.as_ref());
            assert_eq!(
                body,
                Some(&Value::StringValue(lines[line - 1].to_string())),
                "{id}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 50);
}
