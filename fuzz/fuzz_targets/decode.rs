//! The sniffer and every envelope decoder: arbitrary bytes as a stream (standard input, an
//! object body). Nothing panics, batches keep their promises, and how the bytes are split
//! by the reader never changes what is decoded.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use flowlog_decode::{decode_reader, DecodeOptions, Streaming};
use flowlog_fuzz::{Collect, Trickle};
use flowlog_model::SourceId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first byte picks the settings, so small batches and kept lines are reached too.
    let Some((&knobs, data)) = input.split_first() else {
        return;
    };
    let options = DecodeOptions {
        batch_rows: 1 + (knobs & 0x0f) as usize,
        keep_lines: knobs & 0x10 != 0,
        ..DecodeOptions::default()
    };
    let piece = [1, 3, 17, 64, 511, 4096, 65536, usize::MAX][(knobs >> 5) as usize];
    let source = SourceId::new("fuzz");

    let mut whole = Collect::default();
    let whole_result = decode_reader(data, source.clone(), &options, &mut whole);
    let mut split = Collect::default();
    let split_result = decode_reader(
        Trickle { data, piece },
        source.clone(),
        &options,
        &mut split,
    );

    // Decoded as a stream that arrives over time (emitting after every line, as on an idle
    // pipe): the same rows and dead letters, only in more, smaller batches.
    let streaming = DecodeOptions {
        streaming: Some(Streaming {
            ready: Arc::new(|| false),
            flush_interval: Duration::ZERO,
        }),
        ..options.clone()
    };
    let mut prompt = Collect::default();
    let prompt_result = decode_reader(
        Trickle { data, piece },
        SourceId::new("fuzz"),
        &streaming,
        &mut prompt,
    );
    if let (Ok(a), Ok(b)) = (&whole_result, &prompt_result) {
        assert_eq!(
            (a.records, a.dead_letters),
            (b.records, b.dead_letters),
            "streaming changed the counts"
        );
        assert_eq!(
            whole.line_numbers(),
            prompt.line_numbers(),
            "streaming changed the rows"
        );
        // In order of line: emitting after each line can write a line's dead letter
        // before that of a later JSON line whose envelope failed, which a whole block
        // writes first (the order of dead letters across envelope levels is not promised).
        let by_line = |letters: &[flowlog_decode::DeadLetter]| {
            let mut letters = letters.to_vec();
            letters.sort_by(|a, b| (a.line, &a.reason).cmp(&(b.line, &b.reason)));
            letters
        };
        assert_eq!(
            by_line(&whole.dead_letters),
            by_line(&prompt.dead_letters),
            "streaming changed the dead letters"
        );
    }

    match (&whole_result, &split_result) {
        (Ok(a), Ok(b)) => {
            // (Bytes read may differ when decoding stops early: reads are not lines.)
            let counts = |s: &flowlog_decode::DecodeStats| {
                (
                    s.records,
                    s.dead_letters,
                    s.blank_lines,
                    s.header_lines,
                    s.control_messages,
                )
            };
            assert_eq!(
                counts(a),
                counts(b),
                "stats depend on how the input was split"
            );
            assert_eq!(a.records as usize, whole.rows);
            assert_eq!(a.dead_letters as usize, whole.dead_letters.len());
            assert_eq!(whole, split, "records depend on how the input was split");
        }
        (Err(_), Err(_)) => {}
        // A JSON stream stops at its first syntax error without reading the rest, so
        // whether a broken gzip stream beyond it was reached depends on read-ahead.
        (Ok(_), Err(e)) | (Err(e), Ok(_)) if stopped_early(&whole, &split) => {
            assert!(e.is_corrupt_input(), "{e}");
        }
        _ => panic!("one split failed, the other did not: {whole_result:?} / {split_result:?}"),
    }
});

fn stopped_early(a: &Collect, b: &Collect) -> bool {
    a.dead_letters
        .iter()
        .chain(&b.dead_letters)
        .any(|l| l.reason.contains("the rest of the source was not read"))
}
