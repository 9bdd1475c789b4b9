//! `/metrics` (Prometheus text), `/health` and `/ready` over HTTP/1.1.

use std::collections::{BTreeMap, BTreeSet};
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
    readiness: Mutex<Readiness>,
}

/// What `/ready` reports: whether this process should be sent work now (a load balancer
/// in front of the Firehose endpoint, a Kubernetes Service). Liveness is `/health`'s.
#[derive(Debug, Default)]
struct Readiness {
    phase: Phase,
    /// Sinks that have not yet passed their first check in this configuration.
    waiting_for: BTreeSet<String>,
    /// Why each of them has not, as its latest check said.
    last_errors: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Building sources and sinks (at start and after a reload).
    #[default]
    Starting,
    Running,
    /// Stopping or reloading: in-flight batches are delivered, nothing new is taken.
    Draining,
}

impl Health {
    pub fn new(dead_letters: Arc<DeadLetterFile>, metrics: Metrics, grace: Duration) -> Self {
        Self {
            failed: Mutex::new(None),
            dead_letters: Some(dead_letters),
            metrics,
            grace,
            readiness: Mutex::new(Readiness::default()),
        }
    }

    /// A configuration starts: not ready until its sources run and each of `sinks`
    /// passed a first check.
    pub fn starting(&self, sinks: impl IntoIterator<Item = String>) {
        let mut r = self.readiness.lock().expect("not poisoned");
        r.phase = Phase::Starting;
        r.waiting_for = sinks.into_iter().collect();
        r.last_errors.clear();
    }

    /// The sources run.
    pub fn running(&self) {
        let mut r = self.readiness.lock().expect("not poisoned");
        if r.phase == Phase::Starting {
            r.phase = Phase::Running;
        }
    }

    /// `sink` reached its receiver (its check passed).
    pub fn sink_ready(&self, sink: &str) {
        let mut r = self.readiness.lock().expect("not poisoned");
        r.waiting_for.remove(sink);
        r.last_errors.remove(sink);
    }

    /// `sink`'s check failed with `error`; true if that is news (not the error it had).
    pub fn sink_not_ready(&self, sink: &str, error: String) -> bool {
        let mut r = self.readiness.lock().expect("not poisoned");
        r.last_errors.insert(sink.to_string(), error.clone()) != Some(error)
    }

    /// The configuration drains (a stop signal, a reload, sources ended).
    pub fn draining(&self) {
        self.readiness.lock().expect("not poisoned").phase = Phase::Draining;
    }

    /// The status code and JSON body of `/ready`: `200 {"status":"ready"}`, or `503`
    /// saying what is awaited.
    pub fn ready(&self) -> (u16, String) {
        let (health, _) = self.report();
        let r = self.readiness.lock().expect("not poisoned");
        let (code, body) = match r.phase {
            _ if health != 200 => (503, json!({ "status": "unhealthy", "see": "/health" })),
            Phase::Starting => (503, starting(&r)),
            Phase::Draining => (503, json!({ "status": "draining" })),
            Phase::Running if !r.waiting_for.is_empty() => (503, starting(&r)),
            Phase::Running => (200, json!({ "status": "ready" })),
        };
        (code, body.to_string())
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

/// `/ready`'s body while sinks are awaited: which, and what their checks said.
fn starting(r: &Readiness) -> serde_json::Value {
    json!({
        "status": "starting",
        "waiting_for": Vec::from_iter(&r.waiting_for),
        "last_errors": r.last_errors,
    })
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
                    "/ready" => {
                        let (status, body) = health.ready();
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
