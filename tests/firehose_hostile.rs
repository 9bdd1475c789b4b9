//! The Firehose endpoint played as an attacker, or a misbehaving sender, would play it, on
//! loopback: with the key (requests as large as Firehose sends, bodies that are not
//! Firehose requests, gzip bombs in the body and in records, floods of undecodable lines,
//! a kill -9 right after an answer) and without it (slowloris connections, descriptor
//! exhaustion, bodies sent after a refusal, a flood of refused requests), and a shutdown
//! with idle connections open. Every figure the acceptance asks for is printed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine;
use common::firehose::{
    body_of, head, ids_for, parse_answer, post, post_with, request_of, start, start_with, Endpoint,
    KEY,
};
use flowlog_test_receivers::corpus::v2_lines;
use flowlog_test_receivers::hec::{HecOptions, HecReceiver};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A gzip stream that inflates to `gib` GiB of zeros: one member of 64 MiB, repeated
/// (multi-member gzip is one stream to a reader), a few MB in all.
fn gzip_bomb(gib: usize) -> Vec<u8> {
    let member = gzip(&vec![0u8; 64 * MIB]);
    member.repeat(gib * 16)
}

/// The bytes the dead-letter store holds: its file and the rotated ones.
fn store_bytes(endpoint: &Endpoint) -> u64 {
    std::fs::read_dir(endpoint.dir().join("data"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("dead-letter.ndjson")
        })
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn dead_letter_lines(endpoint: &Endpoint) -> Vec<Value> {
    common::runs::dead_letters(&endpoint.dir())
}

/// Firehose sends up to 64 MiB; the decoder once stopped at 16 MiB and answered 200 for
/// what it had dead-lettered. A body that is not a Firehose request is refused whole
/// (400: Firehose retries, then backs it up to S3) and nothing of it is delivered or
/// dead-lettered; `Content-Encoding` is what decides whether the body is gzip.
#[test]
fn a_20_mib_request_is_delivered_whole_and_what_is_not_a_request_is_refused() {
    let receiver = HecReceiver::start(HecOptions::default());
    let endpoint = start(&receiver, "");
    let address = endpoint.address;

    let n = 120_000;
    let body = body_of("big-20", &v2_lines(0, n));
    assert!(body.len() > 20 * MIB, "{} bytes", body.len());
    let started = Instant::now();
    let (status, answer) = post(address, KEY, "big-20", &body, MINUTE).unwrap();
    assert_eq!(status, 200, "{answer}");
    eprintln!(
        "a request of {:.1} MiB ({n} records): 200 after {:.1} s",
        body.len() as f64 / MIB as f64,
        started.elapsed().as_secs_f64()
    );
    let ids = receiver.ids();
    assert_eq!(ids.len(), n);
    assert!(ids_for("big-20", n).iter().all(|id| ids.contains_key(id)));
    assert!(dead_letter_lines(&endpoint).is_empty());

    // Not Firehose requests: refused whole, nothing delivered, nothing dead-lettered.
    let valid = String::from_utf8(body_of("x", &v2_lines(0, 3))).unwrap();
    let cut = &valid[..valid.len() - 5];
    let gzipped = gzip(valid.as_bytes());
    let refusals: Vec<(&str, Vec<&str>, Vec<u8>, u16)> = vec![
        ("garbage", vec![], b"not json at all".to_vec(), 400),
        ("cut", vec![], cut.as_bytes().to_vec(), 400),
        ("trailing", vec![], format!("{valid} {{").into_bytes(), 400),
        (
            "no-records",
            vec![],
            br#"{"requestId":"x","timestamp":1}"#.to_vec(),
            400,
        ),
        (
            "lines",
            vec![],
            b"{\"message\":\"2 1 eni-1 - - - - - - - 1 2 - NODATA\"}\n".to_vec(),
            400,
        ),
        // A gzip body without the header is not JSON; with an encoding flowlog does not
        // know, it is not read.
        ("undeclared-gzip", vec![], gzipped.clone(), 400),
        (
            "brotli",
            vec!["Content-Encoding: br"],
            valid.as_bytes().to_vec(),
            415,
        ),
    ];
    for (id, headers, body, expected) in refusals {
        let (status, answer) = post_with(address, KEY, id, &headers, &body, MINUTE).unwrap();
        assert_eq!(status, expected, "{id}: {answer}");
        assert!(answer["errorMessage"].as_str().is_some(), "{id}: {answer}");
    }
    assert_eq!(
        receiver.ids().len(),
        n,
        "nothing of a refused body is delivered"
    );
    assert!(dead_letter_lines(&endpoint).is_empty());

    // Declared gzip, it is read.
    let gz = gzip(&body_of("gz-1", &v2_lines(0, 500)));
    let (status, answer) = post_with(
        address,
        KEY,
        "gz-1",
        &["Content-Encoding: gzip"],
        &gz,
        MINUTE,
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    let ids = receiver.ids();
    assert!(ids_for("gz-1", 500).iter().all(|id| ids.contains_key(id)));
}

/// A 200 covers the request's dead letters: they are durable before it is sent, so a
/// kill -9 right after the answer loses none of them.
#[test]
fn dead_letters_of_an_answered_request_survive_a_kill_9_right_after_the_answer() {
    let receiver = HecReceiver::start(HecOptions::default());
    let bad = 500;
    for round in 0..5 {
        let endpoint = start(&receiver, "");
        let id = format!("bad-{round}");
        let mut lines = v2_lines(0, 10);
        for i in 0..bad {
            lines.push_str(&format!("not a flow record {i}\n"));
        }
        let body = body_of(&id, &lines);
        let (status, answer) = post(endpoint.address, KEY, &id, &body, MINUTE).unwrap();
        assert_eq!(status, 200, "{answer}");
        // SIGKILL at once (Drop waits for the process).
        let dir = endpoint.dir();
        drop(endpoint);
        let letters = common::runs::dead_letters(&dir);
        assert_eq!(letters.len(), bad, "round {round}");
        assert!(letters
            .iter()
            .all(|l| l["raw"].as_str().unwrap().starts_with("not a flow record")));
    }
}

/// With the key: gzip bombs in the body and in records, eight concurrent requests of
/// records that each inflate past the decoder's limit, and a million undecodable lines.
/// Each is refused or dead-lettered within bounds, memory stays under 256 MB, the
/// dead-letter store under its cap, and valid requests keep passing.
#[test]
fn bombs_and_floods_of_undecodable_lines_stay_within_bounds() {
    let receiver = HecReceiver::start(HecOptions::default());
    let endpoint = start(&receiver, "");
    let address = endpoint.address;
    let mut valid = 0;
    let mut check_valid = |what: &str| {
        let id = format!("valid-after-{what}");
        let (status, answer) = post(address, KEY, &id, &body_of(&id, &v2_lines(0, 100)), MINUTE)
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(status, 200, "after {what}: {answer}");
        valid += 100;
        assert_eq!(receiver.ids().len(), valid, "after {what}");
    };

    // The body: 8 GiB of zeros once inflated, declared gzip.
    let bomb = gzip_bomb(8);
    let started = Instant::now();
    let (status, answer) = post_with(
        address,
        KEY,
        "body-bomb",
        &["Content-Encoding: gzip"],
        &bomb,
        MINUTE,
    )
    .unwrap();
    assert_eq!(status, 413, "{answer}");
    eprintln!(
        "body gzip bomb ({:.1} MB, 8 GiB inflated): {status} after {:.2} s, peak RSS {} kB",
        bomb.len() as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        endpoint.peak_rss_kb()
    );
    check_valid("body bomb");

    // A record: 8 GiB inflated. It is dead-lettered at the decoder's per-record limit.
    let record = serde_json::json!({"data": b64(&bomb)});
    let body = request_of("record-bomb", vec![record]);
    // Refused whole (413, which Firehose backs up to S3): a dead letter could not keep it.
    let started = Instant::now();
    let (status, answer) = post(address, KEY, "record-bomb", &body, MINUTE).unwrap();
    eprintln!(
        "record gzip bomb ({:.1} MB request, 8 GiB inflated): {status} after {:.2} s, peak RSS {} kB",
        body.len() as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        endpoint.peak_rss_kb()
    );
    assert_eq!(status, 413, "{answer}");
    check_valid("record bomb");

    // Eight at once: requests of about 460 KB whose records each inflate past 16 MiB.
    // What a request may inflate to is bounded by its size: each is refused early.
    let small_bomb = b64(&gzip(&vec![0u8; 17 * MIB]));
    let records: Vec<Value> = (0..20)
        .map(|_| serde_json::json!({"data": small_bomb}))
        .collect();
    let body = request_of("many-bombs", records);
    let started = Instant::now();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let body = body.clone();
            std::thread::spawn(move || post(address, KEY, &format!("bombs-{i}"), &body, MINUTE))
        })
        .collect();
    let answers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    eprintln!(
        "eight concurrent requests of {:.0} KB with 20 records inflating to 17 MiB each: {:?} after {:.2} s, peak RSS {} kB",
        body.len() as f64 / 1e3,
        answers.iter().map(|a| a.as_ref().map(|a| a.0)).collect::<Vec<_>>(),
        started.elapsed().as_secs_f64(),
        endpoint.peak_rss_kb()
    );
    for answer in &answers {
        assert!(matches!(answer, Some((413, _))), "{answer:?}");
    }
    check_valid("eight bombs");

    // A million undecodable lines: 10,000 records of 100 lines each. Every line is
    // dead-lettered (with its text), and the answer is 200.
    let garbage: String = (0..100).map(|i| format!("junk {i}\n")).collect();
    let record = serde_json::json!({"data": b64(garbage.as_bytes())});
    let body = request_of("junk", vec![record; 10_000]);
    let started = Instant::now();
    let (status, answer) = post(address, KEY, "junk", &body, Duration::from_secs(600)).unwrap();
    assert_eq!(status, 200, "{answer}");
    let stored = store_bytes(&endpoint);
    eprintln!(
        "1,000,000 undecodable lines ({:.1} MB request): {status} after {:.1} s; dead-letter store {:.0} MB (cap 1024 MiB), peak RSS {} kB",
        body.len() as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        stored as f64 / 1e6,
        endpoint.peak_rss_kb()
    );
    assert!(stored < 1 << 30);
    let count = std::fs::read_to_string(endpoint.dir().join("data/dead-letter.ndjson"))
        .unwrap()
        .lines()
        .count();
    let rotated_count: usize = (1..100)
        .map(|n| endpoint.dir().join(format!("data/dead-letter.ndjson.{n}")))
        .filter(|p| p.exists())
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum();
    // The record bomb's one dead letter, and the million lines.
    assert!(
        count + rotated_count >= 1_000_000,
        "{count} + {rotated_count}"
    );
    check_valid("a million undecodable lines");

    let peak = endpoint.peak_rss_kb();
    eprintln!("peak RSS over the whole test: {peak} kB");
    assert!(peak < 256_000, "peak RSS {peak} kB");
}

/// A store at its cap takes nothing more: requests are answered 503 (not 200 with their
/// dead letters dropped), `/health` says why, and moving rotated files away frees it.
#[test]
fn a_full_dead_letter_store_stops_acknowledgements_until_it_has_room() {
    let receiver = HecReceiver::start(HecOptions::default());
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let edit = |text: String| {
        let text = text.replace("[api]\n", &format!("[api]\naddress = \"{api}\"\n"));
        format!("{text}\n[dead_letter]\nmax_bytes = 200000\nrotate_bytes = 50000\n")
    };
    let endpoint = start_with(&receiver, "", &edit);
    let address = endpoint.address;
    let health = || {
        let mut stream = TcpStream::connect(api).unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        parse_answer(&answer).unwrap()
    };
    assert_eq!(health().0, 200);

    // Requests of undecodable lines until the store refuses one.
    let mut refused = None;
    for i in 0..100 {
        let id = format!("junk-{i}");
        let lines: String = (0..200).map(|j| format!("junk {i} {j}\n")).collect();
        let (status, answer) = post(address, KEY, &id, &body_of(&id, &lines), MINUTE).unwrap();
        if status != 200 {
            refused = Some((i, status, answer));
            break;
        }
    }
    let (i, status, answer) = refused.expect("the store filled");
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["errorMessage"]
            .as_str()
            .unwrap()
            .contains("dead-letter"),
        "{answer}"
    );
    let (status, body) = health();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("dead-letter"),
        "{body}"
    );
    // Valid requests are refused too while it is full: nothing is acknowledged.
    let (status, _) = post(address, KEY, "v1", &body_of("v1", &v2_lines(0, 5)), MINUTE).unwrap();
    assert_eq!(status, 503);
    let data = endpoint.dir().join("data");
    let stored = store_bytes(&endpoint);
    eprintln!("store full after {i} requests: {stored} bytes on disk (cap 200000)");
    assert!(stored <= 200_000, "{stored}");

    // An operator ships the rotated files away: within a few seconds it takes again.
    for n in 1..100 {
        let _ = std::fs::remove_file(data.join(format!("dead-letter.ndjson.{n}")));
    }
    let mut accepted = false;
    for attempt in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let id = format!("again-{attempt}");
        let lines = format!("{}junk again\n", v2_lines(0, 5));
        if post(address, KEY, &id, &body_of(&id, &lines), MINUTE)
            .unwrap()
            .0
            == 200
        {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "the store never took again");
    assert_eq!(health().0, 200);
}

/// Opens `n` connections that send the start of a request's headers and then a byte now
/// and then (slowloris); they hold their slots as long as the server lets them.
fn slowloris(address: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(address).ok()?;
            stream
                .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .ok()?;
            Some(stream)
        })
        .collect()
}

fn trickle(streams: &mut [TcpStream]) {
    for stream in streams {
        let _ = stream.write_all(b"a");
    }
}

/// Valid requests sent one after the other while `between` runs before each: their
/// statuses and the longest wait for an answer.
fn valid_requests(
    address: std::net::SocketAddr,
    tag: &str,
    n: usize,
    mut between: impl FnMut(),
) -> (Vec<u16>, Duration) {
    let mut statuses = Vec::new();
    let mut longest = Duration::ZERO;
    for i in 0..n {
        between();
        let id = format!("{tag}-{i}");
        let started = Instant::now();
        let answer = post(address, KEY, &id, &body_of(&id, &v2_lines(0, 20)), MINUTE);
        longest = longest.max(started.elapsed());
        statuses.push(answer.map_or(0, |a| a.0));
    }
    (statuses, longest)
}

/// Without the key: 500 slowloris connections (headers never finished; a header timeout
/// longer than the test, so that the connection cap is what holds), then the process's
/// descriptor limit lowered under what it has open (accept fails with EMFILE). Valid
/// requests are answered all along, and the process does not spin.
#[test]
fn slowloris_and_descriptor_exhaustion_leave_valid_requests_answered_and_cpu_idle() {
    let receiver = HecReceiver::start(HecOptions::default());
    let endpoint = start(
        &receiver,
        "header_timeout_secs = 120\nmax_connections = 400",
    );
    let address = endpoint.address;

    let mut slow = slowloris(address, 500);
    std::thread::sleep(Duration::from_millis(500));
    let (cpu, started) = (endpoint.cpu_seconds(), Instant::now());
    let (statuses, longest) = valid_requests(address, "slowloris", 10, || {
        trickle(&mut slow);
        std::thread::sleep(Duration::from_millis(300));
    });
    let (cpu, wall) = (
        endpoint.cpu_seconds() - cpu,
        started.elapsed().as_secs_f64(),
    );
    eprintln!(
        "500 slowloris connections (cap 400): valid requests {statuses:?}, the slowest answered in {:.3} s; \
         flowlog used {cpu:.2} s of CPU in {wall:.1} s; {} descriptors open",
        longest.as_secs_f64(),
        endpoint.open_descriptors()
    );
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert!(cpu < wall / 2.0, "{cpu} s of CPU in {wall} s");

    // Descriptors: the limit goes under what is open, so accept fails with EMFILE until
    // idle connections give theirs back; more slowloris keep coming.
    let open = endpoint.open_descriptors();
    let limit = open - 150;
    let prlimit = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", endpoint.child.id()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .unwrap();
    assert!(prlimit.success());
    let (cpu, started) = (endpoint.cpu_seconds(), Instant::now());
    let (statuses, longest) = valid_requests(address, "emfile", 10, || {
        slow.extend(slowloris(address, 30));
        trickle(&mut slow);
        std::thread::sleep(Duration::from_millis(300));
    });
    let (cpu, wall) = (
        endpoint.cpu_seconds() - cpu,
        started.elapsed().as_secs_f64(),
    );
    let log = endpoint.log();
    eprintln!(
        "descriptor limit lowered from above {open} to {limit} open: valid requests {statuses:?}, the slowest \
         answered in {:.3} s; flowlog used {cpu:.2} s of CPU in {wall:.1} s; {} descriptors open; \
         accept failures logged: {}",
        longest.as_secs_f64(),
        endpoint.open_descriptors(),
        log.matches("cannot accept a connection").count()
    );
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert!(cpu < wall / 2.0, "{cpu} s of CPU in {wall} s");
    assert!(log.contains("Too many open files"), "{log}");
    let ids = receiver.ids();
    assert!(ids_for("emfile-9", 20)
        .iter()
        .all(|id| ids.contains_key(id)));
}

/// A keep-alive request on `stream`: the status (0 when the connection is closed).
fn keep_alive_request(stream: &mut TcpStream, address: std::net::SocketAddr, id: &str) -> u16 {
    let body = body_of(id, &v2_lines(0, 5));
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nX-Amz-Firehose-Request-Id: {id}\r\nX-Amz-Firehose-Access-Key: {KEY}\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&body).is_err() {
        return 0;
    }
    // The head, then as much body as it says.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => answer.push(byte[0]),
            _ => return 0,
        }
    }
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    if stream.read_exact(&mut body).is_err() {
        return 0;
    }
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// SIGTERM with idle keep-alive connections (and one that never finishes its headers)
/// open: the process exits well within `shutdown_timeout_secs` (10 s here), closes the idle
/// connections instead of taking more requests on them, and everything answered 200 was
/// delivered.
#[test]
fn sigterm_with_idle_connections_exits_within_the_shutdown_timeout() {
    let receiver = HecReceiver::start(HecOptions::default());
    let mut endpoint = start(&receiver, "");
    let address = endpoint.address;
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut stream = TcpStream::connect(address).unwrap();
            stream.set_read_timeout(Some(MINUTE)).unwrap();
            assert_eq!(
                keep_alive_request(&mut stream, address, &format!("ka-{i}")),
                200
            );
            stream
        })
        .collect();
    let _slow = slowloris(address, 1);

    let started = Instant::now();
    // SAFETY: signalling a child process this test started.
    assert_eq!(
        unsafe { libc::kill(endpoint.child.id() as i32, libc::SIGTERM) },
        0
    );
    // A request on a kept-alive connection during the drain is not taken.
    std::thread::sleep(Duration::from_millis(100));
    let late = keep_alive_request(&mut idle[0], address, "late");
    let status = loop {
        if let Some(status) = endpoint.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < MINUTE, "no exit after a minute");
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let log = endpoint.log();
    eprintln!(
        "SIGTERM with 20 idle connections and a slowloris one: exited ({status}) after {:.2} s; a request on an idle connection during the drain got {late}",
        took.as_secs_f64()
    );
    assert!(status.success(), "{log}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!log.contains("unacknowledged"), "{log}");
    let ids = receiver.ids();
    // Taken before the stop reached the connection (a slow signal), it was answered only
    // once delivered; otherwise the connection was closed.
    if late == 200 {
        assert!(ids_for("late", 5).iter().all(|id| ids.contains_key(id)));
    }
    for i in 0..20 {
        assert!(ids_for(&format!("ka-{i}"), 5)
            .iter()
            .all(|id| ids.contains_key(id)));
    }
}

/// A refusal that the headers decide is sent before the body is read: a client that asks
/// (`Expect: 100-continue`) sends no body at all, and one that sends its headers and waits
/// is answered too. A flood of refused requests makes a line or two of log, not one each.
#[test]
fn refusals_come_from_the_headers_and_do_not_flood_the_log() {
    let receiver = HecReceiver::start(HecOptions::default());
    let endpoint = start(&receiver, "");
    let address = endpoint.address;
    for (key, length, expect, expected) in [
        ("wrong", 100_000_000, true, 401),
        ("wrong", 100_000_000, false, 401),
        (KEY, 100_000_000, true, 413),
        (KEY, 100_000_000, false, 413),
    ] {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(MINUTE)).unwrap();
        let headers: &[&str] = if expect {
            &["Expect: 100-continue"]
        } else {
            &[]
        };
        stream
            .write_all(&head(address, key, "r-1", headers, length))
            .unwrap();
        // No body is sent: the answer comes from the headers.
        let mut answer = vec![0u8; 4096];
        let n = stream.read(&mut answer).unwrap();
        let (status, json) = parse_answer(&answer[..n]).unwrap();
        assert_eq!(status, expected, "{key} {expect}: {json}");
    }

    for i in 0..1000 {
        let id = format!("flood-{i}");
        let answer = post(address, "wrong", &id, b"{}", MINUTE).unwrap();
        assert_eq!(answer.0, 401);
    }
    let log = endpoint.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("wrong access key"))
        .count();
    eprintln!("1,004 refused requests: {lines} log lines about them");
    assert!(lines <= 3, "{log}");
    assert!(log.contains("more like it") || lines <= 2, "{log}");
}
