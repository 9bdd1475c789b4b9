//! Indexer acknowledgement: request tasks register the ack id their request got and
//! wait; one poller per channel asks `/ack` for every pending id each interval and
//! answers `true` as it comes, `false` once an id has waited `timeout` (pending and lost
//! ids look the same to HEC, so time is the only way to tell).
//!
//! A poll runs beside the poller's loop, not inside it. One without an answer within
//! `poll_timeout` is late: the next goes out on another connection beside it, so a
//! connection that accepts a poll and never answers holds up neither registrations,
//! expiry nor polling. A late poll is not dropped, though: HEC says `true` only once, and
//! a slow answer may carry it. It runs on until `late_limit` (or until [`MAX_POLLS`]
//! polls are out, when the oldest goes), and the ids it asks about are not expired while
//! it does (for `late_limit` past their own deadline at most); a `true` from any poll
//! settles an id.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::response::acknowledged;
use crate::Collector;

/// The handle request tasks wait through.
pub(crate) struct Acker {
    register: mpsc::UnboundedSender<(u64, oneshot::Sender<bool>)>,
}

impl Acker {
    /// Starts the poller; it stops when the last handle is dropped. A poll that has no
    /// answer within `poll_timeout` has another go out beside it; it is given up (and its
    /// connection with it) after `late_limit`.
    pub fn start(
        collector: Arc<Collector>,
        interval: Duration,
        timeout: Duration,
        poll_timeout: Duration,
        late_limit: Duration,
    ) -> Self {
        // Unbounded, but never longer than the requests in flight (`max_in_flight`).
        let (register, requests) = mpsc::unbounded_channel();
        let times = Times {
            interval,
            timeout,
            poll_timeout,
            late_limit: late_limit.max(poll_timeout),
        };
        tokio::spawn(poll(collector, requests, times));
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

/// The most polls out at once: past it the oldest late one is given up, so a collector
/// whose connections go silent costs a few of them, not one per `poll_timeout`.
const MAX_POLLS: usize = 4;

struct Times {
    interval: Duration,
    timeout: Duration,
    poll_timeout: Duration,
    late_limit: Duration,
}

/// A poll that is out.
struct Out {
    number: u64,
    started: Instant,
    ids: Vec<u64>,
    abort: AbortHandle,
}

/// The polls that are out, oldest first, and how many of them ask about each id.
#[derive(Default)]
struct Polls {
    out: VecDeque<Out>,
    asked: HashMap<u64, usize>,
}

impl Polls {
    fn add(&mut self, out: Out) {
        for id in &out.ids {
            *self.asked.entry(*id).or_default() += 1;
        }
        self.out.push_back(out);
    }

    /// Forgets poll `number` (answered, failed or given up).
    fn remove(&mut self, number: u64) -> Option<Out> {
        let at = self.out.iter().position(|o| o.number == number)?;
        let out = self.out.remove(at)?;
        for id in &out.ids {
            if let Some(n) = self.asked.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    self.asked.remove(id);
                }
            }
        }
        Some(out)
    }

    fn asks(&self, id: u64) -> bool {
        self.asked.contains_key(&id)
    }

    /// True while the newest poll is within its deadline: no other is needed yet.
    fn fresh(&self, now: Instant, poll_timeout: Duration) -> bool {
        self.out
            .back()
            .is_some_and(|o| now.duration_since(o.started) < poll_timeout)
    }
}

async fn poll(
    collector: Arc<Collector>,
    mut requests: mpsc::UnboundedReceiver<(u64, oneshot::Sender<bool>)>,
    times: Times,
) {
    let mut pending: Pending = HashMap::new();
    let mut ticks = tokio::time::interval(times.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks: JoinSet<(u64, Vec<u64>)> = JoinSet::new();
    let mut polls = Polls::default();
    let mut numbers = 0u64;
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some((id, tx)) => {
                    pending.insert(id, (tx, Instant::now() + times.timeout));
                }
                None => break,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                // A poll given up (aborted) was forgotten when it was.
                let Ok((number, acked)) = done else { continue };
                if let Some(out) = polls.remove(number) {
                    let late = out.started.elapsed();
                    if late >= times.poll_timeout {
                        tracing::debug!(sink = %collector.name, "a late ack poll answered after {late:?}");
                    }
                }
                for id in acked {
                    if let Some((tx, _)) = pending.remove(&id) {
                        let _ = tx.send(true);
                    }
                }
            }
            _ = ticks.tick(), if !pending.is_empty() => {
                let now = Instant::now();
                // Dropping an expired id's sender answers its waiter `false`. An id a poll
                // that is out asks about waits for its answer (HEC says `true` once), but
                // not past `late_limit` more: polls that never answer would otherwise keep
                // it forever, each new one asking about it again.
                pending.retain(|id, (tx, deadline)| {
                    let waits = *deadline > now
                        || (polls.asks(*id) && *deadline + times.late_limit > now);
                    waits && !tx.is_closed()
                });
                if pending.is_empty() || polls.fresh(now, times.poll_timeout) {
                    continue;
                }
                if !polls.out.is_empty() {
                    tracing::warn!(sink = %collector.name,
                        "ack poll had no answer within {:?}; asking again on another connection \
                         (the late one may still answer)", times.poll_timeout);
                }
                if polls.out.len() >= MAX_POLLS {
                    let oldest = polls.out.front().map(|o| o.number).expect("polls are out");
                    if let Some(out) = polls.remove(oldest) {
                        out.abort.abort();
                    }
                }
                let ids: Vec<u64> = pending.keys().copied().collect();
                let collector = Arc::clone(&collector);
                let number = numbers;
                numbers += 1;
                let (asked, late_limit) = (ids.clone(), times.late_limit);
                let abort = tasks.spawn(async move {
                    (number, ask(&collector, asked, late_limit).await)
                });
                polls.add(Out { number, started: now, ids, abort });
            }
        }
    }
    tasks.abort_all();
}

/// One `/ack` request for `ids`; the ids the collector says are indexed (none when it
/// has not answered within `limit`).
async fn ask(collector: &Collector, ids: Vec<u64>, limit: Duration) -> Vec<u64> {
    let body = serde_json::to_vec(&serde_json::json!({ "acks": ids })).expect("serializable");
    let request = collector.request(&collector.ack_url, Bytes::from(body), false);
    let response = match tokio::time::timeout(limit, collector.client.send(request)).await {
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
            tracing::warn!(sink = %collector.name, "ack poll had no answer within {limit:?}: given up");
            return Vec::new();
        }
    };
    acknowledged(&response.body).unwrap_or_else(|| {
        tracing::warn!(sink = %collector.name, "ack poll: unexpected answer");
        Vec::new()
    })
}
