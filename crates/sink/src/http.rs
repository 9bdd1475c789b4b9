//! The HTTP client sinks share: reqwest over rustls (aws-lc-rs), pooled keep-alive
//! connections, HTTP/2 where the server offers it (ALPN) and HTTP/1.1 otherwise.
//!
//! - Certificates are verified against the system roots, plus a CA file when given, or the
//!   CA file alone (`system_roots = false`); verification is off only when a user says so.
//! - Proxies: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY` (either case) are
//!   honoured unless the sink names its own (`[sinks.x.proxy]`), as curl does.
//! - Response bodies are read up to a cap: a receiver (or something pretending to be one)
//!   cannot make the sink buffer without limit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::SinkError;
use flowlog_model::error_chain;

/// TLS settings of one sink.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Trust the system's roots too (default). `false` with a `ca_file`: trust only it
    /// (a private PKI where the public roots have no business).
    #[serde(default = "yes")]
    pub system_roots: bool,
    /// Skip certificate verification. Off unless explicitly set: a sink that does not
    /// verify sends its token to whoever answers.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// A client certificate (PEM, with its chain) for receivers that ask for one (mTLS).
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            ca_file: None,
            system_roots: true,
            insecure_skip_verify: false,
            cert_file: None,
            key_file: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// Proxy settings of one sink. Without any, the environment decides (`HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, upper or lower case).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyOptions {
    /// `false`: connect directly whatever the environment says.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Proxy for `http://` endpoints (replaces the environment's settings).
    pub http: Option<String>,
    /// Proxy for `https://` endpoints, reached with `CONNECT` (replaces the environment's).
    pub https: Option<String>,
    /// Hosts, domains (`.example.com`) and networks (`10.0.0.0/8`) reached directly.
    #[serde(default)]
    pub no_proxy: Vec<String>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            http: None,
            https: None,
            no_proxy: Vec::new(),
        }
    }
}

/// A response read in full (up to the client's cap).
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// Trailers after the body (gRPC's status), empty when none came.
    pub trailers: http::HeaderMap,
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
    /// The endpoint answered with a redirect. It is not followed: a `POST` that becomes a
    /// `GET` delivers nothing, and one sent on to another server carries the sink's
    /// records (and, for custom headers, its secrets) where nobody configured them to go.
    #[error(
        "answered {status} redirecting to {location}: redirects are not followed; set the \
         endpoint to the address that answers requests itself"
    )]
    Redirected { status: u16, location: String },
}

/// What a sink's client is built from.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub tls: TlsOptions,
    pub proxy: ProxyOptions,
    /// Connect, send and read the whole response within this.
    pub timeout: Duration,
    /// Most bytes of a response body kept (the rest is not read); default 16 MiB.
    pub max_response_bytes: Option<usize>,
    /// Speak only HTTP/2, without waiting to be offered it (gRPC, also over `http://`).
    pub http2_only: bool,
}

/// Response bodies are small (HEC) or proportional to the request (an `_bulk` answer
/// lists every item: a few MB for the largest requests).
const DEFAULT_MAX_RESPONSE: usize = 16 << 20;

/// A pooled HTTP/1.1 and HTTP/2 client for `http://` and `https://` URLs.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
    max_response: usize,
}

impl HttpClient {
    /// A client whose requests time out after `options.timeout`.
    pub fn new(options: &ClientOptions) -> Result<Self, SinkError> {
        let tls = &options.tls;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| SinkError::Config(format!("TLS: {e}")))?;
        let builder = if tls.insecure_skip_verify {
            tracing::warn!("TLS certificate verification is disabled for this sink");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            builder.with_root_certificates(roots(tls.ca_file.as_deref(), tls.system_roots)?)
        };
        let mut config = match (&tls.cert_file, &tls.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let (chain, key) =
                    flowlog_component::tls::pem_identity(cert, key).map_err(SinkError::Config)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| SinkError::Config(format!("tls.cert_file and key_file: {e}")))?
            }
            _ => {
                return Err(SinkError::Config(
                    "tls.cert_file and tls.key_file go together".into(),
                ))
            }
        };
        // reqwest leaves ALPN to a preconfigured TLS config: offer HTTP/2 first.
        config.alpn_protocols = if options.http2_only {
            vec![b"h2".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        let timeout = options.timeout;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("flowlog/", env!("CARGO_PKG_VERSION")));
        if options.http2_only {
            builder = builder.http2_prior_knowledge();
        }
        builder = with_proxies(builder, &options.proxy)?;
        let client = builder
            .build()
            .map_err(|e| SinkError::Config(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(Self {
            client,
            timeout,
            max_response: options.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE),
        })
    }

    /// Sends a request and reads the response (its body up to the cap).
    pub async fn send(&self, request: http::Request<Bytes>) -> Result<Response, TransportError> {
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                TransportError::Timeout(self.timeout)
            } else {
                // Without the URL, whose path or query can be a credential (a Sumo Logic
                // source's); the sink names its endpoint where that is safe.
                TransportError::Failed(error_chain(&e.without_url()))
            }
        };
        let request = reqwest::Request::try_from(request.map(reqwest::Body::from))
            .map_err(|e| TransportError::Failed(error_chain(&e.without_url())))?;
        let exchange = async {
            use http_body_util::BodyExt;
            let response = self.client.execute(request).await.map_err(failed)?;
            if response.status().is_redirection() {
                // Scheme and host only: a redirect of a URL whose path is a credential
                // (Sumo Logic's) carries the credential in its Location too.
                let location = match response.headers().get(http::header::LOCATION) {
                    None => "nowhere (no Location header)".into(),
                    Some(l) => match String::from_utf8_lossy(l.as_bytes()).parse::<http::Uri>() {
                        Ok(uri) if uri.authority().is_some() => format!("{}/...", origin_of(&uri)),
                        _ => "another path of the same server".into(),
                    },
                };
                return Err(TransportError::Redirected {
                    status: response.status().as_u16(),
                    location,
                });
            }
            let (parts, mut stream) = http::Response::from(response).into_parts();
            let status = parts.status.as_u16();
            let mut body = Vec::new();
            let mut trailers = http::HeaderMap::new();
            while let Some(frame) = stream.frame().await {
                let frame = frame.map_err(failed)?;
                let frame = match frame.into_trailers() {
                    Ok(t) => {
                        trailers = t;
                        continue;
                    }
                    Err(frame) => frame,
                };
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                let room = self.max_response - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() >= room {
                    // Dropping the response closes the connection instead of reading on.
                    tracing::debug!(status, "response body cut at {} bytes", self.max_response);
                    break;
                }
            }
            Ok(Response {
                status,
                headers: parts.headers,
                body: Bytes::from(body),
                trailers,
            })
        };
        // reqwest's own timeout covers the body too; this one is a second guard.
        tokio::time::timeout(self.timeout + Duration::from_secs(1), exchange)
            .await
            .map_err(|_| TransportError::Timeout(self.timeout))?
    }
}

/// The sink's own proxies, or none, or (nothing configured) the environment's.
fn with_proxies(
    builder: reqwest::ClientBuilder,
    proxy: &ProxyOptions,
) -> Result<reqwest::ClientBuilder, SinkError> {
    if !proxy.enabled {
        return Ok(builder.no_proxy());
    }
    let no_proxy = || reqwest::NoProxy::from_string(&proxy.no_proxy.join(","));
    let mut builder = builder;
    let bad = |which: &str, e: reqwest::Error| {
        SinkError::Config(format!("proxy.{which}: {}", error_chain(&e)))
    };
    if let Some(url) = &proxy.http {
        let p = reqwest::Proxy::http(url).map_err(|e| bad("http", e))?;
        builder = builder.proxy(p.no_proxy(no_proxy()));
    }
    if let Some(url) = &proxy.https {
        let p = reqwest::Proxy::https(url).map_err(|e| bad("https", e))?;
        builder = builder.proxy(p.no_proxy(no_proxy()));
    }
    if proxy.http.is_none() && proxy.https.is_none() && !proxy.no_proxy.is_empty() {
        return Err(SinkError::Config(
            "proxy.no_proxy without proxy.http or proxy.https: set NO_PROXY in the environment \
             to add to the environment's proxies"
                .into(),
        ));
    }
    Ok(builder)
}

/// A sink's `endpoint` setting, checked: an `http://` or `https://` URL with a host.
pub fn http_endpoint(endpoint: &str) -> Result<http::Uri, SinkError> {
    let url: http::Uri = endpoint
        .parse()
        .map_err(|e| SinkError::Config(format!("endpoint `{endpoint}`: {e}")))?;
    if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
        return Err(SinkError::Config(format!(
            "endpoint `{endpoint}` is not an http:// or https:// URL"
        )));
    }
    // Credentials in the URL would be shown wherever the endpoint is (errors, `check`):
    // they belong in the sink's own settings, which are never printed.
    if url.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(SinkError::Config(
            "the endpoint holds credentials (user:password@host): give them in the sink's \
             auth settings instead"
                .into(),
        ));
    }
    Ok(url)
}

/// `scheme://host:port` of `uri`: what may be shown of an endpoint whose path or query
/// can hold a credential.
pub fn origin_of(uri: &http::Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
        _ => "(endpoint)".into(),
    }
}

/// Warns when `url` would carry a credential in the clear to another machine: `http://`
/// to a host that is not loopback. (On loopback the traffic never leaves the machine.)
pub fn warn_if_plaintext(sink: &str, url: &str) {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return;
    };
    if uri.scheme_str() != Some("http") {
        return;
    }
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        tracing::warn!(
            sink,
            "{url} is plain http://: the credential travels unencrypted; use https://"
        );
    }
}

/// The system's trusted roots (unless `system` is false), plus those of `ca_file`.
fn roots(ca_file: Option<&Path>, system: bool) -> Result<RootCertStore, SinkError> {
    let mut store = RootCertStore::empty();
    if !system && ca_file.is_none() {
        return Err(SinkError::Config(
            "tls.system_roots = false needs a tls.ca_file: nothing would be trusted".into(),
        ));
    }
    if system {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!("system certificates: {error}");
        }
        store.add_parsable_certificates(native.certs);
    }
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect())
            .map_err(|e| SinkError::Config(format!("CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(SinkError::Config(format!(
                "CA file {}: no certificate in it",
                path.display()
            )));
        }
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| SinkError::Config(format!("CA file {}: {e}", path.display())))?;
        }
    }
    Ok(store)
}

/// Accepts any certificate, still checking handshake signatures (`insecure_skip_verify`).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(tls: TlsOptions, proxy: ProxyOptions) -> Result<HttpClient, SinkError> {
        HttpClient::new(&ClientOptions {
            tls,
            proxy,
            timeout: Duration::from_secs(1),
            max_response_bytes: None,
            http2_only: false,
        })
    }

    #[test]
    fn an_endpoint_with_credentials_is_refused_without_showing_them() {
        assert!(http_endpoint("https://splunk.example.com:8088/services").is_ok());
        let err = http_endpoint("https://flowlog:s3cret@loki.example.com")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth settings") && !err.contains("s3cret"),
            "{err}"
        );
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        assert!(client(TlsOptions::default(), ProxyOptions::default()).is_ok());
        let nothing_trusted = TlsOptions {
            system_roots: false,
            ..TlsOptions::default()
        };
        let err = client(nothing_trusted, ProxyOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("needs a tls.ca_file"), "{err}");

        let dir = std::env::temp_dir().join(format!("flowlog-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let tls = TlsOptions {
            ca_file: Some(empty),
            system_roots: false,
            ..TlsOptions::default()
        };
        let err = client(tls, ProxyOptions::default()).err().unwrap();
        assert!(err.to_string().contains("no certificate"), "{err}");

        let orphan = ProxyOptions {
            no_proxy: vec!["internal".into()],
            ..ProxyOptions::default()
        };
        assert!(client(TlsOptions::default(), orphan).is_err());
        let bad = ProxyOptions {
            https: Some("::not a url".into()),
            ..ProxyOptions::default()
        };
        let err = client(TlsOptions::default(), bad).err().unwrap();
        assert!(err.to_string().starts_with("proxy.https"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
