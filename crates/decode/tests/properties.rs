//! Property tests of the line decoder and the envelope sniffer.
//!
//! Run longer with `PROPTEST_CASES=100000 cargo test -p flowlog-decode --test properties`.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::Array;
use flowlog_decode::{decode_reader, DeadLetter, DecodeOptions, RecordSink, SinkError};
use flowlog_model::{FieldKind, FlowBatch, FlowFormat, SourceId, FIELDS};
use proptest::prelude::*;

#[derive(Default)]
struct Collect {
    batches: Vec<FlowBatch>,
    dead: Vec<DeadLetter>,
}

impl RecordSink for Collect {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        self.batches.push(batch);
        Ok(())
    }
    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        self.dead.push(letter);
        Ok(())
    }
}

fn decode(
    bytes: &[u8],
    format: Option<FlowFormat>,
    batch_rows: usize,
) -> (
    Collect,
    Result<flowlog_decode::DecodeStats, flowlog_decode::DecodeError>,
) {
    let mut sink = Collect::default();
    let options = DecodeOptions {
        format,
        batch_rows,
        keep_lines: true,
        ..DecodeOptions::default()
    };
    let result = decode_reader(bytes, SourceId::new("prop"), &options, &mut sink);
    (sink, result)
}

/// A value of a field kind, as text, and what the decoder should store.
#[derive(Debug, Clone, PartialEq)]
enum Stored {
    Null,
    Text(String),
    Int(i64),
}

fn value_of(kind: FieldKind) -> BoxedStrategy<(String, Stored)> {
    let null = Just(("-".to_string(), Stored::Null));
    let int = |max: i64| (0..=max).prop_map(|n| (n.to_string(), Stored::Int(n)));
    let valued = match kind {
        FieldKind::Text => "[A-Za-z0-9_:/.-]{1,40}|[a-zé漢б]{1,8}"
            .prop_filter("not the null marker", |s| s != "-")
            .prop_map(|s| (s.clone(), Stored::Text(s)))
            .boxed(),
        FieldKind::IpAddr => prop_oneof![
            any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
            any::<[u16; 8]>().prop_map(|g| std::net::Ipv6Addr::from(g).to_string()),
        ]
        .prop_map(|s| (s.clone(), Stored::Text(s)))
        .boxed(),
        FieldKind::Port => int(65_535).boxed(),
        FieldKind::Code => int(255).boxed(),
        FieldKind::Int32 => int(i32::MAX as i64).boxed(),
        FieldKind::Count => int(i64::MAX).boxed(),
        FieldKind::EpochTime => prop_oneof![
            (0i64..100_000_000_000).prop_map(|s| (s.to_string(), Stored::Int(s * 1000))),
            (1_000_000_000_000i64..10_000_000_000_000)
                .prop_map(|ms| (ms.to_string(), Stored::Int(ms))),
        ]
        .boxed(),
    };
    prop_oneof![1 => null, 4 => valued].boxed()
}

/// A format (a random selection of catalogue fields in random order) and records for it.
fn format_and_records() -> impl Strategy<Value = (Vec<usize>, Vec<Vec<(String, Stored)>>)> {
    proptest::sample::subsequence((0..FIELDS.len()).collect::<Vec<_>>(), 1..20)
        .prop_shuffle()
        .prop_flat_map(|fields| {
            let row = fields
                .iter()
                .map(|&f| value_of(FIELDS[f].kind))
                .collect::<Vec<_>>();
            (Just(fields), proptest::collection::vec(row, 0..40))
        })
}

fn separator() -> impl Strategy<Value = String> {
    "[ \t]{1,3}"
}

proptest! {
    /// Any record rendered with any spacing decodes to exactly its values, with or without
    /// a header line, across batch boundaries.
    #[test]
    fn records_round_trip(
        (fields, rows) in format_and_records(),
        seps in proptest::collection::vec(separator(), 64),
        header in any::<bool>(),
        crlf in any::<bool>(),
        batch_rows in 1usize..50,
    ) {
        let names: Vec<&str> = fields.iter().map(|&f| FIELDS[f].name).collect();
        let mut text = String::new();
        if header {
            text.push_str(&names.join(" "));
            text.push('\n');
        }
        let mut rendered = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let mut line = String::new();
            for (i, (token, _)) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str(&seps[(r + i) % seps.len()]);
                }
                line.push_str(token);
            }
            text.push_str(&line);
            text.push_str(if crlf { "\r\n" } else { "\n" });
            rendered.push(line);
        }
        let format = (!header).then(|| FlowFormat::from_names(&names).unwrap());
        let (sink, result) = decode(text.as_bytes(), format, batch_rows);
        let stats = result.unwrap();
        prop_assert!(sink.dead.is_empty(), "{:?}", sink.dead);
        prop_assert_eq!(stats.records as usize, rows.len());
        let mut row = 0;
        for batch in &sink.batches {
            prop_assert!(batch.num_rows() <= batch_rows);
            for i in 0..batch.num_rows() {
                prop_assert_eq!(batch.line_numbers[i] as usize, row + 1 + header as usize);
                let kept = batch.lines.as_ref().expect("lines were asked for").value(i);
                prop_assert_eq!(kept, rendered[row].as_str());
                for (&field, (_, expected)) in fields.iter().zip(&rows[row]) {
                    let column = batch.records.column(field);
                    let got = if column.is_null(i) {
                        Stored::Null
                    } else {
                        match FIELDS[field].kind {
                            FieldKind::Text | FieldKind::IpAddr => Stored::Text(column.as_string_view().value(i).to_string()),
                            FieldKind::Count => Stored::Int(column.as_primitive::<Int64Type>().value(i)),
                            FieldKind::EpochTime => Stored::Int(column.as_primitive::<TimestampMillisecondType>().value(i)),
                            _ => Stored::Int(column.as_primitive::<Int32Type>().value(i) as i64),
                        }
                    };
                    prop_assert_eq!(&got, expected, "field {}", FIELDS[field].name);
                }
                row += 1;
            }
        }
        prop_assert_eq!(row, rows.len());
    }

    /// Arbitrary text never panics, and every non-blank line is a record, a header or a
    /// dead letter: nothing is lost silently.
    #[test]
    fn arbitrary_text_is_accounted_for(lines in proptest::collection::vec("[ -~\t]{0,80}|[0-9 .:-]{0,60}", 0..30)) {
        let text = lines.join("\n");
        // Inputs starting with `{` are JSON, not text; this property is about text.
        prop_assume!(!text.trim_start().starts_with('{'));
        let (sink, result) = decode(text.as_bytes(), None, 7);
        let stats = result.unwrap();
        let records: usize = sink.batches.iter().map(|b| b.num_rows()).sum();
        prop_assert_eq!(records as u64, stats.records);
        prop_assert_eq!(sink.dead.len() as u64, stats.dead_letters);
        // Separators are spaces, tabs and control characters: a line of only those is blank.
        let blank = |l: &&String| l.bytes().all(|c| c < 0x21);
        let non_blank = lines.iter().filter(|l| !blank(l)).count() as u64;
        prop_assert_eq!(stats.records + stats.dead_letters + stats.header_lines, non_blank);
        prop_assert!(stats.blank_lines <= lines.len() as u64 - non_blank);
    }

    /// The sniffer and every envelope decoder survive arbitrary bytes behind every magic
    /// prefix: an error or dead letters, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in prop_oneof![
            Just(vec![]),
            Just(vec![0x1f, 0x8b]),
            Just(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]),
            Just(b"PAR1".to_vec()),
            Just(b"{".to_vec()),
            Just(b"{\"records\":[{\"data\":\"".to_vec()),
            Just(b"{\"messageType\":\"DATA_MESSAGE\",\"logEvents\":[{\"message\":\"".to_vec()),
            Just(b"{\"awslogs\":{\"data\":\"H4sI".to_vec()),
        ],
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = prefix;
        bytes.extend(body);
        let (sink, result) = decode(&bytes, None, 5);
        if let Ok(stats) = result {
            prop_assert_eq!(sink.dead.len() as u64, stats.dead_letters);
        }
    }
}

#[test]
fn sink_errors_stop_decoding() {
    struct Refuse;
    impl RecordSink for Refuse {
        fn batch(&mut self, _: FlowBatch) -> Result<(), SinkError> {
            Err("closed".into())
        }
        fn dead_letter(&mut self, _: DeadLetter) -> Result<(), SinkError> {
            Err("closed".into())
        }
    }
    let line = "2 123456789010 eni-1 1.1.1.1 1.1.1.1 1 1 6 1 1 1 1 ACCEPT OK\n";
    let result = decode_reader(
        line.as_bytes(),
        SourceId::new("x"),
        &DecodeOptions::default(),
        &mut Refuse,
    );
    assert!(matches!(result, Err(flowlog_decode::DecodeError::Sink(_))));
}
