//! An OTLP logs receiver, as the Collector's `otlp` receiver behaves: gRPC
//! `LogsService/Export` (the `opentelemetry-proto` tonic service, gzip accepted, a message
//! size limit) and HTTP `POST /v1/logs` (protobuf or JSON, gzip, 413 above the limit), on
//! one port.
//!
//! It stores what it accepts: every record's `flowlog.id` (how often it arrived) and,
//! when asked, the requests themselves, for attribute comparisons.
//!
//! Scripted faults, by share of requests: UNAVAILABLE (HTTP 503 with `Retry-After`);
//! RESOURCE_EXHAUSTED with a `RetryInfo` (HTTP 429 with `Retry-After`); a partial success
//! that drops the request's last record (its id is kept as rejected); a reset stream or
//! connection; no answer at all. A request holding a poison string is refused
//! INVALID_ARGUMENT (HTTP 400) whole. Without the configured header: UNAUTHENTICATED
//! (HTTP 401).

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::codegen::Service;
use tonic_types::{ErrorDetails, StatusExt};

use crate::server::{DropConnection, Server};

/// How the receiver behaves.
#[derive(Debug, Clone)]
pub struct OtlpOptions {
    /// Share of requests answered UNAVAILABLE / 503.
    pub unavailable_rate: f64,
    /// Share answered RESOURCE_EXHAUSTED with RetryInfo / 429.
    pub exhausted_rate: f64,
    /// Share answered with a partial success dropping the last record.
    pub partial_rate: f64,
    /// Share of requests whose stream (gRPC) or connection (HTTP) is reset.
    pub reset_rate: f64,
    /// Share of requests never answered.
    pub hang_rate: f64,
    /// A request with a record holding this string is refused whole (INVALID_ARGUMENT).
    pub poison: Option<String>,
    /// Largest message accepted (after decompression for gRPC, as received for HTTP).
    pub max_message: usize,
    /// A header every request must carry.
    pub required_header: Option<(String, String)>,
    /// Keep every accepted request (small tests).
    pub keep_requests: bool,
    pub seed: u64,
    /// HTTPS with a test CA, demanding a client certificate (mTLS) when `mutual_tls`.
    pub tls: bool,
    pub mutual_tls: bool,
}

impl Default for OtlpOptions {
    fn default() -> Self {
        Self {
            unavailable_rate: 0.0,
            exhausted_rate: 0.0,
            partial_rate: 0.0,
            reset_rate: 0.0,
            hang_rate: 0.0,
            poison: None,
            // The Collector's default for gRPC.
            max_message: 4 << 20,
            required_header: None,
            keep_requests: true,
            seed: 1,
            tls: false,
            mutual_tls: false,
        }
    }
}

/// What the receiver saw.
#[derive(Debug, Default, Clone)]
pub struct OtlpStats {
    pub grpc_requests: u64,
    pub http_requests: u64,
    pub json_requests: u64,
    pub gzip_requests: u64,
    pub records: u64,
    pub unavailable: u64,
    pub exhausted: u64,
    pub partial: u64,
    pub resets: u64,
    pub hangs: u64,
    pub invalid: u64,
    pub too_large: u64,
    pub unauthenticated: u64,
    /// Export requests with no records (`check`).
    pub empty: u64,
}

#[derive(Default)]
struct State {
    /// While set, every export is answered UNAVAILABLE (503).
    down: Arc<AtomicBool>,
    stats: OtlpStats,
    /// How many times each `flowlog.id` was accepted.
    ids: HashMap<String, u32>,
    /// Ids dropped by a partial success.
    rejected: Vec<String>,
    requests: Vec<ExportLogsServiceRequest>,
    rng: Option<fastrand::Rng>,
}

impl State {
    fn chance(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.as_mut().expect("seeded").f64() < rate
    }
}

/// What a request is answered, decided before it is looked at.
enum Fault {
    None,
    Unavailable,
    Exhausted,
    Partial,
}

/// A running receiver; stopped when dropped.
pub struct OtlpReceiver {
    server: Server,
    state: Arc<Mutex<State>>,
    /// With mTLS: the client certificate and key (PEM) the server accepts.
    client: Option<(String, String)>,
}

impl OtlpReceiver {
    pub fn start(options: OtlpOptions) -> Self {
        let state = Arc::new(Mutex::new(State {
            rng: Some(fastrand::Rng::with_seed(options.seed)),
            ..State::default()
        }));
        let options = Arc::new(options);
        let grpc = LogsServiceServer::new(Logs {
            state: Arc::clone(&state),
            options: Arc::clone(&options),
        })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(options.max_message);
        let shared = Arc::clone(&state);
        let pki = match (options.tls, options.mutual_tls) {
            (_, true) => Some(crate::tls::TestPki::with_client_auth()),
            (true, false) => Some(crate::tls::TestPki::new()),
            _ => None,
        };
        let client = pki.as_ref().and_then(|p| p.client.clone());
        let server = Server::start_with("otlp-receiver", pki, move |request| {
            let state = Arc::clone(&shared);
            let options = Arc::clone(&options);
            let mut grpc = grpc.clone();
            async move {
                let (reset, hang) = {
                    let mut s = state.lock().unwrap();
                    let reset = s.chance(options.reset_rate);
                    let hang = !reset && s.chance(options.hang_rate);
                    s.stats.resets += u64::from(reset);
                    s.stats.hangs += u64::from(hang);
                    (reset, hang)
                };
                if reset {
                    return Err(DropConnection);
                }
                if hang {
                    std::future::pending::<()>().await;
                }
                let is_grpc = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                if is_grpc {
                    let gzip = request
                        .headers()
                        .get("grpc-encoding")
                        .is_some_and(|v| v == "gzip");
                    state.lock().unwrap().stats.gzip_requests += u64::from(gzip);
                    let response = grpc.call(request).await.expect("infallible");
                    return Ok(response.map(|b| b.boxed_unsync()));
                }
                let answer = http_export(request, &state, &options).await;
                Ok(answer.map(|b| b.map_err(|e| match e {}).boxed_unsync()))
            }
        });
        Self {
            server,
            state,
            client,
        }
    }

    /// `http(s)://127.0.0.1:<port>`: gRPC and HTTP (`/v1/logs`) both.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The PEM of the CA that signed the server's certificate (with TLS).
    pub fn ca_pem(&self) -> Option<&str> {
        self.server.ca_pem()
    }

    /// The client certificate and key (PEM) the server accepts (with mTLS).
    pub fn client_identity(&self) -> Option<&(String, String)> {
        self.client.as_ref()
    }

    /// Answers every export UNAVAILABLE (503) while `down`.
    pub fn set_down(&self, down: bool) {
        self.state
            .lock()
            .unwrap()
            .down
            .store(down, Ordering::SeqCst);
    }

    pub fn stats(&self) -> OtlpStats {
        self.state.lock().unwrap().stats.clone()
    }

    /// How many times each `flowlog.id` was accepted.
    pub fn ids(&self) -> HashMap<String, u32> {
        self.state.lock().unwrap().ids.clone()
    }

    /// Ids dropped by a scripted partial success.
    pub fn rejected(&self) -> Vec<String> {
        self.state.lock().unwrap().rejected.clone()
    }

    /// The accepted requests (with `keep_requests`).
    pub fn requests(&self) -> Vec<ExportLogsServiceRequest> {
        self.state.lock().unwrap().requests.clone()
    }
}

/// The gRPC service.
struct Logs {
    state: Arc<Mutex<State>>,
    options: Arc<OtlpOptions>,
}

#[tonic::async_trait]
impl LogsService for Logs {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut state = self.state.lock().unwrap();
        state.stats.grpc_requests += 1;
        if let Some((name, value)) = &self.options.required_header {
            if request
                .metadata()
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                != Some(value)
            {
                state.stats.unauthenticated += 1;
                return Err(tonic::Status::unauthenticated(format!(
                    "missing or wrong {name}"
                )));
            }
        }
        match accept(&mut state, &self.options, request.into_inner()) {
            Ok(response) => Ok(tonic::Response::new(response)),
            Err(Refusal::Unavailable) => Err(tonic::Status::unavailable("the receiver is busy")),
            Err(Refusal::Exhausted) => Err(tonic::Status::with_error_details(
                tonic::Code::ResourceExhausted,
                "the receiver's memory limiter refused the data",
                ErrorDetails::with_retry_info(Some(Duration::from_millis(50))),
            )),
            Err(Refusal::Invalid(message)) => Err(tonic::Status::invalid_argument(message)),
        }
    }
}

enum Refusal {
    Unavailable,
    Exhausted,
    Invalid(String),
}

/// Accepts a request unless a fault or the poison says otherwise; stores what it keeps.
fn accept(
    state: &mut State,
    options: &OtlpOptions,
    mut request: ExportLogsServiceRequest,
) -> Result<ExportLogsServiceResponse, Refusal> {
    let fault = if state.chance(options.unavailable_rate) {
        Fault::Unavailable
    } else if state.chance(options.exhausted_rate) {
        Fault::Exhausted
    } else if state.chance(options.partial_rate) {
        Fault::Partial
    } else {
        Fault::None
    };
    if state.down.load(Ordering::SeqCst) {
        state.stats.unavailable += 1;
        return Err(Refusal::Unavailable);
    }
    match fault {
        Fault::Unavailable => {
            state.stats.unavailable += 1;
            return Err(Refusal::Unavailable);
        }
        Fault::Exhausted => {
            state.stats.exhausted += 1;
            return Err(Refusal::Exhausted);
        }
        _ => {}
    }
    let records = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum::<usize>();
    if records == 0 {
        state.stats.empty += 1;
        return Ok(ExportLogsServiceResponse::default());
    }
    if let Some(poison) = &options.poison {
        let poisoned = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .flat_map(|r| &r.attributes)
            .any(|kv| {
                matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                    Some(any_value::Value::StringValue(s)) if s.contains(poison.as_str()))
            });
        if poisoned {
            state.stats.invalid += 1;
            return Err(Refusal::Invalid(format!(
                "a record holds `{poison}`, which this receiver refuses"
            )));
        }
    }
    let mut partial = None;
    if matches!(fault, Fault::Partial) {
        // Drop the last record, as a receiver that refuses some of a request does.
        let dropped = request
            .resource_logs
            .iter_mut()
            .rev()
            .flat_map(|r| r.scope_logs.iter_mut().rev())
            .find_map(|s| s.log_records.pop());
        if let Some(record) = dropped {
            state.stats.partial += 1;
            state.rejected.extend(flowlog_id(&record));
            partial = Some(ExportLogsPartialSuccess {
                rejected_log_records: 1,
                error_message: "1 record dropped: the receiver's queue is full".into(),
            });
        }
    }
    for record in request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
    {
        state.stats.records += 1;
        if let Some(id) = flowlog_id(record) {
            *state.ids.entry(id).or_default() += 1;
        }
    }
    if options.keep_requests {
        state.requests.push(request);
    }
    Ok(ExportLogsServiceResponse {
        partial_success: partial,
    })
}

fn flowlog_id(record: &opentelemetry_proto::tonic::logs::v1::LogRecord) -> Option<String> {
    record
        .attributes
        .iter()
        .find(|kv| kv.key == "flowlog.id")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

type HttpAnswer = http::Response<Full<Bytes>>;

/// `POST /v1/logs`, as the Collector's OTLP/HTTP receiver answers it.
async fn http_export(
    request: http::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    options: &OtlpOptions,
) -> HttpAnswer {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return status(
            400,
            "application/json",
            b"{\"message\":\"unreadable body\"}".to_vec(),
        );
    };
    let mut state = state.lock().unwrap();
    state.stats.http_requests += 1;
    if parts.uri.path() != "/v1/logs" || parts.method != http::Method::POST {
        return status(404, "text/plain", b"404 page not found".to_vec());
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some((name, value)) = &options.required_header {
        if header(name) != Some(value.as_str()) {
            state.stats.unauthenticated += 1;
            return rpc_status(401, 16, &format!("missing or wrong {name}"), false);
        }
    }
    let json = header("content-type").is_some_and(|t| t.starts_with("application/json"));
    state.stats.json_requests += u64::from(json);
    if body.len() > options.max_message {
        state.stats.too_large += 1;
        return rpc_status(413, 8, "request body too large", json);
    }
    let body = if header("content-encoding") == Some("gzip") {
        state.stats.gzip_requests += 1;
        let mut plain = Vec::new();
        if flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .is_err()
        {
            return rpc_status(400, 3, "invalid gzip body", json);
        }
        Bytes::from(plain)
    } else {
        body
    };
    let decoded = if json {
        serde_json::from_slice::<ExportLogsServiceRequest>(&body).map_err(|e| e.to_string())
    } else {
        ExportLogsServiceRequest::decode(&body[..]).map_err(|e| e.to_string())
    };
    let request = match decoded {
        Ok(request) => request,
        Err(e) => {
            state.stats.invalid += 1;
            return rpc_status(400, 3, &format!("unmarshal: {e}"), json);
        }
    };
    match accept(&mut state, options, request) {
        Ok(response) => {
            if json {
                status(
                    200,
                    "application/json",
                    serde_json::to_vec(&response).unwrap(),
                )
            } else {
                status(200, "application/x-protobuf", response.encode_to_vec())
            }
        }
        Err(Refusal::Unavailable) => {
            let mut answer = rpc_status(503, 14, "the receiver is busy", json);
            answer.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("0"),
            );
            answer
        }
        Err(Refusal::Exhausted) => {
            let mut answer = rpc_status(
                429,
                8,
                "the receiver's memory limiter refused the data",
                json,
            );
            answer.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("0"),
            );
            answer
        }
        Err(Refusal::Invalid(message)) => rpc_status(400, 3, &message, json),
    }
}

fn status(code: u16, content_type: &str, body: Vec<u8>) -> HttpAnswer {
    http::Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// An error answer: a `google.rpc.Status` in the request's encoding.
fn rpc_status(http_status: u16, code: i32, message: &str, json: bool) -> HttpAnswer {
    if json {
        let body = serde_json::json!({"code": code, "message": message});
        status(
            http_status,
            "application/json",
            body.to_string().into_bytes(),
        )
    } else {
        let body = tonic_types::Status {
            code,
            message: message.to_string(),
            details: Vec::new(),
        };
        status(http_status, "application/x-protobuf", body.encode_to_vec())
    }
}
