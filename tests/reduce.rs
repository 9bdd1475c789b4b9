//! `[transform.reduce]` in `flowlog run`: aggregation keeps every flow key's bytes and
//! packets exactly, on the bench corpus and on long-lived flows reported every minute;
//! every record is accounted for; sampling and cross-interface duplicates end to end.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A flow key as the test sees it, and what it sums.
type Sums = BTreeMap<String, (i64, i64, i64)>;

/// Per key (interface, addresses, ports, protocol, action, status): bytes, packets,
/// records, from v2 lines.
fn sums_of_lines(text: &str) -> Sums {
    let mut sums = Sums::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let key = [f[2], f[3], f[4], f[5], f[6], f[7], f[12], f[13]].join(" ");
        let e = sums.entry(key).or_default();
        e.0 += f[9].parse::<i64>().unwrap_or(0);
        e.1 += f[8].parse::<i64>().unwrap_or(0);
        e.2 += 1;
    }
    sums
}

/// The same from the raw documents `flowlog run` wrote, counting `merged_count`.
fn sums_of_documents(docs: &[Value]) -> Sums {
    let text = |d: &Value, k: &str| match &d[k] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut sums = Sums::new();
    for d in docs {
        let key = [
            "interface_id",
            "srcaddr",
            "dstaddr",
            "srcport",
            "dstport",
            "protocol",
            "action",
            "log_status",
        ]
        .iter()
        .map(|k| text(d, k))
        .collect::<Vec<_>>()
        .join(" ");
        let e = sums.entry(key).or_default();
        e.0 += d["bytes"].as_i64().unwrap_or(0);
        e.1 += d["packets"].as_i64().unwrap_or(0);
        e.2 += d["merged_count"].as_i64().unwrap_or(1);
    }
    sums
}

/// Runs `flowlog run --once` over `input` into a raw file sink with `reduce` as the
/// `[transform.reduce]` table; the documents and the log.
fn reduce(input: &Path, reduce: &str) -> (Vec<Value>, String) {
    // A data dir of its own: another run's checkpoints would say the input was read.
    let dir = common::tempdir();
    let out = dir.join("out.ndjson");
    let config = common::runs::write_config(
        &dir,
        &format!("type = \"file\"\npaths = [\"{}\"]", input.display()),
        &format!(
            "[transform.reduce]\n{reduce}\n[sinks.out]\ntype = \"file\"\npath = \"{}\"\n",
            out.display()
        ),
    );
    let mut command = common::runs::flowlog(&["run", "--once"], &config);
    command.env("RUST_LOG", "info");
    let (ok, log) = common::runs::run_to_end(command);
    assert!(ok, "{log}");
    let docs = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (docs, log)
}

fn bench_corpus(dir: &Path, n: usize) -> (PathBuf, String) {
    let generator = common::manifest_dir().join("../shared/bench/gen_flowlogs.py");
    let out = common::run_python([generator.into_os_string(), n.to_string().into()]);
    let path = dir.join("bench.log");
    std::fs::write(&path, &out).unwrap();
    (path, String::from_utf8(out).unwrap())
}

/// 400 connections that last an hour, each reported every minute by its interface (the
/// default aggregation interval), among 4000 one-off flows.
fn long_lived_corpus(dir: &Path) -> (PathBuf, String) {
    // On a ten-minute boundary, so an hour is six windows.
    let t0 = 1_763_799_600;
    let mut lines = Vec::new();
    for minute in 0..60 {
        for c in 0..400 {
            let start = t0 + minute * 60;
            lines.push(format!(
                "2 123456789012 eni-{:04} 10.0.{}.{} 52.94.{}.{} {} 443 6 {} {} {start} {} ACCEPT OK",
                c % 40,
                c / 200,
                c % 200 + 10,
                c % 7,
                c % 250 + 1,
                30000 + c,
                10 + c % 90,
                (10 + c % 90) * 900,
                start + 59
            ));
        }
        for o in 0..67 {
            let start = t0 + minute * 60 + o % 60;
            lines.push(format!(
                "2 123456789012 eni-{:04} 10.0.9.{} 198.51.100.{} {} 53 17 1 80 {start} {} ACCEPT OK",
                o % 40,
                o % 200 + 1,
                o + 1,
                40000 + minute * 100 + o,
                start + 1
            ));
        }
    }
    let text = lines.join("\n") + "\n";
    let path = dir.join("long-lived.log");
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

#[test]
fn aggregation_keeps_every_keys_sums_on_the_bench_corpus() {
    let dir = common::tempdir();
    let (input, text) = bench_corpus(&dir, 100_000);
    let (docs, log) = reduce(
        &input,
        "aggregate = true\nwindow_secs = 60\nexempt_rejects = false",
    );
    assert_eq!(sums_of_documents(&docs), sums_of_lines(&text));
    assert!(docs.len() < 100_000);
    assert!(log.contains("reduce: 100000 records in"), "{log}");
}

#[test]
fn aggregation_merges_long_lived_flows_and_keeps_their_sums() {
    let dir = common::tempdir();
    let (input, text) = long_lived_corpus(&dir);
    let lines = text.lines().count();
    // Ten-minute windows: each connection's ten reports become one.
    let (docs, log) = reduce(&input, "aggregate = true\nwindow_secs = 600");
    assert_eq!(sums_of_documents(&docs), sums_of_lines(&text));
    assert_eq!(docs.len(), 400 * 6 + 67 * 60, "{log}");
    let merged: Vec<&Value> = docs.iter().filter(|d| d["merged_count"] == 10).collect();
    assert_eq!(merged.len(), 2400);
    // A merged record spans its window: the first report's start, the last one's end.
    let first = merged[0];
    assert_eq!(
        first["end"].as_i64().unwrap() - first["start"].as_i64().unwrap(),
        9 * 60 + 59
    );
    assert!(
        log.contains(&format!("reduce: {lines} records in, {} out", docs.len())),
        "{log}"
    );
}

#[test]
fn sampling_and_duplicates_end_to_end() {
    let dir = common::tempdir();
    let (input, text) = long_lived_corpus(&dir);
    // Each flow again as the peer interface recorded it, delivered alongside.
    let mirrored: String = text
        .lines()
        .map(|l| format!("{l}\n{}\n", l.replacen("eni-", "eni-peer-", 1)))
        .collect();
    std::fs::write(&input, mirrored).unwrap();
    let lines = 2 * text.lines().count();
    let (docs, log) = reduce(&input, "dedup_interfaces = true");
    assert_eq!(docs.len(), lines / 2, "{log}");
    assert!(docs
        .iter()
        .all(|d| !d["interface_id"].as_str().unwrap().contains("peer")));
    let (docs, log) = reduce(&input, "dedup_interfaces = true\nsample_rate = 0.5");
    assert!(
        docs.len() < lines / 2 && docs.len() > lines / 8,
        "{} {log}",
        docs.len()
    );
    assert!(log.contains("sampled out"), "{log}");
}

#[test]
fn batches_sampled_to_nothing_are_acknowledged_while_others_are_held() {
    let dir = common::tempdir();
    let (input, text) = long_lived_corpus(&dir);
    // Almost everything sampled out: most batches come out empty, and must not wait.
    let (docs, log) = reduce(
        &input,
        "aggregate = true\nsample_rate = 0.0001\nmax_hold_secs = 3600",
    );
    assert!(docs.len() < text.lines().count() / 100, "{log}");
    assert!(log.contains("nothing unacknowledged"), "{log}");
}
