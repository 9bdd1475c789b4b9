//! A throwaway PKI for receivers that speak HTTPS: a CA and a certificate for `localhost`
//! and `127.0.0.1` signed by it, made at start. Tests hand the CA's PEM to the sink
//! (`tls.ca_file`), so verification runs for real, against a root the system does not
//! know. The server offers HTTP/2 and HTTP/1.1 (ALPN). With client authentication, it
//! also makes a client certificate and demands one signed by the CA (mTLS).

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The CA (as PEM, for clients) and the server's TLS settings.
#[derive(Clone)]
pub struct TestPki {
    pub ca_pem: String,
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// With client authentication: a client certificate and its key (PEM).
    pub client: Option<(String, String)>,
    /// The server's certificate and key (PEM), for a server under test to serve.
    pub server: (String, String),
}

impl TestPki {
    pub fn new() -> Self {
        Self::build(false)
    }

    /// A server that demands a client certificate signed by the CA, and one.
    pub fn with_client_auth() -> Self {
        Self::build(true)
    }

    fn build(client_auth: bool) -> Self {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "flowlog test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("a server key");
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        let cert = params
            .signed_by(&key, &issuer)
            .expect("a server certificate");

        let client = client_auth.then(|| {
            let key = KeyPair::generate().expect("a client key");
            let params =
                CertificateParams::new(vec!["flowlog-client".to_string()]).expect("client params");
            let cert = params
                .signed_by(&key, &issuer)
                .expect("a client certificate");
            (cert.pem(), key.serialize_pem())
        });

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from(ca_cert.der().to_vec()))
                .expect("the CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("a server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self {
            ca_pem: ca_cert.pem(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            client,
            server: (cert.pem(), key.serialize_pem()),
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}
