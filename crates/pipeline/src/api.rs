//! `/metrics` (Prometheus text) and `/health` over HTTP/1.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use flowlog_component::Metrics;

use flowlog_source::dead_letter::DeadLetterFile;

/// What `/health` reports.
#[derive(Default)]
pub struct Health {
    /// A sink has stopped for good.
    failed: AtomicBool,
    /// Full, it refuses dead letters, so nothing they would cover is acknowledged.
    dead_letters: Option<Arc<DeadLetterFile>>,
}

impl Health {
    pub fn new(dead_letters: Arc<DeadLetterFile>) -> Self {
        Self {
            failed: AtomicBool::new(false),
            dead_letters: Some(dead_letters),
        }
    }

    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// The status code and JSON body of `/health`.
    fn report(&self) -> (u16, String) {
        if self.failed.load(Ordering::Relaxed) {
            return (503, r#"{"status":"failed"}"#.into());
        }
        if self.dead_letters.as_ref().is_some_and(|d| d.is_full()) {
            let body = r#"{"status":"blocked","reason":"the dead-letter store is full: nothing it would hold is acknowledged until its rotated files are moved away"}"#;
            return (503, body.into());
        }
        (200, r#"{"status":"ok"}"#.into())
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

/// Binds the API address (before anything else starts, so a taken port fails early).
pub fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
