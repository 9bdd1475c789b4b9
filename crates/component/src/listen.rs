//! What the servers flowlog runs (the `/metrics` endpoint, the Firehose endpoint) share:
//! accepting connections without spinning when accept fails, and warnings that an
//! unauthenticated peer cannot turn into a flood of log lines.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// `address = "..."` in a configuration: `IP:port` (`[::1]:port` for IPv6), or
/// `host:port` with the host name resolved when the file is read (its first address,
/// which is what a server binds), so `localhost:8443` works as operators write it.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "`{text}` is not an address: write host:port or IP:port (e.g. 127.0.0.1:8443)"
        ));
    };
    if port.parse::<u16>().is_err() || host.is_empty() {
        return Err(format!("`{text}` is not host:port (a port is 0 to 65535)"));
    }
    use std::net::ToSocketAddrs;
    match text.to_socket_addrs() {
        Ok(mut found) => found
            .next()
            .ok_or_else(|| format!("`{host}` has no address")),
        Err(e) => Err(format!("`{host}` cannot be resolved: {e}")),
    }
}

/// Serde's side of [`parse_address`]: `#[serde(deserialize_with = "...::address")]`.
pub fn address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    parse_address(&text).map_err(serde::de::Error::custom)
}

/// [`address`] for an optional key.
pub fn optional_address<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    address(d).map(Some)
}

/// Binds `address` for a tokio server to take over (`TcpListener::from_std`), before
/// anything else starts, so that a taken port fails the start, not a task later.
pub fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// How long to wait after a failed accept (EMFILE, ENFILE, ENOBUFS...): retrying at once
/// would spin a core while the condition lasts.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The next connection from `accept`. A failed accept is logged (through `failures`, so
/// a condition that comes and goes does not flood the log), handed to `on_error` (which
/// may free a descriptor), and retried after [`ACCEPT_BACKOFF`].
pub async fn next_connection<F, A>(
    accept: &mut F,
    what: &str,
    failures: &Throttled,
    mut on_error: impl FnMut(&std::io::Error),
) -> (TcpStream, SocketAddr)
where
    F: FnMut() -> A,
    A: std::future::Future<Output = std::io::Result<(TcpStream, SocketAddr)>>,
{
    loop {
        match accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                failures.warn(what, || {
                    format!("cannot accept a connection: {e}; retrying every {ACCEPT_BACKOFF:?}")
                });
                on_error(&e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// A warning logged at most once per interval; the others are counted and the count is
/// told with the next one that is logged.
pub struct Throttled {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttled {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Logs `message` (made only when it is logged) unless one was logged lately.
    pub fn warn(&self, source: &str, message: impl FnOnce() -> String) {
        let mut state = self.state.lock().unwrap();
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < self.interval) {
            *suppressed += 1;
            return;
        }
        *last = Some(Instant::now());
        let more = std::mem::take(suppressed);
        drop(state);
        if more > 0 {
            tracing::warn!(
                source,
                "{} ({more} more like it since the last one)",
                message()
            );
        } else {
            tracing::warn!(source, "{}", message());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_failing_accept_backs_off_instead_of_spinning() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let mut accept = move || {
            let n = counted.fetch_add(1, Ordering::Relaxed);
            // Without a wait between failures this loop never yields: stop it here.
            assert!(n < 1000, "accept retried {n} times without waiting");
            std::future::ready(Err(std::io::Error::from_raw_os_error(24))) // EMFILE
        };
        let errors = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&errors);
        let server = tokio::spawn(async move {
            next_connection(
                &mut accept,
                "test",
                &Throttled::new(Duration::from_secs(10)),
                |_| {
                    seen.fetch_add(1, Ordering::Relaxed);
                },
            )
            .await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = calls.load(Ordering::Relaxed);
        assert!((5..=12).contains(&n), "{n} accepts in one (virtual) second");
        assert_eq!(errors.load(Ordering::Relaxed), n, "each failure is told");
        server.abort();
    }

    #[test]
    fn a_throttled_warning_counts_what_it_leaves_out() {
        let throttled = Throttled::new(Duration::from_secs(3600));
        for _ in 0..5 {
            throttled.warn("s", || "refused".into());
        }
        let (logged, suppressed) = *throttled.state.lock().unwrap();
        assert!(logged.is_some());
        assert_eq!(suppressed, 4, "one line an interval, the rest counted");
        // Past the interval the next one is logged and the count starts again.
        throttled.state.lock().unwrap().0 = Some(Instant::now() - Duration::from_secs(3601));
        throttled.warn("s", || "refused".into());
        assert_eq!(throttled.state.lock().unwrap().1, 0);
    }
}
