//! The sink's settings, as they appear under `[sinks.<name>]` with `type = "sumo_logic"`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use flowlog_normalize::RecordFormat as Format;
use flowlog_normalize::{EncodeOptions, Target};
use flowlog_sink::SinkError;
use serde::Deserialize;

use flowlog_sink::template::{Columns, Template};

fn default_max_bytes() -> usize {
    // Sumo Logic recommends 100 KB to 1 MB per request before compression, never more.
    1_000_000
}

flowlog_sink::http_sink_settings! {
/// `[sinks.<name>]` of `type = "sumo_logic"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SumoConfig {
    /// The HTTP Logs source's unique URL (`https://<collection
    /// endpoint>/receiver/v1/http/<code>`), or with `token` the source's base URL
    /// (`.../receiver/v1/http`). A unique URL is a credential: give it as
    /// `"${SUMO_URL}"` or in `endpoint_file`.
    pub endpoint: Option<String>,
    /// A file holding the endpoint (trailing white space ignored).
    pub endpoint_file: Option<PathBuf>,
    /// The source's token (a source set up with an auth header), sent as `X-Sumo-Token`.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub format: Format,
    /// OCSF version for `format = "ocsf"` (default 1.1.0).
    pub ocsf_version: Option<String>,
    /// Envelope metadata the format has no field for, as one object under this key
    /// (JSON formats).
    pub envelope_key: Option<String>,
    /// `X-Sumo-Category`; `{{ field }}` is a record's field (`aws/vpc/{{ account-id }}`).
    pub category: Option<String>,
    /// `X-Sumo-Name` (templated as `category`).
    pub source_name: Option<String>,
    /// `X-Sumo-Host` (templated as `category`).
    pub source_host: Option<String>,
    /// `X-Sumo-Fields`, one `key=value` each (values templated as `category`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}
max_bytes = "default_max_bytes";
}

/// The endpoint is a credential: never printed, not even by `{:?}`.
impl std::fmt::Debug for SumoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SumoConfig")
            .field("endpoint", &self.endpoint.as_ref().map(|_| "(hidden)"))
            .field("endpoint_file", &self.endpoint_file)
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .field("token_file", &self.token_file)
            .field("format", &self.format)
            .field("category", &self.category)
            .field("source_name", &self.source_name)
            .field("source_host", &self.source_host)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

/// The metadata headers, parsed.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// `X-Sumo-Category`, `X-Sumo-Name`, `X-Sumo-Host`, then one per field.
    pub headers: Vec<(&'static str, Option<Template>)>,
    /// `X-Sumo-Fields`: keys and value templates.
    pub fields: Vec<(String, Template)>,
}

impl Metadata {
    /// Every header's value for `row`, one line each: the three headers (empty when
    /// unset), then the fields: what [`headers_of`](crate::headers_of) reads back.
    pub fn render(&self, columns: &Columns, row: usize, out: &mut String) {
        let headers = self.headers.iter().map(|(_, t)| t.as_ref());
        for template in headers.chain(self.fields.iter().map(|(_, t)| Some(t))) {
            if let Some(template) = template {
                template.render(columns, row, out);
            }
            out.push('\n');
        }
    }

    /// Whether any header takes a record's field (events are then grouped by their
    /// headers' values).
    pub fn is_templated(&self) -> bool {
        self.headers
            .iter()
            .filter_map(|(_, t)| t.as_ref())
            .chain(self.fields.iter().map(|(_, t)| t))
            .any(Template::has_fields)
    }
}

impl SumoConfig {
    /// A configuration with every default, for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        flowlog_sink::settings::with_defaults(serde_json::json!({ "endpoint": endpoint.into() }))
    }

    /// The endpoint, from `endpoint` or `endpoint_file`.
    pub fn resolve_endpoint(&self) -> Result<String, SinkError> {
        let endpoint =
            one_of("endpoint", &self.endpoint, &self.endpoint_file)?.ok_or_else(|| {
                SinkError::Config(
                    "no endpoint: set `endpoint` (e.g. \"${SUMO_URL}\") or `endpoint_file`".into(),
                )
            })?;
        // Named without its path: the path is the credential.
        flowlog_sink::http::http_endpoint(&endpoint)
            .map_err(|_| SinkError::Config("endpoint is not an http:// or https:// URL".into()))?;
        Ok(endpoint)
    }

    /// The token, from `token` or `token_file`, if either is given.
    pub fn resolve_token(&self) -> Result<Option<String>, SinkError> {
        let token = one_of("token", &self.token, &self.token_file)?;
        if let Some(token) = &token {
            if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
                return Err(SinkError::Config(
                    "the token is empty or holds spaces or control characters".into(),
                ));
            }
        }
        Ok(token)
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

    /// The metadata headers' templates.
    pub fn metadata(&self) -> Result<Metadata, SinkError> {
        let parse = |key: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| Template::parse(v).map_err(|e| SinkError::Config(format!("{key}: {e}"))))
                .transpose()
        };
        let headers = vec![
            ("X-Sumo-Category", parse("category", &self.category)?),
            ("X-Sumo-Name", parse("source_name", &self.source_name)?),
            ("X-Sumo-Host", parse("source_host", &self.source_host)?),
        ];
        let mut fields = Vec::new();
        for (key, value) in &self.fields {
            // Sumo Logic's field names: letters, digits, `_`, `-` and `.`, up to 255.
            let valid = !key.is_empty()
                && key.len() <= 255
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(SinkError::Config(format!(
                    "fields: `{key}` is not a field name (letters, digits, `_`, `-`, `.`)"
                )));
            }
            let template = Template::parse(value)
                .map_err(|e| SinkError::Config(format!("fields.{key}: {e}")))?;
            fields.push((key.clone(), template));
        }
        Ok(Metadata { headers, fields })
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), SinkError> {
        self.resolve_endpoint()?;
        self.tuning().validate()?;
        self.target()?;
        self.resolve_token()?;
        self.metadata()?;
        Ok(())
    }
}

/// The value of a secret given inline (`key`) or in a file (`key_file`), not both.
fn one_of(
    key: &str,
    inline: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, SinkError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| SinkError::Config(format!("{key}_file {}: {e}", path.display())))
    };
    match (inline, file) {
        (Some(_), Some(_)) => Err(SinkError::Config(format!(
            "give `{key}` or `{key}_file`, not both"
        ))),
        (Some(value), None) => Ok(Some(value.trim().to_string())),
        (None, Some(path)) => read(path).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_never_shown() {
        let config = SumoConfig::new("https://collectors.example.com/receiver/v1/http/SECRETCODE");
        assert!(!format!("{config:?}").contains("SECRETCODE"));
        let mut bad = config.clone();
        bad.endpoint = Some("ftp://x/receiver/v1/http/SECRETCODE".into());
        let error = bad.validate().unwrap_err().to_string();
        assert!(
            error.contains("not an http") && !error.contains("SECRETCODE"),
            "{error}"
        );
    }

    #[test]
    fn fields_names_and_templates_are_checked() {
        let mut config = SumoConfig::new("https://example.com/receiver/v1/http/x");
        config.fields.insert("bad key".into(), "x".into());
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("bad key"));
        config.fields.clear();
        config
            .fields
            .insert("account".into(), "{{ acount-id }}".into());
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("fields.account") && error.contains("account-id"),
            "{error}"
        );
        config
            .fields
            .insert("account".into(), "{{ account-id }}".into());
        config.validate().unwrap();
        assert!(config.metadata().unwrap().is_templated());
        config.fields.clear();
        config.category = Some("aws/vpc".into());
        assert!(!config.metadata().unwrap().is_templated());
    }
}
