//! Waiting between attempts: exponential backoff with full jitter, capped per attempt and
//! never giving up, and `Retry-After` taking precedence when a receiver names a time.
//!
//! Giving up is not a retry policy here: a transient failure (server busy, connection
//! reset) is retried for as long as it lasts, while backpressure holds the sources, so
//! nothing is dropped because a receiver was down longer than some budget.

use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the first retry (before jitter).
    pub initial: Duration,
    /// Longest wait between two attempts, whatever the attempt count or `Retry-After`.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

/// The attempts of one piece of work.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, attempt: 0 }
    }

    /// How many retries were asked for so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The wait before the next attempt: a uniformly random time up to
    /// `initial * 2^attempt` (capped at `max`): "full jitter", which spreads the retries
    /// of many senders best. A `Retry-After` lengthens it (capped at `max`) but never
    /// shortens it: `Retry-After: 0` or a date in the past from a throttling server must
    /// not turn into a hot retry loop.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let jittered = self.jittered();
        match retry_after {
            Some(after) => after.min(self.policy.max).max(jittered),
            None => jittered,
        }
    }

    fn jittered(&self) -> Duration {
        let exp = self.attempt.saturating_sub(1).min(20);
        let ceiling = self
            .policy
            .initial
            .saturating_mul(1 << exp)
            .min(self.policy.max);
        // At least a millisecond, so a zero jitter does not turn into a busy loop.
        let nanos = fastrand::u64(0..=ceiling.as_nanos() as u64);
        Duration::from_nanos(nanos).max(Duration::from_millis(1))
    }

    /// Sleeps for [`Backoff::next_delay`].
    pub async fn wait(&mut self, retry_after: Option<Duration>) {
        tokio::time::sleep(self.next_delay(retry_after)).await;
    }
}

/// `Retry-After` as seconds (HEC and most APIs) or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate(value)?;
    let now = std::time::SystemTime::now();
    Some(when.duration_since(now).unwrap_or_default())
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires senders to use.
fn httpdate(value: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = value.split_ascii_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    // The ranges RFC 9110's grammar allows (and a year a date can have), so that no field
    // of a hostile header makes the arithmetic overflow.
    let fits = (1..=31).contains(&day)
        && (1..=9999).contains(&year)
        && (0..24).contains(&h)
        && (0..60).contains(&m)
        && (0..=60).contains(&s);
    if !fits {
        return None;
    }
    let days = flowlog_model::time::days_from_civil(year, month, day);
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    let secs = u64::try_from(secs).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_up_to_the_cap_and_retry_after_wins() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let mut backoff = Backoff::new(policy);
        for attempt in 0..40 {
            let ceiling = (100u64 << attempt.min(20)).min(2000);
            let d = backoff.next_delay(None);
            assert!(d <= Duration::from_millis(ceiling), "{attempt}: {d:?}");
        }
        assert_eq!(backoff.attempts(), 40);
        assert!(backoff.next_delay(Some(Duration::from_secs(1))) >= Duration::from_secs(1));
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(600))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn retry_after_zero_still_backs_off() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let mut backoff = Backoff::new(policy);
        fastrand::seed(7);
        // Full jitter can draw a short wait now and then, but not every time: the sum over
        // many attempts grows like the exponential ceiling, not like zero.
        let total: Duration = (0..20)
            .map(|_| backoff.next_delay(Some(Duration::ZERO)))
            .sum();
        assert!(total >= Duration::from_secs(5), "{total:?}");
        let past = parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(backoff.next_delay(past) >= Duration::from_millis(1));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert!(parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT").unwrap() > Duration::ZERO);
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn out_of_range_dates_are_not_dates() {
        // Found by the hec_answer fuzz target: a time of day this large overflowed.
        let huge = "Sun, 06 Nov 1995 08:4922222222222222223:7 GMT";
        assert_eq!(parse_retry_after(huge), None);
        for bad in [
            "Sun, 06 Nov 99999999999999 08:49:37 GMT",
            "Sun, 99999999999999 Nov 1995 08:49:37 GMT",
            "Sun, 06 Nov 1995 -1:49:37 GMT",
            "Sun, 06 Nov 1995 08:49:9223372036854775807 GMT",
        ] {
            assert_eq!(parse_retry_after(bad), None, "{bad}");
        }
    }
}
