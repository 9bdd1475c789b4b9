//! Batch acknowledgements: a batch is delivered when every holder of its [`Ack`] has
//! confirmed its part, and failed as soon as one holder lets its part go unconfirmed.
//!
//! A source creates one pair per batch and keeps the [`AckWait`]. Each stage that takes a
//! share of the batch (every sink, every request a sink splits it into) holds a clone of
//! the [`Ack`] and calls [`Ack::confirm`] once its share is safely delivered or
//! dead-lettered. Dropping a clone without confirming (a sink that stops, a shutdown that
//! cuts a retry loop short) marks the batch failed, so nothing unconfirmed can ever look
//! delivered. When the last clone is gone the waiter learns the outcome.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStatus {
    /// Every holder confirmed: each record was delivered or dead-lettered.
    Delivered,
    /// Some holder gave up its share unconfirmed; the source must not advance past it.
    Failed,
}

/// One holder's share of a batch's acknowledgement. Clone it for each further holder.
#[derive(Debug)]
pub struct Ack {
    shared: Arc<Shared>,
    confirmed: bool,
}

#[derive(Debug)]
struct Shared {
    failed: AtomicBool,
    notify: Mutex<Option<oneshot::Sender<BatchStatus>>>,
    /// Its entry among the unsettled batches, if they are tracked: held only to be
    /// dropped with the batch's last share.
    _open: Option<Open>,
}

/// The batches taken in and not yet settled, with when each was taken in: the age of the
/// oldest is how far delivery lags behind reading (what a status line and
/// `flowlog_oldest_unacknowledged_seconds` report).
#[derive(Debug, Default)]
pub struct Unacknowledged {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Instant>>,
}

impl Unacknowledged {
    /// How many batches are unsettled, and how long the oldest has been.
    pub fn oldest(&self) -> (usize, Option<Duration>) {
        let open = self.open.lock().expect("not poisoned");
        let oldest = open.values().min().map(Instant::elapsed);
        (open.len(), oldest)
    }
}

/// One batch's entry in [`Unacknowledged`], removed when the batch settles.
#[derive(Debug)]
struct Open {
    id: u64,
    unacknowledged: Arc<Unacknowledged>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.unacknowledged
            .open
            .lock()
            .expect("not poisoned")
            .remove(&self.id);
    }
}

/// The source's side: resolves when every [`Ack`] clone is confirmed or dropped.
#[derive(Debug)]
pub struct AckWait(oneshot::Receiver<BatchStatus>);

impl Ack {
    /// A new acknowledgement with one holder, and the waiter for its outcome.
    pub fn new() -> (Ack, AckWait) {
        Self::with(None)
    }

    /// As [`Ack::new`], the batch counted in `unacknowledged` until it settles.
    pub fn tracked(unacknowledged: &Arc<Unacknowledged>) -> (Ack, AckWait) {
        let id = unacknowledged.next.fetch_add(1, Ordering::Relaxed);
        unacknowledged
            .open
            .lock()
            .expect("not poisoned")
            .insert(id, Instant::now());
        Self::with(Some(Open {
            id,
            unacknowledged: Arc::clone(unacknowledged),
        }))
    }

    fn with(open: Option<Open>) -> (Ack, AckWait) {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            failed: AtomicBool::new(false),
            notify: Mutex::new(Some(tx)),
            _open: open,
        });
        (
            Ack {
                shared,
                confirmed: false,
            },
            AckWait(rx),
        )
    }

    /// This holder's share is delivered (or dead-lettered).
    pub fn confirm(mut self) {
        self.confirmed = true;
    }

    /// This holder's share cannot be delivered; the batch fails.
    pub fn fail(self) {
        drop(self);
    }
}

impl Clone for Ack {
    fn clone(&self) -> Self {
        Ack {
            shared: Arc::clone(&self.shared),
            confirmed: false,
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.confirmed {
            self.shared.failed.store(true, Ordering::Release);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let status = if self.failed.load(Ordering::Acquire) {
            BatchStatus::Failed
        } else {
            BatchStatus::Delivered
        };
        if let Some(tx) = self.notify.get_mut().ok().and_then(Option::take) {
            // The source may have stopped waiting (shutdown); nothing to tell then.
            let _ = tx.send(status);
        }
    }
}

impl AckWait {
    /// Waits for the outcome.
    pub async fn wait(self) -> BatchStatus {
        // The sender is only dropped by `Shared::drop` after sending.
        self.0.await.unwrap_or(BatchStatus::Failed)
    }

    /// The outcome if it is known already.
    pub fn try_status(&mut self) -> Option<BatchStatus> {
        match self.0.try_recv() {
            Ok(status) => Some(status),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(BatchStatus::Failed),
        }
    }

    /// Blocks the calling (non-async) thread until the outcome is known.
    pub fn blocking_wait(self) -> BatchStatus {
        self.0.blocking_recv().unwrap_or(BatchStatus::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_only_when_every_clone_confirms() {
        let (ack, mut wait) = Ack::new();
        let (a, b) = (ack.clone(), ack.clone());
        ack.confirm();
        a.confirm();
        assert_eq!(wait.try_status(), None);
        b.confirm();
        assert_eq!(wait.try_status(), Some(BatchStatus::Delivered));
    }

    #[test]
    fn one_unconfirmed_clone_fails_the_batch() {
        let (ack, wait) = Ack::new();
        let a = ack.clone();
        ack.confirm();
        drop(a);
        assert_eq!(wait.blocking_wait(), BatchStatus::Failed);

        let (ack, wait) = Ack::new();
        let a = ack.clone();
        a.fail();
        ack.confirm();
        assert_eq!(wait.blocking_wait(), BatchStatus::Failed);
    }

    #[test]
    fn a_tracked_batch_is_unacknowledged_until_it_settles() {
        let unacknowledged = Arc::new(Unacknowledged::default());
        assert_eq!(unacknowledged.oldest(), (0, None));
        let (first, _w1) = Ack::tracked(&unacknowledged);
        let (second, _w2) = Ack::tracked(&unacknowledged);
        let sink_share = first.clone();
        assert_eq!(unacknowledged.oldest().0, 2);
        first.confirm();
        assert_eq!(unacknowledged.oldest().0, 2, "a holder is left");
        sink_share.confirm();
        assert_eq!(unacknowledged.oldest().0, 1);
        // Failed settles it too.
        second.fail();
        assert_eq!(unacknowledged.oldest(), (0, None));
    }
}
