//! Grafana Loki's push API, as Loki's documentation and answers describe it.
//!
//! `POST /loki/api/v1/push`: `application/x-protobuf` (a `logproto.PushRequest`,
//! snappy block-compressed), or `application/json` (`{"streams":[{"stream":{...},
//! "values":[["<ns>","<line>"],...]}]}`, optionally gzipped). 204 when stored.
//!
//! What it checks, as Loki does: the tenant in `X-Scope-OrgID` when multi-tenant (401
//! `no org id`); Basic or Bearer credentials when set (401); every stream has at least one
//! label pair and parses (400). Per stream: an entry older than `reject_older_than` is
//! refused by the distributor (400 `entry for stream '<s>' has timestamp too old: ...`);
//! one more than `max_behind` older than the newest entry already stored in its stream is
//! refused by the ingester (400 `entry with timestamp <t> ignored, reason: 'entry too
//! far behind, ...'`, at most `max_returned_errors` named, then `user '<tenant>', total
//! ignored: <n> out of <m> for stream: <s>`). The other entries of such a push are
//! stored. An entry with the timestamp and line of one already in its stream is
//! dropped as a duplicate, as Loki's ingester drops them.
//!
//! Scripted faults: a share of pushes answered 429 (rate limited), 503, or the
//! connection dropped, before anything is stored; the first `hang_requests` pushes never
//! answered; a switch that answers 503 to all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;

use crate::server::{roll_fault, text, Answer, DropConnection, Fault, Server};

/// `logproto.PushRequest`, decoded on its own (not the sink's types).
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Push {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<Stream>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Stream {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<Entry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Time>,
        #[prost(string, tag = "2")]
        pub line: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Time {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// How Loki behaves.
#[derive(Debug, Clone)]
pub struct LokiOptions {
    /// Multi-tenant: pushes must name this tenant.
    pub tenant: Option<String>,
    /// `Authorization` pushes must carry (`Basic ...` or `Bearer ...`).
    pub authorization: Option<String>,
    /// The distributor refuses entries older than this (ns since the epoch).
    pub reject_older_than: Option<i64>,
    /// The ingester refuses entries more than this (ns) older than its stream's newest.
    pub max_behind: Option<i64>,
    /// How many ignored entries a 400 names.
    pub max_returned_errors: usize,
    /// Share of pushes (0..1) that fail before storing: 429, 503 or a dropped connection.
    pub failure_rate: f64,
    /// The first this many pushes are never answered (the connection stays open).
    pub hang_requests: u64,
    pub seed: u64,
}

impl Default for LokiOptions {
    fn default() -> Self {
        Self {
            tenant: None,
            authorization: None,
            reject_older_than: None,
            max_behind: None,
            max_returned_errors: 10,
            failure_rate: 0.0,
            hang_requests: 0,
            seed: 1,
        }
    }
}

/// What Loki saw.
#[derive(Debug, Default, Clone)]
pub struct LokiStats {
    pub pushes: u64,
    pub protobuf_pushes: u64,
    pub json_pushes: u64,
    pub stored: u64,
    pub duplicates_dropped: u64,
    pub ignored: u64,
    pub failed_429: u64,
    pub failed_503: u64,
    pub dropped_connections: u64,
    pub refused: u64,
    pub auth_failures: u64,
    /// Pushes taken and never answered.
    pub hung: u64,
    /// Pushes whose entries of one stream were not in time order.
    pub unordered_streams: u64,
}

#[derive(Default)]
struct State {
    stats: LokiStats,
    /// Per stream (its labels, sorted): stored entries and the newest time.
    streams: HashMap<BTreeMap<String, String>, Stream>,
    rng: Option<fastrand::Rng>,
}

#[derive(Default)]
struct Stream {
    entries: HashSet<(i64, String)>,
    newest: i64,
}

/// A stream's labels and its entries (time in ns, line).
pub type StoredStream = (BTreeMap<String, String>, Vec<(i64, String)>);

/// A running Loki; stopped when dropped.
pub struct LokiReceiver {
    server: Server,
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
}

impl LokiReceiver {
    pub fn start(options: LokiOptions) -> Self {
        let state = Arc::new(Mutex::new(State {
            rng: Some(fastrand::Rng::with_seed(options.seed)),
            ..State::default()
        }));
        let down = Arc::new(AtomicBool::new(false));
        let options = Arc::new(options);
        let (s, d) = (Arc::clone(&state), Arc::clone(&down));
        let server = Server::start("loki-receiver", false, move |request| {
            let (state, down, options) = (Arc::clone(&s), Arc::clone(&d), Arc::clone(&options));
            async move { handle(request, &state, &down, &options).await }
        });
        Self {
            server,
            state,
            down,
        }
    }

    /// Loki's base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn stats(&self) -> LokiStats {
        self.state.lock().unwrap().stats.clone()
    }

    /// The streams, each with its entries (time, line) in time order.
    pub fn streams(&self) -> Vec<StoredStream> {
        let state = self.state.lock().unwrap();
        state
            .streams
            .iter()
            .map(|(labels, s)| {
                let mut entries: Vec<(i64, String)> = s.entries.iter().cloned().collect();
                entries.sort();
                (labels.clone(), entries)
            })
            .collect()
    }

    /// Every stored line, and how many streams hold it.
    pub fn lines(&self) -> HashMap<String, u32> {
        let mut lines = HashMap::new();
        for (_, entries) in self.streams() {
            for (_, line) in entries {
                *lines.entry(line).or_default() += 1;
            }
        }
        lines
    }
}

/// `{a="x", b="y"}` as a map, or why not.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("error parsing labels {text}"))?;
    let mut labels = BTreeMap::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("error parsing labels {text}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next().map(|(_, c)| c).unwrap_or('\\')),
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("error parsing labels {text}"))?;
        labels.insert(name.trim().to_string(), value);
        rest = after[end + 1..].trim_start_matches([',', ' ']);
    }
    Ok(labels)
}

/// Go's `time.Time.String()` in UTC, whole seconds (what Loki's answers print).
fn go_time(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let (year, month, day) = flowlog_model::time::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
    let fraction = nanos.rem_euclid(1_000_000_000);
    if fraction > 0 {
        out.push_str(format!(".{fraction:09}").trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Go's `time.RFC3339` in UTC (`2023-11-14T22:13:20Z`).
fn rfc3339(nanos: i64) -> String {
    let go = go_time(nanos - nanos.rem_euclid(1_000_000_000));
    format!("{}Z", go.trim_end_matches(" +0000 UTC").replace(' ', "T"))
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

type Pushed = Vec<(String, Vec<(i64, String)>)>;

fn decode(content_type: &str, encoding: Option<&str>, body: &[u8]) -> Result<Pushed, String> {
    if content_type.starts_with("application/x-protobuf") {
        use prost::Message;
        let raw = snap::raw::Decoder::new()
            .decompress_vec(body)
            .map_err(|e| format!("snappy: {e}"))?;
        let push = proto::Push::decode(&raw[..]).map_err(|e| format!("protobuf: {e}"))?;
        return Ok(push
            .streams
            .into_iter()
            .map(|s| {
                let entries = s
                    .entries
                    .into_iter()
                    .map(|e| {
                        let t = e.timestamp.unwrap_or(proto::Time {
                            seconds: 0,
                            nanos: 0,
                        });
                        (t.seconds * 1_000_000_000 + i64::from(t.nanos), e.line)
                    })
                    .collect();
                (s.labels, entries)
            })
            .collect());
    }
    let mut plain = Vec::new();
    match encoding {
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut plain)
                .map_err(|e| format!("gzip: {e}"))?;
        }
        None => plain = body.to_vec(),
        Some(other) => return Err(format!("unsupported Content-Encoding {other}")),
    }
    let json: serde_json::Value =
        serde_json::from_slice(&plain).map_err(|e| format!("JSON: {e}"))?;
    let mut pushed = Vec::new();
    for stream in json["streams"].as_array().ok_or("no streams")? {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(stream["stream"].clone()).map_err(|e| format!("stream: {e}"))?;
        let mut entries = Vec::new();
        for value in stream["values"].as_array().ok_or("no values")? {
            let nanos = value[0]
                .as_str()
                .and_then(|t| t.parse().ok())
                .ok_or("a timestamp that is not a string of nanoseconds")?;
            let line = value[1].as_str().ok_or("a line that is not a string")?;
            entries.push((nanos, line.to_string()));
        }
        pushed.push((labels_text(&labels), entries));
    }
    Ok(pushed)
}

async fn handle(
    request: http::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    down: &AtomicBool,
    options: &LokiOptions,
) -> Result<Answer, DropConnection> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let hang = {
        let mut state = state.lock().unwrap();
        let hang = state.stats.hung < options.hang_requests;
        state.stats.hung += u64::from(hang);
        hang
    };
    if hang {
        std::future::pending::<()>().await;
    }
    let mut state = state.lock().unwrap();
    if parts.uri.path() != "/loki/api/v1/push" || parts.method != http::Method::POST {
        return Ok(text(404, "404 page not found"));
    }
    state.stats.pushes += 1;
    if options.authorization.is_some() && header("authorization") != options.authorization {
        state.stats.auth_failures += 1;
        return Ok(text(401, "Unauthorized"));
    }
    let tenant = header("x-scope-orgid");
    if options.tenant.is_some() && tenant != options.tenant {
        state.stats.auth_failures += 1;
        return Ok(text(401, "no org id"));
    }
    if down.load(Ordering::SeqCst) {
        state.stats.failed_503 += 1;
        return Ok(text(503, "Service Unavailable"));
    }
    match roll_fault(&mut state.rng, options.failure_rate) {
        Some(Fault::Throttled) => {
            state.stats.failed_429 += 1;
            return Ok(text(
                429,
                "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest '100' lines totaling '10000' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
            ));
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
    let content_type = header("content-type").unwrap_or_default();
    if content_type.starts_with("application/x-protobuf") {
        state.stats.protobuf_pushes += 1;
    } else {
        state.stats.json_pushes += 1;
    }
    let pushed = match decode(&content_type, header("content-encoding").as_deref(), &body) {
        Ok(p) => p,
        Err(e) => {
            state.stats.refused += 1;
            return Ok(text(400, &format!("error parsing push request: {e}")));
        }
    };
    // The distributor: labels, then entries too old, for the whole push first.
    let mut streams = Vec::new();
    let mut refused = Vec::new();
    for (labels, entries) in pushed {
        let parsed = match parse_labels(&labels) {
            Ok(l) if !l.is_empty() => l,
            Ok(_) => {
                state.stats.refused += 1;
                return Ok(text(
                    400,
                    "error at least one label pair is required per stream",
                ));
            }
            Err(e) => {
                state.stats.refused += 1;
                return Ok(text(400, &e));
            }
        };
        let in_order = entries.windows(2).all(|w| w[0].0 <= w[1].0);
        state.stats.unordered_streams += u64::from(!in_order);
        let mut kept = Vec::new();
        for (nanos, line) in entries {
            match options.reject_older_than {
                Some(oldest) if nanos < oldest => refused.push(format!(
                    "entry for stream '{}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                    labels_text(&parsed),
                    go_time(nanos),
                    go_time(oldest)
                )),
                _ => kept.push((nanos, line)),
            }
        }
        streams.push((parsed, kept));
    }
    // The ingester, stream by stream.
    let mut ignored_lines = Vec::new();
    for (labels, entries) in streams {
        let total = entries.len();
        let stream = state.streams.entry(labels.clone()).or_default();
        let mut ignored = Vec::new();
        let mut stored = 0;
        let mut duplicates = 0;
        for (nanos, line) in entries {
            if let Some(behind) = options.max_behind {
                if nanos < stream.newest - behind {
                    ignored.push(nanos);
                    continue;
                }
            }
            if stream.entries.insert((nanos, line)) {
                stored += 1;
            } else {
                duplicates += 1;
            }
            stream.newest = stream.newest.max(nanos);
        }
        let newest = stream.newest;
        state.stats.stored += stored;
        state.stats.duplicates_dropped += duplicates;
        state.stats.ignored += ignored.len() as u64;
        if !ignored.is_empty() {
            let mut text = String::new();
            for nanos in ignored.iter().take(options.max_returned_errors) {
                text.push_str(&format!(
                    "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}',\n",
                    go_time(*nanos),
                    rfc3339(*nanos),
                    rfc3339(newest - options.max_behind.unwrap_or(0)),
                ));
            }
            text.push_str(&format!(
                "user '{}', total ignored: {} out of {total} for stream: {}",
                tenant.as_deref().unwrap_or("fake"),
                ignored.len(),
                labels_text(&labels)
            ));
            ignored_lines.push(text);
        }
    }
    if !refused.is_empty() || !ignored_lines.is_empty() {
        state.stats.ignored += refused.len() as u64;
        let mut all = refused;
        all.extend(ignored_lines);
        return Ok(text(400, &all.join("\n")));
    }
    Ok(text(204, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_times_as_loki_prints_them() {
        let l = parse_labels(r#"{a="x\"y", job="z"}"#).unwrap();
        assert_eq!(l["a"], "x\"y");
        assert_eq!(labels_text(&l), r#"{a="x\"y", job="z"}"#);
        assert_eq!(
            go_time(1_700_000_000_000_000_000),
            "2023-11-14 22:13:20 +0000 UTC"
        );
    }
}
