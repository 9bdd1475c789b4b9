//! What a collector's answer means for the request that got it (`protocols.md`, HEC), and
//! which ids an `/ack` answer confirms. Public so the fuzz targets reach the parsing.

use std::time::Duration;

use flowlog_sink::http::Response;
use flowlog_sink::request::{EventVerdict, Verdict};
use flowlog_sink::retry::parse_retry_after;
use serde::Deserialize;

/// The JSON body of a HEC answer.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Reply {
    #[serde(default)]
    pub text: String,
    pub code: Option<i64>,
    #[serde(rename = "ackId")]
    pub ack_id: Option<u64>,
    #[serde(rename = "invalid-event-number")]
    pub invalid_event_number: Option<usize>,
}

/// What to do with the request.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Indexed (or queued for indexing, with an ack id to wait for).
    Accepted {
        ack_id: Option<u64>,
        /// Codes 24/25: accepted, but the indexer is near capacity.
        warning: Option<String>,
    },
    /// A success status whose body is not HEC's (no `code`): nothing says the events were
    /// taken (a proxy's page, an empty answer), so they are sent again.
    Invalid { reason: String },
    /// 413: split the request.
    TooLarge,
    /// Events before `index` were indexed; event `index` is refused for good.
    BadEvent { index: usize, reason: String },
    /// Refused for good as a whole (bad data format, unknown index...).
    Permanent { reason: String },
    /// Try again later (server busy, queue full, throttled).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The token or endpoint is wrong: stop the sink.
    Fatal { status: u16, reason: String },
}

pub(crate) fn classify(response: &Response) -> Outcome {
    let reply: Reply = serde_json::from_slice(&response.body).unwrap_or_default();
    let reason = describe(response.status, &reply, &response.body);
    let after = response
        .headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    match response.status {
        200..=299 => match reply.code {
            Some(24 | 25) => Outcome::Accepted {
                ack_id: reply.ack_id,
                warning: Some(reason),
            },
            Some(_) => Outcome::Accepted {
                ack_id: reply.ack_id,
                warning: None,
            },
            None => Outcome::Invalid {
                reason: format!("HTTP {} without HEC's `code`: {reason}", response.status),
            },
        },
        413 => Outcome::TooLarge,
        400 => match reply.invalid_event_number {
            Some(index) => Outcome::BadEvent { index, reason },
            None => Outcome::Permanent { reason },
        },
        401 | 403 | 404 => Outcome::Fatal {
            status: response.status,
            reason,
        },
        408 | 429 | 500..=599 => Outcome::Retry { reason, after },
        _ => Outcome::Permanent { reason },
    }
}

/// `HEC 400 (code 6): Invalid data format`, or the raw body when it is not HEC JSON.
fn describe(status: u16, reply: &Reply, body: &[u8]) -> String {
    match reply.code {
        Some(code) => format!("HEC {status} (code {code}): {}", reply.text),
        None => {
            let body = String::from_utf8_lossy(&body[..body.len().min(200)]);
            format!("HTTP {status}: {}", body.trim())
        }
    }
}

/// What the request layer does with a request of `events` events that got `response`.
/// An ack id is a receipt to wait for only when `acking` (indexer acknowledgement is on).
pub fn verdict(response: &Response, events: usize, acking: bool) -> Verdict {
    match classify(response) {
        Outcome::Accepted { ack_id, warning } => Verdict::Delivered {
            receipt: ack_id.filter(|_| acking),
            warning,
        },
        Outcome::Invalid { reason } => Verdict::Invalid { reason },
        Outcome::TooLarge => Verdict::TooLarge,
        // Events before `index` were indexed; HEC stopped at the bad one.
        Outcome::BadEvent { index, reason } if index < events => Verdict::Events(
            (0..events)
                .map(|i| match i.cmp(&index) {
                    std::cmp::Ordering::Less => EventVerdict::Delivered,
                    std::cmp::Ordering::Equal => EventVerdict::Refused(reason.clone()),
                    std::cmp::Ordering::Greater => EventVerdict::Unprocessed,
                })
                .collect(),
        ),
        Outcome::BadEvent { reason, .. } | Outcome::Permanent { reason } => {
            Verdict::Refused { reason }
        }
        Outcome::Retry { reason, after } => Verdict::Retry { reason, after },
        Outcome::Fatal { status, reason } => Verdict::Fatal { status, reason },
    }
}

/// The body of an `/ack` answer: `{"acks":{"0":true,"1":false}}`.
#[derive(Debug, Deserialize)]
struct AckReply {
    acks: std::collections::HashMap<String, bool>,
}

/// The ids an `/ack` answer says are indexed; `None` when the body is not an ack answer.
/// Keys that are not ids are ignored (a collector only answers for ids it was asked about).
pub fn acknowledged(body: &[u8]) -> Option<Vec<u64>> {
    let reply: AckReply = serde_json::from_slice(body).ok()?;
    Some(
        reply
            .acks
            .into_iter()
            .filter(|(_, acked)| *acked)
            .filter_map(|(id, _)| id.parse().ok())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str, retry_after: Option<&str>) -> Response {
        let mut headers = http::HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert(http::header::RETRY_AFTER, v.parse().unwrap());
        }
        Response {
            status,
            headers,
            body: bytes::Bytes::from(body.to_string()),
            ..Response::default()
        }
    }

    #[test]
    fn answers_map_to_what_protocols_md_says() {
        let ok = classify(&response(
            200,
            r#"{"text":"Success","code":0,"ackId":7}"#,
            None,
        ));
        assert_eq!(
            ok,
            Outcome::Accepted {
                ack_id: Some(7),
                warning: None
            }
        );
        assert!(matches!(
            classify(&response(
                200,
                r#"{"text":"near capacity","code":24}"#,
                None
            )),
            Outcome::Accepted {
                warning: Some(_),
                ..
            }
        ));
        assert_eq!(
            classify(&response(
                400,
                r#"{"text":"Invalid data format","code":6,"invalid-event-number":3}"#,
                None
            )),
            Outcome::BadEvent {
                index: 3,
                reason: "HEC 400 (code 6): Invalid data format".into()
            }
        );
        assert!(matches!(
            classify(&response(
                400,
                r#"{"text":"Incorrect index","code":7}"#,
                None
            )),
            Outcome::Permanent { .. }
        ));
        assert_eq!(
            classify(&response(
                429,
                r#"{"text":"Too many requests","code":26}"#,
                Some("3")
            )),
            Outcome::Retry {
                reason: "HEC 429 (code 26): Too many requests".into(),
                after: Some(Duration::from_secs(3))
            }
        );
        for code in [9, 18, 19, 20, 23] {
            let body = format!(r#"{{"text":"busy","code":{code}}}"#);
            assert!(matches!(
                classify(&response(503, &body, None)),
                Outcome::Retry { after: None, .. }
            ));
        }
        assert!(matches!(
            classify(&response(
                500,
                r#"{"text":"Internal server error","code":8}"#,
                None
            )),
            Outcome::Retry { .. }
        ));
        assert_eq!(classify(&response(413, "", None)), Outcome::TooLarge);
        for (status, code) in [(401, 2), (401, 3), (403, 4), (403, 1)] {
            let body = format!(r#"{{"text":"Invalid token","code":{code}}}"#);
            assert!(matches!(
                classify(&response(status, &body, None)),
                Outcome::Fatal { .. }
            ));
        }
        assert!(matches!(
            classify(&response(502, "<html>Bad Gateway</html>", None)),
            Outcome::Retry { .. }
        ));
    }
}
