//! A forward proxy on loopback, for testing that sinks honour `HTTP_PROXY`,
//! `HTTPS_PROXY` and `NO_PROXY`: absolute-form requests (`POST http://host:port/path`)
//! are passed to their host, `CONNECT host:port` opens a tunnel. It records the first
//! request of each client connection (method and target); later requests on a kept-alive
//! connection pass through unrecorded. Only loopback targets are served (403 otherwise):
//! tests never send traffic off the machine.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Proxy {
    pub fn start() -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        std_listener.set_nonblocking(true).expect("non-blocking");
        let addr = std_listener.local_addr().expect("an address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("a listener");
                tokio::select! {
                    _ = stopped => {}
                    _ = async {
                        while let Ok((client, _)) = listener.accept().await {
                            tokio::spawn(serve(client, Arc::clone(&log)));
                        }
                    } => {}
                }
            });
        });
        Self {
            addr,
            seen,
            _stop: stop,
        }
    }

    /// `http://127.0.0.1:<port>`, as `HTTP_PROXY` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `METHOD target` of the first request of each connection so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(mut client: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    // The request head, bounded.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let Ok(n) = client.read(&mut buf).await else {
            return;
        };
        if n == 0 || head.len() > 64 * 1024 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let line = String::from_utf8_lossy(&head[..head.iter().position(|&b| b == b'\r').unwrap_or(0)])
        .into_owned();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    seen.lock().unwrap().push(format!("{method} {target}"));
    let authority = if method == "CONNECT" {
        target.to_string()
    } else {
        let rest = target.strip_prefix("http://").unwrap_or("");
        rest.split('/').next().unwrap_or("").to_string()
    };
    let loopback = authority
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    if !loopback {
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(&authority).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if method == "CONNECT" {
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        // Anything the client sent after the head belongs to the tunnel.
        if upstream.write_all(&head[end..]).await.is_err() {
            return;
        }
    } else if upstream.write_all(&head).await.is_err() {
        // Absolute-form requests go through as they are: HTTP/1.1 servers accept them.
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
