//! The request layer against a receiver that answers per event (as `_bulk` does), fails
//! whole requests, and refuses large ones: every event ends delivered exactly once or
//! dead-lettered, and only what an answer left undone is sent again; a request that
//! could not be authorized yet is retried, never sent without.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::*;
use crate::ClientOptions;
use flowlog_component::{Ack, BatchStatus, Metrics};

/// What the receiver saw: how often each event arrived, and the requests.
#[derive(Default)]
struct Seen {
    events: HashMap<String, u32>,
    requests: u32,
    whole_failures: u32,
    too_large: u32,
    /// Requests without the header `Words::authorize` adds.
    unauthorized: u32,
}

/// Answers: the first request 503; a request of more than two events holding a `split…`
/// event 413; otherwise a JSON array with one word per event: `ok…` -> ok, `retry…` ->
/// retry the first time that event is seen, `bad…` -> bad. Events are counted only when
/// accepted.
async fn start_receiver(seen: Arc<Mutex<Seen>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let signed = request.headers().contains_key("x-signed");
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let text = String::from_utf8(body.to_vec()).unwrap();
                        let mut seen = seen.lock().unwrap();
                        seen.unauthorized += u32::from(!signed);
                        let (status, answer) = answer(&mut seen, &text);
                        let response = http::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(answer)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

fn answer(seen: &mut Seen, body: &str) -> (u16, String) {
    seen.requests += 1;
    if seen.requests == 1 {
        seen.whole_failures += 1;
        return (503, "busy".into());
    }
    let events: Vec<&str> = body.lines().collect();
    if events.len() > 2 && events.iter().any(|e| e.starts_with("split")) {
        seen.too_large += 1;
        return (413, String::new());
    }
    let words: Vec<&str> = events
        .iter()
        .map(|e| {
            let first = !seen.events.contains_key(*e) && !seen.events.contains_key(&retried(e));
            if e.starts_with("bad") {
                "bad"
            } else if e.starts_with("retry") && first {
                // Remembered, so the next time it is accepted.
                seen.events.insert(retried(e), 0);
                "retry"
            } else {
                *seen.events.entry(e.to_string()).or_default() += 1;
                "ok"
            }
        })
        .collect();
    (200, serde_json::to_string(&words).unwrap())
}

fn retried(event: &str) -> String {
    format!("{event}#refused")
}

/// Speaks to the receiver above at its URL; its first `unsigned` authorizations fail
/// (credentials not yet fetched), the others add `x-signed`.
struct Words {
    url: String,
    unsigned: std::sync::atomic::AtomicU32,
}

impl Protocol for Words {
    fn request(&self, body: Bytes, _gzip: bool, _group: Option<&Bytes>) -> http::Request<Bytes> {
        http::Request::post(&self.url).body(body).unwrap()
    }

    fn authorize<'a>(
        &'a self,
        request: &'a mut http::Request<Bytes>,
    ) -> BoxFuture<'a, Result<(), String>> {
        use std::sync::atomic::Ordering;
        let fail = self
            .unsigned
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !fail {
            let value = http::HeaderValue::from_static("yes");
            request.headers_mut().insert("x-signed", value);
        }
        Box::pin(async move {
            if fail {
                Err("no credentials yet".to_string())
            } else {
                Ok(())
            }
        })
    }

    fn classify(&self, response: &Response, _piece: &Piece) -> Verdict {
        match response.status {
            200 => {
                let words: Vec<String> = serde_json::from_slice(&response.body).unwrap();
                Verdict::Events(
                    words
                        .iter()
                        .map(|w| match w.as_str() {
                            "ok" => EventVerdict::Delivered,
                            "retry" => EventVerdict::Retry,
                            _ => EventVerdict::Refused("the receiver said bad".into()),
                        })
                        .collect(),
                )
            }
            413 => Verdict::TooLarge,
            status => Verdict::Retry {
                reason: format!("HTTP {status}"),
                after: None,
            },
        }
    }
}

/// Each row of the `name` column, one per line.
struct Lines;

impl EventWriter for Lines {
    fn prepare<'a>(
        &'a mut self,
        batch: &'a FlowBatch,
    ) -> Result<Box<dyn WriteRow + 'a>, SinkError> {
        struct Rows<'a>(&'a StringArray);
        impl WriteRow for Rows<'_> {
            fn write(&mut self, row: usize, out: &mut Vec<u8>) {
                out.extend_from_slice(self.0.value(row).as_bytes());
                out.push(b'\n');
            }
        }
        let names = batch.records.column(0).as_any().downcast_ref().unwrap();
        Ok(Box::new(Rows(names)))
    }
}

/// A dead letter that refuses its first `full` writes, as a store at its cap does until
/// files are moved away.
#[derive(Default)]
struct Letters(Mutex<Vec<DeadLetter>>, std::sync::atomic::AtomicU32);

impl DeadLetters for Letters {
    fn write(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        use std::sync::atomic::Ordering;
        let full = self
            .1
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if full.is_ok() {
            return Err(DeadLetterError::Full {
                path: "letters".into(),
                stored: 1,
                cap: 1,
            });
        }
        self.0.lock().unwrap().push(letter);
        Ok(())
    }
}

fn batch(names: &[String]) -> FlowBatch {
    let column: ArrayRef = Arc::new(StringArray::from_iter_values(names));
    let records = RecordBatch::try_from_iter([("name", column)]).unwrap();
    let lines: Vec<u64> = (1..=names.len() as u64).collect();
    FlowBatch::new(records, flowlog_model::SourceId::new("test"), lines.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_event_answers_retry_only_what_is_undone_and_dead_letter_the_refused() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = start_receiver(Arc::clone(&seen)).await;
    let names: Vec<String> = (0..60)
        .map(|i| match i % 6 {
            0 => format!("retry-{i}"),
            1 => format!("bad-{i}"),
            2 => format!("split-{i}"),
            _ => format!("ok-{i}"),
        })
        .collect();
    let client = HttpClient::new(&ClientOptions {
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    })
    .unwrap();
    let metrics = Metrics::new();
    // The first refused events find the dead letter full: they are not settled, but sent
    // again (and refused again) until it keeps them.
    let letters = Arc::new(Letters(Mutex::default(), 3.into()));
    let requests = Requests::new(
        "words",
        Words {
            url,
            unsigned: 3.into(),
        },
        client,
        RequestSettings {
            max_bytes: 80,
            batch_timeout: Duration::from_millis(20),
            gzip: false,
            concurrency: 2,
            max_in_flight: 3,
            retry: RetryPolicy {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(5),
            },
        },
        metrics.component("sink", "words"),
        Arc::clone(&letters) as Arc<dyn DeadLetters>,
    );
    let (tx, rx) = mpsc::channel(2);
    let running = tokio::spawn(requests.run(Lines, rx));
    let mut waits = Vec::new();
    for chunk in names.chunks(25) {
        let (ack, wait) = Ack::new();
        waits.push(wait);
        let batch = Arc::new(batch(chunk));
        tx.send(SinkInput { batch, ack }).await.unwrap();
    }
    drop(tx);
    running.await.unwrap().unwrap();
    for wait in waits {
        assert_eq!(wait.wait().await, BatchStatus::Delivered);
    }

    let seen = seen.lock().unwrap();
    assert_eq!(seen.whole_failures, 1);
    // Requests that could not be authorized were retried, never sent unsigned.
    assert_eq!(seen.unauthorized, 0);
    assert!(seen.too_large > 0, "no request was split");
    for name in &names {
        let arrived = seen.events.get(name).copied().unwrap_or(0);
        let expected = u32::from(!name.starts_with("bad"));
        assert_eq!(arrived, expected, "{name}");
        if name.starts_with("retry") {
            assert!(
                seen.events.contains_key(&retried(name)),
                "{name} not retried"
            );
        }
    }
    assert_eq!(letters.1.load(std::sync::atomic::Ordering::SeqCst), 0);
    let letters = letters.0.lock().unwrap();
    let mut refused: Vec<&str> = letters.iter().map(|l| l.raw.as_str()).collect();
    refused.sort();
    let mut bad: Vec<&str> = names
        .iter()
        .filter(|n| n.starts_with("bad"))
        .map(String::as_str)
        .collect();
    bad.sort();
    assert_eq!(refused, bad);
    assert!(letters[0].reason.contains("the receiver said bad"));
    let text = metrics.render();
    assert!(
        text.contains(r#"flowlog_records_out_total{component_kind="sink",component="words"} 50"#),
        "{text}"
    );
    assert!(
        text.contains(r#"flowlog_dead_letters_total{component_kind="sink",component="words"} 10"#),
        "{text}"
    );
}
