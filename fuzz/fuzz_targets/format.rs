//! The format parser (`--format`, `log_format`) and S3 header lines, then the line decoder
//! under whatever format they yield.
#![no_main]

use flowlog_decode::LineDecoder;
use flowlog_fuzz::Collect;
use flowlog_model::{FlowFormat, SourceId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let (spec, lines) = text.split_once('\n').unwrap_or((&text, ""));

    // A parsed format prints as a spec that parses back to itself.
    let parsed = FlowFormat::parse(spec).ok();
    if let Some(format) = &parsed {
        let again = FlowFormat::parse(&format.to_string()).expect("a printed format parses");
        assert_eq!(&again, format);
    }
    if let Some(format) = FlowFormat::from_header_line(spec) {
        assert_eq!(FlowFormat::parse(&format.to_string()).as_ref(), Ok(&format));
    }

    let mut decoder = LineDecoder::new(SourceId::new("fuzz"), parsed, 3).keeping_lines(true);
    let mut sink = Collect::default();
    let block = arrow_buffer_from(lines.as_bytes());
    decoder
        .decode_lines(block, 2, &mut sink)
        .expect("a collecting sink never fails");
    decoder
        .flush(&mut sink)
        .expect("a collecting sink never fails");
    let stats = decoder.stats();
    assert_eq!(stats.records as usize, sink.rows);
    assert_eq!(stats.dead_letters as usize, sink.dead_letters.len());
});

fn arrow_buffer_from(bytes: &[u8]) -> arrow_buffer::Buffer {
    arrow_buffer::Buffer::from(bytes.to_vec())
}
