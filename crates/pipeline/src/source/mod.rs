//! Sources: where records come from, and what a source does once they are delivered.
//!
//! The contract: a source kind's settings implement [`SourceKind`] (validation, the
//! `check` findings, a constructor); the built [`Source`] is a future the pipeline
//! spawns. It sends each batch with an [`Ack`] into a bounded channel (when the sinks
//! are slow the channel fills and the source waits: that is the backpressure), keeps the
//! [`AckWait`]s, and acts on each outcome in its own way: a file source advances its
//! checkpoint over the batches delivered without a gap ([`Progress`]); a queue source
//! deletes a message; an HTTP endpoint answers its client. Waiting costs no thread per
//! pending batch: an [`AckWait`] is a future, or is polled with `try_status`.
//!
//! A source may be async (it runs on the runtime and sends with [`SourceContext::submit`])
//! or blocking ([`threaded`]: decoding files is synchronous, so it runs on a thread of its
//! own and sends with `blocking_send`). Decoding never runs on the runtime's workers, so a
//! large gzip object cannot stall the reactor. Every source watches [`Stop`] and ends at
//! its next block (mid-object) once it is set.

pub mod file;
mod text;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use flowlog_decode::{DeadLetter, RecordSink, SinkError};
use flowlog_model::{FlowBatch, FlowFormat};
use flowlog_sink::{Ack, AckWait, BatchStatus, BoxFuture, ComponentMetrics, DeadLetters};
use tokio::sync::{mpsc, Notify};

/// A kind of source, implemented by its settings type (`[sources.<name>]`).
pub trait SourceKind: Send + Sync {
    /// The format of records before any header line, as configured.
    fn format(&self) -> Option<&str> {
        None
    }

    /// Checks the settings without reading anything.
    fn validate(&self) -> Result<(), String>;

    /// The source, ready to run.
    fn build(&self, ctx: SourceContext) -> Box<dyn Source>;

    /// What `flowlog check` reports: one finding (ok, detail) per input it can look at.
    fn check(&self, checkpoints: Option<&Checkpoints>) -> Vec<(bool, String)>;
}

/// A running source: reads until its input ends or [`Stop`] is set, and resolves once
/// every batch it sent is settled (or abandoned at shutdown).
pub trait Source: Send {
    fn run(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A blocking source: `work` runs on a thread of its own with the context.
pub fn threaded(
    ctx: SourceContext,
    work: impl FnOnce(&SourceContext) + Send + 'static,
) -> Box<dyn Source> {
    struct Threaded<F>(SourceContext, F);
    impl<F: FnOnce(&SourceContext) + Send + 'static> Source for Threaded<F> {
        fn run(self: Box<Self>) -> BoxFuture<'static, ()> {
            let Threaded(ctx, work) = *self;
            let name = format!("source-{}", ctx.name);
            flowlog_sink::registry::on_thread(name, move || work(&ctx))
        }
    }
    Box::new(Threaded(ctx, work))
}

/// The shutdown request every source watches: a flag for blocking code to poll between
/// blocks, and a notification async code can await.
#[derive(Debug, Default)]
pub struct Stop {
    set: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn set(&self) {
        self.set.store(true, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Relaxed)
    }

    /// Resolves once the stop is set.
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a `set` in between is not missed.
        notified.as_mut().enable();
        if self.is_set() {
            return;
        }
        notified.await;
    }
}

pub use crate::checkpoint::Checkpoints;
use crate::checkpoint::{FileCheckpoint, Resume};
use crate::dead_letter::DeadLetterFile;

/// A decoded batch on its way to the sinks.
#[derive(Debug)]
pub struct Envelope {
    pub batch: FlowBatch,
    pub ack: Ack,
}

/// What every source is given.
pub struct SourceContext {
    pub name: String,
    pub tx: mpsc::Sender<Envelope>,
    pub dead_letters: Arc<DeadLetterFile>,
    pub checkpoints: Checkpoints,
    pub metrics: ComponentMetrics,
    /// Set on shutdown: stop reading at the next block.
    pub stop: Arc<Stop>,
    pub format: Option<FlowFormat>,
    pub batch_rows: usize,
    /// A sink forwards original lines, so batches keep them.
    pub keep_lines: bool,
}

impl SourceContext {
    pub fn stopping(&self) -> bool {
        self.stop.is_set()
    }

    /// Sends a batch from async code, waiting for room (the backpressure); the waiter
    /// for its outcome, or `None` when the pipeline is gone.
    pub async fn submit(&self, batch: FlowBatch) -> Option<AckWait> {
        self.metrics.records_in.inc_by(batch.num_rows() as u64);
        let (ack, wait) = Ack::new();
        self.tx.send(Envelope { batch, ack }).await.ok()?;
        Some(wait)
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
    pub fn wait_all(&mut self) -> bool {
        while let Some((line, resume, wait)) = self.pending.pop_front() {
            let status = wait.blocking_wait();
            self.settle(status, line, resume);
        }
        !self.failed
    }

    /// Waits for every batch sent and records the checkpoint (`done`: the input is
    /// finished, if every batch was delivered); true if all were delivered.
    pub fn finish(&mut self, checkpoints: &Checkpoints, done: bool) -> bool {
        let delivered = self.wait_all();
        self.record(checkpoints, done && delivered);
        delivered
    }

    /// Every line up to this one is delivered or dead-lettered (so far).
    pub fn line(&self) -> u64 {
        self.line
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_wakes_waiters_set_before_or_after_they_wait() {
        let stop = Arc::new(Stop::default());
        let waiter = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move { stop.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!stop.is_set());
        stop.set();
        waiter.await.unwrap();
        // Already set: returns at once.
        stop.wait().await;
        assert!(stop.is_set());
    }

    #[tokio::test]
    async fn an_async_source_submits_and_learns_the_outcome() {
        let (tx, mut rx) = mpsc::channel(1);
        let dir = tempfile::tempdir().unwrap();
        let ctx = SourceContext {
            name: "queue".into(),
            tx,
            dead_letters: Arc::new(
                crate::dead_letter::DeadLetterFile::open(
                    &dir.path().join("dead.ndjson"),
                    flowlog_sink::Metrics::new().component("dead_letter", "file"),
                )
                .unwrap(),
            ),
            checkpoints: Checkpoints::open(dir.path()).unwrap(),
            metrics: flowlog_sink::Metrics::new().component("source", "queue"),
            stop: Arc::new(Stop::default()),
            format: None,
            batch_rows: 8192,
            keep_lines: false,
        };
        let records = arrow_array::RecordBatch::new_empty(flowlog_model::canonical_schema());
        let batch = FlowBatch::new(
            records,
            flowlog_model::SourceId::new("sqs://queue/1"),
            Vec::<u64>::new().into(),
        );
        let wait = ctx.submit(batch).await.unwrap();
        let envelope = rx.recv().await.unwrap();
        envelope.ack.confirm();
        assert_eq!(wait.wait().await, BatchStatus::Delivered);
        drop(rx);
        let records = arrow_array::RecordBatch::new_empty(flowlog_model::canonical_schema());
        let batch = FlowBatch::new(
            records,
            flowlog_model::SourceId::new("x"),
            Vec::<u64>::new().into(),
        );
        assert!(ctx.submit(batch).await.is_none(), "the pipeline is gone");
    }
}
