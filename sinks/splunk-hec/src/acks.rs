//! Indexer acknowledgement: request tasks register the ack id their request got and
//! wait; one poller per channel asks `/ack` for every pending id each interval and
//! answers `true` as it comes, `false` once an id has waited `timeout` (pending and lost
//! ids look the same to HEC, so time is the only way to tell).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::response::AckReply;
use crate::Collector;

/// The handle request tasks wait through.
pub(crate) struct Acker {
    register: mpsc::UnboundedSender<(u64, oneshot::Sender<bool>)>,
}

impl Acker {
    /// Starts the poller; it stops when the last handle is dropped.
    pub fn start(shared: Arc<Collector>, interval: Duration, timeout: Duration) -> Self {
        // Unbounded, but never longer than the requests in flight (`max_in_flight`).
        let (register, requests) = mpsc::unbounded_channel();
        tokio::spawn(poll(shared, requests, interval, timeout));
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

async fn poll(
    shared: Arc<Collector>,
    mut requests: mpsc::UnboundedReceiver<(u64, oneshot::Sender<bool>)>,
    interval: Duration,
    timeout: Duration,
) {
    let mut pending: HashMap<u64, (oneshot::Sender<bool>, Instant)> = HashMap::new();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some((id, tx)) => {
                    pending.insert(id, (tx, Instant::now() + timeout));
                }
                None => return,
            },
            _ = ticks.tick(), if !pending.is_empty() => {
                ask(&shared, &mut pending).await;
                let now = Instant::now();
                // Dropping an expired id's sender answers its waiter `false`.
                pending.retain(|_, (tx, deadline)| *deadline > now && !tx.is_closed());
            }
        }
    }
}

/// One `/ack` request for every pending id; answers the ones that are `true`.
async fn ask(shared: &Collector, pending: &mut HashMap<u64, (oneshot::Sender<bool>, Instant)>) {
    let ids: Vec<u64> = pending.keys().copied().collect();
    let body = serde_json::to_vec(&serde_json::json!({ "acks": ids })).expect("serializable");
    let request = shared.request(&shared.ack_url, Bytes::from(body), false);
    let response = match shared.client.send(request).await {
        Ok(r) if r.status == 200 => r,
        Ok(r) => {
            tracing::warn!(sink = %shared.name, status = r.status,
                "ack poll refused: {}", String::from_utf8_lossy(&r.body).trim());
            return;
        }
        Err(e) => {
            tracing::warn!(sink = %shared.name, "ack poll failed: {e}");
            return;
        }
    };
    let Ok(reply) = serde_json::from_slice::<AckReply>(&response.body) else {
        tracing::warn!(sink = %shared.name, "ack poll: unexpected answer");
        return;
    };
    for (id, acked) in reply.acks {
        if !acked {
            continue;
        }
        if let Some((tx, _)) = id.parse().ok().and_then(|id: u64| pending.remove(&id)) {
            let _ = tx.send(true);
        }
    }
}
