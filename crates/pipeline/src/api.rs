//! `/metrics` (Prometheus text) and `/health` over HTTP/1.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use flowlog_component::status::State;
use flowlog_component::Metrics;
use serde_json::json;

use flowlog_source::dead_letter::DeadLetterFile;

/// What `/health` reports: the process's state and each component's.
///
/// `200` with `"status": "ok"`, or `"degraded"` while a component has been failing for
/// less than the grace period (a receiver restarting, a listing that failed once); `503`
/// once one has been failing longer (`"failing"`), when a part stopped for good
/// (`"failed"`), or when the dead-letter store is full (`"blocked"`). The body names every
/// component, with its latest error while it fails.
pub struct Health {
    /// A part stopped for good, and why.
    failed: Mutex<Option<String>>,
    /// Full, it refuses dead letters, so nothing they would cover is acknowledged.
    dead_letters: Option<Arc<DeadLetterFile>>,
    metrics: Metrics,
    /// How long a component may fail before the process is unhealthy.
    grace: Duration,
}

impl Health {
    pub fn new(dead_letters: Arc<DeadLetterFile>, metrics: Metrics, grace: Duration) -> Self {
        Self {
            failed: Mutex::new(None),
            dead_letters: Some(dead_letters),
            metrics,
            grace,
        }
    }

    /// `what` (`sink splunk: ...`) stopped for good.
    pub fn set_failed(&self, what: String) {
        self.failed
            .lock()
            .expect("not poisoned")
            .get_or_insert(what);
    }

    /// The status code and JSON body of `/health`.
    pub fn report(&self) -> (u16, String) {
        let mut components = serde_json::Map::new();
        let mut failing_long = None;
        let mut failing = false;
        for (kind, name, state) in self.metrics.states() {
            let entry = match state {
                State::Ok => json!({ "status": "ok" }),
                State::Failing { for_, last, errors } => {
                    failing = true;
                    if for_ >= self.grace && failing_long.is_none() {
                        failing_long = Some(format!("{kind} {name}: {last}"));
                    }
                    json!({
                        "status": "failing",
                        "failing_secs": for_.as_secs(),
                        "errors": errors,
                        "last_error": last,
                    })
                }
            };
            components.insert(format!("{kind} {name}"), entry);
        }
        let failed = self.failed.lock().expect("not poisoned").clone();
        let full = self.dead_letters.as_ref().is_some_and(|d| d.is_full());
        let (code, status, reason) = if let Some(what) = failed {
            (503, "failed", Some(what))
        } else if full {
            let reason = "the dead-letter store is full: nothing it would hold is \
                          acknowledged until its rotated files are moved away";
            (503, "blocked", Some(reason.to_string()))
        } else if let Some(what) = failing_long {
            let reason = format!("failing for over {} s: {what}", self.grace.as_secs());
            (503, "failing", Some(reason))
        } else if failing {
            (200, "degraded", None)
        } else {
            (200, "ok", None)
        };
        let mut body = json!({ "status": status, "components": components });
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        (code, body.to_string())
    }
}

/// Serves until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics, health: Arc<Health>) {
    let mut accept = || listener.accept();
    let failures = flowlog_component::listen::Throttled::new(std::time::Duration::from_secs(10));
    loop {
        let (stream, _) = flowlog_component::listen::next_connection(
            &mut accept,
            "metrics endpoint",
            &failures,
            |_| {},
        )
        .await;
        let (metrics, health) = (metrics.clone(), Arc::clone(&health));
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let answer = match request.uri().path() {
                    "/metrics" => response(
                        200,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        metrics.render(),
                    ),
                    "/health" => {
                        let (status, body) = health.report();
                        response(status, "application/json", body)
                    }
                    _ => response(404, "text/plain", "not found\n".into()),
                };
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            // hyper's header timeout needs a timer; without one a client that never
            // finishes its headers would hold its descriptor for good.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn response(status: u16, content_type: &str, body: String) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}
