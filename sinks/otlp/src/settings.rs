//! The sink's settings, as they appear under `[sinks.<name>]` with `type = "otlp"`.

use std::collections::BTreeMap;

use flowlog_normalize::otel::Naming;
use flowlog_sink::http::http_endpoint;
pub use flowlog_sink::settings::Compression;
use flowlog_sink::SinkError;
use serde::Deserialize;

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Protocol {
    /// `LogsService/Export` over HTTP/2 (port 4317).
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    /// `POST /v1/logs`, protobuf body (port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// `POST /v1/logs`, OTLP/JSON body.
    #[serde(rename = "http/json")]
    HttpJson,
}

/// Which attribute names records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Attributes {
    /// The Collector's own names (`awslogsencodingextension`).
    #[default]
    Collector,
    /// The semantic conventions where they differ (`network.transport`...).
    Semconv,
}

/// What a record's body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    /// Nothing, as the Collector writes it: everything is in the attributes.
    #[default]
    Empty,
    /// The flow-log line the record came from (rebuilt in the default format for Parquet).
    Line,
}

fn default_max_bytes() -> usize {
    // Under the 4 MiB that gRPC servers (the Collector's included) accept by default,
    // compressed or not.
    3_000_000
}

flowlog_sink::http_sink_settings! {
/// `[sinks.<name>]` of `type = "otlp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// `http(s)://host:port`; for HTTP, `/v1/logs` is added unless a path is given.
    pub endpoint: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// Sent with every request (an API key, a tenant); values are secrets in logs.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub attributes: Attributes,
    #[serde(default)]
    pub body: Body,
}
max_bytes = "default_max_bytes";
}

/// The gRPC method every OTLP logs receiver serves.
pub const GRPC_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

impl OtlpConfig {
    /// A configuration with every default, for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        flowlog_sink::settings::with_defaults(serde_json::json!({ "endpoint": endpoint.into() }))
    }

    pub fn naming(&self) -> Naming {
        match self.attributes {
            Attributes::Collector => Naming::Collector,
            Attributes::Semconv => Naming::Semconv,
        }
    }

    /// The URL requests go to.
    pub fn url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        match self.protocol {
            Protocol::Grpc => format!("{base}{GRPC_PATH}"),
            _ => {
                let has_path = self
                    .endpoint
                    .parse::<http::Uri>()
                    .is_ok_and(|u| !matches!(u.path(), "" | "/"));
                if has_path {
                    self.endpoint.clone()
                } else {
                    format!("{base}/v1/logs")
                }
            }
        }
    }

    /// The configured headers, checked and marked sensitive.
    pub fn header_map(&self) -> Result<http::HeaderMap, SinkError> {
        let mut map = http::HeaderMap::new();
        for (name, value) in &self.headers {
            let name = http::HeaderName::try_from(name.as_str()).map_err(|_| {
                SinkError::Config(format!("headers: `{name}` is not a header name"))
            })?;
            let mut value = http::HeaderValue::try_from(value.as_str()).map_err(|_| {
                SinkError::Config(format!(
                    "headers.{name}: holds characters a header cannot carry"
                ))
            })?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        Ok(map)
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), SinkError> {
        let url = http_endpoint(&self.endpoint)?;
        if self.protocol == Protocol::Grpc && !matches!(url.path(), "" | "/") {
            return Err(SinkError::Config(format!(
                "endpoint `{}`: a gRPC endpoint has no path (the method's is fixed)",
                self.endpoint
            )));
        }
        self.tuning().validate()?;
        self.header_map()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> OtlpConfig {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn urls_follow_the_exporter_conventions() {
        let grpc = parse(r#"{"endpoint": "http://collector:4317"}"#);
        assert_eq!(
            grpc.url(),
            "http://collector:4317/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        );
        let http = parse(r#"{"endpoint": "https://collector:4318/", "protocol": "http/protobuf"}"#);
        assert_eq!(http.url(), "https://collector:4318/v1/logs");
        let own =
            parse(r#"{"endpoint": "https://otlp.example/otlp/v1/logs", "protocol": "http/json"}"#);
        assert_eq!(own.url(), "https://otlp.example/otlp/v1/logs");
    }

    #[test]
    fn bad_settings_are_named() {
        for (text, needle) in [
            (r#"{"endpoint": "collector:4317"}"#, "not an http"),
            (
                r#"{"endpoint": "http://c:4317/v1/logs"}"#,
                "gRPC endpoint has no path",
            ),
            (
                r#"{"endpoint": "http://c", "headers": {"a b": "x"}}"#,
                "not a header name",
            ),
            (
                r#"{"endpoint": "http://c", "headers": {"k": "a\nb"}}"#,
                "cannot carry",
            ),
            (r#"{"endpoint": "http://c", "max_bytes": 5}"#, "max_bytes"),
        ] {
            let err = parse(text).validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let config = parse(r#"{"endpoint": "http://c", "headers": {"x-api-key": "s\"ecret"}}"#);
        assert!(config.header_map().unwrap()["x-api-key"].is_sensitive());
    }
}
