//! The sink against the Loki test receiver: every entry once through rate limits, busy
//! answers and dropped connections, in protobuf and JSON; streams from the labels;
//! entries Loki refuses for being too old or too far behind dead-lettered with Loki's
//! reason and never sent again; identical records kept apart; a Loki that never answers;
//! tenants and credentials; `check`.

use std::sync::Arc;

use flowlog_model::FlowBatch;
use flowlog_sink::{BatchStatus, Metrics, SinkContext, SinkError, SinkKind};
use flowlog_sink_loki::{Auth, Encoding, LokiConfig};
use flowlog_test_receivers::corpus::v2_line;
use flowlog_test_receivers::harness::{batches, run_sink, Letters};
use flowlog_test_receivers::loki::{LokiOptions, LokiReceiver};

const ACCOUNTS: [&str; 3] = ["111111111111", "222222222222", "333333333333"];

/// `n` distinct lines from `from`, their account one of three by turn, starting at
/// `start` (seconds).
fn lines(from: usize, n: usize, start: u64) -> String {
    (from..from + n)
        .map(|i| {
            let line = v2_line(i).replacen("123456789012", ACCOUNTS[i % 3], 1);
            let line = line.replacen(
                "1700000000 1700000060",
                &format!("{start} {}", start + 60),
                1,
            );
            let action = if i % 10 == 0 { "REJECT" } else { "ACCEPT" };
            format!("{}\n", line.replacen("ACCEPT", action, 1))
        })
        .collect()
}

fn config(receiver: &LokiReceiver) -> LokiConfig {
    let mut config = LokiConfig::new(receiver.url());
    config.batch_timeout_secs = 0.05;
    config.retry_initial_backoff_secs = 0.005;
    config.retry_max_backoff_secs = 0.05;
    config.request_timeout_secs = 2.0;
    config
}

fn sink(config: &LokiConfig, letters: &Arc<Letters>) -> Box<dyn flowlog_sink::Sink> {
    config
        .build(SinkContext {
            name: "loki".into(),
            metrics: Metrics::new().component("sink", "loki"),
            dead_letters: Arc::clone(letters) as _,
            data_dir: std::env::temp_dir(),
        })
        .unwrap()
}

async fn run(
    config: &LokiConfig,
    input: Vec<FlowBatch>,
) -> (Vec<BatchStatus>, Result<(), SinkError>, Arc<Letters>) {
    let letters = Arc::new(Letters::default());
    let (statuses, result) = run_sink(sink(config, &letters), input).await;
    (statuses, result, letters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_lands_once_in_its_stream_through_faults_in_both_encodings() {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let receiver = LokiReceiver::start(LokiOptions {
            failure_rate: 0.3,
            ..LokiOptions::default()
        });
        let mut config = config(&receiver);
        config.encoding = encoding;
        config.max_bytes = 40_000;
        let n = 6_000;
        let (statuses, result, letters) =
            run(&config, batches(&lines(0, n, 1_700_000_000), 500)).await;
        result.unwrap();
        assert!(
            statuses.iter().all(|s| *s == BatchStatus::Delivered),
            "{encoding:?}"
        );
        assert!(letters.0.lock().unwrap().is_empty());
        let stored = receiver.lines();
        assert_eq!(stored.len(), n, "{encoding:?}");
        assert!(stored.values().all(|&c| c == 1));
        let streams = receiver.streams();
        // Three accounts times two actions; v2 records have no region (left out).
        assert_eq!(streams.len(), 6, "{encoding:?}");
        for (labels, entries) in &streams {
            assert_eq!(labels["job"], "vpc-flow-logs");
            assert!(!labels.contains_key("region"));
            for (nanos, line) in entries {
                let fields: Vec<&str> = line.split(' ').collect();
                assert_eq!(labels["account_id"], fields[1]);
                assert_eq!(labels["action"], fields[12]);
                // The record's time, plus its place in its source below the millisecond.
                assert_eq!(nanos / 1_000_000, 1_700_000_000_000);
            }
        }
        let stats = receiver.stats();
        assert!(
            stats.failed_429 > 0 && stats.dropped_connections > 0,
            "{stats:?}"
        );
        assert_eq!(stats.unordered_streams, 0);
        match encoding {
            Encoding::Protobuf => assert_eq!(stats.json_pushes, 0),
            Encoding::Json => assert_eq!(stats.protobuf_pushes, 0),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_records_are_distinct_entries_and_a_record_sent_again_is_not() {
    let receiver = LokiReceiver::start(LokiOptions::default());
    let config = config(&receiver);
    // The same flow reported twice in one capture window, in two sources.
    let line = lines(0, 1, 1_700_000_000);
    let twice = || {
        ["a.log", "b.log"]
            .into_iter()
            .map(|name| {
                let mut batch = batches(&format!("{line}{line}"), 10).remove(0);
                batch.source = flowlog_model::SourceId::new(name);
                batch
            })
            .collect::<Vec<_>>()
    };
    let (_, result, _) = run(&config, twice()).await;
    result.unwrap();
    assert_eq!(receiver.lines()[line.trim_end()], 4);
    assert_eq!(receiver.stats().duplicates_dropped, 0);
    // A restart sends the same records again: Loki keeps its first copies.
    let (statuses, result, _) = run(&config, twice()).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    assert_eq!(receiver.lines()[line.trim_end()], 4);
    assert_eq!(receiver.stats().duplicates_dropped, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loki_that_never_answers_is_given_up_on_and_the_push_made_again() {
    let receiver = LokiReceiver::start(LokiOptions {
        hang_requests: 2,
        ..LokiOptions::default()
    });
    let mut config = config(&receiver);
    config.request_timeout_secs = 0.5;
    config.max_bytes = 40_000;
    let n = 1_500;
    let (statuses, result, letters) = run(&config, batches(&lines(0, n, 1_700_000_000), 500)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    assert!(letters.0.lock().unwrap().is_empty());
    assert_eq!(receiver.stats().hung, 2);
    // The pushes given up on stored nothing; made again, each entry is stored once.
    let stored = receiver.lines();
    assert_eq!(stored.len(), n);
    assert!(stored.values().all(|&c| c == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_too_old_or_too_far_behind_are_dead_lettered_with_lokis_reason_not_retried() {
    let receiver = LokiReceiver::start(LokiOptions {
        reject_older_than: Some(1_600_000_000 * 1_000_000_000),
        max_behind: Some(3_600 * 1_000_000_000),
        max_returned_errors: 10,
        ..LokiOptions::default()
    });
    let config = config(&receiver);
    // First the newest entries, then (a later request) entries two hours behind them, and
    // entries older than Loki takes at all.
    let newest = lines(0, 300, 1_700_010_000);
    let (_, result, letters) = run(&config, batches(&newest, 300)).await;
    result.unwrap();
    assert!(letters.0.lock().unwrap().is_empty());
    let behind = lines(300, 300, 1_700_010_000 - 7_200);
    let ancient = lines(600, 30, 1_500_000_000);
    let current = lines(630, 60, 1_700_010_000);
    let input = [behind.as_str(), ancient.as_str(), current.as_str()].concat();
    let pushes_before = receiver.stats().pushes;
    let (statuses, result, letters) = run(&config, batches(&input, 390)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let letters = letters.0.lock().unwrap();
    let mut reasons = std::collections::BTreeMap::new();
    for l in letters.iter() {
        *reasons
            .entry(l.reason.chars().take(90).collect::<String>())
            .or_insert(0) += 1;
    }
    assert_eq!(
        letters.len(),
        330,
        "every entry refused, each once: {reasons:#?}"
    );
    let too_old = letters
        .iter()
        .filter(|l| l.reason.contains("HTTP 400: timestamp too old"))
        .count();
    assert_eq!(too_old, 30);
    let behind_letters = letters
        .iter()
        .filter(|l| {
            l.reason.contains("entry too far behind") || l.reason.contains("named only some")
        })
        .count();
    assert_eq!(behind_letters, 300);
    for letter in letters.iter() {
        assert!(
            letter.raw.starts_with("2 "),
            "the line, not the event: {}",
            letter.raw
        );
    }
    // The current entries landed; nothing was sent over and over.
    assert_eq!(receiver.lines().len(), 300 + 60);
    assert!(
        receiver.stats().pushes - pushes_before < 10,
        "{:?}",
        receiver.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_and_credentials_are_sent_and_a_refusal_stops_the_sink() {
    let receiver = LokiReceiver::start(LokiOptions {
        tenant: Some("team-a".into()),
        authorization: Some("Basic dTpw".into()), // u:p
        ..LokiOptions::default()
    });
    let mut good = config(&receiver);
    good.tenant_id = Some("team-a".into());
    good.auth = Some(Auth {
        user: Some("u".into()),
        password: Some("p".into()),
        bearer_token: None,
    });
    let letters = Arc::new(Letters::default());
    let found = sink(&good, &letters).check().await.unwrap();
    assert!(
        found.contains("empty push accepted") && found.contains("team-a"),
        "{found}"
    );
    let (statuses, result, _) = run(&good, batches(&lines(0, 100, 1_700_000_000), 50)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    assert_eq!(receiver.lines().len(), 100);

    let mut wrong = good.clone();
    wrong.tenant_id = Some("team-b".into());
    let refused = sink(&wrong, &letters)
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("401"), "{refused}");
    let (statuses, result, _) = run(&wrong, batches(&lines(100, 10, 1_700_000_000), 10)).await;
    assert!(result.unwrap_err().to_string().contains("401"));
    assert_eq!(statuses, [BatchStatus::Failed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_documents_are_the_lines_of_entries() {
    let receiver = LokiReceiver::start(LokiOptions::default());
    let mut config = config(&receiver);
    config.format = flowlog_sink_loki::Format::Ecs;
    config.encoding = Encoding::Json;
    let (_, result, _) = run(&config, batches(&lines(0, 30, 1_700_000_000), 30)).await;
    result.unwrap();
    let stored = receiver.lines();
    assert_eq!(stored.len(), 30);
    for line in stored.keys() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(doc["event"]["dataset"], "aws.vpcflow");
    }
}
