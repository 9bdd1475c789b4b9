//! The sink against the HEC test receiver: envelopes, acknowledgement, faults, splits,
//! poison events and rejected tokens.

use std::sync::Arc;
use std::time::Duration;

use flowlog_model::FlowBatch;
use flowlog_sink::{BatchStatus, Metrics, Sink, SinkError};
use flowlog_sink_splunk_hec::{Compression, Format, HecConfig, HecSink};
use flowlog_test_receivers::harness::{batches, ids_of, run_sink, Letters};
use flowlog_test_receivers::hec::{HecOptions, HecReceiver};
use serde_json::Value;

/// `n` version 2 records, one per line.
fn lines(n: usize) -> String {
    flowlog_test_receivers::corpus::v2_lines(0, n)
}

fn config(receiver: &HecReceiver) -> HecConfig {
    let mut config = HecConfig::new(receiver.url());
    config.token = Some("test-token".into());
    config.batch_timeout_secs = 0.05;
    config.retry_initial_backoff_secs = 0.005;
    config.retry_max_backoff_secs = 0.05;
    config.ack_poll_interval_secs = 0.02;
    config.ack_timeout_secs = 0.5;
    config
}

/// Runs the sink over `batches`; returns each batch's outcome and the sink's result.
async fn run(
    config: HecConfig,
    batches: Vec<FlowBatch>,
    letters: Arc<Letters>,
) -> (Vec<BatchStatus>, Result<(), SinkError>) {
    let metrics = Metrics::new();
    let sink = HecSink::new(
        "splunk",
        config,
        metrics.component("sink", "splunk"),
        letters,
    )
    .unwrap();
    run_sink(Box::new(sink), batches).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_arrive_once_as_the_add_on_expects_them() {
    let receiver = HecReceiver::start(HecOptions {
        acks: true,
        ..HecOptions::default()
    });
    let mut config = config(&receiver);
    config.indexer_acknowledgement = true;
    config.index = Some("netflow".into());
    let text = lines(500);
    let input = batches(&text, 128);
    let expected = ids_of(&input);
    let letters = Arc::new(Letters::default());
    let (statuses, result) = run(config, input, Arc::clone(&letters)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let ids = receiver.ids();
    assert_eq!(ids.len(), 500);
    // Once each; again only if an ack was slower than the timeout (a loaded machine).
    let excused = receiver.excused_duplicates();
    for id in &expected {
        let n = ids[id];
        assert!(n == 1 || excused.contains(id), "{id} arrived {n} times");
    }
    let stats = receiver.stats();
    assert_eq!(stats.gzip_requests, stats.requests - stats.ack_polls);
    assert_eq!(stats.channels.len(), 1);
    let events = receiver.events();
    let first = events
        .iter()
        .find(|e| e["fields"]["flowlog_id"].as_str() == Some(expected[0].as_str()))
        .unwrap();
    assert_eq!(first["event"], text.lines().next().unwrap());
    assert_eq!(first["sourcetype"], "aws:cloudwatchlogs:vpcflow");
    assert_eq!(first["source"], "s3://bucket/key.log");
    assert_eq!(first["index"], "netflow");
    assert_eq!(first["time"], 1700000000);
    assert!(letters.0.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichment_travels_as_flat_indexed_fields() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("enis.json");
    std::fs::write(
        &inventory,
        r#"{"NetworkInterfaces": [{"NetworkInterfaceId": "eni-0a1b2c3d",
            "PrivateIpAddress": "10.0.0.5", "Attachment": {"InstanceId": "i-0abc"},
            "Groups": [{"GroupId": "sg-1"}, {"GroupId": "sg-2"}], "SubnetId": "subnet-1",
            "VpcId": "vpc-1", "InterfaceType": "interface",
            "TagSet": [{"Key": "Name", "Value": "web"}, {"Key": "team name", "Value": "checkout"}]}]}"#,
    )
    .unwrap();
    let mut enricher = flowlog_enrich::Enricher::new(&flowlog_enrich::EnrichConfig {
        eni_files: vec![inventory],
        ..flowlog_enrich::EnrichConfig::default()
    })
    .unwrap();
    let input: Vec<FlowBatch> = batches(&lines(10), 10)
        .into_iter()
        .map(|b| enricher.enrich(b))
        .collect();
    let receiver = HecReceiver::start(HecOptions::default());
    let (statuses, result) = run(config(&receiver), input, Arc::default()).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let events = receiver.events();
    assert_eq!(events.len(), 10);
    for event in &events {
        let fields = &event["fields"];
        assert_eq!(fields["eni_instance_id"], "i-0abc", "{event}");
        assert_eq!(
            fields["eni_security_groups"],
            serde_json::json!(["sg-1", "sg-2"])
        );
        assert_eq!(fields["tag_team_name"], "checkout", "{event}");
        assert_eq!(fields["tag_Name"], "web");
        assert!(fields.get("eni_tags").is_none());
        assert!(event["event"]
            .as_str()
            .unwrap()
            .starts_with("2 123456789012 eni-0a1b2c3d "));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_and_lost_acks_lose_nothing() {
    let receiver = HecReceiver::start(HecOptions {
        acks: true,
        failure_rate: 0.3,
        lose_ack_rate: 0.1,
        keep_events: false,
        seed: 7,
        ..HecOptions::default()
    });
    let mut config = config(&receiver);
    config.indexer_acknowledgement = true;
    config.max_bytes = 16 * 1024;
    let input = batches(&lines(20_000), 1000);
    let expected = ids_of(&input);
    let (statuses, result) = run(config, input, Arc::default()).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let ids = receiver.ids();
    let excused = receiver.excused_duplicates();
    let stats = receiver.stats();
    assert!(stats.failed_503 > 0 && stats.failed_429 > 0 && stats.dropped_connections > 0);
    assert!(stats.acks_lost > 0);
    let mut duplicates = 0;
    for id in &expected {
        let n = *ids.get(id).unwrap_or(&0);
        assert!(n >= 1, "{id} never arrived");
        if n > 1 {
            duplicates += n - 1;
            assert!(
                excused.contains(id),
                "{id} arrived {n} times though its ack had been confirmed"
            );
        }
    }
    assert_eq!(ids.len(), expected.len());
    assert!(duplicates > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_size_requests_split_and_an_over_size_event_is_dead_lettered() {
    let receiver = HecReceiver::start(HecOptions {
        max_body: 4096,
        ..HecOptions::default()
    });
    let mut config = config(&receiver);
    config.compression = Compression::None;
    config.max_bytes = 64 * 1024;
    let mut text = lines(300);
    // One line far longer than the receiver accepts (an unknown trailing field).
    text.push_str("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status note\n");
    text.push_str(&format!(
        "2 123456789012 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 1 1700000000 1700000001 ACCEPT OK {}\n",
        "x".repeat(8000)
    ));
    let input = batches(&text, 64);
    let letters = Arc::new(Letters::default());
    let (statuses, result) = run(config, input, Arc::clone(&letters)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    assert_eq!(receiver.ids().len(), 300);
    assert!(receiver.ids().values().all(|&n| n == 1));
    assert!(receiver.stats().too_large > 0);
    let letters = letters.0.lock().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].line, 302);
    assert!(letters[0].reason.contains("413"), "{}", letters[0].reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_with_the_receivers_reason() {
    let receiver = HecReceiver::start(HecOptions {
        poison: Some("198.51.100.77 ".into()),
        ..HecOptions::default()
    });
    let config = config(&receiver);
    let input = batches(&lines(1000), 250);
    let expected = ids_of(&input);
    let letters = Arc::new(Letters::default());
    let (statuses, result) = run(config, input, Arc::clone(&letters)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let letters = letters.0.lock().unwrap();
    // Lines 78, 278, ... hold 198.51.100.77.
    assert_eq!(letters.len(), 5);
    for letter in letters.iter() {
        assert_eq!(letter.line % 200, 78);
        assert!(
            letter
                .reason
                .contains("HEC 400 (code 6): Invalid data format"),
            "{}",
            letter.reason
        );
        assert!(letter.raw.contains("198.51.100.77 "));
        assert_eq!(letter.source.as_str(), "s3://bucket/key.log");
    }
    let ids = receiver.ids();
    assert_eq!(ids.len(), 995);
    assert!(ids.values().all(|&n| n == 1));
    assert!(expected.iter().filter(|id| !ids.contains_key(*id)).count() == 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_the_sink_and_fails_its_batches() {
    let receiver = HecReceiver::start(HecOptions::default());
    let mut config = config(&receiver);
    config.token = Some("wrong".into());
    let metrics = Metrics::new();
    let sink = HecSink::new(
        "splunk",
        config.clone(),
        metrics.component("sink", "splunk"),
        Arc::new(Letters::default()),
    )
    .unwrap();
    let err = sink.check().await.unwrap_err();
    assert!(
        matches!(err, SinkError::Rejected { status: 403, .. }),
        "{err}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "the token leaked: {err}"
    );
    let (statuses, result) = run(config, batches(&lines(10), 5), Arc::default()).await;
    assert!(matches!(result, Err(SinkError::Rejected { .. })));
    assert!(statuses.iter().all(|s| *s == BatchStatus::Failed));
    assert_eq!(receiver.ids().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_go_as_json_events_and_raw_mode_sends_lines() {
    let receiver = HecReceiver::start(HecOptions::default());
    let mut config = config(&receiver);
    config.format = Format::Ecs;
    let (statuses, result) = run(config, batches(&lines(20), 8), Arc::default()).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let events = receiver.events();
    assert_eq!(events.len(), 20);
    for event in &events {
        assert_eq!(event["sourcetype"], "_json");
        assert_eq!(event["event"]["event"]["dataset"], "aws.vpcflow");
        assert!(event["event"]["source"]["ip"].is_string());
    }

    let receiver = HecReceiver::start(HecOptions::default());
    let mut config = self::config(&receiver);
    config.endpoint_kind = flowlog_sink_splunk_hec::Endpoint::Raw;
    let text = lines(20);
    let (_, result) = run(config, batches(&text, 8), Arc::default()).await;
    result.unwrap();
    assert_eq!(receiver.raw_lines(), text.lines().collect::<Vec<_>>());
    let _ = Value::Null;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_healthy_collector() {
    let receiver = HecReceiver::start(HecOptions {
        acks: true,
        ..HecOptions::default()
    });
    let config = config(&receiver);
    let sink = HecSink::new(
        "splunk",
        config,
        Metrics::new().component("sink", "splunk"),
        Arc::new(Letters::default()),
    )
    .unwrap();
    let line = sink.check().await.unwrap();
    assert!(line.contains("healthy"), "{line}");
    receiver.set_down(true);
    assert!(sink.check().await.is_err());
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tab_separated_lines_travel_as_valid_json() {
    let receiver = HecReceiver::start(HecOptions::default());
    let config = config(&receiver);
    // Valid input: runs of spaces and tabs separate fields, and the line is kept as read.
    let text: String = lines(50)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let l = if i % 2 == 0 {
                l.replace(' ', "\t")
            } else {
                l.replacen(' ', " \t ", 3)
            };
            format!("{l}\n")
        })
        .collect();
    let input = batches(&text, 16);
    assert!(input.iter().all(|b| b.plain_text));
    let letters = Arc::new(Letters::default());
    let (statuses, result) = run(config, input, Arc::clone(&letters)).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    assert!(
        letters.0.lock().unwrap().is_empty(),
        "{:?}",
        letters.0.lock().unwrap().first()
    );
    let events = receiver.events();
    assert_eq!(events.len(), 50);
    let mut received: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let mut sent: Vec<&str> = text.lines().collect();
    received.sort();
    sent.sort();
    assert_eq!(
        received, sent,
        "the lines arrive as they were read, tabs included"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_ack_poll_does_not_hold_the_channel() {
    let receiver = HecReceiver::start(HecOptions {
        acks: true,
        hang_ack_polls: 2,
        ..HecOptions::default()
    });
    let mut config = config(&receiver);
    config.indexer_acknowledgement = true;
    // A request timeout far longer than the test's deadline: only the poll's own
    // deadline can get the sink past the silent connection.
    config.request_timeout_secs = 3600.0;
    config.ack_timeout_secs = 3600.0;
    config.max_bytes = 20_000;
    let input = batches(&lines(2000), 256);
    let expected = ids_of(&input);
    let letters = Arc::new(Letters::default());
    let (statuses, result) = tokio::time::timeout(
        Duration::from_secs(60),
        run(config, input, Arc::clone(&letters)),
    )
    .await
    .expect("acknowledgements stalled behind a hung /ack poll");
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    assert_eq!(receiver.stats().hung_ack_polls, 2);
    let ids = receiver.ids();
    for id in &expected {
        assert_eq!(ids.get(id), Some(&1), "{id}");
    }
}

/// Delivers ten lines as one request whose every ack answer comes `answer_delay` late,
/// and checks that HEC's one `true` was taken: the events arrived once.
async fn a_late_ack_is_taken(answer_delay: Duration) {
    let receiver = HecReceiver::start(HecOptions {
        acks: true,
        ack_answer_delay: answer_delay,
        ..HecOptions::default()
    });
    let mut config = config(&receiver);
    config.indexer_acknowledgement = true;
    config.ack_poll_interval_secs = 0.02;
    // Past before any answer comes.
    config.ack_timeout_secs = 0.2;
    config.request_timeout_secs = 30.0;
    // One request, so one ack id, asked about by the first poll.
    let input = batches(&lines(10), 10);
    let expected = ids_of(&input);
    let letters = Arc::new(Letters::default());
    // A sink that drops the late answer sends the request again and again (every answer
    // comes late), so it never ends: bounded, that is the failure.
    let (statuses, result) = tokio::time::timeout(
        Duration::from_secs(30),
        run(config, input, Arc::clone(&letters)),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "never acknowledged; the events arrived up to {:?} times",
            receiver.ids().values().max()
        )
    });
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let ids = receiver.ids();
    for id in &expected {
        assert_eq!(
            ids.get(id),
            Some(&1),
            "{id} was sent again after HEC acknowledged it"
        );
    }
}

/// HEC answers an ack id `true` once and then forgets it: an id whose deadline passes
/// while a poll asking about it is out waits for that poll's answer, or the request HEC
/// acknowledged would be sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_answered_after_its_deadline_is_taken_not_sent_again() {
    // Within the poll's own deadline (1 s).
    a_late_ack_is_taken(Duration::from_millis(400)).await;
}

/// An answer slower than the poll's own deadline (1 s): the poll is late, another goes
/// out beside it, and the late one's `true` still counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_answered_after_the_polls_own_deadline_is_taken_not_sent_again() {
    a_late_ack_is_taken(Duration::from_millis(1500)).await;
}
