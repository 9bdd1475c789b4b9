//! Sources: where records come from, and what a source does once they are delivered.
//!
//! Decoding is synchronous, so each source runs on its own thread and hands batches to
//! the pipeline through a bounded channel (`blocking_send`): when the sinks are slow,
//! the channel fills and the source waits, which is the backpressure. Each batch carries
//! an [`Ack`]; a source keeps the waiters in order and advances its checkpoint over the
//! batches delivered without a gap ([`Progress`]).

mod file;
mod text;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use flowlog_decode::{DeadLetter, RecordSink, SinkError};
use flowlog_model::{FlowBatch, FlowFormat};
use flowlog_sink::{Ack, AckWait, BatchStatus, ComponentMetrics, DeadLetters};
use tokio::sync::mpsc;

pub use file::{read_directory, read_file, read_stdin};

use crate::checkpoint::{Checkpoints, FileCheckpoint, Resume};
use crate::dead_letter::DeadLetterFile;

/// A decoded batch on its way to the sinks.
#[derive(Debug)]
pub struct Envelope {
    pub batch: FlowBatch,
    pub ack: Ack,
}

/// What every source thread is given.
pub struct SourceContext {
    pub name: String,
    pub tx: mpsc::Sender<Envelope>,
    pub dead_letters: Arc<DeadLetterFile>,
    pub checkpoints: Checkpoints,
    pub metrics: ComponentMetrics,
    /// Set on shutdown: stop reading at the next block.
    pub stop: Arc<AtomicBool>,
    pub format: Option<FlowFormat>,
    pub batch_rows: usize,
    /// A sink forwards original lines, so batches keep them.
    pub keep_lines: bool,
}

impl SourceContext {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sends a batch; false when the pipeline is gone.
    fn send(&self, batch: FlowBatch, progress: &mut Progress, resume: Option<Resume>) -> bool {
        if batch.num_rows() == 0 {
            return true;
        }
        let last_line = batch.line_numbers.last().copied().unwrap_or(0);
        self.metrics.records_in.inc_by(batch.num_rows() as u64);
        let (ack, wait) = Ack::new();
        if self.tx.blocking_send(Envelope { batch, ack }).is_err() {
            return false;
        }
        progress.push(last_line, resume, wait);
        true
    }
}

/// The batches of one input sent and not yet settled, in order, and the checkpoint they
/// have earned.
pub struct Progress {
    key: Option<String>,
    identity: (u64, u64),
    pending: VecDeque<(u64, Option<Resume>, AckWait)>,
    /// Every line up to this one is delivered or dead-lettered.
    line: u64,
    resume: Option<Resume>,
    /// A batch failed: the checkpoint stays where it is from now on.
    failed: bool,
}

impl Progress {
    /// Progress through the input checkpointed under `key` (none: not checkpointed).
    pub fn new(key: Option<String>, identity: (u64, u64), start: &FileCheckpoint) -> Self {
        Self {
            key,
            identity,
            pending: VecDeque::new(),
            line: start.line,
            resume: start.resume.clone(),
            failed: false,
        }
    }

    fn push(&mut self, last_line: u64, resume: Option<Resume>, wait: AckWait) {
        self.pending.push_back((last_line, resume, wait));
    }

    /// Takes in the outcomes known so far.
    pub fn poll(&mut self, checkpoints: &Checkpoints) {
        while let Some((_, _, wait)) = self.pending.front_mut() {
            match wait.try_status() {
                None => break,
                Some(status) => {
                    let (line, resume, _) = self.pending.pop_front().expect("a front");
                    self.settle(status, line, resume);
                }
            }
        }
        self.record(checkpoints, false);
    }

    /// Waits for every batch sent; true if all were delivered.
    pub fn finish(&mut self, checkpoints: &Checkpoints, done: bool) -> bool {
        while let Some((line, resume, wait)) = self.pending.pop_front() {
            let status = wait.blocking_wait();
            self.settle(status, line, resume);
        }
        self.record(checkpoints, done && !self.failed);
        !self.failed
    }

    fn settle(&mut self, status: BatchStatus, line: u64, resume: Option<Resume>) {
        if status == BatchStatus::Failed {
            self.failed = true;
        }
        if !self.failed {
            self.line = self.line.max(line);
            if resume.is_some() {
                self.resume = resume;
            }
        }
    }

    fn record(&self, checkpoints: &Checkpoints, done: bool) {
        if let Some(key) = &self.key {
            checkpoints.set(
                key,
                FileCheckpoint {
                    dev: self.identity.0,
                    ino: self.identity.1,
                    line: self.line,
                    resume: self.resume.clone(),
                    done,
                },
            );
        }
    }
}

/// Receives a decoder's output: rows at or below `skip_through` were delivered before a
/// restart and are left out; the rest are sent (or kept until [`Emit::send_kept`] when
/// `keep` is set, so the last batch of a block can carry the resume point).
struct Emit<'a> {
    ctx: &'a SourceContext,
    progress: &'a mut Progress,
    skip_through: u64,
    keep: bool,
    kept: Vec<FlowBatch>,
    gone: bool,
}

impl<'a> Emit<'a> {
    fn new(ctx: &'a SourceContext, progress: &'a mut Progress, skip_through: u64) -> Self {
        Self {
            ctx,
            progress,
            skip_through,
            keep: false,
            kept: Vec::new(),
            gone: false,
        }
    }

    /// Sends the kept batches, the last one with `resume`.
    fn send_kept(&mut self, resume: Option<Resume>) -> bool {
        let kept = std::mem::take(&mut self.kept);
        let n = kept.len();
        for (i, batch) in kept.into_iter().enumerate() {
            let resume = if i + 1 == n { resume.clone() } else { None };
            if !self.ctx.send(batch, self.progress, resume) {
                self.gone = true;
            }
        }
        self.progress.poll(&self.ctx.checkpoints);
        !self.gone
    }
}

impl RecordSink for Emit<'_> {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        let skip = batch
            .line_numbers
            .partition_point(|&line| line <= self.skip_through);
        let batch = if skip > 0 {
            batch.slice(skip, batch.num_rows() - skip)
        } else {
            batch
        };
        if self.keep {
            self.kept.push(batch);
            return Ok(());
        }
        if !self.ctx.send(batch, self.progress, None) {
            self.gone = true;
            return Err("the pipeline has stopped".into());
        }
        self.progress.poll(&self.ctx.checkpoints);
        Ok(())
    }

    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        if letter.line > self.skip_through {
            self.ctx.metrics.dead_letters.inc();
            self.ctx.dead_letters.write(letter);
        }
        Ok(())
    }
}
