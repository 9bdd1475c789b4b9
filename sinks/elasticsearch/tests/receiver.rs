//! The sink against the Elasticsearch test receiver: data streams and dated indices,
//! per-item faults, whole-request faults, hung connections, 413 splits, poison
//! documents, refused credentials, several nodes, `check` and templates.

use std::collections::HashSet;
use std::sync::Arc;

use flowlog_model::FlowBatch;
use flowlog_sink::{BatchStatus, Metrics, Sink, SinkError};
use flowlog_sink_elasticsearch::{Auth, EsConfig, EsSink, Flavor as SinkFlavor};
use flowlog_test_receivers::elasticsearch::{EsOptions, EsReceiver, Flavor};
use flowlog_test_receivers::harness::{self, batches, run_sink, Letters};

const STREAM: &str = "logs-aws.vpcflow-default";

fn lines(n: usize) -> String {
    flowlog_test_receivers::corpus::v2_lines(0, n)
}

fn config(receiver: &EsReceiver) -> EsConfig {
    let mut config = EsConfig::new(receiver.url());
    config.auth = Some(Auth::ApiKey {
        api_key: "test-id:test-key".into(),
    });
    config.batch_timeout_secs = 0.05;
    config.retry_initial_backoff_secs = 0.005;
    config.retry_max_backoff_secs = 0.05;
    config.request_timeout_secs = 2.0;
    config
}

async fn run(
    config: EsConfig,
    batches: Vec<FlowBatch>,
    letters: Arc<Letters>,
) -> (Vec<BatchStatus>, Result<(), SinkError>) {
    let metrics = Metrics::new();
    let sink = EsSink::new(
        "elastic",
        config,
        metrics.component("sink", "elastic"),
        letters,
    )
    .unwrap();
    run_sink(Box::new(sink), batches).await
}

fn ids_of(batches: &[FlowBatch]) -> HashSet<String> {
    harness::ids_of(batches).into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_documents_land_in_the_data_stream_once_each_through_faults() {
    let receiver = EsReceiver::start(EsOptions {
        item_reject_rate: 0.2,
        failure_rate: 0.05,
        hang_rate: 0.01,
        keep_documents: false,
        ..EsOptions::default()
    });
    let input = batches(&lines(20_000), 1000);
    let want = ids_of(&input);
    let letters = Arc::new(Letters::default());
    let mut config = config(&receiver);
    config.max_bytes = 200_000;
    let (statuses, result) = run(config, input, Arc::clone(&letters)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    assert!(letters.0.lock().unwrap().is_empty());
    assert_eq!(receiver.ids(STREAM), want);
    assert_eq!(receiver.max_writes(), 1, "no document written twice");
    let stats = receiver.stats();
    assert!(stats.rejected_items > 1000, "{stats:?}");
    assert!(
        stats.failed_requests > 0 && stats.hung_requests > 0,
        "{stats:?}"
    );
    assert_eq!(stats.gzip_requests, stats.bulk_requests, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_is_answered_409_and_counts_as_delivered() {
    let receiver = EsReceiver::start(EsOptions::default());
    let input = batches(&lines(500), 500);
    for _ in 0..2 {
        let letters = Arc::new(Letters::default());
        let (statuses, result) = run(config(&receiver), input.clone(), Arc::clone(&letters)).await;
        result.unwrap();
        assert_eq!(statuses, [BatchStatus::Delivered]);
        assert!(letters.0.lock().unwrap().is_empty());
    }
    assert_eq!(receiver.ids(STREAM).len(), 500);
    assert_eq!(receiver.stats().conflicts, 500);
    assert_eq!(receiver.max_writes(), 1);
    let doc = &receiver.documents(STREAM)[0];
    assert_eq!(doc["data_stream"]["dataset"], "aws.vpcflow");
    assert!(doc["@timestamp"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_documents_are_dead_lettered_with_the_clusters_reason() {
    let receiver = EsReceiver::start(EsOptions {
        poison: Some("10.0.0.7".into()),
        ..EsOptions::default()
    });
    let input = batches(&lines(300), 100);
    let letters = Arc::new(Letters::default());
    let (statuses, result) = run(config(&receiver), input, Arc::clone(&letters)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let letters = letters.0.lock().unwrap();
    assert!(!letters.is_empty());
    for letter in letters.iter() {
        assert!(
            letter.reason.contains("400 document_parsing_exception"),
            "{}",
            letter.reason
        );
        assert!(letter.raw.contains("10.0.0.7"), "{}", letter.raw);
    }
    assert_eq!(receiver.ids(STREAM).len() + letters.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_size_requests_are_split_and_a_lone_over_size_document_dead_lettered() {
    let receiver = EsReceiver::start(EsOptions {
        max_body: 3000,
        ..EsOptions::default()
    });
    let input = batches(&lines(200), 200);
    let letters = Arc::new(Letters::default());
    let mut config = config(&receiver);
    config.compression = flowlog_sink_elasticsearch::Compression::None;
    let (_, result) = run(config, input, Arc::clone(&letters)).await;
    result.unwrap();
    assert!(receiver.stats().too_large > 0);
    assert_eq!(receiver.ids(STREAM).len(), 200);
    assert!(letters.0.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_stop_the_sink_and_fail_its_batches() {
    let receiver = EsReceiver::start(EsOptions::default());
    let mut config = config(&receiver);
    config.auth = Some(Auth::ApiKey {
        api_key: "test-id:wrong".into(),
    });
    let (statuses, result) = run(config, batches(&lines(10), 10), Arc::default()).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("401") && err.contains("security_exception"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the key is never printed: {err}");
    assert_eq!(statuses, [BatchStatus::Failed]);
    // A user who may read but not write: 403 stops the sink too.
    let mut config = self::config(&receiver);
    config.auth = Some(Auth::Basic {
        user: "viewer".into(),
        password: "viewer-password".into(),
    });
    let (_, result) = run(config, batches(&lines(10), 10), Arc::default()).await;
    assert!(result.unwrap_err().to_string().contains("403"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_skipped_and_every_document_still_lands() {
    let receiver = EsReceiver::start(EsOptions::default());
    // The first node refuses connections: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut config = config(&receiver);
    config.endpoints = vec![dead_url, receiver.url()];
    config.max_bytes = 20_000;
    let input = batches(&lines(3000), 500);
    let want = ids_of(&input);
    let (_, result) = run(config, input, Arc::default()).await;
    result.unwrap();
    assert_eq!(receiver.ids(STREAM), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dated_indices_follow_each_documents_timestamp() {
    let receiver = EsReceiver::start(EsOptions::default());
    let mut config = config(&receiver);
    config.index = Some("vpcflow-%Y.%m.%d".into());
    // Two records a day apart (end = 2014-12-14 and 2014-12-15).
    let text = "2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1418530010 1418530070 ACCEPT OK\n\
                2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1418616410 1418616470 ACCEPT OK\n";
    let (_, result) = run(config, batches(text, 10), Arc::default()).await;
    result.unwrap();
    let mut targets = receiver.targets();
    targets.sort();
    assert_eq!(targets, ["vpcflow-2014.12.14", "vpcflow-2014.12.15"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_cluster_the_privileges_and_the_template() {
    let receiver = EsReceiver::start(EsOptions::default());
    let metrics = Metrics::new();
    let mut config = config(&receiver);
    let sink = EsSink::new(
        "elastic",
        config.clone(),
        metrics.component("sink", "e"),
        Arc::new(Letters::default()),
    )
    .unwrap();
    let report = sink.check().await.unwrap();
    assert!(report.contains("Elasticsearch 8.15.0"), "{report}");
    assert!(
        report.contains("may create documents in `logs-aws.vpcflow-default`"),
        "{report}"
    );
    assert!(report.contains("not installed"), "{report}");

    // Installing the templates, then checking again.
    config.install_template = true;
    let (_, result) = run(config.clone(), batches(&lines(10), 10), Arc::default()).await;
    result.unwrap();
    let template = receiver
        .index_template("flowlog-logs-aws.vpcflow-default")
        .unwrap();
    assert_eq!(template["data_stream"], serde_json::json!({}));
    let report = sink.check().await.unwrap();
    assert!(
        report.contains("matches flowlog's ECS mappings"),
        "{report}"
    );

    // A user who may not write is told so by check.
    config.auth = Some(Auth::Basic {
        user: "viewer".into(),
        password: "viewer-password".into(),
    });
    let sink = EsSink::new(
        "elastic",
        config.clone(),
        metrics.component("sink", "v"),
        Arc::new(Letters::default()),
    )
    .unwrap();
    let err = sink.check().await.unwrap_err().to_string();
    assert!(err.contains("may not create documents"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensearch_is_recognised_and_gets_a_data_stream_template() {
    let receiver = EsReceiver::start(EsOptions {
        flavor: Flavor::OpenSearch,
        ..EsOptions::default()
    });
    let mut config = config(&receiver);
    config.auth = Some(Auth::Basic {
        user: "elastic".into(),
        password: "changeme".into(),
    });
    config.install_template = true;
    let input = batches(&lines(100), 100);
    let (_, result) = run(config.clone(), input, Arc::default()).await;
    result.unwrap();
    // Without the template the target would be a plain index, where `create` works too;
    // with it, the receiver treats it as a data stream, as OpenSearch does.
    let template = receiver
        .index_template("flowlog-logs-aws.vpcflow-default")
        .unwrap();
    assert_eq!(
        template["composed_of"],
        serde_json::json!(["flowlog-aws.vpcflow@ecs"])
    );
    assert_eq!(receiver.ids(STREAM).len(), 100);
    let sink = EsSink::new(
        "os",
        config.clone(),
        Metrics::new().component("sink", "os"),
        Arc::new(Letters::default()),
    )
    .unwrap();
    let report = sink.check().await.unwrap();
    assert!(report.contains("OpenSearch 2.15.0"), "{report}");
    config.auth = Some(Auth::ApiKey {
        api_key: "a:b".into(),
    });
    config.flavor = SinkFlavor::Auto;
    let sink = EsSink::new(
        "os",
        config,
        Metrics::new().component("sink", "os2"),
        Arc::new(Letters::default()),
    )
    .unwrap();
    let err = sink.check().await.unwrap_err().to_string();
    assert!(err.contains("no API keys"), "{err}");
}
