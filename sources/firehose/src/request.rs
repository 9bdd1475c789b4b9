//! One Firehose request, from its headers to its answer.
//!
//! What can be decided from the headers is answered before the body is read (the body is
//! then not read at all, and the connection closed): a wrong key (401), a declared size
//! over `max_body_bytes` (413), an encoding other than gzip (415), a full endpoint or
//! dead-letter store, or a shutdown (503). A client that sends `Expect: 100-continue`
//! sends no body for these.
//!
//! A request taken in is read within `body_timeout_secs`, its `Content-Encoding` undone
//! (the inflated body held to `max_body_bytes` as well, and counted in
//! `max_bytes_in_flight` as it grows), checked whole as a Firehose request (else 400,
//! which Firehose retries and then backs up to S3), and decoded on a blocking thread that
//! hands each batch to the pipeline as soon as it is made (so a request's batches are
//! never all held at once). What its records decompress to is bounded too
//! ([`inflation_budget`]; past it 413). The answer is `200` only once every batch is
//! delivered and the dead letters of the request are durable.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flowlog_component::listen::Throttled;
use flowlog_component::{AckWait, BatchStatus};
use flowlog_decode::{decode_firehose_request, DeadLetter, DecodeError, DecodeOptions, RecordSink};
use flowlog_model::{FlowBatch, SourceId};
use flowlog_source::SourceContext;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::FirehoseSource;

/// What every request's handler shares.
pub(super) struct Shared {
    pub settings: FirehoseSource,
    pub ctx: SourceContext,
    /// Requests taken in.
    pub requests: Arc<Semaphore>,
    /// Bytes of bodies (as received, and inflated) held, in KiB: a semaphore counts in
    /// `u32`.
    pub kib: Arc<Semaphore>,
    /// Requests being decoded: one per core. More at once would not decode faster, and
    /// each holds what its records inflate to.
    pub decoding: Arc<Semaphore>,
    /// Refusals of requests that were not taken in (wrong key, no request id...): one
    /// line a minute, so that traffic without the key cannot flood the log.
    pub unauthorized: Throttled,
    /// Other refusals and failures: one line every ten seconds.
    pub refused: Throttled,
}

pub(super) type Answer = http::Response<Full<Bytes>>;

/// Why a request was not answered 200.
struct Refusal {
    status: u16,
    message: String,
    /// The body, when it was not read: the connection is closed after the answer.
    unread: Option<hyper::body::Incoming>,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            unread: None,
        }
    }

    fn unread(status: u16, message: impl Into<String>, body: hyper::body::Incoming) -> Self {
        Self {
            unread: Some(body),
            ..Self::new(status, message)
        }
    }
}

/// Answers one request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    request: http::Request<hyper::body::Incoming>,
) -> Answer {
    let (parts, body) = request.into_parts();
    let request_id = header(&parts, "x-amz-firehose-request-id")
        .unwrap_or_default()
        .to_owned();
    let refusal = match take_in(&shared, &parts, &request_id, body).await {
        Ok(()) => return answer(200, &request_id, None),
        Err(refusal) => refusal,
    };
    let name = &shared.ctx.name;
    let log = || {
        format!(
            "request {request_id:?} answered {}: {}",
            refusal.status, refusal.message
        )
    };
    match refusal.status {
        401 | 405 | 400 if refusal.unread.is_some() => shared.unauthorized.warn(name, log),
        _ => shared.refused.warn(name, log),
    }
    let mut response = answer(refusal.status, &request_id, Some(&refusal.message));
    if let Some(body) = refusal.unread {
        // The body is left unread: the connection cannot carry another request. What the
        // client may still be sending is read for a moment (not kept), so that the answer
        // reaches it instead of a reset.
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        tokio::spawn(linger(body, shared.settings.max_body_bytes));
    }
    response
}

/// How long an unread body is read after a refusal (at most `max_body_bytes` of it): a
/// client that keeps sending longer is cut off.
const LINGER_TIME: Duration = Duration::from_secs(5);

async fn linger(mut body: hyper::body::Incoming, max: usize) {
    let drain = async {
        let mut left = max;
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            if n >= left {
                break;
            }
            left -= n;
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

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

/// `Content-Encoding` as HTTP defines it: what was applied to the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

fn encoding(headers: &http::HeaderMap) -> Result<Encoding, String> {
    let mut encoding = Encoding::Identity;
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        let value = value
            .to_str()
            .map_err(|_| "Content-Encoding is not text".to_string())?;
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match coding.to_ascii_lowercase().as_str() {
                "identity" => {}
                "gzip" | "x-gzip" if encoding == Encoding::Identity => encoding = Encoding::Gzip,
                other => {
                    return Err(format!(
                        "Content-Encoding {other:?} is not supported (Firehose sends gzip or none)"
                    ))
                }
            }
        }
    }
    Ok(encoding)
}

/// `bytes` in KiB, rounded up (what the in-flight semaphore counts).
pub(super) fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

const BUSY: &str = "the endpoint is busy; retry later";

async fn take_in(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    request_id: &str,
    body: hyper::body::Incoming,
) -> Result<(), Refusal> {
    let settings = &shared.settings;
    if parts.method != http::Method::POST {
        return Err(Refusal::unread(405, "only POST", body));
    }
    let key = header(parts, "x-amz-firehose-access-key").unwrap_or_default();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        key.as_bytes(),
        settings.access_key.as_bytes(),
    )) {
        return Err(Refusal::unread(401, "wrong access key", body));
    }
    if request_id.is_empty() {
        return Err(Refusal::unread(400, "no X-Amz-Firehose-Request-Id", body));
    }
    let encoding = match encoding(&parts.headers) {
        Ok(encoding) => encoding,
        Err(message) => return Err(Refusal::unread(415, message, body)),
    };
    let max_body = settings.max_body_bytes;
    let length = header(parts, "content-length").and_then(|v| v.parse::<usize>().ok());
    if length.is_some_and(|l| l > max_body) {
        return Err(Refusal::unread(
            413,
            "the request is larger than max_body_bytes",
            body,
        ));
    }
    if shared.ctx.stopping() {
        return Err(Refusal::unread(503, "shutting down; retry later", body));
    }
    if shared.ctx.dead_letters.is_full() {
        let message = "the dead-letter store is full; retry later";
        return Err(Refusal::unread(503, message, body));
    }
    // Taken in only while there is room: otherwise Firehose is told to back off.
    // Held until the request is answered; the bytes, until its body is decoded.
    let Ok(_request) = Arc::clone(&shared.requests).try_acquire_owned() else {
        return Err(Refusal::unread(503, BUSY, body));
    };
    let Ok(held) = Arc::clone(&shared.kib).try_acquire_many_owned(kib(length.unwrap_or(max_body)))
    else {
        return Err(Refusal::unread(503, BUSY, body));
    };
    let timeout = Duration::from_secs(settings.body_timeout_secs);
    let Ok(collected) = tokio::time::timeout(timeout, Limited::new(body, max_body).collect()).await
    else {
        let message = format!(
            "the request body did not arrive within {} s",
            timeout.as_secs()
        );
        return Err(Refusal::new(408, message));
    };
    let body = match collected {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Refusal::new(
                413,
                "the request is larger than max_body_bytes",
            ));
        }
        Err(_) => return Err(Refusal::new(400, "the request body could not be read")),
    };
    shared.ctx.metrics.bytes_in.inc_by(body.len() as u64);
    // A body of unknown length held `max_body_bytes`: only what arrived stays held.
    let mut held = held;
    let excess = held.num_permits().saturating_sub(kib(body.len()) as usize);
    drop(held.split(excess));

    let source = SourceId::new(format!("firehose:{request_id}"));
    let waits = decode(shared, source, body, encoding, held).await?;
    for wait in waits {
        if wait.wait().await != BatchStatus::Delivered {
            return Err(Refusal::new(
                500,
                "a destination could not take the records; retry later",
            ));
        }
    }
    // The request's dead letters are covered by the answer: durable first.
    let durable = {
        let dead_letters = Arc::clone(&shared.ctx.dead_letters);
        tokio::task::spawn_blocking(move || dead_letters.sync()).await
    };
    match durable {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Refusal::new(
            500,
            format!("the dead letter cannot be synced: {e}"),
        )),
        Err(e) => Err(Refusal::new(500, format!("syncing the dead letter: {e}"))),
    }
}

/// What one request's records may decompress to: 64 times its size (flow logs compress
/// about 10 to 20 times; a gzip bomb a thousand), at least 64 MiB, at most
/// `max_inflated_bytes`. Past it the request is refused (413), so a small request cannot
/// hold a worker for long.
pub(super) fn inflation_budget(body_len: usize, max_inflated_bytes: u64) -> u64 {
    (body_len as u64)
        .saturating_mul(64)
        .max(64 << 20)
        .min(max_inflated_bytes)
}

/// Undoes the body's encoding, decodes it and hands its batches to the pipeline as they
/// are made (on a blocking thread); the waiters for their outcomes.
async fn decode(
    shared: &Arc<Shared>,
    source: SourceId,
    body: Bytes,
    encoding: Encoding,
    held: OwnedSemaphorePermit,
) -> Result<Vec<AckWait>, Refusal> {
    let options = options(&shared.ctx, &shared.settings, body.len());
    let Ok(core) = Arc::clone(&shared.decoding).acquire_owned().await else {
        return Err(Refusal::new(503, "shutting down; retry later"));
    };
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        let _core = core;
        let shared = &*shared;
        let mut held = held;
        // Each step of the inflated body is held in the in-flight budget before it is made.
        let reserve = |kib: u32| match Arc::clone(&shared.kib).try_acquire_many_owned(kib) {
            Ok(more) => {
                held.merge(more);
                true
            }
            Err(_) => false,
        };
        let plain = unpack(body, encoding, shared.settings.max_body_bytes, reserve)?;
        let mut submit = Submit {
            shared,
            waits: Vec::new(),
            refusal: None,
        };
        match decode_request(&plain, source, &options, &mut submit) {
            Ok(()) => Ok(submit.waits),
            Err(None) => Err(submit
                .refusal
                .unwrap_or_else(|| Refusal::new(503, "shutting down; retry later"))),
            Err(Some(refusal)) => Err(refusal),
        }
    })
    .await
    .unwrap_or_else(|e| Err(Refusal::new(500, format!("decoding stopped: {e}"))))
}

fn options(ctx: &SourceContext, settings: &FirehoseSource, body_len: usize) -> DecodeOptions {
    DecodeOptions {
        format: ctx.format.clone(),
        batch_rows: ctx.batch_rows,
        keep_lines: ctx.keep_lines,
        max_inflated_bytes: Some(inflation_budget(body_len, settings.max_inflated_bytes)),
        ..DecodeOptions::default()
    }
}

/// The body with its encoding undone (at most `max` bytes of it); `reserve` is asked for
/// room (in KiB) before each step of inflating, and a `false` is a 503.
fn unpack(
    body: Bytes,
    encoding: Encoding,
    max: usize,
    mut reserve: impl FnMut(u32) -> bool,
) -> Result<Bytes, Refusal> {
    const STEP: usize = 1 << 20;
    if encoding == Encoding::Identity {
        return Ok(body);
    }
    let mut plain = Vec::new();
    let mut gunzip = flate2::read::MultiGzDecoder::new(&body[..]);
    loop {
        if !reserve(kib(STEP)) {
            return Err(Refusal::new(503, BUSY));
        }
        let room = (max + 1 - plain.len()).min(STEP) as u64;
        match (&mut gunzip).take(room).read_to_end(&mut plain) {
            Ok(0) => return Ok(Bytes::from(plain)),
            Ok(_) if plain.len() > max => {
                let message = "the request decompresses to more than max_body_bytes";
                return Err(Refusal::new(413, message));
            }
            Ok(_) => {}
            Err(e) => {
                let message = format!("the gzip body cannot be read: {e}");
                return Err(Refusal::new(400, message));
            }
        }
    }
}

/// Decodes a request's body into `sink`. `Err(None)`: the sink stopped it (and knows why).
fn decode_request(
    plain: &[u8],
    source: SourceId,
    options: &DecodeOptions,
    sink: &mut dyn RecordSink,
) -> Result<(), Option<Refusal>> {
    match decode_firehose_request(plain, source, options, sink) {
        Ok(_) => Ok(()),
        Err(DecodeError::Sink(_)) => Err(None),
        Err(e @ DecodeError::TooLarge { .. }) => Err(Some(Refusal::new(413, e.to_string()))),
        Err(e) => Err(Some(Refusal::new(400, e.to_string()))),
    }
}

/// The status the endpoint answers a request it has taken in with `headers` and `body`,
/// up to the delivery of its records, which go to `sink`: the checks, decoding and
/// bounds of the real handler, without a server or a pipeline (for the fuzz target).
#[doc(hidden)]
pub fn offline_answer(
    settings: &FirehoseSource,
    headers: &http::HeaderMap,
    body: &[u8],
    format: Option<flowlog_model::FlowFormat>,
    sink: &mut dyn RecordSink,
) -> u16 {
    let encoding = match encoding(headers) {
        Ok(encoding) => encoding,
        Err(_) => return 415,
    };
    if body.len() > settings.max_body_bytes {
        return 413;
    }
    // The body as received is held first, as the handler holds it.
    let mut held = u64::from(kib(body.len()));
    let budget = u64::from(kib(settings.max_bytes_in_flight));
    let reserve = |kib: u32| {
        held += u64::from(kib);
        held <= budget
    };
    let received = body.len();
    let body = Bytes::copy_from_slice(body);
    let plain = match unpack(body, encoding, settings.max_body_bytes, reserve) {
        Ok(plain) => plain,
        Err(refusal) => return refusal.status,
    };
    let options = DecodeOptions {
        format,
        max_inflated_bytes: Some(inflation_budget(received, settings.max_inflated_bytes)),
        ..DecodeOptions::default()
    };
    match decode_request(&plain, SourceId::new("firehose:fuzz"), &options, sink) {
        Ok(()) => 200,
        Err(None) => 503,
        Err(Some(refusal)) => refusal.status,
    }
}

/// Hands each batch to the pipeline as soon as it is decoded, keeping the waiters for
/// their outcomes; dead letters go to the store, and one it cannot keep stops the request.
struct Submit<'a> {
    shared: &'a Shared,
    waits: Vec<AckWait>,
    /// Why decoding was stopped from here.
    refusal: Option<Refusal>,
}

impl RecordSink for Submit<'_> {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), flowlog_decode::SinkError> {
        let ctx = &self.shared.ctx;
        let wait = if ctx.stopping() {
            None
        } else {
            ctx.runtime.block_on(ctx.submit(batch))
        };
        match wait {
            Some(wait) => {
                self.waits.push(wait);
                Ok(())
            }
            None => {
                self.refusal = Some(Refusal::new(503, "shutting down; retry later"));
                Err("the pipeline is stopping".into())
            }
        }
    }

    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), flowlog_decode::SinkError> {
        self.shared.ctx.dead_letter(letter).map_err(|e| {
            self.refusal = Some(Refusal::new(503, format!("{e}; retry later")));
            e.into()
        })
    }
}
