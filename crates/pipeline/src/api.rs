//! `/metrics` (Prometheus text) and `/health` over HTTP/1.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use flowlog_sink::Metrics;

/// Serves until the runtime stops. `healthy` turns false when a sink has failed.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics, healthy: Arc<AtomicBool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, healthy) = (metrics.clone(), Arc::clone(&healthy));
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let answer = match request.uri().path() {
                    "/metrics" => response(
                        200,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        metrics.render(),
                    ),
                    "/health" if healthy.load(Ordering::Relaxed) => {
                        response(200, "application/json", r#"{"status":"ok"}"#.into())
                    }
                    "/health" => response(503, "application/json", r#"{"status":"failed"}"#.into()),
                    _ => response(404, "text/plain", "not found\n".into()),
                };
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
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
