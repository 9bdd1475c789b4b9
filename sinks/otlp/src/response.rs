//! What an OTLP answer means, as the OTLP specification says ("Failures", "Throttling").
//!
//! - Success carries an `ExportLogsServiceResponse`; `partial_success.rejected_log_records`
//!   are records the receiver dropped for good: counted and logged, not retried.
//! - gRPC: UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, ABORTED, OUT_OF_RANGE and DATA_LOSS
//!   are retried, RESOURCE_EXHAUSTED only when the server sent a `RetryInfo` (whose delay
//!   is honoured); UNAUTHENTICATED and PERMISSION_DENIED stop the sink; anything else
//!   (INVALID_ARGUMENT...) refuses the records for good. A message over the server's
//!   limit is RESOURCE_EXHAUSTED or OUT_OF_RANGE saying so: the request is halved.
//! - HTTP: 429, 502, 503 and 504 are retried (`Retry-After` honoured), 413 halves the
//!   request, 401 and 403 stop the sink, any other status refuses the records with the
//!   server's `google.rpc.Status` message.

use std::time::Duration;

use base64::Engine;
use flowlog_sink::http::Response;
use flowlog_sink::request::Verdict;
use flowlog_sink::retry::parse_retry_after;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;

use crate::encoder::Encoding;

/// gRPC status codes (`google.rpc.Code`).
mod code {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const ABORTED: u32 = 10;
    pub const OUT_OF_RANGE: u32 = 11;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const DATA_LOSS: u32 = 15;
    pub const UNAUTHENTICATED: u32 = 16;
    pub const UNKNOWN: u32 = 2;
}

/// The verdict on a gRPC answer to an export of `events` records.
pub fn grpc_verdict(response: &Response, events: usize) -> Verdict {
    // A proxy or load balancer in front may answer in HTTP: the gRPC mapping of those.
    if response.status != 200 {
        let status = match response.status {
            400 => code::INTERNAL,
            401 => code::UNAUTHENTICATED,
            403 => code::PERMISSION_DENIED,
            404 => code::UNIMPLEMENTED,
            413 => return Verdict::TooLarge,
            429 | 502 | 503 | 504 => code::UNAVAILABLE,
            _ => code::UNKNOWN,
        };
        let reason = format!("HTTP {} {}", response.status, text(&response.body));
        return by_code(status, reason, retry_after(response), response.status);
    }
    let header = |name: &str| {
        response
            .trailers
            .get(name)
            .or_else(|| response.headers.get(name))
            .and_then(|v| v.to_str().ok())
    };
    let Some(status) = header("grpc-status").and_then(|s| s.trim().parse::<u32>().ok()) else {
        return Verdict::Retry {
            reason: "the answer ended without a grpc-status".into(),
            after: None,
        };
    };
    if status == code::OK {
        let answer = unframe(&response.body)
            .and_then(|message| ExportLogsServiceResponse::decode(message).ok())
            .map(Answer::from);
        return delivered(answer, events);
    }
    let message = header("grpc-message")
        .map(|m| {
            percent_encoding::percent_decode_str(m)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let details = header("grpc-status-details-bin").and_then(status_details);
    let after = details.as_ref().and_then(|d| d.retry_delay);
    let name = code_name(status);
    let reason = format!("gRPC {name}: {message}");
    if status == code::RESOURCE_EXHAUSTED || status == code::OUT_OF_RANGE {
        if too_large(&message) {
            return Verdict::TooLarge;
        }
        if status == code::RESOURCE_EXHAUSTED && after.is_none() {
            // Without RetryInfo the server says retrying cannot help.
            return Verdict::Refused { reason };
        }
    }
    by_code(status, reason, after, 200)
}

fn by_code(status: u32, reason: String, after: Option<Duration>, http_status: u16) -> Verdict {
    match status {
        code::UNAVAILABLE
        | code::DEADLINE_EXCEEDED
        | code::CANCELLED
        | code::ABORTED
        | code::OUT_OF_RANGE
        | code::DATA_LOSS
        | code::RESOURCE_EXHAUSTED => Verdict::Retry { reason, after },
        code::UNAUTHENTICATED | code::PERMISSION_DENIED => Verdict::Fatal {
            status: if http_status == 200 { 403 } else { http_status },
            reason,
        },
        _ => Verdict::Refused { reason },
    }
}

/// The verdict on an OTLP/HTTP answer, whose body is in `encoding`, to an export of
/// `events` records.
pub fn http_verdict(response: &Response, encoding: Encoding, events: usize) -> Verdict {
    match response.status {
        200..=299 => match encoding_of(response, encoding) {
            Encoding::Protobuf => delivered(
                ExportLogsServiceResponse::decode(&response.body[..])
                    .ok()
                    .map(Answer::from),
                events,
            ),
            Encoding::Json if response.body.trim_ascii().is_empty() => delivered(None, events),
            Encoding::Json => match serde_json::from_slice::<JsonAnswer>(&response.body) {
                Ok(answer) => match answer.read() {
                    Ok(answer) => delivered(Some(answer), events),
                    Err(reason) => Verdict::Invalid { reason },
                },
                // Not an ExportLogsServiceResponse: the status still says accepted.
                Err(_) => delivered(None, events),
            },
        },
        413 => Verdict::TooLarge,
        429 | 502 | 503 | 504 => Verdict::Retry {
            reason: format!(
                "HTTP {}: {}",
                response.status,
                status_message(response, encoding)
            ),
            after: retry_after(response),
        },
        401 | 403 => Verdict::Fatal {
            status: response.status,
            reason: status_message(response, encoding),
        },
        status => Verdict::Refused {
            reason: format!("HTTP {status}: {}", status_message(response, encoding)),
        },
    }
}

/// What a success answer says: its partial success, if any.
#[derive(Debug, Default)]
struct Answer {
    rejected: i64,
    message: String,
}

impl From<ExportLogsServiceResponse> for Answer {
    fn from(response: ExportLogsServiceResponse) -> Self {
        let partial = response.partial_success.unwrap_or_default();
        Self {
            rejected: partial.rejected_log_records,
            message: partial.error_message,
        }
    }
}

/// An `ExportLogsServiceResponse` in OTLP/JSON. The protobuf JSON mapping writes 64-bit
/// integers as strings (`"rejectedLogRecords": "5"`), and receivers also send numbers;
/// field names may be lowerCamelCase or as in the proto.
#[derive(serde::Deserialize)]
struct JsonAnswer {
    #[serde(default, rename = "partialSuccess", alias = "partial_success")]
    partial_success: Option<JsonPartial>,
}

#[derive(serde::Deserialize)]
struct JsonPartial {
    #[serde(default, rename = "rejectedLogRecords", alias = "rejected_log_records")]
    rejected: Option<serde_json::Value>,
    #[serde(default, rename = "errorMessage", alias = "error_message")]
    message: Option<String>,
}

impl JsonAnswer {
    fn read(self) -> Result<Answer, String> {
        let Some(partial) = self.partial_success else {
            return Ok(Answer::default());
        };
        let rejected = match &partial.rejected {
            None | Some(serde_json::Value::Null) => Some(0),
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        let rejected = rejected.ok_or_else(|| {
            format!(
                "partialSuccess.rejectedLogRecords is not an integer: {}",
                partial
                    .rejected
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            )
        })?;
        Ok(Answer {
            rejected,
            message: partial.message.unwrap_or_default(),
        })
    }
}

/// The verdict on a success answer to an export of `events` records.
fn delivered(answer: Option<Answer>, events: usize) -> Verdict {
    let answer = answer.unwrap_or_default();
    match answer.rejected {
        rejected if rejected < 0 || rejected as u64 > events as u64 => Verdict::Invalid {
            reason: format!(
                "the receiver says it rejected {rejected} records of an export of {events}: {}",
                answer.message
            ),
        },
        0 if !answer.message.is_empty() => Verdict::Delivered {
            receipt: None,
            warning: Some(format!("the receiver warns: {}", answer.message)),
        },
        0 => Verdict::Delivered {
            receipt: None,
            warning: None,
        },
        rejected => Verdict::Partial {
            rejected: rejected as u64,
            message: answer.message,
        },
    }
}

/// A server may answer in either encoding whatever was sent; its `Content-Type` says.
fn encoding_of(response: &Response, sent: Encoding) -> Encoding {
    match response
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(t) if t.starts_with("application/json") => Encoding::Json,
        Some(t) if t.starts_with("application/x-protobuf") => Encoding::Protobuf,
        _ => sent,
    }
}

/// The `message` of the `google.rpc.Status` an OTLP/HTTP error carries, else the text.
fn status_message(response: &Response, encoding: Encoding) -> String {
    let message = match encoding_of(response, encoding) {
        Encoding::Protobuf => tonic_types::Status::decode(&response.body[..])
            .ok()
            .map(|s| s.message),
        Encoding::Json => serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string)),
    };
    message
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| text(&response.body))
}

fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// The message of a gRPC body: the first length-prefixed message, uncompressed.
fn unframe(body: &[u8]) -> Option<&[u8]> {
    let (&compressed, rest) = body.split_first()?;
    let length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    // We do not offer compressed answers (no grpc-accept-encoding), so none should come.
    (compressed == 0).then(|| rest.get(4..4 + length)).flatten()
}

/// What the `grpc-status-details-bin` trailer says (a base64 `google.rpc.Status`).
struct Details {
    retry_delay: Option<Duration>,
}

fn status_details(value: &str) -> Option<Details> {
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(value.trim_end_matches('='))
        .ok()?;
    let status = tonic_types::Status::decode(bytes.as_slice()).ok()?;
    let retry_delay = status
        .details
        .iter()
        .find(|any| any.type_url.ends_with("/google.rpc.RetryInfo"))
        .and_then(|any| tonic_types::pb::RetryInfo::decode(any.value.as_slice()).ok())
        .and_then(|info| info.retry_delay)
        .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32));
    Some(Details { retry_delay })
}

/// gRPC servers say a message is over their limit in these words (grpc-go "larger than
/// max", tonic "length too large").
fn too_large(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("too large") || m.contains("larger than max")
}

fn code_name(code: u32) -> &'static str {
    match code {
        code::CANCELLED => "CANCELLED",
        code::UNKNOWN => "UNKNOWN",
        code::INVALID_ARGUMENT => "INVALID_ARGUMENT",
        code::DEADLINE_EXCEEDED => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        code::PERMISSION_DENIED => "PERMISSION_DENIED",
        code::RESOURCE_EXHAUSTED => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        code::ABORTED => "ABORTED",
        code::OUT_OF_RANGE => "OUT_OF_RANGE",
        code::UNIMPLEMENTED => "UNIMPLEMENTED",
        code::INTERNAL => "INTERNAL",
        code::UNAVAILABLE => "UNAVAILABLE",
        code::DATA_LOSS => "DATA_LOSS",
        code::UNAUTHENTICATED => "UNAUTHENTICATED",
        _ => "(unknown code)",
    }
}

/// The start of a body, as text.
fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_string()
}
