//! Conformance: every fixture in `../shared/fixtures` decodes to the records the peers
//! (AWS's documentation, Vector's VRL, Elastic's ingest pipeline, the OpenTelemetry
//! Collector) expect, through the real binary.

mod common;

use common::{days_from_civil, elastic_fixture_formats, fixture, transform, transform_file};
use serde_json::{json, Value};

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// Where Elastic's document holds each raw field (first path that exists is compared).
fn elastic_paths(field: &str) -> Vec<String> {
    let direct = match field {
        "srcaddr" => vec!["source.address", "source.ip"],
        "dstaddr" => vec!["destination.address", "destination.ip"],
        "srcport" => vec!["source.port"],
        "dstport" => vec!["destination.port"],
        "bytes" => vec!["network.bytes", "source.bytes"],
        "packets" => vec!["network.packets", "source.packets"],
        "protocol" => vec!["network.iana_number"],
        "start" => vec!["event.start"],
        "end" => vec!["event.end", "@timestamp"],
        "region" => vec!["cloud.region"],
        "az_id" => vec!["cloud.availability_zone"],
        "flow_direction" => vec!["network.direction"],
        "reject_reason" => vec!["event.reason"],
        "ecs_cluster_arn" => vec!["orchestrator.cluster.id"],
        "ecs_cluster_name" => vec!["orchestrator.cluster.name"],
        "ecs_container_instance_arn" => vec!["orchestrator.resource.name"],
        "ecs_container_instance_id" => vec!["orchestrator.resource.id"],
        "ecs_service_name" => vec!["service.name"],
        "pkt_src_aws_service" => vec!["aws.vpcflow.pkt_src_service"],
        "pkt_dst_aws_service" => vec!["aws.vpcflow.pkt_dst_service"],
        _ => vec![],
    };
    let mut paths: Vec<String> = direct.into_iter().map(String::from).collect();
    paths.push(format!("aws.vpcflow.{field}"));
    paths
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp such as `2021-12-20T11:38:17.000Z`.
fn epoch_seconds(ts: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (hh, mm, ss) = (n(11..13), n(14..16), n(17..19));
    days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss
}

/// Elastic keeps numbers as strings in places, and times as RFC 3339: compare as text.
fn same_value(ours: &Value, theirs: &Value) -> bool {
    match (ours, theirs) {
        (Value::Number(n), Value::String(s)) if s.contains('T') => {
            n.as_i64() == Some(epoch_seconds(s))
        }
        (Value::Number(n), Value::String(s)) => n.to_string() == *s,
        _ => ours == theirs,
    }
}

fn check_against_elastic(file: &str, format: &str) {
    let input = fixture(&format!("elastic-integrations/{file}"));
    let expected = &common::elastic_expected(file);
    let run = transform_file(&input, &["--format", format]);
    assert!(run.success, "{}", run.stderr);
    assert!(run.dead_letters.is_empty(), "{:?}", run.dead_letters);
    assert_eq!(run.records.len(), expected.len(), "{file}: record count");
    for (i, (ours, theirs)) in run.records.iter().zip(expected).enumerate() {
        for (field, value) in ours.as_object().unwrap() {
            let paths = elastic_paths(field);
            let found = paths.iter().find_map(|p| get(theirs, p));
            match found {
                // Elastic leaks "-" into some fields (cloud.region: "-"); flowlog leaves the
                // field out, so a "-" there means the same record disagrees elsewhere.
                Some(Value::String(s)) if s == "-" => {
                    panic!("{file}[{i}] {field}: we have {value}, Elastic has '-'")
                }
                Some(theirs_value) => assert!(
                    same_value(value, theirs_value),
                    "{file}[{i}] {field}: ours {value}, Elastic's {theirs_value}"
                ),
                None => panic!(
                    "{file}[{i}] {field} = {value} is not in Elastic's document at {paths:?}"
                ),
            }
        }
        // And everything Elastic parsed out of the line, flowlog has too.
        for path in [
            "source.address",
            "destination.address",
            "source.port",
            "destination.port",
            "network.iana_number",
            "event.start",
            "event.end",
        ] {
            if let Some(v) = get(theirs, path) {
                let field = ours
                    .as_object()
                    .unwrap()
                    .iter()
                    .find(|(k, _)| elastic_paths(k).iter().any(|p| p == path));
                assert!(
                    field.is_some_and(|(_, o)| same_value(o, v)),
                    "{file}[{i}] {path} = {v} missing or different"
                );
            }
        }
        if let Some(Value::Object(vpcflow)) = get(theirs, "aws.vpcflow") {
            for (key, v) in vpcflow {
                if matches!(key.as_str(), "sublocation" | "tcp_flags_array") || v == "-" {
                    continue;
                }
                let field = key.replace("_service", "_aws_service");
                let field = if ours.get(key).is_some() {
                    key.clone()
                } else {
                    field
                };
                assert!(
                    ours.get(&field).is_some_and(|o| same_value(o, v)),
                    "{file}[{i}] aws.vpcflow.{key} = {v}, ours {:?}",
                    ours.get(&field)
                );
            }
        }
    }
}

#[test]
fn elastic_integration_samples() {
    for (file, format) in elastic_fixture_formats() {
        check_against_elastic(file, &format);
    }
}

#[test]
fn elastic_inputs_without_expectations_decode_cleanly() {
    // A header line before every record (concatenated S3 objects) and an older sample.
    let run = transform_file(
        &fixture("elastic-integrations/test-tcp-flag-sequence.with-headers-013f7d52.log"),
        &[],
    );
    assert_eq!(run.records.len(), 3);
    assert!(run.dead_letters.is_empty());
    assert_eq!(run.records[1]["log_status"], "SKIPDATA");
    assert!(run.records[1].get("srcaddr").is_none());
    let run = transform_file(
        &fixture("elastic-integrations/test-extra-samples.older-3293a89e.log"),
        &[],
    );
    assert_eq!(run.records.len(), 7);
    assert!(run.dead_letters.is_empty());
}

/// VRL returns `null` for `-`; flowlog leaves the key out.
fn without_nulls(v: &Value) -> Value {
    let map = v.as_object().unwrap();
    Value::Object(
        map.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

#[test]
fn vrl_documentation_examples() {
    let doc: Value = serde_json::from_slice(
        &std::fs::read(fixture("vrl/parse_aws_vpc_flow_log.docs-examples.json")).unwrap(),
    )
    .unwrap();
    let examples = doc["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 4);
    for example in examples {
        let source = example["source"].as_str().unwrap();
        // parse_aws_vpc_flow_log!("LINE"[, [format:] "FORMAT"])
        let strings: Vec<&str> = source.split('"').skip(1).step_by(2).collect();
        let (line, format) = (strings[0], strings.get(1));
        let args: Vec<&str> = format.map(|f| vec!["--format", *f]).unwrap_or_default();
        let run = transform(&args, format!("{line}\n").as_bytes());
        assert!(run.dead_letters.is_empty(), "{:?}", run.dead_letters);
        assert_eq!(
            run.records,
            vec![without_nulls(&example["return"])],
            "{}",
            example["title"]
        );
    }
}

#[test]
fn vrl_unit_test_vectors() {
    let doc: Value = serde_json::from_slice(
        &std::fs::read(fixture("vrl/parse_aws_vpc_flow_log.test-vectors.json")).unwrap(),
    )
    .unwrap();
    for case in doc["cases"].as_array().unwrap() {
        let format = case["format"]
            .as_str()
            .unwrap()
            .trim_start_matches("(default v2) ");
        let lines: Vec<&str> = case["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(case["expect"], "parse_ok");
        let run = transform(&["--format", format], (lines.join("\n") + "\n").as_bytes());
        assert!(
            run.dead_letters.is_empty(),
            "{format}: {:?}",
            run.dead_letters
        );
        assert_eq!(run.records.len(), lines.len());
        // Each field holds its token: integers as numbers, the rest as the same text.
        let names: Vec<&str> = format.split_whitespace().collect();
        for (line, record) in lines.iter().zip(&run.records) {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            for (name, token) in names.iter().zip(&tokens) {
                let ours = record.get(*name);
                if *token == "-" {
                    assert!(ours.is_none(), "{name} should be absent in {line}");
                } else {
                    let ours = ours.unwrap_or_else(|| panic!("{name} missing for {line}"));
                    let as_text = match ours {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    assert_eq!(as_text, *token, "{name} in {line}");
                }
            }
        }
    }
}

#[test]
fn aws_documentation_examples() {
    let run = transform_file(&fixture("aws-docs/default-v2.log"), &[]);
    assert_eq!(run.records.len(), 7);
    assert_eq!(
        run.records[2],
        json!({"version": 2, "account_id": "123456789010", "interface_id": "eni-1235b8ca123456789", "start": 1431280876, "end": 1431280934, "log_status": "NODATA"})
    );
    assert_eq!(
        run.records[6]["srcaddr"],
        "2001:db8:1234:a100:8d6e:3477:df66:f105"
    );
    assert_eq!(run.records[4]["protocol"], 1);

    // The double space in the eighth record collapses.
    let run = transform_file(&fixture("aws-docs/tcp-flag-sequence-v3.log"), &[]);
    let flags: Vec<i64> = run
        .records
        .iter()
        .map(|r| r["tcp_flags"].as_i64().unwrap())
        .collect();
    assert_eq!(flags, [2, 18, 2, 18, 1, 1, 3, 19]);
    assert_eq!(run.records[7]["pkt_srcaddr"], "10.0.0.62");

    let run = transform_file(&fixture("aws-docs/nat-gateway-custom.log"), &[]);
    assert_eq!(run.records.len(), 6);
    assert!(run.records[0].get("instance_id").is_none());
    assert_eq!(run.records[5]["instance_id"], "i-01234567890123456");
    assert!(
        run.records[0].get("version").is_none(),
        "custom format without version"
    );

    let run = transform_file(
        &fixture("aws-docs/service-traffic-path-direction-v5.log"),
        &[],
    );
    assert_eq!(run.records[0]["pkt_src_aws_service"], "S3");
    assert!(run.records[0].get("traffic_path").is_none());
    assert_eq!(run.records[1]["traffic_path"], 8);
    assert_eq!(run.records[1]["flow_direction"], "egress");

    // Double spaces and a non-ASCII character in an id, kept as UTF-8.
    let run = transform_file(&fixture("aws-docs/tgw-flowlog-v6-from-beats.log"), &[]);
    assert_eq!(run.records.len(), 1);
    let r = &run.records[0];
    assert_eq!(r["tgw_src_subnet_id"], "subnet-3fbc536e360c36caб");
    assert_eq!(r["tgw_src_vpc_account_id"], "123456789123");
    assert_eq!(r["packets_lost_mtu_exceeded"], 2);
    assert_eq!(r["resource_type"], "TransitGateway");

    let run = transform_file(&fixture("aws-docs/transit-gateway-vpc-custom-v3.log"), &[]);
    assert_eq!(run.records.len(), 4);
    assert_eq!(run.records[2]["pkt_srcaddr"], "10.20.33.164");

    let run = transform_file(
        &fixture("aws-docs/encryption-status-custom-no-version.log"),
        &[],
    );
    assert_eq!(run.records.len(), 8);
    assert_eq!(
        run.records[0],
        json!({"flow_direction": "ingress", "srcaddr": "10.0.133.8", "dstaddr": "10.0.128.55", "srcport": 43236, "dstport": 80, "encryption_status": 1})
    );
    assert_eq!(run.records[7]["encryption_status"], 0);
    for name in [
        "default-v2",
        "tcp-flag-sequence-v3",
        "nat-gateway-custom",
        "service-traffic-path-direction-v5",
        "tgw-flowlog-v6-from-beats",
        "transit-gateway-vpc-custom-v3",
        "encryption-status-custom-no-version",
    ] {
        let run = transform_file(&fixture(&format!("aws-docs/{name}.log")), &[]);
        assert!(
            run.success && run.dead_letters.is_empty(),
            "{name}: {:?} {}",
            run.dead_letters,
            run.stderr
        );
    }
}

#[test]
fn otel_collector_fixtures() {
    let default_pair = |run: &common::Run| {
        assert_eq!(run.records.len(), 2);
        assert_eq!(run.records[0]["srcaddr"], "172.31.16.139");
        assert_eq!(run.records[1]["action"], "REJECT");
    };
    default_pair(&transform_file(
        &fixture("otel-collector-contrib/valid_vpc_flow_log_multi.log"),
        &[],
    ));
    default_pair(&transform_file(
        &fixture("otel-collector-contrib/valid_vpc_flow_cw.json"),
        &[],
    ));

    let run = transform_file(
        &fixture("otel-collector-contrib/valid_vpc_flow_log.log"),
        &[],
    );
    assert_eq!(
        run.records,
        vec![
            json!({"version": 2, "account_id": "12345678910", "interface_id": "eni-0eb1e4178af74336c", "start": 1742570089, "end": 1742570142, "log_status": "NODATA"})
        ]
    );

    let run = transform_file(
        &fixture("otel-collector-contrib/valid_vpc_flow_cw_custom.json"),
        &[
            "--format",
            "${version} ${interface-id} ${srcaddr} ${dstaddr}",
        ],
    );
    assert_eq!(
        run.records,
        vec![
            json!({"version": 2, "interface_id": "eni-1235b8ca123456789", "srcaddr": "172.31.16.139", "dstaddr": "172.31.16.21"}),
            json!({"version": 2, "interface_id": "eni-1235b8ca123456789", "srcaddr": "172.31.9.69", "dstaddr": "172.31.9.12"}),
        ]
    );

    let tgw = transform_file(
        &fixture("otel-collector-contrib/valid_tgw_flow_log.log"),
        &[],
    );
    assert_eq!(tgw.records.len(), 1);
    assert_eq!(tgw.records[0]["packets_lost_ttl_expired"], 4);
    let cw_format = "version account-id tgw-id tgw-attachment-id tgw-src-vpc-id tgw-dst-vpc-id tgw-src-subnet-id tgw-dst-subnet-id tgw-src-eni tgw-dst-eni tgw-src-az-id tgw-dst-az-id tgw-pair-attachment-id srcaddr dstaddr srcport dstport protocol packets bytes start end log-status type tcp-flags flow-direction region";
    let cw = transform_file(
        &fixture("otel-collector-contrib/valid_tgw_flow_cw.json"),
        &["--format", cw_format],
    );
    assert!(cw.dead_letters.is_empty(), "{:?}", cw.dead_letters);
    assert_eq!(
        cw.records[0]["tgw_pair_attachment_id"],
        "tgw-attach-0def12345abc67890"
    );
    assert_eq!(cw.records[0]["region"], "us-east-1");

    // Wrong field counts are dead letters with the reason, the source and the line.
    for (file, found) in [
        ("vpc_flow_log_too_few_fields.log", 13),
        ("vpc_flow_log_too_many_fields.log", 15),
    ] {
        let path = fixture(&format!("otel-collector-contrib/{file}"));
        let run = transform_file(&path, &[]);
        assert!(run.success, "dead letters do not fail the run");
        assert!(run.records.is_empty());
        assert_eq!(run.dead_letters.len(), 1);
        let dl = &run.dead_letters[0];
        assert_eq!(dl["source"], path.to_str().unwrap());
        assert_eq!(dl["line"], 2);
        assert!(
            dl["reason"]
                .as_str()
                .unwrap()
                .starts_with(&format!("expected 14 fields, found {found}")),
            "{dl}"
        );
        assert!(dl["raw"]
            .as_str()
            .unwrap()
            .starts_with("2 12345678910 eni-0eb1e4178af74336c"));
    }
}

#[test]
fn firehose_and_cloudwatch_envelopes() {
    let expected = transform_file(
        &fixture("otel-collector-contrib/valid_vpc_flow_cw.json"),
        &[],
    )
    .records;
    let run = transform_file(
        &fixture("envelopes/firehose-http-request.cwl-subscription-gzip.json"),
        &[],
    );
    assert_eq!(run.records, expected);

    let run = transform_file(
        &fixture("envelopes/firehose-http-request.vpc-direct-message-json.json"),
        &[],
    );
    assert_eq!(run.records.len(), 2);
    assert_eq!(run.records[1]["log_status"], "NODATA");

    let run = transform_file(
        &fixture("envelopes/cwl-subscription.control-message.json"),
        &[],
    );
    assert!(run.success);
    assert!(run.records.is_empty() && run.dead_letters.is_empty());
    assert!(run.stderr.contains("1 control messages"), "{}", run.stderr);
}
