//! The endpoint's open connections: at most `max_connections` of them, each known as busy
//! (a request's headers have arrived and it is being answered) or idle (waiting for a
//! request, or for the rest of its headers, as a slow or malicious client keeps it).
//!
//! At the cap a new connection takes the place of the oldest idle one, which is closed:
//! connections that hold a slot without sending a request (slowloris) cannot lock out
//! clients that do. A connection is never closed while a request on it is answered.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The registry of open connections.
pub struct Connections {
    max: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    /// By age: ids only grow.
    by_id: BTreeMap<u64, Arc<State>>,
    next: u64,
}

/// What the registry and a connection's task share.
#[derive(Default)]
pub struct State {
    /// Requests being answered on it.
    busy: AtomicUsize,
    /// Told to close (it was idle and its slot was needed).
    close: Notify,
}

/// A connection's place in the registry; given back when dropped.
pub struct Slot {
    id: u64,
    state: Arc<State>,
    connections: Arc<Connections>,
}

impl Connections {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::default(),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for a new connection: a free one, or that of the oldest idle connection
    /// (which is told to close). `None` when every slot is held by a busy connection.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.open.lock().unwrap();
        if open.by_id.len() >= self.max && !Self::evict_oldest_idle(&mut open) {
            return None;
        }
        let id = open.next;
        open.next += 1;
        let state = Arc::new(State::default());
        open.by_id.insert(id, Arc::clone(&state));
        Some(Slot {
            id,
            state,
            connections: Arc::clone(self),
        })
    }

    /// Closes the oldest idle connection, to free its descriptor (accept failed with
    /// EMFILE); false when none is idle.
    pub fn evict_idle(&self) -> bool {
        Self::evict_oldest_idle(&mut self.open.lock().unwrap())
    }

    fn evict_oldest_idle(open: &mut Open) -> bool {
        let idle = open
            .by_id
            .iter()
            .find(|(_, s)| s.busy.load(Ordering::Acquire) == 0)
            .map(|(&id, _)| id);
        match idle.and_then(|id| open.by_id.remove(&id)) {
            Some(state) => {
                // `notify_one` keeps the wake-up for a task not yet waiting.
                state.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Connections open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().unwrap().by_id.len()
    }
}

impl State {
    /// Marks a request as being answered until the guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }

    /// Whether a request is being answered.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }
}

impl Slot {
    /// What the connection's requests mark themselves busy on.
    pub fn state(&self) -> Arc<State> {
        Arc::clone(&self.state)
    }

    /// Resolves when the registry needs this (idle) connection's slot.
    pub async fn evicted(&self) {
        self.state.close.notified().await
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.open.lock().unwrap().by_id.remove(&self.id);
    }
}

/// A request being answered.
pub struct Busy(Arc<State>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let connections = Connections::new(3);
        let a = connections.admit().unwrap();
        let b = connections.admit().unwrap();
        let c = connections.admit().unwrap();
        let _answering = a.state().busy();
        // Full: the oldest idle one (b; a is answering a request) is told to close.
        let d = connections.admit().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), b.evicted())
            .await
            .expect("b is told to close");
        assert_eq!(connections.len(), 3);
        drop(b); // its task ends; its slot was already taken over
        assert_eq!(connections.len(), 3);
        let _c_busy = c.state().busy();
        let _d_busy = d.state().busy();
        // Everything open is busy: no room, and nothing is closed.
        assert!(connections.admit().is_none());
        assert!(!connections.evict_idle());
        drop(_d_busy);
        assert!(connections.evict_idle(), "d is idle again");
        assert_eq!(connections.len(), 2);
    }
}
