//! What the servers flowlog runs (the `/metrics` endpoint, the Firehose endpoint) share:
//! accepting connections without spinning when accept fails, and warnings that an
//! unauthenticated peer cannot turn into a flood of log lines.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// `address = "..."` in a configuration: `IP:port` (`[::1]:port` for IPv6), or
/// `host:port` as operators write it (`localhost:8443`). Reading the file checks the form
/// only; a host name is resolved when the address is bound (its first address, which is
/// what a server binds), so `flowlog validate` reaches no name server.
///
/// The first resolution is kept: a reload that falls back to the running configuration
/// binds what that one bound, even if the name server stopped answering meanwhile.
#[derive(Debug, Clone)]
pub struct ListenAddress {
    text: String,
    resolved: std::sync::OnceLock<SocketAddr>,
}

impl PartialEq for ListenAddress {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for ListenAddress {}

impl ListenAddress {
    pub fn parse(text: &str) -> Result<Self, String> {
        let address = |text: &str| Self {
            text: text.to_string(),
            resolved: std::sync::OnceLock::new(),
        };
        if text.parse::<SocketAddr>().is_ok() {
            return Ok(address(text));
        }
        if text.contains("://") {
            return Err(format!(
                "`{text}` is a URL: write host:port or IP:port (e.g. 127.0.0.1:8443)"
            ));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!(
                "`{text}` is not an address: write host:port or IP:port (e.g. 127.0.0.1:8443)"
            ));
        };
        if port.parse::<u16>().is_err() || host.is_empty() {
            return Err(format!("`{text}` is not host:port (a port is 0 to 65535)"));
        }
        if host.starts_with('[') {
            return Err(format!(
                "`{text}`: `{host}` is not an IPv6 address flowlog can listen on (zone ids \
                 are not supported)"
            ));
        }
        // An IPv6 address needs its brackets: `::1:8443` would be read as a host name.
        if host.contains(':') {
            return Err(format!(
                "`{text}` is not an address: an IPv6 address is written [ADDRESS]:port"
            ));
        }
        if host == "*" {
            return Err(format!(
                "`{text}`: to listen on every interface write 0.0.0.0:{port} (or [::]:{port})"
            ));
        }
        let name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
        if !host.chars().all(name) {
            return Err(format!("`{text}`: `{host}` is not a host name"));
        }
        Ok(address(text))
    }

    /// The address to bind: the IP as written, or the host name's first address (looked
    /// up once).
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        if let Some(address) = self.resolved.get() {
            return Ok(*address);
        }
        let address = match self.text.parse() {
            Ok(address) => address,
            Err(_) => {
                let host = self.text.rsplit_once(':').map_or(&*self.text, |(h, _)| h);
                use std::net::ToSocketAddrs;
                match self.text.to_socket_addrs() {
                    Ok(mut found) => found
                        .next()
                        .ok_or_else(|| format!("`{host}` has no address"))?,
                    Err(e) => return Err(format!("`{host}` cannot be resolved: {e}")),
                }
            }
        };
        Ok(*self.resolved.get_or_init(|| address))
    }

    /// Binds the address for a tokio server to take over (`TcpListener::from_std`),
    /// before anything else starts, so that a taken port (or a name that does not
    /// resolve) fails the start, not a task later.
    pub fn bind(&self) -> std::io::Result<std::net::TcpListener> {
        let address = self.resolve().map_err(std::io::Error::other)?;
        let listener = std::net::TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    }
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for ListenAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
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
    fn an_address_is_checked_when_read_and_resolved_when_bound() {
        for good in [
            "127.0.0.1:8443",
            "[::1]:9598",
            "0.0.0.0:0",
            "localhost:8443",
        ] {
            assert!(ListenAddress::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "8443",
            "localhost",
            ":8443",
            "host:99999",
            "::1:8443",
            "[::1]",
        ] {
            assert!(ListenAddress::parse(bad).is_err(), "{bad}");
        }
        // A name that does not resolve is the bind's failure, not the file's.
        let nowhere = ListenAddress::parse("no-such-host.invalid:8443").unwrap();
        let e = nowhere.bind().unwrap_err().to_string();
        assert!(
            e.contains("`no-such-host.invalid` cannot be resolved"),
            "{e}"
        );
        let local = ListenAddress::parse("localhost:0")
            .unwrap()
            .resolve()
            .unwrap();
        assert!(local.ip().is_loopback(), "{local}");
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
