//! `flowlog run` with a Firehose HTTP endpoint source into the HEC receiver, spoken to as
//! Firehose does (`X-Amz-Firehose-*` headers, base64 records, gzip'd CloudWatch Logs
//! payloads, `{"message"}` records, retries with the same request id): answers only once
//! the records are delivered, the same ids for a retried request, a wrong key refused,
//! an over-size request refused for good, and while the sink is down, 503s at once
//! beyond the limits with memory bounded.

mod common;

use std::time::Duration;

use base64::Engine;
use common::firehose::{body_of, ids_for, post, start, KEY};
use common::{fixture, tempdir};
use flowlog_test_receivers::hec::{HecOptions, HecReceiver};
use serde_json::Value;

fn fixture_body(name: &str) -> (String, Vec<u8>) {
    let bytes = std::fs::read(fixture(&format!("envelopes/{name}"))).unwrap();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    (json["requestId"].as_str().unwrap().to_string(), bytes)
}

const SECOND: Duration = Duration::from_secs(10);

#[test]
fn requests_are_answered_once_delivered_and_a_retry_carries_the_same_ids() {
    let receiver = HecReceiver::start(HecOptions::default());
    let endpoint = start(&receiver, "");
    let address = endpoint.address;

    // A CloudWatch Logs subscription through Firehose (gzip'd payload in a record).
    let (id, body) = fixture_body("firehose-http-request.cwl-subscription-gzip.json");
    let (status, answer) = post(address, KEY, &id, &body, SECOND).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["requestId"], id.as_str());
    assert!(answer["timestamp"].as_u64().is_some() && answer.get("errorMessage").is_none());
    let first = receiver.ids();
    assert!(!first.is_empty());
    assert!(
        first.keys().all(|k| ids_for(&id, first.len()).contains(k)),
        "{first:?}"
    );

    // Firehose retries with the same request id: the same ids, nothing new.
    let (status, _) = post(address, KEY, &id, &body, SECOND).unwrap();
    assert_eq!(status, 200);
    let again = receiver.ids();
    assert_eq!(
        again.keys().collect::<std::collections::HashSet<_>>(),
        first.keys().collect()
    );

    // Direct VPC delivery: {"message"} records, a NODATA one among them.
    let (id2, body2) = fixture_body("firehose-http-request.vpc-direct-message-json.json");
    assert_eq!(post(address, KEY, &id2, &body2, SECOND).unwrap().0, 200);
    let ids = receiver.ids();
    for expected in ids_for(&id2, 2) {
        assert!(ids.contains_key(&expected), "{expected}");
    }

    // A CloudWatch Logs control message (its health check) yields nothing, and 200.
    let control =
        std::fs::read(fixture("envelopes/cwl-subscription.control-message.json")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let wrapped = serde_json::json!({"requestId": "control-1", "timestamp": 1, "records": [{"data": b64.encode(&control)}]});
    let before = receiver.ids().len();
    let (status, _) = post(
        address,
        KEY,
        "control-1",
        wrapped.to_string().as_bytes(),
        SECOND,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(receiver.ids().len(), before);

    // A wrong key: 401, nothing taken; the key is never logged.
    let (status, answer) = post(
        address,
        "wrong",
        "r-x",
        &body_of("r-x", "2 1 eni-1 - - - - - - - 1 2 - NODATA"),
        SECOND,
    )
    .unwrap();
    assert_eq!(status, 401, "{answer}");
    assert!(answer["errorMessage"]
        .as_str()
        .unwrap()
        .contains("access key"));
    assert_eq!(receiver.ids().len(), before);

    let log = endpoint.log();
    assert!(!log.contains(KEY), "{log}");
}

#[test]
fn over_size_requests_are_refused_for_good_and_a_down_sink_gets_503s_with_memory_bounded() {
    let receiver = HecReceiver::start(HecOptions::default());
    let limits = "max_requests = 2\nmax_body_bytes = 4000000\nmax_bytes_in_flight = 9100000";
    let endpoint = start(&receiver, limits);
    let address = endpoint.address;
    let text = flowlog_test_receivers::corpus::v2_lines(0, 12_000);
    let body = body_of("big-0", &text);
    assert!(body.len() < 4_000_000, "{}", body.len());

    // Over the limit: 413, which Firehose does not retry.
    let twice = body_of("too-big", &(text.clone() + &text));
    assert!(twice.len() > 4_000_000);
    let (status, _) = post(address, KEY, "too-big", &twice, SECOND).unwrap();
    assert_eq!(status, 413);

    // The sink is down: requests are held (no answer before Firehose's timeout) up to the
    // limits, and the others are answered 503 at once.
    receiver.set_down(true);
    let rss_before = endpoint.rss_kb();
    let handles: Vec<_> = (0..24)
        .map(|i| {
            let request_id = format!("big-{i}");
            let body = body_of(&request_id, &text);
            // A client waits well beyond the time a 503 takes: 24 clients writing 2 MB
            // bodies at once on a loaded machine can see an early 503 only after seconds
            // (their writes block while the server answers others), and such a late
            // answer is not a request held.
            std::thread::spawn(move || {
                post(address, KEY, &request_id, &body, Duration::from_secs(10))
            })
        })
        .collect();
    let answers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Some((503, _))))
        .count();
    let held = answers.iter().filter(|a| a.is_none()).count();
    assert!(held <= 2, "{held} requests held beyond max_requests");
    assert!(refused >= 20, "{refused} answered 503: {answers:?}");
    let peak = endpoint.peak_rss_kb();
    eprintln!("sink down, 24 requests of {} bytes: {refused} answered 503, {held} held; RSS {rss_before} kB before, peak {peak} kB", body.len());
    assert!(peak < 400_000, "peak RSS {peak} kB");

    // The sink is back: Firehose retries every request with its id, all are delivered,
    // each record once by id (what was held may arrive twice, with the same id).
    receiver.set_down(false);
    for i in 0..24 {
        let request_id = format!("big-{i}");
        let answer = post(
            address,
            KEY,
            &request_id,
            &body_of(&request_id, &text),
            Duration::from_secs(60),
        );
        assert_eq!(answer.map(|a| a.0), Some(200), "{request_id}");
    }
    let ids = receiver.ids();
    for i in 0..24 {
        for id in ids_for(&format!("big-{i}"), 12_000) {
            assert!(ids.contains_key(&id), "{id}");
        }
    }
    assert_eq!(ids.len(), 24 * 12_000);
}

/// Over HTTPS (the server's certificate from PEM files), a request is delivered as over
/// HTTP; a client that sends its headers and then stalls is answered 408 once
/// `body_timeout_secs` passes, and the slot it held serves the next request.
#[test]
fn https_requests_are_served_and_a_stalled_body_gets_408() {
    let receiver = HecReceiver::start(HecOptions::default());
    let pki = flowlog_test_receivers::tls::TestPki::new();
    let dir = tempdir();
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&cert, &pki.server.0).unwrap();
    std::fs::write(&key, &pki.server.1).unwrap();
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let tls = format!(
        "tls = {{ cert_file = \"{}\", key_file = \"{}\" }}\nmax_requests = 1\nbody_timeout_secs = 1\nmax_connections = 20\nheader_timeout_secs = 60",
        cert.display(),
        key.display()
    );
    let endpoint = start(&receiver, &tls);
    let address = endpoint.address;

    // HTTPS, verified against the CA, through Python's ssl (the test venv's interpreter).
    let body = body_of("tls-1", &flowlog_test_receivers::corpus::v2_lines(0, 10));
    let body_file = dir.join("body.json");
    std::fs::write(&body_file, &body).unwrap();
    let client = format!(
        r#"
import http.client, ssl, sys
context = ssl.create_default_context(cafile="{ca}")
connection = http.client.HTTPSConnection("localhost", {port}, context=context, timeout=30)
connection.request("POST", "/", body=open("{body}", "rb").read(), headers={{
    "Content-Type": "application/json", "X-Amz-Firehose-Request-Id": "tls-1",
    "X-Amz-Firehose-Access-Key": sys.argv[1]}})
answer = connection.getresponse()
print(answer.status, answer.read().decode())
"#,
        ca = ca.display(),
        port = address.port(),
        body = body_file.display()
    );
    // What a Python script given the access key prints, and its errors.
    let python = |script: &str| {
        let out = std::process::Command::new(common::python())
            .args(["-c", script, KEY])
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (printed, errors) = python(&client);
    assert!(printed.starts_with("200 "), "{printed}{errors}");
    assert!(printed.contains("\"requestId\":\"tls-1\""), "{printed}");
    let ids = receiver.ids();
    assert!(ids_for("tls-1", 10).iter().all(|id| ids.contains_key(id)));

    // Headers, ten bytes of a longer body, then nothing: 408 after a second, over TLS.
    let (printed, errors) = python(&format!(
        r#"
import socket, ssl, sys
context = ssl.create_default_context(cafile="{ca}")
s = context.wrap_socket(socket.create_connection(("localhost", {port})), server_hostname="localhost")
s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nX-Amz-Firehose-Request-Id: slow\r\nX-Amz-Firehose-Access-Key: " + sys.argv[1].encode() + b"\r\n\r\n0123456789")
s.settimeout(30)
print(s.recv(4096).decode().split("\r\n")[0])
"#,
        ca = ca.display(),
        port = address.port()
    ));
    assert!(printed.starts_with("HTTP/1.1 408"), "{printed}{errors}");
    // Fifty connections that never begin their TLS handshake, past the cap of twenty
    // (and a header timeout longer than the test): each gives way to the next, and the
    // one request slot is free again for a client that does speak.
    let before = endpoint.open_descriptors();
    let silent: Vec<_> = (0..50)
        .map(|_| std::net::TcpStream::connect(address).unwrap())
        .collect();
    let (printed, errors) = python(&client.replace("tls-1", "tls-2"));
    let during = endpoint.open_descriptors();
    assert!(during <= before + 21, "{before} descriptors, then {during}");
    drop(silent);
    assert!(printed.starts_with("200 "), "{printed}{errors}");
    std::fs::remove_dir_all(dir).ok();
}
