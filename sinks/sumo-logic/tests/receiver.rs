//! The sink against the Sumo Logic test receiver: every message once through throttling,
//! busy answers and dropped connections; metadata headers per record; 413 splits; a
//! message the source refuses dead-lettered with its answer; a source that never answers;
//! refused URLs and tokens; `check`; the unique URL never in an error.

use std::collections::HashMap;
use std::sync::Arc;

use flowlog_model::FlowBatch;
use flowlog_sink::{BatchStatus, Metrics, SinkContext, SinkError, SinkKind};
use flowlog_sink_sumo_logic::SumoConfig;
use flowlog_test_receivers::corpus::v2_line;
use flowlog_test_receivers::harness::{batches, run_sink, Letters};
use flowlog_test_receivers::sumo::{SumoOptions, SumoReceiver};

const ACCOUNTS: [&str; 3] = ["111111111111", "222222222222", "333333333333"];

/// `n` distinct lines, their account one of three by turn.
fn lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| v2_line(i).replacen("123456789012", ACCOUNTS[i % 3], 1))
        .collect()
}

fn text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn config(url: &str) -> SumoConfig {
    let mut config = SumoConfig::new(url);
    config.batch_timeout_secs = 0.05;
    config.retry_initial_backoff_secs = 0.005;
    config.retry_max_backoff_secs = 0.05;
    config.request_timeout_secs = 2.0;
    config
}

async fn run(
    config: SumoConfig,
    input: Vec<FlowBatch>,
) -> (Vec<BatchStatus>, Result<(), SinkError>, Arc<Letters>) {
    let letters = Arc::new(Letters::default());
    let metrics = Metrics::new();
    let sink = config
        .build(SinkContext {
            name: "sumo".into(),
            metrics: metrics.component("sink", "sumo"),
            dead_letters: Arc::clone(&letters) as _,
            data_dir: std::env::temp_dir(),
        })
        .unwrap();
    let (statuses, result) = run_sink(sink, input).await;
    (statuses, result, letters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_arrives_once_through_faults_with_its_accounts_metadata() {
    let receiver = SumoReceiver::start(SumoOptions {
        failure_rate: 0.3,
        ..SumoOptions::default()
    });
    let all = lines(9_000);
    let mut config = config(&receiver.url());
    config.max_bytes = 50_000;
    config.category = Some("aws/vpc/{{ account-id }}".into());
    config.source_name = Some("vpc-flow-logs".into());
    config
        .fields
        .insert("account".into(), "{{account_id}}".into());
    config.fields.insert("env".into(), "prod".into());
    let (statuses, result, letters) = run(config, batches(&text(&all), 1000)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    assert!(letters.0.lock().unwrap().is_empty());
    let counts = receiver.counts();
    assert_eq!(counts.len(), all.len());
    assert!(counts.values().all(|&n| n == 1), "a line arrived twice");
    for message in receiver.messages() {
        let account = message.text.split(' ').nth(1).unwrap().to_string();
        assert_eq!(message.category, Some(format!("aws/vpc/{account}")));
        assert_eq!(message.name.as_deref(), Some("vpc-flow-logs"));
        assert_eq!(message.host, None);
        let want = vec![
            ("account".to_string(), account),
            ("env".into(), "prod".into()),
        ];
        assert_eq!(message.fields, want);
    }
    let stats = receiver.stats();
    assert!(
        stats.failed_429 > 0 && stats.failed_503 > 0 && stats.dropped_connections > 0,
        "{stats:?}"
    );
    assert_eq!(
        stats.compressed_requests,
        stats.requests - stats.failed_429 - stats.failed_503 - stats.dropped_connections,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_groups_than_are_gathered_at_once_each_keep_their_own_headers() {
    let receiver = SumoReceiver::start(SumoOptions::default());
    let all = lines(2_000);
    let mut config = config(&receiver.url());
    // Every record its own source address: 2,000 groups, more than are open at once.
    config.source_host = Some("{{ srcaddr }}".into());
    let (statuses, result, _) = run(config, batches(&text(&all), 500)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let messages = receiver.messages();
    assert_eq!(messages.len(), all.len());
    for message in messages {
        let srcaddr = message.text.split(' ').nth(3).unwrap();
        assert_eq!(message.host.as_deref(), Some(srcaddr));
        assert_eq!(message.category, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_source_refuses_is_dead_lettered_with_its_answer_and_the_rest_land() {
    let receiver = SumoReceiver::start(SumoOptions {
        poison: Some("198.51.100.7 ".into()),
        ..SumoOptions::default()
    });
    let all = lines(1_000);
    let (statuses, result, letters) = run(config(&receiver.url()), batches(&text(&all), 250)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let letters = letters.0.lock().unwrap();
    let poisoned: Vec<&String> = all.iter().filter(|l| l.contains("198.51.100.7 ")).collect();
    assert_eq!(letters.len(), poisoned.len());
    for letter in letters.iter() {
        assert!(letter.raw.contains("198.51.100.7 "), "{}", letter.raw);
        assert!(
            letter.reason.contains("HTTP 400: message refused"),
            "{}",
            letter.reason
        );
    }
    let counts = receiver.counts();
    assert_eq!(counts.len() + letters.len(), all.len());
    assert!(counts.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_size_requests_are_halved_and_a_lone_over_size_message_dead_lettered() {
    let receiver = SumoReceiver::start(SumoOptions {
        max_body: 3_000,
        ..SumoOptions::default()
    });
    let all = lines(600);
    let mut cfg = config(&receiver.url());
    cfg.max_bytes = 40_000;
    let (statuses, result, letters) = run(cfg, batches(&text(&all), 600)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    assert!(letters.0.lock().unwrap().is_empty());
    assert_eq!(receiver.counts().len(), all.len());
    assert!(receiver.stats().too_large > 0);

    let tiny = SumoReceiver::start(SumoOptions {
        max_body: 40,
        ..SumoOptions::default()
    });
    let (statuses, result, letters) = run(config(&tiny.url()), batches(&text(&all[..8]), 8)).await;
    result.unwrap();
    assert_eq!(statuses, [BatchStatus::Delivered]);
    let letters = letters.0.lock().unwrap();
    assert_eq!(letters.len(), 8);
    assert!(
        letters[0].reason.contains("HTTP 413"),
        "{}",
        letters[0].reason
    );
    assert!(tiny.counts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_never_answers_is_given_up_on_and_sent_again() {
    let receiver = SumoReceiver::start(SumoOptions {
        hang_requests: 2,
        ..SumoOptions::default()
    });
    let all = lines(300);
    let mut config = config(&receiver.url());
    config.request_timeout_secs = 0.5;
    let (statuses, result, _) = run(config, batches(&text(&all), 100)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    assert_eq!(receiver.stats().hung, 2);
    let counts: HashMap<String, u32> = receiver.counts();
    assert_eq!(counts.len(), all.len());
    assert!(counts.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_url_stops_the_sink_and_no_error_shows_the_code() {
    let receiver = SumoReceiver::start(SumoOptions::default());
    let wrong = receiver.url().replace("-test-code", "-wrong-code");
    let all = lines(100);
    let (statuses, result, _) = run(config(&wrong), batches(&text(&all), 100)).await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("401"), "{error}");
    assert_eq!(statuses, [BatchStatus::Failed]);
    let sink = |url: &str| {
        config(url)
            .build(SinkContext {
                name: "sumo".into(),
                metrics: Metrics::new().component("sink", "sumo"),
                dead_letters: Arc::new(Letters::default()),
                data_dir: std::env::temp_dir(),
            })
            .unwrap()
    };
    let refused = sink(&wrong).check().await.unwrap_err().to_string();
    assert!(
        refused.contains("401") && !refused.contains("wrong-code"),
        "{refused}"
    );
    let found = sink(&receiver.url()).check().await.unwrap();
    assert!(
        found.contains("URL accepted") && !found.contains("test-code"),
        "{found}"
    );
    // Nobody listening: the transport's error names no URL either.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nobody = format!("http://127.0.0.1:{port}/receiver/v1/http/SECRET-CODE");
    let unreachable = sink(&nobody).check().await.unwrap_err().to_string();
    assert!(!unreachable.contains("SECRET-CODE"), "{unreachable}");
    assert!(receiver.counts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_an_auth_header_takes_its_token() {
    let receiver = SumoReceiver::start(SumoOptions {
        token: Some("sumo-token-1".into()),
        ..SumoOptions::default()
    });
    let all = lines(200);
    let mut good = config(&receiver.base_url());
    good.token = Some("sumo-token-1".into());
    let (statuses, result, _) = run(good, batches(&text(&all), 100)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    assert_eq!(receiver.counts().len(), all.len());
    let mut bad = config(&receiver.base_url());
    bad.token = Some("sumo-token-2".into());
    let (_, result, _) = run(bad, batches(&text(&all), 100)).await;
    assert!(result.unwrap_err().to_string().contains("URL and token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_documents_are_one_json_message_per_line() {
    let receiver = SumoReceiver::start(SumoOptions::default());
    let all = lines(50);
    let mut config = config(&receiver.url());
    config.format = flowlog_sink_sumo_logic::Format::Ecs;
    let (_, result, _) = run(config, batches(&text(&all), 50)).await;
    result.unwrap();
    let messages = receiver.messages();
    assert_eq!(messages.len(), 50);
    for message in messages {
        let doc: serde_json::Value = serde_json::from_str(&message.text).unwrap();
        assert_eq!(doc["event"]["dataset"], "aws.vpcflow", "{doc}");
    }
}
