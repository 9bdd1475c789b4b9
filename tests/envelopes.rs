//! Envelopes and error paths through the real binary: gzip members, S3 objects glued
//! together, Parquet, Lambda events, JSON lines, bad input, unreadable input.

mod common;

use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use base64::Engine;
use common::{tempdir, transform, transform_file};
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
