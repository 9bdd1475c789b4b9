//! The documentation is tested like the code it describes: every settings key is listed in
//! docs/configuration.md (and nothing there is a key no longer read), every TOML block in the
//! README and docs/ is a configuration `flowlog validate` accepts, and every sample session
//! (a ```console block) prints what it shows: here when it needs nothing but the checkout,
//! else in the test `common::samples::RUN_BY_TESTS` names.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::samples::{self, blocks, line_matches, matches, pages, relative, Sample, Stage};
use common::{manifest_dir, tempdir};

/// The keys serde reads for `T`: its `deserialize_struct` call names them, and this
/// deserializer only listens for that.
fn keys<'de, T: serde::Deserialize<'de>>() -> Vec<&'static str> {
    match T::deserialize(KeyCollector) {
        Err(Collected::Keys(keys)) => keys.to_vec(),
        Err(Collected::Other(e)) => panic!("{} is not a struct: {e}", std::any::type_name::<T>()),
        Ok(_) => unreachable!("the collector never produces a value"),
    }
}

struct KeyCollector;

#[derive(Debug)]
enum Collected {
    Keys(&'static [&'static str]),
    Other(String),
}

impl std::fmt::Display for Collected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Collected {}

impl serde::de::Error for Collected {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Collected::Other(msg.to_string())
    }
}

impl<'de> serde::Deserializer<'de> for KeyCollector {
    type Error = Collected;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Collected> {
        Err(Collected::Other("not a struct".into()))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Collected> {
        Err(Collected::Keys(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

/// Every settings table, by the marker that introduces its key table in the page, with
/// the keys serde reads for it. A source's or sink's table also has `type`.
fn settings_tables() -> Vec<(&'static str, Vec<&'static str>)> {
    use flowlog_pipeline::config as pipeline;
    let with_type = |mut keys: Vec<&'static str>| {
        keys.push("type");
        keys
    };
    vec![
        ("top", keys::<flowlog_registry::Config>()),
        ("dead_letter", keys::<pipeline::DeadLetterTable>()),
        ("api", keys::<pipeline::Api>()),
        ("transform", keys::<pipeline::Transform>()),
        ("enrich", keys::<pipeline::Enrich>()),
        ("filter", keys::<flowlog_pipeline::filter::Filter>()),
        ("reduce", keys::<flowlog_pipeline::reduce::Reduce>()),
        ("detect", keys::<flowlog_detect::DetectSettings>()),
        (
            "detect.vertical_scan",
            keys::<flowlog_detect::settings::VerticalScan>(),
        ),
        (
            "detect.horizontal_scan",
            keys::<flowlog_detect::settings::HorizontalScan>(),
        ),
        (
            "detect.baseline",
            keys::<flowlog_detect::settings::Baseline>(),
        ),
        (
            "detect.admin_ports",
            keys::<flowlog_detect::settings::AdminPorts>(),
        ),
        (
            "detect.outbound_dns",
            keys::<flowlog_detect::settings::OutboundDns>(),
        ),
        (
            "detect.watchlist",
            keys::<flowlog_detect::settings::Watchlist>(),
        ),
        (
            "source.file",
            with_type(keys::<flowlog_source_file::FileSource>()),
        ),
        (
            "source.directory",
            with_type(keys::<flowlog_source_file::DirectorySource>()),
        ),
        (
            "source.stdin",
            with_type(keys::<flowlog_source_file::StdinSource>()),
        ),
        (
            "source.firehose",
            with_type(keys::<flowlog_source_firehose::FirehoseSource>()),
        ),
        (
            "source.firehose.tls",
            keys::<flowlog_source_firehose::ServerTls>(),
        ),
        (
            "source.sqs",
            with_type(keys::<flowlog_source_sqs::SqsSource>()),
        ),
        (
            "source.s3",
            with_type(keys::<flowlog_source_s3::S3Source>()),
        ),
        (
            "source.kinesis",
            with_type(keys::<flowlog_source_kinesis::KinesisSource>()),
        ),
        (
            "sink.splunk_hec",
            with_type(keys::<flowlog_sink_splunk_hec::HecConfig>()),
        ),
        (
            "sink.elasticsearch",
            with_type(keys::<flowlog_sink_elasticsearch::EsConfig>()),
        ),
        (
            "sink.elasticsearch.data_stream",
            keys::<flowlog_sink_elasticsearch::DataStream>(),
        ),
        (
            "sink.elasticsearch.auth",
            keys::<flowlog_sink_elasticsearch::Auth>(),
        ),
        (
            "sink.elasticsearch.aws_sigv4",
            keys::<flowlog_sink_elasticsearch::SigV4>(),
        ),
        (
            "sink.otlp",
            with_type(keys::<flowlog_sink_otlp::OtlpConfig>()),
        ),
        (
            "sink.sumo_logic",
            with_type(keys::<flowlog_sink_sumo_logic::SumoConfig>()),
        ),
        (
            "sink.loki",
            with_type(keys::<flowlog_sink_loki::LokiConfig>()),
        ),
        ("sink.loki.auth", keys::<flowlog_sink_loki::Auth>()),
        (
            "sink.security_hub",
            with_type(keys::<flowlog_sink_security_hub::SecurityHubConfig>()),
        ),
        (
            "sink.file",
            with_type(keys::<flowlog_sink_file::FileConfig>()),
        ),
        (
            "sink.security_lake",
            with_type(keys::<flowlog_sink_security_lake::SecurityLakeConfig>()),
        ),
        ("sink.tls", keys::<flowlog_sink::http::TlsOptions>()),
        ("sink.proxy", keys::<flowlog_sink::http::ProxyOptions>()),
    ]
}

/// The keys each `<!-- keys: NAME -->` table of the page lists: the backticked text of
/// each row's first cell, up to the first blank line.
fn documented_keys(page: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut tables = BTreeMap::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- keys:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        let mut keys = BTreeSet::new();
        for row in lines.by_ref().skip_while(|l| l.trim().is_empty()) {
            if !row.trim_start().starts_with('|') {
                break;
            }
            let first = row
                .trim()
                .trim_start_matches('|')
                .split('|')
                .next()
                .unwrap_or("");
            if let Some(key) = first.split('`').nth(1) {
                keys.insert(key.to_string());
            }
        }
        assert!(
            tables.insert(name.trim().to_string(), keys).is_none(),
            "two tables marked {name}"
        );
    }
    tables
}

#[test]
fn every_settings_key_is_in_the_configuration_page() {
    let path = manifest_dir().join("docs/configuration.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let documented = documented_keys(&page);
    let mut problems = Vec::new();
    for (table, keys) in settings_tables() {
        let Some(listed) = documented.get(table) else {
            problems.push(format!("no `<!-- keys: {table} -->` table"));
            continue;
        };
        for key in &keys {
            if !listed.contains(*key) {
                problems.push(format!("{table}: `{key}` is read but not listed"));
            }
        }
        for key in listed {
            if !keys.contains(&key.as_str()) {
                problems.push(format!("{table}: `{key}` is listed but not read"));
            }
        }
    }
    for table in documented.keys() {
        if !settings_tables().iter().any(|(t, _)| t == table) {
            problems.push(format!("`<!-- keys: {table} -->` is no settings table"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}:\n{}",
        path.display(),
        problems.join("\n")
    );
}

#[test]
fn every_toml_block_is_a_configuration_flowlog_validate_accepts() {
    let dir = tempdir();
    let mut checked = 0;
    let mut problems = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (line, block) in blocks(&text, "toml") {
            let config = dir.join(format!("block-{checked}.toml"));
            std::fs::write(&config, &block).unwrap();
            checked += 1;
            let mut command = Command::new(env!("CARGO_BIN_EXE_flowlog"));
            command
                .args(["validate", "--no-environment", "--config"])
                .arg(&config);
            // What the deployment would set: an address where one is named, else a token.
            for var in common::env_references(&block) {
                if block.contains(&format!("${{{var}:-")) {
                    continue; // its default is what the page means
                }
                let value = if var.contains("URL") || var.contains("ENDPOINT") {
                    "https://example.com:8088"
                } else {
                    "placeholder"
                };
                command.env(var, value);
            }
            let out = command.output().unwrap();
            if !out.status.success() {
                problems.push(format!(
                    "{}:{line}: {}{}",
                    relative(&page),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(checked >= 5, "only {checked} TOML blocks found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_sample_session_prints_what_it_shows() {
    let stage = Stage::new().working_in(&manifest_dir());
    let mut checked = 0;
    let mut problems = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let marked: Vec<(String, Option<usize>)> = samples::markers(&text);
        for (name, console) in &marked {
            let claimed = samples::RUN_BY_TESTS.iter().any(|(n, _)| n == name);
            // The test named must ask for the sample by name.
            for (_, test) in samples::RUN_BY_TESTS.iter().filter(|(n, _)| n == name) {
                let source = std::fs::read_to_string(manifest_dir().join(test)).unwrap();
                if !source.contains(&format!("\"{name}\"")) {
                    problems.push(format!(
                        "{}: <!-- sample: {name} --> is said to be run by {test}, which does \
                         not name it",
                        relative(&page)
                    ));
                }
            }
            if !claimed || console.is_none() {
                problems.push(format!(
                    "{}: <!-- sample: {name} --> {}",
                    relative(&page),
                    if claimed {
                        "announces no console block"
                    } else {
                        "is run by no test (samples::RUN_BY_TESTS)"
                    }
                ));
            }
        }
        for block in samples::all_blocks(&text) {
            let at = format!("{}:{}", relative(&page), block.line);
            // Output nothing runs would go stale unnoticed: sessions are console blocks.
            if block.lang != "console" {
                if block.body.starts_with("$ ") {
                    problems.push(format!("{at}: a session in a ```{} block", block.lang));
                }
                continue;
            }
            if marked.iter().any(|(_, c)| *c == Some(block.line)) {
                continue; // run by its own test, with what it needs
            }
            let sessions = match samples::sessions(&block.body) {
                Ok(sessions) => sessions,
                Err(e) => {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
            };
            let sample = Sample {
                name: "console".into(),
                at,
                files: Vec::new(),
                sessions,
            };
            for session in &sample.sessions {
                checked += 1;
                problems.extend(stage.run(&sample, session).err());
            }
        }
    }
    assert!(checked >= 3, "only {checked} sample sessions found");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn the_sample_matcher_knows_its_wildcards() {
    assert!(matches(&["a", "...", "d"], &["a", "b", "c", "d"]));
    assert!(matches(&["a", "..."], &["a"]));
    assert!(!matches(&["a", "d"], &["a", "b", "d"]));
    assert!(line_matches("took [..] s", "took 0.25 s"));
    assert!(line_matches("[..] records", "12 records"));
    assert!(!line_matches("took [..] s", "took 0.25 ms!"));
    assert!(line_matches("exact", "exact"));
    assert!(!line_matches("exact", "exactly"));
    // A block must show something to check.
    assert!(samples::sessions("").is_err());
    assert!(samples::sessions("$ true\n...\n").is_err());
    assert!(samples::sessions("$ true\n").is_ok());
}

#[test]
fn a_sample_that_fails_or_hides_behind_a_comment_is_caught() {
    let stage = Stage::new().working_in(&manifest_dir());
    let sample = |command: &str, expected: &[&str]| Sample {
        name: "console".into(),
        at: "here".into(),
        files: Vec::new(),
        sessions: vec![samples::Session {
            command: command.into(),
            expected: expected.iter().map(|l| l.to_string()).collect(),
        }],
    };
    let failing = sample("echo shown; false", &["shown"]);
    assert!(stage.run(&failing, &failing.sessions[0]).is_err());
    // The comment does not swallow the wrapping: standard error is still shown.
    let commented = sample("echo to-stderr >&2 # a note", &["to-stderr"]);
    stage.run(&commented, &commented.sessions[0]).unwrap();
}
