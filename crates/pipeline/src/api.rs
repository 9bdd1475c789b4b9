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
    serve_from(|| listener.accept(), metrics, healthy).await
}

/// How long to wait after a failed accept (EMFILE, ENFILE, ENOBUFS...): retrying at once
/// would spin a core while the condition lasts.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

async fn serve_from<F, A>(mut accept: F, metrics: Metrics, healthy: Arc<AtomicBool>)
where
    F: FnMut() -> A,
    A: std::future::Future<Output = std::io::Result<(tokio::net::TcpStream, SocketAddr)>>,
{
    let mut failing = false;
    loop {
        let stream = match accept().await {
            Ok((stream, _)) => {
                failing = false;
                stream
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("metrics endpoint: cannot accept a connection: {e}");
                    failing = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failing_accept_backs_off_instead_of_spinning() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let accept = move || {
            let n = counted.fetch_add(1, Ordering::Relaxed);
            // Without a wait between failures this loop never yields: stop it here.
            assert!(n < 1000, "accept retried {n} times without waiting");
            std::future::ready(Err(std::io::Error::from_raw_os_error(24))) // EMFILE
        };
        let server = tokio::spawn(serve_from(
            accept,
            Metrics::new(),
            Arc::new(AtomicBool::new(true)),
        ));
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let n = calls.load(Ordering::Relaxed);
        assert!((5..=12).contains(&n), "{n} accepts in one (virtual) second");
        server.abort();
    }
}
