//! `flowlog transform` as a stage that a log engine feeds line by line through a pipe:
//! each record is written while the pipe stays open, not when it closes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde_json::Value;

const LINE: &str = "2 123456789010 eni-1235b8ca123456789 10.0.0.1 10.0.0.2 443 22 6 20 4249 1418530010 1418530070 ACCEPT OK";

/// Generous: a record that is written promptly arrives in milliseconds; one held until
/// the end of the input never arrives while the pipe is open.
const DEADLINE: Duration = Duration::from_secs(30);

struct Stage {
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
    child: std::process::Child,
}

impl Stage {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowlog"))
            .arg("transform")
            .arg("--quiet")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run flowlog");
        let stdout = child.stdout.take().unwrap();
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            stdin: child.stdin.take(),
            out,
            child,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// The next record, which must come while the input is still open.
    fn next(&self, what: &str) -> Value {
        serde_json::from_str(&self.next_line(what)).unwrap()
    }

    /// The next line of output, which must come while the input is still open.
    fn next_line(&self, what: &str) -> String {
        self.out
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("{what}: nothing while the pipe stayed open"))
    }

    fn finish(mut self) -> Vec<String> {
        drop(self.stdin.take());
        assert!(self.child.wait().unwrap().success());
        self.out.iter().collect()
    }
}

#[test]
fn each_record_is_written_before_the_next_line_is_sent() {
    let mut stage = Stage::start(&[]);
    for port in [1000, 1001, 1002] {
        let line = LINE.replace(" 443 ", &format!(" {port} "));
        stage.send(format!("{line}\n").as_bytes());
        assert_eq!(stage.next(&format!("port {port}"))["srcport"], port);
    }
    // A line that arrives in two writes is one record, written once it has ended.
    let (head, tail) = LINE.split_at(20);
    stage.send(head.as_bytes());
    stage.send(format!("{tail}\n").as_bytes());
    assert_eq!(stage.next("split line")["srcport"], 443);
    assert!(stage.finish().is_empty(), "nothing left for the end");
}

#[test]
fn message_events_become_documents_as_they_arrive() {
    // What Vector's exec sink and similar engines send: one JSON event per line.
    let mut stage = Stage::start(&["--to", "ecs"]);
    for port in [2000, 2001] {
        let line = LINE.replace(" 443 ", &format!(" {port} "));
        let event = serde_json::json!({ "message": line, "host": "h1" });
        stage.send(format!("{event}\n").as_bytes());
        let doc = stage.next(&format!("event {port}"));
        assert_eq!(doc["source"]["port"], port);
    }
    assert!(stage.finish().is_empty());
}

#[test]
fn a_regular_file_on_standard_input_is_still_read_in_blocks() {
    // Not a pipe: the whole input is decoded as before (same records, same order).
    let dir = common::tempdir();
    let path = dir.join("in.log");
    let text: String = (0..20_000)
        .map(|i| LINE.replace(" 443 ", &format!(" {} ", i % 60_000)) + "\n")
        .collect();
    std::fs::write(&path, &text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flowlog"))
        .args(["transform", "--quiet"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    let records = common::ndjson(&output.stdout);
    assert_eq!(records.len(), 20_000);
    assert_eq!(records[19_999]["srcport"], 19_999);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn confirm_needs_an_output_file_and_standard_input() {
    let flowlog = env!("CARGO_BIN_EXE_flowlog");
    let no_output = Command::new(flowlog)
        .args(["transform", "--confirm"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(no_output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_output.stderr).contains("--output"));
    let dir = common::tempdir();
    let with_file = Command::new(flowlog)
        .args(["transform", "--confirm", "--output"])
        .arg(dir.join("out.ndjson"))
        .arg(dir.join("in.log"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(with_file.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&with_file.stderr).contains("standard input"));
}

#[test]
fn confirm_answers_ok_once_started_and_once_per_line_after_its_record_is_written() {
    let dir = common::tempdir();
    let output = dir.join("out.ndjson");
    let mut stage = Stage::start(&["--confirm", "--output", output.to_str().unwrap()]);
    assert_eq!(stage.next_line("the ready OK"), "OK");
    for (i, line) in [LINE, "not a flow log", LINE].iter().enumerate() {
        stage.send(format!("{line}\n").as_bytes());
        assert_eq!(stage.next_line("the line's OK"), "OK");
        // By then its record is in the file (the bad line's went to the dead letter).
        let written = std::fs::read_to_string(&output).unwrap_or_default();
        assert_eq!(written.lines().count(), if i == 0 { 1 } else { i });
    }
}
