//! The documentation is tested like the code it describes: every settings key is listed in
//! docs/configuration.md (and nothing there is a key no longer read), every TOML block in the
//! README and docs/ is a configuration `flowlog validate` accepts, and every sample session
//! (a ```console block) prints what it shows.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

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
            "sink.file",
            with_type(keys::<flowlog_sink_file::FileConfig>()),
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

/// README.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let root = manifest_dir();
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The fenced blocks of `lang` in `text`: (line of the opening fence, content).
fn blocks(text: &str, lang: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            None if fence.strip_prefix("```").is_some_and(|l| l.trim() == lang) => {
                open = Some((i + 1, String::new()));
            }
            Some(_) if fence.starts_with("```") => found.push(open.take().expect("open")),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    found
}

fn relative(path: &Path) -> String {
    path.strip_prefix(manifest_dir())
        .unwrap_or(path)
        .display()
        .to_string()
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

/// Whether `actual` matches `expected`, where an `...` line stands for any number of lines
/// and `[..]` within a line for any text.
fn matches(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"...", rest)) => (0..=actual.len()).any(|skip| matches(rest, &actual[skip..])),
        Some((line, rest)) => actual
            .split_first()
            .is_some_and(|(first, others)| line_matches(line, first) && matches(rest, others)),
    }
}

fn line_matches(expected: &str, actual: &str) -> bool {
    let mut parts = expected.split("[..]");
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

#[test]
fn every_sample_session_prints_what_it_shows() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_flowlog"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut checked = 0;
    let mut problems = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (line, block) in blocks(&text, "console") {
            // Each `$ ` line is a command; the lines after it, up to the next, its output.
            let mut sessions: Vec<(String, Vec<&str>)> = Vec::new();
            for l in block.lines() {
                match l.strip_prefix("$ ") {
                    Some(command) => sessions.push((command.to_string(), Vec::new())),
                    None => match sessions.last_mut() {
                        Some((_, expected)) => expected.push(l),
                        None => problems.push(format!(
                            "{}:{line}: a console block starts with output",
                            relative(&page)
                        )),
                    },
                }
            }
            for (command, expected) in sessions {
                checked += 1;
                let out = Command::new("sh")
                    .arg("-c")
                    .arg(format!("{command} 2>&1"))
                    .current_dir(manifest_dir())
                    .env("PATH", &path)
                    .env_remove("RUST_LOG")
                    .output()
                    .unwrap();
                let printed = String::from_utf8_lossy(&out.stdout);
                let actual: Vec<&str> = printed.lines().collect();
                let mut expected = expected;
                while expected.last().is_some_and(|l| l.trim().is_empty()) {
                    expected.pop();
                }
                if !matches(&expected, &actual) {
                    problems.push(format!(
                        "{}:{line}: `{command}` printed:\n{printed}\nwhere the page shows:\n{}",
                        relative(&page),
                        expected.join("\n")
                    ));
                }
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
}
