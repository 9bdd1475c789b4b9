//! What Loki's answer to a push means.
//!
//! 204 (or any 2xx): every entry is stored. 429: over the tenant's or a stream's rate
//! limit, nothing stored: sent again after a backoff (`Retry-After` honoured); 5xx the
//! same. 413: halved. 401, 403, 404 and the rest of 4xx: the sink stops.
//!
//! 400 is partial: Loki stores the entries it can and names, one per line, those it
//! ignored, by timestamp (as Go prints a time) and stream, with a reason (too old, out of
//! order, too far behind, too new). Those are dead-lettered with that reason and never
//! sent again; the rest count as delivered. When the answer says more were ignored in a
//! stream than it names (Loki names at most `max_returned_errors`, 10 by default), the
//! stream's entries it does not name are dead-lettered too, as possibly ignored: an entry
//! may then be both stored and dead-lettered, never lost. A 400 that names no entry
//! (labels Loki cannot parse) is halved down to the entry at fault.

use std::collections::HashMap;

use flowlog_sink::http::Response;
use flowlog_sink::request::{EventVerdict, Piece, Verdict};
use flowlog_sink::retry::parse_retry_after;

use crate::push::{go_time, logql_labels, Event};

/// An entry an answer names.
#[derive(Debug, PartialEq)]
struct Named {
    time: String,
    stream: Option<String>,
    reason: String,
    /// The oldest time the stream took (ns), when the reason says.
    oldest_acceptable: Option<i64>,
}

impl Named {
    fn new(time: &str, stream: Option<String>, reason: String) -> Self {
        let oldest_acceptable = reason
            .split_once("oldest acceptable timestamp is: ")
            .and_then(|(_, t)| flowlog_model::time::parse_rfc3339(t.trim_end_matches('\'')))
            .map(|ms| ms.saturating_mul(1_000_000));
        Self {
            time: time.to_string(),
            stream,
            reason,
            oldest_acceptable,
        }
    }
}

/// What `response` means for the push of `piece`'s entries.
pub fn verdict(response: &Response, piece: &Piece) -> Verdict {
    let status = response.status;
    let body = String::from_utf8_lossy(&response.body);
    let reason = match body.trim() {
        "" => format!("HTTP {status}"),
        text => format!("HTTP {status}: {}", first_line(text)),
    };
    match status {
        200..=299 => Verdict::Delivered {
            receipt: None,
            warning: None,
        },
        429 | 500..=599 => Verdict::Retry {
            reason,
            after: response
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after),
        },
        413 => Verdict::TooLarge,
        400 => per_entry(&body, piece).unwrap_or(Verdict::Isolate { reason }),
        _ => Verdict::Fatal { status, reason },
    }
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or_default();
    &line[..line.floor_char_boundary(300)]
}

/// The verdict of each entry a 400 names, or `None` when it names none.
fn per_entry(body: &str, piece: &Piece) -> Option<Verdict> {
    let (named, totals) = parse(body);
    if named.is_empty() {
        return None;
    }
    let mut streams: HashMap<&[u8], String> = HashMap::new();
    let mut verdicts = Vec::with_capacity(piece.len());
    let mut refused_in: HashMap<String, usize> = HashMap::new();
    // Each event's stream and time, for the entries counted but not named.
    let mut events: Vec<Option<(String, i64)>> = Vec::with_capacity(piece.len());
    for i in 0..piece.len() {
        let Some(event) = Event::parse(piece.event(i)) else {
            verdicts.push(EventVerdict::Refused("not an entry this sink wrote".into()));
            events.push(None);
            continue;
        };
        let stream = streams
            .entry(event.labels)
            .or_insert_with(|| logql_labels(event.labels))
            .clone();
        let time = go_time(event.nanos);
        let hit = named
            .iter()
            .find(|n| n.time == time && n.stream.as_ref().is_none_or(|s| *s == stream));
        match hit {
            Some(n) => {
                *refused_in.entry(stream.clone()).or_default() += 1;
                verdicts.push(EventVerdict::Refused(format!("HTTP 400: {}", n.reason)));
            }
            None => verdicts.push(EventVerdict::Delivered),
        }
        events.push(Some((stream, event.nanos)));
    }
    // Ignored entries the answer counts but does not name: those older than the oldest
    // time the named ones say was acceptable, or when none says, every other entry of
    // the stream (possibly stored: dead-lettered rather than lost).
    for (stream, total) in totals {
        if refused_in.get(&stream).copied().unwrap_or(0) >= total {
            continue;
        }
        let cutoff = named
            .iter()
            .filter(|n| n.stream.as_deref() == Some(stream.as_str()))
            .filter_map(|n| n.oldest_acceptable)
            .max();
        for (verdict, at) in verdicts.iter_mut().zip(&events) {
            let Some((at_stream, nanos)) = at else {
                continue;
            };
            if *verdict != EventVerdict::Delivered || *at_stream != stream {
                continue;
            }
            *verdict = match cutoff {
                Some(cutoff) if *nanos < cutoff => EventVerdict::Refused(format!(
                    "HTTP 400: entry too far behind (one of {total} Loki ignored in stream \
                     {stream}, older than the oldest acceptable time it named)"
                )),
                Some(_) => continue,
                None => EventVerdict::Refused(format!(
                    "HTTP 400: Loki ignored {total} entries of stream {stream} and named only \
                     some; this one may have been stored"
                )),
            };
        }
    }
    Some(Verdict::Events(verdicts))
}

/// The entries a 400 names, and per stream how many it says were ignored.
fn parse(body: &str) -> (Vec<Named>, Vec<(String, usize)>) {
    let mut named = Vec::new();
    let mut totals = Vec::new();
    for line in body.lines() {
        let line = line.trim().trim_end_matches(',');
        if let Some(rest) = line.strip_prefix("entry with timestamp ") {
            // `<T> ignored, reason: '<R>'[ for stream: <S>]`
            let Some((time, rest)) = rest.split_once(" ignored, reason: '") else {
                continue;
            };
            let (reason, stream) = match rest.rsplit_once("' for stream: ") {
                Some((reason, stream)) => (reason, Some(stream.to_string())),
                None => (rest.trim_end_matches('\''), None),
            };
            named.push(Named::new(time, stream, reason.to_string()));
        } else if let Some(rest) = line.strip_prefix("entry for stream '") {
            // `<S>' has timestamp too old: <T>, oldest acceptable timestamp is: <T2>`
            let Some((stream, rest)) = rest.split_once("' has timestamp ") else {
                continue;
            };
            let Some((what, time)) = rest.split_once(": ") else {
                continue;
            };
            let time = time.split(", ").next().unwrap_or(time);
            named.push(Named::new(
                time,
                Some(stream.to_string()),
                format!("timestamp {what}"),
            ));
        } else if let Some(at) = line.find("total ignored: ") {
            // `[user '<u>', ]total ignored: <N> out of <M>[ for stream: <S>]`
            let rest = &line[at + "total ignored: ".len()..];
            let total = rest.split(' ').next().and_then(|n| n.parse().ok());
            let stream = rest.split_once(" for stream: ").map(|(_, s)| s.to_string());
            if let (Some(total), Some(stream)) = (total, stream) {
                // The newer form names the stream once, in this trailer, for the entries
                // named above it.
                for n in named.iter_mut().filter(|n| n.stream.is_none()) {
                    n.stream = Some(stream.clone());
                }
                totals.push((stream, total));
            }
        }
    }
    (named, totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_of_an_ingesters_answer_and_a_distributors() {
        let newer = "entry with timestamp 2023-11-14 22:13:20 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2023-11-14T22:13:20Z, oldest acceptable timestamp is: 2023-11-15T00:00:00Z',\n\
                     user 'fake', total ignored: 3 out of 10 for stream: {job=\"a\"}";
        let (named, totals) = parse(newer);
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].time, "2023-11-14 22:13:20 +0000 UTC");
        assert_eq!(named[0].stream.as_deref(), Some("{job=\"a\"}"));
        assert!(named[0].reason.starts_with("entry too far behind"));
        assert_eq!(named[0].oldest_acceptable, Some(1_700_006_400_000_000_000));
        assert_eq!(totals, [("{job=\"a\"}".to_string(), 3)]);

        let older = "entry with timestamp 1970-01-01 00:00:01 +0000 UTC ignored, reason: 'entry out of order' for stream: {foo=\"bar\"},\ntotal ignored: 1 out of 2";
        let (named, totals) = parse(older);
        assert_eq!(named[0].reason, "entry out of order");
        assert_eq!(named[0].stream.as_deref(), Some("{foo=\"bar\"}"));
        assert!(totals.is_empty());

        let distributor = "entry for stream '{job=\"a\"}' has timestamp too old: 2023-11-14 22:13:20 +0000 UTC, oldest acceptable timestamp is: 2023-11-20 00:00:00 +0000 UTC";
        let (named, _) = parse(distributor);
        assert_eq!(named[0].time, "2023-11-14 22:13:20 +0000 UTC");
        assert_eq!(named[0].reason, "timestamp too old");
    }

    #[test]
    fn statuses() {
        let response = |status: u16| Response {
            status,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from_static(
                b"error at least one label pair is required per stream",
            ),
            trailers: http::HeaderMap::new(),
        };
        let piece = Piece::default();
        assert!(matches!(
            verdict(&response(204), &piece),
            Verdict::Delivered { .. }
        ));
        assert!(matches!(
            verdict(&response(429), &piece),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            verdict(&response(502), &piece),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            verdict(&response(401), &piece),
            Verdict::Fatal { .. }
        ));
        assert!(matches!(
            verdict(&response(400), &piece),
            Verdict::Isolate { .. }
        ));
        assert_eq!(verdict(&response(413), &piece), Verdict::TooLarge);
    }
}
