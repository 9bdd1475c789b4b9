//! The published least-privilege policies in `deploy/iam/` (the SQS and Kinesis sources,
//! Security Lake, `flowlog backfill`), each proven both ways against a moto server of its
//! own that enforces IAM (started with `INITIAL_NO_AUTH_ACTION_COUNT`;
//! `scripts/moto_iam_fixture.py` sets it up): a user holding exactly the policy passes
//! `check` and runs its input to the end (or plans, sends and delivers a backfill); the
//! same user without any one action of it fails, naming the action.
//!
//! `kms:Decrypt` is the one statement not proven here: moto's S3 serves SSE-KMS objects,
//! and its Kinesis encrypted streams' records, without asking KMS (deploy/iam/README.md
//! says so).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tempdir;
use serde_json::Value;

const LINES: usize = 20;

/// A moto server enforcing IAM, with the fixture's users, queue and objects.
struct IamMoto {
    /// The policy file in deploy/iam/ the user `flowlog` holds.
    policy: &'static str,
    server: Child,
    endpoint: String,
    fixture: Value,
}

impl IamMoto {
    fn start(dir: &Path, policy: &'static str) -> Self {
        let python = PathBuf::from(common::python());
        let moto = python.with_file_name("moto_server");
        assert!(
            moto.exists(),
            "{} not found: run ./scripts/test.sh, which installs moto[server] in a venv and \
             sets FLOWLOG_PYTHON",
            moto.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A server of its own: enforcement is one switch for the whole process, and the
        // other tests' moto runs without it.
        let server = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "6")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("moto.log")).unwrap())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut moto = Self {
            policy,
            server,
            endpoint,
            fixture: Value::Null,
        };
        let out = moto.fixture_command(&["setup", &moto.endpoint.clone(), &LINES.to_string()]);
        moto.fixture = serde_json::from_str(&out).unwrap();
        moto
    }

    fn fixture_command(&self, args: &[&str]) -> String {
        let script = common::manifest_dir().join("scripts/moto_iam_fixture.py");
        let out = Command::new(common::python())
            .arg(script)
            .args(args)
            .env("FLOWLOG_IAM_POLICY", self.policy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the fixture's `command` as the fixture user (allowed everything).
    fn as_fixture(&self, command: &str, rest: &[&str]) -> String {
        let key = |i: usize| self.fixture["fixture"][i].as_str().unwrap().to_string();
        let mut args = vec![command.to_string(), self.endpoint.clone(), key(0), key(1)];
        args.extend(rest.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.fixture_command(&args)
    }

    fn queue_url(&self) -> &str {
        self.fixture["queue_url"].as_str().unwrap()
    }

    fn object(&self, i: usize) -> &str {
        self.fixture["objects"][i]["uri"].as_str().unwrap()
    }

    /// `flowlog ARGS --config CONFIG` as the user holding the policy.
    fn flowlog(&self, args: &[&str], config: &Path) -> (bool, String) {
        let key = |i: usize| self.fixture["flowlog"][i].as_str().unwrap().to_string();
        common::runs::run_to_end(
            Command::new(env!("CARGO_BIN_EXE_flowlog"))
                .args(args)
                .arg("--config")
                .arg(config)
                .env("AWS_ACCESS_KEY_ID", key(0))
                .env("AWS_SECRET_ACCESS_KEY", key(1))
                .env_remove("AWS_SESSION_TOKEN")
                .env_remove("AWS_PROFILE")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("RUST_LOG", "warn"),
        )
    }
}

impl IamMoto {
    /// For each `(action, args)`: the user holding the policy without `action` runs
    /// `flowlog ARGS`, which fails, naming `action` as the one refused and nothing else.
    fn each_action_is_needed(&self, config: &Path, actions: &[(&str, &[&str])]) {
        for (action, args) in actions {
            self.as_fixture("policy", &[action]);
            let (ok, printed) = self.flowlog(args, config);
            assert!(!ok, "{args:?} passed without {action}: {printed}");
            let failed: Vec<&str> = printed.lines().filter(|l| l.starts_with("FAIL")).collect();
            assert!(
                failed
                    .iter()
                    .any(|l| l.contains(&format!("refused: flowlog needs {action}"))),
                "without {action}: {printed}"
            );
            assert!(
                failed.iter().all(|l| l.contains(action)),
                "only {action} may be refused: {printed}"
            );
        }
    }
}

impl Drop for IamMoto {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn the_published_sqs_policy_is_enough_and_every_action_in_it_is_needed() {
    let dir = tempdir();
    let moto = IamMoto::start(&dir, "sqs-source.json");
    let out = dir.join("out.ndjson");
    let config = file_sink_config(
        &dir,
        &format!(
            "type = \"sqs\"\nqueue_url = \"{}\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n\
             s3_force_path_style = true\nwait_time_secs = 1",
            moto.queue_url(),
            moto.endpoint
        ),
    );

    // The policy as published: every permission check asks about is there. Without
    // --sample no message is received; with it the objects are read (S3's permissions).
    let (ok, printed) = moto.flowlog(&["check"], &config);
    assert!(ok, "{printed}");
    assert!(
        printed.contains(
            "sqs:ReceiveMessage, sqs:ChangeMessageVisibility and sqs:DeleteMessage: allowed"
        ),
        "{printed}"
    );
    assert!(printed.contains("s3:GetObject not tried"), "{printed}");
    let (ok, printed) = moto.flowlog(&["check", "--sample"], &config);
    assert!(ok, "{printed}");
    for found in [
        format!("s3:GetObject on {}: readable", moto.object(0)),
        format!("s3:GetObjectVersion on {}: readable", moto.object(1)),
    ] {
        assert!(printed.contains(&found), "{found}: {printed}");
    }

    the_sample_in_the_docs(&moto);

    // Without any one of its actions, check fails and names the one missing.
    moto.each_action_is_needed(
        &config,
        &[
            ("sqs:GetQueueAttributes", &["check"][..]),
            ("sqs:ReceiveMessage", &["check"]),
            ("sqs:ChangeMessageVisibility", &["check"]),
            ("sqs:DeleteMessage", &["check"]),
            ("s3:GetObject", &["check", "--sample"]),
            ("s3:GetObjectVersion", &["check", "--sample"]),
        ],
    );

    // The policy as published again: the queue is read to its end, every record
    // delivered, every message deleted.
    moto.as_fixture("policy", &[]);
    let (ok, printed) = moto.flowlog(&["run", "--once"], &config);
    assert!(ok, "{printed}");
    let delivered = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(delivered.lines().count(), 2 * LINES, "{printed}");
    assert_eq!(
        moto.as_fixture("depth", &[moto.queue_url()]).trim(),
        "0",
        "messages left on the queue: {printed}"
    );
}

/// docs/operations.md's SQS `check` sample, as the policy's user: the check, the same with
/// `--sample`, then without `sqs:GetQueueAttributes`.
fn the_sample_in_the_docs(moto: &IamMoto) {
    let sample = common::samples::sample("docs/operations.md", "check-sqs");
    assert_eq!(sample.sessions.len(), 3, "{}", sample.at);
    let key = |i: usize| moto.fixture["flowlog"][i].as_str().unwrap().to_string();
    let stage = common::samples::Stage::new()
        .replace(
            "127.0.0.1:5000",
            moto.endpoint.trim_start_matches("http://"),
        )
        .env("AWS_ACCESS_KEY_ID", &key(0))
        .env("AWS_SECRET_ACCESS_KEY", &key(1))
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    stage.write(&sample);
    let mut problems: Vec<String> = sample.sessions[..2]
        .iter()
        .filter_map(|s| stage.run(&sample, s).err())
        .collect();
    moto.as_fixture("policy", &["sqs:GetQueueAttributes"]);
    problems.extend(stage.run(&sample, &sample.sessions[2]).err());
    moto.as_fixture("policy", &[]);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// A configuration delivering into `<dir>/out.ndjson` (a backfill replaces its sources).
/// `dir/flowlog.toml`: the source `vpc` with `source` (its settings) into a file sink
/// writing `dir/out.ndjson`.
fn file_sink_config(dir: &Path, source: &str) -> PathBuf {
    let config = dir.join("flowlog.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{dir}/data\"\nshutdown_timeout_secs = 10\n[sources.vpc]\n{source}\n\
             [sinks.out]\ntype = \"file\"\npath = \"{dir}/out.ndjson\"\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn the_published_backfill_policy_is_enough_and_every_action_in_it_is_needed() {
    let dir = tempdir();
    let moto = IamMoto::start(&dir, "backfill.json");
    let queue = moto.queue_url().to_string();
    let backfill = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "backfill",
            "s3://example-flow-log-bucket/AWSLogs/123456789012/",
            "--since",
            "2026-08-01",
            "--until",
            "2026-08-02",
            "--endpoint-url",
            &moto.endpoint,
            "--aws-region",
            "us-east-1",
            "--s3-force-path-style",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: &[String], home: &Path| {
        std::fs::create_dir_all(home).unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        moto.flowlog(&args, &file_sink_config(home, "type = \"stdin\""))
    };
    let status = |home: &Path| {
        let args = [
            "backfill".to_string(),
            "--status".into(),
            queue.clone(),
            "--endpoint-url".into(),
            moto.endpoint.clone(),
            "--aws-region".into(),
            "us-east-1".into(),
        ];
        run(&args, home)
    };

    // The policy as published: planned, sent to the queue, its depth read, delivered.
    let (ok, printed) = run(&backfill(&["--dry-run"]), &dir.join("plan"));
    assert!(ok && printed.contains("objects: 2 "), "{printed}");
    let (ok, printed) = run(&backfill(&["--enqueue", &queue]), &dir.join("enqueue"));
    assert!(ok && printed.contains("sent 2 object(s)"), "{printed}");
    // The fixture's own two notifications, and the two sent.
    let (ok, printed) = status(&dir.join("status"));
    assert!(ok && printed.contains(": 4 waiting"), "{printed}");
    let (ok, printed) = run(&backfill(&[]), &dir.join("deliver"));
    assert!(ok, "{printed}");
    let delivered = std::fs::read_to_string(dir.join("deliver/out.ndjson")).unwrap();
    assert_eq!(delivered.lines().count(), 2 * LINES, "{printed}");

    // Without any one of its actions, the part that needs it fails and names it.
    for (action, part) in [
        ("s3:ListBucket", "--dry-run"),
        ("s3:GetObject", ""),
        ("sqs:SendMessage", "--enqueue"),
        ("sqs:GetQueueAttributes", "--status"),
    ] {
        moto.as_fixture("policy", &[action]);
        let home = dir.join(format!("without-{}", action.replace(':', "-")));
        let (ok, printed) = match part {
            "--status" => status(&home),
            "--enqueue" => run(&backfill(&["--enqueue", &queue]), &home),
            "--dry-run" => run(&backfill(&["--dry-run"]), &home),
            _ => run(&backfill(&["--parallel", "2"]), &home),
        };
        assert!(!ok, "passed without {action}: {printed}");
        assert!(
            printed.contains(&format!("refused: flowlog needs {action}")),
            "without {action}: {printed}"
        );
    }
}

/// `deploy/iam/security-lake.json` with the provider role Security Lake would create: the
/// user holding the file assumes the role (with the external id), and as the role `check`
/// passes and a run writes its objects; without `sts:AssumeRole` (the user's) or
/// `s3:PutObject` (the role's), check fails and names it.
#[test]
fn the_published_security_lake_policy_is_enough_and_every_action_in_it_is_needed() {
    let dir = tempdir();
    let moto = IamMoto::start(&dir, "security-lake.json");
    let lake: Value = serde_json::from_str(&moto.as_fixture("lake", &[])).unwrap();
    let input = dir.join("flows.log");
    let lines: String = (0..LINES)
        .map(|i| {
            format!(
                "2 123456789012 eni-0a1b2c3d 10.0.0.{} 10.1.0.1 {} 443 6 10 840 1785542400 \
                 1785542460 ACCEPT OK\n",
                i + 1,
                1024 + i
            )
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let config = dir.join("flowlog.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
shutdown_timeout_secs = 10
[sources.vpc]
type = "file"
paths = ["{input}"]
[sinks.lake]
type = "security_lake"
bucket = "{bucket}"
source_name = "vpcflow"
region = "us-east-1"
endpoint_url = "{endpoint}"
force_path_style = true
role_arn = "{role}"
external_id = "{external_id}"
"#,
            data = dir.join("data").display(),
            input = input.display(),
            bucket = lake["bucket"].as_str().unwrap(),
            endpoint = moto.endpoint,
            role = lake["role_arn"].as_str().unwrap(),
            external_id = lake["external_id"].as_str().unwrap(),
        ),
    )
    .unwrap();

    let (ok, printed) = moto.flowlog(&["check"], &config);
    assert!(ok, "{printed}");
    assert!(printed.contains("writable under ext/vpcflow/"), "{printed}");
    let (ok, printed) = moto.flowlog(&["run", "--once"], &config);
    assert!(ok, "{printed}");
    let script = common::manifest_dir().join("scripts/security_lake_read.py");
    let key = |i: usize| moto.fixture["fixture"][i].as_str().unwrap().to_string();
    let out = Command::new(common::python())
        .arg(script)
        .args(["s3", &moto.endpoint, lake["bucket"].as_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", key(0))
        .env("AWS_SECRET_ACCESS_KEY", key(1))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: usize = common::ndjson(&out.stdout)
        .iter()
        .filter_map(|o| o["events"].as_array().map(Vec::len))
        .sum();
    assert_eq!(events, LINES, "{printed}");

    // Without the user's sts:AssumeRole, or the role's s3:PutObject.
    moto.as_fixture("policy", &["sts:AssumeRole"]);
    let (ok, printed) = moto.flowlog(&["check"], &config);
    assert!(!ok, "check passed without sts:AssumeRole: {printed}");
    assert!(
        printed.contains("refused: flowlog needs sts:AssumeRole"),
        "{printed}"
    );
    moto.as_fixture("policy", &[]);
    // Another external id: the role's trust policy refuses it.
    let wrong = dir.join("wrong-external-id.toml");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(&config).unwrap().replace(
            "external_id = \"flowlog-vpcflow\"",
            "external_id = \"guess\"",
        ),
    )
    .unwrap();
    let (ok, printed) = moto.flowlog(&["check"], &wrong);
    assert!(!ok, "check passed with another external id: {printed}");
    assert!(printed.contains("with the external id"), "{printed}");
    moto.as_fixture("lake", &["s3:PutObject"]);
    let (ok, printed) = moto.flowlog(&["check"], &config);
    assert!(!ok, "check passed without s3:PutObject: {printed}");
    assert!(
        printed.contains("refused: flowlog needs s3:PutObject"),
        "{printed}"
    );
}

#[test]
fn the_published_kinesis_policy_is_enough_and_every_action_in_it_is_needed() {
    let dir = tempdir();
    let moto = IamMoto::start(&dir, "kinesis-source.json");
    let (records, lines) = (30, 5);
    let stream: Value = serde_json::from_str(
        &moto.as_fixture("kinesis", &[&records.to_string(), &lines.to_string()]),
    )
    .unwrap();
    let out = dir.join("out.ndjson");
    let config = file_sink_config(
        &dir,
        &format!(
            "type = \"kinesis\"\nstream_name = \"{}\"\napplication_name = \"flow-logs\"\n\
             region = \"us-east-1\"\nendpoint_url = \"{}\"\nidle_poll_secs = 0.2",
            stream["stream"].as_str().unwrap(),
            moto.endpoint
        ),
    );

    // Before the first run: no lease table yet, and every permission check asks about.
    let (ok, printed) = moto.flowlog(&["check"], &config);
    assert!(ok, "{printed}");
    for found in [
        "stream flow-logs: ACTIVE, 2 open shards",
        "kinesis:GetShardIterator and kinesis:GetRecords: allowed",
        "lease table flowlog-flow-logs: not there yet",
        "dynamodb:PutItem, dynamodb:UpdateItem and dynamodb:DeleteItem: allowed",
    ] {
        assert!(printed.contains(found), "{found}: {printed}");
    }

    // Without dynamodb:CreateTable the first run cannot keep leases: it fails, and says so.
    moto.as_fixture("policy", &["dynamodb:CreateTable"]);
    let (ok, printed) = moto.flowlog(&["run", "--once"], &config);
    assert!(!ok, "ran without a lease table: {printed}");
    assert!(
        printed.contains("refused: flowlog needs dynamodb:CreateTable"),
        "{printed}"
    );

    // The policy as published: the stream is read to its end, every line delivered.
    moto.as_fixture("policy", &[]);
    let (ok, printed) = moto.flowlog(&["run", "--once"], &config);
    assert!(ok, "{printed}");
    let delivered = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(
        delivered.lines().count() as u64,
        stream["lines"].as_u64().unwrap(),
        "{printed}"
    );
    let (ok, printed) = moto.flowlog(&["check"], &config);
    assert!(ok, "{printed}");
    assert!(
        printed.contains(
            "lease table flowlog-flow-logs: 2 leases (held by nobody: 2); checkpoints: 2 within"
        ),
        "{printed}"
    );

    // Without any one of its actions, check fails and names the one missing.
    moto.each_action_is_needed(
        &config,
        &[
            "kinesis:DescribeStreamSummary",
            "kinesis:ListShards",
            "kinesis:GetShardIterator",
            "kinesis:GetRecords",
            "dynamodb:DescribeTable",
            "dynamodb:Scan",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
        ]
        .map(|action| (action, &["check"][..])),
    );
}

/// A port scan's finding, imported into Security Hub by a user holding
/// `deploy/iam/security-hub.json`: `check` passes (an import of nothing);
/// a second run imports the same finding again and Security Hub still holds one (its id
/// is the finding's own); without its one action, `check` fails naming it.
#[test]
fn the_published_security_hub_policy_is_enough_and_every_action_in_it_is_needed() {
    let dir = tempdir();
    let moto = IamMoto::start(&dir, "security-hub.json");
    moto.as_fixture("hub", &[]);
    // Ports 1 to 600 of one host, refused: a vertical scan.
    let scan: String = (0..600)
        .map(|i| {
            let start = 1_763_800_000 + i / 6;
            format!(
                "2 123456789012 eni-0a77 10.0.7.77 10.0.3.9 40000 {} 6 10 44 {start} {} REJECT OK\n",
                1 + i,
                start + 30
            )
        })
        .collect();
    let input = dir.join("scan.log");
    std::fs::write(&input, scan).unwrap();
    let config = file_sink_config(
        &dir,
        &format!("type = \"file\"\npaths = [\"{}\"]", input.display()),
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}[sinks.hub]\ntype = \"security_hub\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n\
             batch_timeout_secs = 0.1\n[detect]\nfindings = [\"hub\"]\n\
             [detect.admin_ports]\nenabled = false\n[detect.outbound_dns]\nenabled = false\n",
            moto.endpoint
        ),
    )
    .unwrap();

    let (ok, printed) = moto.flowlog(&["check"], &config);
    assert!(ok, "{printed}");
    assert!(
        printed.contains("product/123456789012/default; securityhub:BatchImportFindings: allowed"),
        "{printed}"
    );
    let findings =
        || -> Vec<Value> { serde_json::from_str(&moto.as_fixture("hub-findings", &[])).unwrap() };
    for run in 0..2 {
        // A data dir of its own each time: the second run finds the scan afresh.
        let _ = std::fs::remove_dir_all(dir.join("data"));
        let (ok, printed) = moto.flowlog(&["run", "--once"], &config);
        assert!(ok, "run {run}: {printed}");
        let held = findings();
        assert_eq!(held.len(), 1, "run {run}: {held:?}");
        let f = &held[0];
        assert_eq!(f["GeneratorId"], "flowlog/vertical_scan");
        assert_eq!(
            f["ProductArn"],
            "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default"
        );
        assert_eq!(f["Resources"][0]["Id"], "eni-0a77");
        assert_eq!(f["Severity"]["Label"], "MEDIUM");
    }

    moto.each_action_is_needed(
        &config,
        &[("securityhub:BatchImportFindings", &["check"][..])],
    );
}
