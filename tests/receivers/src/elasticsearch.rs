//! An Elasticsearch (or OpenSearch) cluster, as far as a shipper sees it: `GET /`, `_bulk`,
//! single-document index and get, refresh, templates, `_security/_authenticate` and
//! `_has_privileges`.
//!
//! What it checks, as Elasticsearch does (`protocols.md`, Elastic's bulk reference):
//! - credentials: `Authorization: ApiKey base64(id:key)` or `Basic` (401
//!   `security_exception` without or with wrong ones; 403 for a user who may not write);
//!   OpenSearch takes no API keys; with `sigv4` set, as Amazon OpenSearch Service with
//!   an IAM access policy: every request must carry a valid SigV4 signature over the
//!   body as sent (403 with AWS's `message` otherwise);
//! - bulk bodies: NDJSON, gzip'd or not, ending with a newline (else 400
//!   `illegal_argument_exception` for the whole request), action lines `create`/`index`/
//!   `delete` with `_index` (or the URL's target) and `_id`; larger than `max_body` as
//!   received: 413;
//! - data streams (targets matching `logs-*-*`, or an index template with `data_stream`):
//!   only `create` (an `index` item is 400 `illegal_argument_exception`), `@timestamp`
//!   required;
//! - ids unique per target: a second `create` is item 409
//!   `version_conflict_engine_exception`, and nothing changes;
//! - a mapping: `*.port`, `*.bytes`, `*.packets`, `*.number` are `long`, `*.ip` are `ip`,
//!   `@timestamp` is a date; a wrong value is item 400 `document_parsing_exception`
//!   unless `ignore_malformed` (as the built-in `logs-*-*` template sets), when the field
//!   is listed in `_ignored` and the document kept.
//!
//! Scripted faults: a share of items answered 429 `es_rejected_execution_exception` (not
//! stored); a share of whole requests failing (503, 429 with `Retry-After`, or the
//! connection dropped, all before anything is stored); a share of requests never answered
//! (the connection stays open, silent); documents containing a poison string refused with
//! 400 `document_parsing_exception`; a switch that makes the cluster answer 503.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Map, Value};

use crate::server::{Answer, DropConnection, Server};
use crate::sigv4::SigV4Key;

/// Which product the cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Elasticsearch,
    OpenSearch,
}

/// How the cluster behaves.
#[derive(Debug, Clone)]
pub struct EsOptions {
    pub flavor: Flavor,
    /// An API key (`id:key`, sent base64'd) the cluster accepts (Elasticsearch only).
    pub api_key: Option<String>,
    /// A user and password the cluster accepts.
    pub basic: Option<(String, String)>,
    /// Users that may authenticate but not write (403 on writes).
    pub read_only_user: Option<(String, String)>,
    /// A user that may create documents and nothing else, as a least-privilege role
    /// grants: no cluster privilege, so `GET /` and the template APIs answer 403.
    pub document_writer: Option<(String, String)>,
    /// Only requests signed with this key are accepted (Amazon OpenSearch Service).
    pub sigv4: Option<SigV4Key>,
    /// Largest accepted body as received (Elasticsearch's `http.max_content_length`).
    pub max_body: usize,
    /// Share of bulk items (0..1) answered 429 `es_rejected_execution_exception`.
    pub item_reject_rate: f64,
    /// Share of requests (0..1) failing whole: 503, 429 or a dropped connection.
    pub failure_rate: f64,
    /// Share of requests (0..1) never answered.
    pub hang_rate: f64,
    /// Documents whose text contains this are refused (400 `document_parsing_exception`).
    pub poison: Option<String>,
    /// Malformed values are ignored (`_ignored`) instead of refusing the document.
    pub ignore_malformed: bool,
    /// Keep every stored document (small tests); ids and counts are always kept.
    pub keep_documents: bool,
    pub seed: u64,
    pub tls: bool,
}

impl Default for EsOptions {
    fn default() -> Self {
        Self {
            flavor: Flavor::Elasticsearch,
            api_key: Some("test-id:test-key".into()),
            basic: Some(("elastic".into(), "changeme".into())),
            read_only_user: Some(("viewer".into(), "viewer-password".into())),
            document_writer: Some(("writer".into(), "writer-password".into())),
            sigv4: None,
            max_body: 100 << 20,
            item_reject_rate: 0.0,
            failure_rate: 0.0,
            hang_rate: 0.0,
            poison: None,
            ignore_malformed: false,
            keep_documents: true,
            seed: 1,
            tls: false,
        }
    }
}

/// What the cluster saw.
#[derive(Debug, Default, Clone)]
pub struct EsStats {
    pub requests: u64,
    pub bulk_requests: u64,
    pub gzip_requests: u64,
    pub created: u64,
    pub conflicts: u64,
    pub rejected_items: u64,
    pub refused_items: u64,
    pub failed_requests: u64,
    pub dropped_connections: u64,
    pub hung_requests: u64,
    pub too_large: u64,
    pub auth_failures: u64,
    pub forbidden: u64,
}

#[derive(Default)]
struct State {
    stats: EsStats,
    /// Per target: documents by id (`Value::Null` when not kept).
    indices: HashMap<String, HashMap<String, Value>>,
    /// How many times each (target, id) was stored: more than once only through `index`.
    stored: HashMap<(String, String), u32>,
    component_templates: Map<String, Value>,
    index_templates: Map<String, Value>,
    rng: Option<fastrand::Rng>,
    next_id: u64,
}

impl State {
    fn chance(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.as_mut().expect("seeded").f64() < rate
    }
}

/// A running cluster; stopped when dropped.
pub struct EsReceiver {
    server: Server,
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
}

impl EsReceiver {
    pub fn start(options: EsOptions) -> Self {
        let state = Arc::new(Mutex::new(State {
            rng: Some(fastrand::Rng::with_seed(options.seed)),
            ..State::default()
        }));
        let down = Arc::new(AtomicBool::new(false));
        let tls = options.tls;
        let options = Arc::new(options);
        let (s, d) = (Arc::clone(&state), Arc::clone(&down));
        let server = Server::start("es-receiver", tls, move |request| {
            let (state, down, options) = (Arc::clone(&s), Arc::clone(&d), Arc::clone(&options));
            async move { handle(request, &state, &down, &options).await }
        });
        Self {
            server,
            state,
            down,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn ca_pem(&self) -> Option<&str> {
        self.server.ca_pem()
    }

    /// While down, every request gets 503.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn stats(&self) -> EsStats {
        self.state.lock().unwrap().stats.clone()
    }

    /// How many documents `target` holds.
    pub fn count(&self, target: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.indices.get(target).map_or(0, HashMap::len)
    }

    /// The ids stored in `target`.
    pub fn ids(&self, target: &str) -> HashSet<String> {
        let state = self.state.lock().unwrap();
        state
            .indices
            .get(target)
            .map(|docs| docs.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The documents of `target` (with `keep_documents`).
    pub fn documents(&self, target: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .indices
            .get(target)
            .map(|docs| docs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The targets that hold documents.
    pub fn targets(&self) -> Vec<String> {
        self.state.lock().unwrap().indices.keys().cloned().collect()
    }

    /// How many times the most stored document of any target was written (1 when no
    /// document was ever overwritten).
    pub fn max_writes(&self) -> u32 {
        let state = self.state.lock().unwrap();
        state.stored.values().copied().max().unwrap_or(0)
    }

    /// The index template named `name`, as installed.
    pub fn index_template(&self, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .index_templates
            .get(name)
            .cloned()
    }

    /// The component template named `name`, as installed.
    pub fn component_template(&self, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .component_templates
            .get(name)
            .cloned()
    }
}

fn answer(options: &EsOptions, status: u16, body: &Value) -> Answer {
    let mut builder = http::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if options.flavor == Flavor::Elasticsearch {
        builder = builder.header("X-elastic-product", "Elasticsearch");
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

/// An error answer as Elasticsearch writes them.
fn error(options: &EsOptions, status: u16, kind: &str, reason: &str) -> Answer {
    let body = json!({
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": status
    });
    let mut answer = answer(options, status, &body);
    if status == 401 {
        answer.headers_mut().insert(
            "WWW-Authenticate",
            http::HeaderValue::from_static("Basic realm=\"security\", ApiKey"),
        );
    }
    answer
}

/// Who the request is from.
enum Caller {
    Writer(String),
    Reader(String),
    /// May write documents, holds no cluster privilege.
    DocumentWriter(String),
}

fn authenticate(headers: &http::HeaderMap, options: &EsOptions) -> Result<Caller, String> {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err("missing authentication credentials for REST request".into());
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(key) = value.strip_prefix("ApiKey ") {
        if options.flavor == Flavor::OpenSearch {
            return Err("API keys are not supported".into());
        }
        let decoded = b64.decode(key.trim()).ok();
        let decoded = decoded.as_deref().and_then(|d| std::str::from_utf8(d).ok());
        return match (decoded, options.api_key.as_deref()) {
            (Some(got), Some(want)) if got == want => Ok(Caller::Writer("api-key".into())),
            _ => Err("unable to authenticate with provided credentials".into()),
        };
    }
    if let Some(basic) = value.strip_prefix("Basic ") {
        let decoded = b64.decode(basic.trim()).unwrap_or_default();
        let decoded = String::from_utf8_lossy(&decoded);
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        let matches = |pair: &Option<(String, String)>| {
            pair.as_ref()
                .is_some_and(|(u, p)| u == user && p == password)
        };
        if matches(&options.basic) {
            return Ok(Caller::Writer(user.to_string()));
        }
        if matches(&options.read_only_user) {
            return Ok(Caller::Reader(user.to_string()));
        }
        if matches(&options.document_writer) {
            return Ok(Caller::DocumentWriter(user.to_string()));
        }
        return Err(format!(
            "unable to authenticate user [{user}] for REST request"
        ));
    }
    Err("unsupported authorization scheme".into())
}

async fn handle(
    request: http::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    down: &AtomicBool,
    options: &EsOptions,
) -> Result<Answer, DropConnection> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    let hang = {
        let mut state = state.lock().unwrap();
        state.stats.requests += 1;
        let hang = state.chance(options.hang_rate);
        if hang {
            state.stats.hung_requests += 1;
        }
        hang
    };
    if hang {
        std::future::pending::<()>().await;
    }
    let mut state = state.lock().unwrap();
    if down.load(Ordering::SeqCst) {
        state.stats.failed_requests += 1;
        return Ok(error(
            options,
            503,
            "unavailable_shards_exception",
            "cluster is down",
        ));
    }
    let signed = match &options.sigv4 {
        // AWS answers a bad signature 403 with a `message`, not Elasticsearch's error.
        Some(key) => match crate::sigv4::verify(&parts, &body, key) {
            Ok(()) => Some(Caller::Writer(key.access_key_id.clone())),
            Err(message) => {
                state.stats.auth_failures += 1;
                return Ok(answer(options, 403, &json!({ "message": message })));
            }
        },
        None => None,
    };
    let caller = match signed
        .map(Ok)
        .unwrap_or_else(|| authenticate(&parts.headers, options))
    {
        Ok(caller) => caller,
        Err(reason) => {
            state.stats.auth_failures += 1;
            return Ok(error(options, 401, "security_exception", &reason));
        }
    };
    let gzip = parts
        .headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if body.len() > options.max_body {
        state.stats.too_large += 1;
        return Ok(error(
            options,
            413,
            "content_too_long_exception",
            &format!("request body is too large: {} bytes", body.len()),
        ));
    }
    let body = if gzip {
        state.stats.gzip_requests += 1;
        let mut plain = Vec::new();
        if flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .is_err()
        {
            return Ok(error(options, 400, "parse_exception", "invalid gzip body"));
        }
        Bytes::from(plain)
    } else {
        body
    };
    let path: Vec<&str> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = parts.method.clone();
    let write = method != http::Method::GET && method != http::Method::HEAD;
    let is_privileges = path.ends_with(&["_has_privileges"]);
    if let (Caller::Reader(user), true) = (&caller, write && !is_privileges) {
        state.stats.forbidden += 1;
        return Ok(error(
            options,
            403,
            "security_exception",
            &format!("action [indices:data/write/bulk] is unauthorized for user [{user}]"),
        ));
    }
    let cluster_level = matches!(
        path.first(),
        None | Some(&"_index_template") | Some(&"_component_template")
    );
    if let (Caller::DocumentWriter(user), true) = (&caller, cluster_level) {
        state.stats.forbidden += 1;
        let action = if path.is_empty() {
            "cluster:monitor/main"
        } else {
            "cluster:admin/index_template/get"
        };
        // Each product's own wording.
        let reason = match options.flavor {
            Flavor::OpenSearch => format!(
                "no permissions for [{action}] and User [name={user}, backend_roles=[], \
                 requestedTenant=null]"
            ),
            _ => format!(
                "action [{action}] is unauthorized for user [{user}] with effective roles \
                 [flowlog_writer], this action is granted by the cluster privileges \
                 [monitor,manage,all]"
            ),
        };
        return Ok(error(options, 403, "security_exception", &reason));
    }
    match (method.as_str(), path.as_slice()) {
        ("GET", []) => Ok(answer(options, 200, &cluster_info(options))),
        ("GET", ["_security", "_authenticate"]) => {
            let user = match &caller {
                Caller::Writer(u) | Caller::Reader(u) | Caller::DocumentWriter(u) => u.clone(),
            };
            Ok(answer(
                options,
                200,
                &json!({"username": user, "roles": [], "enabled": true}),
            ))
        }
        ("GET" | "POST", ["_security", "user", "_has_privileges"]) => {
            let asked: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let may_write = matches!(caller, Caller::Writer(_) | Caller::DocumentWriter(_));
            let mut index = Map::new();
            for entry in asked["index"].as_array().into_iter().flatten() {
                let privileges: Map<String, Value> = entry["privileges"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|p| (p.to_string(), Value::Bool(may_write || p == "read")))
                    .collect();
                for name in entry["names"].as_array().into_iter().flatten() {
                    if let Some(name) = name.as_str() {
                        index.insert(name.to_string(), Value::Object(privileges.clone()));
                    }
                }
            }
            let all = index.values().all(|p| {
                p.as_object()
                    .unwrap()
                    .values()
                    .all(|v| v == &Value::Bool(true))
            });
            Ok(answer(
                options,
                200,
                &json!({"username": "caller", "has_all_requested": all, "cluster": {}, "index": index}),
            ))
        }
        ("PUT" | "POST", ["_component_template", name]) => {
            let template: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            state.component_templates.insert(name.to_string(), template);
            Ok(answer(options, 200, &json!({"acknowledged": true})))
        }
        ("GET", ["_component_template", name]) => match state.component_templates.get(*name) {
            Some(t) => Ok(answer(
                options,
                200,
                &json!({"component_templates": [{"name": name, "component_template": t}]}),
            )),
            None => Ok(error(
                options,
                404,
                "resource_not_found_exception",
                &format!("component template matching [{name}] not found"),
            )),
        },
        ("PUT" | "POST", ["_index_template", name]) => {
            let template: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            state.index_templates.insert(name.to_string(), template);
            Ok(answer(options, 200, &json!({"acknowledged": true})))
        }
        ("GET", ["_index_template", name]) => match state.index_templates.get(*name) {
            Some(t) => Ok(answer(
                options,
                200,
                &json!({"index_templates": [{"name": name, "index_template": t}]}),
            )),
            None => Ok(error(
                options,
                404,
                "resource_not_found_exception",
                &format!("index template matching [{name}] not found"),
            )),
        },
        ("POST" | "PUT", ["_bulk"]) => bulk(&mut state, options, None, &body, brief(&parts.uri)),
        ("POST" | "PUT", [target, "_bulk"]) => {
            bulk(&mut state, options, Some(target), &body, brief(&parts.uri))
        }
        ("POST" | "GET", [_, "_refresh"]) => Ok(answer(
            options,
            200,
            &json!({"_shards": {"total": 1, "successful": 1, "failed": 0}}),
        )),
        ("PUT" | "POST", [target, op @ ("_doc" | "_create"), id]) => {
            let create = *op == "_create"
                || parts
                    .uri
                    .query()
                    .is_some_and(|q| q.contains("op_type=create"));
            single(&mut state, options, target, Some(id), create, &body)
        }
        ("POST", [target, "_doc"]) => single(&mut state, options, target, None, false, &body),
        ("GET", [target, "_doc", id]) => {
            let found = state
                .indices
                .get(*target)
                .and_then(|docs| docs.get(*id))
                .cloned();
            Ok(match found {
                Some(source) => answer(
                    options,
                    200,
                    &json!({"_index": target, "_id": id, "_version": 1, "_seq_no": 0,
                        "_primary_term": 1, "found": true, "_source": source}),
                ),
                None => answer(
                    options,
                    404,
                    &json!({"_index": target, "_id": id, "found": false}),
                ),
            })
        }
        _ => Ok(error(
            options,
            400,
            "illegal_argument_exception",
            &format!("request [{}] contains unrecognized path", parts.uri.path()),
        )),
    }
}

fn cluster_info(options: &EsOptions) -> Value {
    match options.flavor {
        Flavor::Elasticsearch => json!({
            "name": "es-receiver", "cluster_name": "flowlog-test", "cluster_uuid": "test-uuid",
            "version": {"number": "8.15.0", "build_flavor": "default", "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0"},
            "tagline": "You Know, for Search"
        }),
        Flavor::OpenSearch => json!({
            "name": "os-receiver", "cluster_name": "flowlog-test", "cluster_uuid": "test-uuid",
            "version": {"distribution": "opensearch", "number": "2.15.0", "lucene_version": "9.10.0"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"
        }),
    }
}

/// True if `target` is a data stream: it matches an installed index template with
/// `data_stream`, or (Elasticsearch) the built-in `logs-*-*`.
fn is_data_stream(state: &State, options: &EsOptions, target: &str) -> bool {
    let builtin = options.flavor == Flavor::Elasticsearch
        && target.starts_with("logs-")
        && target.matches('-').count() >= 2;
    builtin
        || state.index_templates.values().any(|t| {
            t.get("data_stream").is_some()
                && t["index_patterns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .any(|p| matches_pattern(p, target))
        })
}

fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len())
                    .any(|i| matches_pattern(rest, &name[head.len() + i..]))
        }
    }
}

/// What happened to one item.
struct Outcome {
    status: u16,
    error: Option<(String, String)>,
    id: String,
    target: String,
    result: &'static str,
}

/// True if the request's `filter_path` keeps only `errors` and the items' `status` and
/// `error` (what shippers ask for), as Elasticsearch then answers.
fn brief(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&').any(|kv| {
            kv.strip_prefix("filter_path=").is_some_and(|paths| {
                let paths = percent_encoding::percent_decode_str(paths).decode_utf8_lossy();
                let paths: Vec<_> = paths.split(',').collect();
                paths.contains(&"errors") && paths.contains(&"items.*.status")
            })
        })
    })
}

fn bulk(
    state: &mut State,
    options: &EsOptions,
    default_target: Option<&str>,
    body: &[u8],
    brief: bool,
) -> Result<Answer, DropConnection> {
    state.stats.bulk_requests += 1;
    if !body.is_empty() && !body.ends_with(b"\n") {
        return Ok(error(
            options,
            400,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    if state.chance(options.failure_rate) {
        state.stats.failed_requests += 1;
        let roll = state.rng.as_mut().expect("seeded").u8(0..3);
        return match roll {
            0 => Ok(error(
                options,
                503,
                "unavailable_shards_exception",
                "primary shard is not active",
            )),
            1 => {
                let mut a = error(
                    options,
                    429,
                    "es_rejected_execution_exception",
                    "rejected execution of coordinating operation",
                );
                a.headers_mut()
                    .insert("Retry-After", http::HeaderValue::from_static("1"));
                Ok(a)
            }
            _ => {
                state.stats.dropped_connections += 1;
                Err(DropConnection)
            }
        };
    }
    // Parse every line first: a malformed action or document fails the whole request,
    // before anything is stored.
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(_) => return Ok(error(options, 400, "parse_exception", "body is not UTF-8")),
    };
    let mut lines = text.split_terminator('\n').filter(|l| !l.trim().is_empty());
    let mut operations = Vec::new();
    while let Some(action_line) = lines.next() {
        let action: Map<String, Value> = match serde_json::from_str(action_line) {
            Ok(a) => a,
            Err(e) => {
                return Ok(error(
                    options,
                    400,
                    "x_content_parse_exception",
                    &format!("Malformed action/metadata line: {e}"),
                ))
            }
        };
        let Some((op, meta)) = action.into_iter().next() else {
            return Ok(error(
                options,
                400,
                "illegal_argument_exception",
                "empty action",
            ));
        };
        if !matches!(op.as_str(), "create" | "index" | "delete") {
            return Ok(error(
                options,
                400,
                "illegal_argument_exception",
                &format!("Malformed action/metadata line, expected one of [create, delete, index, update] but found [{op}]"),
            ));
        }
        let document = if op == "delete" {
            None
        } else {
            let line = lines.next();
            match line.map(|l| (l, serde_json::from_str::<Value>(l))) {
                Some((text, Ok(doc))) => Some((text, doc)),
                _ => {
                    return Ok(error(
                        options,
                        400,
                        "x_content_parse_exception",
                        "the document after an action line is missing or not JSON",
                    ))
                }
            }
        };
        operations.push((op, meta, document));
    }
    let mut items = Vec::with_capacity(operations.len());
    let mut errors = false;
    for (op, meta, document) in operations {
        let target = meta["_index"]
            .as_str()
            .or(default_target)
            .unwrap_or("")
            .to_string();
        let outcome = item(state, options, &op, &target, meta["_id"].as_str(), document);
        errors |= outcome.error.is_some();
        let mut result = if brief {
            json!({"status": outcome.status})
        } else {
            json!({"_index": outcome.target, "_id": outcome.id, "status": outcome.status})
        };
        match outcome.error {
            Some((kind, reason)) => {
                result["error"] = json!({"type": kind, "reason": reason});
            }
            None if !brief => {
                result["result"] = json!(outcome.result);
                result["_version"] = json!(1);
            }
            None => {}
        }
        items.push(json!({ op: result }));
    }
    let body = if brief {
        json!({"errors": errors, "items": items})
    } else {
        json!({"took": 1, "errors": errors, "items": items})
    };
    Ok(answer(options, 200, &body))
}

fn item(
    state: &mut State,
    options: &EsOptions,
    op: &str,
    target: &str,
    id: Option<&str>,
    document: Option<(&str, Value)>,
) -> Outcome {
    let id = id.map(str::to_string).unwrap_or_else(|| {
        state.next_id += 1;
        format!("auto-{}", state.next_id)
    });
    let fail = |status: u16, kind: &str, reason: String| Outcome {
        status,
        error: Some((kind.to_string(), reason)),
        id: id.clone(),
        target: target.to_string(),
        result: "",
    };
    if target.is_empty() {
        return fail(
            400,
            "action_request_validation_exception",
            "index is missing".into(),
        );
    }
    if state.chance(options.item_reject_rate) {
        state.stats.rejected_items += 1;
        return fail(
            429,
            "es_rejected_execution_exception",
            "rejected execution of primary operation [queue capacity = 200]".into(),
        );
    }
    let data_stream = is_data_stream(state, options, target);
    if op == "delete" {
        let removed = state
            .indices
            .get_mut(target)
            .and_then(|docs| docs.remove(&id))
            .is_some();
        return Outcome {
            status: if removed { 200 } else { 404 },
            error: None,
            id,
            target: target.to_string(),
            result: if removed { "deleted" } else { "not_found" },
        };
    }
    if data_stream && op != "create" {
        state.stats.refused_items += 1;
        return fail(
            400,
            "illegal_argument_exception",
            format!("only write ops with an op_type of create are allowed in data streams, index [{target}]"),
        );
    }
    let (text, mut document) = document.expect("create and index carry a document");
    if let Some(poison) = &options.poison {
        if text.contains(poison.as_str()) {
            state.stats.refused_items += 1;
            return fail(
                400,
                "document_parsing_exception",
                format!("[1:1] failed to parse: document with id '{id}' holds [{poison}]"),
            );
        }
    }
    if data_stream && document.get("@timestamp").is_none() {
        state.stats.refused_items += 1;
        return fail(
            400,
            "document_parsing_exception",
            "data stream timestamp field [@timestamp] is missing".into(),
        );
    }
    let mut ignored = Vec::new();
    if let Err((field, kind, value)) = check_mapping(&document, "", &mut ignored, options) {
        state.stats.refused_items += 1;
        return fail(
            400,
            "document_parsing_exception",
            format!("[1:1] failed to parse field [{field}] of type [{kind}] in document with id '{id}'. Preview of field's value: '{value}'"),
        );
    }
    if !ignored.is_empty() {
        document["_ignored"] = json!(ignored);
    }
    let docs = state.indices.entry(target.to_string()).or_default();
    if op == "create" && docs.contains_key(&id) {
        state.stats.conflicts += 1;
        return fail(
            409,
            "version_conflict_engine_exception",
            format!("[{id}]: version conflict, document already exists (current version [1])"),
        );
    }
    let result = if docs.contains_key(&id) {
        "updated"
    } else {
        "created"
    };
    docs.insert(
        id.clone(),
        if options.keep_documents {
            document
        } else {
            Value::Null
        },
    );
    *state
        .stored
        .entry((target.to_string(), id.clone()))
        .or_default() += 1;
    state.stats.created += 1;
    Outcome {
        status: if result == "created" { 201 } else { 200 },
        error: None,
        id,
        target: target.to_string(),
        result,
    }
}

/// Checks the test mapping: `long` for ports, counters and AS numbers, `ip` for
/// addresses, `date` for `@timestamp`. A malformed value is an error, or (with
/// `ignore_malformed`) its field goes to `ignored`.
fn check_mapping(
    value: &Value,
    path: &str,
    ignored: &mut Vec<String>,
    options: &EsOptions,
) -> Result<(), (String, &'static str, String)> {
    if let Value::Object(members) = value {
        for (key, member) in members {
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            check_mapping(member, &path, ignored, options)?;
        }
        return Ok(());
    }
    let last = path.rsplit('.').next().unwrap_or(path);
    let kind = match last {
        "port" | "bytes" | "packets" | "number" => "long",
        "ip" => "ip",
        "@timestamp" => "date",
        _ => return Ok(()),
    };
    let values: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let ok = values.iter().all(|v| match kind {
        "long" => v.as_i64().is_some() || v.as_str().is_some_and(|s| s.parse::<i64>().is_ok()),
        "ip" => v
            .as_str()
            .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
        _ => v.as_str().is_some() || v.as_i64().is_some(),
    });
    if ok {
        return Ok(());
    }
    if options.ignore_malformed && kind != "date" {
        ignored.push(path.to_string());
        return Ok(());
    }
    Err((path.to_string(), kind, value.to_string()))
}

fn single(
    state: &mut State,
    options: &EsOptions,
    target: &str,
    id: Option<&str>,
    create: bool,
    body: &[u8],
) -> Result<Answer, DropConnection> {
    let Ok(document) = serde_json::from_slice::<Value>(body) else {
        return Ok(error(
            options,
            400,
            "x_content_parse_exception",
            "body is not JSON",
        ));
    };
    let op = if create { "create" } else { "index" };
    let text = String::from_utf8_lossy(body);
    let outcome = item(state, options, op, target, id, Some((&text, document)));
    Ok(match outcome.error {
        Some((kind, reason)) => error(options, outcome.status, &kind, &reason),
        None => answer(
            options,
            outcome.status,
            &json!({"_index": outcome.target, "_id": outcome.id, "_version": 1,
                "result": outcome.result, "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": 0, "_primary_term": 1}),
        ),
    })
}
