//! What a shard's checkpoint may move to: the records sent to the sinks, in shard order,
//! each with the acknowledgements of the batches it was decoded into. The checkpoint is
//! the last record before the first one not yet delivered: every sink has every record
//! up to it (or dead-lettered it), whatever order the acknowledgements came back in.

use std::collections::VecDeque;

use flowlog_component::{AckWait, BatchStatus};

/// An outcome still to come.
pub trait Settles {
    /// The outcome, once there is one.
    fn status(&mut self) -> Option<BatchStatus>;
}

impl Settles for AckWait {
    fn status(&mut self) -> Option<BatchStatus> {
        self.try_status()
    }
}

/// Records sent and not yet all delivered, oldest first.
pub struct InOrder<W> {
    /// Each record's sequence number and the outcomes of its batches still to come.
    sent: VecDeque<(String, Vec<W>)>,
    /// A batch failed (a sink gave it up): the checkpoint stops before its record for good,
    /// and the shard is read again from there by whoever holds the lease next.
    failed: bool,
}

impl<W: Settles> Default for InOrder<W> {
    fn default() -> Self {
        Self {
            sent: VecDeque::new(),
            failed: false,
        }
    }
}

impl<W: Settles> InOrder<W> {
    /// A record sent as `batches` (none when it held no flow records: a control message,
    /// or only dead letters, which are durable before this is called).
    pub fn sent(&mut self, sequence: String, batches: Vec<W>) {
        self.sent.push_back((sequence, batches));
    }

    /// Takes in the outcomes that came; the sequence number the checkpoint may move to
    /// now, if it moved.
    pub fn poll(&mut self) -> Option<String> {
        let mut delivered = None;
        while !self.failed {
            let Some((_, batches)) = self.sent.front_mut() else {
                break;
            };
            let mut i = 0;
            while i < batches.len() {
                match batches[i].status() {
                    Some(BatchStatus::Delivered) => {
                        batches.swap_remove(i);
                    }
                    Some(BatchStatus::Failed) => {
                        self.failed = true;
                        break;
                    }
                    None => i += 1,
                }
            }
            if self.failed || !batches.is_empty() {
                break;
            }
            delivered = self.sent.pop_front().map(|(sequence, _)| sequence);
        }
        delivered
    }

    /// Records whose outcome is still to come.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// True once a batch failed: nothing after it is checkpointed.
    pub fn failed(&self) -> bool {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// An outcome the test sets.
    #[derive(Clone, Default)]
    struct Outcome(Rc<Cell<Option<BatchStatus>>>);

    impl Settles for Outcome {
        fn status(&mut self) -> Option<BatchStatus> {
            self.0.get()
        }
    }

    fn record(progress: &mut InOrder<Outcome>, sequence: &str, batches: usize) -> Vec<Outcome> {
        let outcomes: Vec<Outcome> = (0..batches).map(|_| Outcome::default()).collect();
        progress.sent(sequence.into(), outcomes.clone());
        outcomes
    }

    #[test]
    fn the_checkpoint_waits_for_the_oldest_record() {
        let mut p = InOrder::default();
        let a = record(&mut p, "100", 2);
        let b = record(&mut p, "200", 1);
        let _control = record(&mut p, "300", 0);
        let d = record(&mut p, "400", 1);
        // The newest delivered first: nothing moves.
        d[0].0.set(Some(BatchStatus::Delivered));
        b[0].0.set(Some(BatchStatus::Delivered));
        a[1].0.set(Some(BatchStatus::Delivered));
        assert_eq!(p.poll(), None);
        // The oldest's last batch: everything through 400 is delivered.
        a[0].0.set(Some(BatchStatus::Delivered));
        assert_eq!(p.poll().as_deref(), Some("400"));
        assert!(p.is_empty());
        assert_eq!(p.poll(), None);
    }

    #[test]
    fn a_failed_batch_stops_the_checkpoint_before_its_record() {
        let mut p = InOrder::default();
        let a = record(&mut p, "100", 1);
        let b = record(&mut p, "200", 1);
        let c = record(&mut p, "300", 1);
        a[0].0.set(Some(BatchStatus::Delivered));
        b[0].0.set(Some(BatchStatus::Failed));
        c[0].0.set(Some(BatchStatus::Delivered));
        assert_eq!(p.poll().as_deref(), Some("100"));
        assert!(p.failed());
        assert_eq!(p.poll(), None);
        assert_eq!(p.len(), 2);
    }
}
