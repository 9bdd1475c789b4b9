//! Every mapped target keeps everything a record carries: each value of `--to raw` is found
//! in the ECS, OCSF and CIM document of the same record (translated values excepted, each
//! named here), over every fixture.

mod common;

use common::{days_from_civil, fixture_inputs, transform_file};
use serde_json::Value;

/// Fields a target writes as a translation rather than as the value itself.
fn translated(target: &str, field: &str) -> bool {
    match target {
        // action -> activity/disposition ids, flow_direction -> direction_id,
        // traffic_path -> boundary_id.
        "ocsf" => matches!(field, "action" | "flow_direction" | "traffic_path"),
        // action -> allowed/blocked, flow_direction -> inbound/outbound.
        "cim" => matches!(field, "action" | "flow_direction"),
        _ => false,
    }
}

fn leaves(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
        Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        other => out.push(other.clone()),
    }
}

/// True if the document holds the raw value: as is, a number as text, or a time (raw
/// Unix seconds) as milliseconds or as an RFC 3339 string.
fn holds(doc_leaves: &[Value], field: &str, raw: &Value) -> bool {
    doc_leaves.iter().any(|leaf| {
        leaf == raw
            || matches!((leaf, raw), (Value::String(s), Value::Number(n)) if *s == n.to_string())
            || (matches!(field, "start" | "end")
                && raw.as_f64().is_some_and(|secs| {
                    leaf.as_f64() == Some(secs * 1000.0)
                        || leaf
                            .as_str()
                            .is_some_and(|s| rfc3339_seconds(s) == Some(secs))
                }))
    })
}

fn rfc3339_seconds(s: &str) -> Option<f64> {
    if s.len() != 24 || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let secs = days_from_civil(y, m, d) * 86_400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?;
    Some(secs as f64 + n(20..23)? as f64 / 1000.0)
}

#[test]
fn mapped_targets_keep_every_value() {
    let mut checked = 0;
    for (file, args) in fixture_inputs() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let raw = transform_file(&file, &args).records;
        for target in ["ecs", "ocsf", "cim"] {
            let mut all = vec!["--to", target];
            all.extend(&args);
            let docs = transform_file(&file, &all).records;
            assert_eq!(docs.len(), raw.len(), "{} --to {target}", file.display());
            for (record, doc) in raw.iter().zip(&docs) {
                let mut doc_leaves = Vec::new();
                leaves(doc, &mut doc_leaves);
                for (field, value) in record.as_object().unwrap() {
                    if translated(target, field) {
                        continue;
                    }
                    assert!(
                        holds(&doc_leaves, field, value),
                        "{} --to {target}: {field} = {value} is missing from {doc}",
                        file.display()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 3000, "checked only {checked} values");
}

#[test]
fn cim_uses_cim_values() {
    let file = common::fixture("aws-docs/service-traffic-path-direction-v5.log");
    let docs = transform_file(&file, &["--to", "cim"]).records;
    assert!(!docs.is_empty());
    for doc in &docs {
        if let Some(action) = doc.get("action") {
            assert!(action == "allowed" || action == "blocked", "{doc}");
        }
        if let Some(direction) = doc.get("direction") {
            assert!(direction == "inbound" || direction == "outbound", "{doc}");
            let suffix = if direction == "inbound" { "in" } else { "out" };
            assert_eq!(
                doc.get(format!("bytes_{suffix}").as_str()),
                doc.get("bytes")
            );
        }
        assert!(
            doc["src_ip"].is_string() && doc["dest_port"].is_u64(),
            "{doc}"
        );
        assert_eq!(doc["vendor_product"], "AWS VPC Flow Logs");
        assert!(
            doc.as_object().unwrap().keys().all(|k| !k.contains('.')),
            "flat: {doc}"
        );
    }
    let tgw = transform_file(
        &common::fixture("aws-docs/tgw-flowlog-v6-from-beats.log"),
        &["--to", "cim"],
    )
    .records;
    assert_eq!(tgw[0]["vendor_product"], "AWS Transit Gateway Flow Logs");
    assert!(tgw[0]["dvc"].as_str().unwrap().starts_with("tgw-"));
}
