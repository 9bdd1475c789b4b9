//! Which leases a worker takes, as the KCL's lease taker decides: expired leases first,
//! up to an even share; when none has expired and the worker has less than its share, one
//! lease stolen from the most loaded worker. Every worker deciding this on its own, from
//! the same table, converges to an even split.
//!
//! Expiry is judged by each worker's own clock: a lease has expired when its counter has
//! not moved for a lease duration since this worker first saw that counter (so a worker
//! that has just started sees every owned lease as alive for one lease duration).
//!
//! A shard is ready when its parents are read to their end: a child lease is not taken
//! while a parent's lease is in the table without the `SHARD_END` checkpoint, which keeps
//! the records of a partition key in order across a resharding.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::lease::{Checkpoint, Lease};

/// The taker's settings.
#[derive(Debug, Clone)]
pub struct Balance {
    /// How long a lease's counter may stand still before it has expired.
    pub lease_duration: Duration,
    /// The most leases one worker holds.
    pub max_leases: usize,
    /// The most leases stolen in one round.
    pub max_steal: usize,
}

/// What one worker knows of the table between rounds: each lease's counter and owner,
/// and since when (by this worker's clock) they have stood still.
pub struct Taker {
    me: String,
    settings: Balance,
    seen: HashMap<String, (u64, Option<String>, Instant)>,
}

/// What a round decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Expired or free leases to take, as listed.
    pub take: Vec<Lease>,
    /// Leases to steal from busier workers, as listed.
    pub steal: Vec<Lease>,
}

impl Taker {
    pub fn new(me: impl Into<String>, settings: Balance) -> Self {
        Self {
            me: me.into(),
            settings,
            seen: HashMap::new(),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Notes what the table holds now; forgets leases no longer in it.
    pub fn observe(&mut self, leases: &[Lease], now: Instant) {
        let mut seen = HashMap::with_capacity(leases.len());
        for lease in leases {
            let since = match self.seen.remove(&lease.key) {
                Some((counter, owner, since))
                    if counter == lease.counter && owner == lease.owner =>
                {
                    since
                }
                _ => now,
            };
            seen.insert(
                lease.key.clone(),
                (lease.counter, lease.owner.clone(), since),
            );
        }
        self.seen = seen;
    }

    /// True when nobody owns `lease`, or its counter stood still for a lease duration.
    pub fn expired(&self, lease: &Lease, now: Instant) -> bool {
        if lease.owner.is_none() {
            return true;
        }
        match self.seen.get(&lease.key) {
            Some((counter, _, since)) if *counter == lease.counter => {
                now.saturating_duration_since(*since) >= self.settings.lease_duration
            }
            // Not observed at this counter: alive until seen standing still.
            _ => false,
        }
    }

    /// The leases to take and steal now, from the table as `leases` (after
    /// [`observe`](Self::observe)).
    pub fn decide(&self, leases: &[Lease], now: Instant) -> Decision {
        let finished = |key: &str| {
            leases
                .iter()
                .find(|l| l.key == key)
                .is_none_or(|l| l.checkpoint == Checkpoint::ShardEnd)
        };
        // Shards left to read, whose parents are done.
        let ready: Vec<&Lease> = leases
            .iter()
            .filter(|l| l.checkpoint != Checkpoint::ShardEnd)
            .filter(|l| l.parents.iter().all(|p| finished(p)))
            .collect();
        // Live owners and what each holds; this worker counts even with nothing.
        let mut held: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        held.insert(&self.me, Vec::new());
        let mut free = Vec::new();
        for lease in &ready {
            match &lease.owner {
                Some(owner) if owner == &self.me => held.entry(owner).or_default().push(lease),
                Some(owner) if !self.expired(lease, now) => {
                    held.entry(owner).or_default().push(lease)
                }
                _ => free.push(*lease),
            }
        }
        let workers = held.len();
        let target = ready.len().div_ceil(workers).min(self.settings.max_leases);
        let mine = held[self.me.as_str()].len();
        let mut decision = Decision::default();
        if mine >= target {
            return decision;
        }
        let wanted = target - mine;
        if !free.is_empty() {
            // Workers start the list at different places so that they do not all race
            // for the same lease.
            let offset = fnv(self.me.as_bytes()) as usize % free.len();
            free.rotate_left(offset);
            decision.take = free.into_iter().take(wanted).cloned().collect();
            return decision;
        }
        // Nothing free: steal from the most loaded worker, if it holds more than its share.
        let busiest = held
            .iter()
            .filter(|(owner, _)| **owner != self.me)
            .max_by_key(|(owner, leases)| (leases.len(), std::cmp::Reverse(**owner)));
        if let Some((_, theirs)) = busiest {
            // Stealing from one with exactly its share would only move the imbalance.
            let surplus = theirs.len().saturating_sub(target);
            let steal = wanted.min(surplus).min(self.settings.max_steal);
            if steal == 0 && theirs.len() > mine + 1 {
                // Uneven division: their share and ours are both `target`, but one more
                // than ours is still theirs to give.
                decision.steal = theirs.iter().take(1).map(|l| (*l).clone()).collect();
            } else {
                decision.steal = theirs.iter().take(steal).map(|l| (*l).clone()).collect();
            }
        }
        decision
    }
}

/// FNV-1a: a stable spread of worker names.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(key: &str, owner: Option<&str>, counter: u64) -> Lease {
        Lease {
            owner: owner.map(str::to_owned),
            counter,
            ..Lease::new(key, Checkpoint::TrimHorizon, Vec::new())
        }
    }

    fn settings() -> Balance {
        Balance {
            lease_duration: Duration::from_secs(10),
            max_leases: 100,
            max_steal: 1,
        }
    }

    fn keys(leases: &[Lease]) -> Vec<&str> {
        let mut k: Vec<&str> = leases.iter().map(|l| l.key.as_str()).collect();
        k.sort();
        k
    }

    #[test]
    fn a_lone_worker_takes_every_free_lease() {
        let table: Vec<Lease> = (0..4).map(|i| lease(&format!("s{i}"), None, 0)).collect();
        let mut t = Taker::new("a", settings());
        let now = Instant::now();
        t.observe(&table, now);
        let d = t.decide(&table, now);
        assert_eq!(keys(&d.take), ["s0", "s1", "s2", "s3"]);
        assert!(d.steal.is_empty());
    }

    #[test]
    fn an_owned_lease_expires_only_after_standing_still_for_a_lease_duration() {
        let table = vec![lease("s0", Some("b"), 7)];
        let mut t = Taker::new("a", settings());
        let start = Instant::now();
        t.observe(&table, start);
        assert!(!t.expired(&table[0], start + Duration::from_secs(9)));
        assert!(t
            .decide(&table, start + Duration::from_secs(9))
            .take
            .is_empty());
        assert!(t.expired(&table[0], start + Duration::from_secs(10)));
        assert_eq!(
            keys(&t.decide(&table, start + Duration::from_secs(10)).take),
            ["s0"]
        );
        // Renewed meanwhile: alive again from when that was seen.
        let renewed = vec![lease("s0", Some("b"), 8)];
        t.observe(&renewed, start + Duration::from_secs(11));
        assert!(!t.expired(&renewed[0], start + Duration::from_secs(20)));
        assert!(t.expired(&renewed[0], start + Duration::from_secs(21)));
    }

    #[test]
    fn a_new_worker_steals_one_at_a_time_until_the_split_is_even() {
        let mut table: Vec<Lease> = (0..4)
            .map(|i| lease(&format!("s{i}"), Some("a"), 1))
            .collect();
        let mut b = Taker::new("b", settings());
        let now = Instant::now();
        for round in 0..3 {
            b.observe(&table, now);
            let d = b.decide(&table, now);
            assert!(d.take.is_empty());
            if round < 2 {
                assert_eq!(d.steal.len(), 1, "round {round}");
                let key = d.steal[0].key.clone();
                let l = table.iter_mut().find(|l| l.key == key).unwrap();
                l.owner = Some("b".into());
                l.counter += 1;
            } else {
                assert!(d.steal.is_empty(), "2 and 2 is even");
            }
        }
        let owned_by = |w: &str| {
            table
                .iter()
                .filter(|l| l.owner.as_deref() == Some(w))
                .count()
        };
        assert_eq!((owned_by("a"), owned_by("b")), (2, 2));
    }

    #[test]
    fn an_uneven_split_is_left_as_it_is() {
        // Five leases, two workers: three and two; the one with two does not steal.
        let table: Vec<Lease> = (0..5)
            .map(|i| lease(&format!("s{i}"), Some(if i < 3 { "a" } else { "b" }), 1))
            .collect();
        let mut b = Taker::new("b", settings());
        let now = Instant::now();
        b.observe(&table, now);
        assert_eq!(b.decide(&table, now), Decision::default());
    }

    #[test]
    fn children_wait_for_their_parents_to_end() {
        let parent = lease("s0", Some("b"), 3);
        let child = Lease::new("s1", Checkpoint::TrimHorizon, vec!["s0".into()]);
        let mut t = Taker::new("a", settings());
        let now = Instant::now();
        let table = vec![parent.clone(), child.clone()];
        t.observe(&table, now);
        assert!(t.decide(&table, now).take.is_empty());
        let ended = Lease {
            checkpoint: Checkpoint::ShardEnd,
            ..parent
        };
        let table = vec![ended, child];
        t.observe(&table, now);
        assert_eq!(keys(&t.decide(&table, now).take), ["s1"]);
        // A parent whose lease was deleted is finished too.
        let orphan = vec![Lease::new("s2", Checkpoint::TrimHorizon, vec!["s9".into()])];
        t.observe(&orphan, now);
        assert_eq!(keys(&t.decide(&orphan, now).take), ["s2"]);
    }

    #[test]
    fn max_leases_caps_the_share() {
        let table: Vec<Lease> = (0..4).map(|i| lease(&format!("s{i}"), None, 0)).collect();
        let mut t = Taker::new(
            "a",
            Balance {
                max_leases: 3,
                ..settings()
            },
        );
        let now = Instant::now();
        t.observe(&table, now);
        assert_eq!(t.decide(&table, now).take.len(), 3);
    }
}
