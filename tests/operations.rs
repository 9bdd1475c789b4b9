//! The process around the data plane, as an operator meets it: a configuration that
//! cannot work fails at start and says why; `check` changes nothing; a closed stdout ends
//! a command quietly; nothing listens unless asked to.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::runs::{flowlog, run_to_end, write_config};
use common::{set_mode, tempdir};

/// A file sink writing ECS to `path`.
fn file_sink(path: &Path) -> String {
    format!(
        "[sinks.out]\ntype = \"file\"\npath = \"{}\"\nformat = \"ecs\"",
        path.display()
    )
}

fn file_source(paths: &[String], extra: &str) -> String {
    let paths: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
    format!("type = \"file\"\npaths = [{}]\n{extra}", paths.join(", "))
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// `dir/flows.log` with `lines` v2 lines, read once by the source `vpc` into an ECS file
/// sink writing `out`: the configuration's path.
fn one_file(dir: &Path, lines: usize, out: &Path) -> std::path::PathBuf {
    let input = dir.join("flows.log");
    std::fs::write(&input, flowlog_test_receivers::corpus::v2_lines(0, lines)).unwrap();
    write_config(
        dir,
        &file_source(&[input.display().to_string()], ""),
        &file_sink(out),
    )
}

/// `settings` (lines) in the configuration's `[api]` table.
fn set_api(config: &Path, settings: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        config,
        text.replace("[api]\n", &format!("[api]\n{settings}\n")),
    )
    .unwrap();
}

/// `flowlog run` to its end: whether it succeeded, and what it logged. A run that does
/// not end (a source retrying forever what cannot work) fails the test instead of hanging
/// it.
fn run(config: &Path) -> (bool, String) {
    run_with(&["run"], config)
}

fn run_with(args: &[&str], config: &Path) -> (bool, String) {
    // Logs go to a file (see `flowlog`): a pipe read only at the end could fill and stall
    // the very run being waited for.
    let mut child = flowlog(args, config).spawn().unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("flowlog run did not end: {}", logged(config));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (status.success(), logged(config))
}

fn logged(config: &Path) -> String {
    std::fs::read_to_string(common::runs::stderr_file(config)).unwrap_or_default()
}

#[test]
fn a_missing_input_fails_the_start_naming_source_path_and_os_error() {
    let dir = tempdir();
    let missing = dir.join("missing.log");
    let out = dir.join("out.ndjson");
    let config = write_config(
        &dir,
        &file_source(&[missing.display().to_string()], ""),
        &file_sink(&out),
    );
    let (ok, printed) = run(&config);
    assert!(!ok, "run succeeded with a missing input: {printed}");
    assert!(printed.contains("source vpc"), "{printed}");
    assert!(
        printed.contains(&format!("{}: No such file or directory", missing.display())),
        "{printed}"
    );
    // It failed before anything started: no sink output.
    assert!(!out.exists());
}

#[test]
fn a_glob_is_expanded_and_one_matching_nothing_fails_the_start() {
    let dir = tempdir();
    let incoming = dir.join("incoming");
    std::fs::create_dir(&incoming).unwrap();
    for (name, from) in [("a.log", 0), ("b.log", 10), ("skip.txt", 20)] {
        let text = flowlog_test_receivers::corpus::v2_lines(from, 10);
        std::fs::write(incoming.join(name), text).unwrap();
    }
    let out = dir.join("out.ndjson");
    let pattern = incoming.join("*.log").display().to_string();
    let config = write_config(&dir, &file_source(&[pattern], ""), &file_sink(&out));
    let (ok, printed) = run(&config);
    assert!(ok, "{printed}");
    assert_eq!(lines(&out), 20, "both .log files, not the .txt");

    let nothing = incoming.join("*.gz").display().to_string();
    let config = write_config(
        &dir,
        &file_source(std::slice::from_ref(&nothing), ""),
        &file_sink(&out),
    );
    let (ok, printed) = run(&config);
    assert!(!ok, "{printed}");
    assert!(
        printed.contains(&format!("{nothing}: matches no file")),
        "{printed}"
    );
}

#[test]
fn a_followed_glob_picks_up_files_that_appear_later() {
    let dir = tempdir();
    let incoming = dir.join("incoming");
    std::fs::create_dir(&incoming).unwrap();
    std::fs::write(
        incoming.join("first.log"),
        flowlog_test_receivers::corpus::v2_lines(0, 5),
    )
    .unwrap();
    let out = dir.join("out.ndjson");
    let pattern = incoming.join("*.log").display().to_string();
    let config = write_config(
        &dir,
        &file_source(&[pattern], "follow = true\npoll_secs = 0.05"),
        &file_sink(&out),
    );
    let child = flowlog(&["run"], &config).spawn().unwrap();
    wait_until(|| lines(&out) == 5);
    std::fs::write(
        incoming.join("second.log"),
        flowlog_test_receivers::corpus::v2_lines(5, 7),
    )
    .unwrap();
    wait_until(|| lines(&out) == 12);
    let (ok, log) = common::runs::finish(terminate(child), &config);
    assert!(ok, "{log}");
    assert_eq!(lines(&out), 12);
}

#[test]
fn an_unreadable_input_fails_the_start_with_permission_denied() {
    let dir = tempdir();
    let input = dir.join("secret.log");
    std::fs::write(&input, flowlog_test_receivers::corpus::v2_lines(0, 3)).unwrap();
    set_mode(&input, 0o000);
    let out = dir.join("out.ndjson");
    let config = write_config(
        &dir,
        &file_source(&[input.display().to_string()], ""),
        &file_sink(&out),
    );
    let (ok, printed) = run_to_end(common::as_unprivileged(flowlog(&["run"], &config)));
    assert!(!ok, "{printed}");
    assert!(
        printed.contains(&format!("{}: Permission denied", input.display())),
        "{printed}"
    );
}

#[test]
fn a_firehose_port_in_use_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let dir = tempdir();
    let source = format!("type = \"firehose\"\naddress = \"{address}\"\naccess_key = \"k\"");
    let config = write_config(&dir, &source, &file_sink(&dir.join("out.ndjson")));
    let (ok, printed) = run(&config);
    assert!(!ok, "{printed}");
    assert!(
        printed.contains(&format!(
            "source vpc: cannot listen on {address}: Address already in use"
        )),
        "{printed}"
    );
}

#[test]
fn an_unreadable_directory_fails_the_start() {
    let dir = tempdir();
    let missing = dir.join("no-such-dir");
    let source = format!("type = \"directory\"\npath = \"{}\"", missing.display());
    let config = write_config(&dir, &source, &file_sink(&dir.join("out.ndjson")));
    let (ok, printed) = run(&config);
    assert!(!ok, "{printed}");
    assert!(
        printed.contains(&format!("{}: No such file or directory", missing.display())),
        "{printed}"
    );
}

#[test]
fn a_synced_tree_is_read_recursively_and_once_ends_the_run() {
    let dir = tempdir();
    let root = dir.join("archive");
    let days = root.join("AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/08");
    for (day, from) in [("01", 0), ("02", 10)] {
        std::fs::create_dir_all(days.join(day)).unwrap();
        let name = format!("123456789012_vpcflowlogs_us-east-1_fl-1_202608{day}T0000Z_x.log");
        let text = flowlog_test_receivers::corpus::v2_lines(from, 10);
        std::fs::write(days.join(day).join(name), text).unwrap();
    }
    // Being written (a leading dot) and beyond max_depth: left alone.
    std::fs::write(days.join("01/.partial.log"), "junk\n").unwrap();
    let out = dir.join("out.ndjson");
    let source = format!("type = \"directory\"\npath = \"{}\"", root.display());
    let config = write_config(&dir, &source, &file_sink(&out));
    let (ok, printed) = run_with(&["run", "--once"], &config);
    assert!(ok, "{printed}");
    assert_eq!(lines(&out), 20);
    // Again: everything is checkpointed, nothing is read twice.
    let (ok, printed) = run_with(&["run", "--once"], &config);
    assert!(ok, "{printed}");
    assert_eq!(lines(&out), 20);

    // Not recursive, or not deep enough: the tree is not read.
    let shallow = format!("{source}\nmax_depth = 3");
    let other = dir.join("other.ndjson");
    let config = write_config(&dir, &shallow, &file_sink(&other));
    std::fs::remove_dir_all(dir.join("data")).unwrap();
    let (ok, printed) = run_with(&["run", "--once"], &config);
    assert!(ok, "{printed}");
    assert_eq!(lines(&other), 0);
}

#[test]
fn a_finite_run_with_dead_letters_exits_non_zero_with_the_count() {
    let dir = tempdir();
    let input = dir.join("flows.log");
    let mut text = flowlog_test_receivers::corpus::v2_lines(0, 3);
    text.push_str("2 not a flow log line\n");
    std::fs::write(&input, text).unwrap();
    let out = dir.join("out.ndjson");
    let config = write_config(
        &dir,
        &file_source(&[input.display().to_string()], "follow = true"),
        &file_sink(&out),
    );
    let (ok, printed) = run_with(&["run", "--once"], &config);
    assert!(!ok, "{printed}");
    assert!(
        printed.contains("1 record(s) were dead-lettered"),
        "{printed}"
    );
    assert_eq!(lines(&out), 3);

    let source = "type = \"firehose\"\naddress = \"127.0.0.1:0\"\naccess_key = \"k\"";
    let config = write_config(&dir, source, &file_sink(&out));
    let (ok, printed) = run_with(&["run", "--once"], &config);
    assert!(!ok, "{printed}");
    assert!(
        printed.contains("cannot be part of a finite run"),
        "{printed}"
    );
}

#[test]
fn sighup_reloads_a_changed_sink_and_an_invalid_file_keeps_the_running_one() {
    let dir = tempdir();
    let input = dir.join("flows.log");
    std::fs::write(&input, flowlog_test_receivers::corpus::v2_lines(0, 5)).unwrap();
    let append = |from, n| {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&input)
            .unwrap();
        let text = flowlog_test_receivers::corpus::v2_lines(from, n);
        file.write_all(text.as_bytes()).unwrap();
    };
    let (first, second) = (dir.join("first.ndjson"), dir.join("second.ndjson"));
    let source = file_source(
        &[input.display().to_string()],
        "follow = true\npoll_secs = 0.05",
    );
    let config = write_config(&dir, &source, &file_sink(&first));
    let mut command = flowlog(&["run"], &config);
    command.env("RUST_LOG", "info");
    let child = command.spawn().unwrap();
    wait_until(|| lines(&first) == 5);

    // The sink's output moves: after SIGHUP the old generation drains and the new one
    // goes on from the checkpoint.
    write_config(&dir, &source, &file_sink(&second));
    signal(&child, libc::SIGHUP);
    wait_until(|| logged(&config).contains("reload: the new configuration starts"));
    append(5, 7);
    wait_until(|| lines(&second) == 7);

    // A file that does not parse: refused, logged, and the running configuration stays.
    std::fs::write(&config, "data_dir = [").unwrap();
    signal(&child, libc::SIGHUP);
    wait_until(|| logged(&config).contains("reload refused"));
    append(12, 3);
    wait_until(|| lines(&second) == 10);

    signal(&child, libc::SIGTERM);
    let (ok, log) = common::runs::finish(child, &config);
    assert!(ok, "{log}");
    // Nothing lost, nothing sent twice: the first five before the reload, the rest after.
    assert_eq!((lines(&first), lines(&second)), (5, 10), "{log}");
}

#[test]
fn check_creates_nothing_and_says_what_run_would_create() {
    let dir = tempdir();
    let out = dir.join("archive/2026/out.ndjson");
    let config = one_file(&dir, 3, &out);
    let before = listing(&dir);
    let (ok, printed) = run_to_end(flowlog(&["check"], &config));
    assert!(ok, "{printed}");
    assert_eq!(
        listing(&dir),
        before,
        "check changed the file system: {printed}"
    );
    assert!(
        printed.contains(&format!(
            "ok   sink out (file): {} does not exist; run would create it, with the directories {}, {}",
            out.display(),
            dir.join("archive").display(),
            dir.join("archive/2026").display()
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "ok   data_dir: {} does not exist; run would create it",
            dir.join("data").display()
        )),
        "{printed}"
    );
    assert!(
        printed.contains("ok   api: off (no [api] address)"),
        "{printed}"
    );

    // A path that cannot be created fails check, still creating nothing.
    let config = one_file(&dir, 3, &dir.join("flows.log/out.ndjson"));
    let before = listing(&dir);
    let (ok, printed) = run_to_end(flowlog(&["check"], &config));
    assert!(!ok, "{printed}");
    assert_eq!(listing(&dir), before);
    assert!(printed.contains("FAIL sink out (file)"), "{printed}");
    assert!(printed.contains("is not a directory"), "{printed}");
}

#[test]
fn check_bind_tests_the_api_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let dir = tempdir();
    let config = one_file(&dir, 1, &dir.join("out.ndjson"));
    set_api(&config, &format!("address = \"{address}\""));
    let (ok, printed) = run_to_end(flowlog(&["check"], &config));
    assert!(!ok, "{printed}");
    assert!(
        printed.contains(&format!("FAIL api: cannot listen on {address}")),
        "{printed}"
    );
}

#[test]
fn without_an_api_table_nothing_listens() {
    // The old default port, held here: a run that still listened there would fail.
    let held = std::net::TcpListener::bind("127.0.0.1:9598");
    let dir = tempdir();
    let out = dir.join("out.ndjson");
    let config = one_file(&dir, 4, &out);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[api]\n", "");
    std::fs::write(&config, text).unwrap();
    let (ok, printed) = run(&config);
    assert!(ok, "{printed}");
    assert_eq!(lines(&out), 4);
    drop(held);
}

#[test]
fn every_printing_command_ends_quietly_on_a_closed_stdout() {
    let dir = tempdir();
    let config = one_file(&dir, 1, &dir.join("out.ndjson"));
    let config = config.display().to_string();
    for args in [
        vec!["check", "--config", config.as_str()],
        vec!["schema", "--component-template"],
        vec!["schema", "--ecs-fields"],
        vec!["fields"],
        vec!["fields", "--csv"],
        vec!["completions", "bash"],
        vec!["man"],
    ] {
        // The reading end is closed before the command starts: its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_flowlog"))
            .args(&args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{args:?}: {:?} {stderr}",
            output.status
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}

#[test]
fn health_tells_a_failing_source_and_the_errors_are_counted() {
    let dir = tempdir();
    let incoming = dir.join("incoming");
    std::fs::create_dir(&incoming).unwrap();
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let source = format!(
        "type = \"directory\"\npath = \"{}\"\npoll_secs = 0.05",
        incoming.display()
    );
    let config = write_config(&dir, &source, &file_sink(&dir.join("out.ndjson")));
    set_api(
        &config,
        &format!("address = \"{api}\"\nunhealthy_after_secs = 0.5"),
    );
    let child = flowlog(&["run"], &config).spawn().unwrap();
    wait_until(|| get(api, "/health").is_some_and(|(code, _)| code == 200));
    let (_, body) = get(api, "/health").unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["components"]["source vpc"]["status"], "ok", "{body}");

    // The directory goes away under the running source.
    let moved = dir.join("moved");
    std::fs::rename(&incoming, &moved).unwrap();
    wait_until(|| get(api, "/health").is_some_and(|(code, _)| code == 503));
    let (_, body) = get(api, "/health").unwrap();
    assert_eq!(body["status"], "failing", "{body}");
    let component = &body["components"]["source vpc"];
    assert_eq!(component["status"], "failing", "{body}");
    let last = component["last_error"].as_str().unwrap();
    assert!(last.contains("No such file or directory"), "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("source vpc"),
        "{body}"
    );
    let metrics = get_text(api, "/metrics");
    let counted = metrics.lines().find(|l| {
        l.starts_with("flowlog_component_errors_total{")
            && l.contains(r#"component="vpc""#)
            && l.contains(r#"kind="list""#)
    });
    let count: f64 = counted
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no error series: {metrics}"));
    assert!(count >= 1.0, "{metrics}");

    // Back: healthy again at the next poll.
    std::fs::rename(&moved, &incoming).unwrap();
    wait_until(|| get(api, "/health").is_some_and(|(code, _)| code == 200));
    let (ok, log) = common::runs::finish(terminate(child), &config);
    assert!(ok, "{log}");
}

/// `GET path` on `address`: the status and the body as JSON.
fn get(address: std::net::SocketAddr, path: &str) -> Option<(u16, serde_json::Value)> {
    let text = common::http_get(address, path)?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, serde_json::from_str(body).ok()?))
}

fn get_text(address: std::net::SocketAddr, path: &str) -> String {
    let text = common::http_get(address, path).expect("an answer");
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn version_names_the_commit_and_features_and_completions_and_man_come_from_the_cli() {
    let flowlog = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_flowlog"))
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let version = flowlog(&["--version"]);
    let first = version.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("flowlog {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let features = version.lines().nth(1).unwrap();
    assert!(features.starts_with("features: "), "{version}");
    // The test build has the default features.
    for feature in ["source-file", "source-sqs", "sink-splunk-hec", "sink-otlp"] {
        assert!(
            features.split(' ').any(|f| f == feature),
            "{feature}: {version}"
        );
    }
    assert!(flowlog(&["completions", "bash"]).contains("_flowlog()"));
    assert!(flowlog(&["completions", "zsh"]).contains("#compdef flowlog"));
    assert!(flowlog(&["completions", "fish"]).contains("complete -c flowlog"));
    let man = flowlog(&["man"]);
    assert!(man.contains(".TH flowlog 1"), "{man}");
    assert!(man.contains("transform"), "subcommands are listed");
}

/// Every path under `dir` (what a command may not change).
fn listing(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            // The test's own log of each command is not the command's doing.
            if path.extension().is_some_and(|e| e == "stderr") {
                continue;
            }
            if path.is_dir() {
                stack.push(path.clone());
            }
            all.push(path.display().to_string());
        }
    }
    all.sort();
    all
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "timed out"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn terminate(child: std::process::Child) -> std::process::Child {
    signal(&child, libc::SIGTERM);
    child
}

fn signal(child: &std::process::Child, signal: i32) {
    // SAFETY: kill sends a signal to the child we started.
    unsafe { libc::kill(child.id() as i32, signal) };
}

#[test]
fn validate_reaches_nothing_and_checks_the_files_a_configuration_names() {
    let dir = tempdir();
    // Addresses nothing answers at (a port bound and let go), and the API port held by
    // someone else: check fails on each; validate reaches none of them.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let input = dir.join("flows.log");
    std::fs::write(
        &input,
        "2 123 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1 2 ACCEPT OK\n",
    )
    .unwrap();
    let write = |tls: &str| {
        let config = dir.join("flowlog.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{data}"
[api]
address = "{api}"
[sources.vpc]
type = "file"
paths = ["{input}"]
[sources.queue]
type = "sqs"
queue_url = "http://{closed}/123456789012/flow-logs"
endpoint_url = "http://{closed}"
region = "us-east-1"
[sinks.splunk]
type = "splunk_hec"
endpoint = "http://{closed}"
token = "t"
{tls}
"#,
                data = dir.join("data").display(),
                api = held.local_addr().unwrap(),
                input = input.display(),
            ),
        )
        .unwrap();
        config
    };
    let config = write("");
    let before = listing(&dir);
    let (ok, printed) = run_to_end(flowlog(&["validate"], &config));
    assert!(ok, "{printed}");
    assert!(printed.contains("config "), "{printed}");
    assert!(printed.contains("ok (2 sources, 1 sink)"), "{printed}");
    assert!(
        printed.contains(&format!("ok   source vpc (file): {}", input.display())),
        "{printed}"
    );
    assert!(
        printed.contains("ok   sink splunk (splunk_hec)"),
        "{printed}"
    );
    assert!(!printed.contains("FAIL"), "{printed}");
    let (ok, checked) = run_to_end(flowlog(&["check"], &config));
    assert!(!ok, "check reaches them: {checked}");
    assert!(checked.contains("FAIL api: cannot listen"), "{checked}");
    assert!(checked.contains("FAIL sink splunk"), "{checked}");
    assert!(checked.contains("FAIL source queue"), "{checked}");
    assert_eq!(listing(&dir), before, "validate and check create nothing");

    // A certificate that is not there, and an input gone: named, and the exit is 1.
    std::fs::remove_file(&input).unwrap();
    let missing = dir.join("ca.pem");
    let config = write(&format!("tls = {{ ca_file = \"{}\" }}", missing.display()));
    let (ok, printed) = run_to_end(flowlog(&["validate"], &config));
    assert!(!ok, "{printed}");
    assert!(
        printed.contains("FAIL sink splunk (splunk_hec)"),
        "{printed}"
    );
    assert!(
        printed.contains(&missing.display().to_string()),
        "{printed}"
    );
    assert!(printed.contains("FAIL source vpc (file)"), "{printed}");
    assert!(printed.contains(&input.display().to_string()), "{printed}");
    // --no-environment looks at the file alone.
    let (ok, printed) = run_to_end(flowlog(&["validate", "--no-environment"], &config));
    assert!(ok, "{printed}");
    // A host name is looked up when the address is bound: by check, not by validate,
    // which reaches no name server.
    let text = std::fs::read_to_string(&config).unwrap();
    let api = held.local_addr().unwrap().to_string();
    assert!(text.contains(&api));
    std::fs::write(&config, text.replace(&api, "no-such-host.invalid:9598")).unwrap();
    for args in [&["validate", "--no-environment"][..], &["validate"]] {
        let (_, printed) = run_to_end(flowlog(args, &config));
        assert!(!printed.contains("resolved"), "{args:?}: {printed}");
        assert!(!printed.contains("FAIL api"), "{args:?}: {printed}");
    }
    let (ok, checked) = run_to_end(flowlog(&["check"], &config));
    assert!(!ok, "{checked}");
    assert!(
        checked.contains(
            "FAIL api: cannot listen on no-such-host.invalid:9598: `no-such-host.invalid` cannot be resolved"
        ),
        "{checked}"
    );
    // A configuration that does not parse is exit 2, as for check and run.
    std::fs::write(&config, "[sources.vpc]\ntype = \"file\"\npathz = []\n").unwrap();
    let output = flowlog(&["validate"], &config).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    drop(held);
}

#[test]
fn ready_once_sources_run_and_sinks_passed_a_check() {
    let dir = tempdir();
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let incoming = dir.join("incoming");
    std::fs::create_dir(&incoming).unwrap();
    // A receiver that answers 503 (busy) to everything until it is set up.
    let receiver = flowlog_test_receivers::hec::HecReceiver::start(Default::default());
    receiver.set_down(true);
    let hec = receiver.url();
    let source = format!(
        "type = \"directory\"\npath = \"{}\"\npoll_secs = 0.05",
        incoming.display()
    );
    let sink = format!(
        "[sinks.splunk]\ntype = \"splunk_hec\"\nendpoint = \"{hec}\"\ntoken = \"test-token\"\n\
         retry_initial_backoff_secs = 0.05\nretry_max_backoff_secs = 0.1"
    );
    let config = write_config(&dir, &source, &sink);
    set_api(&config, &format!("address = \"{api}\""));
    let child = flowlog(&["run"], &config).spawn().unwrap();
    // Alive, but the sink has not answered: not ready, and /ready says for what.
    // (and why: the receiver's answer to the sink's check).
    wait_until(|| {
        get(api, "/ready").is_some_and(|(_, b)| {
            b["waiting_for"] == serde_json::json!(["splunk"])
                && b["last_errors"]["splunk"]
                    .as_str()
                    .is_some_and(|e| e.contains("503"))
        })
    });
    let (code, body) = get(api, "/ready").unwrap();
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "starting", "{body}");
    assert_eq!(body["waiting_for"], serde_json::json!(["splunk"]), "{body}");
    let (code, _) = get(api, "/health").unwrap();
    assert_eq!(code, 200, "liveness is another question");

    // The receiver comes up (HEC's health endpoint answering): ready.
    receiver.set_down(false);
    wait_until(|| get(api, "/ready").is_some_and(|(code, _)| code == 200));
    let (_, body) = get(api, "/ready").unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    let (ok, log) = common::runs::finish(terminate(child), &config);
    assert!(ok, "{log}");
    drop(receiver);
}

#[test]
fn run_logs_status_lines_and_a_summary_at_the_end() {
    let dir = tempdir();
    let out = dir.join("out.ndjson");
    let input = dir.join("flows.log");
    std::fs::write(&input, flowlog_test_receivers::corpus::v2_lines(0, 5)).unwrap();
    let config = write_config(
        &dir,
        &file_source(&[input.display().to_string()], "follow = true"),
        &file_sink(&out),
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("status_interval_secs = 1\n{text}")).unwrap();
    let child = flowlog(&["--log-level", "info", "run"], &config)
        .spawn()
        .unwrap();
    wait_until(|| {
        logged(&config)
            .lines()
            .any(|l| l.contains("status: read 5 records") && l.contains("delivered out 5 ("))
    });
    let (ok, log) = common::runs::finish(terminate(child), &config);
    assert!(ok, "{log}");
    let last = log
        .lines()
        .find(|l| l.contains("finished: "))
        .unwrap_or_else(|| panic!("no summary: {log}"));
    assert!(
        last.contains("finished: read 5 records (")
            && last.contains("; delivered out 5; 0 dead letters; nothing unacknowledged"),
        "{last}"
    );
}

#[test]
fn sighup_moves_delivery_to_another_receiver_losing_nothing_and_sending_nothing_twice() {
    reloads_under_load(1, 1, std::time::Duration::ZERO);
}

/// Signals in bursts, many during a drain (acknowledgements come late, so drains last):
/// the last file written is the one that runs in the end, and every line still arrives
/// once.
#[test]
fn a_flood_of_sighups_applies_the_last_file_losing_nothing_and_sending_nothing_twice() {
    reloads_under_load(12, 3, std::time::Duration::from_millis(300));
}

/// A followed file, appended to while the configuration moves delivery between two HEC
/// receivers `flips` times (each change announced by `signals` SIGHUPs at once; acks
/// answered `ack_delay` late): each line arrives once in all, and the sink of the last
/// file written is the one running at the end.
fn reloads_under_load(flips: usize, signals: usize, ack_delay: std::time::Duration) {
    use flowlog_test_receivers::hec::{HecOptions, HecReceiver};
    let options = || HecOptions {
        acks: true,
        keep_events: false,
        ack_answer_delay: ack_delay,
        ..HecOptions::default()
    };
    let (a, b) = (HecReceiver::start(options()), HecReceiver::start(options()));
    let dir = tempdir();
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let input = dir.join("flows.log");
    std::fs::write(&input, "").unwrap();
    let source = file_source(
        &[input.display().to_string()],
        "follow = true\npoll_secs = 0.02",
    );
    let sink = |name: &str, receiver: &HecReceiver| {
        common::runs::hec_sink(&receiver.url(), "indexer_acknowledgement = true")
            .replace("[sinks.splunk]", &format!("[sinks.{name}]"))
    };
    let sinks = [sink("first", &a), sink("second", &b)];
    let config = write_config(&dir, &source, &sinks[0]);
    set_api(&config, &format!("address = \"{api}\""));
    let mut command = flowlog(&["run"], &config);
    command
        .env("RUST_LOG", "info")
        .env("FLOWLOG_TEST_HEC_TOKEN", "test-token");
    let child = command.spawn().unwrap();

    // Lines keep arriving while the configuration changes under the run.
    const BATCHES: u64 = 40;
    const PER_BATCH: u64 = 50;
    let writer = {
        let input = input.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            for i in 0..BATCHES {
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&input)
                    .unwrap();
                let text = flowlog_test_receivers::corpus::v2_lines(
                    (i * PER_BATCH) as usize,
                    PER_BATCH as usize,
                );
                file.write_all(text.as_bytes()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
    };
    wait_until(|| !a.ids().is_empty());
    let mut running = 0;
    for _ in 0..flips {
        let text = std::fs::read_to_string(&config).unwrap();
        let next = 1 - running;
        std::fs::write(&config, text.replace(&sinks[running], &sinks[next])).unwrap();
        running = next;
        for _ in 0..signals {
            signal(&child, libc::SIGHUP);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    wait_until(|| logged(&config).contains("reload: the new configuration starts"));
    writer.join().unwrap();
    let total = (BATCHES * PER_BATCH) as usize;
    wait_until(|| a.ids().len() + b.ids().len() >= total);
    // The sink of the last file written runs (signals that came during a drain were not
    // dropped), and the one it replaced is gone from /health.
    let names = ["sink first", "sink second"];
    wait_until(|| {
        get(api, "/health").is_some_and(|(_, health)| {
            let components = health["components"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            components.contains_key(names[running]) && !components.contains_key(names[1 - running])
        })
    });

    let (ok, log) = common::runs::finish(terminate(child), &config);
    assert!(ok, "{log}");
    let (to_a, to_b) = (a.ids(), b.ids());
    assert!(
        !to_b.is_empty(),
        "nothing went to the second receiver: {log}"
    );
    for id in common::expected_ids(&input, 1..=total as u64) {
        let count = to_a.get(&id).unwrap_or(&0) + to_b.get(&id).unwrap_or(&0);
        // Each old generation drained (every batch acknowledged) before the next one read
        // on from the checkpoint: no window was left to send again.
        assert_eq!(count, 1, "{id} arrived {count} times: {log}");
    }
}

#[test]
fn a_stop_signal_during_a_reload_ends_the_run_after_the_drain() {
    use flowlog_test_receivers::hec::{HecOptions, HecReceiver};
    let receiver = HecReceiver::start(HecOptions::default());
    let dir = tempdir();
    let input = dir.join("flows.log");
    std::fs::write(&input, flowlog_test_receivers::corpus::v2_lines(0, 5)).unwrap();
    let source = file_source(
        &[input.display().to_string()],
        "follow = true\npoll_secs = 0.02",
    );
    let sink = common::runs::hec_sink(&receiver.url(), "");
    let config = write_config(&dir, &source, &sink);
    let mut command = flowlog(&["run"], &config);
    command
        .env("RUST_LOG", "info")
        .env("FLOWLOG_TEST_HEC_TOKEN", "test-token");
    let mut child = command.spawn().unwrap();
    wait_until(|| receiver.ids().len() == 5);

    // The receiver goes down with lines in flight, so the reload's drain waits.
    receiver.set_down(true);
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&input)
            .unwrap();
        let more = flowlog_test_receivers::corpus::v2_lines(5, 5);
        file.write_all(more.as_bytes()).unwrap();
    }
    wait_until(|| receiver.stats().failed_503 > 0);
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap() + "\n").unwrap();
    signal(&child, libc::SIGHUP);
    wait_until(|| logged(&config).contains("reload: "));
    signal(&child, libc::SIGTERM);
    wait_until(|| logged(&config).contains("stop signal during a reload"));
    // The drain finishes once the receiver is back, and the run ends there.
    receiver.set_down(false);
    wait_until(|| child.try_wait().unwrap().is_some());
    let log = logged(&config);
    assert!(
        !log.contains("the new configuration starts"),
        "the reload went on after the stop: {log}"
    );
    assert_eq!(receiver.ids().len(), 10, "{log}");
}

#[test]
fn quiet_transform_still_reports_what_it_cannot_decode() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flowlog"))
        .args(["transform", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bad = "2 123456789010 eni-1 10.0.0.1 10.0.0.2 70000 443 6 1 40 1 2 ACCEPT OK\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(bad.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.stdout.is_empty());
    assert!(
        stderr.contains("dead letter") && stderr.contains("70000"),
        "a record --quiet dropped without a word: {stderr:?}"
    );
}

/// `kill -9` while a reload drains: nothing was checkpointed past what was acknowledged,
/// so the restart (with the new file) reads on from there and every line arrives; what
/// was delivered but not yet checkpointed may come twice, nothing is lost.
#[test]
fn kill_9_during_a_reload_loses_nothing() {
    use flowlog_test_receivers::hec::{HecOptions, HecReceiver};
    let options = || HecOptions {
        acks: true,
        keep_events: false,
        // Late acknowledgements keep the drain going long enough to be cut short.
        ack_answer_delay: std::time::Duration::from_millis(500),
        ..HecOptions::default()
    };
    let (a, b) = (HecReceiver::start(options()), HecReceiver::start(options()));
    let dir = tempdir();
    let input = dir.join("flows.log");
    let total = 3000;
    std::fs::write(&input, flowlog_test_receivers::corpus::v2_lines(0, total)).unwrap();
    let source = file_source(
        &[input.display().to_string()],
        "follow = true\npoll_secs = 0.02",
    );
    let sink = |receiver: &HecReceiver| {
        common::runs::hec_sink(
            &receiver.url(),
            "indexer_acknowledgement = true\nmax_bytes = 20000",
        )
    };
    let config = write_config(&dir, &source, &sink(&a));
    let start = || {
        let mut command = flowlog(&["run"], &config);
        command
            .env("RUST_LOG", "info")
            .env("FLOWLOG_TEST_HEC_TOKEN", "test-token");
        command.spawn().unwrap()
    };
    let mut child = start();
    wait_until(|| !a.ids().is_empty());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(&sink(&a), &sink(&b))).unwrap();
    signal(&child, libc::SIGHUP);
    wait_until(|| logged(&config).contains("reload: draining"));
    child.kill().unwrap(); // SIGKILL mid-drain: no checkpoint saved by it
    child.wait().unwrap();
    let at_kill = a.ids().len();

    let child = start();
    wait_until(|| {
        let (to_a, to_b) = (a.ids(), b.ids());
        common::expected_ids(&input, 1..=total as u64)
            .iter()
            .all(|id| to_a.contains_key(id) || to_b.contains_key(id))
    });
    let (ok, log) = common::runs::finish(terminate(child), &config);
    assert!(ok, "{log}");
    let (to_a, to_b) = (a.ids(), b.ids());
    let sent: u32 = to_a.values().chain(to_b.values()).sum();
    assert!(
        !to_b.is_empty(),
        "the restart did not use the new file: {log}"
    );
    eprintln!(
        "{total} lines: {at_kill} at the first receiver when killed, {} at the second after \
         the restart, {} sent twice",
        to_b.len(),
        sent as usize - total
    );
}

/// What a `kill -9` in the middle of a write leaves (a last line without its newline)
/// is ended with a newline, with a warning, before anything is appended: the output file,
/// the file sink and the dead-letter file keep one record per line, and nothing is removed.
#[test]
fn a_line_cut_short_by_a_crash_is_not_glued_to_the_next() {
    let torn = "{\"cut\":\"sho";
    let dir = tempdir();
    let out = dir.join("out.ndjson");
    let dead = dir.join("data/dead-letter.ndjson");
    std::fs::create_dir_all(dead.parent().unwrap()).unwrap();
    for file in [&out, &dead] {
        std::fs::write(file, format!("{{\"whole\":1}}\n{torn}")).unwrap();
    }
    let input = dir.join("flows.log");
    let lines = flowlog_test_receivers::corpus::v2_lines(0, 3) + "not a flow log\n";
    std::fs::write(&input, &lines).unwrap();
    let config = write_config(
        &dir,
        &file_source(&[input.display().to_string()], ""),
        &file_sink(&out),
    );
    let (ok, log) = run(&config);
    assert!(ok, "{log}");
    // Each file: the whole line, the cut one on its own, then what this run wrote.
    let each_line_parses_but_the_cut_one = |text: &str| {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], torn, "{text}");
        for (i, line) in lines.iter().enumerate().filter(|(i, _)| *i != 1) {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("line {}: {line}: {e}", i + 1));
        }
        lines.len()
    };
    for (file, count) in [(&out, 2 + 3), (&dead, 2 + 1)] {
        let text = std::fs::read_to_string(file).unwrap();
        assert_eq!(each_line_parses_but_the_cut_one(&text), count, "{text}");
        assert!(
            log.contains(&format!("{}: its last line had no newline", file.display())),
            "{log}"
        );
    }

    // The stage's --output too.
    let out = dir.join("stage.ndjson");
    std::fs::write(&out, format!("{{\"whole\":1}}\n{torn}")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flowlog"));
    command
        .args(["transform", "--to", "ecs", "--output"])
        .arg(&out)
        .arg(&input);
    let (ok, printed) = run_to_end(&mut command);
    assert!(ok, "{printed}");
    assert!(
        printed.contains("its last line had no newline"),
        "{printed}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(each_line_parses_but_the_cut_one(&text), 2 + 3, "{text}");
}
