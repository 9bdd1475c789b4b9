//! What a running backfill has done, for a progress line: counted by the source, read by
//! whoever shows it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Objects and bytes planned and done. Objects a resumed run finds done already count as
/// done (and as `skipped`).
#[derive(Debug, Default)]
pub struct Tally {
    objects_planned: AtomicU64,
    bytes_planned: AtomicU64,
    objects_done: AtomicU64,
    bytes_done: AtomicU64,
    objects_skipped: AtomicU64,
    bytes_skipped: AtomicU64,
    objects_failed: AtomicU64,
    /// The source's `records_in` counter, once it runs.
    records: OnceLock<flowlog_component::metrics::Counter>,
}

/// A moment's copy of a [`Tally`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub objects_planned: u64,
    pub bytes_planned: u64,
    pub objects_done: u64,
    pub bytes_done: u64,
    pub objects_skipped: u64,
    /// Bytes of the skipped objects (in `bytes_done` too).
    pub bytes_skipped: u64,
    pub objects_failed: u64,
    pub records: u64,
}

impl Tally {
    pub(crate) fn planned(&self, objects: u64, bytes: u64) {
        self.objects_planned.store(objects, Ordering::Relaxed);
        self.bytes_planned.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn done(&self, bytes: u64, skipped: bool) {
        self.objects_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        if skipped {
            self.objects_skipped.fetch_add(1, Ordering::Relaxed);
            self.bytes_skipped.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub(crate) fn failed(&self) {
        self.objects_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_records(&self, counter: &flowlog_component::metrics::Counter) {
        let _ = self.records.set(counter.clone());
    }

    pub fn counts(&self) -> Counts {
        Counts {
            objects_planned: self.objects_planned.load(Ordering::Relaxed),
            bytes_planned: self.bytes_planned.load(Ordering::Relaxed),
            objects_done: self.objects_done.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            objects_skipped: self.objects_skipped.load(Ordering::Relaxed),
            bytes_skipped: self.bytes_skipped.load(Ordering::Relaxed),
            objects_failed: self.objects_failed.load(Ordering::Relaxed),
            records: self.records.get().map_or(0, |c| c.get()),
        }
    }
}
