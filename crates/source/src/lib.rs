//! The source contract: where records come from, and what a source does once they are
//! delivered. The twin of `flowlog-sink`; each kind of source is a crate under `sources/`.
//!
//! This crate owns the contract ([`SourceKind`], [`Source`], [`SourceContext`]), what a
//! source acknowledges with ([`checkpoint`]: per-input delivered positions, stored
//! atomically; [`Progress`]: the checkpoint a run of batches has earned) and where its
//! records that cannot be decoded go ([`dead_letter`]: the bounded dead-letter store the
//! sinks share).
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
//! own and sends through `Emit`, which waits for room in the channel while taking in
//! earlier batches' outcomes). Decoding never runs on the runtime's workers, so a large
//! gzip object cannot stall the reactor. Every source watches [`Stop`] and ends at
//! its next block (mid-object) once it is set.
//!
//! Dead letters count as handled, so no acknowledgement may run ahead of them: a source
//! acknowledges (answers, deletes, checkpoints) only after [`SourceContext::durable`], and
//! a dead letter the store refuses ([`SourceContext::dead_letter`] fails when it is full)
//! stops what it belongs to from being acknowledged at all.

pub mod checkpoint;
pub mod dead_letter;

use std::collections::VecDeque;
use std::sync::Arc;

use flowlog_component::{
    Ack, AckWait, BatchStatus, BoxFuture, ComponentMetrics, DeadLetterError, DeadLetters, Stop,
};
use flowlog_decode::{DeadLetter, RecordSink, SinkError};
use flowlog_model::{FlowBatch, FlowFormat};
use tokio::sync::mpsc;

/// A kind of source, implemented by its settings type (`[sources.<name>]`).
pub trait SourceKind: Send + Sync {
    /// The format of records before any header line, as configured.
    fn format(&self) -> Option<&str> {
        None
    }

    /// Checks the settings without reading anything.
    fn validate(&self) -> Result<(), SourceError>;

    /// The source, ready to run. What must hold for it to work at all (a path that
    /// exists and can be read, an address that can be listened on) is established here,
    /// so that a configuration that cannot work fails at start, naming what and why.
    fn build(&self, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError>;

    /// What `flowlog check` reports: one finding per input it can look at (what was found,
    /// or why it cannot be used). Changes nothing, unless `options.sample` allows what
    /// cannot be done without an effect (see [`CheckOptions`]).
    fn check<'a>(&'a self, options: CheckOptions<'a>) -> BoxFuture<'a, Findings>;

    /// What `flowlog validate` reports: the part of [`check`](Self::check) that needs
    /// neither the network nor a port (the files a path names, certificate files). The
    /// default, for a source that reads only from the network: nothing.
    fn check_local(&self) -> BoxFuture<'_, Findings> {
        Box::pin(std::future::ready(Findings::new()))
    }
}

/// What `flowlog check` asks of a source.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions<'a> {
    /// The checkpoints `run` would start from, if they could be read.
    pub checkpoints: Option<&'a Checkpoints>,
    /// Also read a sample of what the source would read where that has an effect of its
    /// own (`flowlog check --sample`): receiving an SQS message, even one left visible,
    /// counts towards its receive count and so towards a redrive policy.
    pub sample: bool,
}

/// What a source's `check` found, one entry per input.
pub type Findings = Vec<Result<String, SourceError>>;

/// Why a source cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A setting is wrong (an empty list, an impossible number, a missing key).
    #[error("{0}")]
    Config(String),
    /// What the source reads from cannot be reached or read.
    #[error("{0}")]
    Unavailable(String),
    /// Some inputs could not be read to their end (the others were); each is named.
    #[error("{} input(s) could not be read: {}", .0.len(), .0.join("; "))]
    Inputs(Vec<String>),
}

impl SourceError {
    /// `Ok` when no input failed, else [`SourceError::Inputs`] naming each.
    pub fn unless_failed(failed: Vec<String>) -> Result<(), Self> {
        match failed.is_empty() {
            true => Ok(()),
            false => Err(Self::Inputs(failed)),
        }
    }
}

/// A running source: reads until its input ends or [`Stop`] is set, and resolves once
/// every batch it sent is settled (or abandoned at shutdown). An error means the source
/// could not do its job (an input it was given could not be read): the run ends with it,
/// and the process exits non-zero.
pub trait Source: Send {
    fn run(self: Box<Self>) -> BoxFuture<'static, Result<(), SourceError>>;
}

/// A blocking source: `work` runs on a thread of its own with the context.
pub fn threaded(
    ctx: SourceContext,
    work: impl FnOnce(&SourceContext) -> Result<(), SourceError> + Send + 'static,
) -> Box<dyn Source> {
    struct Threaded<F>(SourceContext, F);
    impl<F: FnOnce(&SourceContext) -> Result<(), SourceError> + Send + 'static> Source for Threaded<F> {
        fn run(self: Box<Self>) -> BoxFuture<'static, Result<(), SourceError>> {
            let Threaded(ctx, work) = *self;
            let name = format!("source-{}", ctx.name);
            flowlog_component::thread::on_thread(name, move || work(&ctx))
        }
    }
    Box::new(Threaded(ctx, work))
}

pub use crate::checkpoint::Checkpoints;
use crate::checkpoint::{FileCheckpoint, Resume, MAX_ACKED_RANGES};
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
    /// The pipeline's runtime: blocking sources wait on the channel through it.
    pub runtime: tokio::runtime::Handle,
    /// A finite run (`flowlog run --once`): read what is there now, then end (a directory
    /// listed once, followed files read to their current end, a queue until it is empty).
    pub once: bool,
}

impl SourceContext {
    pub fn stopping(&self) -> bool {
        self.stop.is_set()
    }

    /// Writes a dead letter and counts it against this source. An error means it was not
    /// kept (the store is full, or failing): the record is not handled, and nothing that
    /// covers it may be acknowledged.
    pub fn dead_letter(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        self.dead_letters.write(letter)?;
        self.metrics.dead_letters.inc();
        Ok(())
    }

    /// Makes the dead letters written so far durable. Every acknowledgement a source gives
    /// (a Firehose `200`, an SQS delete, a checkpoint) comes after this, since the records
    /// it covers include the ones dead-lettered: a `kill -9` right after the
    /// acknowledgement must not lose them.
    pub fn durable(&self) -> std::io::Result<()> {
        self.dead_letters.sync()
    }

    /// Sends a batch from async code, waiting for room (the backpressure); the waiter
    /// for its outcome, or `None` when the pipeline is gone.
    pub async fn submit(&self, batch: FlowBatch) -> Option<AckWait> {
        self.metrics.records_in.inc_by(batch.num_rows() as u64);
        let (ack, wait) = self.metrics.ack();
        self.tx.send(Envelope { batch, ack }).await.ok()?;
        Some(wait)
    }

    /// Sends a batch; false when the pipeline is gone. While the channel is full (the
    /// sinks are slower), the outcomes of earlier batches are taken in every
    /// [`ACK_POLL`], so the checkpoint keeps up with acknowledgements.
    fn send(&self, batch: FlowBatch, progress: &mut Progress, resume: Option<Resume>) -> bool {
        if batch.num_rows() == 0 {
            return true;
        }
        let first = batch.line_numbers.first().copied().unwrap_or(0);
        let last = batch.line_numbers.last().copied().unwrap_or(0);
        self.metrics.records_in.inc_by(batch.num_rows() as u64);
        let (ack, wait) = self.metrics.ack();
        let room = loop {
            let wait = async { tokio::time::timeout(ACK_POLL, self.tx.reserve()).await };
            match self.runtime.block_on(wait) {
                Ok(Ok(room)) => break room,
                Ok(Err(_closed)) => return false,
                Err(_full) => progress.poll(&self.checkpoints),
            }
        };
        room.send(Envelope { batch, ack });
        progress.pending.push_back(Sent {
            lines: (first, last),
            resume,
            wait,
            status: None,
        });
        true
    }
}

/// How often a blocking source looks at its batches' outcomes while it waits (for room in
/// the channel, or for the last batches of an input).
const ACK_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// A batch sent, and its outcome once known.
struct Sent {
    /// Its first and last line.
    lines: (u64, u64),
    resume: Option<Resume>,
    wait: AckWait,
    status: Option<BatchStatus>,
}

/// The batches of one input sent and not yet settled, in order, and the checkpoint they
/// have earned: the delivered prefix, and the delivered ranges past it.
pub struct Progress {
    key: Option<String>,
    identity: (u64, u64),
    pending: VecDeque<Sent>,
    /// Every line up to this one is delivered or dead-lettered.
    line: u64,
    resume: Option<Resume>,
    /// A batch failed: the prefix stays where it is from now on.
    failed: bool,
    /// Delivered ranges past the prefix no longer in `pending` (from the checkpoint this
    /// run started from, or settled after a failure).
    beyond: Vec<(u64, u64)>,
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
            beyond: start.acked.clone(),
        }
    }

    /// Takes in the outcomes known so far (of every batch, not only the oldest).
    pub fn poll(&mut self, checkpoints: &Checkpoints) {
        for sent in self.pending.iter_mut().filter(|s| s.status.is_none()) {
            sent.status = sent.wait.try_status();
        }
        while let Some(status) = self.pending.front().and_then(|s| s.status) {
            let sent = self.pending.pop_front().expect("a front");
            self.settle(status, sent.lines, sent.resume);
        }
        self.record(checkpoints, false);
    }

    /// Waits for every batch sent, recording progress as outcomes arrive (in any order,
    /// so the checkpoint keeps up while the oldest batch is slow); true if all were
    /// delivered.
    pub fn wait_all(&mut self, checkpoints: &Checkpoints) -> bool {
        loop {
            self.poll(checkpoints);
            if self.pending.is_empty() {
                return !self.failed;
            }
            std::thread::sleep(ACK_POLL);
        }
    }

    /// Waits for every batch sent and records the checkpoint (`done`: the input is
    /// finished, if every batch was delivered); true if all were delivered.
    pub fn finish(&mut self, checkpoints: &Checkpoints, done: bool) -> bool {
        let delivered = self.wait_all(checkpoints);
        self.record(checkpoints, done && delivered);
        delivered
    }

    /// Every line up to this one is delivered or dead-lettered (so far).
    pub fn line(&self) -> u64 {
        self.line
    }

    fn settle(&mut self, status: BatchStatus, lines: (u64, u64), resume: Option<Resume>) {
        let delivered = status == BatchStatus::Delivered;
        if !delivered {
            self.failed = true;
        }
        if !self.failed {
            self.line = self.line.max(lines.1);
            if resume.is_some() {
                self.resume = resume;
            }
        } else if delivered {
            // Past a failure the prefix stops; what is delivered beyond it is remembered.
            self.beyond.push(lines);
        }
    }

    /// The delivered ranges past the prefix, at most [`MAX_ACKED_RANGES`]. Batches sent one
    /// after the other and all delivered make one range (the lines between them were
    /// dead-lettered, which counts as handled).
    fn acked(&self) -> Vec<(u64, u64)> {
        let past = |&(_, last): &(u64, u64)| last > self.line;
        let clip = |(first, last): (u64, u64)| (first.max(self.line + 1), last);
        let mut ranges: Vec<(u64, u64)> =
            self.beyond.iter().copied().filter(past).map(clip).collect();
        let mut joins = false;
        for sent in &self.pending {
            let delivered = sent.status == Some(BatchStatus::Delivered) && past(&sent.lines);
            match ranges.last_mut() {
                Some(range) if delivered && joins => range.1 = sent.lines.1,
                _ if delivered => ranges.push(clip(sent.lines)),
                _ => {}
            }
            joins = delivered;
        }
        ranges.truncate(MAX_ACKED_RANGES);
        ranges
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
                    acked: if done { Vec::new() } else { self.acked() },
                },
            );
        }
    }
}

/// Receives a decoder's output: rows the checkpoint `skip` covers (its prefix and its
/// acknowledged ranges) were delivered before a restart and are left out; the rest are
/// sent (or kept until [`Emit::send_kept`] when `keep` is set, so the last batch of a
/// block can carry the resume point).
pub struct Emit<'a> {
    ctx: &'a SourceContext,
    progress: &'a mut Progress,
    skip: &'a FileCheckpoint,
    keep: bool,
    kept: Vec<FlowBatch>,
    gone: bool,
}

impl<'a> Emit<'a> {
    pub fn new(
        ctx: &'a SourceContext,
        progress: &'a mut Progress,
        skip: &'a FileCheckpoint,
    ) -> Self {
        Self {
            ctx,
            progress,
            skip,
            keep: false,
            kept: Vec::new(),
            gone: false,
        }
    }

    /// Keeps batches from now on until [`Emit::send_kept`] (so that the last batch of a
    /// block can carry the resume point).
    pub fn hold(&mut self) {
        self.keep = true;
    }

    /// The pipeline has stopped taking batches.
    pub fn gone(&self) -> bool {
        self.gone
    }

    /// Sends the kept batches, the last one with `resume`.
    pub fn send_kept(&mut self, resume: Option<Resume>) -> bool {
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
            .partition_point(|&line| line <= self.skip.line);
        let mut batch = if skip > 0 {
            batch.slice(skip, batch.num_rows() - skip)
        } else {
            batch
        };
        if !self.skip.acked.is_empty() {
            let keep = batch
                .line_numbers
                .iter()
                .map(|&line| !self.skip.covers(line))
                .collect();
            batch = batch.keep_rows(keep);
        }
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
        if !self.skip.covers(letter.line) {
            // Not kept: decoding stops here, so the checkpoint cannot pass this line.
            self.ctx.dead_letter(letter)?;
        }
        Ok(())
    }
}

/// An object whose bytes cannot be decoded (corrupt gzip, unreadable Parquet) would fail
/// the same way at every reading: once the records decoded before the fault are settled, it
/// is written to the dead letter as a whole (line 0: the object itself, with its size and
/// the reason) and marked done, so it is never read again. If a batch before the fault
/// failed, it stays unmarked and is read again like any undelivered object.
pub fn quarantine(
    ctx: &SourceContext,
    key: &str,
    size: u64,
    error: &flowlog_decode::DecodeError,
    progress: &mut Progress,
) {
    let mut kept = true;
    if progress.wait_all(&ctx.checkpoints) {
        let reason = format!(
            "object quarantined, not read again: {error} ({size} bytes; the records \
             before the fault, through line {}, were delivered)",
            progress.line()
        );
        tracing::warn!(source = %ctx.name, "{reason}");
        let letter = DeadLetter::new(&flowlog_model::SourceId::new(key), 0, reason, b"");
        if let Err(e) = ctx.dead_letter(letter) {
            // Not marked done: it is read (and quarantined) again at a later poll.
            tracing::error!(source = %ctx.name, "{key}: {e}");
            kept = false;
        }
    }
    progress.finish(&ctx.checkpoints, kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends a batch of `lines` into `progress`, returning the share to settle it with.
    fn sent(progress: &mut Progress, lines: (u64, u64)) -> Ack {
        let (ack, wait) = Ack::new();
        progress.pending.push_back(Sent {
            lines,
            resume: None,
            wait,
            status: None,
        });
        ack
    }

    #[test]
    fn delivered_batches_past_a_slow_one_are_checkpointed_as_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        let mut progress = Progress::new(Some("f".into()), (1, 2), &FileCheckpoint::default());
        let slow = sent(&mut progress, (1, 10));
        sent(&mut progress, (11, 20)).confirm();
        sent(&mut progress, (22, 30)).confirm(); // line 21 was dead-lettered
        let lost = sent(&mut progress, (31, 40));
        sent(&mut progress, (41, 50)).confirm();
        progress.poll(&checkpoints);
        let cp = checkpoints.get("f").unwrap();
        assert_eq!((cp.line, cp.acked.clone()), (0, vec![(11, 30), (41, 50)]));
        assert!(cp.covers(21) && cp.covers(45) && !cp.covers(5) && !cp.covers(35));

        slow.confirm();
        drop(lost); // fails: the prefix stops at 30 for good
        sent(&mut progress, (51, 60)).confirm();
        progress.poll(&checkpoints);
        let cp = checkpoints.get("f").unwrap();
        assert_eq!((cp.line, cp.acked.clone()), (30, vec![(41, 50), (51, 60)]));

        // A restart from that checkpoint keeps its ranges until the prefix passes them.
        let mut again = Progress::new(Some("f".into()), (1, 2), &cp);
        sent(&mut again, (31, 40)).confirm();
        again.poll(&checkpoints);
        let cp = checkpoints.get("f").unwrap();
        assert_eq!((cp.line, cp.acked.clone()), (40, vec![(41, 50), (51, 60)]));
        // Finished: done, and nothing left to skip by range.
        assert!(again.finish(&checkpoints, true));
        assert!(checkpoints.get("f").unwrap().acked.is_empty());
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
                    crate::dead_letter::DeadLetterLimits::default(),
                    flowlog_component::Metrics::new().component("dead_letter", "file"),
                    Default::default(),
                )
                .unwrap(),
            ),
            checkpoints: Checkpoints::open(dir.path()).unwrap(),
            metrics: flowlog_component::Metrics::new().component("source", "queue"),
            stop: Arc::new(Stop::default()),
            format: None,
            batch_rows: 8192,
            keep_lines: false,
            runtime: tokio::runtime::Handle::current(),
            once: false,
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
