//! What the log-engine tests share (tests/engine.rs for rsyslog, tests/syslog_ng.rs): the
//! flow-log lines they feed, appending to the engine's input file, and finding the flowlog
//! processes an engine started.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

/// A v2 line whose source port tells the lines apart (and their records' order).
pub fn line(port: u32) -> String {
    format!("2 123456789010 eni-1235b8ca123456789 10.0.0.1 10.0.0.2 {port} 443 6 1 40 1418530010 1418530070 ACCEPT OK\n")
}

pub fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// The flowlog processes an engine runs for the test in `dir` (which their arguments
/// name). Only processes whose program is flowlog itself: an engine that runs its command
/// through `/bin/sh -c` names flowlog only in the shell's arguments.
pub fn flowlog_pids(dir: &Path) -> Vec<i32> {
    let flowlog = env!("CARGO_BIN_EXE_flowlog");
    let marker = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.split('\0').next() == Some(flowlog) && cmdline.contains(&marker) {
            pids.push(pid);
        }
    }
    pids
}
