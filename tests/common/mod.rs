//! Helpers for end-to-end tests: run the real `flowlog` binary and read what it wrote.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub mod engines;
pub mod firehose;
pub mod runs;
pub mod samples;

/// Elastic's pipeline picks a layout by counting tokens; flowlog never does. These are the
/// layouts Elastic assumes for its test files, given to flowlog as `--format`.
pub const ELASTIC_V3_TCP_FLAGS: &str = "version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status";
pub const ELASTIC_V5: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path";
pub const ECS_FIELDS: &str = "ecs-cluster-arn ecs-cluster-name ecs-container-instance-arn ecs-container-instance-id ecs-container-id ecs-second-container-id ecs-service-name ecs-task-definition-arn ecs-task-arn ecs-task-id";
pub const ELASTIC_TGW: &str = "version resource-type account-id tgw-id tgw-attachment-id tgw-src-vpc-account-id tgw-dst-vpc-account-id tgw-src-vpc-id tgw-dst-vpc-id tgw-src-subnet-id tgw-dst-subnet-id tgw-src-eni tgw-dst-eni tgw-src-az-id tgw-dst-az-id tgw-pair-attachment-id srcaddr dstaddr srcport dstport protocol packets bytes start end log-status type packets-lost-no-route packets-lost-blackhole packets-lost-mtu-exceeded packets-lost-ttl-expired tcp-flags region flow-direction pkt-src-aws-service pkt-dst-aws-service";

/// Each Elastic test file with the `--format` flowlog needs for it.
pub fn elastic_fixture_formats() -> Vec<(&'static str, String)> {
    vec![
        (
            "test-extra-samples.log",
            flowlog_model::DEFAULT_FORMAT.to_string(),
        ),
        (
            "test-with-message-field.log",
            flowlog_model::DEFAULT_FORMAT.to_string(),
        ),
        (
            "test-tcp-flag-sequence.log",
            ELASTIC_V3_TCP_FLAGS.to_string(),
        ),
        ("test-v5-all-fields.log", ELASTIC_V5.to_string()),
        ("test-ecs-samples.log", format!("{ELASTIC_V5} {ECS_FIELDS}")),
        (
            "test-v8-samples.log",
            format!("{ELASTIC_V5} {ECS_FIELDS} reject-reason"),
        ),
        ("test-tgw-samples.log", ELASTIC_TGW.to_string()),
    ]
}

/// `../shared/fixtures`, beside the checkout (as in CI).
pub fn fixtures() -> PathBuf {
    let dir = manifest_dir().join("../shared/fixtures");
    assert!(
        dir.is_dir(),
        "conformance fixtures not found at {} (the shared/ folder sits beside the checkout)",
        dir.display()
    );
    dir
}

pub fn fixture(rel: &str) -> PathBuf {
    fixtures().join(rel)
}

/// What one run of the binary produced.
pub struct Run {
    pub records: Vec<Value>,
    pub dead_letters: Vec<Value>,
    pub stderr: String,
    pub success: bool,
    pub code: Option<i32>,
}

/// Runs `flowlog transform ARGS` (with a dead-letter file) on `stdin`.
pub fn transform(args: &[&str], stdin: &[u8]) -> Run {
    let (output, dead_letters) = transform_bytes(args, stdin);
    Run {
        records: ndjson(&output.stdout),
        dead_letters: ndjson(&dead_letters),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        success: output.status.success(),
        code: output.status.code(),
    }
}

/// [`transform`] unparsed: what the process wrote, and its dead-letter file's bytes.
pub fn transform_bytes(args: &[&str], stdin: &[u8]) -> (std::process::Output, Vec<u8>) {
    let dir = tempdir();
    let dead = dir.join("dead.ndjson");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowlog"))
        .arg("transform")
        .arg("--dead-letter")
        .arg(&dead)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flowlog");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().expect("flowlog output");
    writer.join().unwrap();
    let dead_letters = std::fs::read(&dead).unwrap_or_default();
    std::fs::remove_dir_all(&dir).ok();
    (output, dead_letters)
}

/// Runs `flowlog transform ARGS FILE`.
pub fn transform_file(file: &Path, args: &[&str]) -> Run {
    let mut all: Vec<&str> = args.to_vec();
    let file = file.to_str().unwrap().to_string();
    all.push(&file);
    transform(&all, b"")
}

pub fn ndjson(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .expect("output is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A fresh directory under the target dir's tmp.
pub fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    // The target dir outlives test runs, and process ids come round again: a directory
    // left by an earlier run (its checkpoints, its dead letters) must never be reused.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "t{}-{}-{started}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every fixture input flowlog decodes, with the arguments it needs.
pub fn fixture_inputs() -> Vec<(PathBuf, Vec<String>)> {
    let mut inputs = Vec::new();
    let mut add_dir = |dir: &str, keep: fn(&Path) -> bool| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(fixture(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| keep(p))
            .collect();
        files.sort();
        inputs.extend(files.into_iter().map(|f| {
            // CloudWatch Logs payloads carry no header line: their formats, as the
            // conformance tests give them.
            let format = match f.file_name().unwrap().to_str().unwrap() {
                "valid_vpc_flow_cw_custom.json" => Some("${version} ${interface-id} ${srcaddr} ${dstaddr}"),
                "valid_tgw_flow_cw.json" => Some("version account-id tgw-id tgw-attachment-id tgw-src-vpc-id tgw-dst-vpc-id tgw-src-subnet-id tgw-dst-subnet-id tgw-src-eni tgw-dst-eni tgw-src-az-id tgw-dst-az-id tgw-pair-attachment-id srcaddr dstaddr srcport dstport protocol packets bytes start end log-status type tcp-flags flow-direction region"),
                _ => None,
            };
            let args = format.map_or_else(Vec::new, |f| vec!["--format".to_string(), f.to_string()]);
            (f, args)
        }));
    };
    add_dir("aws-docs", |_| true);
    add_dir("otel-collector-contrib", |p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("valid_")
    });
    add_dir("envelopes", |p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("firehose-http-request")
    });
    for (file, format) in elastic_fixture_formats() {
        inputs.push((
            fixture(&format!("elastic-integrations/{file}")),
            vec!["--format".to_string(), format],
        ));
    }
    inputs
}

#[allow(unused_imports)]
pub use flowlog_model::time::days_from_civil;

/// The JSON Schema validator of OCSF Network Activity in `version` (from ../shared/ocsf).
pub fn ocsf_validator(version: &str) -> jsonschema::Validator {
    ocsf_class_validator("network_activity", version)
}

/// The JSON Schema validator of the OCSF `class` (`detection_finding`) in `version`.
pub fn ocsf_class_validator(class: &str, version: &str) -> jsonschema::Validator {
    let dir = fixtures().join("../ocsf/jsonschema");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{class}-{version}."))
        })
        .unwrap_or_else(|| panic!("no schema for {version} in {}", dir.display()));
    let schema: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// The documents Elastic's pipeline test expects for `elastic-integrations/FILE`.
pub fn elastic_expected(file: &str) -> Vec<Value> {
    let expected: Value = serde_json::from_slice(
        &std::fs::read(fixture(&format!(
            "elastic-integrations/{file}-expected.json"
        )))
        .unwrap(),
    )
    .unwrap();
    expected["expected"].as_array().unwrap().clone()
}

/// Every way `event` breaks the OCSF schema of `validator`, with where.
pub fn ocsf_errors(validator: &jsonschema::Validator, event: &Value) -> Vec<String> {
    validator
        .iter_errors(event)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// The moto server `scripts/test.sh` started, reset and filled by
/// `scripts/moto_fixture.py` (a VPC, a subnet, two tagged instances): its endpoint and
/// what was created, as the script prints it.
#[allow(dead_code)] // not every test binary uses moto
pub fn moto_instances() -> (String, Vec<Value>) {
    let endpoint = std::env::var("FLOWLOG_MOTO_ENDPOINT").expect(
        "FLOWLOG_MOTO_ENDPOINT is not set: run ./scripts/test.sh, which starts moto server",
    );
    let out = run_python([
        manifest_dir()
            .join("scripts/moto_fixture.py")
            .into_os_string(),
        endpoint.clone().into(),
    ]);
    (endpoint, serde_json::from_slice(&out).unwrap())
}

/// What [`python`] printed, run with `args`; a failure fails the test with its stderr.
pub fn run_python<I, A>(args: I) -> Vec<u8>
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(python()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The `${NAME}` environment variables a configuration refers to (not flow-log fields,
/// which are lower case; `${NAME:-default}` and `${NAME:?message}` name `NAME`).
pub fn env_references(text: &str) -> Vec<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split(['}', ':']).next())
        .filter(|name| {
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_string)
        .collect()
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `command` without the capabilities that let root read any file, when the tests run
/// as root (as in CI containers): file permissions then apply to it as to anyone.
pub fn as_unprivileged(command: std::process::Command) -> std::process::Command {
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        return command;
    }
    let mut wrapped = std::process::Command::new("setpriv");
    wrapped.args(["--bounding-set=-dac_override,-dac_read_search", "--"]);
    wrapped.arg(command.get_program()).args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// The whole answer (head and body) to `GET path` on `address`, if one came.
pub fn http_get(address: impl std::net::ToSocketAddrs, path: &str) -> Option<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// The Python with boto3 (the test script's venv).
#[allow(dead_code)]
pub fn python() -> String {
    std::env::var("FLOWLOG_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The checkout the tests run in: cargo's run-time `CARGO_MANIFEST_DIR`, not the compile-time
/// one (the shared target dir can hand this checkout a binary another checkout built, whose
/// baked-in path may be gone).
#[allow(dead_code)] // not every test binary reads files
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// How many lines the large end-to-end runs use: 1M (the acceptance size), or
/// `FLOWLOG_E2E_LINES`.
#[allow(dead_code)] // not every test binary runs them
pub fn large_lines() -> usize {
    std::env::var("FLOWLOG_E2E_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The deterministic ids of `lines` of the file `source`, in order.
#[allow(dead_code)] // not every test binary delivers records
pub fn expected_ids(source: &Path, lines: std::ops::RangeInclusive<u64>) -> Vec<String> {
    let source = flowlog_model::SourceId::new(source.to_string_lossy().into_owned());
    lines.map(|l| flowlog_sink::event_id(&source, l)).collect()
}

/// The metric names the Grafana dashboard in `deploy/grafana` queries (`flowlog_...`, as
/// written in its expressions: a histogram's `_bucket`, a counter's `_total`).
pub fn dashboard_metric_names() -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string(manifest_dir().join("deploy/grafana/flowlog.json"))
        .expect("deploy/grafana/flowlog.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut expressions = Vec::new();
    let mut stack = vec![&dashboard];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match v {
                        serde_json::Value::String(s) if key == "expr" || key == "query" => {
                            expressions.push(s.clone())
                        }
                        _ => stack.push(v),
                    }
                }
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for expression in expressions {
        for (at, _) in expression.match_indices("flowlog_") {
            let name: String = expression[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// The names among `names` that the Prometheus text `metrics` neither has a sample of nor
/// declares (`# TYPE`: a labelled family whose first series comes with its first event,
/// such as a component's first error).
pub fn missing_metrics<'a>(
    metrics: &str,
    names: impl IntoIterator<Item = &'a String>,
) -> Vec<&'a String> {
    names
        .into_iter()
        .filter(|name| {
            let sampled = metrics.lines().any(|l| {
                l.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            });
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            let declared = metrics.lines().any(|l| {
                l.strip_prefix("# TYPE ")
                    .and_then(|t| t.strip_prefix(family))
                    .is_some_and(|t| t.starts_with(' '))
            });
            !sampled && !declared
        })
        .collect()
}
