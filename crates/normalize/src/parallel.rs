//! Encoding on several threads, written in the order the batches came.
//!
//! One input is decoded on one thread; its batches are then encoded by `threads` workers,
//! each with an encoder of its own, and written by whichever worker holds the next batch
//! in order. A worker writes straight from its encoder's buffer (no copy of the
//! documents), and writing takes turns, so the output is byte for byte what one encoder
//! writes: same documents, same order, same ids. Batch `n` goes to worker `n % threads`,
//! through a channel of [`QUEUED`] batches: memory stays bounded when the output is
//! slower than the input.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use flowlog_model::FlowBatch;

use crate::Encoder;

/// Batches waiting for each worker.
const QUEUED: usize = 2;

/// Encodes on worker threads; writes in order.
pub struct ParallelWriter {
    jobs: Vec<SyncSender<(u64, FlowBatch)>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// Batches given so far (the next one's number).
    given: u64,
}

struct Shared {
    /// Whose turn it is; held only to look and to move on, never while writing.
    state: Mutex<State>,
    turn: Condvar,
    /// Taken only by the worker whose turn it is (and by a flush once every batch is
    /// written), so it never waits.
    writer: Mutex<Box<dyn Write + Send>>,
    /// Set with `State::failed`, read without a lock: nothing more is encoded or
    /// written, and the reading thread hears of it at its next batch.
    failing: AtomicBool,
}

struct State {
    /// The number of the batch whose turn it is to be written.
    next: u64,
    /// The first failure (encoding or writing): later batches are not written.
    failed: Option<io::Error>,
    /// A worker stopped without finishing its batches (it panicked): nobody waits on.
    broken: bool,
}

fn relock<T>(p: PoisonError<T>) -> T {
    p.into_inner()
}

impl Shared {
    /// The state once it is batch `n`'s turn (or nothing more will be written).
    fn turn_of(&self, n: u64) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(relock);
        while state.next < n && !state.broken {
            state = self.turn.wait(state).unwrap_or_else(relock);
        }
        state
    }

    fn fail(&self, state: &mut State, e: io::Error) {
        state.failed.get_or_insert(e);
        self.failing.store(true, Ordering::Release);
    }

    fn flush_writer(&self) -> io::Result<()> {
        self.writer.lock().unwrap_or_else(relock).flush()
    }

    /// Batch `n`, encoded (or not): written in its turn, then the turn moves on.
    fn write(&self, n: u64, encoded: Option<io::Result<&[u8]>>) {
        let state = self.turn_of(n);
        let skip = state.failed.is_some() || state.broken;
        // The turn is this worker's until `next` moves: the write needs no state lock.
        drop(state);
        let written = match encoded {
            Some(Ok(bytes)) if !skip => self.writer.lock().unwrap_or_else(relock).write_all(bytes),
            Some(Err(e)) if !skip => Err(e),
            _ => Ok(()),
        };
        let mut state = self.state.lock().unwrap_or_else(relock);
        if let Err(e) = written {
            self.fail(&mut state, e);
        }
        state.next = n + 1;
        drop(state);
        self.turn.notify_all();
    }
}

/// Marks the writer broken if a worker unwinds, so that no one waits for its turn.
struct Unwinding<'a>(&'a Shared);

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = self.0.state.lock().unwrap_or_else(relock);
            state.broken = true;
            self.0
                .fail(&mut state, io::Error::other("an encoding thread stopped"));
            drop(state);
            self.0.turn.notify_all();
        }
    }
}

impl ParallelWriter {
    /// `threads` workers (at least one), each with an encoder `make` makes, writing to
    /// `writer`.
    pub fn new(
        threads: usize,
        mut make: impl FnMut() -> Box<dyn Encoder + Send>,
        writer: Box<dyn Write + Send>,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next: 0,
                failed: None,
                broken: false,
            }),
            turn: Condvar::new(),
            writer: Mutex::new(writer),
            failing: AtomicBool::new(false),
        });
        let mut jobs = Vec::new();
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, rx) = sync_channel::<(u64, FlowBatch)>(QUEUED);
            let mut encoder = make();
            let shared = Arc::clone(&shared);
            let worker = std::thread::Builder::new()
                .name(format!("flowlog-encode-{i}"))
                .spawn(move || {
                    let _unwinding = Unwinding(&shared);
                    for (n, batch) in rx {
                        // After a failure, batches only take their turn.
                        let encoded = (!shared.failing.load(Ordering::Acquire))
                            .then(|| encoder.encode(&batch).map_err(io::Error::other));
                        shared.write(n, encoded);
                    }
                })?;
            jobs.push(tx);
            workers.push(worker);
        }
        Ok(Self {
            jobs,
            workers,
            shared,
            given: 0,
        })
    }

    /// Gives `batch` to its worker (waiting while that worker has [`QUEUED`] batches);
    /// an error once an earlier batch failed to encode or to be written.
    pub fn write(&mut self, batch: FlowBatch) -> io::Result<()> {
        self.failure()?;
        let worker = &self.jobs[(self.given % self.jobs.len() as u64) as usize];
        worker
            .send((self.given, batch))
            .map_err(|_| io::Error::other("an encoding thread stopped"))?;
        self.given += 1;
        Ok(())
    }

    /// Waits until every batch given so far is written, then flushes the writer.
    pub fn flush(&mut self) -> io::Result<()> {
        let state = self.shared.turn_of(self.given);
        if let Some(e) = &state.failed {
            return Err(copy(e));
        }
        // Every batch is written: no worker takes the writer until the next is given.
        drop(state);
        self.shared.flush_writer()
    }

    /// Writes what is left and stops the workers.
    pub fn finish(mut self) -> io::Result<()> {
        let flushed = self.flush();
        self.stop();
        flushed
    }

    fn failure(&self) -> io::Result<()> {
        if !self.shared.failing.load(Ordering::Acquire) {
            return Ok(());
        }
        let state = self.shared.state.lock().unwrap_or_else(relock);
        match &state.failed {
            Some(e) => Err(copy(e)),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        // Closing the channels ends the workers once their batches are done.
        self.jobs.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for ParallelWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The same error again (`io::Error` cannot be cloned): its kind, which callers test
/// (a closed pipe ends a run quietly), and its message.
fn copy(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn batches(lines: usize, per_batch: usize) -> Vec<FlowBatch> {
        let text: String = (0..lines)
            .map(|i| {
                format!(
                    "2 123456789012 eni-{:017x} 10.0.{}.{} 52.{}.{}.9 {} 443 6 {} {} 1763800000 1763800060 {} OK\n",
                    i % 50,
                    i % 7,
                    i % 250,
                    i % 256,
                    (i / 256) % 256,
                    1024 + i % 60000,
                    1 + i % 100,
                    40 + i,
                    if i % 3 == 0 { "REJECT" } else { "ACCEPT" }
                )
            })
            .collect();
        let mut c = flowlog_decode::Collected::default();
        let options = flowlog_decode::DecodeOptions {
            batch_rows: per_batch,
            ..Default::default()
        };
        let source = flowlog_model::SourceId::new("test.log");
        flowlog_decode::decode_reader(text.as_bytes(), source, &options, &mut c).unwrap();
        assert!(c.dead_letters.is_empty());
        c.batches
    }

    /// What one encoder on this thread writes.
    fn serial(target: Target, batches: &[FlowBatch]) -> Vec<u8> {
        let mut encoder = target.encoder();
        let mut out = Vec::new();
        for b in batches {
            out.extend_from_slice(encoder.encode(b).unwrap());
        }
        out
    }

    /// A writer the test reads back once the workers are done.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn several_threads_write_what_one_encoder_writes() {
        let batches = batches(5_000, 97);
        for target in [Target::Raw, Target::Ecs, Target::Cim] {
            let expected = serial(target, &batches);
            for threads in [1, 2, 3, 8] {
                let out = Shared::default();
                let mut w =
                    ParallelWriter::new(threads, || target.encoder(), Box::new(out.clone()))
                        .unwrap();
                for b in &batches {
                    w.write(b.clone()).unwrap();
                }
                w.finish().unwrap();
                let got = out.0.lock().unwrap().clone();
                assert!(got == expected, "{target:?} with {threads} threads differs");
            }
        }
    }

    #[test]
    fn flush_waits_for_every_batch_given() {
        let batches = batches(2_000, 50);
        let out = Shared::default();
        let mut w =
            ParallelWriter::new(2, || Target::Ecs.encoder(), Box::new(out.clone())).unwrap();
        for b in &batches[..20] {
            w.write(b.clone()).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(*out.0.lock().unwrap(), serial(Target::Ecs, &batches[..20]));
        w.finish().unwrap();
    }

    /// Fails every write after the first `ok` ones, as a closed pipe does.
    struct Closing {
        ok: Arc<AtomicUsize>,
    }
    impl Write for Closing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self.ok.fetch_sub(1, Ordering::SeqCst) {
                0 => {
                    self.ok.store(0, Ordering::SeqCst);
                    Err(io::ErrorKind::BrokenPipe.into())
                }
                _ => Ok(buf.len()),
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_stops_the_writer_with_its_kind() {
        let batches = batches(3_000, 30);
        let writer = Closing {
            ok: Arc::new(AtomicUsize::new(5)),
        };
        let mut w = ParallelWriter::new(2, || Target::Raw.encoder(), Box::new(writer)).unwrap();
        let mut failed = None;
        for b in &batches {
            if let Err(e) = w.write(b.clone()) {
                failed = Some(e);
                break;
            }
        }
        let e = failed
            .or_else(|| w.flush().err())
            .expect("the closed pipe is reported");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(w.finish().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
