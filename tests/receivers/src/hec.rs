//! A Splunk HTTP Event Collector: `/services/collector/event`, `/raw`, `/health`, `/ack`.
//!
//! What it checks, as Splunk does: the `Authorization: Splunk <token>` header (401 code 2
//! missing, 401 code 3 malformed, 403 code 4 unknown); gzip bodies; concatenated JSON
//! envelopes with only the documented keys, `event` present and not blank, `fields` flat
//! (400 codes 6, 12, 13, 15 with `invalid-event-number`; events before it are indexed);
//! the channel header when acknowledgement is on (400 codes 10, 11); ack ids per channel
//! from 0, `true` once and then forgotten; `/ack` with acknowledgement off (400 code 14);
//! bodies over `max_body` (413).
//!
//! Scripted faults: a share of requests failing at random (503 code 9, 429 code 26 with
//! `Retry-After`, or the connection dropped without an answer, all before indexing); a
//! share of ack ids lost (never `true`); events containing a poison string refused; a
//! switch that makes the collector answer 503 to everything; `/ack` polls that are never
//! answered.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::server::{json, roll_fault, Answer, DropConnection, Fault, Server};

/// One envelope, with only the keys HEC documents (anything else is refused).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the ignored keys are read to be checked, not used
struct Envelope<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    time: Option<serde::de::IgnoredAny>,
    host: Option<serde::de::IgnoredAny>,
    source: Option<serde::de::IgnoredAny>,
    sourcetype: Option<serde::de::IgnoredAny>,
    index: Option<serde::de::IgnoredAny>,
    #[serde(borrow)]
    fields: Option<HashMap<&'a str, &'a RawValue>>,
}

/// How the collector behaves.
#[derive(Debug, Clone)]
pub struct HecOptions {
    pub token: String,
    /// Indexer acknowledgement on (the token's `useACK`).
    pub acks: bool,
    /// Largest accepted body, as received (compressed when gzipped).
    pub max_body: usize,
    /// Share of requests (0..1) that fail before indexing: 503, 429 or a dropped connection.
    pub failure_rate: f64,
    /// Share of ack ids (0..1) that never become `true`.
    pub lose_ack_rate: f64,
    /// Events whose text contains this are refused (400 code 6, `invalid-event-number`).
    pub poison: Option<String>,
    /// Keep every indexed envelope (small tests); ids and counts are always kept.
    pub keep_events: bool,
    /// Seed of the fault script.
    pub seed: u64,
    /// The first this many `/ack` polls are never answered (the connection stays open,
    /// silent): a collector that stopped answering one connection.
    pub hang_ack_polls: u64,
    /// `/ack` answers are decided (and the ids answered `true` forgotten, as HEC forgets
    /// them) at once, then sent this much later: an answer that arrives after the
    /// sender's own deadline for those ids.
    pub ack_answer_delay: std::time::Duration,
    /// Serve HTTPS (HTTP/2 or HTTP/1.1 by ALPN) with a certificate from a fresh test CA
    /// ([`HecReceiver::ca_pem`]).
    pub tls: bool,
}

impl Default for HecOptions {
    fn default() -> Self {
        Self {
            token: "test-token".into(),
            acks: false,
            max_body: 1 << 30,
            failure_rate: 0.0,
            lose_ack_rate: 0.0,
            poison: None,
            keep_events: true,
            seed: 1,
            hang_ack_polls: 0,
            ack_answer_delay: std::time::Duration::ZERO,
            tls: false,
        }
    }
}

/// What the collector saw.
#[derive(Debug, Default, Clone)]
pub struct HecStats {
    pub requests: u64,
    pub gzip_requests: u64,
    pub indexed: u64,
    pub failed_503: u64,
    pub failed_429: u64,
    pub dropped_connections: u64,
    pub too_large: u64,
    pub refused_events: u64,
    pub auth_failures: u64,
    pub ack_polls: u64,
    pub acks_lost: u64,
    /// Requests that came over HTTP/2.
    pub http2_requests: u64,
    /// `/ack` polls left unanswered (`hang_ack_polls`).
    pub hung_ack_polls: u64,
    pub channels: HashSet<String>,
}

#[derive(Default)]
struct State {
    stats: HecStats,
    /// Indexed events by `fields.flowlog_id` (or by their text when they have none).
    ids: HashMap<String, u32>,
    events: Vec<Value>,
    raw_lines: Vec<String>,
    /// Per channel: the next ack id, and ids acknowledged-to-be.
    channels: HashMap<String, Channel>,
    /// Ids of the events whose request's ack was lost.
    lost_ack_events: HashSet<String>,
    /// Events whose request's ack id was answered `true`, and when.
    confirmed: HashMap<String, std::time::Instant>,
    /// Events that arrived again while no ack of theirs had been answered `true` (the
    /// sender gave up on a late or lost ack): duplicates the contract allows.
    excused_duplicates: HashSet<String>,
    rng: Option<fastrand::Rng>,
}

#[derive(Default)]
struct Channel {
    next: u64,
    /// Ids that will answer `true` (lost ones are never added), with their events.
    ready: HashMap<u64, Vec<String>>,
}

/// A running collector; stopped when dropped.
pub struct HecReceiver {
    server: Server,
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
}

impl HecReceiver {
    /// Starts a collector on 127.0.0.1 on a free port.
    pub fn start(options: HecOptions) -> Self {
        let state = Arc::new(Mutex::new(State {
            rng: Some(fastrand::Rng::with_seed(options.seed)),
            ..State::default()
        }));
        let down = Arc::new(AtomicBool::new(false));
        let tls = options.tls;
        let options = Arc::new(options);
        let (s, d) = (Arc::clone(&state), Arc::clone(&down));
        let server = Server::start("hec-receiver", tls, move |request| {
            let (state, down, options) = (Arc::clone(&s), Arc::clone(&d), Arc::clone(&options));
            async move {
                let ack = request.uri().path() == "/services/collector/ack";
                let answer = handle(request, &state, &down, &options).await;
                if ack {
                    tokio::time::sleep(options.ack_answer_delay).await;
                }
                answer
            }
        });
        Self {
            server,
            state,
            down,
        }
    }

    /// `http://127.0.0.1:<port>`, or `https://` with `tls`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The PEM of the CA that signed the receiver's certificate (with `tls`).
    pub fn ca_pem(&self) -> Option<&str> {
        self.server.ca_pem()
    }

    /// While down, every request gets 503 code 9 (server busy).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn stats(&self) -> HecStats {
        self.state.lock().unwrap().stats.clone()
    }

    /// How many times each event id was indexed.
    pub fn ids(&self) -> HashMap<String, u32> {
        self.state.lock().unwrap().ids.clone()
    }

    /// Indexed envelopes (with `keep_events`).
    pub fn events(&self) -> Vec<Value> {
        self.state.lock().unwrap().events.clone()
    }

    /// Lines received on `/raw`.
    pub fn raw_lines(&self) -> Vec<String> {
        self.state.lock().unwrap().raw_lines.clone()
    }

    /// Ids of events sent in requests whose ack id was lost (and so may arrive twice).
    pub fn lost_ack_events(&self) -> HashSet<String> {
        self.state.lock().unwrap().lost_ack_events.clone()
    }

    /// Events whose ack was answered `true`, with the time it was.
    pub fn confirmed(&self) -> HashMap<String, std::time::Instant> {
        self.state.lock().unwrap().confirmed.clone()
    }

    /// Events indexed again before any ack of theirs was answered `true`: the sender's
    /// ack timeout ran out (a lost ack, or one slower than the timeout under load). A
    /// duplicate outside this set would break the delivery contract.
    pub fn excused_duplicates(&self) -> HashSet<String> {
        self.state.lock().unwrap().excused_duplicates.clone()
    }
}

fn reply(status: u16, body: Value) -> Answer {
    json(status, &body)
}

fn code(status: u16, code: u32, text: &str) -> Answer {
    reply(status, serde_json::json!({"text": text, "code": code}))
}

async fn handle(
    request: http::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    down: &AtomicBool,
    options: &HecOptions,
) -> Result<Answer, DropConnection> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    if path == "/services/collector/ack" {
        let hang = {
            let mut state = state.lock().unwrap();
            let hang = state.stats.hung_ack_polls < options.hang_ack_polls;
            if hang {
                state.stats.hung_ack_polls += 1;
            }
            hang
        };
        if hang {
            std::future::pending::<()>().await;
        }
    }
    let mut state = state.lock().unwrap();
    state.stats.requests += 1;
    if parts.version == http::Version::HTTP_2 {
        state.stats.http2_requests += 1;
    }
    if path == "/services/collector/health" {
        return Ok(if down.load(Ordering::SeqCst) {
            code(503, 18, "HEC is unhealthy, queues are full")
        } else {
            code(200, 17, "HEC is healthy")
        });
    }
    if down.load(Ordering::SeqCst) {
        state.stats.failed_503 += 1;
        return Ok(code(503, 9, "Server is busy"));
    }
    // Authorization.
    let token = match parts
        .headers
        .get("authorization")
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => {
            state.stats.auth_failures += 1;
            return Ok(code(401, 2, "Token is required"));
        }
        Some(v) => match v.strip_prefix("Splunk ") {
            Some(t) => t.to_string(),
            None => {
                state.stats.auth_failures += 1;
                return Ok(code(401, 3, "Invalid authorization"));
            }
        },
    };
    if token != options.token {
        state.stats.auth_failures += 1;
        return Ok(code(403, 4, "Invalid token"));
    }
    let channel = parts
        .headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            parts.uri.query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("channel=").map(str::to_string))
            })
        });
    if path == "/services/collector/ack" {
        if !options.acks {
            return Ok(code(400, 14, "ACK is disabled"));
        }
        state.stats.ack_polls += 1;
        let Some(channel) = channel else {
            return Ok(code(400, 10, "Data channel is missing"));
        };
        let asked: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let ids: Vec<u64> = asked["acks"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let ch = state.channels.entry(channel).or_default();
        let mut answer = serde_json::Map::new();
        let mut confirmed = Vec::new();
        for id in ids {
            // `true` once, then forgotten.
            let events = ch.ready.remove(&id);
            answer.insert(id.to_string(), Value::Bool(events.is_some()));
            confirmed.extend(events.unwrap_or_default());
        }
        let now = std::time::Instant::now();
        state
            .confirmed
            .extend(confirmed.into_iter().map(|id| (id, now)));
        return Ok(reply(200, serde_json::json!({ "acks": answer })));
    }
    let raw = match path.as_str() {
        "/services/collector/event" | "/services/collector/event/1.0" => false,
        "/services/collector/raw" | "/services/collector/raw/1.0" => true,
        _ => {
            return Ok(code(
                404,
                404,
                "The requested URL was not found on this server.",
            ))
        }
    };
    if options.acks {
        match &channel {
            None => return Ok(code(400, 10, "Data channel is missing")),
            Some(c) if uuid::Uuid::parse_str(c).is_err() => {
                return Ok(code(400, 11, "Invalid data channel"))
            }
            Some(c) => {
                state.stats.channels.insert(c.clone());
            }
        }
    }
    if body.len() > options.max_body {
        state.stats.too_large += 1;
        return Ok(reply(413, serde_json::json!({"text": "Content too large"})));
    }
    // Scripted faults, before anything is indexed.
    match roll_fault(&mut state.rng, options.failure_rate) {
        Some(Fault::Busy) => {
            state.stats.failed_503 += 1;
            return Ok(code(503, 9, "Server is busy"));
        }
        Some(Fault::Throttled) => {
            state.stats.failed_429 += 1;
            let mut answer = code(429, 26, "Too many requests; queue is full");
            answer
                .headers_mut()
                .insert("retry-after", http::HeaderValue::from_static("1"));
            return Ok(answer);
        }
        Some(Fault::Dropped) => {
            state.stats.dropped_connections += 1;
            return Err(DropConnection);
        }
        None => {}
    }
    let gzip = parts
        .headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gzip {
        state.stats.gzip_requests += 1;
        let mut plain = Vec::new();
        if flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .is_err()
        {
            return Ok(code(400, 6, "Invalid data format"));
        }
        plain
    } else {
        body.to_vec()
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(code(400, 5, "No data"));
    }

    let mut indexed_ids = Vec::new();
    if raw {
        for line in String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| !l.is_empty())
        {
            if options.poison.as_deref().is_some_and(|p| line.contains(p)) {
                state.stats.refused_events += 1;
                return Ok(code(400, 6, "Invalid data format"));
            }
            state.raw_lines.push(line.to_string());
            state.stats.indexed += 1;
            *state.ids.entry(line.to_string()).or_default() += 1;
        }
    } else {
        let mut stream = serde_json::Deserializer::from_slice(&body).into_iter::<Envelope>();
        let mut i = 0;
        loop {
            let start = stream.byte_offset();
            let Some(item) = stream.next() else { break };
            let refuse = |state: &mut State, code: u32, text: &str| {
                state.stats.refused_events += 1;
                reply(
                    400,
                    serde_json::json!({"text": text, "code": code, "invalid-event-number": i}),
                )
            };
            // An object with only the documented keys (deny_unknown_fields).
            let Ok(envelope) = item else {
                return Ok(refuse(&mut state, 6, "Invalid data format"));
            };
            let raw = &body[start..stream.byte_offset()];
            match envelope.event.map(RawValue::get) {
                None => return Ok(refuse(&mut state, 12, "Event field is required")),
                Some("null") => return Ok(refuse(&mut state, 13, "Event field cannot be blank")),
                Some(text) if text.starts_with('"') => {
                    let s: String = serde_json::from_str(text).unwrap_or_default();
                    if s.trim().is_empty() {
                        return Ok(refuse(&mut state, 13, "Event field cannot be blank"));
                    }
                }
                Some(_) => {}
            }
            let mut id = None;
            if let Some(fields) = &envelope.fields {
                let flat = fields.values().all(|v| {
                    let text = v.get();
                    match text.as_bytes().first() {
                        Some(b'{') => false,
                        Some(b'[') => {
                            serde_json::from_str::<Vec<&RawValue>>(text).is_ok_and(|items| {
                                items.iter().all(|x| !x.get().starts_with(['{', '[']))
                            })
                        }
                        _ => true,
                    }
                });
                if !flat {
                    return Ok(refuse(&mut state, 15, "Error in handling indexed fields"));
                }
                id = fields
                    .get("flowlog_id")
                    .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
            }
            if options
                .poison
                .as_deref()
                .is_some_and(|p| memchr::memmem::find(raw, p.as_bytes()).is_some())
            {
                return Ok(refuse(&mut state, 6, "Invalid data format"));
            }
            let id = id.unwrap_or_else(|| String::from_utf8_lossy(raw).trim().to_string());
            state.stats.indexed += 1;
            let count = state.ids.entry(id.clone()).or_default();
            *count += 1;
            if *count > 1 && options.acks && !state.confirmed.contains_key(&id) {
                state.excused_duplicates.insert(id.clone());
            }
            indexed_ids.push(id);
            if options.keep_events {
                let event: Value = serde_json::from_slice(raw).expect("parsed once already");
                state.events.push(event);
            }
            i += 1;
        }
    }

    if !options.acks {
        return Ok(code(200, 0, "Success"));
    }
    let channel = channel.expect("checked above");
    let lose = state.rng.as_mut().map_or(1.0, |r| r.f64()) < options.lose_ack_rate;
    let ch = state.channels.entry(channel).or_default();
    let id = ch.next;
    ch.next += 1;
    if lose {
        state.stats.acks_lost += 1;
        state.lost_ack_events.extend(indexed_ids);
    } else {
        ch.ready.insert(id, indexed_ids);
    }
    Ok(reply(
        200,
        serde_json::json!({"text": "Success", "code": 0, "ackId": id}),
    ))
}
