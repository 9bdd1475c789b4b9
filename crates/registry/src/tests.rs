//! The configuration file with every kind this build has: what parses, and where errors
//! point.

use std::path::Path;

use flowlog_pipeline::{ConfigError, Configured};

use super::*;

const GOOD: &str = r#"
data_dir = "/tmp/flowlog"

[sources.vpc]
type = "file"
paths = ["/var/log/vpc.log"]
follow = true

[transform.enrich]
geoip = ["/usr/share/GeoIP/GeoLite2-City.mmdb"]

[sinks.splunk]
type = "splunk_hec"
endpoint = "https://splunk.example.com:8088"
token = "${FLOWLOG_TEST_TOKEN}"
indexer_acknowledgement = true
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("flowlog.toml"))
}

#[test]
fn an_empty_or_truncated_file_is_an_error_not_a_panic() {
    // Found by the config fuzz target: an error spanning the end of the text.
    for text in ["", "\n", "[sources.vpc]\ntype = \"file\"\npaths = ["] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("flowlog.toml:"), "{err}");
    }
}

#[test]
fn a_complete_config_parses() {
    std::env::set_var("FLOWLOG_TEST_TOKEN", "abc-123");
    let config = parse(GOOD).unwrap();
    let SourceConfig::File(file) = &config.sources["vpc"] else {
        panic!()
    };
    assert!(file.follow);
    let SinkConfig::SplunkHec(hec) = &config.sinks["splunk"] else {
        panic!()
    };
    assert_eq!(hec.token.as_deref(), Some("abc-123"));
    assert!(hec.indexer_acknowledgement);
    assert_eq!(hec.max_bytes, 1_000_000);
}

#[test]
fn unknown_keys_are_errors_with_their_line() {
    std::env::set_var("FLOWLOG_TEST_TOKEN", "abc-123");
    let text = GOOD.replace("follow = true", "follow = true\nfolow = false");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("flowlog.toml:8: "), "{err}");
    assert!(err.contains("folow"), "{err}");

    let text = GOOD.replace("indexer_acknowledgement", "indexer_ack");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("flowlog.toml:16: "), "{err}");

    let text = GOOD.replace("data_dir", "datadir");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("flowlog.toml:2: "), "{err}");

    let text = GOOD.replace("\"splunk_hec\"", "\"splunk\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("splunk"), "{err}");
}

#[test]
fn a_typo_in_a_subtable_or_an_inline_table_is_reported_on_its_own_line() {
    std::env::set_var("FLOWLOG_TEST_TOKEN", "abc-123");
    let text = format!("{GOOD}\n[sinks.splunk.tls]\nsystem_roots = true\nca_fil = \"/ca.pem\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("flowlog.toml:20: "), "{err}");
    assert!(err.contains("ca_fil"), "{err}");
    let text = GOOD.replace(
        "indexer_acknowledgement = true",
        "indexer_acknowledgement = true\ntls = { system_roots = true, ca_fil = \"/ca.pem\" }",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("flowlog.toml:17: "), "{err}");
}

#[cfg(feature = "sink-elasticsearch")]
#[test]
fn a_misspelt_auth_key_is_named_and_a_wrong_mix_names_the_forms() {
    let sink = |auth: &str| {
        format!(
            "data_dir = \"/tmp/f\"\n[sources.vpc]\ntype = \"stdin\"\n\
             [sinks.es]\ntype = \"elasticsearch\"\nendpoints = [\"https://es:9200\"]\n\
             auth = {auth}\n"
        )
    };
    let err = parse(&sink("{ api_kye = \"x\" }")).unwrap_err().to_string();
    assert!(err.contains("unknown field `api_kye`"), "{err}");
    assert!(
        err.contains("`api_key`"),
        "the valid keys are listed: {err}"
    );
    assert!(err.starts_with("flowlog.toml:7: "), "{err}");
    let err = parse(&sink("{ user = \"u\" }")).unwrap_err().to_string();
    assert!(err.contains("auth takes one of three forms"), "{err}");
    parse(&sink("{ user = \"u\", password = \"p\" }")).unwrap();
}

#[cfg(feature = "source-firehose")]
#[test]
fn an_address_may_name_a_host_resolved_when_bound() {
    let text = |address: &str| {
        format!(
            "data_dir = \"/tmp/f\"\n[api]\naddress = \"{address}\"\n\
             [sources.fh]\ntype = \"firehose\"\naddress = \"{address}\"\naccess_key = \"k\"\n\
             [sinks.out]\ntype = \"file\"\npath = \"/tmp/f/out\"\n"
        )
    };
    let config = parse(&text("localhost:8443")).unwrap();
    let address = config.api.address.unwrap().resolve().unwrap();
    assert!(
        address.ip().is_loopback() && address.port() == 8443,
        "{address}"
    );
    let err = parse(&text("localhost")).unwrap_err().to_string();
    assert!(err.contains("write host:port or IP:port"), "{err}");
    // Reading the file asks no name server (validate reaches no network); binding does.
    let config = parse(&text("no-such-host.invalid:1")).unwrap();
    let err = config.api.address.unwrap().resolve().unwrap_err();
    assert!(err.contains("cannot be resolved"), "{err}");
}

#[test]
fn errors_never_quote_an_interpolated_secret() {
    std::env::set_var("FLOWLOG_TEST_SECRET", "s3cr3t-value");
    let text = GOOD.replace(
        "token = \"${FLOWLOG_TEST_TOKEN}\"",
        "token = \"${FLOWLOG_TEST_SECRET}\" trailing",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(!err.contains("s3cr3t"), "{err}");
    assert!(err.starts_with("flowlog.toml:15: "), "{err}");
}

/// The configuration the README shows, commented `${...}` lines included, parses.
#[test]
fn the_readme_configuration_parses() {
    // Where cargo runs the test (a shared target dir may have built it elsewhere).
    let dir: String =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let readme = std::fs::read_to_string(format!("{dir}/../../README.md")).unwrap();
    let section = &readme[readme
        .find("### A complete configuration for Splunk")
        .unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let text = &section[start..start + section[start..].find("```").unwrap()];
    assert!(text.contains("# format = \"${version}"), "{text}");
    std::env::set_var("SPLUNK_HEC_TOKEN", "a\"quoted\\token");
    let config = parse(text).unwrap();
    let SinkConfig::SplunkHec(hec) = &config.sinks["splunk"] else {
        panic!()
    };
    assert_eq!(hec.token.as_deref(), Some("a\"quoted\\token"));
    assert_eq!(config.sinks["archive"].kind(), "file");
}

#[test]
fn impossible_durations_are_errors_not_panics() {
    std::env::set_var("FLOWLOG_TEST_TOKEN", "abc-123");
    let text = GOOD.replace(
        "data_dir = \"/tmp/flowlog\"",
        "data_dir = \"/tmp/flowlog\"\nshutdown_timeout_secs = inf",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("flowlog.toml:3: shutdown_timeout_secs must be"),
        "{err}"
    );
    let text = GOOD.replace(
        "indexer_acknowledgement = true",
        "indexer_acknowledgement = true\nrequest_timeout_secs = 1e300",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("[sinks.splunk] request_timeout_secs must be"),
        "{err}"
    );
    let text = GOOD.replace("follow = true", "follow = true\npoll_secs = nan");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("[sources.vpc] poll_secs must be"), "{err}");
}

#[test]
fn semantic_errors_name_the_table() {
    std::env::set_var("FLOWLOG_TEST_TOKEN", "abc-123");
    let text = GOOD.replace("https://splunk.example.com:8088", "splunk:8088");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("[sinks.splunk] endpoint"), "{err}");
    assert!(err.starts_with("flowlog.toml:12: "), "{err}");
    let text = GOOD.replace("paths = [\"/var/log/vpc.log\"]", "paths = []");
    assert!(parse(&text)
        .unwrap_err()
        .to_string()
        .contains("paths is empty"));
}

#[test]
fn an_unknown_kind_is_refused_naming_the_kinds_this_build_has() {
    std::env::set_var("FLOWLOG_TEST_TOKEN", "abc-123");
    let text = GOOD.replace("type = \"file\"", "type = \"kafka\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("flowlog.toml:"), "{err}");
    // With every kind built, the list is the full one; a smaller build lists its own
    // (scripts/smoke-minimal.sh checks that on the smallest build).
    let kinds = "expected one of `file`, `directory`, `stdin`, `firehose`, `sqs`";
    assert!(err.contains("unknown variant `kafka`"), "{err}");
    assert!(err.contains(kinds), "{err}");
    let text = GOOD.replace("\"splunk_hec\"", "\"kafka\"");
    let err = parse(&text).unwrap_err().to_string();
    let kinds =
        "expected one of `splunk_hec`, `elasticsearch`, `otlp`, `sumo_logic`, `loki`, `file`";
    assert!(err.contains(kinds), "{err}");
}

/// A sink that takes findings only is refused anywhere else than on the findings route.
#[cfg(feature = "sink-security-hub")]
#[test]
fn a_findings_only_sink_must_be_on_the_findings_route() {
    let hub = "\n[sinks.hub]\ntype = \"security_hub\"\nregion = \"us-east-1\"\n";
    std::env::set_var("FLOWLOG_TEST_TOKEN", "abc-123");
    let err = parse(&format!("{GOOD}{hub}")).unwrap_err().to_string();
    assert!(
        err.contains("sinks.hub") && err.contains("findings only"),
        "{err}"
    );
    let routed = format!("{GOOD}{hub}\n[detect]\nfindings = [\"hub\"]\n");
    parse(&routed).unwrap();
}
