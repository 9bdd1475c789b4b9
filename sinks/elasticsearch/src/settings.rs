//! The sink's settings, as they appear under `[sinks.<name>]` with
//! `type = "elasticsearch"`.

use base64::Engine;
use flowlog_component::duration::seconds;
use flowlog_normalize::{EncodeOptions, Target};
pub use flowlog_sink::settings::Compression;
use flowlog_sink::SinkError;
use serde::Deserialize;

/// A data stream's name parts: `<type>-<dataset>-<namespace>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataStream {
    #[serde(rename = "type", default = "default_type")]
    pub kind: String,
    #[serde(default = "default_dataset")]
    pub dataset: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

impl Default for DataStream {
    fn default() -> Self {
        Self {
            kind: default_type(),
            dataset: default_dataset(),
            namespace: default_namespace(),
        }
    }
}

fn default_type() -> String {
    "logs".into()
}
fn default_dataset() -> String {
    "aws.vpcflow".into()
}
fn default_namespace() -> String {
    "default".into()
}

impl DataStream {
    pub fn name(&self) -> String {
        format!("{}-{}-{}", self.kind, self.dataset, self.namespace)
    }
}

/// Credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "AuthKeys")]
pub enum Auth {
    /// An Elasticsearch API key: `id:key`, or the base64 `encoded` form Kibana shows.
    ApiKey { api_key: String },
    /// A user and password (HTTP Basic).
    Basic { user: String, password: String },
    /// AWS SigV4 signatures (Amazon OpenSearch Service), credentials from the AWS
    /// default chain.
    AwsSigV4 { aws_sigv4: SigV4 },
}

/// `auth` as written: every key any form takes, so that a misspelt key is named (an
/// untagged enum would only say that nothing matched) and a wrong mix names the forms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthKeys {
    api_key: Option<String>,
    user: Option<String>,
    password: Option<String>,
    aws_sigv4: Option<SigV4>,
}

impl TryFrom<AuthKeys> for Auth {
    type Error = String;

    fn try_from(keys: AuthKeys) -> Result<Self, String> {
        match keys {
            AuthKeys {
                api_key: Some(api_key),
                user: None,
                password: None,
                aws_sigv4: None,
            } => Ok(Self::ApiKey { api_key }),
            AuthKeys {
                api_key: None,
                user: Some(user),
                password: Some(password),
                aws_sigv4: None,
            } => Ok(Self::Basic { user, password }),
            AuthKeys {
                api_key: None,
                user: None,
                password: None,
                aws_sigv4: Some(aws_sigv4),
            } => Ok(Self::AwsSigV4 { aws_sigv4 }),
            _ => Err("auth takes one of three forms: { api_key = \"...\" }, \
                      { user = \"...\", password = \"...\" }, or { aws_sigv4 = { ... } }"
                .into()),
        }
    }
}

/// Which product the cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Found out from `GET /` (`check`, template installation).
    #[default]
    Auto,
    Elasticsearch,
    OpenSearch,
}

/// The document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// ECS, as Elastic's `aws.vpcflow` integration writes it (its dashboards and rules
    /// work unchanged).
    #[default]
    Ecs,
    Ocsf,
    Raw,
}

fn default_max_bytes() -> usize {
    // Elastic's guidance for bulk requests: a few MB, well under http.max_content_length.
    5_000_000
}
fn default_node_retry() -> f64 {
    30.0
}

flowlog_sink::http_sink_settings! {
/// `[sinks.<name>]` of `type = "elasticsearch"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsConfig {
    /// Nodes, used in turn; one that fails is skipped for `node_retry_secs`.
    pub endpoints: Vec<String>,
    /// Write into this data stream (the default: `logs-aws.vpcflow-default`, where
    /// Elastic's AWS integration writes).
    pub data_stream: Option<DataStream>,
    /// Or into classic indices: `%Y`, `%m`, `%d` are replaced by the date of the
    /// document's `@timestamp` (the flow's end), e.g. `vpcflow-%Y.%m.%d`.
    pub index: Option<String>,
    pub auth: Option<Auth>,
    #[serde(default)]
    pub format: Format,
    /// OCSF version for `format = "ocsf"` (default 1.1.0).
    pub ocsf_version: Option<String>,
    /// Envelope metadata the format has no field for, as one object under this key.
    pub envelope_key: Option<String>,
    #[serde(default)]
    pub flavor: Flavor,
    /// Install a component and an index template for the target at start.
    #[serde(default)]
    pub install_template: bool,
    /// How long a node that failed is left out of the rotation.
    #[serde(default = "default_node_retry")]
    pub node_retry_secs: f64,
}
max_bytes = "default_max_bytes";
}

/// Where documents go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    DataStream(String),
    /// An index name pattern with `%Y`, `%m`, `%d`.
    Index(String),
}

impl EsConfig {
    /// A configuration with every default, for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        flowlog_sink::settings::with_defaults(serde_json::json!({ "endpoints": [endpoint.into()] }))
    }

    pub fn destination(&self) -> Destination {
        match (&self.index, &self.data_stream) {
            (Some(index), _) => Destination::Index(index.clone()),
            (None, Some(stream)) => Destination::DataStream(stream.name()),
            (None, None) => Destination::DataStream(DataStream::default().name()),
        }
    }

    pub fn target(&self) -> Result<Target, SinkError> {
        let name = match self.format {
            Format::Ecs => "ecs",
            Format::Ocsf => "ocsf",
            Format::Raw => "raw",
        };
        Target::named(name, self.ocsf_version.as_deref()).map_err(SinkError::Config)
    }

    pub fn encode_options(&self) -> EncodeOptions {
        EncodeOptions {
            envelope_key: self.envelope_key.clone(),
        }
    }

    /// The `Authorization` header value, if any.
    pub fn authorization(&self) -> Result<Option<http::HeaderValue>, SinkError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let value = match &self.auth {
            None => return Ok(None),
            Some(Auth::ApiKey { api_key }) => {
                let key = api_key.trim();
                if key.is_empty() {
                    return Err(SinkError::Config("auth.api_key is empty".into()));
                }
                // `id:key` is encoded here; Kibana's `encoded` form is already base64.
                if key.contains(':') {
                    format!("ApiKey {}", b64.encode(key))
                } else {
                    format!("ApiKey {key}")
                }
            }
            Some(Auth::Basic { user, password }) => {
                format!("Basic {}", b64.encode(format!("{user}:{password}")))
            }
            // Signed per request (crate::sigv4).
            Some(Auth::AwsSigV4 { .. }) => return Ok(None),
        };
        let mut header = http::HeaderValue::try_from(value)
            .map_err(|_| SinkError::Config("auth holds characters a header cannot carry".into()))?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), SinkError> {
        if self.endpoints.is_empty() {
            return Err(SinkError::Config("endpoints is empty".into()));
        }
        for endpoint in &self.endpoints {
            flowlog_sink::http::http_endpoint(endpoint)?;
        }
        if self.index.is_some() && self.data_stream.is_some() {
            return Err(SinkError::Config(
                "give `index` or `data_stream`, not both".into(),
            ));
        }
        let name = match self.destination() {
            Destination::DataStream(name) => name,
            Destination::Index(pattern) => crate::encoder::dated(&pattern, 0),
        };
        // Elasticsearch's index name rules, for what a pattern can break here.
        if name.is_empty()
            || name.starts_with(['-', '_', '+'])
            || name
                .chars()
                .any(|c| c.is_ascii_uppercase() || " \"*\\<|,>/?#:".contains(c) || c.is_control())
        {
            return Err(SinkError::Config(format!(
                "`{name}` is not a valid index or data stream name (lowercase, no spaces or \" * \\ < | , > / ? # :)"
            )));
        }
        self.tuning().validate()?;
        seconds("node_retry_secs", self.node_retry_secs, false).map_err(SinkError::Config)?;
        if self.flavor == Flavor::OpenSearch && matches!(self.auth, Some(Auth::ApiKey { .. })) {
            return Err(SinkError::Config(
                "OpenSearch takes no API keys: use auth = { user, password }".into(),
            ));
        }
        if let Some(Auth::AwsSigV4 { aws_sigv4 }) = &self.auth {
            aws_sigv4.validate().map_err(SinkError::Config)?;
        }
        self.target()?;
        self.authorization()?;
        Ok(())
    }
}

/// `auth = { aws_sigv4 = { region = "...", service = "es" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4 {
    /// The domain's region; without it, the default chain's (`AWS_REGION`, the profile).
    pub region: Option<String>,
    /// `es` for a managed domain, `aoss` for OpenSearch Serverless.
    #[serde(default = "default_service")]
    pub service: String,
    /// A named profile instead of `AWS_PROFILE` / `default`.
    pub profile: Option<String>,
}

fn default_service() -> String {
    "es".into()
}

impl SigV4 {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !matches!(self.service.as_str(), "es" | "aoss") {
            return Err(format!(
                "auth.aws_sigv4.service is `{}`: `es` (a managed domain) or `aoss` (OpenSearch Serverless)",
                self.service
            ));
        }
        if self.region.as_deref().is_some_and(str::is_empty) {
            return Err("auth.aws_sigv4.region is empty".into());
        }
        if !cfg!(feature = "aws") {
            return Err(
                "auth.aws_sigv4: this flowlog was built without AWS SigV4 signing \
                 (cargo feature `aws` of flowlog-sink-elasticsearch)"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> EsConfig {
        let mut config: EsConfig = serde_json::from_str(text).unwrap();
        if config.endpoints.is_empty() {
            config.endpoints.push("http://127.0.0.1:9200".into());
        }
        config
    }

    #[test]
    fn the_default_destination_is_elastics_data_stream() {
        let config = parse(r#"{"endpoints": ["https://es:9200"]}"#);
        assert_eq!(
            config.destination(),
            Destination::DataStream("logs-aws.vpcflow-default".into())
        );
        let config = parse(r#"{"endpoints": [], "data_stream": {"namespace": "prod"}}"#);
        assert_eq!(
            config.destination(),
            Destination::DataStream("logs-aws.vpcflow-prod".into())
        );
        config.validate().unwrap();
    }

    #[test]
    fn api_keys_are_encoded_unless_they_already_are() {
        let config = parse(r#"{"endpoints": [], "auth": {"api_key": "id:secret"}}"#);
        assert_eq!(
            config.authorization().unwrap().unwrap(),
            "ApiKey aWQ6c2VjcmV0"
        );
        let config = parse(r#"{"endpoints": [], "auth": {"api_key": "aWQ6c2VjcmV0"}}"#);
        assert_eq!(
            config.authorization().unwrap().unwrap(),
            "ApiKey aWQ6c2VjcmV0"
        );
        let config = parse(r#"{"endpoints": [], "auth": {"user": "u", "password": "p\"w"}}"#);
        assert!(config.authorization().unwrap().unwrap().is_sensitive());
    }

    #[cfg(feature = "aws")]
    #[test]
    fn sigv4_needs_no_settings_and_sends_no_static_header() {
        let config = parse(r#"{"endpoints": [], "auth": {"aws_sigv4": {}}}"#);
        config.validate().unwrap();
        assert!(config.authorization().unwrap().is_none());
        let Some(Auth::AwsSigV4 { aws_sigv4 }) = &config.auth else {
            panic!("{:?}", config.auth)
        };
        assert_eq!(
            (aws_sigv4.service.as_str(), aws_sigv4.region.as_deref()),
            ("es", None)
        );
    }

    #[cfg(not(feature = "aws"))]
    #[test]
    fn sigv4_is_refused_by_a_build_without_it() {
        let config = parse(r#"{"endpoints": [], "auth": {"aws_sigv4": {}}}"#);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("cargo feature `aws`"), "{err}");
    }

    #[test]
    fn bad_settings_are_named() {
        for (text, needle) in [
            (r#"{"endpoints": ["es:9200"]}"#, "not an http"),
            (r#"{"endpoints": [], "index": "VPC"}"#, "not a valid index"),
            (
                r#"{"endpoints": [], "index": "a", "data_stream": {}}"#,
                "not both",
            ),
            (r#"{"endpoints": [], "max_bytes": 10}"#, "max_bytes"),
            (
                r#"{"endpoints": [], "flavor": "opensearch", "auth": {"api_key": "a:b"}}"#,
                "OpenSearch",
            ),
            (
                r#"{"endpoints": [], "auth": {"aws_sigv4": {"service": "s3"}}}"#,
                "`aoss`",
            ),
        ] {
            let err = parse(text).validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
