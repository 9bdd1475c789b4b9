//! The settings every HTTP sink shares, defined once: request size and timing,
//! compression, concurrency, timeouts and backoff (TOML keys `max_bytes`,
//! `batch_timeout_secs`, `compression`, `concurrency`, `max_in_flight`,
//! `request_timeout_secs`, `retry_initial_backoff_secs`, `retry_max_backoff_secs`).
//!
//! A sink declares its settings struct with [`http_sink_settings!`](crate::http_sink_settings),
//! which adds these fields to its own and gives it `tuning()` and `request_settings()`. They
//! become the struct's own fields rather than a `#[serde(flatten)]`ed part because serde's
//! `deny_unknown_fields` (an unknown key is an error naming its line) does not work with
//! `flatten`.

use serde::Deserialize;

use crate::request::RequestSettings;
use crate::{RetryPolicy, SinkError};

/// `compression = "gzip"` (default) or `"none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

/// Declares an HTTP sink's settings struct: the fields written in the invocation, then the
/// request tuning every HTTP sink shares, with `max_bytes` defaulting to the function
/// named (a sink's receiver decides how large a request should be). Also gives the struct
/// `tuning()` and `request_settings()`.
///
/// ```ignore
/// flowlog_sink::http_sink_settings! {
///     /// `[sinks.<name>]` of `type = "example"`.
///     #[derive(Debug, Clone, serde::Deserialize)]
///     #[serde(deny_unknown_fields)]
///     pub struct ExampleConfig {
///         pub endpoint: String,
///     }
///     max_bytes = "default_max_bytes";
/// }
/// ```
#[macro_export]
macro_rules! http_sink_settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($fields:tt)*
        }
        max_bytes = $max_bytes:literal;
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($fields)*
            /// Most bytes of events in one request (before compression).
            #[serde(default = $max_bytes)]
            pub max_bytes: usize,
            /// Seconds a partly filled request waits for more events.
            #[serde(default = "flowlog_sink::settings::defaults::batch_timeout_secs")]
            pub batch_timeout_secs: f64,
            #[serde(default)]
            pub compression: flowlog_sink::settings::Compression,
            /// Requests on the wire at once.
            #[serde(default = "flowlog_sink::settings::defaults::concurrency")]
            pub concurrency: usize,
            /// Requests started and not yet settled (on the wire, backing off, or waiting
            /// for a receipt): what bounds the sink's memory (about `max_in_flight *
            /// max_bytes`).
            #[serde(default = "flowlog_sink::settings::defaults::max_in_flight")]
            pub max_in_flight: usize,
            #[serde(default = "flowlog_sink::settings::defaults::request_timeout_secs")]
            pub request_timeout_secs: f64,
            #[serde(default = "flowlog_sink::settings::defaults::retry_initial_backoff_secs")]
            pub retry_initial_backoff_secs: f64,
            #[serde(default = "flowlog_sink::settings::defaults::retry_max_backoff_secs")]
            pub retry_max_backoff_secs: f64,
            /// Which certificates are trusted, and the client's own.
            #[serde(default)]
            pub tls: flowlog_sink::TlsOptions,
            /// Proxies for this sink (default: `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`).
            #[serde(default)]
            pub proxy: flowlog_sink::ProxyOptions,
        }

        impl $name {
            /// The settings the request layer shares with the other HTTP sinks.
            pub fn tuning(&self) -> flowlog_sink::settings::Tuning {
                flowlog_sink::settings::Tuning {
                    max_bytes: self.max_bytes,
                    batch_timeout_secs: self.batch_timeout_secs,
                    gzip: self.compression == flowlog_sink::settings::Compression::Gzip,
                    concurrency: self.concurrency,
                    max_in_flight: self.max_in_flight,
                    request_timeout_secs: self.request_timeout_secs,
                    retry_initial_backoff_secs: self.retry_initial_backoff_secs,
                    retry_max_backoff_secs: self.retry_max_backoff_secs,
                }
            }

            /// How the shared request layer cuts, compresses and bounds this sink's
            /// requests.
            pub fn request_settings(&self) -> flowlog_sink::request::RequestSettings {
                self.tuning().settings()
            }

            /// The sink's HTTP client: its TLS, proxies and request timeout, answers read
            /// up to `max_response_bytes`, HTTP/2 only when the protocol needs it (gRPC).
            pub fn http_client(
                &self,
                max_response_bytes: usize,
                http2_only: bool,
            ) -> Result<flowlog_sink::HttpClient, flowlog_sink::SinkError> {
                flowlog_sink::HttpClient::new(&flowlog_sink::ClientOptions {
                    tls: self.tls.clone(),
                    proxy: self.proxy.clone(),
                    timeout: flowlog_sink::settings::defaults::duration(self.request_timeout_secs),
                    max_response_bytes: Some(max_response_bytes),
                    http2_only,
                })
            }
        }
    };
}

/// Settings with every default but the ones `given` (what a configuration table holding
/// only those keys parses into): a sink's `new`, so its defaults are written once, in its
/// serde attributes.
pub fn with_defaults<T: serde::de::DeserializeOwned>(given: serde_json::Value) -> T {
    serde_json::from_value(given).expect("every setting not given has a default")
}

/// What the settings of every HTTP sink share, as they are written in the configuration
/// (seconds as numbers): the fields [`http_sink_settings!`](crate::http_sink_settings)
/// declares, turned into [`RequestSettings`] here.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub max_bytes: usize,
    pub batch_timeout_secs: f64,
    pub gzip: bool,
    pub concurrency: usize,
    pub max_in_flight: usize,
    pub request_timeout_secs: f64,
    pub retry_initial_backoff_secs: f64,
    pub retry_max_backoff_secs: f64,
}

impl Tuning {
    /// Checks the bounds and durations (a sink checks its other durations itself).
    pub fn validate(&self) -> Result<(), SinkError> {
        for (name, v) in [
            ("batch_timeout_secs", self.batch_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            (
                "retry_initial_backoff_secs",
                self.retry_initial_backoff_secs,
            ),
            ("retry_max_backoff_secs", self.retry_max_backoff_secs),
        ] {
            flowlog_component::duration::seconds(name, v, false).map_err(SinkError::Config)?;
        }
        if self.max_bytes < 1024 {
            return Err(SinkError::Config("max_bytes must be at least 1024".into()));
        }
        if self.concurrency == 0 || self.max_in_flight < self.concurrency {
            return Err(SinkError::Config(
                "concurrency must be at least 1 and max_in_flight at least concurrency".into(),
            ));
        }
        Ok(())
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial: flowlog_component::duration::duration(self.retry_initial_backoff_secs),
            max: flowlog_component::duration::duration(self.retry_max_backoff_secs),
        }
    }

    pub fn settings(&self) -> RequestSettings {
        RequestSettings {
            max_bytes: self.max_bytes,
            batch_timeout: flowlog_component::duration::duration(self.batch_timeout_secs),
            gzip: self.gzip,
            concurrency: self.concurrency,
            max_in_flight: self.max_in_flight,
            retry: self.retry_policy(),
        }
    }
}

/// Defaults the HTTP sinks share, for `#[serde(default = "...")]`.
pub mod defaults {
    pub use flowlog_component::duration::duration;

    pub fn batch_timeout_secs() -> f64 {
        1.0
    }
    pub fn concurrency() -> usize {
        4
    }
    pub fn max_in_flight() -> usize {
        16
    }
    pub fn request_timeout_secs() -> f64 {
        60.0
    }
    pub fn retry_initial_backoff_secs() -> f64 {
        0.2
    }
    pub fn retry_max_backoff_secs() -> f64 {
        30.0
    }
}
