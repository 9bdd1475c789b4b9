//! The Splunk HTTP Event Collector sink.
//!
//! Records become events ([`events`]): the original flow-log line with sourcetype
//! `aws:cloudwatchlogs:vpcflow` (what the Splunk Add-on for AWS parses) and enrichment as
//! indexed fields, or ECS, OCSF or CIM documents; in `/event` envelopes (time, host,
//! source, sourcetype, index, the record's deterministic id as the indexed field
//! `flowlog_id`) or as lines for `/raw`. Events are gathered into requests of at most
//! `max_bytes` (1 MB by default, Splunk Cloud's limit) or `batch_timeout_secs`, gzipped,
//! and sent over keep-alive connections, `concurrency` at a time.
//!
//! Answers are handled as `protocols.md` says ([`response`]): 413 splits a request in
//! halves down to single events; `invalid-event-number` dead-letters that event and
//! re-sends only the rest; busy and throttled answers (and dropped connections) are
//! retried with backoff, honouring `Retry-After`; 401/403 stop the sink with a clear
//! error; capacity warnings are logged and counted. With indexer acknowledgement, a
//! request counts as delivered only when `/ack` says `true`; one not acknowledged within
//! `ack_timeout_secs` is sent again (a possible duplicate, which its `flowlog_id` shows).

mod acks;
pub mod config;
mod events;
mod response;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use flowlog_sink::{
    Backoff, BoxFuture, ComponentMetrics, DeadLetter, DeadLetters, HttpClient, RetryPolicy, Sink,
    SinkError, SinkInput,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

pub use config::{Compression, Endpoint, Format, HecConfig, TimeField};

use crate::acks::Acker;
use crate::config::secs;
use crate::events::{EventWriter, Origin, Piece, PieceBuilder};
use crate::response::{classify, Outcome};

/// A configured HEC sink.
pub struct HecSink {
    name: String,
    config: HecConfig,
    shared: Arc<Shared>,
}

/// What every request task needs.
struct Shared {
    name: String,
    client: HttpClient,
    authorization: http::HeaderValue,
    channel: String,
    send_url: String,
    ack_url: String,
    health_url: String,
    event_url: String,
    gzip: bool,
    policy: RetryPolicy,
    wire: Semaphore,
    metrics: ComponentMetrics,
    dead_letters: Arc<dyn DeadLetters>,
}

impl HecSink {
    pub fn new(
        name: &str,
        config: HecConfig,
        metrics: ComponentMetrics,
        dead_letters: Arc<dyn DeadLetters>,
    ) -> Result<Self, SinkError> {
        config.validate()?;
        let token = config.resolve_token()?;
        let mut authorization = http::HeaderValue::try_from(format!("Splunk {token}"))
            .map_err(|_| SinkError::Config("the HEC token is not a valid header value".into()))?;
        authorization.set_sensitive(true);
        let client = HttpClient::new(&config.tls, secs(config.request_timeout_secs))?;
        let base = config.endpoint.trim_end_matches('/').to_string();
        let channel = uuid::Uuid::new_v4().to_string();
        let send_url = match config.endpoint_kind {
            Endpoint::Event => format!("{base}/services/collector/event"),
            Endpoint::Raw => {
                let mut url = format!("{base}/services/collector/raw?channel={channel}");
                let params = [
                    ("sourcetype", Some(config.sourcetype())),
                    ("index", config.index.as_deref()),
                    ("host", config.host.as_deref()),
                    ("source", config.source.as_deref()),
                ];
                for (key, value) in params {
                    if let Some(value) = value {
                        let value = percent_encoding::utf8_percent_encode(
                            value,
                            percent_encoding::NON_ALPHANUMERIC,
                        );
                        url.push_str(&format!("&{key}={value}"));
                    }
                }
                url
            }
        };
        let shared = Arc::new(Shared {
            name: name.to_string(),
            client,
            authorization,
            ack_url: format!("{base}/services/collector/ack?channel={channel}"),
            health_url: format!("{base}/services/collector/health"),
            event_url: format!("{base}/services/collector/event"),
            channel,
            send_url,
            gzip: config.compression == Compression::Gzip,
            policy: config.retry_policy(),
            wire: Semaphore::new(config.concurrency),
            metrics,
            dead_letters,
        });
        Ok(Self {
            name: name.to_string(),
            config,
            shared,
        })
    }
}

impl Sink for HecSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(
        self: Box<Self>,
        input: mpsc::Receiver<SinkInput>,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(self.deliver_all(input))
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(self.check_receiver())
    }
}

impl HecSink {
    async fn deliver_all(self, mut input: mpsc::Receiver<SinkInput>) -> Result<(), SinkError> {
        let config = &self.config;
        let shared = &self.shared;
        let acker = config.indexer_acknowledgement.then(|| {
            Arc::new(Acker::start(
                Arc::clone(shared),
                secs(config.ack_poll_interval_secs),
                secs(config.ack_timeout_secs),
            ))
        });
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        let mut tasks: JoinSet<Result<(), SinkError>> = JoinSet::new();
        let mut writer = EventWriter::new(config)?;
        let mut builder = PieceBuilder::new(config.max_bytes);
        let batch_timeout = secs(config.batch_timeout_secs);
        let mut deadline: Option<tokio::time::Instant> = None;

        // Starts a request task once a place is free: waiting here is the backpressure
        // that holds the pipeline (and so the sources) while the receiver is slow.
        let dispatch = |piece: Piece, tasks: &mut JoinSet<_>, permit: OwnedSemaphorePermit| {
            let shared = Arc::clone(shared);
            let acker = acker.clone();
            tasks.spawn(async move { deliver(shared, acker, piece, permit).await });
        };

        loop {
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    settle(done)?;
                }
                _ = timer => {
                    deadline = None;
                    if !builder.is_empty() {
                        let permit = acquire(&in_flight, &mut tasks).await?;
                        dispatch(builder.take(), &mut tasks, permit);
                    }
                }
                message = input.recv() => {
                    let Some(SinkInput { batch, ack }) = message else { break };
                    let rows = batch.num_rows();
                    shared.metrics.records_in.inc_by(rows as u64);
                    let mut events = writer.prepare(&batch)?;
                    let mut shared_here = false;
                    for row in 0..rows {
                        // Written where it will be sent from; only an event that overflows
                        // its piece is copied, into the next one.
                        let start = builder.data().len();
                        events.write(row, builder.data());
                        if builder.overflows(start) {
                            let event = builder.data().split_off(start);
                            let permit = acquire(&in_flight, &mut tasks).await?;
                            dispatch(builder.take(), &mut tasks, permit);
                            deadline = None;
                            shared_here = false;
                            builder.data().extend_from_slice(&event);
                        }
                        if !shared_here {
                            builder.share(&ack);
                            shared_here = true;
                        }
                        let origin = Origin { source: batch.source.clone(), line: batch.line_numbers[row] };
                        builder.commit(origin);
                    }
                    // The batch's events are placed; the pieces hold its shares now.
                    ack.confirm();
                    if deadline.is_none() && !builder.is_empty() {
                        deadline = Some(tokio::time::Instant::now() + batch_timeout);
                    }
                }
            }
        }
        if !builder.is_empty() {
            let permit = acquire(&in_flight, &mut tasks).await?;
            dispatch(builder.take(), &mut tasks, permit);
        }
        while let Some(done) = tasks.join_next().await {
            settle(done)?;
        }
        Ok(())
    }

    async fn check_receiver(&self) -> Result<String, SinkError> {
        let shared = &self.shared;
        let unreachable = |message: String| SinkError::Unreachable {
            sink: shared.name.clone(),
            message,
        };
        let health = http::Request::get(&shared.health_url)
            .body(Bytes::new())
            .expect("a valid URL was checked");
        let response = shared
            .client
            .send(health)
            .await
            .map_err(|e| unreachable(format!("{}: {e}", shared.health_url)))?;
        if response.status != 200 {
            return Err(unreachable(format!(
                "{} answered {}: {}",
                shared.health_url,
                response.status,
                String::from_utf8_lossy(&response.body).trim()
            )));
        }
        // An empty request: a good token gets "No data" (400, code 5), a bad one 401/403.
        let probe = shared.request(&shared.event_url, Bytes::new(), false);
        let response = shared
            .client
            .send(probe)
            .await
            .map_err(|e| unreachable(format!("{}: {e}", shared.event_url)))?;
        match classify(&response) {
            Outcome::Fatal { status, reason } => Err(SinkError::Rejected {
                sink: shared.name.clone(),
                status,
                message: reason,
            }),
            _ if response.status == 400 || response.status == 200 => Ok(format!(
                "collector healthy, token accepted, channel {}",
                shared.channel
            )),
            _ => Err(unreachable(format!(
                "{} answered {}: {}",
                shared.event_url,
                response.status,
                String::from_utf8_lossy(&response.body).trim()
            ))),
        }
    }
}

/// Waits for a free place among the requests in flight, noticing a task that failed.
async fn acquire(
    in_flight: &Arc<Semaphore>,
    tasks: &mut JoinSet<Result<(), SinkError>>,
) -> Result<OwnedSemaphorePermit, SinkError> {
    loop {
        tokio::select! {
            permit = Arc::clone(in_flight).acquire_owned() => {
                return Ok(permit.expect("the semaphore is never closed"));
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => settle(done)?,
        }
    }
}

fn settle(done: Result<Result<(), SinkError>, tokio::task::JoinError>) -> Result<(), SinkError> {
    match done {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Ok(()),
    }
}

impl Shared {
    fn request(&self, url: &str, body: Bytes, gzip: bool) -> http::Request<Bytes> {
        let mut request = http::Request::post(url)
            .header(http::header::AUTHORIZATION, self.authorization.clone())
            .header("X-Splunk-Request-Channel", &self.channel)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("flowlog/", env!("CARGO_PKG_VERSION")),
            );
        if gzip {
            request = request.header(http::header::CONTENT_ENCODING, "gzip");
        }
        request.body(body).expect("headers are valid")
    }

    fn body(&self, piece: &Piece) -> Bytes {
        if self.gzip {
            flowlog_sink::gzip::gzip(&piece.data)
        } else {
            piece.data.clone()
        }
    }

    fn dead_letter(&self, piece: Piece, reason: &str) {
        self.metrics.dead_letters.inc_by(piece.len() as u64);
        for (i, origin) in piece.origins.iter().enumerate() {
            let raw = piece.event(i).trim_ascii_end();
            let reason = format!("sink {}: {reason}", self.name);
            self.dead_letters
                .write(DeadLetter::new(&origin.source, origin.line, reason, raw));
        }
        piece.confirm();
    }

    fn delivered(&self, piece: Piece, sent: usize) {
        self.metrics.records_out.inc_by(piece.len() as u64);
        self.metrics.bytes_out.inc_by(sent as u64);
        piece.confirm();
    }
}

/// Delivers one piece: every event ends up indexed or dead-lettered, or the task fails
/// (fatal answer) and the piece's acknowledgement shares fail with it.
async fn deliver(
    shared: Arc<Shared>,
    acker: Option<Arc<Acker>>,
    piece: Piece,
    _permit: OwnedSemaphorePermit,
) -> Result<(), SinkError> {
    let started = Instant::now();
    shared.metrics.in_flight.inc();
    let _in_flight = scopeguard(&shared.metrics);
    let mut backoff = Backoff::new(shared.policy);
    let mut work = vec![piece];
    while let Some(mut piece) = work.pop() {
        let mut body = shared.body(&piece);
        loop {
            if piece.len() == 0 {
                piece.confirm();
                break;
            }
            let request = shared.request(&shared.send_url, body.clone(), shared.gzip);
            let answer = {
                let _wire = shared.wire.acquire().await.expect("never closed");
                shared.client.send(request).await
            };
            let response = match answer {
                Ok(response) => response,
                Err(e) => {
                    shared.metrics.retries.inc();
                    tracing::warn!(sink = %shared.name, "request failed, retrying: {e}");
                    backoff.wait(None).await;
                    continue;
                }
            };
            match classify(&response) {
                Outcome::Accepted { ack_id, warning } => {
                    if let Some(warning) = warning {
                        shared.metrics.capacity_warnings.inc();
                        tracing::warn!(sink = %shared.name, "{warning}");
                    }
                    if let (Some(id), Some(acker)) = (ack_id, &acker) {
                        let asked = Instant::now();
                        if !acker.wait(id).await {
                            shared.metrics.retries.inc();
                            tracing::warn!(sink = %shared.name, ack_id = id,
                                "no indexer acknowledgement in time; sending the request again");
                            continue;
                        }
                        shared
                            .metrics
                            .ack_wait_seconds
                            .observe(asked.elapsed().as_secs_f64());
                    }
                    shared.delivered(piece, body.len());
                    break;
                }
                Outcome::TooLarge if piece.len() == 1 => {
                    shared.dead_letter(
                        piece,
                        "HEC 413: the event is larger than the collector accepts",
                    );
                    break;
                }
                Outcome::TooLarge => {
                    let half = piece.len() / 2;
                    tracing::debug!(sink = %shared.name, events = piece.len(), "413: splitting the request");
                    let (first, second) = piece.split(half);
                    work.push(second);
                    work.push(first);
                    break;
                }
                Outcome::BadEvent { index, reason } if index < piece.len() => {
                    let (indexed, rest) = piece.split(index);
                    shared.delivered(indexed, 0);
                    let (bad, rest) = rest.split(1);
                    tracing::warn!(sink = %shared.name, "event refused, dead-lettered: {reason}");
                    shared.dead_letter(bad, &reason);
                    piece = rest;
                    body = shared.body(&piece);
                }
                Outcome::BadEvent { reason, .. } | Outcome::Permanent { reason } => {
                    tracing::warn!(sink = %shared.name, events = piece.len(),
                        "request refused, dead-lettered: {reason}");
                    shared.dead_letter(piece, &reason);
                    break;
                }
                Outcome::Retry { reason, after } => {
                    shared.metrics.retries.inc();
                    tracing::debug!(sink = %shared.name, "retrying: {reason}");
                    backoff.wait(after).await;
                }
                Outcome::Fatal { status, reason } => {
                    return Err(SinkError::Rejected {
                        sink: shared.name.clone(),
                        status,
                        message: reason,
                    });
                }
            }
        }
    }
    shared
        .metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(())
}

/// Lowers the in-flight gauge when a request task ends, however it ends.
fn scopeguard(metrics: &ComponentMetrics) -> impl Drop + '_ {
    struct Guard<'a>(&'a ComponentMetrics);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            self.0.in_flight.dec();
        }
    }
    Guard(metrics)
}
