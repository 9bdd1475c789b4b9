//! Push requests: events as the request layer keeps them, and the body they become.
//!
//! An event is `<labels as a JSON object>\t<timestamp, ns>\t<line>\n`: what the request
//! layer cuts, halves and re-sends. A body gathers a piece's events into streams (one per
//! label set), each stream's entries ordered by time (Loki refuses an entry older than
//! the newest of its stream by more than its window), written as Loki's `PushRequest`
//! (protobuf, snappy-compressed) or as its JSON form.

use std::collections::HashMap;

use bytes::Bytes;
use flowlog_sink::request::Piece;

/// Loki's `logproto.PushRequest` (pkg/push/push.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// The label set in LogQL's form: `{account_id="1", job="x"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// One event's parts.
pub struct Event<'a> {
    /// `{"name":"value",...}`, names sorted.
    pub labels: &'a [u8],
    pub nanos: i64,
    pub line: &'a [u8],
}

impl<'a> Event<'a> {
    /// The parts of an event the encoder wrote (its newline included or not).
    pub fn parse(event: &'a [u8]) -> Option<Self> {
        let event = event.strip_suffix(b"\n").unwrap_or(event);
        let mut parts = event.splitn(3, |&b| b == b'\t');
        let labels = parts.next()?;
        let nanos = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let line = parts.next()?;
        Some(Self {
            labels,
            nanos,
            line,
        })
    }
}

/// The label set in LogQL's form, `{name="value", ...}`, from its JSON object.
pub fn logql_labels(json: &[u8]) -> String {
    format!("{{{}}}", label_pairs(json).join(", "))
}

/// The labels of a JSON object as LogQL writes each, `name="value"`.
pub fn label_pairs(json: &[u8]) -> Vec<String> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(json).unwrap_or_default();
    map.iter()
        .map(|(name, value)| {
            let value = value.as_str().unwrap_or_default();
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            format!("{name}=\"{escaped}\"")
        })
        .collect()
}

/// A stream of a push: its labels (the JSON object) and entries (timestamp, line).
type Stream<'a> = (&'a [u8], Vec<(i64, &'a [u8])>);

/// The piece's events as streams, label sets in order of appearance, each stream's
/// entries ordered by time.
fn streams(piece: &Piece) -> Vec<Stream<'_>> {
    let mut streams: Vec<Stream<'_>> = Vec::new();
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    for i in 0..piece.len() {
        let Some(event) = Event::parse(piece.event(i)) else {
            continue;
        };
        let at = *index.entry(event.labels).or_insert_with(|| {
            streams.push((event.labels, Vec::new()));
            streams.len() - 1
        });
        streams[at].1.push((event.nanos, event.line));
    }
    for (_, entries) in &mut streams {
        entries.sort_by_key(|(nanos, _)| *nanos);
    }
    streams
}

/// The protobuf body, snappy-compressed (block format, as Loki reads it).
pub fn protobuf_body(piece: &Piece) -> Bytes {
    use prost::Message;
    let request = PushRequest {
        streams: streams(piece)
            .into_iter()
            .map(|(labels, entries)| StreamAdapter {
                labels: logql_labels(labels),
                entries: entries
                    .into_iter()
                    .map(|(nanos, line)| EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: nanos.div_euclid(1_000_000_000),
                            nanos: nanos.rem_euclid(1_000_000_000) as i32,
                        }),
                        line: String::from_utf8_lossy(line).into_owned(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    let encoded = request.encode_to_vec();
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&encoded)
        .expect("snappy compresses any input under 4 GiB");
    Bytes::from(compressed)
}

/// The JSON body: `{"streams":[{"stream":{...},"values":[["<ns>","<line>"],...]}]}`.
pub fn json_body(piece: &Piece) -> Bytes {
    let mut out = Vec::with_capacity(piece.data.len() + 64);
    out.extend_from_slice(b"{\"streams\":[");
    for (i, (labels, entries)) in streams(piece).into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"stream\":");
        out.extend_from_slice(labels);
        out.extend_from_slice(b",\"values\":[");
        for (j, (nanos, line)) in entries.into_iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"[\"");
            out.extend_from_slice(itoa::Buffer::new().format(nanos).as_bytes());
            out.extend_from_slice(b"\",");
            let line = String::from_utf8_lossy(line);
            serde_json::to_writer(&mut out, line.as_ref()).expect("writing to a Vec");
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// A time as Go's `time.Time.String()` writes one in UTC (`2023-11-14 22:13:20 +0000
/// UTC`, a fraction only when there is one, its trailing zeros dropped): how Loki's
/// answers name the entries they refuse.
pub fn go_time(nanos: i64) -> String {
    let seconds = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000);
    let (year, month, day) = flowlog_model::time::civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
    if fraction > 0 {
        let digits = format!("{fraction:09}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text.push_str(" +0000 UTC");
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flowlog_sink::request::{Origin, PieceBuilder};
    use flowlog_sink::Ack;

    /// A piece of `events`, written as the sink writes them.
    pub(crate) fn piece(events: &[&str]) -> Piece {
        let (ack, _wait) = Ack::new();
        let mut builder = PieceBuilder::new(1 << 20);
        builder.share(&ack);
        for (i, e) in events.iter().enumerate() {
            builder.data().extend_from_slice(e.as_bytes());
            builder.commit(Origin {
                source: flowlog_model::SourceId::new("s"),
                line: i as u64 + 1,
            });
        }
        ack.confirm();
        builder.take()
    }

    #[test]
    fn streams_gather_their_entries_in_time_order() {
        let p = piece(&[
            "{\"job\":\"a\"}\t3000000000\tthird\n",
            "{\"job\":\"b\"}\t1000000000\tother \"quoted\"\n",
            "{\"job\":\"a\"}\t1000000000\tfirst\n",
        ]);
        let json: serde_json::Value = serde_json::from_slice(&json_body(&p)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"streams": [
                {"stream": {"job": "a"}, "values": [["1000000000", "first"], ["3000000000", "third"]]},
                {"stream": {"job": "b"}, "values": [["1000000000", "other \"quoted\""]]},
            ]})
        );
        use prost::Message;
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&protobuf_body(&p))
            .unwrap();
        let request = PushRequest::decode(&raw[..]).unwrap();
        assert_eq!(request.streams[0].labels, "{job=\"a\"}");
        assert_eq!(request.streams[0].entries[1].line, "third");
        assert_eq!(
            request.streams[0].entries[0].timestamp,
            Some(Timestamp {
                seconds: 1,
                nanos: 0
            })
        );
    }

    #[test]
    fn times_read_as_go_writes_them() {
        assert_eq!(
            go_time(1_700_000_000_000_000_000),
            "2023-11-14 22:13:20 +0000 UTC"
        );
        assert_eq!(go_time(1_500_000_000), "1970-01-01 00:00:01.5 +0000 UTC");
    }

    #[test]
    fn label_sets_in_logql_form() {
        assert_eq!(
            logql_labels(br#"{"a":"x\"y","b":"z"}"#),
            r#"{a="x\"y", b="z"}"#
        );
    }
}
