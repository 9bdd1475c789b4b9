//! What Loki's answer to a push means.
//!
//! 204 (or any 2xx): every entry is stored. 429: over the tenant's or a stream's rate
//! limit, nothing stored: sent again after a backoff (`Retry-After` honoured); 5xx the
//! same. 413: halved. 401, 403, 404 and the rest of 4xx: the sink stops.
//!
//! 400 is partial: Loki stores the entries it can and names, one per line, those it
//! ignored, by timestamp (as Go prints a time) and stream, with a reason (too old, out of
//! order, too far behind, too new). Those are dead-lettered with that reason and never
//! sent again, as are entries older than the oldest time Loki says their stream accepts.
//! Loki names at most `max_returned_errors` (10 by default), and some versions only the
//! last: every entry it does not name is sent again, and Loki drops the ones it stored as
//! duplicates (an entry's time carries its place in its source, so a stored entry and its
//! resend are the same entry). Each round dead-letters at least one named entry, so the
//! rounds end. A 400 that names no entry of the push (labels Loki cannot parse, an
//! answer in an unknown form) is halved down to the entry at fault.

use std::collections::HashMap;

use flowlog_sink::http::Response;
use flowlog_sink::request::{EventVerdict, Piece, Verdict};
use flowlog_sink::retry::parse_retry_after;

use crate::push::{go_time, label_pairs, Event};

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

/// The verdict of each entry of the piece after a 400, or `None` when the answer names
/// none of them.
fn per_entry(body: &str, piece: &Piece) -> Option<Verdict> {
    let (named, _) = parse(body);
    // Per label set: its LogQL form and its `name="value"` pairs (Loki may name a stream
    // with labels of its own added, such as Loki 3's `service_name`).
    let mut streams: HashMap<&[u8], (String, Vec<String>)> = HashMap::new();
    let mut verdicts = Vec::with_capacity(piece.len());
    let mut matched = false;
    for i in 0..piece.len() {
        let Some(event) = Event::parse(piece.event(i)) else {
            verdicts.push(EventVerdict::Refused("not an entry this sink wrote".into()));
            continue;
        };
        let (stream, pairs) = streams.entry(event.labels).or_insert_with(|| {
            let pairs = label_pairs(event.labels);
            (format!("{{{}}}", pairs.join(", ")), pairs)
        });
        let ours = |theirs: &Option<String>| {
            theirs.as_ref().is_none_or(|s| {
                s == stream.as_str() || pairs.iter().all(|p| s.contains(p.as_str()))
            })
        };
        let time = go_time(event.nanos);
        if let Some(n) = named.iter().find(|n| n.time == time && ours(&n.stream)) {
            matched = true;
            verdicts.push(EventVerdict::Refused(format!("HTTP 400: {}", n.reason)));
            continue;
        }
        // Loki prints the oldest time a stream accepts to the second, at or below the
        // true limit: an entry before it is refused as surely as a named one.
        let cutoff = named
            .iter()
            .filter(|n| ours(&n.stream))
            .filter_map(|n| n.oldest_acceptable)
            .max();
        verdicts.push(match cutoff {
            Some(cutoff) if event.nanos < cutoff => EventVerdict::Refused(format!(
                "HTTP 400: entry too far behind: older than {}, the oldest time Loki said \
                 stream {stream} accepts",
                go_time(cutoff)
            )),
            // Stored, or ignored without being named (Loki names ten at most, and some
            // versions one): sent again. Loki drops a stored copy as the duplicate it is
            // (same stream, time and line), and names what it ignores again.
            _ => EventVerdict::Unprocessed,
        });
    }
    matched.then_some(Verdict::Events(verdicts))
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

    /// Loki 3 names a stream with its own `service_name` added, names one ignored entry
    /// and counts none: the named one is dead-lettered, the others sent again (a stored
    /// copy is dropped by Loki); an answer naming none of the push halves it.
    #[test]
    fn an_entry_named_under_more_labels_is_refused_and_the_unnamed_are_sent_again() {
        let events = [
            "{\"job\":\"vpc\"}\t1700000000000000001\tfirst",
            "{\"job\":\"vpc\"}\t1700000000000000002\tsecond",
            "{\"job\":\"vpc\"}\t1600000000000000003\told",
        ];
        let piece = crate::push::tests::piece(&events);
        let answer = |body: &str| Response {
            status: 400,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from(body.to_string()),
            trailers: http::HeaderMap::new(),
        };
        let named = "entry with timestamp 2023-11-14 22:13:20.000000002 +0000 UTC ignored, \
                     reason: 'entry out of order' for stream: {job=\"vpc\", service_name=\"vpc\"}";
        let Verdict::Events(verdicts) = verdict(&answer(named), &piece) else {
            panic!("per entry");
        };
        assert_eq!(verdicts[0], EventVerdict::Unprocessed);
        assert_eq!(
            verdicts[1],
            EventVerdict::Refused("HTTP 400: entry out of order".into())
        );
        assert_eq!(verdicts[2], EventVerdict::Unprocessed);
        // Older than the oldest time the stream accepts: refused though not named.
        let behind = "entry with timestamp 2023-11-14 22:13:20.000000002 +0000 UTC ignored, \
                      reason: 'entry too far behind, oldest acceptable timestamp is: \
                      2023-11-14T21:13:20Z' for stream: {job=\"vpc\"}";
        let Verdict::Events(verdicts) = verdict(&answer(behind), &piece) else {
            panic!("per entry");
        };
        assert_eq!(verdicts[0], EventVerdict::Unprocessed);
        assert!(matches!(&verdicts[2], EventVerdict::Refused(r) if r.contains("too far behind")));
        let elsewhere = named.replace("vpc\", service_name", "other\", service_name");
        assert!(matches!(
            verdict(&answer(&elsewhere), &piece),
            Verdict::Isolate { .. }
        ));
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
