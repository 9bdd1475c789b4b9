//! `flowlog transform` as a stage inside syslog-ng: Debian's syslog-ng 3.38, which
//! `scripts/test.sh` unpacks without installing it (its package conflicts with rsyslog's),
//! reads a file of flow logs with `file()` and pipes each line to flowlog with `program()`.
//! program() has no way back (flowlog's standard output is /dev/null), so flowlog writes
//! the records itself (`--output`). The configuration is the documented one: the source
//! with `flags(no-parse)` (a flow-log line is not a syslog message), the log path with
//! `flags(flow-control)`, and flowlog started with SIGTERM ignored.
//!
//! - Every line of a file arrives as a record, in order, and a trickle of lines appended
//!   while syslog-ng runs arrives line by line.
//! - program() has no per-line confirmation: killing flowlog (syslog-ng starts it again)
//!   loses what the pipe and flowlog's last read held, and repeats nothing.
//! - Stopping syslog-ng and starting it again loses nothing and repeats nothing: flowlog,
//!   ignoring the SIGTERM syslog-ng sends it, writes what the closed pipe still held.

mod common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::engines::{append, flowlog_pids, line};
use common::tempdir;
use serde_json::Value;

/// Generous: lines pass through syslog-ng in milliseconds (after a restart of flowlog,
/// writing resumes after `time-reopen(1)`); a record held back by flowlog never arrives
/// while syslog-ng keeps the pipe open.
const DEADLINE: Duration = Duration::from_secs(60);

/// The most flowlog reads from a pipe at once (`READ_BYTES` in flowlog-decode's text.rs).
const READ_BYTES: usize = 64 << 10;

fn syslog_ng() -> PathBuf {
    let path = std::env::var_os("FLOWLOG_SYSLOG_NG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/syslog-ng"));
    assert!(
        path.exists(),
        "{} not found: ./scripts/test.sh unpacks syslog-ng (Debian's packages) and sets \
         FLOWLOG_SYSLOG_NG",
        path.display()
    );
    path
}

/// A syslog-ng of its own, in the foreground, reading `in.log` into one program()
/// destination that runs flowlog.
struct SyslogNg {
    child: Child,
    dir: PathBuf,
}

impl SyslogNg {
    /// `flowlog_args` follow `flowlog transform --quiet`. The persist file (how far the
    /// file was read) is `dir`'s: started again on the same directory, syslog-ng reads on
    /// from where it stopped.
    fn start(dir: &Path, flowlog_args: &str) -> Self {
        let flowlog = env!("CARGO_BIN_EXE_flowlog");
        // time-reopen(1): after a write to a flowlog that is gone fails, syslog-ng waits
        // this long (60 s by default) before it writes to the one it started again.
        let config = format!(
            r#"@version: 3.38
options {{ time-reopen(1); }};
source s_flows {{ file("{input}" follow-freq(0.1) flags(no-parse)); }};
destination d_flowlog {{
  program("trap '' TERM; exec {flowlog} transform --quiet {flowlog_args} 2>> {stderr}"
          template("$MSG\n"));
}};
log {{ source(s_flows); destination(d_flowlog); flags(flow-control); }};
"#,
            input = dir.join("in.log").display(),
            stderr = dir.join("flowlog.stderr").display(),
        );
        let conf = dir.join("syslog-ng.conf");
        fs::write(&conf, config).unwrap();
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("syslog-ng.stderr"))
            .unwrap();
        let child = Command::new(syslog_ng())
            .arg("--foreground")
            .arg("--stderr")
            .arg("--no-caps")
            .arg(format!("--cfgfile={}", conf.display()))
            .arg(format!(
                "--persist-file={}",
                dir.join("syslog-ng.persist").display()
            ))
            .arg(format!("--pidfile={}", dir.join("syslog-ng.pid").display()))
            .arg(format!("--control={}", dir.join("syslog-ng.ctl").display()))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start syslog-ng");
        Self {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// What syslog-ng and flowlog said.
    fn stderr(&self) -> String {
        let read = |name: &str| contents(&self.dir.join(name));
        format!(
            "syslog-ng: {}\nflowlog: {}",
            read("syslog-ng.stderr"),
            read("flowlog.stderr")
        )
    }
}

impl Drop for SyslogNg {
    fn drop(&mut self) {
        // SIGTERM: syslog-ng sends flowlog a SIGTERM (ignored) and closes its input, and
        // flowlog ends at that end of input.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// What a new pipe holds here, as program()'s does (syslog-ng does not resize it): 64 KiB
/// with 4 KiB pages.
fn pipe_bytes() -> usize {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe()");
    let size = unsafe { libc::fcntl(fds[0], libc::F_GETPIPE_SZ) };
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    usize::try_from(size).expect("F_GETPIPE_SZ")
}

/// Whether process `pid` has ended (a zombie not yet reaped has: its cmdline is empty).
fn gone(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .is_empty()
}

/// What the file at `path` holds so far (nothing if there is no file yet).
fn contents(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// The lines of an NDJSON file so far (a last line still being written is left out).
fn lines(path: &Path) -> Vec<String> {
    let bytes = fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(str::to_owned)
        .collect()
}

/// The source port of the record on `line`; None if the line is not a record.
fn port_of(line: &str) -> Option<u64> {
    serde_json::from_str::<Value>(line).ok()?["source"]["port"].as_u64()
}

/// The source ports of the records on `lines`, each of which must be one.
fn ports(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| port_of(l).unwrap_or_else(|| panic!("not a record: {l}")))
        .collect()
}

fn last_port(lines: &[String]) -> Option<u64> {
    lines.last().and_then(|l| port_of(l.as_str()))
}

/// Waits until `done` holds; panics with `what` (and what the processes said) at the
/// deadline.
fn wait_until(engine: Option<&SyslogNg>, what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not there after {DEADLINE:?} ({})",
            engine.map(SyslogNg::stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `done` holds for the lines of `output`.
fn wait_for(engine: &SyslogNg, output: &Path, what: &str, done: impl Fn(&[String]) -> bool) {
    let what = format!("{what} (in {})", output.display());
    wait_until(Some(engine), &what, || done(&lines(output)));
}

#[test]
fn syslog_ng_pipes_a_file_and_then_a_trickle_through_flowlog() {
    let dir = tempdir();
    let input = dir.join("in.log");
    let output = dir.join("records.ndjson");
    let dead = dir.join("dead.ndjson");
    let mut text: String = (1..=2000).map(line).collect();
    text.push_str("not a flow log\n");
    fs::write(&input, text).unwrap();
    let engine = SyslogNg::start(
        &dir,
        &format!(
            "--to ecs --output {} --dead-letter {}",
            output.display(),
            dead.display()
        ),
    );

    // flags(no-parse): each line reaches flowlog as the file has it (syslog-ng's parser
    // would take its first fields for a syslog header and pass on the rest).
    wait_for(&engine, &output, "the file's 2000 records", |l| {
        l.len() >= 2000
    });
    assert_eq!(ports(&lines(&output)), (1..=2000).collect::<Vec<_>>());
    wait_until(Some(&engine), "the dead letter", || {
        contents(&dead).contains("not a flow log")
    });

    // A quiet VPC: one line at a time; each record must arrive while syslog-ng keeps
    // flowlog's input open, before the next line is written.
    for port in 2001..=2005 {
        append(&input, &line(port));
        wait_for(
            &engine,
            &output,
            &format!("the record of line {port}"),
            |l| last_port(l) == Some(u64::from(port)),
        );
    }
    assert_eq!(ports(&lines(&output)), (1..=2005).collect::<Vec<_>>());
    assert_eq!(flowlog_pids(&dir).len(), 1, "one flowlog");
    let said = engine.stderr();
    assert!(
        !said.contains("Child program exited"),
        "flowlog was never restarted: {said}"
    );
    drop(engine);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn flowlog_killed_and_restarted_by_syslog_ng_loses_at_most_a_pipe_and_repeats_nothing() {
    let dir = tempdir();
    let input = dir.join("in.log");
    let output = dir.join("records.ndjson");
    // The file grows as the test goes: flowlog has lines to read at every kill however
    // fast it runs, and the last lines are written after the last kill.
    const ROUND: u32 = 5000;
    let mut total = ROUND;
    fs::write(&input, (1..=total).map(line).collect::<String>()).unwrap();
    // --flush-interval 0: flowlog writes out what each read brought before it reads again,
    // so what a kill loses is what the pipe held and what flowlog's last read took from
    // it (with the default 0.1 s, a read-ahead of up to 1 MiB while input keeps coming).
    let engine = SyslogNg::start(
        &dir,
        &format!(
            "--to ecs --flush-interval 0 --output {} --dead-letter {}",
            output.display(),
            dir.join("dead.ndjson").display()
        ),
    );

    let mut kills = 0;
    // The last record the flowlog killed last wrote.
    let mut before = 0;
    for _ in 0..3 {
        append(
            &input,
            &(total + 1..=total + ROUND).map(line).collect::<String>(),
        );
        total += ROUND;
        // Records of the flowlog started after the last kill, so that each kill's loss
        // is a run of lines of its own.
        wait_for(&engine, &output, "records before a kill", |l| {
            last_port(l).is_some_and(|p| p >= before + 2000)
        });
        let pids = flowlog_pids(&dir);
        for &pid in &pids {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            kills += 1;
        }
        wait_until(Some(&engine), "the killed flowlog's end", || {
            pids.iter().all(|&pid| gone(pid))
        });
        before = last_port(&lines(&output)).unwrap_or(before);
    }
    assert!(kills >= 3, "flowlog was found and killed {kills} times");
    // Lines written to the file after the last kill, which no kill lost.
    append(
        &input,
        &(total + 1..=total + 1000).map(line).collect::<String>(),
    );
    total += 1000;
    wait_for(&engine, &output, "the last line's record", |l| {
        last_port(l) == Some(u64::from(total))
    });

    // A kill can cut flowlog's write of a record short; the next flowlog's first record
    // then follows on the same line.
    let written = lines(&output);
    let (records, torn): (Vec<_>, Vec<_>) = written.iter().partition(|l| port_of(l).is_some());
    assert!(
        torn.len() <= kills,
        "{} lines are not records ({kills} kills): {:?}",
        torn.len(),
        torn.iter().take(3).collect::<Vec<_>>()
    );
    let ports: Vec<u64> = records.iter().filter_map(|l| port_of(l.as_str())).collect();
    // Nothing repeated, nothing out of order.
    if let Some(w) = ports.windows(2).find(|w| w[0] >= w[1]) {
        panic!("record of line {} after that of line {}", w[1], w[0]);
    }
    // What is missing is one run of lines per kill at most, each no longer than the lines
    // the pipe and one read of flowlog's hold (the shortest line counted), and 3 more: a
    // partial line at either end, and a record after a cut-short one.
    let per_kill = ((pipe_bytes() + READ_BYTES) / line(1).len() + 3) as u64;
    let mut gaps = Vec::new();
    let mut next = 1;
    for &port in &ports {
        if port > next {
            gaps.push((next, port - next));
        }
        next = port + 1;
    }
    let missing: u64 = gaps.iter().map(|(_, n)| n).sum();
    eprintln!("{kills} kills lost {missing} of {total} lines: (first, count) {gaps:?}");
    assert!(
        gaps.len() <= kills,
        "{} runs of lost lines for {kills} kills: (first, count) {gaps:?}",
        gaps.len()
    );
    assert!(
        gaps.iter().all(|&(_, n)| n <= per_kill),
        "a kill lost more than a pipe and a read hold ({per_kill} lines): (first, count) {gaps:?}"
    );
    drop(engine);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn syslog_ng_stopped_and_started_again_loses_nothing_and_repeats_nothing() {
    let dir = tempdir();
    let output = dir.join("records.ndjson");
    let dead = dir.join("dead.ndjson");
    const LINES: u32 = 20_000;
    fs::write(
        dir.join("in.log"),
        (1..=LINES).map(line).collect::<String>(),
    )
    .unwrap();
    let args = format!(
        "--to ecs --output {} --dead-letter {}",
        output.display(),
        dead.display()
    );
    let engine = SyslogNg::start(&dir, &args);
    wait_for(&engine, &output, "records before the stop", |l| {
        l.len() >= 5000
    });
    drop(engine);
    // syslog-ng has ended; flowlog, its SIGTERM ignored, writes what the pipe still held
    // and ends at the end of its input.
    wait_until(None, "flowlog's end after syslog-ng's", || {
        flowlog_pids(&dir).is_empty()
    });

    // syslog-ng reads on from the last line it wrote to the pipe.
    let engine = SyslogNg::start(&dir, &args);
    wait_for(&engine, &output, "the last line's record", |l| {
        last_port(l) == Some(u64::from(LINES))
    });
    assert_eq!(
        ports(&lines(&output)),
        (1..=u64::from(LINES)).collect::<Vec<_>>()
    );
    assert_eq!(contents(&dead), "", "no dead letters");
    drop(engine);
    fs::remove_dir_all(&dir).ok();
}
