//! `type = "firehose"`: the HTTP endpoint Amazon Data Firehose delivers to (direct VPC ->
//! Firehose delivery, or CloudWatch Logs subscriptions through Firehose).
//!
//! A request is answered as Firehose's "HTTP endpoint delivery" specification says: `200`
//! with the request id and a timestamp only once every record of the request has been
//! delivered by every sink (or dead-lettered); `401` for a wrong access key (compared in
//! constant time), `413` for a body over the limit (which Firehose does not retry), and
//! `500`/`503` with an `errorMessage` while sinks fail or the endpoint is full, which
//! Firehose retries with the same request id. Records are identified by that id and
//! their place in the request (`firehose:<request id>` and the record's number), so a
//! retried request carries the same event ids as the first attempt.
//!
//! Memory is bounded: at most `max_requests` requests and `max_bytes_in_flight` bytes of
//! bodies are taken in at once; beyond that the answer is `503` at once, so Firehose
//! backs off instead of this process buffering.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use flowlog_decode::{decode_reader, DeadLetter, DecodeOptions, RecordSink, SinkError};
use flowlog_model::{FlowBatch, SourceId};
use flowlog_sink::{BatchStatus, BoxFuture, DeadLetters};
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::{Checkpoints, Source, SourceContext, SourceKind};

fn default_max_requests() -> usize {
    8
}
fn default_max_body() -> usize {
    // Firehose's own limit for an HTTP endpoint request.
    64 << 20
}
fn default_max_bytes_in_flight() -> usize {
    256 << 20
}
fn default_body_timeout() -> u64 {
    30
}

/// `[sources.<name>]` of `type = "firehose"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseSource {
    /// Where to listen, e.g. `0.0.0.0:8443`.
    pub address: SocketAddr,
    /// The access key configured in the Firehose stream's destination.
    pub access_key: String,
    /// HTTPS (Firehose requires it; a load balancer in front may end TLS instead).
    pub tls: Option<ServerTls>,
    /// The format of the lines, for CloudWatch Logs subscriptions with a custom format.
    pub format: Option<String>,
    /// Requests taken in at once; more are answered 503.
    #[serde(default = "default_max_requests")]
    pub max_requests: usize,
    /// Largest request body (as received); larger is 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Bytes of request bodies taken in at once; more are answered 503.
    #[serde(default = "default_max_bytes_in_flight")]
    pub max_bytes_in_flight: usize,
    /// A request whose body has not all arrived this long after its headers is answered
    /// 408: a client that stalls must not hold one of `max_requests` for ever.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
}

/// The server's certificate (PEM, with its chain) and key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl SourceKind for FirehoseSource {
    fn format(&self) -> Option<&str> {
        self.format.as_deref()
    }

    fn validate(&self) -> Result<(), String> {
        if self.access_key.trim().is_empty() {
            return Err("access_key is empty: Firehose sends one; set it here".into());
        }
        if self.max_requests == 0 || self.max_body_bytes == 0 || self.body_timeout_secs == 0 {
            return Err(
                "max_requests, max_body_bytes and body_timeout_secs must be at least 1".into(),
            );
        }
        if self.max_bytes_in_flight < self.max_body_bytes {
            return Err("max_bytes_in_flight must be at least max_body_bytes".into());
        }
        Ok(())
    }

    fn build(&self, ctx: SourceContext) -> Box<dyn Source> {
        Box::new(Endpoint {
            settings: self.clone(),
            ctx,
        })
    }

    fn check(&self, _: Option<&Checkpoints>) -> Vec<(bool, String)> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut findings = vec![match &self.tls {
            Some(tls) => match acceptor(tls) {
                Ok(_) => (
                    true,
                    format!(
                        "{scheme}://{} (certificate {})",
                        self.address,
                        tls.cert_file.display()
                    ),
                ),
                Err(e) => (false, e),
            },
            None => (
                true,
                format!(
                    "{scheme}://{} (plain HTTP: TLS must end at a load balancer in front)",
                    self.address
                ),
            ),
        }];
        // Whether the address can be listened on (it is free now, or flowlog runs there).
        if let Err(e) = std::net::TcpListener::bind(self.address) {
            let hint = "(is something, or flowlog itself, listening there already?)";
            findings.push((
                false,
                format!("cannot listen on {}: {e} {hint}", self.address),
            ));
        }
        findings
    }
}

/// The server's TLS settings from the PEM files.
fn acceptor(tls: &ServerTls) -> Result<tokio_rustls::TlsAcceptor, String> {
    let (chain, key) = flowlog_sink::http::pem_identity(&tls.cert_file, &tls.key_file)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

struct Endpoint {
    settings: FirehoseSource,
    ctx: SourceContext,
}

/// What every request's handler shares.
struct Shared {
    settings: FirehoseSource,
    ctx: SourceContext,
    requests: Arc<Semaphore>,
    /// Bytes of bodies taken in, in KiB (a semaphore counts in `u32`).
    kib: Semaphore,
}

impl Source for Endpoint {
    fn run(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(serve(*self))
    }
}

async fn serve(endpoint: Endpoint) {
    let Endpoint { settings, ctx } = endpoint;
    let name = ctx.name.clone();
    let tls = match settings.tls.as_ref().map(acceptor).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            tracing::error!(source = %name, "{e}");
            return;
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.address).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(source = %name, "cannot listen on {}: {e}", settings.address);
            return;
        }
    };
    tracing::info!(source = %name, address = %settings.address, "Firehose endpoint listening");
    let shared = Arc::new(Shared {
        requests: Arc::new(Semaphore::new(settings.max_requests)),
        kib: Semaphore::new(kib(settings.max_bytes_in_flight) as usize),
        settings,
        ctx,
    });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.ctx.stop.wait() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, std::convert::Infallible>(handle(&shared, request).await) }
            });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let _ = match tls {
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    Err(_) => return,
                },
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
            };
        });
    }
    // Requests taken in are answered before the source ends (each holds a permit).
    let all = shared.settings.max_requests as u32;
    let _ = shared.requests.acquire_many(all).await;
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

type Answer = http::Response<Full<Bytes>>;

/// Firehose's answer: the request id, a timestamp, and on failure the reason.
fn answer(status: u16, request_id: &str, error: Option<&str>) -> Answer {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let mut body = serde_json::json!({"requestId": request_id, "timestamp": timestamp});
    if let Some(error) = error {
        body["errorMessage"] = error.into();
    }
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

async fn handle(shared: &Shared, request: http::Request<hyper::body::Incoming>) -> Answer {
    let (parts, body) = request.into_parts();
    match take_in(shared, &parts, body).await {
        Ok(answer) => answer,
        Err(refusal) => {
            let (answer, body) = *refusal;
            // Read (not kept) what the client is still sending, so that the answer reaches
            // it instead of a reset connection; up to twice the body limit.
            if let Some(mut body) = body {
                let mut left = 2 * shared.settings.max_body_bytes;
                while let Some(Ok(frame)) = body.frame().await {
                    let n = frame.data_ref().map_or(0, |d| d.len());
                    if n >= left {
                        break;
                    }
                    left -= n;
                }
            }
            answer
        }
    }
}

/// An answer refusing a request, with its body when it was not read.
type Refusal = Box<(Answer, Option<hyper::body::Incoming>)>;

async fn take_in(
    shared: &Shared,
    parts: &http::request::Parts,
    body: hyper::body::Incoming,
) -> Result<Answer, Refusal> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let request_id = header("x-amz-firehose-request-id").unwrap_or_default();
    let refuse = |status: u16, message: &str, body: hyper::body::Incoming| {
        Err(Box::new((
            answer(status, request_id, Some(message)),
            Some(body),
        )))
    };
    if parts.method != http::Method::POST {
        return refuse(405, "only POST", body);
    }
    let key = header("x-amz-firehose-access-key").unwrap_or_default();
    let expected = shared.settings.access_key.as_bytes();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(key.as_bytes(), expected)) {
        tracing::warn!(source = %shared.ctx.name, "a request with a wrong access key was refused");
        return refuse(401, "wrong access key", body);
    }
    if request_id.is_empty() {
        return refuse(400, "no X-Amz-Firehose-Request-Id", body);
    }
    let max_body = shared.settings.max_body_bytes;
    let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
    if length.is_some_and(|l| l > max_body) {
        return refuse(413, "the request is larger than max_body_bytes", body);
    }
    // Taken in only while there is room: otherwise Firehose is told to back off.
    let Ok(_request) = Arc::clone(&shared.requests).try_acquire_owned() else {
        return refuse(503, "the endpoint is busy; retry later", body);
    };
    let Ok(_bytes) = shared.kib.try_acquire_many(kib(length.unwrap_or(max_body))) else {
        return refuse(503, "the endpoint is busy; retry later", body);
    };
    let timeout = std::time::Duration::from_secs(shared.settings.body_timeout_secs);
    let Ok(collected) = tokio::time::timeout(timeout, Limited::new(body, max_body).collect()).await
    else {
        let message = "the request body did not arrive in time";
        tracing::warn!(source = %shared.ctx.name, "{message} ({} s)", timeout.as_secs());
        return Err(Box::new((answer(408, request_id, Some(message)), None)));
    };
    let body = match collected {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let message = "the request is larger than max_body_bytes";
            return Err(Box::new((answer(413, request_id, Some(message)), None)));
        }
        Err(_) => {
            let message = "the request body could not be read";
            return Err(Box::new((answer(400, request_id, Some(message)), None)));
        }
    };
    shared.ctx.metrics.bytes_in.inc_by(body.len() as u64);
    let batches = match decode(shared, request_id, body).await {
        Ok(batches) => batches,
        Err(e) => return Ok(answer(400, request_id, Some(&e))),
    };
    let mut waits = Vec::with_capacity(batches.len());
    for batch in batches {
        match shared.ctx.submit(batch).await {
            Some(wait) => waits.push(wait),
            None => return Ok(answer(503, request_id, Some("shutting down"))),
        }
    }
    for wait in waits {
        if wait.wait().await != BatchStatus::Delivered {
            return Ok(answer(
                500,
                request_id,
                Some("a destination could not take the records; retry later"),
            ));
        }
    }
    Ok(answer(200, request_id, None))
}

/// The request's records as batches, with `firehose:<request id>` as their source; what
/// cannot be decoded goes to the dead letter.
async fn decode(shared: &Shared, request_id: &str, body: Bytes) -> Result<Vec<FlowBatch>, String> {
    struct Collect<'a> {
        batches: Vec<FlowBatch>,
        dead_letters: &'a dyn DeadLetters,
        counted: prometheus_client::metrics::counter::Counter,
    }
    impl RecordSink for Collect<'_> {
        fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
            self.batches.push(batch);
            Ok(())
        }
        fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
            self.counted.inc();
            self.dead_letters.write(letter);
            Ok(())
        }
    }
    let options = DecodeOptions {
        format: shared.ctx.format.clone(),
        batch_rows: shared.ctx.batch_rows,
        keep_lines: shared.ctx.keep_lines,
        ..DecodeOptions::default()
    };
    let dead_letters = Arc::clone(&shared.ctx.dead_letters);
    let counted = shared.ctx.metrics.dead_letters.clone();
    let source = SourceId::new(format!("firehose:{request_id}"));
    // Decoding is synchronous: off the runtime's workers.
    tokio::task::spawn_blocking(move || {
        let mut collect = Collect {
            batches: Vec::new(),
            dead_letters: dead_letters.as_ref(),
            counted,
        };
        decode_reader(&body[..], source, &options, &mut collect)
            .map(|_| collect.batches)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> FirehoseSource {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let ok = settings("address = \"127.0.0.1:0\"\naccess_key = \"k\"");
        ok.validate().unwrap();
        assert_eq!(ok.max_body_bytes, 64 << 20);
        for (text, needle) in [
            (
                "address = \"127.0.0.1:0\"\naccess_key = \" \"",
                "access_key",
            ),
            (
                "address = \"127.0.0.1:0\"\naccess_key = \"k\"\nmax_bytes_in_flight = 10",
                "max_bytes_in_flight",
            ),
        ] {
            let err = settings(text).validate().unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
