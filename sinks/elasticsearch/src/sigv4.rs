//! AWS Signature Version 4 for Amazon OpenSearch Service (`auth = { aws_sigv4 = {...} }`),
//! built with the `aws` feature (on by default).
//!
//! Credentials come from the AWS default chain, as for the AWS CLI: environment,
//! profiles (`AWS_PROFILE`, `credential_process`, SSO, `role_arn`), web identity, the
//! container and instance metadata endpoints. The chain is loaded on first use, and
//! credentials are kept until five minutes before they expire (temporary ones) or for
//! fifteen minutes (long-lived ones, so a rotated key file is picked up), so a signature
//! costs a hash of the body, not a call to STS or the metadata service.
//!
//! Every request is signed over its body as sent (compressed when gzip is on) with
//! `x-amz-content-sha256`, which OpenSearch Serverless (`service = "aoss"`) requires and
//! managed domains (`es`) accept.

use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use tokio::sync::{Mutex, OnceCell};

use crate::settings::SigV4;

/// Signs requests with credentials it fetches and renews.
pub(crate) struct Signer {
    settings: SigV4,
    chain: OnceCell<Chain>,
    cached: Mutex<Option<Cached>>,
}

/// The region and credentials provider the default chain resolved.
struct Chain {
    region: String,
    provider: SharedCredentialsProvider,
}

struct Cached {
    credentials: Credentials,
    renew_at: SystemTime,
}

impl Signer {
    pub(crate) fn new(settings: SigV4) -> Self {
        Self {
            settings,
            chain: OnceCell::new(),
            cached: Mutex::new(None),
        }
    }

    /// A signer with a given provider and region, for tests.
    #[cfg(test)]
    fn with_provider(settings: SigV4, region: &str, provider: SharedCredentialsProvider) -> Self {
        let signer = Self::new(settings);
        let chain = Chain {
            region: region.to_string(),
            provider,
        };
        signer.chain.set(chain).ok().expect("fresh");
        signer
    }

    async fn chain(&self) -> Result<&Chain, String> {
        self.chain
            .get_or_try_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(region) = &self.settings.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                if let Some(profile) = &self.settings.profile {
                    loader = loader.profile_name(profile);
                }
                let config = loader.load().await;
                let region = config.region().map(|r| r.to_string()).ok_or(
                    "no AWS region: set auth.aws_sigv4.region, AWS_REGION or a profile's region",
                )?;
                let provider = config
                    .credentials_provider()
                    .ok_or("the AWS default chain has no credentials provider")?;
                Ok(Chain { region, provider })
            })
            .await
    }

    /// Credentials to sign with: the kept ones while they are fresh, else new ones.
    async fn credentials(&self) -> Result<(Credentials, &str), String> {
        let chain = self.chain().await?;
        // One fetch at a time: requests that find the credentials stale wait for it.
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some(kept) = cached.as_ref().filter(|c| c.renew_at > now) {
            return Ok((kept.credentials.clone(), &chain.region));
        }
        let credentials = chain
            .provider
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials: {}", flowlog_model::error_chain(&e)))?;
        *cached = Some(Cached {
            renew_at: renew_at(credentials.expiry(), now),
            credentials: credentials.clone(),
        });
        Ok((credentials, &chain.region))
    }

    /// Adds `authorization`, `x-amz-date`, `x-amz-content-sha256` and, for temporary
    /// credentials, `x-amz-security-token` to `request`.
    pub(crate) async fn sign(&self, request: &mut http::Request<Bytes>) -> Result<(), String> {
        let (credentials, region) = self.credentials().await?;
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(&self.settings.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let uri = request.uri().to_string();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let signable = SignableRequest::new(
            request.method().as_str(),
            uri,
            headers,
            SignableBody::Bytes(request.body()),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        // Kept out of debug output like the other credentials (the token is a secret).
        for name in ["authorization", "x-amz-security-token"] {
            if let Some(value) = request.headers_mut().get_mut(name) {
                value.set_sensitive(true);
            }
        }
        Ok(())
    }

    /// For `check`: the service, region and which key signs (its last four characters,
    /// as `aws configure list` shows it).
    pub(crate) async fn describe(&self) -> Result<String, String> {
        let (credentials, region) = self.credentials().await?;
        let key = credentials.access_key_id();
        let tail = &key[key.len().saturating_sub(4)..];
        let kind = if credentials.session_token().is_some() {
            "temporary"
        } else {
            "long-term"
        };
        Ok(format!(
            "requests signed with SigV4 for `{}` in {region} by {kind} key ****{tail}",
            self.settings.service
        ))
    }
}

/// When to fetch credentials again: five minutes before they expire (halfway there
/// when they expire sooner), or after fifteen minutes for credentials that do not.
fn renew_at(expiry: Option<SystemTime>, now: SystemTime) -> SystemTime {
    const MARGIN: Duration = Duration::from_secs(300);
    const LONG_TERM: Duration = Duration::from_secs(900);
    match expiry {
        None => now + LONG_TERM,
        Some(expiry) => {
            let left = expiry.duration_since(now).unwrap_or_default();
            if left > MARGIN * 2 {
                expiry - MARGIN
            } else {
                now + left / 2
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::future;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A provider that counts its calls and hands out credentials valid for `valid`.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicU32>,
        valid: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("ASIATESTKEY{n}"),
                "secret",
                Some("token".into()),
                Some(SystemTime::now() + self.valid),
                "test",
            )))
        }
    }

    fn signer(valid: Duration) -> (Signer, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let provider = SharedCredentialsProvider::new(Counting {
            calls: Arc::clone(&calls),
            valid,
        });
        let settings = SigV4 {
            region: None,
            service: "es".into(),
            profile: None,
        };
        (
            Signer::with_provider(settings, "eu-west-1", provider),
            calls,
        )
    }

    fn request() -> http::Request<Bytes> {
        http::Request::builder()
            .method("POST")
            .uri("https://search-x.eu-west-1.es.amazonaws.com/_bulk?filter_path=errors,items.*.status")
            .header("content-type", "application/x-ndjson")
            .body(Bytes::from_static(b"{}\n"))
            .unwrap()
    }

    #[tokio::test]
    async fn a_request_carries_the_signature_headers_for_its_scope() {
        let (signer, _) = signer(Duration::from_secs(3600));
        let mut request = request();
        signer.sign(&mut request).await.unwrap();
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_string();
        let authorization = header("authorization");
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=ASIATESTKEY0/"),
            "{authorization}"
        );
        assert!(authorization.contains("/eu-west-1/es/aws4_request"));
        assert!(authorization
            .contains("content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"));
        // sha256 of "{}\n"
        assert_eq!(
            header("x-amz-content-sha256"),
            "ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"
        );
        assert_eq!(header("x-amz-security-token"), "token");
        assert!(request.headers()["authorization"].is_sensitive());
    }

    #[tokio::test]
    async fn credentials_are_kept_until_shortly_before_they_expire() {
        let (signer, calls) = signer(Duration::from_secs(3600));
        for _ in 0..3 {
            signer.sign(&mut request()).await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Credentials about to expire are fetched again for the next request.
        let (signer, calls) = signer_expiring();
        signer.sign(&mut request()).await.unwrap();
        signer.sign(&mut request()).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(signer
            .describe()
            .await
            .unwrap()
            .contains("temporary key ****KEY2"));
    }

    fn signer_expiring() -> (Signer, Arc<AtomicU32>) {
        signer(Duration::ZERO)
    }

    #[test]
    fn renewal_leaves_a_margin() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert_eq!(renew_at(None, now), now + Duration::from_secs(900));
        assert_eq!(
            renew_at(Some(now + hour), now),
            now + hour - Duration::from_secs(300)
        );
        assert_eq!(
            renew_at(Some(now + Duration::from_secs(120)), now),
            now + Duration::from_secs(60)
        );
        assert_eq!(renew_at(Some(now - hour), now), now);
    }

    #[test]
    fn only_the_services_that_take_sigv4_are_accepted() {
        let settings = |service: &str| SigV4 {
            region: Some("us-east-1".into()),
            service: service.into(),
            profile: None,
        };
        settings("es").validate().unwrap();
        settings("aoss").validate().unwrap();
        assert!(settings("s3").validate().unwrap_err().contains("`es`"));
    }
}
