//! The request machinery every HTTP sink shares.
//!
//! A sink supplies two things:
//! - an [`EventWriter`]: how a batch's rows become events (bytes written straight into
//!   the request buffer: a HEC envelope, an `_bulk` action and document...);
//! - a [`Protocol`]: how a body becomes a request, what an answer means for it
//!   ([`Verdict`], per request and, where the receiver says so, per event), and what
//!   "delivered" waits for after an accepted answer (HEC indexer acknowledgement).
//!
//! [`Requests::run`] does the rest: it cuts events into pieces of at most `max_bytes` (or
//! what `batch_timeout` gathered), each holding a share of the acknowledgement of every
//! batch it has events of; compresses each body; starts a task per piece once one of
//! `max_in_flight` places is free (that wait is the backpressure that holds the sources);
//! bounds requests on the wire to `concurrency`; retries transient failures with backoff
//! (full jitter, `Retry-After` honoured); halves a piece on 413 down to one event, which
//! is then dead-lettered; dead-letters events the receiver refuses for good with its
//! reason; re-sends only the events an answer left undone; and stops the sink on a fatal
//! answer (credentials refused). A piece's shares are confirmed only once every event in
//! it is delivered or dead-lettered, so nothing unconfirmed can look delivered.

mod piece;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowlog_model::{DeadLetter, FlowBatch};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

pub use piece::{Origin, Piece, PieceBuilder};

use crate::http::{HttpClient, Response, TransportError};
use crate::{
    Backoff, BoxFuture, ComponentMetrics, DeadLetterError, DeadLetters, RetryPolicy, SinkError,
    SinkInput,
};

/// Writes a batch's rows as events.
pub trait EventWriter: Send + 'static {
    /// Readies `batch` (encodes documents, builds per-batch headers); the returned writer
    /// then appends row after row to a request's buffer.
    fn prepare<'a>(&'a mut self, batch: &'a FlowBatch)
        -> Result<Box<dyn WriteRow + 'a>, SinkError>;
}

/// The rows of one prepared batch.
pub trait WriteRow: Send {
    /// Appends the event of `row` (rows in order, each once) to `out`.
    fn write(&mut self, row: usize, out: &mut Vec<u8>);

    /// The group of `row`'s event (asked before it is written): events of different
    /// groups never share a request, for a receiver whose request headers speak for every
    /// event in it (Sumo Logic's metadata). [`Protocol::request`] is given the group.
    /// `None`, the default: one group.
    fn group(&mut self, row: usize) -> Option<Bytes> {
        let _ = row;
        None
    }
}

/// Most groups gathering events at once: past it, every open group's piece is sent, so
/// memory stays about `MAX_OPEN_GROUPS * max_bytes` however many groups the events form.
const MAX_OPEN_GROUPS: usize = 16;

/// A receiver's wire protocol.
pub trait Protocol: Send + Sync + 'static {
    /// The body (before compression) for the events of `piece`, when it is not their
    /// concatenation (OTLP puts them in an export request). `None`: the concatenation.
    fn frame(&self, piece: &Piece) -> Option<Bytes> {
        let _ = piece;
        None
    }

    /// The text a refused event is dead-lettered with (an encoding that is not text is
    /// made readable here).
    fn dead_letter_text<'a>(&self, event: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        std::borrow::Cow::Borrowed(event.trim_ascii_end())
    }

    /// The request carrying `body` (compressed when `gzip`), of events in `group`.
    fn request(&self, body: Bytes, gzip: bool, group: Option<&Bytes>) -> http::Request<Bytes>;

    /// What `response` means for the request of `piece`'s events.
    fn classify(&self, response: &Response, piece: &Piece) -> Verdict;

    /// Completes a request before it is sent, for credentials that take a wait (a
    /// signature over the body with credentials that are fetched and refreshed). An
    /// error is retried like a request that found no server.
    fn authorize<'a>(
        &'a self,
        request: &'a mut http::Request<Bytes>,
    ) -> BoxFuture<'a, Result<(), String>> {
        let _ = request;
        Box::pin(async { Ok(()) })
    }

    /// After an answer with a `receipt` (a HEC ack id): true once the receiver confirms
    /// the data is safe, false when it did not in time (the piece is sent again).
    fn confirm(&self, receipt: u64) -> BoxFuture<'_, bool> {
        let _ = receipt;
        Box::pin(async { true })
    }

    /// After each attempt: whether the node the request went to (`uri`) answered
    /// usefully (false: no answer, or a whole-request failure to retry), for a protocol
    /// that spreads requests over several nodes and skips failing ones for a while.
    fn attempted(&self, uri: &http::Uri, healthy: bool) {
        let _ = (uri, healthy);
    }
}

/// What an answer means for the request that got it.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Every event accepted; with a receipt, delivered once [`Protocol::confirm`] says so.
    Delivered {
        receipt: Option<u64>,
        /// Accepted, but the receiver warns (near capacity): logged here, counted by the
        /// protocol that knows what its warnings are.
        warning: Option<String>,
    },
    /// Over the receiver's size limit: halve the piece.
    TooLarge,
    /// The receiver refused the request for something in it without saying which event:
    /// halve the piece, down to the event, which is dead-lettered with `reason`.
    Isolate { reason: String },
    /// The whole request failed transiently: wait, then send it again.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The answer speaks of each event, in order (one verdict per event).
    Events(Vec<EventVerdict>),
    /// Accepted, but the receiver dropped `rejected` of the events for good without
    /// saying which (an OTLP partial success): counted and logged, not retried.
    Partial { rejected: u64, message: String },
    /// The answer cannot be right (it does not say what became of the events, or says
    /// more were refused than were sent): nothing is counted delivered, the request is
    /// sent again after a backoff, and the answer is logged and counted as a protocol
    /// error.
    Invalid { reason: String },
    /// The whole request is refused for good: dead-letter every event.
    Refused { reason: String },
    /// The credentials or endpoint are wrong: the sink stops.
    Fatal { status: u16, reason: String },
}

/// What an answer says of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventVerdict {
    Delivered,
    /// Refused transiently (throttled, shard busy): send it again after a backoff.
    Retry,
    /// Not looked at (the receiver stopped at an earlier event): send it again at once.
    Unprocessed,
    /// Refused for good: dead-letter it with this reason.
    Refused(String),
}

/// How requests are cut, compressed and bounded.
#[derive(Debug, Clone)]
pub struct RequestSettings {
    /// Most bytes of events in one request (before compression).
    pub max_bytes: usize,
    /// How long a partly filled request waits for more events.
    pub batch_timeout: Duration,
    pub gzip: bool,
    /// Requests on the wire at once.
    pub concurrency: usize,
    /// Requests started and not yet settled (on the wire, backing off, or waiting for a
    /// receipt): what bounds the sink's memory, about `max_in_flight * max_bytes`.
    pub max_in_flight: usize,
    pub retry: RetryPolicy,
}

/// One sink's request machinery.
pub struct Requests<P> {
    shared: Arc<Shared<P>>,
    settings: RequestSettings,
}

struct Shared<P> {
    name: String,
    protocol: P,
    client: HttpClient,
    gzip: bool,
    retry: RetryPolicy,
    wire: Semaphore,
    metrics: ComponentMetrics,
    dead_letters: Arc<dyn DeadLetters>,
}

impl<P: Protocol> Requests<P> {
    pub fn new(
        name: &str,
        protocol: P,
        client: HttpClient,
        settings: RequestSettings,
        metrics: ComponentMetrics,
        dead_letters: Arc<dyn DeadLetters>,
    ) -> Self {
        let shared = Arc::new(Shared {
            name: name.to_string(),
            protocol,
            client,
            gzip: settings.gzip,
            retry: settings.retry,
            wire: Semaphore::new(settings.concurrency.max(1)),
            metrics,
            dead_letters,
        });
        Self { shared, settings }
    }

    /// Delivers batches until `input` closes and every piece is settled. An error means
    /// the sink cannot go on (a fatal answer); the shares it held fail.
    pub async fn run(
        self,
        mut writer: impl EventWriter,
        mut input: mpsc::Receiver<SinkInput>,
    ) -> Result<(), SinkError> {
        let shared = &self.shared;
        let in_flight = Arc::new(Semaphore::new(self.settings.max_in_flight.max(1)));
        let mut tasks: JoinSet<Result<(), SinkError>> = JoinSet::new();
        let mut open = Open::new(self.settings.max_bytes);
        let batch_timeout = self.settings.batch_timeout;
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut batches = 0u64;

        let dispatch = |piece: Piece, tasks: &mut JoinSet<_>, permit: OwnedSemaphorePermit| {
            let shared = Arc::clone(shared);
            tasks.spawn(async move { deliver(shared, piece, permit).await });
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
                    for piece in open.take_all() {
                        let permit = acquire(&in_flight, &mut tasks).await?;
                        dispatch(piece, &mut tasks, permit);
                    }
                }
                message = input.recv() => {
                    let Some(SinkInput { batch, ack }) = message else { break };
                    let rows = batch.num_rows();
                    batches += 1;
                    shared.metrics.records_in.inc_by(rows as u64);
                    let mut events = writer.prepare(&batch)?;
                    for row in 0..rows {
                        let group = events.group(row);
                        if group.is_some() && !open.has(&group) && open.is_full() {
                            for piece in open.take_groups() {
                                let permit = acquire(&in_flight, &mut tasks).await?;
                                dispatch(piece, &mut tasks, permit);
                            }
                        }
                        let builder = open.builder(group);
                        // Written where it will be sent from; only an event that overflows
                        // its piece is copied, into the next one.
                        let start = builder.data().len();
                        events.write(row, builder.data());
                        if builder.overflows(start) {
                            let event = builder.data().split_off(start);
                            // Waiting for a place here is the backpressure.
                            let permit = acquire(&in_flight, &mut tasks).await?;
                            dispatch(builder.take(), &mut tasks, permit);
                            builder.data().extend_from_slice(&event);
                        }
                        builder.share_once(&ack, batches);
                        let origin = Origin { source: batch.source.clone(), line: batch.line_numbers[row] };
                        builder.commit(origin);
                    }
                    // The batch's events are placed; the pieces hold its shares now.
                    ack.confirm();
                    if deadline.is_none() && !open.is_empty() {
                        deadline = Some(tokio::time::Instant::now() + batch_timeout);
                    }
                }
            }
        }
        for piece in open.take_all() {
            let permit = acquire(&in_flight, &mut tasks).await?;
            dispatch(piece, &mut tasks, permit);
        }
        while let Some(done) = tasks.join_next().await {
            settle(done)?;
        }
        Ok(())
    }
}

/// The pieces being gathered: one for events without a group, one per open group.
struct Open {
    max_bytes: usize,
    ungrouped: PieceBuilder,
    groups: std::collections::HashMap<Bytes, PieceBuilder>,
}

impl Open {
    fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            ungrouped: PieceBuilder::new(max_bytes),
            groups: std::collections::HashMap::new(),
        }
    }

    fn has(&self, group: &Option<Bytes>) -> bool {
        group.as_ref().is_none_or(|g| self.groups.contains_key(g))
    }

    fn is_full(&self) -> bool {
        self.groups.len() >= MAX_OPEN_GROUPS
    }

    fn is_empty(&self) -> bool {
        self.ungrouped.is_empty() && self.groups.values().all(PieceBuilder::is_empty)
    }

    fn builder(&mut self, group: Option<Bytes>) -> &mut PieceBuilder {
        match group {
            None => &mut self.ungrouped,
            Some(group) => {
                let max_bytes = self.max_bytes;
                self.groups
                    .entry(group)
                    .or_insert_with_key(|g| PieceBuilder::for_group(max_bytes, Some(g.clone())))
            }
        }
    }

    /// Every grouped piece that holds events; the groups are closed (their buffers freed).
    fn take_groups(&mut self) -> Vec<Piece> {
        self.groups
            .drain()
            .filter(|(_, b)| !b.is_empty())
            .map(|(_, mut b)| b.take())
            .collect()
    }

    /// Every piece that holds events.
    fn take_all(&mut self) -> Vec<Piece> {
        let mut pieces = self.take_groups();
        if !self.ungrouped.is_empty() {
            pieces.push(self.ungrouped.take());
        }
        pieces
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

impl<P: Protocol> Shared<P> {
    fn body(&self, piece: &Piece) -> Bytes {
        let framed = self.protocol.frame(piece);
        let data = framed.as_ref().unwrap_or(&piece.data);
        if self.gzip {
            crate::gzip::gzip(data)
        } else {
            data.clone()
        }
    }

    fn dead_letter_event(
        &self,
        piece: &Piece,
        i: usize,
        reason: &str,
    ) -> Result<(), DeadLetterError> {
        let origin = &piece.origins[i];
        let raw = self.protocol.dead_letter_text(piece.event(i));
        let reason = format!("sink {}: {reason}", self.name);
        self.dead_letters
            .write(DeadLetter::new(&origin.source, origin.line, reason, &raw))?;
        self.metrics.dead_letters.inc();
        Ok(())
    }

    /// Dead-letters every event of `piece`, which is then settled; an error means the
    /// dead letter could not keep them (the piece is sent again after a backoff).
    fn dead_letter(&self, piece: &Piece, reason: &str) -> Result<(), DeadLetterError> {
        (0..piece.len()).try_for_each(|i| self.dead_letter_event(piece, i, reason))
    }

    fn delivered(&self, piece: Piece, sent: usize) {
        self.metrics.records_out.inc_by(piece.len() as u64);
        self.metrics.bytes_out.inc_by(sent as u64);
        piece.confirm();
    }

    /// A piece refused for one of its events, unnamed: its halves are sent one after the
    /// other, and a lone event is dead-lettered with `reason`.
    fn bisect(&self, piece: Piece, reason: &str, why: &str) -> Next {
        if piece.len() > 1 {
            tracing::debug!(sink = %self.name, events = piece.len(), "{why}: splitting the request");
            let half = piece.len() / 2;
            let (first, second) = piece.split(half);
            return Next::Split(first, second);
        }
        match self.dead_letter(&piece, reason) {
            Ok(()) => {
                tracing::warn!(sink = %self.name, "an event refused, dead-lettered: {reason}");
                piece.confirm();
                Next::Settled
            }
            Err(e) => {
                tracing::error!(sink = %self.name, "{e}; sending the event again later");
                Next::Resend {
                    piece,
                    pause: Pause::Backoff(None),
                }
            }
        }
    }

    /// Settles the events an answer speaks of one by one; returns what is left to send
    /// and whether to back off first.
    fn per_event(&self, piece: Piece, verdicts: &[EventVerdict]) -> (Piece, bool) {
        let mut delivered = 0u64;
        let mut backoff = false;
        let mut keep = vec![false; piece.len()];
        let mut refused: Option<(usize, &str)> = None;
        for (i, verdict) in verdicts.iter().enumerate().take(piece.len()) {
            match verdict {
                EventVerdict::Delivered => delivered += 1,
                EventVerdict::Refused(reason) => match self.dead_letter_event(&piece, i, reason) {
                    Ok(()) => {
                        let (count, _) = refused.get_or_insert((0, reason));
                        *count += 1;
                    }
                    Err(e) => {
                        // Not kept, so not handled: sent again (and refused again) later.
                        tracing::error!(sink = %self.name, "{e}");
                        backoff = true;
                        keep[i] = true;
                    }
                },
                EventVerdict::Retry => {
                    backoff = true;
                    keep[i] = true;
                }
                EventVerdict::Unprocessed => keep[i] = true,
            }
        }
        // An answer that speaks of fewer events than were sent leaves the rest undone.
        for k in keep.iter_mut().skip(verdicts.len()) {
            *k = true;
        }
        // One line per answer, not per event: a mapping error can refuse every event of
        // a request, and the dead letter has each one with its reason.
        if let Some((count, first)) = refused {
            tracing::warn!(sink = %self.name, "{count} event(s) refused, dead-lettered; the first: {first}");
        }
        self.metrics.records_out.inc_by(delivered);
        (piece.select(&keep), backoff)
    }
}

/// Delivers one piece: every event ends up delivered or dead-lettered, or the task fails
/// (fatal answer) and the piece's acknowledgement shares fail with it.
async fn deliver<P: Protocol>(
    shared: Arc<Shared<P>>,
    piece: Piece,
    _permit: OwnedSemaphorePermit,
) -> Result<(), SinkError> {
    let started = Instant::now();
    shared.metrics.in_flight.inc();
    let _in_flight = InFlight(&shared.metrics);
    let mut backoff = Backoff::new(shared.retry);
    // Halves of a piece too large for the receiver wait here, the first on top.
    let mut work = vec![piece];
    while let Some(piece) = work.pop() {
        if let Some((first, second)) = shared.settle(piece, &mut backoff).await? {
            work.push(second);
            work.push(first);
        }
    }
    shared
        .metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(())
}

/// What is left to do with a piece after an answer.
enum Next {
    /// Every event is delivered or dead-lettered.
    Settled,
    /// Too large for the receiver: its halves are sent one after the other.
    Split(Piece, Piece),
    /// Send the same request again, after `pause`.
    Resend { piece: Piece, pause: Pause },
    /// Some events are settled; send a request of the others, after `pause`.
    Rest { piece: Piece, pause: Pause },
}

/// How long to wait before the next attempt.
enum Pause {
    Now,
    /// The next step of the backoff, or what the receiver asked for (`Retry-After`).
    Backoff(Option<Duration>),
}

impl<P: Protocol> Shared<P> {
    /// Sends `piece` until every event in it is settled (`None`), or until it turns out too
    /// large and must go as two halves (`Some`). An error means the sink cannot go on.
    async fn settle(
        &self,
        mut piece: Piece,
        backoff: &mut Backoff,
    ) -> Result<Option<(Piece, Piece)>, SinkError> {
        let mut body = self.body(&piece);
        loop {
            if piece.is_empty() {
                piece.confirm();
                return Ok(None);
            }
            let Some((response, verdict)) = self.attempt(&body, &piece, backoff).await else {
                continue;
            };
            let pause = match self.act(verdict, piece, &response, body.len()).await? {
                Next::Settled => return Ok(None),
                Next::Split(first, second) => return Ok(Some((first, second))),
                Next::Resend { piece: same, pause } => {
                    piece = same;
                    pause
                }
                Next::Rest { piece: rest, pause } => {
                    if rest.is_empty() {
                        rest.confirm();
                        return Ok(None);
                    }
                    piece = rest;
                    body = self.body(&piece);
                    pause
                }
            };
            if let Pause::Backoff(after) = pause {
                backoff.wait(after).await;
            }
        }
    }

    /// One attempt at sending `body` (`events` events): the answer and what it means, or
    /// `None` when no answer came (counted, logged and waited out).
    async fn attempt(
        &self,
        body: &Bytes,
        piece: &Piece,
        backoff: &mut Backoff,
    ) -> Option<(Response, Verdict)> {
        let mut request = self
            .protocol
            .request(body.clone(), self.gzip, piece.group.as_ref());
        if let Err(e) = self.protocol.authorize(&mut request).await {
            self.metrics.retries.inc();
            self.metrics.error("authorize", &e);
            tracing::warn!(sink = %self.name, "could not authorize the request, retrying: {e}");
            backoff.wait(None).await;
            return None;
        }
        let uri = request.uri().clone();
        let answer = {
            let _wire = self.wire.acquire().await.expect("never closed");
            self.client.send(request).await
        };
        let response = match answer {
            Ok(response) => response,
            Err(e @ TransportError::Redirected { .. }) => {
                self.protocol.attempted(&uri, false);
                self.metrics.protocol_errors.inc();
                // Scheme and authority only: a path can be a credential (Sumo Logic's).
                let at = crate::http::origin_of(&uri);
                self.metrics.error("protocol", format!("{at} {e}"));
                tracing::error!(sink = %self.name, "{at} {e}; retrying");
                backoff.wait(None).await;
                return None;
            }
            Err(e) => {
                self.protocol.attempted(&uri, false);
                self.metrics.retries.inc();
                self.metrics.error("request", &e);
                tracing::warn!(sink = %self.name, "request failed, retrying: {e}");
                backoff.wait(None).await;
                return None;
            }
        };
        let verdict = self.protocol.classify(&response, piece);
        // Whether the receiver is doing its part, for /health.
        match &verdict {
            Verdict::Retry { reason, .. } => self.metrics.error("request", reason),
            Verdict::Invalid { reason } => self.metrics.error("protocol", reason),
            _ => self.metrics.recovered(),
        }
        self.protocol.attempted(
            &uri,
            !matches!(verdict, Verdict::Retry { .. } | Verdict::Invalid { .. }),
        );
        Some((response, verdict))
    }

    /// Acts on what an answer to `piece` (sent as `sent` bytes) means.
    async fn act(
        &self,
        verdict: Verdict,
        piece: Piece,
        response: &Response,
        sent: usize,
    ) -> Result<Next, SinkError> {
        let again = |piece, pause| Ok(Next::Resend { piece, pause });
        match verdict {
            Verdict::Delivered { receipt, warning } => {
                if let Some(warning) = warning {
                    // (Counted by the protocol, whose warnings they are.)
                    tracing::warn!(sink = %self.name, "{warning}");
                }
                if let Some(receipt) = receipt {
                    let asked = Instant::now();
                    if !self.protocol.confirm(receipt).await {
                        self.metrics.retries.inc();
                        tracing::warn!(sink = %self.name, receipt,
                            "not confirmed by the receiver in time; sending the request again");
                        return again(piece, Pause::Now);
                    }
                    self.metrics
                        .ack_wait_seconds
                        .observe(asked.elapsed().as_secs_f64());
                }
                self.delivered(piece, sent);
                Ok(Next::Settled)
            }
            Verdict::Partial { rejected, message } => {
                let rejected = rejected.min(piece.len() as u64);
                self.metrics.records_rejected.inc_by(rejected);
                tracing::warn!(sink = %self.name, "the receiver dropped {rejected} of {} records (a partial success, not retried): {message}", piece.len());
                self.metrics
                    .records_out
                    .inc_by(piece.len() as u64 - rejected);
                self.metrics.bytes_out.inc_by(sent as u64);
                piece.confirm();
                Ok(Next::Settled)
            }
            Verdict::TooLarge => {
                let reason = format!(
                    "HTTP {}: the event is larger than the receiver accepts",
                    response.status
                );
                Ok(self.bisect(piece, &reason, "too large"))
            }
            Verdict::Isolate { reason } => Ok(self.bisect(piece, &reason, &reason)),
            Verdict::Events(verdicts) => {
                let (rest, wait) = self.per_event(piece, &verdicts);
                let pause = if wait && !rest.is_empty() {
                    self.metrics.retries.inc();
                    Pause::Backoff(None)
                } else {
                    Pause::Now
                };
                Ok(Next::Rest { piece: rest, pause })
            }
            Verdict::Refused { reason } => {
                let events = piece.len();
                match self.dead_letter(&piece, &reason) {
                    Ok(()) => {
                        tracing::warn!(sink = %self.name, events,
                            "request refused, dead-lettered: {reason}");
                        piece.confirm();
                        Ok(Next::Settled)
                    }
                    Err(e) => {
                        tracing::error!(sink = %self.name, "request refused: {reason}; {e}; sending it again later");
                        again(piece, Pause::Backoff(None))
                    }
                }
            }
            Verdict::Invalid { reason } => {
                self.metrics.protocol_errors.inc();
                tracing::warn!(sink = %self.name, events = piece.len(),
                    "an answer that cannot be right, sending the request again: {reason}");
                again(piece, Pause::Backoff(None))
            }
            Verdict::Retry { reason, after } => {
                self.metrics.retries.inc();
                tracing::debug!(sink = %self.name, "retrying: {reason}");
                again(piece, Pause::Backoff(after))
            }
            Verdict::Fatal { status, reason } => Err(SinkError::Rejected {
                sink: self.name.clone(),
                status,
                message: reason,
            }),
        }
    }
}

/// Lowers the in-flight gauge when a request task ends, however it ends.
struct InFlight<'a>(&'a ComponentMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}
