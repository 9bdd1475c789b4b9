//! `flowlog run` with the SQS source against moto server (S3, SQS, SNS, EventBridge; set up
//! through boto3 by `scripts/sqs_fixture.py`, objects put so that S3 itself announces them)
//! into the HEC receiver: every record exactly once by its id, every message deleted, the
//! heartbeat holding messages while the sink is down past the visibility timeout, a
//! `kill -9` and restart losing nothing, two processes sharing one queue, and every body
//! shape of the fixtures handled.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use common::runs::{self, write_config};
use common::{fixture, manifest_dir, python, tempdir};
use flowlog_model::SourceId;
use flowlog_test_receivers::corpus;
use flowlog_test_receivers::hec::{HecOptions, HecReceiver};
use serde_json::{json, Value};

/// The queue and buckets of one test.
struct Moto {
    endpoint: String,
    queue_url: String,
    buckets: HashMap<String, String>,
}

fn script(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(python())
        .arg(manifest_dir().join("scripts/sqs_fixture.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sqs_fixture.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Moto {
    /// A queue and its four buckets, named for the test (moto keeps state between tests).
    fn setup(test: &str) -> Self {
        let endpoint = std::env::var("FLOWLOG_MOTO_ENDPOINT").expect(
            "FLOWLOG_MOTO_ENDPOINT is not set: run ./scripts/test.sh, which starts moto server",
        );
        let name = format!("{test}-{}", std::process::id());
        let setup: Value = serde_json::from_str(&script(&["setup", &endpoint, &name], "")).unwrap();
        Self {
            queue_url: setup["queue_url"].as_str().unwrap().into(),
            buckets: serde_json::from_value(setup["buckets"].clone()).unwrap(),
            endpoint,
        }
    }

    fn bucket(&self, kind: &str) -> &str {
        &self.buckets[kind]
    }

    /// Puts the objects; their ETags, in order.
    fn put(&self, objects: &[Object]) -> Vec<String> {
        let list: Vec<Value> = objects
            .iter()
            .map(|o| json!({"bucket": o.bucket, "key": o.key, "file": o.file}))
            .collect();
        let out = script(&["put", &self.endpoint], &Value::from(list).to_string());
        let answers: Vec<Value> = serde_json::from_str(&out).unwrap();
        answers
            .iter()
            .map(|a| a["etag"].as_str().unwrap().to_string())
            .collect()
    }

    fn send(&self, bodies: &[String]) {
        let bodies = serde_json::to_string(bodies).unwrap();
        script(&["send", &self.endpoint, &self.queue_url], &bodies);
    }

    /// Messages (visible, in flight).
    fn depth(&self) -> (u64, u64) {
        let out: Value =
            serde_json::from_str(&script(&["depth", &self.endpoint, &self.queue_url], "")).unwrap();
        (
            out["visible"].as_u64().unwrap(),
            out["in_flight"].as_u64().unwrap(),
        )
    }

    /// The source's settings (`extra` adds some).
    fn source(&self, extra: &str) -> String {
        self.split_source(&format!("endpoint_url = \"{}\"\n{extra}", self.endpoint))
    }

    /// The source's settings without an endpoint: SQS and S3 are then found through the
    /// SDK's per-service variables ([`start_split`]), so that one of them can be a server
    /// of the test's own.
    fn split_source(&self, extra: &str) -> String {
        format!(
            r#"type = "sqs"
queue_url = "{}"
region = "us-east-1"
s3_force_path_style = true
wait_time_secs = 1
{extra}"#,
            self.queue_url
        )
    }
}

/// An object to put: where, its file, and the numbers of its record lines.
struct Object {
    bucket: String,
    key: String,
    file: PathBuf,
    lines: Vec<u64>,
}

/// What the object's records' ids are, given its ETag (S3 notifications name it).
fn ids_of(object: &Object, etag: &str) -> Vec<String> {
    let source = SourceId::new(format!("s3://{}/{}?etag={etag}", object.bucket, object.key));
    object
        .lines
        .iter()
        .map(|&l| flowlog_sink::event_id(&source, l))
        .collect()
}

/// The ids of every record of `objects`, put with `etags`.
fn ids_of_all(objects: &[Object], etags: &[String]) -> HashSet<String> {
    objects
        .iter()
        .zip(etags)
        .flat_map(|(o, etag)| ids_of(o, etag))
        .collect()
}

const V2_HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
const V5_HEADER: &str = "version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status flow-direction traffic-path";

fn v5_line(i: usize) -> String {
    format!(
        "5 vpc-0a1b2c3d subnet-0a1b2c3d i-0a1b2c3d4e5f eni-0a1b2c3d 123456789012 IPv4 10.1.{}.{} 203.0.113.{} {} 443 10.1.{}.{} 203.0.113.{} 6 {} 3 1700000000 1700000060 ACCEPT 19 OK egress 8",
        i / 250 % 250,
        i % 250,
        i % 200,
        1024 + i % 60000,
        i / 250 % 250,
        i % 250,
        i % 200,
        100 + i
    )
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

fn parquet(first: usize, rows: usize) -> Vec<u8> {
    let range = first..first + rows;
    let text = |f: &dyn Fn(usize) -> String| -> ArrayRef {
        Arc::new(StringArray::from(range.clone().map(f).collect::<Vec<_>>()))
    };
    let int = |f: &dyn Fn(usize) -> i32| -> ArrayRef {
        Arc::new(Int32Array::from(range.clone().map(f).collect::<Vec<_>>()))
    };
    let long = |f: &dyn Fn(usize) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from(range.clone().map(f).collect::<Vec<_>>()))
    };
    let batch = RecordBatch::try_from_iter(vec![
        ("version", int(&|_| 2)),
        ("account_id", text(&|_| "123456789012".into())),
        ("interface_id", text(&|_| "eni-0a1b2c3d".into())),
        (
            "srcaddr",
            text(&|i| format!("10.2.{}.{}", i / 250 % 250, i % 250)),
        ),
        ("dstaddr", text(&|_| "198.51.100.7".into())),
        ("srcport", int(&|i| (1024 + i % 60000) as i32)),
        ("dstport", int(&|_| 443)),
        ("protocol", int(&|_| 6)),
        ("packets", long(&|_| 2)),
        ("bytes", long(&|i| 100 + i as i64)),
        ("start", long(&|_| 1_700_000_000)),
        ("end", long(&|_| 1_700_000_060)),
        ("action", text(&|_| "ACCEPT".into())),
        ("log_status", text(&|_| "OK".into())),
    ])
    .unwrap();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// `n` objects of `lines` records each in `bucket`, cycling through v2 text, v2 gzip'd
/// with a header line, v5 gzip'd with a header line, and Parquet.
fn objects(dir: &Path, bucket: &str, n: usize, lines: usize) -> Vec<Object> {
    (0..n)
        .map(|i| {
            let first = i * lines;
            let stem =
                format!("AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/12/01/{bucket}_{i}");
            let (key, bytes, numbers): (String, Vec<u8>, Vec<u64>) = match i % 4 {
                0 => (
                    format!("{stem}.log"),
                    corpus::v2_lines(first, lines).into_bytes(),
                    (1..=lines as u64).collect(),
                ),
                1 => (
                    format!("{stem}.log.gz"),
                    gzip(&format!("{V2_HEADER}\n{}", corpus::v2_lines(first, lines))),
                    (2..=lines as u64 + 1).collect(),
                ),
                2 => {
                    let body: String = (first..first + lines).map(|i| v5_line(i) + "\n").collect();
                    (
                        // A space and an `=` in the key: S3 form-encodes them.
                        format!("{stem} hour=01.log.gz"),
                        gzip(&format!("{V5_HEADER}\n{body}")),
                        (2..=lines as u64 + 1).collect(),
                    )
                }
                _ => (
                    format!("{stem}.log.parquet"),
                    parquet(first, lines),
                    (1..=lines as u64).collect(),
                ),
            };
            let file = dir.join(format!("{bucket}-{i}"));
            std::fs::write(&file, bytes).unwrap();
            Object {
                bucket: bucket.into(),
                key,
                file,
                lines: numbers,
            }
        })
        .collect()
}

/// A running `flowlog run`, killed when dropped.
struct Flowlog(Child);

impl Drop for Flowlog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `flowlog ARGS` with moto's test credentials (and the HEC receiver's token).
fn flowlog(args: &[&str], config: &Path) -> Command {
    let mut command = runs::flowlog(args, config);
    command
        .env("FLOWLOG_TEST_HEC_TOKEN", "test-token")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    command
}

fn start(config: &Path) -> Flowlog {
    Flowlog(flowlog(&["run"], config).spawn().unwrap())
}

/// `flowlog run` with SQS at `sqs` and S3 at `s3` (the SDK's per-service endpoint
/// variables; the source has no `endpoint_url`).
fn start_split(config: &Path, sqs: &str, s3: &str) -> Flowlog {
    let mut command = flowlog(&["run"], config);
    command
        .env("AWS_ENDPOINT_URL_SQS", sqs)
        .env("AWS_ENDPOINT_URL_S3", s3);
    Flowlog(command.spawn().unwrap())
}

/// How many of `expected` the receiver has.
fn delivered_of(receiver: &HecReceiver, expected: &HashSet<String>) -> usize {
    let ids = receiver.ids();
    expected.iter().filter(|id| ids.contains_key(*id)).count()
}

/// Waits until `done()`, failing after `limit` with what `state()` says.
fn wait_until(limit: Duration, done: impl Fn() -> bool, state: impl Fn() -> String) {
    let since = Instant::now();
    while !done() {
        assert!(since.elapsed() < limit, "gave up waiting: {}", state());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `delivered()` reaches `target` and the queue is empty (every message
/// deleted), failing after `limit` with the state and the run's log.
fn wait_drained(
    moto: &Moto,
    delivered: impl Fn() -> usize,
    target: usize,
    config: &Path,
    limit: Duration,
) {
    wait_until(
        limit,
        || delivered() >= target && moto.depth() == (0, 0),
        || {
            format!(
                "{} ids, queue {:?}: {}",
                delivered(),
                moto.depth(),
                log(config)
            )
        },
    );
}

/// Every expected id arrived once, and nothing else.
fn assert_exactly_once(ids: &HashMap<String, u32>, expected: &HashSet<String>) {
    let twice: Vec<_> = ids.iter().filter(|(_, &n)| n > 1).take(5).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !ids.contains_key(*id))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(
        ids.len(),
        expected.len(),
        "ids that were not expected arrived"
    );
}

/// Acceptance 1: 100 objects (v2/v5 text, gzip, Parquet) announced directly, through SNS,
/// through EventBridge and by hand with several records per message: every line once,
/// every message deleted.
#[test]
fn a_hundred_objects_arrive_exactly_once_and_every_message_is_deleted() {
    let moto = Moto::setup("hundred");
    let dir = tempdir();
    let receiver = HecReceiver::start(HecOptions::default());
    let mut all = Vec::new();
    all.extend(objects(&dir, moto.bucket("direct"), 40, 300));
    all.extend(objects(&dir, moto.bucket("sns"), 25, 300));
    all.extend(objects(&dir, moto.bucket("eb"), 15, 300));
    let quiet = objects(&dir, moto.bucket("quiet"), 20, 300);
    let mut etags = moto.put(&all);
    let quiet_etags = moto.put(&quiet);
    // Several objects per message, as S3 may send: four records in each of five messages.
    let bodies: Vec<String> = quiet
        .chunks(4)
        .zip(quiet_etags.chunks(4))
        .map(|(objects, etags)| {
            let records: Vec<Value> = objects
                .iter()
                .zip(etags)
                .map(|(o, etag)| {
                    let key: String = url_form_encode(&o.key);
                    json!({"eventVersion": "2.2", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                           "eventName": "ObjectCreated:CompleteMultipartUpload",
                           "s3": {"bucket": {"name": o.bucket}, "object": {"key": key, "eTag": etag}}})
                })
                .collect();
            json!({ "Records": records }).to_string()
        })
        .collect();
    moto.send(&bodies);
    all.extend(quiet);
    etags.extend(quiet_etags);
    let expected: HashSet<String> = ids_of_all(&all, &etags);
    assert_eq!(expected.len(), 100 * 300);

    let config = write_config(
        &dir,
        &moto.source("workers = 4"),
        &runs::hec_sink(&receiver.url(), ""),
    );
    let run = start(&config);
    wait_drained(
        &moto,
        || receiver.ids().len(),
        expected.len(),
        &config,
        Duration::from_secs(120),
    );
    drop(run);
    assert_exactly_once(&receiver.ids(), &expected);
    // The test events (direct and through SNS) were deleted quietly, nothing dead-lettered.
    assert!(
        runs::dead_letters(&dir).is_empty(),
        "{:?}",
        runs::dead_letters(&dir)
    );
    std::fs::remove_dir_all(dir).ok();
}

/// How S3 writes a key in a notification.
fn url_form_encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn log(config: &Path) -> String {
    std::fs::read_to_string(runs::stderr_file(config)).unwrap_or_default()
}

/// Acceptance 2: the sink down for three visibility timeouts: the heartbeat keeps the
/// messages invisible and undeleted, nothing arrives twice once it is back. Then a
/// `kill -9` mid-run and a restart: nothing lost.
#[test]
fn the_heartbeat_holds_messages_while_the_sink_is_down_and_a_kill_loses_nothing() {
    let moto = Moto::setup("heartbeat");
    let dir = tempdir();
    let receiver = HecReceiver::start(HecOptions::default());
    receiver.set_down(true);
    let first = objects(&dir, moto.bucket("direct"), 8, 200);
    let etags = moto.put(&first);
    let mut expected: HashSet<String> = ids_of_all(&first, &etags);
    let config = write_config(
        &dir,
        &moto.source("visibility_timeout_secs = 4\nworkers = 8"),
        &runs::hec_sink(&receiver.url(), ""),
    );
    let run = start(&config);
    // The test event goes at once; the eight messages are taken and held.
    wait_until(
        Duration::from_secs(30),
        || moto.depth() == (0, 8),
        || format!("queue {:?}: {}", moto.depth(), log(&config)),
    );
    // Three visibility timeouts: without the heartbeat they would come back and be read again.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(moto.depth(), (0, 8), "{}", log(&config));
        assert!(receiver.ids().is_empty());
    }
    receiver.set_down(false);
    wait_drained(
        &moto,
        || receiver.ids().len(),
        expected.len(),
        &config,
        Duration::from_secs(60),
    );
    assert_exactly_once(&receiver.ids(), &expected);

    // kill -9 while 40 larger objects are being delivered, then a restart.
    drop(run);
    let second = objects(&dir, moto.bucket("sns"), 40, 5_000);
    let etags = moto.put(&second);
    let second_ids: HashSet<String> = ids_of_all(&second, &etags);
    let before = receiver.ids().len();
    let mut run = start(&config);
    let since = Instant::now();
    while receiver.ids().len() < before + 5_000 {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "{}",
            log(&config)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe { libc::kill(run.0.id() as i32, libc::SIGKILL) };
    let _ = run.0.wait();
    // Requests sent before the kill may still be in the receiver's hands for a moment.
    std::thread::sleep(Duration::from_secs(1));
    let at_kill = receiver.ids().len() - before;
    // The objects that had records delivered by then (an id is `<object>-<line>`).
    let object_of = |id: &str| id.split('-').next().unwrap().to_string();
    let begun: HashSet<String> = receiver.ids().keys().map(|id| object_of(id)).collect();
    assert!(
        at_kill < second_ids.len(),
        "the kill came too late to test anything"
    );
    // The messages being read come back after their visibility timeout.
    let _run = start(&config);
    let second_ids_len = second_ids.len();
    expected.extend(second_ids);
    wait_until(
        Duration::from_secs(90),
        || {
            let ids = receiver.ids();
            expected.iter().all(|id| ids.contains_key(id)) && moto.depth() == (0, 0)
        },
        || {
            format!(
                "{} ids, queue {:?}: {}",
                receiver.ids().len(),
                moto.depth(),
                log(&config)
            )
        },
    );
    let ids = receiver.ids();
    assert!(ids.keys().all(|id| expected.contains(id)));
    let again = ids.values().filter(|&&n| n > 1).count();
    eprintln!("kill -9 after {at_kill} of {} records: {again} delivered again after the restart (same ids)", second_ids_len);
    assert!(
        ids.iter()
            .filter(|(_, &n)| n > 1)
            .all(|(id, _)| begun.contains(&object_of(id))),
        "only objects being delivered at the kill may come again"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Acceptance 3: two processes on one queue share 100 objects, none delivered twice.
#[test]
fn two_processes_share_one_queue_without_delivering_an_object_twice() {
    let moto = Moto::setup("shared");
    let dir = tempdir();
    let receivers = [
        HecReceiver::start(HecOptions::default()),
        HecReceiver::start(HecOptions::default()),
    ];
    let runs: Vec<(PathBuf, Flowlog)> = receivers
        .iter()
        .enumerate()
        .map(|(i, receiver)| {
            let dir = dir.join(format!("p{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let config = write_config(
                &dir,
                &moto.source("workers = 2"),
                &runs::hec_sink(&receiver.url(), ""),
            );
            let run = start(&config);
            (config, run)
        })
        .collect();
    let all = objects(&dir, moto.bucket("direct"), 100, 200);
    let etags = moto.put(&all);
    let expected: HashSet<String> = ids_of_all(&all, &etags);
    let total = || receivers.iter().map(|r| r.ids().len()).sum::<usize>();
    wait_drained(
        &moto,
        total,
        expected.len(),
        &runs[0].0,
        Duration::from_secs(120),
    );
    drop(runs);
    let (a, b) = (receivers[0].ids(), receivers[1].ids());
    let mut union = a.clone();
    for (id, n) in &b {
        *union.entry(id.clone()).or_default() += n;
    }
    assert_exactly_once(&union, &expected);
    let objects_each = |ids: &HashMap<String, u32>| {
        ids.keys()
            .map(|id| id.split('-').next().unwrap().to_string())
            .collect::<HashSet<_>>()
            .len()
    };
    eprintln!(
        "objects per process: {} and {}",
        objects_each(&a),
        objects_each(&b)
    );
    assert!(
        !a.is_empty() && !b.is_empty(),
        "one process did all the work"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Every notification body of the fixtures sent to the queue: the VPC flow log objects
/// they name are read (a corrupt one dead-lettered), keys outside `key_filter` and removals
/// are deleted unread, test events deleted quietly, bodies that are no notification
/// dead-lettered with their text; the queue ends empty.
#[test]
fn every_fixture_body_shape_is_handled_and_the_queue_ends_empty() {
    let moto = Moto::setup("shapes");
    let dir = tempdir();
    let receiver = HecReceiver::start(HecOptions::default());
    let read =
        |name: &str| std::fs::read_to_string(fixture(&format!("s3-notifications/{name}"))).unwrap();
    // The real flow-log notifications: their objects put where they say, in the quiet bucket.
    let real: Vec<Value> =
        serde_json::from_str(&read("real_vpcflow_s3_objectcreated_bodies.json")).unwrap();
    let mut bodies = Vec::new();
    let mut objects = Vec::new();
    let mut expected = HashSet::new();
    // A third, corrupt object (gzip cut off mid-stream) announced like the first one.
    let mut copy = real[0].clone();
    let key = &mut copy["Records"][0]["s3"]["object"]["key"];
    *key = key
        .as_str()
        .unwrap()
        .replace(".log.gz", "_corrupt.log.gz")
        .into();
    let mut corrupt = String::new();
    for (i, body) in real.iter().chain([&copy]).enumerate() {
        let mut body = body.clone();
        let record = &mut body["Records"][0]["s3"];
        record["bucket"]["name"] = moto.bucket("quiet").into();
        let key = record["object"]["key"].as_str().unwrap().to_string();
        let etag = record["object"]["eTag"].as_str().unwrap().to_string();
        let file = dir.join(format!("real-{i}"));
        let object = Object {
            bucket: moto.bucket("quiet").into(),
            key: key.clone(),
            file: file.clone(),
            lines: (2..=51).collect(),
        };
        if key.contains("_corrupt") {
            let whole = gzip(&format!("{V2_HEADER}\n{}", corpus::v2_lines(0, 5000)));
            std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
            corrupt = format!("s3://{}/{key}?etag={etag}", object.bucket);
        } else {
            let text = format!("{V2_HEADER}\n{}", corpus::v2_lines(i * 50, 50));
            std::fs::write(&file, gzip(&text)).unwrap();
            expected.extend(ids_of(&object, &etag));
        }
        objects.push(object);
        bodies.push(body.to_string());
    }
    moto.put(&objects);
    // Every other fixture, as the queue would receive it.
    for name in [
        "aws_doc_eventbridge_object_created.json",
        "aws_doc_s3_objectcreated_put.json",
        "aws_doc_s3_testevent.json",
        "oxbow_s3_objectremoved_hive_key.json",
        "powertools_s3Event.json",
        "powertools_s3EventDecodedKey.json",
        "securitylake_subscriber_sqs_message_from_beats_issue_36630.json",
        "vector_s3_objectcreated_put.json",
        "vector_s3_testevent.json",
        "vector_sns_wrapped_s3_testevent.json",
    ] {
        bodies.push(read(name));
    }
    for name in ["powertools_s3SqsEvent.json", "powertools_snsSqsEvent.json"] {
        let lambda: Value = serde_json::from_str(&read(name)).unwrap();
        for record in lambda["Records"].as_array().unwrap() {
            bodies.push(record["body"].as_str().unwrap().to_string());
        }
    }
    let garbage = "{\"Records\": \"not a list\"}".to_string();
    bodies.push(garbage.clone());
    moto.send(&bodies);

    let config = write_config(
        &dir,
        &moto.source("key_filter = \"/vpcflowlogs/\""),
        &runs::hec_sink(&receiver.url(), ""),
    );
    let run = start(&config);
    wait_drained(
        &moto,
        || receiver.ids().len(),
        expected.len(),
        &config,
        Duration::from_secs(60),
    );
    drop(run);
    // What the corrupt object held before its cut arrived too, once.
    let cut = flowlog_sink::event_id_prefix(&SourceId::new(corrupt.clone()));
    let mut ids = receiver.ids();
    ids.retain(|id, n| !id.starts_with(&cut) || *n > 1);
    assert_exactly_once(&ids, &expected);
    let dead = runs::dead_letters(&dir);
    let sources: Vec<&str> = dead.iter().map(|d| d["source"].as_str().unwrap()).collect();
    // The corrupt object, then each body that is no notification, with its text.
    assert!(sources.contains(&corrupt.as_str()), "{dead:?}");
    let bodies_dead: Vec<&Value> = dead
        .iter()
        .filter(|d| d["source"].as_str().unwrap().starts_with("sqs://"))
        .collect();
    assert_eq!(bodies_dead.len(), 2, "{dead:?}");
    assert!(bodies_dead.iter().any(|d| d["raw"] == garbage.as_str()));
    assert!(bodies_dead
        .iter()
        .any(|d| d["raw"].as_str().unwrap().contains("hello world")));
    std::fs::remove_dir_all(dir).ok();
}

/// `flowlog check`: the queue's state and policy, and one object read to prove
/// s3:GetObject; a queue that does not exist fails with SQS's answer.
#[test]
fn check_reports_the_queue_and_reads_a_sample_object() {
    let moto = Moto::setup("check");
    let dir = tempdir();
    let one = objects(&dir, moto.bucket("direct"), 1, 10);
    moto.put(&one);
    let config = write_config(
        &dir,
        &moto.source(""),
        "[sinks.out]\ntype = \"file\"\npath = \"/dev/null\"",
    );
    let check = |config: &Path| {
        runs::run_to_end({
            let mut command = flowlog(&["check", "--sample"], config);
            command.env("AWS_SECRET_ACCESS_KEY", "check-secret-not-printed");
            command
        })
    };
    let (ok, printed) = check(&config);
    assert!(ok, "{printed}");
    assert!(printed.contains("messages waiting"), "{printed}");
    assert!(
        printed.contains("no redrive policy (flowlog gives up on a message after 5 receives)"),
        "{printed}"
    );
    // Past the test events, the object's notification is found and its object read.
    let uri = format!("s3://{}/{}", one[0].bucket, one[0].key);
    assert!(
        printed.contains(&format!("s3:GetObject on {uri}: readable")),
        "{printed}"
    );
    let missing = Moto {
        queue_url: moto.queue_url.replace("/check-", "/missing-"),
        ..moto
    };
    let config = write_config(
        &dir,
        &missing.source(""),
        "[sinks.out]\ntype = \"file\"\npath = \"/dev/null\"",
    );
    let (ok, printed) = check(&config);
    assert!(!ok, "{printed}");
    assert!(printed.contains(&missing.queue_url), "{printed}");
    assert!(!printed.contains("check-secret-not-printed"), "{printed}");
    // A queue that is not there is not a permission problem: no IAM hint.
    assert!(!printed.contains("flowlog needs"), "{printed}");

    // An endpoint nobody answers on: said so, again without the IAM hint.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&missing.endpoint, &closed);
    std::fs::write(&config, text).unwrap();
    let (ok, printed) = check(&config);
    assert!(!ok, "{printed}");
    assert!(printed.contains("could not be reached"), "{printed}");
    assert!(!printed.contains("flowlog needs"), "{printed}");
    std::fs::remove_dir_all(dir).ok();
}

/// An S3 that takes the GetObject, sends the headers and a little of the body, then
/// nothing (a half-open connection): the object is abandoned after `read_timeout_secs`,
/// the message comes back, and on its `max_receive_count`-th receive it is given up:
/// dead-lettered with its body and the reason, and deleted. No worker is held for ever.
#[test]
fn a_stalled_object_body_is_abandoned_and_the_message_given_up() {
    let moto = Moto::setup("stall");
    let dir = tempdir();
    let receiver = HecReceiver::start(HecOptions::default());
    let stall = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s3 = format!("http://{}", stall.local_addr().unwrap());
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in stall.incoming() {
            let mut stream = stream.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") {
                if std::io::Read::read(&mut stream, &mut byte).unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let line = corpus::v2_line(0);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nETag: \"e\"\r\n\r\n{line}\n"
            );
            held.push(stream); // never answered further, never closed
        }
    });
    let body = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": moto.bucket("quiet")}, "object": {"key": "AWSLogs/stalled.log", "eTag": "e"}}}]})
    .to_string();
    moto.send(std::slice::from_ref(&body));
    // SQS at moto, S3 at the stalling server: the SDK's per-service endpoint variables.
    let source = moto
        .split_source("visibility_timeout_secs = 2\nmax_receive_count = 2\nread_timeout_secs = 1");
    let config = write_config(&dir, &source, &runs::hec_sink(&receiver.url(), ""));
    let _run = start_split(&config, &moto.endpoint, &s3);
    wait_until(
        Duration::from_secs(60),
        || {
            runs::dead_letters(&dir)
                .iter()
                .any(|d| d["raw"] == body.as_str())
                && moto.depth() == (0, 0)
        },
        || format!("queue {:?}: {}", moto.depth(), log(&config)),
    );
    let dead = runs::dead_letters(&dir);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("given up after 2 receives") && reason.contains("sent nothing for 1 s"),
        "{reason}"
    );
    assert!(dead[0]["source"]
        .as_str()
        .unwrap()
        .starts_with("sqs://stall-"));
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(receiver.ids().is_empty(), "a partial block is never sent");
    std::fs::remove_dir_all(dir).ok();
}

/// A message already received more than `max_receive_count` times (consumers that
/// crashed on it) is given up when it comes again, before its object is read.
#[test]
fn a_message_received_too_often_is_given_up_before_it_is_read() {
    let moto = Moto::setup("crashloop");
    let dir = tempdir();
    let receiver = HecReceiver::start(HecOptions::default());
    let one = objects(&dir, moto.bucket("direct"), 1, 10);
    moto.put(&one);
    script(&["receive", &moto.endpoint, &moto.queue_url, "3"], "");
    let config = write_config(
        &dir,
        &moto.source("max_receive_count = 2"),
        &runs::hec_sink(&receiver.url(), ""),
    );
    let _run = start(&config);
    wait_until(
        Duration::from_secs(30),
        || moto.depth() == (0, 0),
        || format!("queue {:?}: {}", moto.depth(), log(&config)),
    );
    let dead = runs::dead_letters(&dir);
    // The test event too was received three times, but names nothing to read.
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = dead[0]["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        "received 4 times (more than 2) without being delivered"
    );
    assert!(dead[0]["raw"]
        .as_str()
        .unwrap()
        .contains("ObjectCreated:Put"));
    assert!(receiver.ids().is_empty());
    std::fs::remove_dir_all(dir).ok();
}

/// An SQS endpoint in front of moto that holds, without ever answering, the requests of
/// the actions it is told to hang (by `X-Amz-Target`, the JSON protocol's action), as
/// many times as it is told; everything else is passed to moto.
struct HangingSqs {
    url: String,
    hung: Arc<std::sync::Mutex<HashMap<String, usize>>>,
}

impl HangingSqs {
    fn start(moto: &str, hang: &[(&str, usize)]) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = moto.trim_start_matches("http://").to_string();
        let left: HashMap<String, usize> = hang
            .iter()
            .map(|(action, n)| (format!("AmazonSQS.{action}"), *n))
            .collect();
        let left = Arc::new(std::sync::Mutex::new(left));
        let hung = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let (counts, budget) = (Arc::clone(&hung), Arc::clone(&left));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (upstream, counts, budget) =
                    (upstream.clone(), Arc::clone(&counts), Arc::clone(&budget));
                std::thread::spawn(move || relay(client, &upstream, &counts, &budget));
            }
        });
        Self { url, hung }
    }

    /// How many requests of each action were held.
    fn hung(&self) -> HashMap<String, usize> {
        self.hung.lock().unwrap().clone()
    }
}

/// Serves one client connection: each request is held for good or passed to moto.
fn relay(
    mut client: std::net::TcpStream,
    upstream: &str,
    hung: &std::sync::Mutex<HashMap<String, usize>>,
    left: &std::sync::Mutex<HashMap<String, usize>>,
) {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let header = |name: &str| {
        text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; length];
    if client.read_exact(&mut body).is_err() {
        return;
    }
    let action = header("x-amz-target").unwrap_or_default();
    let hang = left
        .lock()
        .unwrap()
        .get_mut(&action)
        .filter(|n| **n > 0)
        .map(|n| *n -= 1)
        .is_some();
    if hang {
        *hung.lock().unwrap().entry(action).or_default() += 1;
        // Half-open: the request was taken, nothing ever comes back.
        std::thread::sleep(Duration::from_secs(3600));
        return;
    }
    // One request per connection upstream, so its end is the answer's end.
    let head = text
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let Ok(mut server) = std::net::TcpStream::connect(upstream) else {
        return;
    };
    let request = format!("{}\r\nConnection: close\r\n\r\n", head.trim_end());
    if server.write_all(request.as_bytes()).is_err() || server.write_all(&body).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = server.read_to_end(&mut answer);
    // The client is told to close too: its next request comes on a new connection.
    let answer = String::from_utf8_lossy(&answer).replacen("\r\n", "\r\nConnection: close\r\n", 1);
    let _ = client.write_all(answer.as_bytes());
}

/// SQS itself half-open: a ReceiveMessage, every ChangeMessageVisibility and the first
/// DeleteMessageBatches are taken and never answered. Each call gives up after its own
/// timeout, the message comes back when its visibility ends, and in the end every record
/// is delivered (with the same ids however often it was read) and every message deleted.
#[test]
fn sqs_calls_that_are_never_answered_time_out_and_nothing_is_lost() {
    let moto = Moto::setup("halfopen");
    let dir = tempdir();
    let receiver = HecReceiver::start(HecOptions::default());
    let sqs = HangingSqs::start(
        &moto.endpoint,
        &[
            ("ReceiveMessage", 1),
            ("ChangeMessageVisibility", 1000),
            ("DeleteMessageBatch", 2),
        ],
    );
    let objects = objects(&dir, moto.bucket("direct"), 4, 200);
    let etags = moto.put(&objects);
    let expected = ids_of_all(&objects, &etags);
    // The sink is down long enough that the heartbeat is needed, and it finds no answer.
    receiver.set_down(true);
    let source = moto.split_source("visibility_timeout_secs = 2");
    let config = write_config(&dir, &source, &runs::hec_sink(&receiver.url(), ""));
    let _run = start_split(&config, &sqs.url, &moto.endpoint);
    wait_until(
        Duration::from_secs(90),
        || log(&config).contains("extending a message's visibility: no answer"),
        || log(&config),
    );
    receiver.set_down(false);
    let delivered = || delivered_of(&receiver, &expected);
    wait_drained(
        &moto,
        delivered,
        expected.len(),
        &config,
        Duration::from_secs(120),
    );
    let hung = sqs.hung();
    let log = log(&config);
    eprintln!("held without an answer: {hung:?}");
    assert_eq!(hung.get("AmazonSQS.ReceiveMessage"), Some(&1), "{hung:?}");
    assert!(hung
        .get("AmazonSQS.ChangeMessageVisibility")
        .is_some_and(|&n| n > 0));
    assert_eq!(
        hung.get("AmazonSQS.DeleteMessageBatch"),
        Some(&2),
        "{hung:?}"
    );
    assert!(log.contains("no answer in 16 s"), "{log}");
    assert!(log.contains("deleting"), "{log}");
    // Nothing but the expected ids arrived (a message read twice sends the same ids).
    let ids = receiver.ids();
    assert!(ids.keys().all(|id| expected.contains(id)));
    std::fs::remove_dir_all(dir).ok();
}

/// Objects that cannot be read as announced: an object that is a gzip bomb (2 GiB of
/// zeros, no line end) is dead-lettered at the line limit and its message deleted, with
/// memory bounded; a notification naming a version that does not exist (NoSuchVersion)
/// is handled as a missing key: dead-lettered, deleted, not retried.
#[test]
fn a_gzip_bomb_object_and_a_missing_version_are_dead_lettered_and_deleted() {
    let moto = Moto::setup("bomb");
    let dir = tempdir();
    let receiver = HecReceiver::start(HecOptions::default());
    let member = {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; 64 << 20]).unwrap();
        encoder.finish().unwrap()
    };
    let bomb = dir.join("bomb");
    std::fs::write(&bomb, member.repeat(32)).unwrap();
    let valid = objects(&dir, moto.bucket("direct"), 1, 50);
    let mut all = vec![Object {
        bucket: moto.bucket("direct").into(),
        key: "AWSLogs/bomb.log.gz".into(),
        file: bomb,
        lines: Vec::new(),
    }];
    let etags = moto.put(&valid);
    all.extend(valid);
    moto.put(&all[..1]);
    // A version of an object in the quiet bucket that was never written.
    let missing = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": moto.bucket("quiet")},
               "object": {"key": "AWSLogs/versioned.log", "versionId": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"}}}]})
    .to_string();
    script(
        &["put", &moto.endpoint],
        &json!([{"bucket": moto.bucket("quiet"), "key": "AWSLogs/versioned.log", "file": all[1].file}]).to_string(),
    );
    moto.send(std::slice::from_ref(&missing));
    let config = write_config(&dir, &moto.source(""), &runs::hec_sink(&receiver.url(), ""));
    let run = start(&config);
    let expected = ids_of_all(&all[1..], &etags);
    let delivered = || delivered_of(&receiver, &expected);
    wait_drained(
        &moto,
        delivered,
        expected.len(),
        &config,
        Duration::from_secs(180),
    );
    wait_until(
        Duration::from_secs(30),
        || runs::dead_letters(&dir).len() >= 2,
        || format!("{:?}", runs::dead_letters(&dir)),
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", run.0.id())).unwrap();
    let peak: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let dead = runs::dead_letters(&dir);
    eprintln!(
        "a 2 GiB gzip bomb object ({} bytes) read through SQS: peak RSS {peak} kB; {} dead letters",
        member.len() * 32,
        dead.len()
    );
    assert!(peak < 256_000, "{peak} kB");
    let bomb_letters: Vec<_> = dead
        .iter()
        .filter(|d| d["source"].as_str().unwrap().contains("bomb.log.gz"))
        .collect();
    assert!(!bomb_letters.is_empty(), "{} dead letters", dead.len());
    assert!(bomb_letters
        .iter()
        .all(|d| d["raw"].as_str().unwrap().len() <= 4096));
    let gone = dead
        .iter()
        .find(|d| d["source"].as_str().unwrap().contains("versioned.log"))
        .expect("the missing version is dead-lettered");
    assert!(
        gone["reason"]
            .as_str()
            .unwrap()
            .contains("the object is gone"),
        "{gone}"
    );
    assert!(
        gone["reason"].as_str().unwrap().contains("NoSuchVersion"),
        "{gone}"
    );
    std::fs::remove_dir_all(dir).ok();
}
