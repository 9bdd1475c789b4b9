//! Decoding a stream that arrives over time (`DecodeOptions::streaming`): the same records
//! as reading it whole, however the stream is cut, emitted as lines end.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use flowlog_decode::{decode_reader, DeadLetter, DecodeOptions, RecordSink, SinkError, Streaming};
use flowlog_model::{FlowBatch, SourceId};

const LINE: &str =
    "2 123456789010 eni-1 10.0.0.1 10.0.0.2 443 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n";

#[derive(Default)]
struct Collect {
    batches: Vec<Vec<u64>>,
    dead: usize,
    idle: usize,
}

impl RecordSink for Collect {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        self.batches.push(batch.line_numbers.to_vec());
        Ok(())
    }
    fn dead_letter(&mut self, _: DeadLetter) -> Result<(), SinkError> {
        self.dead += 1;
        Ok(())
    }
    fn idle(&mut self) -> Result<(), SinkError> {
        self.idle += 1;
        Ok(())
    }
}

/// Hands out one byte per read, as a slow pipe may.
struct ByteByByte<'a>(&'a [u8]);

impl Read for ByteByByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some((first, rest)) = self.0.split_first() else {
            return Ok(0);
        };
        buf[0] = *first;
        self.0 = rest;
        Ok(1)
    }
}

/// Streaming on an input that is never "ready": every ended line is due at once.
fn idle_pipe(input: &[u8]) -> Collect {
    let options = DecodeOptions {
        streaming: Some(Streaming {
            ready: Arc::new(|| false),
            flush_interval: Duration::ZERO,
        }),
        ..DecodeOptions::default()
    };
    let mut sink = Collect::default();
    decode_reader(ByteByByte(input), SourceId::new("-"), &options, &mut sink).unwrap();
    sink
}

#[test]
fn each_line_is_emitted_as_it_ends() {
    let text = LINE.repeat(3);
    let sink = idle_pipe(text.as_bytes());
    assert_eq!(sink.batches, [vec![1], vec![2], vec![3]]);
    assert!(sink.idle >= 3);

    let json: String = (0..3)
        .map(|_| format!("{{\"message\":\"{}\"}}\n", LINE.trim_end()))
        .collect();
    let sink = idle_pipe(json.as_bytes());
    assert_eq!(sink.batches, [vec![1], vec![2], vec![3]]);
}

#[test]
fn a_byte_order_mark_and_white_space_first_do_not_end_the_stream() {
    // Found by the decode fuzz target: the mark and a space, read one byte at a time, were
    // sniffed as an empty stream, and nothing after them was read.
    let text = format!("\u{feff} \n{LINE}not a flow log\n");
    let sink = idle_pipe(text.as_bytes());
    assert_eq!(sink.batches, [vec![2]]);
    assert_eq!(
        sink.dead, 2,
        "the mark and the space, as read whole, and the last line"
    );
}

#[test]
fn gzip_is_recognised_however_the_stream_is_cut() {
    // Found by the decode fuzz target: one byte of gzip's magic looked like text.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(LINE.repeat(2).as_bytes()).unwrap();
    let gzip = encoder.finish().unwrap();
    let sink = idle_pipe(&gzip);
    assert_eq!(sink.batches.concat(), [1, 2]);
    assert_eq!(sink.dead, 0);
}
