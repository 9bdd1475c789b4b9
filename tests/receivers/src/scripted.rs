//! A peer that answers every request as a test scripts it and keeps what it was sent:
//! the misbehaving or malicious endpoint (a redirect to another server, an answer that
//! accounts for nothing, counts in an unexpected encoding), over HTTP/1.1 or HTTP/2
//! (gRPC's prior knowledge too), with or without TLS.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::server::{Answer, Server};

/// A request as the peer received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body_len: usize,
}

/// A running scripted peer; stopped when dropped.
pub struct ScriptedPeer {
    server: Server,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ScriptedPeer {
    /// Answers each request with what `answer` makes of it (after reading its body).
    pub fn start(tls: bool, answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        Self::start_with(tls.then(crate::tls::TestPki::new), answer)
    }

    /// [`ScriptedPeer::start`] with the given PKI (several peers may share one CA).
    pub fn start_with(
        pki: Option<crate::tls::TestPki>,
        answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let server = Server::start_with("scripted-peer", pki, {
            let seen = Arc::clone(&seen);
            move |request: http::Request<hyper::body::Incoming>| {
                let seen = Arc::clone(&seen);
                let answer = Arc::clone(&answer);
                async move {
                    let (parts, body) = request.into_parts();
                    let body_len = body.collect().await.map_or(0, |b| b.to_bytes().len());
                    let request = Seen {
                        method: parts.method,
                        path: parts.uri.path().to_string(),
                        headers: parts.headers,
                        body_len,
                    };
                    let response = answer(&request);
                    seen.lock().unwrap().push(request);
                    Ok(response)
                }
            }
        });
        Self { server, seen }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn ca_pem(&self) -> Option<&str> {
        self.server.ca_pem()
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// An answer with `status`, `headers` and `body`.
pub fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut response = http::Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}
