//! Indexer acknowledgement: request tasks register the ack id their request got and
//! wait; one poller per channel asks `/ack` for every pending id each interval and
//! answers `true` as it comes, `false` once an id has waited `timeout` (pending and lost
//! ids look the same to HEC, so time is the only way to tell).
//!
//! A poll runs beside the poller's loop, not inside it, and has its own deadline: a
//! connection that accepts a poll and never answers must not stop registrations, expiry
//! or the next poll for a whole request timeout. At most one poll is out at a time, and
//! an id it asks about is not expired before it answers (HEC says `true` only once).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::response::acknowledged;
use crate::Collector;

/// The handle request tasks wait through.
pub(crate) struct Acker {
    register: mpsc::UnboundedSender<(u64, oneshot::Sender<bool>)>,
}

impl Acker {
    /// Starts the poller; it stops when the last handle is dropped. A poll that has no
    /// answer within `poll_timeout` is abandoned (and its connection with it).
    pub fn start(
        collector: Arc<Collector>,
        interval: Duration,
        timeout: Duration,
        poll_timeout: Duration,
    ) -> Self {
        // Unbounded, but never longer than the requests in flight (`max_in_flight`).
        let (register, requests) = mpsc::unbounded_channel();
        tokio::spawn(poll(collector, requests, interval, timeout, poll_timeout));
        Self { register }
    }

    /// True once the indexer has acknowledged `id`; false if it has not within the
    /// timeout (the request should be sent again).
    pub async fn wait(&self, id: u64) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.register.send((id, tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

type Pending = HashMap<u64, (oneshot::Sender<bool>, Instant)>;

async fn poll(
    collector: Arc<Collector>,
    mut requests: mpsc::UnboundedReceiver<(u64, oneshot::Sender<bool>)>,
    interval: Duration,
    timeout: Duration,
    poll_timeout: Duration,
) {
    let mut pending: Pending = HashMap::new();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut asking: Option<JoinHandle<Vec<u64>>> = None;
    // The ids the poll that is out asks about. HEC answers `true` once and then forgets
    // the id, so such an id waits for that answer even past its deadline: dropping it
    // would have a request HEC acknowledged sent again.
    let mut asked: HashSet<u64> = HashSet::new();
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some((id, tx)) => {
                    pending.insert(id, (tx, Instant::now() + timeout));
                }
                None => break,
            },
            acked = async { asking.as_mut().expect("guarded").await }, if asking.is_some() => {
                asking = None;
                asked.clear();
                for id in acked.unwrap_or_default() {
                    if let Some((tx, _)) = pending.remove(&id) {
                        let _ = tx.send(true);
                    }
                }
            }
            _ = ticks.tick(), if !pending.is_empty() => {
                let now = Instant::now();
                // Dropping an expired id's sender answers its waiter `false`.
                pending.retain(|id, (tx, deadline)| {
                    (*deadline > now || asked.contains(id)) && !tx.is_closed()
                });
                if asking.is_none() && !pending.is_empty() {
                    let ids: Vec<u64> = pending.keys().copied().collect();
                    asked = ids.iter().copied().collect();
                    let collector = Arc::clone(&collector);
                    asking = Some(tokio::spawn(async move {
                        ask(&collector, ids, poll_timeout).await
                    }));
                }
            }
        }
    }
    if let Some(asking) = asking {
        asking.abort();
    }
}

/// One `/ack` request for `ids`; the ids the collector says are indexed.
async fn ask(collector: &Collector, ids: Vec<u64>, poll_timeout: Duration) -> Vec<u64> {
    let body = serde_json::to_vec(&serde_json::json!({ "acks": ids })).expect("serializable");
    let request = collector.request(&collector.ack_url, Bytes::from(body), false);
    let response = match tokio::time::timeout(poll_timeout, collector.client.send(request)).await {
        Ok(Ok(r)) if r.status == 200 => r,
        Ok(Ok(r)) => {
            tracing::warn!(sink = %collector.name, status = r.status,
                "ack poll refused: {}", String::from_utf8_lossy(&r.body).trim());
            return Vec::new();
        }
        Ok(Err(e)) => {
            tracing::warn!(sink = %collector.name, "ack poll failed: {e}");
            return Vec::new();
        }
        Err(_) => {
            tracing::warn!(sink = %collector.name,
                "ack poll had no answer within {poll_timeout:?}; asking again on another connection");
            return Vec::new();
        }
    };
    acknowledged(&response.body).unwrap_or_else(|| {
        tracing::warn!(sink = %collector.name, "ack poll: unexpected answer");
        Vec::new()
    })
}
