//! The sink's settings, as they appear under `[sinks.<name>]` with `type = "loki"`.

use std::collections::BTreeMap;

use flowlog_model::FieldKind;
pub use flowlog_normalize::RecordFormat as Format;
use flowlog_normalize::{EncodeOptions, Target};
use flowlog_sink::template::Template;
use flowlog_sink::SinkError;
use serde::Deserialize;

/// How a push request is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `application/x-protobuf`, snappy-compressed (what Loki's own clients send).
    #[default]
    Protobuf,
    /// `application/json`, gzipped unless `compression = "none"`.
    Json,
}

/// Which record time becomes the entry's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TimeField {
    /// The start of the capture window.
    #[default]
    Start,
    /// Its end.
    End,
}

/// Credentials.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// HTTP Basic (Grafana Cloud: the instance id and an access policy token).
    pub user: Option<String>,
    pub password: Option<String>,
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
}

fn default_max_bytes() -> usize {
    // Loki's clients send about 1 MiB a push (Promtail's and Alloy's batch size).
    1_000_000
}

fn default_labels() -> BTreeMap<String, String> {
    [
        ("job", "vpc-flow-logs"),
        ("account_id", "{{ account-id }}"),
        ("region", "{{ region }}"),
        ("action", "{{ action }}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

flowlog_sink::http_sink_settings! {
/// `[sinks.<name>]` of `type = "loki"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// Loki's base URL (`http://loki:3100`); the push path is added.
    pub endpoint: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// `X-Scope-OrgID`: the tenant (multi-tenant Loki).
    pub tenant_id: Option<String>,
    pub auth: Option<Auth>,
    #[serde(default)]
    pub format: Format,
    /// OCSF version for `format = "ocsf"` (default 1.1.0).
    pub ocsf_version: Option<String>,
    /// Envelope metadata the format has no field for, as one object under this key
    /// (JSON formats).
    pub envelope_key: Option<String>,
    /// Stream labels: name -> value, `{{ field }}` a record's field. Only fields with
    /// few values may be labels (no address, port, count or time).
    #[serde(default = "default_labels")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub time_field: TimeField,
}
max_bytes = "default_max_bytes";
}

/// Credentials are never printed, not even by `{:?}`.
impl std::fmt::Debug for LokiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiConfig")
            .field("endpoint", &self.endpoint)
            .field("encoding", &self.encoding)
            .field("tenant_id", &self.tenant_id)
            .field("auth", &self.auth.as_ref().map(|_| "(hidden)"))
            .field("format", &self.format)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl LokiConfig {
    /// A configuration with every default, for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        flowlog_sink::settings::with_defaults(serde_json::json!({ "endpoint": endpoint.into() }))
    }

    /// The document target, for JSON formats.
    pub fn target(&self) -> Result<Option<Target>, SinkError> {
        self.format
            .target(self.ocsf_version.as_deref())
            .map_err(SinkError::Config)
    }

    pub fn encode_options(&self) -> EncodeOptions {
        EncodeOptions {
            envelope_key: self.envelope_key.clone(),
        }
    }

    /// The labels' templates, checked: Prometheus label names, bounded fields, and at
    /// least one label that does not depend on the record (Loki refuses a stream
    /// without labels, and a record may lack every field).
    pub fn label_templates(&self) -> Result<Vec<(String, Template)>, SinkError> {
        let mut labels = Vec::new();
        for (name, value) in &self.labels {
            let valid = name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
            if name.is_empty() || !valid || name.starts_with("__") {
                return Err(SinkError::Config(format!(
                    "labels: `{name}` is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
                )));
            }
            let template = Template::parse(value)
                .map_err(|e| SinkError::Config(format!("labels.{name}: {e}")))?;
            for (field, kind) in template.kinds() {
                if matches!(
                    kind,
                    FieldKind::IpAddr | FieldKind::Port | FieldKind::Count | FieldKind::EpochTime
                ) {
                    return Err(SinkError::Config(format!(
                        "labels.{name}: `{field}` takes too many values for a label (each \
                         value is a stream of its own, and streams are what Loki bounds); \
                         it is in the line"
                    )));
                }
            }
            labels.push((name.clone(), template));
        }
        if !labels.iter().any(|(_, t)| !t.has_fields()) {
            return Err(SinkError::Config(
                "labels: give at least one label that is not a record's field (job = \"vpc-flow-logs\")"
                    .into(),
            ));
        }
        Ok(labels)
    }

    /// `Authorization`, from `auth`.
    pub fn authorization(&self) -> Result<Option<String>, SinkError> {
        use base64::Engine;
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        match (&auth.user, &auth.password, &auth.bearer_token) {
            (Some(user), Some(password), None) => {
                let pair = format!("{user}:{password}");
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Ok(Some(format!("Basic {encoded}")))
            }
            (None, None, Some(token)) if !token.is_empty() => Ok(Some(format!("Bearer {token}"))),
            _ => Err(SinkError::Config(
                "auth: give `user` and `password`, or `bearer_token`".into(),
            )),
        }
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), SinkError> {
        flowlog_sink::http::http_endpoint(&self.endpoint)?;
        self.tuning().validate()?;
        self.target()?;
        self.label_templates()?;
        self.authorization()?;
        if let Some(tenant) = &self.tenant_id {
            if tenant.is_empty() || tenant.chars().any(|c| c.is_control()) {
                return Err(SinkError::Config(
                    "tenant_id is empty or not a header value".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_named_as_prometheus_names() {
        let mut config = LokiConfig::new("http://localhost:3100");
        config.validate().unwrap();
        config.labels.insert("src".into(), "{{ srcaddr }}".into());
        let e = config.validate().unwrap_err().to_string();
        assert!(
            e.contains("labels.src") && e.contains("too many values"),
            "{e}"
        );
        config.labels.remove("src");
        config.labels.insert("bad-name".into(), "x".into());
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("bad-name"));
        config.labels = [("account".to_string(), "{{ account-id }}".to_string())].into();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least one"));
    }

    #[test]
    fn credentials_are_one_form_and_never_shown() {
        let mut config = LokiConfig::new("http://localhost:3100");
        config.auth = Some(Auth {
            user: Some("u".into()),
            password: Some("hunter2".into()),
            bearer_token: None,
        });
        assert_eq!(
            config.authorization().unwrap().unwrap(),
            "Basic dTpodW50ZXIy"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        config.auth.as_mut().unwrap().bearer_token = Some("t".into());
        assert!(config.validate().is_err());
    }
}
