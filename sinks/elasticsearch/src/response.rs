//! What a cluster's answer to `_bulk` means for the request and for each document
//! (`protocols.md`, Elasticsearch `_bulk`). Public so the fuzz targets reach it.

use flowlog_sink::http::Response;
use flowlog_sink::request::{EventVerdict, Verdict};
use flowlog_sink::retry::parse_retry_after;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The parts of a bulk answer read. Items are read only when `errors` is true; an answer
/// without `errors` says nothing of the documents (it is not read as `false`).
#[derive(Deserialize)]
struct BulkAnswer<'a> {
    #[serde(default)]
    errors: Option<bool>,
    #[serde(borrow, default)]
    items: Option<&'a RawValue>,
}

/// One item: `{"create": {"status": 201, ...}}`, whatever the action.
#[derive(Deserialize)]
struct Item {
    #[serde(alias = "index", alias = "delete", alias = "update")]
    create: ItemResult,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<ErrorBody>,
}

/// Elasticsearch's error object (`type`, `reason`); some answers give a string.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object(ErrorBody),
    Text(String),
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorField,
}

/// `409 version_conflict_engine_exception: [id]: version conflict...`, or the start of
/// the body when it is not an Elasticsearch error.
fn describe(status: u16, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorAnswer>(body).map(|a| a.error) {
        Ok(ErrorField::Object(e)) => {
            format!("{status} {}: {}", e.kind, e.reason.unwrap_or_default())
        }
        Ok(ErrorField::Text(text)) => format!("{status}: {text}"),
        Err(_) => {
            let body = String::from_utf8_lossy(&body[..body.len().min(200)]);
            format!("HTTP {status}: {}", body.trim())
        }
    }
}

/// What the request layer does with a `_bulk` request of `events` documents that got
/// `response`.
pub fn verdict(response: &Response, events: usize) -> Verdict {
    let status = response.status;
    let after = || {
        response
            .headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
    };
    match status {
        200..=299 => items(&response.body, events),
        413 => Verdict::TooLarge,
        401 | 403 => Verdict::Fatal {
            status,
            reason: describe(status, &response.body),
        },
        408 | 429 | 500..=599 => Verdict::Retry {
            reason: describe(status, &response.body),
            after: after(),
        },
        _ => Verdict::Refused {
            reason: describe(status, &response.body),
        },
    }
}

/// The verdict of a 2xx answer: every document delivered unless `errors`, else one
/// verdict per item.
fn items(body: &[u8], events: usize) -> Verdict {
    let answer = match serde_json::from_slice::<BulkAnswer>(body) {
        Ok(answer) => answer,
        Err(e) => {
            // Nothing says what was stored; ids make sending again safe.
            return Verdict::Invalid {
                reason: format!("the bulk answer is not JSON ({e})"),
            };
        }
    };
    match answer.errors {
        Some(false) => {
            return Verdict::Delivered {
                receipt: None,
                warning: None,
            }
        }
        Some(true) => {}
        None => {
            return Verdict::Invalid {
                reason: format!(
                    "the bulk answer has no `errors` member: it says nothing of the {events} \
                     documents sent ({})",
                    String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
                ),
            }
        }
    }
    let parsed = answer
        .items
        .map(|raw| serde_json::from_str::<Vec<Item>>(raw.get()));
    let items = match parsed {
        Some(Ok(items)) if items.len() == events => items,
        Some(Ok(items)) => {
            return Verdict::Invalid {
                reason: format!(
                    "the bulk answer lists {} items for {events} documents",
                    items.len()
                ),
            }
        }
        _ => {
            return Verdict::Invalid {
                reason: "the bulk answer has errors but no readable items".into(),
            }
        }
    };
    Verdict::Events(
        items
            .into_iter()
            .map(|item| {
                let result = item.create;
                match result.status {
                    200..=299 => EventVerdict::Delivered,
                    // `create` of an id that is there: sent before (a lost answer, a
                    // restart), so it is delivered.
                    409 => EventVerdict::Delivered,
                    429 | 500..=599 => EventVerdict::Retry,
                    status => {
                        let error = result.error.unwrap_or_default();
                        EventVerdict::Refused(format!(
                            "{status} {}: {}",
                            error.kind,
                            error.reason.unwrap_or_default()
                        ))
                    }
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from(body.to_string()),
            ..Response::default()
        }
    }

    #[test]
    fn items_decide_each_document() {
        let body = r#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"logs-aws.vpcflow-default","_id":"a-1","status":201,"result":"created"}},
            {"create":{"_id":"a-2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[a-2]: version conflict"}}},
            {"create":{"_id":"a-3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected"}}},
            {"create":{"_id":"a-4","status":503,"error":{"type":"unavailable_shards_exception","reason":"no primary"}}},
            {"create":{"_id":"a-5","status":400,"error":{"type":"document_parsing_exception","reason":"[1:9] failed to parse field [source.port]"}}},
            {"index":{"_id":"a-6","status":400,"error":{"type":"illegal_argument_exception","reason":"only write ops with an op_type of create are allowed in data streams"}}}
        ]}"#;
        let Verdict::Events(items) = verdict(&response(200, body), 6) else {
            panic!("per-item verdicts expected");
        };
        assert_eq!(items[0], EventVerdict::Delivered);
        assert_eq!(items[1], EventVerdict::Delivered);
        assert_eq!(items[2], EventVerdict::Retry);
        assert_eq!(items[3], EventVerdict::Retry);
        assert_eq!(
            items[4],
            EventVerdict::Refused(
                "400 document_parsing_exception: [1:9] failed to parse field [source.port]".into()
            )
        );
        assert!(matches!(&items[5], EventVerdict::Refused(r) if r.contains("data streams")));
    }

    #[test]
    fn whole_answers() {
        let ok = r#"{"took":1,"errors":false,"items":[{"create":{"status":201}}]}"#;
        assert!(matches!(
            verdict(&response(200, ok), 1),
            Verdict::Delivered { receipt: None, .. }
        ));
        assert_eq!(verdict(&response(413, ""), 5), Verdict::TooLarge);
        let auth = r#"{"error":{"type":"security_exception","reason":"missing authentication credentials"},"status":401}"#;
        assert_eq!(
            verdict(&response(401, auth), 5),
            Verdict::Fatal {
                status: 401,
                reason: "401 security_exception: missing authentication credentials".into()
            }
        );
        let mut busy = response(
            429,
            r#"{"error":{"type":"es_rejected_execution_exception","reason":"queue full"},"status":429}"#,
        );
        busy.headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("3"),
        );
        assert!(matches!(
            verdict(&busy, 5),
            Verdict::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            verdict(&response(502, "<html>bad gateway</html>"), 5),
            Verdict::Retry { reason, .. } if reason.starts_with("HTTP 502")
        ));
        assert!(matches!(
            verdict(&response(400, r#"{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"},"status":400}"#), 5),
            Verdict::Refused { reason } if reason.contains("newline")
        ));
        // An answer that does not account for every document is not trusted.
        let short = r#"{"errors":true,"items":[{"create":{"status":201}}]}"#;
        assert!(matches!(
            verdict(&response(200, short), 2),
            Verdict::Invalid { .. }
        ));
        assert!(matches!(
            verdict(&response(200, "not json"), 2),
            Verdict::Invalid { .. }
        ));
        // No `errors` member is not `errors: false`: nothing says what was stored.
        for body in [
            "{}",
            r#"{"took":1}"#,
            r#"{"items":[]}"#,
            r#"{"errors":null}"#,
        ] {
            assert!(
                matches!(verdict(&response(200, body), 3), Verdict::Invalid { .. }),
                "{body}"
            );
        }
    }
}
