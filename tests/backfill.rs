//! `flowlog backfill` (and the `s3` source it runs) on copies of a bucket in each of AWS's
//! key layouts, on disk and in moto's S3: exactly the records whose start falls in the
//! range, each once; nothing read again by a second run; a `kill -9` halfway and
//! `--resume` delivering everything without reading finished objects again; and the plan
//! sent to SQS and read by two `flowlog run` sidecars, each object once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::runs::{finish, flowlog};
use serde_json::Value;

/// 2026-08-01T00:00:00Z.
const AUGUST_FIRST: i64 = 1_785_542_400;
/// The account asked for; the other one's objects sit beside it.
const ACCOUNT: &str = "123456789012";
const OTHER: &str = "210987654321";

/// How a copied bucket is laid out.
#[derive(Debug, Clone, Copy)]
struct Layout {
    hive: bool,
    hourly: bool,
    /// A user prefix before `AWSLogs/` (`""` or ending in `/`).
    prefix: &'static str,
    /// A Transit Gateway flow log (its records in the TGW fields).
    tgw: bool,
}

const LAYOUTS: [Layout; 4] = [
    Layout {
        hive: false,
        hourly: false,
        prefix: "",
        tgw: false,
    },
    Layout {
        hive: false,
        hourly: true,
        prefix: "team/",
        tgw: false,
    },
    Layout {
        hive: true,
        hourly: true,
        prefix: "team/",
        tgw: false,
    },
    Layout {
        hive: false,
        hourly: false,
        prefix: "network/",
        tgw: true,
    },
];

/// Writes gzip'd objects under `root` every 30 minutes from 2026-07-31T12:00Z to
/// 2026-08-02T12:00Z for two accounts, each stamped 10 minutes after the window it
/// covers (as delivery lags) and holding `per_object` records that started up to
/// `per_object` seconds before the window's stamp; the `bytes` of each record numbers it.
/// Every fourth record is a REJECT. The asked-for account's records that started on
/// 2026-08-01 UTC: their numbers and starts.
fn bucket(root: &Path, layout: Layout, per_object: i64) -> BTreeMap<i64, i64> {
    let mut wanted = BTreeMap::new();
    let mut n = 0;
    let mut stamp = AUGUST_FIRST - 12 * 3600;
    let flow_log = if layout.tgw { "fl-tgw0abc" } else { "fl-0abc" };
    while stamp <= AUGUST_FIRST + 36 * 3600 {
        for account in [ACCOUNT, OTHER] {
            let (y, m, d, h) = civil(stamp + 600);
            let (sy, sm, sd, sh) = civil(stamp);
            let minute = stamp % 3600 / 60;
            let region = "us-east-1";
            let folders = match (layout.hive, layout.hourly) {
                (false, false) => {
                    format!("AWSLogs/{account}/vpcflowlogs/{region}/{y}/{m:02}/{d:02}/")
                }
                (false, true) => {
                    format!("AWSLogs/{account}/vpcflowlogs/{region}/{y}/{m:02}/{d:02}/{h:02}/")
                }
                (true, hourly) => format!(
                    "AWSLogs/aws-account-id={account}/aws-service=vpcflowlogs/\
                     aws-region={region}/year={y}/month={m:02}/day={d:02}/{}",
                    if hourly {
                        format!("hour={h:02}/")
                    } else {
                        String::new()
                    }
                ),
            };
            let key = format!(
                "{}{folders}{account}_vpcflowlogs_{region}_{flow_log}_\
                 {sy}{sm:02}{sd:02}T{sh:02}{minute:02}Z_{n:08x}.log.gz",
                layout.prefix
            );
            let mut text = String::from(if layout.tgw {
                "version resource-type account-id tgw-id tgw-attachment-id srcaddr dstaddr \
                 srcport dstport protocol packets bytes start end log-status\n"
            } else {
                "version account-id interface-id srcaddr dstaddr srcport dstport protocol \
                 packets bytes start end action log-status\n"
            });
            for back in 1..=per_object {
                n += 1;
                let start = stamp - back;
                text.push_str(&match layout.tgw {
                    true => format!(
                        "6 TransitGateway {account} tgw-0a1 tgw-attach-0b2 10.0.0.1 10.1.0.2 \
                         443 22 6 1 {n} {start} {} OK\n",
                        start + 60
                    ),
                    false => format!(
                        "2 {account} eni-1 10.0.0.1 10.0.0.2 443 22 6 1 {n} {start} {} {} OK\n",
                        start + 60,
                        if n % 4 == 0 { "REJECT" } else { "ACCEPT" }
                    ),
                });
                if account == ACCOUNT && (AUGUST_FIRST..AUGUST_FIRST + 86_400).contains(&start) {
                    wanted.insert(n, start);
                }
            }
            let path = root.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(text.as_bytes()).unwrap();
            std::fs::write(path, gz.finish().unwrap()).unwrap();
        }
        stamp += 1800;
    }
    wanted
}

/// Year, month, day and hour (UTC) of a time in seconds.
fn civil(secs: i64) -> (i64, u32, u32, i64) {
    let (y, m, d) = flowlog_model::time::civil_from_days(secs.div_euclid(86_400));
    (y, m, d, secs.rem_euclid(86_400) / 3600)
}

/// The record numbers in an NDJSON file (raw or ECS documents).
fn delivered(out: &Path) -> Vec<i64> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| number(&serde_json::from_str(l).unwrap()))
        .collect()
}

fn number(document: &Value) -> i64 {
    document["bytes"]
        .as_i64()
        .or_else(|| document["source"]["bytes"].as_i64())
        .unwrap()
}

fn as_set(numbers: &[i64]) -> BTreeSet<i64> {
    numbers.iter().copied().collect()
}

fn numbers(wanted: &BTreeMap<i64, i64>) -> BTreeSet<i64> {
    wanted.keys().copied().collect()
}

/// A configuration with a file sink `out` into `out` (its sources are not used by
/// `backfill`; `run` uses them).
fn configure(dir: &Path, out: &Path, sources: &str) -> PathBuf {
    let config = dir.join("flowlog.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{dir}/data"
status_interval_secs = 0

{sources}

[sinks.out]
type = "file"
path = "{out}"
"#,
            dir = dir.display(),
            out = out.display(),
        ),
    )
    .unwrap();
    config
}

const STDIN: &str = "[sources.unused]\ntype = \"stdin\"";

/// `flowlog backfill URL --since 2026-08-01 --until 2026-08-02 --account ACCOUNT ARGS`.
fn backfill(url: &str, args: &[&str], config: &Path) -> Command {
    let mut all = vec![
        "backfill",
        url,
        "--since",
        "2026-08-01",
        "--until",
        "2026-08-02",
        "--account",
        ACCOUNT,
    ];
    all.extend_from_slice(args);
    flowlog(&all, config)
}

fn summary(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn every_layout_gives_exactly_the_records_of_the_range_once() {
    for layout in LAYOUTS {
        let dir = common::tempdir();
        let wanted = bucket(&dir.join("copy"), layout, 4);
        let out = dir.join("out.ndjson");
        let config = configure(&dir, &out, STDIN);
        let url = dir.join("copy").join(layout.prefix).display().to_string();
        let report = dir.join("summary.json");
        let args = ["--summary-json", report.to_str().unwrap()];
        let (ok, stderr) = finish(backfill(&url, &args, &config).spawn().unwrap(), &config);
        assert!(ok, "{layout:?}: {stderr}");
        let got = delivered(&out);
        assert_eq!(got.len(), wanted.len(), "{layout:?}: each record once");
        assert_eq!(as_set(&got), numbers(&wanted), "{layout:?}");
        let report = summary(&report);
        assert_eq!(report["finished"], true, "{layout:?}: {report}");
        assert_eq!(report["objects_planned"], report["objects_read"]);
        // A second run of the same command reads nothing and says so.
        let (ok, stderr) = finish(backfill(&url, &[], &config).spawn().unwrap(), &config);
        assert!(
            ok && stderr.contains("finished already"),
            "{layout:?}: {stderr}"
        );
        assert_eq!(delivered(&out).len(), wanted.len(), "{layout:?}");
    }
}

#[test]
fn where_keeps_what_the_same_filter_by_hand_keeps_and_narrows_the_plan() {
    let dir = common::tempdir();
    let wanted = bucket(&dir.join("copy"), LAYOUTS[1], 8);
    let url = dir.join("copy/team").display().to_string();
    let out = dir.join("out.ndjson");
    let config = configure(&dir, &out, STDIN);
    // 2026-08-01T12:00:00Z.
    let noon = AUGUST_FIRST + 12 * 3600;
    let by_hand: BTreeSet<i64> = wanted
        .iter()
        .filter(|(n, start)| *n % 4 == 0 && **start >= noon)
        .map(|(n, _)| *n)
        .collect();
    assert!(!by_hand.is_empty());
    let report = dir.join("summary.json");
    let sql = "action = 'REJECT' AND start >= '2026-08-01T12:00:00Z'";
    let args = ["--where", sql, "--summary-json", report.to_str().unwrap()];
    let (ok, stderr) = finish(backfill(&url, &args, &config).spawn().unwrap(), &config);
    assert!(ok, "{stderr}");
    let got = delivered(&out);
    assert_eq!(got.len(), by_hand.len(), "each record once");
    assert_eq!(as_set(&got), by_hand);
    // The bound on start narrowed the plan: the morning's objects were not listed.
    let whole_day = 2 * 26;
    let planned = summary(&report)["objects_planned"].as_u64().unwrap();
    assert!(planned < whole_day - 20, "{planned} objects planned");

    // A predicate that cannot work is refused before anything is listed.
    let args = ["--where", "dstprot = 22"];
    let (ok, stderr) = finish(backfill(&url, &args, &config).spawn().unwrap(), &config);
    assert!(!ok && stderr.contains("Did you mean 'dstport'"), "{stderr}");
}

#[test]
fn the_same_backfill_however_spelt_is_done_once_and_mistakes_are_caught_early() {
    let dir = common::tempdir();
    let wanted = bucket(&dir.join("copy"), LAYOUTS[0], 4);
    let out = dir.join("out.ndjson");
    let config = configure(&dir, &out, STDIN);
    let absolute = dir.join("copy").display().to_string();
    let (ok, stderr) = finish(backfill(&absolute, &[], &config).spawn().unwrap(), &config);
    assert!(ok, "{stderr}");
    // A relative path, the range in RFC 3339, the account twice: the same backfill.
    let mut again = flowlog(
        &[
            "backfill",
            "copy/",
            "--since",
            "2026-08-01T00:00:00Z",
            "--until",
            "2026-08-02T00:00:00+00:00",
            "--account",
            ACCOUNT,
            "--account",
            ACCOUNT,
        ],
        &config,
    );
    again.current_dir(&dir);
    let (ok, stderr) = finish(again.spawn().unwrap(), &config);
    assert!(ok && stderr.contains("finished already"), "{stderr}");
    assert_eq!(delivered(&out).len(), wanted.len());

    let states = || {
        std::fs::read_dir(dir.join("data/backfill"))
            .unwrap()
            .count()
    };
    let before = states();
    for (args, status, needle) in [
        // Nothing found: an error, and no state kept for the corrected command to trip on.
        (&["--region", "us-east1"][..], 1, "nothing to read"),
        (
            &["--enqueue", "https://sqs.us-east-1.amazonaws.com/1/q"],
            2,
            "give an s3:// URL",
        ),
        (
            &["--summary-json", "/nonexistent/summary.json"],
            2,
            "--summary-json",
        ),
        (&["--parallel", "0"], 2, "--parallel must be"),
        (&["--where", "start >= '2026-09-01'"], 2, "nothing is left"),
    ] {
        let code = backfill(&absolute, args, &config).status().unwrap().code();
        let stderr = std::fs::read_to_string(common::runs::stderr_file(&config)).unwrap();
        assert!(
            code == Some(status) && stderr.contains(needle),
            "{args:?}: {code:?} {stderr}"
        );
    }
    assert_eq!(states(), before, "a refused command keeps no state");

    // A predicate that fails on a value stops the run, exit 1, and is not finished.
    let report = dir.join("summary.json");
    let args = [
        "--where",
        "CAST(action AS INT) = 1",
        "--summary-json",
        report.to_str().unwrap(),
    ];
    let (ok, stderr) = finish(
        backfill(&absolute, &args, &config).spawn().unwrap(),
        &config,
    );
    assert!(!ok && stderr.contains("stopped"), "{stderr}");
    assert_eq!(summary(&report)["finished"], false);
    assert_eq!(
        delivered(&out).len(),
        wanted.len(),
        "nothing more delivered"
    );
}

#[test]
fn an_object_deleted_after_planning_is_dead_lettered_as_gone() {
    let dir = common::tempdir();
    bucket(&dir.join("copy"), LAYOUTS[0], 4);
    let copy = dir.join("copy").canonicalize().unwrap();
    let objects: Vec<Value> = walk(&copy)
        .into_iter()
        .map(|path| {
            let key = path.display().to_string();
            let size = std::fs::metadata(&path).unwrap().len();
            serde_json::json!({"key": key.trim_start_matches('/'), "size": size})
        })
        .collect();
    let gone = objects[0]["key"].as_str().unwrap().to_string();
    std::fs::remove_file(format!("/{gone}")).unwrap();
    let plan = dir.join("plan.json");
    let url = copy.display().to_string();
    std::fs::write(
        &plan,
        serde_json::json!({"url": url, "since": "2026-07-31", "until": "2026-08-03",
                           "objects": objects})
        .to_string(),
    )
    .unwrap();
    let source = format!(
        "[sources.archive]\ntype = \"s3\"\nurl = \"{url}\"\nsince = \"2026-07-31\"\n\
         until = \"2026-08-03\"\nplan_file = \"{}\"",
        plan.display()
    );
    let out = dir.join("out.ndjson");
    let config = configure(&dir, &out, &source);
    let (ok, stderr) = finish(
        flowlog(&["run", "--once"], &config).spawn().unwrap(),
        &config,
    );
    assert!(!ok && stderr.contains("dead-lettered"), "{stderr}");
    let letters = std::fs::read_to_string(dir.join("data/dead-letter.ndjson")).unwrap();
    assert!(
        letters.contains("the file is gone") && letters.contains(&gone),
        "{letters}"
    );
    // Done: the next run reads nothing and finds nothing more to dead-letter.
    let (ok, stderr) = finish(
        flowlog(&["run", "--once"], &config).spawn().unwrap(),
        &config,
    );
    assert!(ok, "{stderr}");
}

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn the_readme_recipe_runs_as_shown() {
    let sample = common::samples::sample("README.md", "backfill");
    let stage = common::samples::Stage::new();
    let layout = Layout {
        hive: true,
        hourly: true,
        prefix: "",
        tgw: false,
    };
    bucket(&stage.path("archive"), layout, 200);
    stage.check(&sample);
}

#[test]
fn the_s3_source_in_a_configuration_reads_a_day_once() {
    let dir = common::tempdir();
    let wanted = bucket(&dir, LAYOUTS[2], 4);
    let out = dir.join("out.ndjson");
    let source = format!(
        r#"[sources.archive]
type = "s3"
url = "{}/team"
since = "2026-08-01"
until = "2026-08-02"
accounts = ["{ACCOUNT}"]
workers = 4

[transform.filter]
since = "2026-08-01"
until = "2026-08-02""#,
        dir.display()
    );
    let config = configure(&dir, &out, &source);
    for _ in 0..2 {
        let (ok, stderr) = finish(
            flowlog(&["run", "--once"], &config).spawn().unwrap(),
            &config,
        );
        assert!(ok, "{stderr}");
        let got = delivered(&out);
        assert_eq!(got.len(), wanted.len(), "each record once");
        assert_eq!(as_set(&got), numbers(&wanted));
    }
}

#[test]
fn a_backfill_killed_halfway_is_resumed_without_reading_finished_objects_again() {
    let dir = common::tempdir();
    let wanted = bucket(&dir.join("copy"), LAYOUTS[0], 400);
    let url = dir.join("copy").display().to_string();
    // The first run writes into a pipe this test reads slowly, so that it is surely
    // killed halfway; the resumed run into a file (the same sink by name: the same
    // backfill).
    let fifo = dir.join("first.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let config = configure(&dir, &fifo, STDIN);
    let mut child = backfill(&url, &["--parallel", "2"], &config)
        .spawn()
        .unwrap();
    let reader = std::io::BufReader::new(std::fs::File::open(&fifo).unwrap());
    let mut first = Vec::new();
    let mut lines = reader.lines();
    while first.len() < wanted.len() / 2 {
        let line = lines.next().expect("the first run writes").unwrap();
        first.push(number(&serde_json::from_str(&line).unwrap()));
    }
    // Time for the checkpoints of what was written to be saved (every 250 ms), then the
    // hard stop, with the pipe still open and the sink blocked on it.
    std::thread::sleep(std::time::Duration::from_secs(2));
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lines);

    let out = dir.join("out.ndjson");
    let config = configure(&dir, &out, STDIN);
    let (ok, stderr) = finish(backfill(&url, &[], &config).spawn().unwrap(), &config);
    assert!(
        !ok && stderr.contains("add --resume"),
        "a begun backfill is not started over: {stderr}"
    );
    let report = dir.join("summary.json");
    let args = ["--resume", "--summary-json", report.to_str().unwrap()];
    let (ok, stderr) = finish(backfill(&url, &args, &config).spawn().unwrap(), &config);
    assert!(ok, "{stderr}");
    let second = delivered(&out);
    let all: BTreeSet<i64> = first.iter().chain(&second).copied().collect();
    assert_eq!(all, numbers(&wanted), "every record delivered");
    assert_eq!(
        as_set(&second).len(),
        second.len(),
        "the resumed run sends each record once"
    );
    let report = summary(&report);
    let skipped = report["objects_skipped"].as_u64().unwrap();
    let planned = report["objects_planned"].as_u64().unwrap();
    assert!(skipped > 0, "objects finished before the kill: {report}");
    assert_eq!(report["objects_read"].as_u64().unwrap(), planned - skipped);
    assert!(
        second.len() < wanted.len(),
        "the objects finished before were not read again"
    );
}

/// moto's S3 and SQS: a bucket holding the tree under `<root>/copy` (put with boto3, as
/// `aws s3 sync` would), and a queue, named for the test.
struct Moto {
    endpoint: String,
    bucket: String,
    queue_url: String,
}

const SETUP: &str = r#"
import boto3, json, os, sys
endpoint, name, root = sys.argv[1:4]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
s3 = boto3.client("s3", **kw)
s3.create_bucket(Bucket=name)
for top, _, files in os.walk(root):
    for f in files:
        path = os.path.join(top, f)
        s3.upload_file(path, name, os.path.relpath(path, root))
queue = boto3.client("sqs", **kw).create_queue(QueueName=name)["QueueUrl"]
print(json.dumps({"queue_url": queue}))
"#;

impl Moto {
    fn setup(root: &Path) -> Self {
        let endpoint = std::env::var("FLOWLOG_MOTO_ENDPOINT").expect(
            "FLOWLOG_MOTO_ENDPOINT is not set: run ./scripts/test.sh, which starts moto server",
        );
        let name = format!("backfill-{}", unique(root));
        let root = root.display().to_string();
        let out = common::run_python(["-c", SETUP, &endpoint, &name, &root]);
        let answer: Value = serde_json::from_slice(&out).unwrap();
        Self {
            endpoint,
            bucket: name,
            queue_url: answer["queue_url"].as_str().unwrap().into(),
        }
    }

    /// `command` with moto's endpoint and test credentials.
    fn env(&self, mut command: Command) -> Command {
        command
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE");
        command
    }
}

/// A bucket and queue name part from the test's directory (unique per test and run).
fn unique(dir: &Path) -> String {
    let name = dir.parent().unwrap().file_name().unwrap().to_string_lossy();
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect()
}

#[test]
fn a_day_is_read_from_s3_through_the_sdk() {
    let dir = common::tempdir();
    let wanted = bucket(&dir.join("copy"), LAYOUTS[2], 4);
    let moto = Moto::setup(&dir.join("copy"));
    let out = dir.join("out.ndjson");
    let config = configure(&dir, &out, STDIN);
    let url = format!("s3://{}/team/", moto.bucket);
    let args = ["--s3-force-path-style"];
    for _ in 0..2 {
        let mut command = moto.env(backfill(&url, &args, &config));
        let (ok, stderr) = finish(command.spawn().unwrap(), &config);
        assert!(ok, "{stderr}");
        let got = delivered(&out);
        assert_eq!(got.len(), wanted.len(), "each record once");
        assert_eq!(as_set(&got), numbers(&wanted));
    }
    // Ids are the SQS source's: the object's bucket, key and ETag, and the line.
    let states = std::fs::read_dir(dir.join("data/backfill")).unwrap();
    let state = states.flatten().next().unwrap().path();
    let checkpoints = std::fs::read_to_string(state.join("data/checkpoints.json")).unwrap();
    assert!(
        checkpoints.contains(&format!(
            "s3://{}/team/AWSLogs/aws-account-id={ACCOUNT}/",
            moto.bucket
        )) && checkpoints.contains("?etag="),
        "{checkpoints}"
    );
}

#[test]
fn a_plan_sent_to_sqs_is_read_by_two_sidecars_each_object_once() {
    let dir = common::tempdir();
    let wanted = bucket(&dir.join("copy"), LAYOUTS[1], 50);
    let moto = Moto::setup(&dir.join("copy"));
    let url = format!("s3://{}/team/", moto.bucket);
    let config = configure(&dir, &dir.join("unused.ndjson"), STDIN);
    let report = dir.join("enqueued.json");
    let args = [
        "--enqueue",
        &moto.queue_url,
        "--summary-json",
        report.to_str().unwrap(),
    ];
    let (ok, stderr) = finish(
        moto.env(backfill(&url, &args, &config)).spawn().unwrap(),
        &config,
    );
    assert!(ok, "{stderr}");
    let sent = summary(&report)["objects_read"].as_u64().unwrap();
    assert!(sent > 0);

    // Two sidecars on the queue, each with its own data dir and output; the range is
    // their own filter (a message names an object, not the range it was planned for).
    let sidecars: Vec<(PathBuf, PathBuf)> = (0..2)
        .map(|i| {
            let home = dir.join(format!("sidecar{i}"));
            std::fs::create_dir_all(&home).unwrap();
            let out = home.join("out.ndjson");
            let source = format!(
                r#"[sources.queue]
type = "sqs"
queue_url = "{}"
s3_force_path_style = true
wait_time_secs = 1

[transform.filter]
since = "2026-08-01"
until = "2026-08-02""#,
                moto.queue_url
            );
            (configure(&home, &out, &source), out)
        })
        .collect();
    let children: Vec<_> = sidecars
        .iter()
        .map(|(config, _)| {
            moto.env(flowlog(&["run", "--once"], config))
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, (config, _)) in children.into_iter().zip(&sidecars) {
        let (ok, stderr) = finish(child, config);
        assert!(ok, "{stderr}");
    }
    let mut got = Vec::new();
    for (_, out) in &sidecars {
        got.extend(delivered(out));
    }
    assert_eq!(
        got.len(),
        wanted.len(),
        "each object read once, by one sidecar"
    );
    assert_eq!(as_set(&got), numbers(&wanted));

    let status = moto
        .env(flowlog(&["backfill", "--status", &moto.queue_url], &config))
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success() && said.contains(": 0 waiting, 0 being read, 0 delayed"),
        "{said}"
    );
}
