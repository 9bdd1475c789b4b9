//! Sample sessions on the documentation pages, run as written.
//!
//! A ```console block holds `$ ` commands, each followed by what it prints; `...` stands
//! for any number of lines and `[..]` within a line for any text. `tests/docs.rs` runs the
//! blocks that need nothing but the checkout. A block that needs a receiver, a queue or a
//! running flowlog follows a `<!-- sample: NAME -->` comment, and the configuration files
//! it uses are the ```toml blocks between the two whose first line names their place
//! (`# /tmp/chk/flowlog.toml`). A test of its own sets up what it needs (a [`Stage`]) and
//! runs it; [`RUN_BY_TESTS`] lists which test runs which sample, so that none is left out.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::manifest_dir;

/// Every `<!-- sample: NAME -->` on the pages, and the test that runs it.
pub const RUN_BY_TESTS: &[(&str, &str)] = &[
    ("check-hec", "tests/samples.rs"),
    ("check-elasticsearch", "tests/samples.rs"),
    ("check-opensearch-sigv4", "tests/samples.rs"),
    ("check-otlp", "tests/samples.rs"),
    ("check-sqs", "tests/iam.rs"),
    ("finished", "tests/samples.rs"),
    ("metrics", "tests/samples.rs"),
    ("health", "tests/samples.rs"),
    ("backfill", "tests/backfill.rs"),
];

/// Where sample configurations keep their files; a [`Stage`] maps it to a fresh directory.
pub const PLACE: &str = "/tmp/chk";

/// README.md and every page under docs/.
pub fn pages() -> Vec<PathBuf> {
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

pub fn relative(path: &Path) -> String {
    path.strip_prefix(manifest_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A fenced block: the line of its opening fence (1-based), its language and content.
pub struct Block {
    pub line: usize,
    pub lang: String,
    pub body: String,
}

/// Every fenced block of `text`, in order; a block indented under a list item loses the
/// indentation of its fence.
pub fn all_blocks(text: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut open: Option<(Block, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            None => {
                if let Some(lang) = fence.strip_prefix("```") {
                    let block = Block {
                        line: i + 1,
                        lang: lang.trim().to_string(),
                        body: String::new(),
                    };
                    open = Some((block, line.len() - fence.len()));
                }
            }
            Some(_) if fence.starts_with("```") => found.push(open.take().expect("open").0),
            Some((block, indent)) => {
                let unindented = line.len() - line.trim_start_matches(' ').len();
                block.body.push_str(&line[unindented.min(*indent)..]);
                block.body.push('\n');
            }
        }
    }
    found
}

/// The fenced blocks of `lang` in `text`: (line of the opening fence, content).
pub fn blocks(text: &str, lang: &str) -> Vec<(usize, String)> {
    all_blocks(text)
        .into_iter()
        .filter(|b| b.lang == lang)
        .map(|b| (b.line, b.body))
        .collect()
}

/// The name of the `<!-- sample: NAME -->` comment on `line`, if it is one.
pub fn marker(line: &str) -> Option<&str> {
    line.trim()
        .strip_prefix("<!-- sample:")?
        .strip_suffix("-->")
        .map(str::trim)
}

/// Each `<!-- sample: NAME -->` of `text`: its name and the line of the console block it
/// announces (the first after it).
pub fn markers(text: &str) -> Vec<(String, Option<usize>)> {
    let console: Vec<usize> = all_blocks(text)
        .iter()
        .filter(|b| b.lang == "console")
        .map(|b| b.line)
        .collect();
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| marker(l).map(|name| (i + 1, name.to_string())))
        .map(|(at, name)| (name, console.iter().copied().find(|&c| c > at)))
        .collect()
}

/// One `$ ` command of a console block and what the page shows it printing.
pub struct Session {
    pub command: String,
    pub expected: Vec<String>,
}

/// The sessions of a console block, or why the block is not one.
pub fn sessions(block: &str) -> Result<Vec<Session>, String> {
    let mut sessions: Vec<Session> = Vec::new();
    for l in block.lines() {
        match l.strip_prefix("$ ") {
            Some(command) => sessions.push(Session {
                command: command.to_string(),
                expected: Vec::new(),
            }),
            None => match sessions.last_mut() {
                Some(session) => session.expected.push(l.to_string()),
                None => return Err("a console block starts with output".into()),
            },
        }
    }
    for session in &mut sessions {
        while session.expected.last().is_some_and(|l| l.trim().is_empty()) {
            session.expected.pop();
        }
        // Output that any output matches shows nothing and checks nothing.
        if !session.expected.is_empty() && session.expected.iter().all(|l| l == "...") {
            return Err(format!("`{}` shows only `...`", session.command));
        }
    }
    if sessions.is_empty() {
        return Err("an empty console block".into());
    }
    Ok(sessions)
}

/// Whether `actual` matches `expected`, where an `...` line stands for any number of lines
/// and `[..]` within a line for any text.
pub fn matches<E: AsRef<str>, A: AsRef<str>>(expected: &[E], actual: &[A]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((line, rest)) if line.as_ref() == "..." => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((line, rest)) => actual.split_first().is_some_and(|(first, others)| {
            line_matches(line.as_ref(), first.as_ref()) && matches(rest, others)
        }),
    }
}

pub fn line_matches(expected: &str, actual: &str) -> bool {
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

/// A sample as its page shows it.
pub struct Sample {
    pub name: String,
    /// `page:line` of its console block, for messages.
    pub at: String,
    /// The configuration files it uses: their place under [`PLACE`] and their text.
    pub files: Vec<(String, String)>,
    pub sessions: Vec<Session>,
}

/// The sample `name` on `page` (relative to the checkout).
pub fn sample(page: &str, name: &str) -> Sample {
    assert!(
        RUN_BY_TESTS.iter().any(|(n, _)| *n == name),
        "{name} is not in RUN_BY_TESTS"
    );
    let text = std::fs::read_to_string(manifest_dir().join(page)).unwrap();
    let start = text
        .lines()
        .position(|l| marker(l) == Some(name))
        .unwrap_or_else(|| panic!("{page} has no <!-- sample: {name} -->"));
    let mut files = Vec::new();
    for block in all_blocks(&text).into_iter().filter(|b| b.line > start) {
        match block.lang.as_str() {
            "toml" => {
                let (first, rest) = block.body.split_once('\n').unwrap_or((&block.body, ""));
                let place = first
                    .strip_prefix("# ")
                    .and_then(|p| p.strip_prefix(PLACE))
                    .and_then(|p| p.strip_prefix('/'))
                    .unwrap_or_else(|| {
                        panic!(
                            "{page}:{}: a sample's configuration starts with `# {PLACE}/FILE`",
                            block.line
                        )
                    });
                files.push((place.to_string(), rest.to_string()));
            }
            "console" => {
                let sessions =
                    sessions(&block.body).unwrap_or_else(|e| panic!("{page}:{}: {e}", block.line));
                return Sample {
                    name: name.to_string(),
                    at: format!("{page}:{}", block.line),
                    files,
                    sessions,
                };
            }
            _ => {}
        }
    }
    panic!("{page}: no console block after <!-- sample: {name} -->")
}

/// Where a sample runs: a fresh directory standing for [`PLACE`], what the page's values
/// stand for here (a receiver's address, a key), and the environment of its commands.
pub struct Stage {
    pub dir: PathBuf,
    /// Where commands run: `dir`, unless [`Stage::working_in`] says otherwise.
    workdir: PathBuf,
    replacements: Vec<(String, String)>,
    env: Vec<(String, Option<String>)>,
}

impl Default for Stage {
    fn default() -> Self {
        Self::new()
    }
}

impl Stage {
    pub fn new() -> Self {
        let dir = super::tempdir();
        Self {
            replacements: vec![(PLACE.to_string(), dir.display().to_string())],
            workdir: dir.clone(),
            dir,
            env: Vec::new(),
        }
    }

    /// `actual` wherever the page shows `shown`, in files and commands; and `shown` back
    /// where the output prints `actual`.
    pub fn replace(mut self, shown: &str, actual: &str) -> Self {
        self.replacements
            .push((shown.to_string(), actual.to_string()));
        self
    }

    /// Commands run in `dir` (the checkout, for the pages' own sessions).
    pub fn working_in(mut self, dir: &Path) -> Self {
        self.workdir = dir.to_path_buf();
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), Some(value.to_string())));
        self
    }

    pub fn env_remove(mut self, name: &str) -> Self {
        self.env.push((name.to_string(), None));
        self
    }

    /// `PLACE/rel` here.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// `text` as it is here.
    pub fn actual(&self, text: &str) -> String {
        self.replacements
            .iter()
            .fold(text.to_string(), |t, (shown, actual)| {
                t.replace(shown, actual)
            })
    }

    /// `text` as the page shows it.
    pub fn shown(&self, text: &str) -> String {
        // The longest first: a directory before a path that merely starts like it.
        let mut by_length: Vec<&(String, String)> = self.replacements.iter().collect();
        by_length.sort_by_key(|(_, actual)| std::cmp::Reverse(actual.len()));
        by_length
            .iter()
            .fold(text.to_string(), |t, (shown, actual)| {
                t.replace(actual, shown)
            })
    }

    /// Writes the sample's configuration files.
    pub fn write(&self, sample: &Sample) {
        for (place, text) in &sample.files {
            let path = self.path(place);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, self.actual(text)).unwrap();
        }
    }

    /// `command` as `sh -c` runs it here (flowlog on the `PATH`), its standard error
    /// shown with its output as a terminal would.
    pub fn command(&self, command: &str) -> Command {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_flowlog")).parent().unwrap();
        let mut sh = Command::new("sh");
        // On a line of its own, the closing parenthesis is not part of a trailing comment.
        sh.arg("-c")
            .arg(format!("( {}\n) 2>&1", self.actual(command)))
            .current_dir(&self.workdir)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env_remove("RUST_LOG");
        for (name, value) in &self.env {
            match value {
                Some(v) => sh.env(name, v),
                None => sh.env_remove(name),
            };
        }
        sh
    }

    /// Runs one session: what it printed (as the page would show it) where that differs
    /// from the page, or its exit status where it failed. A page shows a command that
    /// fails on purpose through a pipe (`| tail -1`), whose status is the last command's.
    pub fn run(&self, sample: &Sample, session: &Session) -> Result<(), String> {
        let out = self.command(&session.command).output().unwrap();
        let printed = self.shown(&String::from_utf8_lossy(&out.stdout));
        let actual: Vec<&str> = printed.lines().collect();
        if !out.status.success() {
            Err(format!(
                "{} ({}): `{}` ended with {} after printing:\n{printed}",
                sample.at, sample.name, session.command, out.status
            ))
        } else if matches(&session.expected, &actual) {
            Ok(())
        } else {
            Err(format!(
                "{} ({}): `{}` printed:\n{printed}\nwhere the page shows:\n{}",
                sample.at,
                sample.name,
                session.command,
                session.expected.join("\n")
            ))
        }
    }

    /// Writes the files and runs every session in order, failing with each difference.
    pub fn check(&self, sample: &Sample) {
        self.write(sample);
        let problems: Vec<String> = sample
            .sessions
            .iter()
            .filter_map(|s| self.run(sample, s).err())
            .collect();
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    }
}
