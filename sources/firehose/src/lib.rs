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
//! Every input and connection is bounded (`request.rs`, `connections.rs`): at most
//! `max_requests` requests and `max_bytes_in_flight` bytes of bodies are taken in at once
//! (beyond that the answer is `503` at once, so Firehose backs off instead of this process
//! buffering); what a request decompresses to is bounded; headers must arrive within
//! `header_timeout_secs` (which also closes idle keep-alive connections) and bodies within
//! `body_timeout_secs`; at most `max_connections` connections are open (kept under the
//! process's descriptor limit), the oldest idle one giving way to a new one.
//!
//! Shutdown: the listener is closed, idle connections are closed, requests being
//! answered finish (their batches are delivered during the pipeline's drain) or are
//! refused with 503 if they have not been decoded yet; then the source ends.

mod connections;
mod request;
mod settings;

pub use settings::{FirehoseSource, ServerTls};

pub use request::offline_answer;

use std::sync::Arc;
use std::time::Duration;

use flowlog_component::listen::{next_connection, Throttled};
use flowlog_component::BoxFuture;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use flowlog_source::{CheckOptions, Findings, Source, SourceContext, SourceError, SourceKind};

use crate::connections::{Connections, Slot};
use crate::request::Shared;

impl SourceKind for FirehoseSource {
    fn format(&self) -> Option<&str> {
        self.format.as_deref()
    }

    fn validate(&self) -> Result<(), SourceError> {
        self.limits_hold().map_err(SourceError::Config)
    }

    fn build(&self, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
        if ctx.once {
            return Err(SourceError::Config(
                "an HTTP endpoint has no end: it cannot be part of a finite run (--once)".into(),
            ));
        }
        let tls = self
            .tls
            .as_ref()
            .map(acceptor)
            .transpose()
            .map_err(SourceError::Config)?;
        let listener = self.address.bind().map_err(|e| {
            SourceError::Unavailable(format!("cannot listen on {}: {e}", self.address))
        })?;
        Ok(Box::new(Endpoint {
            settings: self.clone(),
            ctx,
            listener,
            tls,
        }))
    }

    fn check<'a>(&'a self, _: CheckOptions<'a>) -> BoxFuture<'a, Findings> {
        let mut findings = vec![self.certificate()];
        // Whether the address can be listened on (it is free now, or flowlog runs there).
        if let Err(e) = self.address.bind() {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    " (is something, or flowlog itself, listening there already?)"
                }
                _ => "",
            };
            findings.push(Err(SourceError::Unavailable(format!(
                "cannot listen on {}: {e}{hint}",
                self.address
            ))));
        }
        Box::pin(std::future::ready(findings))
    }

    fn check_local(&self) -> BoxFuture<'_, Findings> {
        // Not the port: a running flowlog holds it, and validate is for files about to
        // replace that one's.
        Box::pin(std::future::ready(vec![self.certificate()]))
    }
}

impl FirehoseSource {
    /// Whether the certificate and key load (or that TLS is left to a load balancer).
    fn certificate(&self) -> Result<String, SourceError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match &self.tls {
            Some(tls) => match acceptor(tls) {
                Ok(_) => Ok(format!(
                    "{scheme}://{} (certificate {})",
                    self.address,
                    tls.cert_file.display()
                )),
                Err(e) => Err(SourceError::Config(e)),
            },
            None => Ok(format!(
                "{scheme}://{} (plain HTTP: TLS must end at a load balancer in front)",
                self.address
            )),
        }
    }
}

/// The server's TLS settings from the PEM files.
fn acceptor(tls: &ServerTls) -> Result<tokio_rustls::TlsAcceptor, String> {
    let (chain, key) = flowlog_component::tls::pem_identity(&tls.cert_file, &tls.key_file)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls: {e}"))?;
    // HTTP/1.1 only, which is what Firehose speaks: one request at a time per connection,
    // so the connection bounds are request bounds too.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

struct Endpoint {
    settings: FirehoseSource,
    ctx: SourceContext,
    /// Bound when built, so that an address in use fails the start.
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Source for Endpoint {
    fn run(self: Box<Self>) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(serve(*self))
    }
}

/// Idle connections closed each time accept runs out of descriptors.
const EVICT_ON_EMFILE: usize = 16;

/// Descriptors kept free for everything but connections (files, the sinks' connections,
/// the runtime).
const RESERVED_DESCRIPTORS: usize = 128;

/// `max_connections`, lowered so that connections alone cannot exhaust the process's
/// descriptors (which would make accept fail for everyone).
fn connection_cap(configured: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the one struct it is given.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !known || limit.rlim_cur == libc::RLIM_INFINITY {
        return configured;
    }
    let room = (limit.rlim_cur as usize)
        .saturating_sub(RESERVED_DESCRIPTORS)
        .max(16);
    configured.min(room)
}

async fn serve(endpoint: Endpoint) -> Result<(), SourceError> {
    let Endpoint {
        settings,
        ctx,
        listener,
        tls,
    } = endpoint;
    let name = ctx.name.clone();
    let address = listener
        .local_addr()
        .map_or_else(|_| settings.address.to_string(), |a| a.to_string());
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| SourceError::Unavailable(format!("cannot listen on {address}: {e}")))?;
    let connections = Connections::new(connection_cap(settings.max_connections));
    if connections.max() < settings.max_connections {
        tracing::warn!(source = %name, "max_connections lowered to {} to stay under the descriptor limit (ulimit -n)", connections.max());
    }
    tracing::info!(source = %name, %address, "Firehose endpoint listening");
    let shared = Arc::new(Shared {
        requests: Arc::new(Semaphore::new(settings.max_requests)),
        kib: Arc::new(Semaphore::new(
            request::kib(settings.max_bytes_in_flight) as usize
        )),
        decoding: Arc::new(Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )),
        unauthorized: Throttled::new(Duration::from_secs(60)),
        refused: Throttled::new(Duration::from_secs(10)),
        settings,
        ctx,
    });
    let full = Throttled::new(Duration::from_secs(10));
    let accept_failures = Throttled::new(Duration::from_secs(10));
    let mut open = tokio::task::JoinSet::new();
    let mut accept = || listener.accept();
    loop {
        let next = next_connection(&mut accept, &name, &accept_failures, |e| {
            // Out of descriptors: an idle connection gives its own back.
            if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                // Several at a time: the limit may have been lowered under what is open.
                for _ in 0..EVICT_ON_EMFILE {
                    if !connections.evict_idle() {
                        break;
                    }
                }
            }
        });
        let (stream, _) = tokio::select! {
            accepted = next => accepted,
            _ = shared.ctx.stop.wait() => break,
            // Connections that ended are reaped as they go.
            Some(_) = open.join_next(), if !open.is_empty() => continue,
        };
        let Some(slot) = connections.admit() else {
            full.warn(&name, || {
                format!(
                    "{} connections are open, each answering a request: a new one was closed",
                    connections.max()
                )
            });
            continue;
        };
        open.spawn(connection(Arc::clone(&shared), stream, slot, tls.clone()));
    }
    // Stop accepting; connections close as soon as they are idle (now, for most), and the
    // requests being answered finish.
    drop(listener);
    while open.join_next().await.is_some() {}
    Ok(())
}

/// Serves one connection until the client closes it, it times out, its slot is needed
/// while it is idle, or the source stops (then after the request being answered).
async fn connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    slot: Slot,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let header_timeout = Duration::from_secs(shared.settings.header_timeout_secs);
    match tls {
        Some(tls) => {
            // The handshake is bounded like the headers that follow it, and gives way
            // like an idle connection (to a newcomer at the cap, or to a shutdown).
            let handshake = tokio::time::timeout(header_timeout, tls.accept(stream));
            let stream = tokio::select! {
                shaken = handshake => match shaken {
                    Ok(Ok(stream)) => stream,
                    _ => return,
                },
                _ = slot.evicted() => return,
                _ = shared.ctx.stop.wait() => return,
            };
            serve_on(shared, slot, stream).await
        }
        None => serve_on(shared, slot, stream).await,
    }
}

async fn serve_on<I>(shared: Arc<Shared>, slot: Slot, stream: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = Duration::from_secs(shared.settings.header_timeout_secs);
    let state = slot.state();
    let service = service_fn({
        let shared = Arc::clone(&shared);
        move |request| {
            let shared = Arc::clone(&shared);
            let busy = state.busy();
            async move {
                let answer = request::handle(shared, request).await;
                drop(busy);
                Ok::<_, std::convert::Infallible>(answer)
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = slot.evicted(), if !stopping => {
                if !slot.state().is_busy() {
                    return;
                }
            }
            _ = shared.ctx.stop.wait(), if !stopping => {
                // Idle (or still sending headers): closed now; answering: closed after
                // the answer.
                if !slot.state().is_busy() {
                    return;
                }
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
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
            let err = settings(text).validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
