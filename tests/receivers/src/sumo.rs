//! A Sumo Logic HTTP Logs source, as Sumo Logic documents it ("Upload Logs to an HTTP
//! Source", "HTTP Logs and Metrics Source", "Troubleshooting HTTP Sources").
//!
//! `POST /receiver/v1/http/<code>` with the source's unique code, or `POST
//! /receiver/v1/http` with the source's token in `X-Sumo-Token` (a source set up with an
//! auth header): anything else is 401 (a missing or invalid URL token). The body is UTF-8
//! messages one per line, plain or with `Content-Encoding: gzip` or `deflate` (zlib);
//! `X-Sumo-Category`, `X-Sumo-Name`, `X-Sumo-Host` and `X-Sumo-Fields` (`k=v,...`) apply
//! to every message of the request. An empty body is answered 200 and holds no message.
//!
//! What the documents leave open, decided here: a body over `max_body` bytes before
//! compression (Sumo Logic takes up to 1 MB) is answered 413, one that is not UTF-8 or
//! not in a supported encoding 400.
//!
//! Scripted faults: a share of requests answered 429 (Sumo Logic's throttling text, with
//! `Retry-After`), 503, or the connection dropped, all before anything is ingested; a
//! request holding a poison string answered 400 naming it (nothing of it ingested); the
//! first `hang_requests` requests never answered; a switch that answers 503 to all.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;

use crate::server::{roll_fault, text, Answer, DropConnection, Fault, Server};

/// How the source behaves.
#[derive(Debug, Clone)]
pub struct SumoOptions {
    /// The unique code at the end of the source's URL.
    pub code: String,
    /// The token of a source set up with an auth header (`POST /receiver/v1/http`).
    pub token: Option<String>,
    /// Largest accepted body, before compression.
    pub max_body: usize,
    /// Share of requests (0..1) that fail before ingesting: 429, 503 or a dropped
    /// connection.
    pub failure_rate: f64,
    /// A request with a message containing this is answered 400, naming it.
    pub poison: Option<String>,
    /// The first this many requests are never answered (the connection stays open).
    pub hang_requests: u64,
    /// Keep every message with its metadata (small tests); counts are always kept.
    pub keep_messages: bool,
    pub seed: u64,
}

impl Default for SumoOptions {
    fn default() -> Self {
        Self {
            code: "ZaVnC4dhaV0qF8bq5Ezs0UhmJRzDmWplmzEa-test-code".into(),
            token: None,
            max_body: 1 << 20,
            failure_rate: 0.0,
            poison: None,
            hang_requests: 0,
            keep_messages: true,
            seed: 1,
        }
    }
}

/// One ingested message and the metadata its request gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub category: Option<String>,
    pub name: Option<String>,
    pub host: Option<String>,
    /// `X-Sumo-Fields`, parsed.
    pub fields: Vec<(String, String)>,
}

/// What the source saw.
#[derive(Debug, Default, Clone)]
pub struct SumoStats {
    pub requests: u64,
    pub compressed_requests: u64,
    pub ingested: u64,
    pub failed_429: u64,
    pub failed_503: u64,
    pub dropped_connections: u64,
    pub too_large: u64,
    pub refused: u64,
    pub auth_failures: u64,
    pub hung: u64,
    pub largest_body: usize,
}

#[derive(Default)]
struct State {
    stats: SumoStats,
    /// How many times each message arrived.
    counts: HashMap<String, u32>,
    messages: Vec<Message>,
    rng: Option<fastrand::Rng>,
}

/// A running source; stopped when dropped.
pub struct SumoReceiver {
    server: Server,
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
    code: String,
}

impl SumoReceiver {
    pub fn start(options: SumoOptions) -> Self {
        let state = Arc::new(Mutex::new(State {
            rng: Some(fastrand::Rng::with_seed(options.seed)),
            ..State::default()
        }));
        let down = Arc::new(AtomicBool::new(false));
        let code = options.code.clone();
        let options = Arc::new(options);
        let (s, d) = (Arc::clone(&state), Arc::clone(&down));
        let server = Server::start("sumo-receiver", false, move |request| {
            let (state, down, options) = (Arc::clone(&s), Arc::clone(&d), Arc::clone(&options));
            async move { handle(request, &state, &down, &options).await }
        });
        Self {
            server,
            state,
            down,
            code,
        }
    }

    /// The source's unique URL.
    pub fn url(&self) -> String {
        format!("{}/receiver/v1/http/{}", self.server.url(), self.code)
    }

    /// The base URL a source with an auth header is sent to.
    pub fn base_url(&self) -> String {
        format!("{}/receiver/v1/http", self.server.url())
    }

    /// While down, every request gets 503.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn stats(&self) -> SumoStats {
        self.state.lock().unwrap().stats.clone()
    }

    /// How many times each message arrived.
    pub fn counts(&self) -> HashMap<String, u32> {
        self.state.lock().unwrap().counts.clone()
    }

    /// Ingested messages (with `keep_messages`).
    pub fn messages(&self) -> Vec<Message> {
        self.state.lock().unwrap().messages.clone()
    }
}

fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn handle(
    request: http::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    down: &AtomicBool,
    options: &SumoOptions,
) -> Result<Answer, DropConnection> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    let hang = {
        let mut state = state.lock().unwrap();
        state.stats.requests += 1;
        let hang = state.stats.hung < options.hang_requests;
        state.stats.hung += u64::from(hang);
        hang
    };
    if hang {
        std::future::pending::<()>().await;
    }
    let mut state = state.lock().unwrap();
    let path = parts.uri.path();
    let authorized = match path.strip_prefix("/receiver/v1/http") {
        Some("") | Some("/") => {
            options.token.is_some() && header(&parts.headers, "x-sumo-token") == options.token
        }
        Some(code) => code.strip_prefix('/') == Some(options.code.as_str()),
        None => false,
    };
    if !authorized || parts.method != http::Method::POST {
        state.stats.auth_failures += 1;
        return Ok(text(401, "Unauthorized"));
    }
    if down.load(Ordering::SeqCst) {
        state.stats.failed_503 += 1;
        return Ok(text(503, "Service Unavailable"));
    }
    match roll_fault(&mut state.rng, options.failure_rate) {
        Some(Fault::Throttled) => {
            state.stats.failed_429 += 1;
            let mut answer = text(
                429,
                "You have temporarily exceeded your Sumo Logic quota. Please try again at a later time",
            );
            answer
                .headers_mut()
                .insert("retry-after", http::HeaderValue::from_static("0"));
            return Ok(answer);
        }
        Some(Fault::Busy) => {
            state.stats.failed_503 += 1;
            return Ok(text(503, "Service Unavailable"));
        }
        Some(Fault::Dropped) => {
            state.stats.dropped_connections += 1;
            return Err(DropConnection);
        }
        None => {}
    }
    let encoding = header(&parts.headers, "content-encoding");
    let mut plain = Vec::new();
    let decoded = match encoding.as_deref() {
        None | Some("identity") => {
            plain = body.to_vec();
            Ok(())
        }
        Some("gzip") => flate2::read::GzDecoder::new(&body[..])
            .take(options.max_body as u64 + 1)
            .read_to_end(&mut plain)
            .map(drop),
        Some("deflate") => flate2::read::ZlibDecoder::new(&body[..])
            .take(options.max_body as u64 + 1)
            .read_to_end(&mut plain)
            .map(drop),
        Some(other) => {
            state.stats.refused += 1;
            return Ok(text(400, &format!("unsupported Content-Encoding {other}")));
        }
    };
    state.stats.compressed_requests += u64::from(encoding.is_some());
    if decoded.is_err() {
        state.stats.refused += 1;
        return Ok(text(400, "the body is not in its Content-Encoding"));
    }
    state.stats.largest_body = state.stats.largest_body.max(plain.len());
    if plain.len() > options.max_body {
        state.stats.too_large += 1;
        return Ok(text(413, "Request Entity Too Large"));
    }
    let Ok(plain) = String::from_utf8(plain) else {
        state.stats.refused += 1;
        return Ok(text(400, "data must be UTF-8"));
    };
    if let Some(poison) = &options.poison {
        if let Some(line) = plain.lines().find(|l| l.contains(poison.as_str())) {
            state.stats.refused += 1;
            let shown: String = line.chars().take(80).collect();
            return Ok(text(400, &format!("message refused: {shown}")));
        }
    }
    let fields: Vec<(String, String)> = header(&parts.headers, "x-sumo-fields")
        .map(|f| {
            f.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect()
        })
        .unwrap_or_default();
    for line in plain.lines().filter(|l| !l.is_empty()) {
        state.stats.ingested += 1;
        *state.counts.entry(line.to_string()).or_default() += 1;
        if options.keep_messages {
            let message = Message {
                text: line.to_string(),
                category: header(&parts.headers, "x-sumo-category"),
                name: header(&parts.headers, "x-sumo-name"),
                host: header(&parts.headers, "x-sumo-host"),
                fields: fields.clone(),
            };
            state.messages.push(message);
        }
    }
    Ok(text(200, ""))
}
