//! The shutdown request: set once by the runtime, watched by every source (and anything
//! else that must end at its next step).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// The shutdown request every component watches: a flag for blocking code to poll between
/// blocks, and a notification async code can await.
#[derive(Debug, Default)]
pub struct Stop {
    set: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn set(&self) {
        self.set.store(true, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Relaxed)
    }

    /// Resolves once the stop is set.
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a `set` in between is not missed.
        notified.as_mut().enable();
        if self.is_set() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn stop_wakes_waiters_set_before_or_after_they_wait() {
        let stop = Arc::new(Stop::default());
        let waiter = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move { stop.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!stop.is_set());
        stop.set();
        waiter.await.unwrap();
        // Already set: returns at once.
        stop.wait().await;
        assert!(stop.is_set());
    }
}
