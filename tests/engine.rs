//! `flowlog transform` as a stage inside a real log engine: rsyslog (Debian's package,
//! which `scripts/test.sh` installs) reads a file of flow logs with `imfile` and pipes
//! each line through flowlog with `omprog`.
//!
//! - Without confirmations, rsyslog writes what flowlog prints to a file of its own
//!   (`output=`): every record arrives, in order, and a trickle of lines appended to the
//!   file while rsyslog keeps flowlog's pipe open arrives line by line.
//! - With `confirmMessages="on"`, flowlog writes the records itself (`--output`) and
//!   confirms each line; killing flowlog (rsyslog starts it again) loses no line.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::engines::{append, flowlog_pids, line};
use common::tempdir;
use serde_json::Value;

/// Generous: lines pass through rsyslog in milliseconds; a record held back by flowlog
/// never arrives while rsyslog keeps the pipe open.
const DEADLINE: Duration = Duration::from_secs(60);

fn rsyslogd() -> PathBuf {
    let path = std::env::var_os("FLOWLOG_RSYSLOGD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/rsyslogd"));
    assert!(
        path.exists(),
        "{} not found: ./scripts/test.sh installs rsyslog (Debian's package)",
        path.display()
    );
    path
}

/// An rsyslogd of its own, in the foreground, reading `input` into one omprog action.
struct Rsyslog {
    child: Child,
    dir: PathBuf,
}

impl Rsyslog {
    /// `action` is the omprog action's parameters after `binary`.
    fn start(dir: &Path, flowlog_args: &str, action: &str) -> Self {
        let flowlog = env!("CARGO_BIN_EXE_flowlog");
        let work = dir.join("work");
        fs::create_dir_all(&work).unwrap();
        let config = format!(
            r#"global(workDirectory="{work}")
module(load="imfile" mode="inotify")
module(load="omprog")
template(name="line" type="string" string="%msg%\n")
input(type="imfile" file="{input}" tag="flows" ruleset="flows" freshStartTail="off")
ruleset(name="flows") {{
  action(type="omprog" binary="{flowlog} transform --quiet {flowlog_args}" template="line"
         action.resumeInterval="1" action.resumeRetryCount="-1" {action})
}}
"#,
            work = work.display(),
            input = dir.join("in.log").display(),
        );
        let conf = dir.join("rsyslog.conf");
        fs::write(&conf, config).unwrap();
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("rsyslogd.stderr")).unwrap())
            .spawn()
            .expect("start rsyslogd");
        Self {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default()
    }

    /// The flowlog processes rsyslog runs for this test.
    fn flowlog_pids(&self) -> Vec<i32> {
        flowlog_pids(&self.dir)
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        // SIGTERM: rsyslogd closes flowlog's input, and flowlog ends at that end of input.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The records in an NDJSON file so far (a last line still being written is left out).
fn records(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn ports(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .map(|r| r["source"]["port"].as_u64().expect("source.port"))
        .collect()
}

/// Waits until `done` holds for the records in `path`; panics with `what` at the deadline.
fn wait_for(path: &Path, rsyslog: &Rsyslog, what: &str, done: impl Fn(&[Value]) -> bool) {
    let start = Instant::now();
    loop {
        if done(&records(path)) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not there after {DEADLINE:?} ({} records; rsyslogd said: {})",
            records(path).len(),
            rsyslog.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rsyslog_pipes_a_file_and_then_a_trickle_through_flowlog() {
    let dir = tempdir();
    let input = dir.join("in.log");
    let output = dir.join("engine.ndjson");
    let mut text: String = (1..=2000).map(line).collect();
    text.push_str("not a flow log\n");
    fs::write(&input, text).unwrap();
    let rsyslog = Rsyslog::start(
        &dir,
        &format!(
            "--to ecs --dead-letter {}",
            dir.join("dead.ndjson").display()
        ),
        &format!(r#"output="{}""#, output.display()),
    );

    wait_for(&output, &rsyslog, "the file's 2000 records", |r| {
        r.len() >= 2000
    });
    assert_eq!(ports(&records(&output)), (1..=2000).collect::<Vec<_>>());
    let dead = fs::read_to_string(dir.join("dead.ndjson")).unwrap();
    assert!(dead.contains("not a flow log"), "{dead}");

    // A quiet VPC: one line at a time; each record must arrive while rsyslog keeps
    // flowlog's input open, before the next line is written.
    for port in 2001..=2005 {
        append(&input, &line(port));
        wait_for(
            &output,
            &rsyslog,
            &format!("the record of line {port}"),
            |r| r.last().is_some_and(|r| r["source"]["port"] == port),
        );
    }
    assert_eq!(records(&output).len(), 2005);
    assert_eq!(
        rsyslog.flowlog_pids().len(),
        1,
        "one flowlog, never restarted"
    );
    drop(rsyslog);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn flowlog_killed_and_restarted_by_rsyslog_loses_no_line() {
    let dir = tempdir();
    let input = dir.join("in.log");
    let output = dir.join("confirmed.ndjson");
    const LINES: u64 = 5000;
    fs::write(&input, (1..=LINES as u32).map(line).collect::<String>()).unwrap();
    let rsyslog = Rsyslog::start(
        &dir,
        &format!("--to ecs --confirm --output {}", output.display()),
        &format!(
            r#"confirmMessages="on" confirmTimeout="10000" output="{}""#,
            dir.join("flowlog.stderr").display()
        ),
    );

    let mut kills = 0;
    for threshold in [1000, 2200, 3400] {
        wait_for(&output, &rsyslog, "records before a kill", |r| {
            r.len() >= threshold
        });
        for pid in rsyslog.flowlog_pids() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            kills += 1;
        }
    }
    assert!(kills >= 3, "flowlog was found and killed {kills} times");
    wait_for(&output, &rsyslog, "every line's record", |r| {
        ports(r).into_iter().collect::<HashSet<_>>().len() as u64 == LINES
    });

    // Every line arrived; a line written but not yet confirmed when flowlog was killed
    // is sent again, so it may repeat, but the first arrivals are in input order.
    let ports = ports(&records(&output));
    let mut seen = HashSet::new();
    let first: Vec<u64> = ports.iter().copied().filter(|p| seen.insert(*p)).collect();
    assert_eq!(first, (1..=LINES).collect::<Vec<_>>());
    let repeats = ports.len() - first.len();
    assert!(repeats <= kills, "{repeats} repeats for {kills} kills");
    drop(rsyslog);
    fs::remove_dir_all(&dir).ok();
}
