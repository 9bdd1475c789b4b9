//! Driving a sink in its tests: batches decoded from text, a dead letter that keeps what
//! it is given, and a run that feeds batches to a sink and reports each batch's outcome.

use std::sync::{Arc, Mutex};

use flowlog_decode::{decode_reader, DecodeOptions, RecordSink, SinkError as DecodeSinkError};
use flowlog_model::{DeadLetter, FlowBatch, SourceId};
use flowlog_sink::{Ack, BatchStatus, DeadLetterError, DeadLetters, Sink, SinkError, SinkInput};

/// The dead letters a sink wrote.
#[derive(Default)]
pub struct Letters(pub Mutex<Vec<DeadLetter>>);

impl DeadLetters for Letters {
    fn write(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        self.0.lock().unwrap().push(letter);
        Ok(())
    }
}

struct Batches(Vec<FlowBatch>);

impl RecordSink for Batches {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), DecodeSinkError> {
        self.0.push(batch);
        Ok(())
    }
    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), DecodeSinkError> {
        panic!("test input is valid: {letter:?}")
    }
}

/// `text` decoded (lines kept) into batches of at most `rows`, as from
/// `s3://bucket/key.log`.
pub fn batches(text: &str, rows: usize) -> Vec<FlowBatch> {
    let options = DecodeOptions {
        batch_rows: rows,
        keep_lines: true,
        ..DecodeOptions::default()
    };
    decode(
        text.as_bytes(),
        SourceId::new("s3://bucket/key.log"),
        &options,
    )
}

/// `bytes` (valid input: a dead letter fails the test) decoded into batches.
pub fn decode(bytes: &[u8], source: SourceId, options: &DecodeOptions) -> Vec<FlowBatch> {
    let mut out = Batches(Vec::new());
    decode_reader(bytes, source, options, &mut out).unwrap();
    out.0
}

/// The deterministic ids of every record of `batches`, in order.
pub fn ids_of(batches: &[FlowBatch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            b.line_numbers
                .iter()
                .map(|&l| flowlog_sink::event_id(&b.source, l))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Runs `sink` over `batches`; returns each batch's outcome and the sink's result.
pub async fn run_sink(
    sink: Box<dyn Sink>,
    batches: Vec<FlowBatch>,
) -> (Vec<BatchStatus>, Result<(), SinkError>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let running = tokio::spawn(sink.run(rx));
    let mut waits = Vec::new();
    for batch in batches {
        let (ack, wait) = Ack::new();
        waits.push(wait);
        if tx
            .send(SinkInput {
                batch: Arc::new(batch),
                ack,
            })
            .await
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    let result = running.await.unwrap();
    let mut statuses = Vec::new();
    for wait in waits {
        statuses.push(wait.wait().await);
    }
    (statuses, result)
}

/// Runs `sink` over `batches` until `done` says so (asked every 20 ms) or `limit` has
/// passed, then stops it as a shutdown deadline would: each batch's outcome by then (one
/// the sink never confirmed is `Failed`). What a test waits for is then an event, not a
/// time a busy machine may overrun.
pub async fn run_sink_until(
    sink: Box<dyn Sink>,
    batches: Vec<FlowBatch>,
    done: impl Fn() -> bool,
    limit: std::time::Duration,
) -> Vec<BatchStatus> {
    let (tx, rx) = tokio::sync::mpsc::channel(batches.len().max(1));
    let running = tokio::spawn(sink.run(rx));
    let mut waits = Vec::new();
    for batch in batches {
        let (ack, wait) = Ack::new();
        waits.push(wait);
        let input = SinkInput {
            batch: Arc::new(batch),
            ack,
        };
        if tx.send(input).await.is_err() {
            break;
        }
    }
    let started = std::time::Instant::now();
    while !done() && started.elapsed() < limit {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    running.abort();
    let _ = running.await;
    drop(tx);
    let mut statuses = Vec::new();
    for wait in waits {
        statuses.push(wait.wait().await);
    }
    statuses
}
