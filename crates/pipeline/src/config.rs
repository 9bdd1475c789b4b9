//! The configuration file: named sources, the transform settings, named sinks.
//!
//! ```toml
//! data_dir = "/var/lib/flowlog"
//!
//! [sources.vpc]
//! type = "file"
//! paths = ["/var/log/vpc/flows.log"]
//! follow = true
//!
//! [transform.enrich]
//! geoip = ["/usr/share/GeoIP/GeoLite2-City.mmdb"]
//!
//! [sinks.splunk]
//! type = "splunk_hec"
//! endpoint = "https://splunk.example.com:8088"
//! token = "${SPLUNK_HEC_TOKEN}"
//! ```
//!
//! `${NAME}` is replaced by the environment variable `NAME` (`$$` is a literal `$`), as
//! the TOML text allows: not in comments, escaped inside `"..."` strings (see
//! [`interpolate`]); an unset variable is an error, `${NAME:-default}` gives a default and
//! `${NAME:?message}` a message of one's own. A `format` value is AWS's `${field}` syntax
//! and is copied as it is. Unknown keys are errors, reported with the line they are on.

use flowlog_component::listen::ListenAddress;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use flowlog_sink::SinkKind;
use flowlog_source::dead_letter::DeadLetterLimits;
use flowlog_source::SourceKind;

use crate::{ConfigError, Configured};

/// The whole file; `S` and `K` are the registry's enums of source and sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config<S, K> {
    /// Where checkpoints (and, by default, the dead letter) are kept.
    pub data_dir: PathBuf,
    /// Records that cannot be decoded or delivered, as NDJSON: a path, or a table with
    /// the path and the store's bounds (default: `<data_dir>/dead-letter.ndjson`, 1 GiB,
    /// rotated every 64 MiB).
    pub dead_letter: Option<DeadLetterSettings>,
    /// Seconds to wait for in-flight batches on shutdown before giving up on them (they
    /// are then not checkpointed, and are sent again after a restart).
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: f64,
    /// Seconds between status lines in the log (records read and delivered, rates, dead
    /// letters, how far delivery lags); 0: none.
    #[serde(default = "default_status_interval")]
    pub status_interval_secs: f64,
    #[serde(default)]
    pub api: Api,
    /// Required by `run`; `flowlog backfill` brings its own.
    #[serde(default = "BTreeMap::new")]
    pub sources: BTreeMap<String, S>,
    #[serde(default)]
    pub transform: Transform,
    /// The detection rules (docs/detections.md): present, they run on every record the
    /// filter keeps; their findings go to the sinks `findings` names.
    pub detect: Option<flowlog_detect::DetectSettings>,
    pub sinks: BTreeMap<String, K>,
}

/// `dead_letter = "path"`, or `[dead_letter]` with `path`, `max_bytes`, `rotate_bytes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DeadLetterSettings {
    Path(PathBuf),
    Table(DeadLetterTable),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterTable {
    pub path: Option<PathBuf>,
    /// The file and its rotated files together hold at most this; past it nothing more is
    /// acknowledged (requests 503, messages left on the queue, checkpoints held).
    pub max_bytes: Option<u64>,
    /// The file is rotated (`<path>.1`, `.2`, ...) once it holds this much.
    pub rotate_bytes: Option<u64>,
}

impl<S, K> Config<S, K> {
    /// Where the dead letter is kept, and its bounds.
    pub fn dead_letter_store(&self) -> (PathBuf, DeadLetterLimits) {
        let default_path = || self.data_dir.join("dead-letter.ndjson");
        let defaults = DeadLetterLimits::default();
        match &self.dead_letter {
            None => (default_path(), defaults),
            Some(DeadLetterSettings::Path(path)) => (path.clone(), defaults),
            Some(DeadLetterSettings::Table(table)) => (
                table.path.clone().unwrap_or_else(default_path),
                DeadLetterLimits {
                    max_bytes: table.max_bytes.unwrap_or(defaults.max_bytes),
                    rotate_bytes: table.rotate_bytes.unwrap_or(defaults.rotate_bytes),
                },
            ),
        }
    }
}

fn default_shutdown_timeout() -> f64 {
    30.0
}

/// The metrics and health endpoint: off unless an address is given. A listening port is
/// something an operator opts into (as with Vector's API and Fluent Bit's HTTP server):
/// a default one makes a second instance on the host fail to start, and opens a port no
/// one asked for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// `host:port` serving `/metrics` (Prometheus text) and `/health`.
    #[serde(default)]
    pub address: Option<ListenAddress>,
    /// Seconds a component may keep failing (a receiver down, a directory unreadable)
    /// before `/health` answers 503; until then it says `degraded`.
    pub unhealthy_after_secs: Option<f64>,
}

impl Api {
    /// The grace period of `/health` (default 60 s).
    pub fn unhealthy_after(&self) -> std::time::Duration {
        let secs = self.unhealthy_after_secs.unwrap_or(60.0);
        std::time::Duration::try_from_secs_f64(secs).unwrap_or(std::time::Duration::MAX)
    }
}

/// What happens between decoding and the sinks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    /// Most records per batch.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    #[serde(default)]
    pub enrich: Enrich,
    #[serde(default)]
    pub filter: crate::filter::Filter,
    /// Fewer records to the sinks: sampling, cross-interface duplicates, aggregation.
    pub reduce: Option<crate::reduce::Reduce>,
}

impl Default for Transform {
    fn default() -> Self {
        Self {
            batch_rows: default_batch_rows(),
            enrich: Enrich::default(),
            filter: crate::filter::Filter::default(),
            reduce: None,
        }
    }
}

fn default_batch_rows() -> usize {
    8192
}

/// Enrichment sources, as `flowlog transform`'s options (docs/enrichment.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrich {
    #[serde(default)]
    pub geoip: Vec<PathBuf>,
    #[serde(default)]
    pub asn: Vec<PathBuf>,
    /// Inventory files, or `"ec2"` for the live inventory.
    #[serde(default)]
    pub eni_inventory: Vec<PathBuf>,
    #[serde(default = "default_eni_refresh")]
    pub eni_refresh_secs: u64,
    pub aws_region: Option<String>,
    pub aws_endpoint: Option<String>,
    pub aws_ip_ranges: Option<PathBuf>,
    #[serde(default)]
    pub watchlist: Vec<PathBuf>,
    /// Seconds between looks at whether a GeoIP/ASN database file was replaced.
    #[serde(default = "default_reload")]
    pub reload_secs: f64,
    /// Look for GeoIP databases in geoipupdate's directories when `geoip` is empty.
    #[serde(default = "yes")]
    pub geoip_search: bool,
}

impl Enrich {
    /// Whether records may get enrichment columns: a source is configured, or GeoIP
    /// databases are looked for and geoipupdate's directories hold one.
    pub fn may_enrich(&self) -> bool {
        let found = || {
            flowlog_enrich::GEOIPUPDATE_DIRS.iter().any(|dir| {
                std::fs::read_dir(dir).is_ok_and(|entries| {
                    entries
                        .flatten()
                        .any(|e| e.path().extension().is_some_and(|x| x == "mmdb"))
                })
            })
        };
        (self.geoip_search && found())
            || !self.geoip.is_empty()
            || !self.asn.is_empty()
            || !self.eni_inventory.is_empty()
            || self.aws_ip_ranges.is_some()
            || !self.watchlist.is_empty()
    }
}

impl Default for Enrich {
    /// What an absent `[transform.enrich]` table means (the same defaults as its keys).
    fn default() -> Self {
        Self {
            geoip: Vec::new(),
            asn: Vec::new(),
            eni_inventory: Vec::new(),
            eni_refresh_secs: default_eni_refresh(),
            aws_region: None,
            aws_endpoint: None,
            aws_ip_ranges: None,
            watchlist: Vec::new(),
            reload_secs: default_reload(),
            geoip_search: yes(),
        }
    }
}

fn default_eni_refresh() -> u64 {
    300
}
fn default_status_interval() -> f64 {
    60.0
}
fn default_reload() -> f64 {
    10.0
}
fn yes() -> bool {
    true
}

impl<S, K> Config<S, K>
where
    S: Configured<dyn SourceKind> + serde::de::DeserializeOwned,
    K: Configured<dyn SinkKind> + serde::de::DeserializeOwned,
{
    /// Reads, interpolates and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let at = |line: usize, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            message,
        };
        let interpolated = interpolate(text, |name| std::env::var(name).ok())
            .map_err(|(line, message)| at(line, message))?;
        let config: Self = toml::from_str(&interpolated).map_err(|e| {
            // The message alone: toml's own rendering quotes the line, which may hold an
            // interpolated secret.
            let line = match e.span() {
                // Errors inside a tagged table (a source, a sink) point at its header:
                // the key the message names is on a line of the table.
                Some(span) => {
                    let table = table_region(&interpolated[span.start..]);
                    match named_key(e.message()).map(|k| find_key_line(table, k)) {
                        Some(n) if n > 0 => line_of(&interpolated, span.start) + n - 1,
                        _ => line_of(&interpolated, span.start),
                    }
                }
                None => named_key(e.message()).map_or(0, |k| find_key_line(text, k)),
            };
            at(line, e.message().trim().to_string())
        })?;
        config.validate().map_err(|(line_hint, message)| {
            at(
                line_hint.map_or(0, |key| find_key_line(text, &key)),
                message,
            )
        })?;
        Ok(config)
    }

    /// Checks what parsing alone does not: at least one sink, formats that
    /// parse, sink settings that make sense. Errors carry a `[table]` to locate.
    fn validate(&self) -> Result<(), (Option<String>, String)> {
        if self.sinks.is_empty() {
            return Err((None, "no [sinks.<name>] table: nowhere to deliver".into()));
        }
        flowlog_component::duration::seconds(
            "shutdown_timeout_secs",
            self.shutdown_timeout_secs,
            true,
        )
        .map_err(|e| (Some("shutdown_timeout_secs".into()), e))?;
        flowlog_component::duration::seconds(
            "status_interval_secs",
            self.status_interval_secs,
            true,
        )
        .map_err(|e| (Some("status_interval_secs".into()), e))?;
        if self.status_interval_secs > 0.0 && self.status_interval_secs < 1.0 {
            return Err((
                Some("status_interval_secs".into()),
                "status_interval_secs must be 0 (no status lines) or at least 1".into(),
            ));
        }
        flowlog_component::duration::seconds(
            "reload_secs",
            self.transform.enrich.reload_secs,
            false,
        )
        .map_err(|e| (Some("reload_secs".into()), e))?;
        if let Some(secs) = self.api.unhealthy_after_secs {
            flowlog_component::duration::seconds("unhealthy_after_secs", secs, true)
                .map_err(|e| (Some("unhealthy_after_secs".into()), e))?;
        }
        let (_, limits) = self.dead_letter_store();
        if limits.rotate_bytes < 4096 || limits.max_bytes < limits.rotate_bytes {
            return Err((
                Some("dead_letter".into()),
                "dead_letter: rotate_bytes must be at least 4096 and max_bytes at least \
                 rotate_bytes"
                    .into(),
            ));
        }
        if let Some(sql) = &self.transform.filter.predicate {
            crate::filter::Where::new(sql, self.transform.enrich.may_enrich())
                .map_err(|e| (Some("where".into()), format!("[transform.filter] {e}")))?;
        }
        if let Some(reduce) = &self.transform.reduce {
            reduce
                .validate()
                .map_err(|e| (Some("reduce".into()), format!("[transform.reduce] {e}")))?;
            // A merged record's original line is not its values.
            let forwards_lines = self
                .sinks
                .iter()
                .find(|(name, sink)| sink.spec().needs().lines && !self.is_findings_sink(name));
            if let (true, Some((name, _))) = (reduce.aggregate, forwards_lines) {
                return Err((
                    Some("reduce".into()),
                    format!(
                        "[transform.reduce] aggregate: sink `{name}` forwards the original \
                         lines, which merged records do not have; give it a JSON format"
                    ),
                ));
            }
        }
        if self.transform.batch_rows == 0 {
            return Err((
                Some("batch_rows".into()),
                "batch_rows must be at least 1".into(),
            ));
        }
        for (name, source) in &self.sources {
            let table = format!("sources.{name}");
            if let Some(format) = source.spec().format() {
                let format = flowlog_model::FlowFormat::parse(format)
                    .map_err(|e| (Some(table.clone()), format!("[{table}] format: {e}")))?;
                for typo in format.likely_typos() {
                    tracing::warn!("[{table}] format: {typo}");
                }
            }
            source
                .spec()
                .validate()
                .map_err(|e| (Some(table.clone()), format!("[{table}] {e}")))?;
        }
        let stdin = self
            .sources
            .values()
            .filter(|s| s.kind() == "stdin")
            .count();
        if stdin > 1 {
            return Err((None, "only one stdin source can exist".into()));
        }
        for (name, sink) in &self.sinks {
            let table = format!("sinks.{name}");
            sink.spec()
                .validate()
                .map_err(|e| (Some(table.clone()), format!("[{table}] {e}")))?;
        }
        if let Some(detect) = &self.detect {
            self.validate_detect(detect)
                .map_err(|e| (Some("detect".into()), format!("[detect] {e}")))?;
        }
        for (name, sink) in &self.sinks {
            if sink.spec().findings_only() && !self.is_findings_sink(name) {
                let table = format!("sinks.{name}");
                return Err((
                    Some(table.clone()),
                    format!(
                        "[{table}] a {} sink takes findings only: name it in [detect] \
                         findings (findings = [\"{name}\"])",
                        sink.kind()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The rules' settings, and a findings route to sinks that can carry findings.
    fn validate_detect(&self, detect: &flowlog_detect::DetectSettings) -> Result<(), String> {
        detect.validate().map_err(|e| e.to_string())?;
        if detect.findings.is_empty() {
            return Err(
                "findings names no sink: give the sinks findings go to (findings = [\"alerts\"])"
                    .into(),
            );
        }
        for name in &detect.findings {
            let Some(sink) = self.sinks.get(name) else {
                return Err(format!(
                    "findings names `{name}`, which is not a sink (the sinks: {})",
                    self.sinks.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            };
            let format = match detect.findings_format {
                flowlog_detect::FindingFormat::Ocsf => "ocsf",
                flowlog_detect::FindingFormat::Ecs => "ecs",
            };
            sink.spec()
                .carries_documents(format)
                .map_err(|e| format!("findings cannot go to sink `{name}`: {e}"))?;
        }
        if self.sinks.keys().all(|name| detect.findings.contains(name)) {
            return Err(
                "every sink is on the findings route: the records would go nowhere \
                        (a sink named in findings gets findings only)"
                    .into(),
            );
        }
        Ok(())
    }
}

impl<S, K> Config<S, K> {
    /// True when `sink` gets findings (and so no flow records).
    pub fn is_findings_sink(&self, sink: &str) -> bool {
        self.detect
            .as_ref()
            .is_some_and(|d| d.findings.iter().any(|f| f == sink))
    }
}

/// Where in the TOML text a `${NAME}` stands, which decides how its value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Outside strings: a bare value (`port = ${PORT}`).
    Bare,
    /// A comment: nothing is replaced.
    Comment,
    /// `"..."` or `"""..."""`: the value is escaped as TOML escapes.
    Basic { multi: bool },
    /// `'...'` or `'''...'''`: no escapes exist, so a value that would end the string
    /// cannot be placed.
    Literal { multi: bool },
}

/// Replaces `${NAME}` with `lookup(NAME)`; `$$` stands for `$`. Errors carry the line.
///
/// Replacement follows the TOML text rather than running over it blindly: comments are
/// left alone (a commented-out `# format = "${version} ..."` needs no variable); inside
/// `"..."` strings the value is escaped, so a secret holding `"` or `\` arrives intact and
/// cannot change the file's structure; inside `'...'` strings a value that would end the
/// string is an error; outside strings only a plain scalar (a number, a word) is
/// accepted.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut context = Context::Bare;
    // The string being read is a `format` value: AWS's own `${field}` syntax, copied.
    let mut verbatim = false;
    let mut line = 1;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let starts = |p: &str| rest.starts_with(p);
        // Advances over `n` bytes, copying them.
        let take = |n: usize, out: &mut String, rest: &mut &str| {
            out.push_str(&rest[..n]);
            *rest = &rest[n..];
        };
        match (context, c) {
            (_, '\n') => {
                line += 1;
                if matches!(context, Context::Comment)
                    || matches!(
                        context,
                        Context::Basic { multi: false } | Context::Literal { multi: false }
                    )
                {
                    context = Context::Bare;
                }
                take(1, &mut out, &mut rest);
            }
            (Context::Comment, _) => take(c.len_utf8(), &mut out, &mut rest),
            (Context::Bare, '#') => {
                context = Context::Comment;
                take(1, &mut out, &mut rest);
            }
            (Context::Bare, '"') => {
                let multi = starts("\"\"\"");
                context = Context::Basic { multi };
                verbatim = assigns_format(&out);
                take(if multi { 3 } else { 1 }, &mut out, &mut rest);
            }
            (Context::Bare, '\'') => {
                let multi = starts("\'\'\'");
                context = Context::Literal { multi };
                verbatim = assigns_format(&out);
                take(if multi { 3 } else { 1 }, &mut out, &mut rest);
            }
            (Context::Basic { .. }, '\\') => {
                // An escape: the next character is part of it (`\"` does not end the string).
                let n = 1 + rest[1..].chars().next().map_or(0, char::len_utf8);
                if rest[1..].starts_with('\n') {
                    line += 1;
                }
                take(n, &mut out, &mut rest);
            }
            (Context::Basic { multi }, '"') if !multi || starts("\"\"\"") => {
                context = Context::Bare;
                take(if multi { 3 } else { 1 }, &mut out, &mut rest);
            }
            (Context::Literal { multi }, '\'') if !multi || starts("\'\'\'") => {
                context = Context::Bare;
                take(if multi { 3 } else { 1 }, &mut out, &mut rest);
            }
            (_, '$') if verbatim => take(1, &mut out, &mut rest),
            (_, '$') if starts("$$") => {
                out.push('$');
                rest = &rest[2..];
            }
            (_, '$') if starts("${") => {
                let body = &rest[2..];
                let end = body
                    .find('}')
                    .filter(|&e| !body[..e].contains('\n'))
                    .ok_or_else(|| (line, "`${` without a closing `}`".to_string()))?;
                let (name, value) = expand(&body[..end], &lookup).map_err(|m| (line, m))?;
                place(&mut out, context, name, &value).map_err(|message| (line, message))?;
                rest = &body[end + 1..];
            }
            _ => take(c.len_utf8(), &mut out, &mut rest),
        }
    }
    Ok(out)
}

/// Whether the string about to open is the value of a `format` key (`format = "`,
/// `sources.vpc.format = '`, `{ format = "`): flow-log formats are written in AWS's own
/// `${field}` syntax, as copied from the console, so they are not interpolated.
fn assigns_format(before: &str) -> bool {
    let start = before.rfind(['\n', '{', ',']).map_or(0, |i| i + 1);
    let Some(key) = before[start..].trim_end().strip_suffix('=') else {
        return false;
    };
    let key = key.trim();
    key == "format" || key.ends_with(".format")
}

/// The value of one `${...}`: `NAME`, `NAME:-default` (unset or empty: the default) or
/// `NAME:?message` (unset or empty: an error with the message), as POSIX shells and
/// Compose read them. (The forms without `:` are not taken: `${account-id}` would read as
/// a default, where a user meant a flow-log field.)
fn expand<'a>(
    expression: &'a str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(&'a str, String), String> {
    let name_end = expression
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(expression.len());
    let (name, operator) = expression.split_at(name_end);
    let not_a_name = || {
        format!(
            "`${{{expression}}}` is not an environment variable (a flow-log field in AWS's \
             `${{field}}` syntax is read as it is only in `format`; elsewhere `$${{` is a \
             literal `${{`)"
        )
    };
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(not_a_name());
    }
    let value = lookup(name).filter(|v| operator.is_empty() || !v.is_empty());
    if operator.is_empty() {
        return value
            .map(|v| (name, v))
            .ok_or_else(|| format!("environment variable {name} is not set"));
    }
    if let Some(default) = operator.strip_prefix(":-") {
        return Ok((name, value.unwrap_or_else(|| default.to_string())));
    }
    if let Some(message) = operator.strip_prefix(":?") {
        let message = if message.is_empty() {
            "is not set"
        } else {
            message
        };
        return value
            .map(|v| (name, v))
            .ok_or_else(|| format!("environment variable {name}: {message}"));
    }
    Err(not_a_name())
}

/// Writes `value` where `context` says; the error names the variable, never its value.
fn place(out: &mut String, context: Context, name: &str, value: &str) -> Result<(), String> {
    match context {
        Context::Comment => unreachable!("comments are copied, not interpolated"),
        Context::Basic { .. } => {
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                    c => out.push(c),
                }
            }
        }
        Context::Literal { multi } => {
            let ends = value.contains('\'') || (!multi && value.contains(['\n', '\r']));
            if ends
                || value
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t')
            {
                return Err(format!(
                    "environment variable {name} holds a quote, a line break or a control \
                     character, which a '...' string cannot hold: use \"...\" around it"
                ));
            }
            out.push_str(value);
        }
        Context::Bare => {
            let scalar = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-._:".contains(c));
            if !scalar {
                return Err(format!(
                    "environment variable {name} is used outside a string and is not a plain \
                     number or word: put \"${{{name}}}\" in quotes"
                ));
            }
            out.push_str(value);
        }
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The key an error message names in backquotes (`unknown field `x``), if any.
fn named_key(message: &str) -> Option<&str> {
    message
        .split('`')
        .nth(1)
        .filter(|k| !k.is_empty() && !k.contains(' '))
}

/// The text of the table whose header `rest` starts at, with its subtables (`[a.b]` then
/// `[a.b.tls]`): where a key an error names inside it stands.
fn table_region(rest: &str) -> &str {
    let Some(name) = header_name(rest.lines().next().unwrap_or_default()) else {
        return rest.split_inclusive('\n').next().unwrap_or(rest);
    };
    let prefix = format!("{name}.");
    let mut end = 0;
    for (i, line) in rest.split_inclusive('\n').enumerate() {
        if i > 0 && header_name(line).is_some_and(|n| !n.starts_with(&prefix)) {
            break;
        }
        end += line.len();
    }
    &rest[..end]
}

/// `a.b` of a header line `[a.b]` or `[[a.b]]`.
fn header_name(line: &str) -> Option<&str> {
    let inner = line.trim().strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    Some(inner.split(']').next()?.trim())
}

/// The first line assigning `key` (`key =`, also inside an inline table `{ key = ... }`),
/// or opening table `[key]`; 0 if none.
fn find_key_line(text: &str, key: &str) -> usize {
    let assigns = |part: &str| {
        part.trim_start()
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with('='))
    };
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            assigns(l)
                || l.split(['{', ',']).skip(1).any(assigns)
                || l.strip_prefix('[')
                    .and_then(|r| r.strip_prefix(key))
                    .is_some_and(|r| r.starts_with(']'))
        })
        .map_or(0, |i| i + 1)
}

impl Enrich {
    /// The enricher these settings ask for, if any. An unreadable source is an error; no
    /// GeoIP database at all is a notice (told to `notice`), not an error.
    pub fn build(
        &self,
        notice: &mut dyn FnMut(String),
    ) -> Result<Option<flowlog_enrich::Enricher>, flowlog_enrich::EnrichError> {
        let live = self.eni_inventory.iter().any(|p| p.as_os_str() == "ec2");
        let mut config = flowlog_enrich::EnrichConfig {
            geoip: self.geoip.clone(),
            asn: self.asn.clone(),
            eni_files: self
                .eni_inventory
                .iter()
                .filter(|p| p.as_os_str() != "ec2")
                .cloned()
                .collect(),
            ec2: live.then(|| flowlog_enrich::Ec2Options {
                region: self.aws_region.clone(),
                endpoint: self.aws_endpoint.clone(),
                ttl: std::time::Duration::from_secs(self.eni_refresh_secs.max(1)),
            }),
            ip_ranges: self.aws_ip_ranges.clone(),
            watchlists: self.watchlist.clone(),
            reload_interval: std::time::Duration::try_from_secs_f64(self.reload_secs).ok(),
            ..flowlog_enrich::EnrichConfig::default()
        };
        if config.is_empty() && !self.geoip_search {
            return Ok(None);
        }
        if self.geoip_search && config.geoip.is_empty() {
            let dirs: Vec<&Path> = flowlog_enrich::GEOIPUPDATE_DIRS
                .iter()
                .map(Path::new)
                .collect();
            for found in config.find_geoipupdate_databases(&dirs) {
                notice(format!("using {} (geoipupdate directory)", found.display()));
            }
            if config.geoip.is_empty() && !config.is_empty() {
                notice(format!(
                    "notice: no GeoIP database given or found in {}; no geo fields",
                    flowlog_enrich::GEOIPUPDATE_DIRS.join(", ")
                ));
            }
        }
        if config.is_empty() {
            return Ok(None);
        }
        flowlog_enrich::Enricher::new(&config).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_follows_the_toml_text() {
        let env = |name: &str| match name {
            "SECRET" => Some(r#"p"a\ss#word"#.to_string()),
            "PORT" => Some("8088".to_string()),
            "MULTI" => Some("one\ntwo".to_string()),
            "APOSTROPHE" => Some("it's".to_string()),
            _ => None,
        };
        // A comment is not interpolated, even with an unset variable in it.
        let text =
            "# format = \"${version} ${account-id}\"\ntoken = \"${SECRET}\"\nport = ${PORT}\n";
        let out = interpolate(text, env).unwrap();
        #[derive(serde::Deserialize)]
        struct T {
            token: String,
            port: u16,
        }
        let parsed: T = toml::from_str(&out).unwrap();
        assert_eq!(parsed.token, r#"p"a\ss#word"#, "the secret arrives intact");
        assert_eq!(parsed.port, 8088);
        // Escapes in the file itself are left as they are.
        let out = interpolate("a = \"x\\\" ${PORT}\" # ${NOPE}\n", env).unwrap();
        assert_eq!(out, "a = \"x\\\" 8088\" # ${NOPE}\n");
        // A basic string can hold a line break (escaped); a literal one cannot.
        let out = interpolate("a = \"${MULTI}\"", env).unwrap();
        assert_eq!(
            toml::from_str::<toml::Table>(&out).unwrap()["a"].as_str(),
            Some("one\ntwo")
        );
        let out = interpolate("a = '${SECRET}'", env).unwrap();
        let parsed = toml::from_str::<toml::Table>(&out).unwrap();
        assert_eq!(parsed["a"].as_str(), Some(r#"p"a\ss#word"#));
        let err = interpolate("\na = '${APOSTROPHE}'", env).unwrap_err();
        assert_eq!(err.0, 2);
        assert!(
            err.1.contains("APOSTROPHE") && !err.1.contains("it's"),
            "{}",
            err.1
        );
        // Outside strings only plain scalars.
        let err = interpolate("a = ${SECRET}", env).unwrap_err();
        assert!(err.1.contains("in quotes"), "{}", err.1);
    }

    #[test]
    fn interpolation() {
        let env = |name: &str| (name == "A").then(|| "x".to_string());
        assert_eq!(interpolate("a=${A} $$ $b", env).unwrap(), "a=x $ $b");
        assert_eq!(
            interpolate("\n\n${B}", env).unwrap_err(),
            (3, "environment variable B is not set".to_string())
        );
        assert!(interpolate("${A", env).is_err());
        assert!(interpolate("${A+B}", env).is_err());
    }

    #[test]
    fn defaults_and_required_variables_as_shells_read_them() {
        let env = |name: &str| match name {
            "SET" => Some("x".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let one = |text: &str| interpolate(text, env);
        assert_eq!(one("${SET:-d}").unwrap(), "x");
        assert_eq!(one("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(one("${UNSET:-d}").unwrap(), "d");
        assert_eq!(one("a = \"${UNSET:-}\"").unwrap(), "a = \"\"");
        assert_eq!(
            one("a = \"${UNSET:-http://h:9200}\"").unwrap(),
            "a = \"http://h:9200\""
        );
        assert_eq!(one("${SET:?needed}").unwrap(), "x");
        assert_eq!(
            one("\n${EMPTY:?set the token}").unwrap_err(),
            (2, "environment variable EMPTY: set the token".to_string())
        );
        assert!(one("${UNSET:?}")
            .unwrap_err()
            .1
            .contains("UNSET: is not set"));
        // A plain name that is set but empty is what it is.
        assert_eq!(one("a = \"${EMPTY}\"").unwrap(), "a = \"\"");
        for odd in ["${UNSET-d}", "${SET?m}", "${SET:+x}"] {
            assert!(
                one(odd)
                    .unwrap_err()
                    .1
                    .contains("not an environment variable"),
                "{odd}"
            );
        }
    }

    #[test]
    fn a_format_is_read_in_aws_syntax_and_only_a_format() {
        let env = |name: &str| (name == "TOKEN").then(|| "t".to_string());
        let text = "format = \"${version} ${account-id} ${srcaddr}\"\n\
                    token = \"${TOKEN}\"\n\
                    sources.vpc.format = '${version} ${tgw-id}'\n\
                    s = { format = \"${version}\", other = \"${TOKEN}\" }\n";
        let out = interpolate(text, env).unwrap();
        assert_eq!(
            out,
            "format = \"${version} ${account-id} ${srcaddr}\"\ntoken = \"t\"\n\
             sources.vpc.format = '${version} ${tgw-id}'\n\
             s = { format = \"${version}\", other = \"t\" }\n"
        );
        // Elsewhere a field name is not a variable: the message says where it is read.
        let err = interpolate("path = \"${account-id}\"", env).unwrap_err();
        assert!(err.1.contains("only in `format`"), "{}", err.1);
        assert!(err.1.contains("account-id"), "{}", err.1);
        // A format key's name as a value is not a format.
        assert!(interpolate("x = \"format = ${version}\"", env).is_err());
    }
}
