//! One process's part of the application: the leases it holds, renewed every third of a
//! lease duration, and the rounds in which it takes free or expired leases and steals
//! from busier workers. Renewals and checkpoints of one lease go through one lock, so the
//! counter each writes on is the one the table holds.
//!
//! A lease this process cannot renew is held only until a lease duration after its last
//! renewal, by this process's clock: the other workers, which count the same duration
//! from when they saw that renewal, cannot have taken it earlier. Its reader must stop
//! by then ([`Coordinator::held_until`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::balance::{Balance, Taker};
use crate::lease::{Checkpoint, Lease, LeaseError, LeaseTable};

/// A lease this process holds.
struct Held {
    lease: Arc<Mutex<Lease>>,
    renewed: Instant,
}

/// What a round changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Leases taken (free, expired or stolen), as now held: start their readers.
    pub started: Vec<Lease>,
    /// Leases lost to another worker (or to a failed renewal): stop their readers.
    pub lost: Vec<String>,
}

pub struct Coordinator {
    table: LeaseTable,
    taker: Taker,
    balance: Balance,
    held: HashMap<String, Held>,
}

impl Coordinator {
    pub fn new(table: LeaseTable, worker: impl Into<String>, balance: Balance) -> Self {
        Self {
            taker: Taker::new(worker, balance.clone()),
            table,
            balance,
            held: HashMap::new(),
        }
    }

    pub fn worker(&self) -> &str {
        self.taker.me()
    }

    /// How often [`renew`](Self::renew) should run: three renewals per lease duration.
    pub fn renew_every(&self) -> Duration {
        self.balance.lease_duration / 3
    }

    /// The shards held now.
    pub fn held(&self) -> Vec<String> {
        let mut shards: Vec<String> = self.held.keys().cloned().collect();
        shards.sort();
        shards
    }

    /// Until when `shard` may be read without a renewal: a lease duration after the last.
    pub fn held_until(&self, shard: &str) -> Option<Instant> {
        self.held
            .get(shard)
            .map(|h| h.renewed + self.balance.lease_duration)
    }

    /// Renews every lease held; the shards lost (someone else wrote the lease, or it
    /// could not be renewed within a lease duration of the last renewal).
    pub async fn renew(&mut self) -> Vec<String> {
        let mut lost = Vec::new();
        for (shard, held) in &mut self.held {
            let mut lease = held.lease.lock().await;
            match self.table.renew(&lease).await {
                Ok(Some(renewed)) => {
                    *lease = renewed;
                    held.renewed = Instant::now();
                }
                Ok(None) => lost.push(shard.clone()),
                Err(e) => {
                    // DynamoDB unreachable: kept until its time is up, then let go.
                    if held.renewed.elapsed() >= self.balance.lease_duration {
                        tracing::warn!(
                            "kinesis: lease of {shard} not renewed in time ({e}); let go"
                        );
                        lost.push(shard.clone());
                    }
                }
            }
        }
        for shard in &lost {
            self.held.remove(shard);
        }
        lost
    }

    /// Renews, then takes and steals as the taker decides from the table as it is now.
    pub async fn round(&mut self) -> Result<Round, LeaseError> {
        let mut round = Round {
            lost: self.renew().await,
            ..Round::default()
        };
        let leases = self.table.list().await?;
        let now = std::time::Instant::now();
        self.taker.observe(&leases, now);
        // What the table says this process holds is what the renewals said; a lease the
        // table gives to another is lost even if no renewal has failed on it yet.
        for lease in &leases {
            if self.held.contains_key(&lease.key) && lease.owner.as_deref() != Some(self.worker()) {
                self.held.remove(&lease.key);
                round.lost.push(lease.key.clone());
            }
        }
        let decision = self.taker.decide(&leases, now);
        for lease in decision.take.iter().chain(&decision.steal) {
            if let Some(taken) = self.table.take(lease, self.taker.me()).await? {
                self.held.insert(
                    taken.key.clone(),
                    Held {
                        lease: Arc::new(Mutex::new(taken.clone())),
                        renewed: Instant::now(),
                    },
                );
                round.started.push(taken);
            }
        }
        Ok(round)
    }

    /// Moves `shard`'s checkpoint; false when the lease is not held (any more).
    pub async fn checkpoint(
        &mut self,
        shard: &str,
        checkpoint: Checkpoint,
    ) -> Result<bool, LeaseError> {
        let Some(held) = self.held.get(shard) else {
            return Ok(false);
        };
        let mut lease = held.lease.lock().await;
        match self.table.checkpoint(&lease, checkpoint).await? {
            Some(written) => {
                *lease = written;
                Ok(true)
            }
            None => {
                drop(lease);
                self.held.remove(shard);
                Ok(false)
            }
        }
    }

    /// Lets go of a shard: one read to its end (its checkpoint is `SHARD_END`; the lease
    /// stays in the table until its children have started), or one that could not be
    /// read, for a later round (or another process) to take again from its checkpoint.
    pub async fn release(&mut self, shard: &str) -> Result<(), LeaseError> {
        if let Some(held) = self.held.remove(shard) {
            let lease = held.lease.lock().await;
            self.table.give_up(&lease).await?;
        }
        Ok(())
    }

    /// Gives up every lease held (a clean shutdown), so others take them at once.
    pub async fn give_up_all(&mut self) -> Result<(), LeaseError> {
        for (_, held) in self.held.drain() {
            let lease = held.lease.lock().await;
            self.table.give_up(&lease).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn table(test: &str) -> LeaseTable {
        let table = crate::testing::lease_table(test).await;
        for i in 0..4 {
            let lease = Lease::new(
                format!("shardId-00000000000{i}"),
                Checkpoint::TrimHorizon,
                vec![],
            );
            table.create(&lease).await.unwrap();
        }
        table
    }

    fn balance(lease_duration: Duration) -> Balance {
        Balance {
            lease_duration,
            max_leases: usize::MAX,
            max_steal: 1,
        }
    }

    #[tokio::test]
    async fn two_workers_split_four_shards_two_and_two() {
        let t = table("coordinator-split").await;
        let lease_duration = Duration::from_secs(600);
        let mut a = Coordinator::new(t.clone(), "worker-a", balance(lease_duration));
        let first = a.round().await.unwrap();
        assert_eq!(first.started.len(), 4, "alone, a takes every shard");
        let mut b = Coordinator::new(t.clone(), "worker-b", balance(lease_duration));
        // b steals one per round until the split is even; a learns of each loss.
        let mut lost_by_a = Vec::new();
        for _ in 0..4 {
            b.round().await.unwrap();
            lost_by_a.extend(a.round().await.unwrap().lost);
        }
        assert_eq!((a.held().len(), b.held().len()), (2, 2));
        assert_eq!(lost_by_a.len(), 2);
        let mut all = a.held();
        all.extend(b.held());
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4, "no shard is held by both");
        // A checkpoint by the owner holds; one by the worker that lost the shard does not.
        let at = Checkpoint::At {
            sequence: "42".into(),
            sub_sequence: 0,
        };
        assert!(b.checkpoint(&b.held()[0], at.clone()).await.unwrap());
        assert!(!a.checkpoint(&lost_by_a[0], at).await.unwrap());
    }

    #[tokio::test]
    async fn a_dead_workers_leases_are_taken_after_a_lease_duration() {
        let t = table("coordinator-failover").await;
        let lease_duration = Duration::from_secs(2);
        let mut a = Coordinator::new(t.clone(), "worker-a", balance(lease_duration));
        let mut b = Coordinator::new(t.clone(), "worker-b", balance(lease_duration));
        a.round().await.unwrap();
        for _ in 0..3 {
            b.round().await.unwrap();
            a.round().await.unwrap();
        }
        assert_eq!((a.held().len(), b.held().len()), (2, 2));
        // a stops (kill -9: no give-up, no renewal). b sees a's counters stand still.
        drop(a);
        let started = std::time::Instant::now();
        let mut rounds = 0;
        while b.held().len() < 4 {
            rounds += 1;
            assert!(rounds < 100, "b never took a's leases");
            b.round().await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            started.elapsed() >= lease_duration,
            "taken before a lease duration passed"
        );
    }

    #[tokio::test]
    async fn a_clean_shutdown_hands_its_leases_over_at_once() {
        let t = table("coordinator-give-up").await;
        let mut a = Coordinator::new(t.clone(), "worker-a", balance(Duration::from_secs(600)));
        a.round().await.unwrap();
        a.give_up_all().await.unwrap();
        let mut b = Coordinator::new(t.clone(), "worker-b", balance(Duration::from_secs(600)));
        assert_eq!(b.round().await.unwrap().started.len(), 4);
    }
}
