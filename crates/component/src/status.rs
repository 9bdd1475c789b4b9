//! Each component's state, as `/health` reports it: failing since when and why, or well.
//!
//! A component says [`ComponentMetrics::error`](crate::ComponentMetrics::error) when an
//! attempt at its job failed (a listing, a read, a receive, a request) and
//! [`ComponentMetrics::recovered`](crate::ComponentMetrics::recovered) when one succeeded
//! again. Errors are counted (`flowlog_component_errors_total{component,kind}`) whether
//! or not they last; the state says whether they still do.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One component's state, shared by its handles.
#[derive(Debug, Default)]
pub struct Status {
    failing: Mutex<Option<Failing>>,
}

#[derive(Debug, Clone)]
struct Failing {
    since: Instant,
    last: String,
    errors: u64,
}

/// What [`Status::read`] returns: how long a component has been failing and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Ok,
    Failing {
        /// Since the first error after the last success.
        for_: Duration,
        /// The latest error.
        last: String,
        /// Errors since the last success.
        errors: u64,
    },
}

impl Status {
    pub(crate) fn fail(&self, message: String) {
        let mut failing = self.failing.lock().expect("not poisoned");
        match failing.as_mut() {
            Some(f) => {
                f.last = message;
                f.errors += 1;
            }
            None => {
                *failing = Some(Failing {
                    since: Instant::now(),
                    last: message,
                    errors: 1,
                })
            }
        }
    }

    pub(crate) fn recover(&self) {
        // Checked first: the common case (nothing failing) takes no write.
        let mut failing = self.failing.lock().expect("not poisoned");
        if failing.is_some() {
            *failing = None;
        }
    }

    pub fn read(&self) -> State {
        match &*self.failing.lock().expect("not poisoned") {
            None => State::Ok,
            Some(f) => State::Failing {
                for_: f.since.elapsed(),
                last: f.last.clone(),
                errors: f.errors,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_lasts_until_a_success_and_counts_its_errors() {
        let status = Status::default();
        assert_eq!(status.read(), State::Ok);
        status.fail("first".into());
        status.fail("second".into());
        let State::Failing { last, errors, .. } = status.read() else {
            panic!("failing");
        };
        assert_eq!((last.as_str(), errors), ("second", 2));
        status.recover();
        assert_eq!(status.read(), State::Ok);
    }
}
