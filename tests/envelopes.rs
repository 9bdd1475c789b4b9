//! Envelopes and error paths through the real binary: gzip members, S3 objects glued
//! together, Parquet, Lambda events, JSON lines, bad input, unreadable input.

mod common;

use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use base64::Engine;
use common::{fixture, ocsf_errors, ocsf_validator, tempdir, transform, transform_file};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

const HEADER_V2: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
const LINE_A: &str = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";
const HEADER_CUSTOM: &str = "srcaddr dstaddr action some-future-field";

#[test]
fn concatenated_gzip_objects_with_their_header_lines() {
    // Two S3 objects, each gzip'd with its own header, concatenated: a multi-member gzip
    // stream whose format changes at the second header.
    let mut data = gzip(format!("{HEADER_V2}\n{LINE_A}\n{LINE_A}\n").as_bytes());
    data.extend(gzip(
        format!("{HEADER_CUSTOM}\r\n10.0.0.1 10.0.0.2 REJECT x-1\r\n").as_bytes(),
    ));
    let run = transform(&[], &data);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.records.len(), 3);
    assert_eq!(run.records[0]["srcport"], 20641);
    assert_eq!(
        run.records[2],
        json!({"srcaddr": "10.0.0.1", "dstaddr": "10.0.0.2", "action": "REJECT", "some_future_field": "x-1"})
    );
    assert!(run.stderr.contains("2 header lines"), "{}", run.stderr);
}

#[test]
fn quotes_and_backslashes_in_values_are_escaped() {
    // Nothing in a flow log should hold them, but a value that does must still come out
    // as valid JSON with the same text, short (inline) and long alike; a plain line in
    // the same input is written as usual.
    let input = format!(
        "{LINE_A}\n2 123456789010 eni-\"q\\ 172.31.16.139 172.31.16.21 1 22 6 20 4249 1418530010 1418530070 say\"no\"-to-this-long\\value OK\n"
    );
    let run = transform(&[], input.as_bytes());
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.records.len(), 2, "{}", run.stderr);
    assert_eq!(run.records[0]["interface_id"], "eni-1235b8ca123456789");
    assert_eq!(run.records[1]["interface_id"], "eni-\"q\\");
    assert_eq!(run.records[1]["action"], "say\"no\"-to-this-long\\value");
}

#[test]
fn bad_records_are_dead_lettered_with_field_and_line_and_the_stream_goes_on() {
    let input = [
        LINE_A,
        "",
        "2 123456789010 eni-1 172.31.16.139 172.31.16.21 70000 22 6 20 4249 1418530010 1418530070 ACCEPT OK",
        "2 123456789010 eni-1 172.31.16.999 172.31.16.21 1 22 6 20 4249 1418530010 1418530070 ACCEPT OK",
        "2 123456789010 eni-1 172.31.16.1 172.31.16.21 1 22 6 20 many 1418530010 1418530070 ACCEPT OK",
        "2 123456789010 eni-1 172.31.16.1 172.31.16.21 1 22 6 20 1 1418530010",
        "  2   123456789010 eni-1 ::1 fe80::1 1 22 6 20 1 1418530010123 1418530070 ACCEPT OK  ",
    ]
    .join("\n");
    let mut bytes = input.into_bytes();
    bytes.extend_from_slice(b"\n2 12345 eni-\xff\xfe 1.1.1.1 1.1.1.1 1 1 6 1 1 1 1 ACCEPT OK\n");
    let run = transform(&[], &bytes);
    assert!(
        run.success,
        "dead letters do not fail the run: {}",
        run.stderr
    );
    assert_eq!(run.records.len(), 2);
    // Milliseconds are recognised and kept exactly.
    assert_eq!(run.records[1]["start"], json!(1418530010.123));
    assert_eq!(run.records[1]["srcaddr"], "::1");
    let reasons: Vec<(u64, &str)> = run
        .dead_letters
        .iter()
        .map(|d| (d["line"].as_u64().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert_eq!(reasons[0].0, 3);
    assert!(
        reasons[0].1.contains("field `srcport`") && reasons[0].1.contains("`70000`"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].1.contains("field `srcaddr`")
            && reasons[1].1.contains("not an IPv4 or IPv6 address")
    );
    assert!(reasons[2].1.contains("field `bytes`") && reasons[2].1.contains("`many`"));
    assert!(reasons[3].1.starts_with("expected 14 fields, found 11"));
    assert_eq!(reasons[4].0, 8);
    assert!(reasons[4].1.contains("not valid UTF-8"));
    for d in &run.dead_letters {
        assert_eq!(d["source"], "-");
        assert!(d["raw"].as_str().unwrap().starts_with("2 12345"));
    }
}

#[test]
fn lambda_events_and_json_lines() {
    let cwl = json!({"messageType": "DATA_MESSAGE", "owner": "123456789010", "logGroup": "g", "logStream": "eni-1",
        "subscriptionFilters": ["f"], "logEvents": [{"id": "1", "timestamp": 0, "message": LINE_A}, {"id": "2", "timestamp": 0, "message": LINE_A}]});
    let data = base64::engine::general_purpose::STANDARD.encode(gzip(cwl.to_string().as_bytes()));
    let lambda = json!({"awslogs": {"data": data}});
    let run = transform(&[], lambda.to_string().as_bytes());
    assert_eq!(run.records.len(), 2, "{}", run.stderr);

    // Vector / Fluent Bit events: one JSON object per line; a broken line is a dead
    // letter at its line and the rest still decodes.
    let lines = format!(
        "{{\"message\":\"{LINE_A}\",\"host\":\"x\"}}\n{{\"message\": broken\n\n{{\"other\":1}}\n{{\"message\":\"{LINE_A}\"}}\n"
    );
    let run = transform(&[], lines.as_bytes());
    assert_eq!(run.records.len(), 2);
    let lines_of_dead: Vec<u64> = run
        .dead_letters
        .iter()
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines_of_dead, [2, 4]);
    assert!(run.dead_letters[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("not a JSON envelope"));
}

#[test]
fn parquet_objects() {
    let batch = RecordBatch::try_from_iter(vec![
        (
            "version",
            Arc::new(Int32Array::from(vec![5, 5, 5])) as ArrayRef,
        ),
        (
            "account_id",
            Arc::new(StringArray::from(vec![
                "000123456789",
                "000123456789",
                "000123456789",
            ])),
        ),
        (
            "srcaddr",
            Arc::new(StringArray::from(vec![
                Some("10.0.0.1"),
                Some("10.0.0.300"),
                Some("2001:db8::1"),
            ])),
        ),
        (
            "dstaddr",
            Arc::new(StringArray::from(vec![Some("-"), Some("10.0.0.2"), None])),
        ),
        (
            "srcport",
            Arc::new(Int32Array::from(vec![Some(443), Some(1), None])),
        ),
        ("packets", Arc::new(Int64Array::from(vec![10, 20, 30]))),
        (
            "start",
            Arc::new(Int64Array::from(vec![
                1_616_729_292,
                1_616_729_292,
                1_616_729_292,
            ])),
        ),
        (
            "action",
            Arc::new(StringArray::from(vec!["ACCEPT", "ACCEPT", "REJECT"])),
        ),
        (
            "future_field",
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ),
    ])
    .unwrap();
    let dir = tempdir();
    let path = dir.join("flows.parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let run = transform_file(&path, &[]);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.records.len(), 2);
    assert_eq!(
        run.records[0],
        json!({"version": 5, "account_id": "000123456789", "srcaddr": "10.0.0.1", "srcport": 443, "packets": 10,
               "start": 1616729292, "action": "ACCEPT", "future_field": "a"})
    );
    assert_eq!(run.records[1]["srcaddr"], "2001:db8::1");
    assert_eq!(run.dead_letters.len(), 1);
    let dead = &run.dead_letters[0];
    assert_eq!(dead["line"], 2);
    assert!(
        dead["reason"]
            .as_str()
            .unwrap()
            .contains("field `srcaddr`: `10.0.0.300`"),
        "{dead}"
    );
    assert_eq!(
        dead["raw"],
        "5 000123456789 10.0.0.300 10.0.0.2 1 20 1616729292 ACCEPT b"
    );

    // The same object on standard input (no random access: buffered).
    let run = transform(&[], &std::fs::read(&path).unwrap());
    assert_eq!(run.records.len(), 2);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unreadable_inputs_fail_the_run_but_not_the_other_inputs() {
    let dir = tempdir();
    let good = dir.join("good.log");
    std::fs::write(&good, format!("{LINE_A}\n")).unwrap();
    let corrupt = dir.join("corrupt.gz");
    let mut gz = gzip(format!("{LINE_A}\n").as_bytes());
    gz.truncate(gz.len() - 12);
    std::fs::write(&corrupt, gz).unwrap();
    let missing = dir.join("missing.log");
    let run = transform(
        &[
            missing.to_str().unwrap(),
            good.to_str().unwrap(),
            corrupt.to_str().unwrap(),
        ],
        b"",
    );
    assert!(!run.success);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.records.len(), 1, "the readable input is still decoded");
    assert!(
        run.stderr
            .contains(&format!("{}: cannot read", missing.display())),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("{}: cannot read", corrupt.display())),
        "{}",
        run.stderr
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_format_argument_is_a_usage_error() {
    let run = transform(&["--format", "srcaddr srcaddr"], b"");
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("field `srcaddr` appears twice"),
        "{}",
        run.stderr
    );
}

#[test]
fn fields_command_prints_the_catalogue() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowlog"))
        .args(["fields", "--csv"])
        .output()
        .unwrap();
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        csv,
        std::fs::read_to_string(common::manifest_dir().join("schemas/flow-log-fields.csv"))
            .unwrap()
    );
    assert_eq!(csv.lines().count(), 1 + 72);
}

#[test]
fn large_files_cross_block_and_window_boundaries() {
    // About 20 MiB: more than one mapping window and many blocks, with a long line.
    let dir = tempdir();
    let path = dir.join("big.log");
    let mut text = String::with_capacity(21 << 20);
    let mut expected = 0;
    for i in 0..190_000u64 {
        if i == 1000 {
            text.push_str(&"x".repeat(3 << 20));
            text.push('\n');
            continue;
        }
        text.push_str(&format!(
            "2 123456789010 eni-1235b8ca123456789 10.0.0.1 10.0.0.2 {} 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n",
            i % 65536
        ));
        expected += 1;
    }
    std::fs::write(&path, &text).unwrap();
    assert!(text.len() > 18 << 20);
    let run = transform_file(&path, &[]);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.records.len(), expected);
    assert_eq!(run.dead_letters.len(), 1);
    assert_eq!(run.dead_letters[0]["line"], 1001);
    for (i, r) in run.records.iter().enumerate().step_by(997) {
        let n = if i < 1000 { i } else { i + 1 } as u64;
        assert_eq!(r["srcport"], n % 65536, "record {i}");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// What the CloudWatch Logs payload in the fixtures says about its records.
const LOG_GROUP: &str = "/aws/vpc/flowlogs";
const LOG_STREAM: &str = "eni-1235b8ca123456789";
const OWNER: &str = "123456789010";

#[test]
fn cloudwatch_envelope_metadata_is_mapped_in_ecs_and_ocsf() {
    // A subscription payload as it is, and the same payload inside a Firehose request.
    let firehose = fixture("envelopes/firehose-http-request.cwl-subscription-gzip.json");
    for (input, request_id) in [
        (
            fixture("otel-collector-contrib/valid_vpc_flow_cw.json"),
            None,
        ),
        (firehose, Some("ed4acda5-034f-9f42-bba1-f29aea6d7d8f")),
    ] {
        let ecs = transform_file(&input, &["--to", "ecs", "--envelope-key", "envelope"]);
        assert!(ecs.success && !ecs.records.is_empty(), "{}", ecs.stderr);
        for (i, doc) in ecs.records.iter().enumerate() {
            let cloudwatch = &doc["aws"]["cloudwatch"];
            assert_eq!(cloudwatch["log_group"], LOG_GROUP);
            assert_eq!(cloudwatch["log_stream"], LOG_STREAM);
            assert_eq!(cloudwatch["event_id"], format!("eventId{}", i + 1));
            assert_eq!(doc["cloud"]["account"]["id"], OWNER);
            let envelope = &doc["envelope"];
            assert_eq!(
                envelope["subscription_filters"],
                json!(["MyFlowLogSubscription"])
            );
            assert_eq!(envelope["event_time"], "2014-12-14T04:06:50.000Z");
            // Mapped members are not repeated under the key.
            assert!(envelope.get("log_group").is_none() && envelope.get("owner").is_none());
            match request_id {
                Some(id) => {
                    assert_eq!(envelope["request_id"], id);
                    assert_eq!(doc["event"]["ingested"], "2020-01-03T22:35:01.599Z");
                }
                None => assert!(doc["event"].get("ingested").is_none()),
            }
        }

        let validator = ocsf_validator("1.1.0");
        let ocsf = transform_file(&input, &["--to", "ocsf", "--envelope-key", "unmapped"]);
        assert_eq!(ocsf.records.len(), ecs.records.len());
        for event in &ocsf.records {
            assert_eq!(ocsf_errors(&validator, event), Vec::<String>::new());
            assert_eq!(event["metadata"]["log_name"], LOG_GROUP);
            assert_eq!(event["cloud"]["account"]["uid"], OWNER);
            assert_eq!(event["unmapped"]["log_stream"], LOG_STREAM);
            if request_id.is_some() {
                assert_eq!(event["metadata"]["logged_time"], 1578090901599u64);
                assert_eq!(
                    event["metadata"]["logged_time_dt"],
                    "2020-01-03T22:35:01.599Z"
                );
            }
        }
    }
}

#[test]
fn firehose_and_engine_metadata_is_kept() {
    // Direct VPC -> Firehose delivery: `{"message"}` records inside a request.
    let input = fixture("envelopes/firehose-http-request.vpc-direct-message-json.json");
    let ecs = transform_file(&input, &["--to", "ecs", "--envelope-key", "envelope"]);
    assert_eq!(ecs.records.len(), 2, "{}", ecs.stderr);
    for doc in &ecs.records {
        assert_eq!(doc["event"]["ingested"], "2020-01-03T22:35:01.599Z");
        assert_eq!(
            doc["envelope"],
            json!({"request_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"})
        );
        assert!(doc["aws"].get("cloudwatch").is_none());
    }
    for version in ["1.0.0-rc.2", "1.1.0", "1.8.0"] {
        let validator = ocsf_validator(version);
        let args = [
            "--to",
            "ocsf",
            "--ocsf-version",
            version,
            "--envelope-key",
            "unmapped",
        ];
        for event in &transform_file(&input, &args).records {
            assert_eq!(ocsf_errors(&validator, event), Vec::<String>::new());
            assert_eq!(event["metadata"]["logged_time"], 1578090901599u64);
            assert_eq!(
                event["unmapped"]["request_id"],
                "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
            );
        }
    }

    // Vector's events: `timestamp` is when it read the line; the rest goes under the key
    // as it came, quotes and all. A record's own account wins over nothing else.
    let event = json!({"message": LINE_A, "timestamp": "2024-05-01T12:00:00.123456Z",
        "host": "ip-10-0-0-5", "source_type": "file", "file": "/var/log/a \"b\".log"});
    let run = transform(
        &["--to", "ecs", "--envelope-key", "vector"],
        format!("{event}\n").as_bytes(),
    );
    let doc = &run.records[0];
    assert_eq!(doc["event"]["ingested"], "2024-05-01T12:00:00.123Z");
    assert_eq!(
        doc["vector"],
        json!({"host": "ip-10-0-0-5", "source_type": "file", "file": "/var/log/a \"b\".log"})
    );
    // Without a key, only what the target maps is written; raw writes none of it.
    let run = transform(&["--to", "raw"], format!("{event}\n").as_bytes());
    assert!(run.records[0].get("envelope_fields").is_none());
    assert!(run.records[0].get("host").is_none());
    let run = transform(
        &["--to", "raw", "--envelope-key", "meta"],
        format!("{event}\n").as_bytes(),
    );
    assert_eq!(
        run.records[0]["meta"]["received"],
        "2024-05-01T12:00:00.123Z"
    );
    assert_eq!(run.records[0]["meta"]["host"], "ip-10-0-0-5");
}

#[test]
fn a_custom_format_without_account_takes_the_log_group_owner() {
    let cwl = json!({"messageType": "DATA_MESSAGE", "owner": "210987654321", "logGroup": "g",
        "logStream": "eni-9", "subscriptionFilters": ["f"],
        "logEvents": [{"id": "e1", "timestamp": 1418530010000u64, "message": "eni-9 10.0.0.1 10.0.0.2 ACCEPT"}]});
    let args = [
        "--format",
        "${interface-id} ${srcaddr} ${dstaddr} ${action}",
    ];
    for (to, pointer) in [("ecs", "/cloud/account/id"), ("ocsf", "/cloud/account/uid")] {
        let mut all = args.to_vec();
        all.extend(["--to", to]);
        let run = transform(&all, cwl.to_string().as_bytes());
        assert_eq!(
            run.records[0].pointer(pointer),
            Some(&json!("210987654321")),
            "{to}"
        );
    }
}

#[test]
fn envelope_metadata_stays_with_its_record_across_batches_and_dead_letters() {
    // Each event's id names its source port; every 997th event is broken.
    let events: Vec<_> = (1..=20_000u32)
        .map(|i| {
            let message = if i % 997 == 0 {
                format!("2 123456789010 eni-1 10.0.0.1 10.0.0.2 {i} 443 6 x 1 1418530010 1418530070 ACCEPT OK")
            } else {
                format!("2 123456789010 eni-1 10.0.0.1 10.0.0.2 {i} 443 6 1 1 1418530010 1418530070 ACCEPT OK")
            };
            json!({"id": format!("e{i}"), "timestamp": 0, "message": message})
        })
        .collect();
    let half = events.len() / 2;
    let payload = |events: &[serde_json::Value], stream: &str| {
        json!({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g", "logStream": stream,
            "subscriptionFilters": [], "logEvents": events})
        .to_string()
    };
    let input = format!(
        "{}\n{}\n",
        payload(&events[..half], "s1"),
        payload(&events[half..], "s2")
    );
    let run = transform(&["--to", "ecs"], input.as_bytes());
    assert_eq!(run.dead_letters.len(), 20_000 / 997);
    assert_eq!(run.records.len(), 20_000 - 20_000 / 997);
    for doc in &run.records {
        let port = doc["source"]["port"].as_u64().unwrap();
        assert_eq!(doc["aws"]["cloudwatch"]["event_id"], format!("e{port}"));
        let stream = if port as usize <= half { "s1" } else { "s2" };
        assert_eq!(doc["aws"]["cloudwatch"]["log_stream"], stream);
    }
}
