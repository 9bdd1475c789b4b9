//! Pieces: events back to back in one buffer (what a request body is made of), with
//! each event's end, origin and the acknowledgement shares of the batches they came from.

use bytes::Bytes;
use flowlog_model::SourceId;

use crate::Ack;

/// Where an event came from: what a dead letter names.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: SourceId,
    pub line: u64,
}

/// Events ready to send, back to back, with their boundaries.
#[derive(Debug, Default)]
pub struct Piece {
    pub data: Bytes,
    /// End of each event in `data` (events are contiguous).
    pub ends: Vec<usize>,
    pub origins: Vec<Origin>,
    /// A share of the acknowledgement of every batch with events in this piece.
    pub acks: Vec<Ack>,
    /// The group every event of the piece is in ([`WriteRow::group`](super::WriteRow::group)).
    pub group: Option<Bytes>,
}

impl Piece {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Event `i`'s bytes.
    pub fn event(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    /// Splits after `at` events. Both halves carry shares of every acknowledgement (the
    /// original shares move into the second).
    pub fn split(self, at: usize) -> (Piece, Piece) {
        let cut = if at == 0 { 0 } else { self.ends[at - 1] };
        let first = Piece {
            data: self.data.slice(..cut),
            ends: self.ends[..at].to_vec(),
            origins: self.origins[..at].to_vec(),
            acks: self.acks.iter().map(Ack::clone).collect(),
            group: self.group.clone(),
        };
        let second = Piece {
            data: self.data.slice(cut..),
            ends: self.ends[at..].iter().map(|e| e - cut).collect(),
            origins: self.origins[at..].to_vec(),
            acks: self.acks,
            group: self.group,
        };
        (first, second)
    }

    /// The events whose `keep` is true, copied into a new piece that takes over the
    /// acknowledgement shares (what is left to send after a partial answer).
    pub fn select(self, keep: &[bool]) -> Piece {
        let mut data = Vec::new();
        let mut ends = Vec::new();
        let mut origins = Vec::new();
        for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            data.extend_from_slice(self.event(i));
            ends.push(data.len());
            origins.push(self.origins[i].clone());
        }
        Piece {
            data: Bytes::from(data),
            ends,
            origins,
            acks: self.acks,
            group: self.group,
        }
    }

    /// Every event delivered or dead-lettered: confirm the shares.
    pub fn confirm(self) {
        for ack in self.acks {
            ack.confirm();
        }
    }
}

/// Room past `max_bytes` for the event that overflows a piece (it is written before the
/// piece knows it is full): without it, every piece would be reallocated, and so copied,
/// once near its end.
const PIECE_HEADROOM: usize = 64 * 1024;

/// Gathers events (of one group) into pieces of at most `max_bytes`.
pub struct PieceBuilder {
    max_bytes: usize,
    data: Vec<u8>,
    ends: Vec<usize>,
    origins: Vec<Origin>,
    acks: Vec<Ack>,
    group: Option<Bytes>,
    /// The batch whose share the current piece holds last (see [`PieceBuilder::share_once`]).
    shared: Option<u64>,
}

impl PieceBuilder {
    pub fn new(max_bytes: usize) -> Self {
        Self::for_group(max_bytes, None)
    }

    /// A builder whose pieces are all of `group`.
    pub fn for_group(max_bytes: usize, group: Option<Bytes>) -> Self {
        Self {
            max_bytes,
            data: Vec::with_capacity(max_bytes + PIECE_HEADROOM),
            ends: Vec::new(),
            origins: Vec::new(),
            acks: Vec::new(),
            group,
            shared: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Where the next event will start; events are written into [`PieceBuilder::data`].
    pub fn data(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    /// The event written since `start` overflows the piece (and is not alone in it).
    pub fn overflows(&self, start: usize) -> bool {
        start > 0 && self.data.len() > self.max_bytes
    }

    /// Records the event written since the last one.
    pub fn commit(&mut self, origin: Origin) {
        self.ends.push(self.data.len());
        self.origins.push(origin);
    }

    /// The batch whose events are being pushed has a share in the current piece.
    pub fn share(&mut self, ack: &Ack) {
        self.acks.push(ack.clone());
    }

    /// [`PieceBuilder::share`], unless the current piece already holds a share of the
    /// batch numbered `batch`.
    pub fn share_once(&mut self, ack: &Ack, batch: u64) {
        if self.shared != Some(batch) {
            self.share(ack);
            self.shared = Some(batch);
        }
    }

    pub fn take(&mut self) -> Piece {
        self.shared = None;
        let data = std::mem::replace(
            &mut self.data,
            Vec::with_capacity(self.max_bytes + PIECE_HEADROOM),
        );
        Piece {
            data: Bytes::from(data),
            ends: std::mem::take(&mut self.ends),
            origins: std::mem::take(&mut self.origins),
            acks: std::mem::take(&mut self.acks),
            group: self.group.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowlog_component::{AckWait, BatchStatus};

    fn piece(events: &[&str]) -> (Piece, AckWait) {
        let (ack, wait) = Ack::new();
        let mut builder = PieceBuilder::new(1 << 20);
        builder.share(&ack);
        for (i, e) in events.iter().enumerate() {
            builder.data().extend_from_slice(e.as_bytes());
            builder.commit(Origin {
                source: SourceId::new("s"),
                line: i as u64 + 1,
            });
        }
        ack.confirm();
        (builder.take(), wait)
    }

    #[test]
    fn split_and_select_keep_events_origins_and_shares() {
        let (p, mut wait) = piece(&["a\n", "bb\n", "ccc\n", "d\n"]);
        let (first, second) = p.split(1);
        assert_eq!(first.event(0), b"a\n");
        assert_eq!((second.len(), second.event(2)), (3, &b"d\n"[..]));
        first.confirm();
        assert_eq!(wait.try_status(), None);
        let rest = second.select(&[false, true, true]);
        assert_eq!(rest.data.as_ref(), b"ccc\nd\n");
        assert_eq!(
            rest.origins.iter().map(|o| o.line).collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(rest.event(1), b"d\n");
        rest.confirm();
        assert_eq!(wait.try_status(), Some(BatchStatus::Delivered));
    }

    #[test]
    fn a_piece_dropped_unconfirmed_fails_its_batches() {
        let (p, wait) = piece(&["a\n"]);
        drop(p.select(&[true]));
        assert_eq!(wait.blocking_wait(), BatchStatus::Failed);
    }
}
