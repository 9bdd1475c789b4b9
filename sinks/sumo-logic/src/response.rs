//! What an HTTP Logs source's answer means, as Sumo Logic documents its status codes
//! ("Troubleshooting HTTP Sources"): 200 received; 401 a missing or invalid URL token;
//! 408 timed out while processing (part may be ingested); 429 throttled (the data is
//! dropped, the sender must send it again); 503 and 504 server issues.

use flowlog_sink::http::Response;
use flowlog_sink::request::Verdict;
use flowlog_sink::retry::parse_retry_after;

/// The answer's text, cut to a line's length, for logs and dead letters.
pub fn text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What `response` means for the request that got it.
pub fn verdict(response: &Response) -> Verdict {
    let status = response.status;
    let reason = match text(&response.body) {
        body if body.is_empty() => format!("HTTP {status}"),
        body => format!("HTTP {status}: {body}"),
    };
    let after = response
        .headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    match status {
        200..=299 => Verdict::Delivered {
            receipt: None,
            warning: None,
        },
        408 | 429 | 500..=599 => Verdict::Retry { reason, after },
        413 => Verdict::TooLarge,
        // A request the source cannot take for something in it: halved down to the
        // message, which is dead-lettered with the answer.
        400 => Verdict::Isolate { reason },
        // 401 (URL or token refused), 403, 404 (no such source: a URL regenerated or a
        // source deleted) and the rest: the configuration is wrong, nothing will pass.
        _ => Verdict::Fatal {
            status,
            reason: format!(
                "{reason} (the source refused the request: check the URL{})",
                if status == 401 { " and token" } else { "" }
            ),
        },
    }
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
            trailers: http::HeaderMap::new(),
        }
    }

    #[test]
    fn each_documented_status() {
        assert!(matches!(
            verdict(&response(200, "", None)),
            Verdict::Delivered { .. }
        ));
        let throttled = response(
            429,
            "You have temporarily exceeded your Sumo Logic quota. Please try again at a later time",
            Some("7"),
        );
        match verdict(&throttled) {
            Verdict::Retry { reason, after } => {
                assert!(
                    reason.starts_with("HTTP 429: You have temporarily"),
                    "{reason}"
                );
                assert_eq!(after, Some(std::time::Duration::from_secs(7)));
            }
            other => panic!("{other:?}"),
        }
        for status in [408, 503, 504] {
            assert!(matches!(
                verdict(&response(status, "", None)),
                Verdict::Retry { .. }
            ));
        }
        assert_eq!(verdict(&response(413, "", None)), Verdict::TooLarge);
        assert!(matches!(
            verdict(&response(400, "bad\nline", None)),
            Verdict::Isolate { reason } if reason == "HTTP 400: bad line"
        ));
        for status in [401, 403, 404] {
            assert!(matches!(
                verdict(&response(status, "", None)),
                Verdict::Fatal { status: s, .. } if s == status
            ));
        }
    }
}
