//! `flowlog run` with one file source and one sink, for the sinks' end-to-end tests:
//! a config, the process (its stderr in a file: a pipe nobody reads while the run goes on
//! would fill and block it), its dead letters, and waiting for a receiver to fill.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tempdir;

pub struct RunSetup {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub input: PathBuf,
}

/// `lines` v2 lines in a file, read by `flowlog run` into `sink` (a `[sinks.<name>]`
/// section with its settings).
pub fn run_setup(lines: usize, sink: &str) -> RunSetup {
    let dir = tempdir();
    let input = dir.join("flows.log");
    std::fs::write(&input, flowlog_test_receivers::corpus::v2_lines(0, lines)).unwrap();
    let source = format!("type = \"file\"\npaths = [\"{}\"]", input.display());
    let config = write_config(&dir, &source, sink);
    RunSetup { dir, config, input }
}

/// `dir/flowlog.toml`: data in `dir/data`, the source `vpc` with `source` (its settings),
/// and `sink` (a whole `[sinks.<name>]` section).
pub fn write_config(dir: &Path, source: &str, sink: &str) -> PathBuf {
    let config = dir.join("flowlog.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{data}"
shutdown_timeout_secs = 10

# No metrics endpoint: runs of tests at the same time would want the same port.
[api]

[sources.vpc]
{source}

{sink}
"#,
            data = dir.join("data").display(),
        ),
    )
    .unwrap();
    config
}

/// A HEC sink section for the test receiver at `url` (token from
/// `FLOWLOG_TEST_HEC_TOKEN`), quick to retry; `extra` adds settings.
pub fn hec_sink(url: &str, extra: &str) -> String {
    format!(
        r#"[sinks.splunk]
type = "splunk_hec"
endpoint = "{url}"
token = "${{FLOWLOG_TEST_HEC_TOKEN}}"
batch_timeout_secs = 0.05
retry_initial_backoff_secs = 0.01
retry_max_backoff_secs = 0.2
ack_poll_interval_secs = 0.02
ack_timeout_secs = 1.0
{extra}
"#
    )
}

/// `flowlog ARGS --config CONFIG`, warnings logged to [`stderr_file`].
pub fn flowlog(args: &[&str], config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowlog"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr_file(config)).unwrap());
    command
}

pub fn stderr_file(config: &Path) -> PathBuf {
    config.with_extension("stderr")
}

/// Waits for `child`: whether it succeeded, and what it logged.
pub fn finish(mut child: Child, config: &Path) -> (bool, String) {
    let status = child.wait().unwrap();
    (
        status.success(),
        std::fs::read_to_string(stderr_file(config)).unwrap_or_default(),
    )
}

/// Runs `command` (owned or borrowed) to its end: whether it passed, and what it printed
/// (stdout, then stderr).
pub fn run_to_end(mut command: impl std::borrow::BorrowMut<Command>) -> (bool, String) {
    let output = command
        .borrow_mut()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

pub fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("data/dead-letter.ndjson"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until `count()` reaches `target`, failing if it does not move for a minute
/// (`stats` says what the receiver saw).
pub fn wait_for(count: impl Fn() -> usize, target: usize, stats: impl Fn() -> String) {
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let now = count();
        if now >= target {
            return;
        }
        if now != last {
            (last, since) = (now, Instant::now());
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "nothing arrived for a minute, {now} stored: {}",
            stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The checkpoint of `file` in the data dir `data`: the line it reached, and whether it is
/// read to its end.
pub fn checkpoint(data: &Path, file: &Path) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(data.join("checkpoints.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let cp = &json["files"][file.to_string_lossy().as_ref()];
    Some((cp["line"].as_u64()?, cp["done"].as_bool().unwrap_or(false)))
}

/// Waits (up to two minutes) until `file` has a checkpoint past its start.
pub fn wait_for_a_checkpoint(data: &Path, file: &Path) {
    let began = Instant::now();
    while checkpoint(data, file).is_none_or(|(line, _)| line == 0) {
        assert!(began.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
}
