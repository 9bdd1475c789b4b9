//! The HTTP server every receiver runs: 127.0.0.1 on a free port, HTTP/1.1 or HTTP/2,
//! optionally TLS with a fresh test CA, in a runtime of its own (so async unit tests and
//! end-to-end tests of the binary can both use it); stopped when dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// An answer.
pub type Answer = http::Response<Full<Bytes>>;

/// What a handler returns to drop the connection without an answer (a scripted fault):
/// the service fails, and hyper closes the connection.
#[derive(Debug)]
pub struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault script")
    }
}

impl std::error::Error for DropConnection {}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    ca_pem: Option<String>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Serves every request with `handler`, whose answers have bodies of type `B`
    /// (mostly [`Answer`]; a gRPC service's stream its own).
    pub fn start<H, F, B>(name: &str, tls: bool, handler: H) -> Self
    where
        H: Fn(http::Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<http::Response<B>, DropConnection>> + Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Self::start_with(name, tls.then(crate::tls::TestPki::new), handler)
    }

    /// [`Server::start`] with the given PKI (TLS, maybe demanding client certificates).
    pub fn start_with<H, F, B>(name: &str, pki: Option<crate::tls::TestPki>, handler: H) -> Self
    where
        H: Fn(http::Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<http::Response<B>, DropConnection>> + Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name(name)
            .build()
            .expect("a runtime");
        // Bound here (not in the runtime) so that starting works from async code too.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("bound");
        let ca_pem = pki.as_ref().map(|p| p.ca_pem.clone());
        let acceptor = pki.map(|p| p.acceptor);
        let handler = Arc::new(handler);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = Arc::clone(&handler);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handler(request));
                    // HTTP/1.1, or HTTP/2 when the client starts with its preface.
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let _ = match acceptor {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        None => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                    };
                });
            }
        });
        Self {
            addr,
            ca_pem,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:<port>`, or `https://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The PEM of the CA that signed the server's certificate (with TLS).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A plain-text answer.
pub fn text(status: u16, body: &str) -> Answer {
    http::Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid answer")
}

/// A whole-request fault a receiver's script answers with, before it takes anything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Server busy (503).
    Busy,
    /// Throttled (429).
    Throttled,
    /// The connection dropped without an answer.
    Dropped,
}

/// The fault for the next request: one of the three, evenly, at `rate` (0..1) of requests.
pub fn roll_fault(rng: &mut Option<fastrand::Rng>, rate: f64) -> Option<Fault> {
    let roll = rng.as_mut().map_or(1.0, |r| r.f64());
    if roll >= rate {
        return None;
    }
    Some(match (roll / rate * 3.0) as u32 {
        0 => Fault::Busy,
        1 => Fault::Throttled,
        _ => Fault::Dropped,
    })
}

/// A JSON answer.
pub fn json(status: u16, body: &serde_json::Value) -> Answer {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

/// The main loop of a receiver run as a process: prints `url`, then every second the time
/// since the start and what `report` says (the receiver's counts), until standard input
/// ends. For the first `--down-secs` seconds, `set_down(true)`; then once `set_down(false)`.
pub fn run_until_stdin_ends(
    url: &str,
    args: &Args,
    set_down: impl Fn(bool),
    report: impl Fn() -> String,
) {
    use std::io::BufRead;
    println!("{url}");
    let down_secs = args.number("--down-secs", 0.0);
    let mut down = down_secs > 0.0;
    set_down(down);
    let started = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in std::io::stdin().lock().lines() {}
        let _ = tx.send(());
    });
    loop {
        let end = rx.recv_timeout(std::time::Duration::from_secs(1)).is_ok();
        if down && started.elapsed().as_secs_f64() >= down_secs {
            set_down(false);
            down = false;
        }
        eprintln!("{:.0} s: {}", started.elapsed().as_secs_f64(), report());
        if end {
            break;
        }
    }
}

/// A receiver process's command line: switches (`--acks`) and `--name NUMBER` options.
pub struct Args {
    switches: Vec<String>,
    numbers: std::collections::HashMap<String, f64>,
}

impl Args {
    /// Reads the process's arguments; anything not in `switches` or `numbers` is an error.
    pub fn parse(switches: &[&str], numbers: &[&str]) -> Self {
        let mut parsed = Self {
            switches: Vec::new(),
            numbers: std::collections::HashMap::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if switches.contains(&arg.as_str()) {
                parsed.switches.push(arg);
            } else if numbers.contains(&arg.as_str()) {
                let value = args.next().and_then(|v| v.parse::<f64>().ok());
                let value = value.unwrap_or_else(|| panic!("{arg} takes a number"));
                parsed.numbers.insert(arg, value);
            } else {
                panic!("unknown argument {arg}; known: {switches:?} {numbers:?}");
            }
        }
        parsed
    }

    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// The value of `--name`, else `default`.
    pub fn number(&self, name: &str, default: f64) -> f64 {
        self.numbers.get(name).copied().unwrap_or(default)
    }
}
