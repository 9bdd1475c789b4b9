//! Parity with the OpenTelemetry Collector's own VPC flow decoding
//! (`awslogsencodingextension`): every input of `../shared/fixtures/otel-collector-contrib`
//! that has an expected output goes through flowlog's decoder and this sink (gRPC,
//! `attributes = "collector"`, no enrichment) into the test receiver; what arrives must
//! carry the same resource attributes, the same record attributes with the same value
//! types, and the same times as the Collector's expected YAML, but for the differences
//! listed in [`DELIBERATE`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use flowlog_decode::DecodeOptions;
use flowlog_model::{FlowBatch, FlowFormat, SourceId};
use flowlog_sink::{BatchStatus, Metrics};
use flowlog_sink_otlp::{OtlpConfig, OtlpSink};
use flowlog_test_receivers::harness::{self, run_sink, Letters};
use flowlog_test_receivers::otlp::{OtlpOptions, OtlpReceiver};
use serde_json::Value;

/// Where flowlog's records differ from the Collector's, on purpose: (where, key, why).
const DELIBERATE: &[(&str, &str, &str)] = &[
    (
        "record",
        "flowlog.id",
        "the record's deterministic id (source + line), which receivers can deduplicate on",
    ),
    (
        "record",
        "network.community_id",
        "the Community ID of the 5-tuple, as Zeek, Suricata and Elastic write it",
    ),
    (
        "resource",
        "cloud.account.id",
        "for CloudWatch input whose format has no account-id: the log group's owner",
    ),
    (
        "record",
        "observedTimeUnixNano",
        "when flowlog took the record (the log data model says a collector sets it)",
    ),
    (
        "scope",
        "name",
        "`flowlog` and its version, not the Collector's extension",
    ),
];

/// Inputs with the Collector's expected output, and the format CloudWatch lines have.
const CASES: &[(&str, &str, Option<&str>)] = &[
    (
        "valid_vpc_flow_log.log",
        "valid_vpc_flow_log_single_expected.yaml",
        None,
    ),
    (
        "valid_vpc_flow_log_multi.log",
        "valid_vpc_flow_log_expected_multi.yaml",
        None,
    ),
    (
        "valid_tgw_flow_log.log",
        "valid_tgw_flow_log_expected.yaml",
        None,
    ),
    (
        "valid_vpc_flow_cw.json",
        "valid_vpc_flow_cw_expected.yaml",
        None,
    ),
    (
        "valid_vpc_flow_cw_custom.json",
        "valid_vpc_flow_cw_custom_expected.yaml",
        Some("${version} ${interface-id} ${srcaddr} ${dstaddr}"),
    ),
];

/// Expected outputs not compared, and why.
const NOT_COMPARED: &[(&str, &str)] = &[
    (
        "valid_vpc_flow_log_expected_multi_iso8601.yaml",
        "the Collector's option to write `aws.vpc.flow.start` as RFC 3339 text; flowlog writes Unix seconds as the default does",
    ),
    (
        "valid_flow_log_parquet_expected.yaml",
        "its input (valid_flow_log.parquet) is not among the shared fixtures",
    ),
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/otel-collector-contrib")
}

fn decode(input: &str, format: Option<&str>) -> Vec<FlowBatch> {
    let path = dir().join(input);
    let bytes = std::fs::read(&path).unwrap();
    let options = DecodeOptions {
        format: format.map(|f| FlowFormat::parse(f).unwrap()),
        ..DecodeOptions::default()
    };
    harness::decode(&bytes, SourceId::new(path.display().to_string()), &options)
}

/// What arrived, as OTLP/JSON (the form of the Collector's expected YAML).
async fn through_the_sink(batches: Vec<FlowBatch>) -> Value {
    let receiver = OtlpReceiver::start(OtlpOptions::default());
    let mut config = OtlpConfig::new(receiver.url());
    config.batch_timeout_secs = 0.01;
    let metrics = Metrics::new();
    let sink = OtlpSink::new(
        "otel",
        config,
        metrics.component("sink", "otel"),
        Arc::new(Letters::default()),
    )
    .unwrap();
    let (statuses, result) = run_sink(Box::new(sink), batches).await;
    result.unwrap();
    assert!(statuses.iter().all(|s| *s == BatchStatus::Delivered));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "one request for a small input");
    serde_json::to_value(&requests[0]).unwrap()
}

/// `key -> value` of an attribute list, without the deliberate additions at `place`.
fn attributes(list: &Value, place: &str, deliberate: bool) -> BTreeMap<String, Value> {
    list.as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv["value"].clone()))
        .filter(|(key, _)| {
            !deliberate || !DELIBERATE.iter().any(|(p, k, _)| *p == place && k == key)
        })
        .collect()
}

fn records(request: &Value) -> Vec<(BTreeMap<String, Value>, Value, Value)> {
    let mut out = Vec::new();
    for resource_logs in request["resourceLogs"].as_array().unwrap() {
        for scope_logs in resource_logs["scopeLogs"].as_array().unwrap() {
            for record in scope_logs["logRecords"].as_array().unwrap() {
                out.push((
                    attributes(&record["attributes"], "record", true),
                    record["timeUnixNano"].clone(),
                    record["body"].clone(),
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_match_the_collectors_expected_outputs() {
    let mut compared = Vec::new();
    for (input, expected_file, format) in CASES {
        let expected: Value = serde_yaml_ng::from_reader(
            std::fs::File::open(dir().join("expected").join(expected_file)).unwrap(),
        )
        .unwrap();
        let ours = through_the_sink(decode(input, *format)).await;

        let their_resources: Vec<_> = expected["resourceLogs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| attributes(&r["resource"]["attributes"], "resource", false))
            .collect();
        let our_resources: Vec<_> = ours["resourceLogs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut ours = attributes(&r["resource"]["attributes"], "resource", false);
                // The owner stands in for a missing account id (listed as deliberate).
                if their_resources
                    .iter()
                    .all(|t| !t.contains_key("cloud.account.id"))
                {
                    ours.remove("cloud.account.id");
                }
                ours
            })
            .collect();
        assert_eq!(
            our_resources, their_resources,
            "{input}: resource attributes"
        );

        let theirs = records(&expected);
        let mine = records(&ours);
        assert_eq!(mine.len(), theirs.len(), "{input}: records");
        for (i, ((our_attrs, our_time, our_body), (their_attrs, their_time, their_body))) in
            mine.iter().zip(&theirs).enumerate()
        {
            assert_eq!(our_attrs, their_attrs, "{input}: record {i} attributes");
            // Unset times are 0 in protobuf and absent in the Collector's YAML.
            let our_time = if our_time == "0" {
                &Value::Null
            } else {
                our_time
            };
            assert_eq!(our_time, their_time, "{input}: record {i} time");
            assert_eq!(our_body, their_body, "{input}: record {i} body");
        }
        // The scope carries the format's mark, as the Collector's does.
        let scope = &ours["resourceLogs"][0]["scopeLogs"][0]["scope"];
        assert_eq!(
            attributes(&scope["attributes"], "scope", false),
            attributes(
                &expected["resourceLogs"][0]["scopeLogs"][0]["scope"]["attributes"],
                "scope",
                false
            ),
            "{input}: scope attributes"
        );
        assert_eq!(scope["name"], "flowlog");
        compared.push(*expected_file);
    }
    // Every expected output is compared or listed with a reason.
    for entry in std::fs::read_dir(dir().join("expected")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            compared.contains(&name.as_str()) || NOT_COMPARED.iter().any(|(n, _)| *n == name),
            "{name} is neither compared nor listed"
        );
    }
}
