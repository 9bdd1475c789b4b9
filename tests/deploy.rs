//! The deployment pieces in `deploy/`, checked as their own tools check them: the systemd
//! unit by `systemd-analyze` (verify, and the exposure score of its sandbox), the
//! container's promise (a non-root user, a read-only root, only the data dir writable) by
//! running the binary so, the Kubernetes manifests against the Kubernetes and KEDA schemas,
//! and the configurations they carry by `flowlog validate`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::runs::run_to_end;
use common::{manifest_dir, set_mode, tempdir};

fn deploy(rel: &str) -> PathBuf {
    manifest_dir().join("deploy").join(rel)
}

fn flowlog() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowlog"))
}

#[test]
fn the_systemd_unit_verifies_and_its_exposure_is_at_most_2() {
    let dir = tempdir();
    let unit = std::fs::read_to_string(deploy("systemd/flowlog.service")).unwrap();
    // Reload is a validated SIGHUP; the binary's place is this build's.
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit}"
    );
    let path = dir.join("flowlog.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/flowlog", env!("CARGO_BIN_EXE_flowlog")),
    )
    .unwrap();
    // Documentation= names man:flowlog(1): the page `flowlog man` writes.
    let man = dir.join("man/man1");
    std::fs::create_dir_all(&man).unwrap();
    let page = flowlog().arg("man").output().unwrap();
    std::fs::write(man.join("flowlog.1"), page.stdout).unwrap();

    let (ok, printed) = run_to_end(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .env("MANPATH", dir.join("man")),
    );
    assert!(
        ok && printed.trim().is_empty(),
        "systemd-analyze verify: {printed}"
    );

    let (ok, printed) = run_to_end(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&path),
    );
    assert!(ok, "{printed}");
    let exposure: f64 = printed
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for flowlog.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {printed}"));
    assert!(exposure <= 2.0, "exposure {exposure}:\n{printed}");
}

/// What the Containerfile promises, without an image (none can be built here): in a mount
/// namespace of its own every file system is remounted read-only but the data dir, and the
/// binary runs as the image's user (65532) with no new privileges. A run reads the sample
/// object into a file sink in the data dir and exits 0; the same run told to write outside
/// the data dir fails, naming the read-only file system (so the sandbox really holds).
#[test]
fn the_container_runs_as_a_non_root_user_with_a_read_only_root() {
    // SAFETY: geteuid only reads the process's credentials.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test mounts and changes user: it needs root (as CI runs it)"
    );
    // Not under the target dir: the image's user must be able to reach it.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let root = std::env::temp_dir().join(format!("flowlog-container-{nanos}"));
    for d in ["bin", "etc", "input", "data"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    set_mode(&root, 0o755);
    let bin = root.join("bin/flowlog");
    std::fs::copy(env!("CARGO_BIN_EXE_flowlog"), &bin).unwrap();
    let input = root.join("input/s3-vpc-flow-v5.log.gz");
    std::fs::copy(
        manifest_dir().join("examples/s3-vpc-flow-v5.log.gz"),
        &input,
    )
    .unwrap();
    for path in [&bin, &input] {
        set_mode(path, 0o755);
    }
    let data = root.join("data");
    std::os::unix::fs::chown(&data, Some(65532), Some(65532)).unwrap();
    set_mode(&data, 0o700);
    let config = |out: &Path| {
        format!(
            "data_dir = \"{}\"\n[sources.s3]\ntype = \"file\"\npaths = [\"{}\"]\n\
             [sinks.out]\ntype = \"file\"\npath = \"{}\"\nformat = \"ecs\"\n",
            data.display(),
            input.display(),
            out.display()
        )
    };
    let inside = data.join("out.ndjson");
    let outside = root.join("out.ndjson");
    std::fs::write(root.join("etc/inside.toml"), config(&inside)).unwrap();
    std::fs::write(root.join("etc/outside.toml"), config(&outside)).unwrap();
    for name in ["etc/inside.toml", "etc/outside.toml"] {
        set_mode(&root.join(name), 0o644);
    }

    // Every mount read-only (its copy in this namespace), then the data dir writable
    // again (a bind mount of its own); then the image's user.
    let script = format!(
        r#"set -u
for target in $(findmnt -rn -o TARGET); do
  case "$target" in /proc*|/sys*|/dev|/dev/pts) continue;; esac
  mount -o remount,bind,ro "$target" 2>/dev/null
done
mount --bind {data} {data} && mount -o remount,bind,rw {data} || exit 90
run() {{ setpriv --reuid=65532 --regid=65532 --clear-groups --no-new-privs "$@"; }}
if run touch {root}/probe 2>/dev/null; then echo "the root is writable"; exit 91; fi
run {bin} run --once --config {root}/etc/inside.toml || exit 92
run {bin} run --once --config {root}/etc/outside.toml && exit 93
exit 0
"#,
        data = data.display(),
        root = root.display(),
        bin = bin.display(),
    );
    let (ok, printed) = run_to_end(Command::new("unshare").args(["--mount", "sh", "-c", &script]));
    assert!(ok, "{printed}");
    let written = std::fs::read_to_string(&inside).unwrap();
    assert!(written.lines().count() > 0, "nothing delivered: {printed}");
    assert!(!outside.exists());
    assert!(
        printed.contains(&outside.display().to_string())
            && printed.contains("Read-only file system"),
        "the run outside the data dir must fail naming why: {printed}"
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn the_kubernetes_manifests_are_schema_valid_and_carry_valid_configurations() {
    let validate = std::env::var("FLOWLOG_KUBERNETES_VALIDATE").expect(
        "FLOWLOG_KUBERNETES_VALIDATE is not set: run ./scripts/test.sh, which installs \
         kubernetes-validate (PyPI)",
    );
    let modules = std::env::var("FLOWLOG_NODE_MODULES").expect(
        "FLOWLOG_NODE_MODULES is not set: run ./scripts/test.sh, which installs \
         @kubernetes-models/keda (npm)",
    );
    let dir = deploy("kubernetes");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 3, "{manifests:?}");

    // Built-in kinds against the Kubernetes schemas, rejecting unknown fields.
    let (ok, printed) = run_to_end(Command::new(&validate).arg("--strict").args(&manifests));
    assert!(ok, "kubernetes-validate: {printed}");
    for kind in [
        "deployment/flowlog-sqs",
        "deployment/flowlog-firehose",
        "service/flowlog-firehose",
    ] {
        assert!(
            printed.contains(&format!("passed for resource {kind}")),
            "{printed}"
        );
    }
    // KEDA's kinds against KEDA's schemas.
    let (ok, printed) = run_to_end(
        Command::new("node")
            .arg(manifest_dir().join("scripts/validate-keda.mjs"))
            .arg(&modules)
            .args(&manifests),
    );
    assert!(ok, "KEDA: {printed}");
    assert!(
        printed.contains("ok   keda-scaledobject.yaml: ScaledObject/flowlog-sqs"),
        "{printed}"
    );

    // Each ConfigMap's flowlog.toml is a configuration flowlog accepts, with the values
    // its Deployment's environment gives (secrets, from Secrets, as placeholders).
    let script = r#"
import json, sys, yaml
out = []
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    env = {}
    for d in docs:
        if d.get('kind') == 'Deployment':
            for c in d['spec']['template']['spec']['containers']:
                for e in c.get('env', []):
                    env[e['name']] = e.get('value')
    for d in docs:
        if d.get('kind') == 'ConfigMap' and 'flowlog.toml' in d.get('data', {}):
            out.append([d['metadata']['name'], d['data']['flowlog.toml'], env])
print(json.dumps(out))
"#;
    let mut args = vec!["-c".into(), script.into()];
    args.extend(manifests.iter().map(|m| m.clone().into_os_string()));
    let out = common::run_python(args);
    type Carried = (String, String, BTreeMap<String, Option<String>>);
    let configs: Vec<Carried> = serde_json::from_slice(&out).unwrap();
    assert_eq!(configs.len(), 2, "{configs:?}");
    let work = tempdir();
    for (name, text, env) in configs {
        let path = work.join(format!("{name}.toml"));
        std::fs::write(&path, &text).unwrap();
        let mut command = flowlog();
        command
            .args(["validate", "--no-environment", "--config"])
            .arg(&path);
        for var in common::env_references(&text) {
            let value = env.get(&var).unwrap_or_else(|| {
                panic!("{name} refers to ${{{var}}}, which its Deployment does not set")
            });
            command.env(&var, value.as_deref().unwrap_or("from-a-secret"));
        }
        let (ok, printed) = run_to_end(&mut command);
        assert!(ok, "{name}: {printed}");
    }
}

/// Every metric the Grafana dashboard queries is one `/metrics` exports: a run with a
/// sink, detections, the reduction and a source that fails, scraped while it runs (the Kinesis source's series
/// are checked where a run reads a stream, in tests/kinesis.rs).
#[test]
fn the_grafana_dashboard_queries_only_metrics_flowlog_exports() {
    use std::io::Write;
    let names = common::dashboard_metric_names();
    assert!(names.len() >= 15, "{names:?}");
    let dir = tempdir();
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::create_dir(dir.join("incoming")).unwrap();
    let config = dir.join("flowlog.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[api]
address = "{api}"

[sources.vpc]
type = "stdin"

[sources.drop]
type = "directory"
path = "{incoming}"
poll_secs = 0.05

[transform.reduce]
aggregate = true
window_secs = 60

[detect]
findings = ["alerts"]

[sinks.flows]
type = "file"
path = "{out}"

[sinks.alerts]
type = "file"
path = "{alerts}"
format = "ocsf"
"#,
            data = dir.join("data").display(),
            out = dir.join("out.ndjson").display(),
            alerts = dir.join("alerts.ndjson").display(),
            incoming = dir.join("incoming").display(),
        ),
    )
    .unwrap();
    let mut child = flowlog()
        .args(["run", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(flowlog_test_receivers::corpus::v2_lines(0, 100).as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    let scrape_until = |what: &str| {
        let started = std::time::Instant::now();
        loop {
            let text = common::http_get(api, "/metrics").unwrap_or_default();
            if text.contains(what) {
                break text;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "no {what} in /metrics: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    scrape_until("flowlog_records_in_total{component_kind=\"sink\",component=\"flows\"}");
    // The directory goes away: the source's errors are counted (a family whose series
    // come with the first error).
    std::fs::remove_dir(dir.join("incoming")).unwrap();
    let metrics = scrape_until("flowlog_component_errors_total{");
    drop(stdin);
    child.kill().unwrap();
    child.wait().unwrap();
    let local = names.iter().filter(|n| !n.starts_with("flowlog_kinesis_"));
    let missing = common::missing_metrics(&metrics, local);
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, not in:\n{metrics}"
    );
}
