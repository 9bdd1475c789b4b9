//! `flowlog run` with a Firehose endpoint source, spoken to as Firehose does (raw HTTP/1.1
//! over a socket, so a test controls every byte and header), and what the process uses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use base64::Engine;
use flowlog_test_receivers::hec::HecReceiver;
use serde_json::Value;

use super::runs::{self, write_config};
use super::tempdir;

pub const KEY: &str = "fh-key-with-\"quote";

/// A running `flowlog run`, killed and waited for when dropped.
pub struct Endpoint {
    pub child: Child,
    pub address: SocketAddr,
    pub config: PathBuf,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Endpoint {
    /// The directory of the run (its data dir is `data/`).
    pub fn dir(&self) -> PathBuf {
        self.config.parent().unwrap().to_path_buf()
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(runs::stderr_file(&self.config)).unwrap_or_default()
    }

    /// CPU seconds (user + system) the process has used.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name (which may hold spaces) in parentheses.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        // SAFETY: sysconf only reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11) + ticks(12)) / hz
    }

    /// Descriptors the process has open.
    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }

    pub fn rss_kb(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    pub fn peak_rss_kb(&self) -> u64 {
        self.status_field("VmHWM:")
    }

    fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// `flowlog run` with a Firehose source on a free port into `receiver`; `source_extra`
/// adds source settings, and `edit` may change the configuration's text before it starts.
pub fn start_with(
    receiver: &HecReceiver,
    source_extra: &str,
    edit: &dyn Fn(String) -> String,
) -> Endpoint {
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempdir();
    let source = format!(
        "type = \"firehose\"\naddress = \"{address}\"\naccess_key = \"${{FLOWLOG_TEST_FH_KEY}}\"\n{source_extra}"
    );
    let config = write_config(&dir, &source, &runs::hec_sink(&receiver.url(), ""));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, edit(text)).unwrap();
    let child = runs::flowlog(&["run"], &config)
        .env("FLOWLOG_TEST_HEC_TOKEN", "test-token")
        .env("FLOWLOG_TEST_FH_KEY", KEY)
        .spawn()
        .unwrap();
    let endpoint = Endpoint {
        child,
        address,
        config,
    };
    for _ in 0..500 {
        if TcpStream::connect(address).is_ok() {
            return endpoint;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the endpoint did not start: {}", endpoint.log());
}

pub fn start(receiver: &HecReceiver, source_extra: &str) -> Endpoint {
    start_with(receiver, source_extra, &|text| text)
}

/// A Firehose request: its status and answer (`None` when none came within `timeout`).
pub fn post(
    address: SocketAddr,
    key: &str,
    request_id: &str,
    body: &[u8],
    timeout: Duration,
) -> Option<(u16, Value)> {
    post_with(address, key, request_id, &[], body, timeout)
}

/// [`post`] with more headers (`Name: value` lines, without their line ends).
pub fn post_with(
    address: SocketAddr,
    key: &str,
    request_id: &str,
    headers: &[&str],
    body: &[u8],
    timeout: Duration,
) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream
        .write_all(&head(address, key, request_id, headers, body.len()))
        .unwrap();
    // A server that refuses early may close before reading the whole body.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    if stream.read_to_end(&mut answer).is_err() && answer.is_empty() {
        return None;
    }
    parse_answer(&answer)
}

/// A request's head, with `Connection: close`.
pub fn head(
    address: SocketAddr,
    key: &str,
    request_id: &str,
    headers: &[&str],
    length: usize,
) -> Vec<u8> {
    let mut head = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nX-Amz-Firehose-Protocol-Version: 1.0\r\nX-Amz-Firehose-Request-Id: {request_id}\r\nX-Amz-Firehose-Access-Key: {key}\r\nConnection: close\r\n"
    );
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The status and JSON body of an HTTP/1.1 answer.
pub fn parse_answer(answer: &[u8]) -> Option<(u16, Value)> {
    let text = String::from_utf8_lossy(answer);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let json = text.split("\r\n\r\n").nth(1).unwrap_or("");
    Some((status, serde_json::from_str(json).unwrap_or(Value::Null)))
}

/// A request body of `lines` as `{"message"}` records (direct VPC -> Firehose delivery).
pub fn body_of(request_id: &str, lines: &str) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::json!({"data": b64.encode(format!("{}\n", serde_json::json!({"message": l})))}))
        .collect();
    request_of(request_id, records)
}

/// A request body holding `records` (`{"data": ...}` objects).
pub fn request_of(request_id: &str, records: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"requestId": request_id, "timestamp": 1_700_000_000_000u64, "records": records}))
        .unwrap()
}

/// The deterministic ids of the first `lines` records of a request.
pub fn ids_for(request_id: &str, lines: usize) -> Vec<String> {
    let source = flowlog_model::SourceId::new(format!("firehose:{request_id}"));
    (1..=lines as u64)
        .map(|l| flowlog_sink::event_id(&source, l))
        .collect()
}
