//! `flowlog query`: SQL over flow logs where they lie, with flowlog-query's `flows` table.
//!
//! This module finds the objects (files, globs, directory trees and S3 prefixes planned
//! by the `s3` source's planner), sets up enrichment, and runs statements from the
//! command line, a prompt or standard input.

use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use flowlog_component::metrics::human_bytes;
use flowlog_decode::{decode_file, DecodeOptions, DecodeStats, RecordSink};
use flowlog_model::{FlowFormat, SourceId};
use flowlog_query::output::{self, Format};
use flowlog_query::session::{spilled_bytes, QuerySession, SessionOptions};
use flowlog_query::table::{BatchMap, FlowTable, Object, Objects, Report, Wanted};

use crate::cli::QueryArgs;
use crate::replaced::Replaced;

fn unusable(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("flowlog: {message}");
    ExitCode::from(2)
}

pub fn run(args: QueryArgs) -> ExitCode {
    let (sql, words) = args.sql_and_inputs();
    if words.is_empty() {
        return unusable("no input: name files, directories, globs or s3:// prefixes");
    }
    let mut inputs = match Inputs::new(words, &args) {
        Ok(inputs) => inputs,
        Err(e) => return unusable(e),
    };
    let parse_moment = |name: &str, text: &Option<String>| -> Result<Option<i64>, String> {
        text.as_deref()
            .map(|t| {
                flowlog_model::time::parse_instant(t).ok_or_else(|| {
                    format!("--{name} {t:?} is not a moment: RFC 3339 or a date (2026-08-01)")
                })
            })
            .transpose()
    };
    let wanted = match (
        parse_moment("since", &args.since),
        parse_moment("until", &args.until),
    ) {
        (Ok(since), Ok(until)) => Wanted {
            since,
            until,
            regions: args.regions.clone(),
        },
        (Err(e), _) | (_, Err(e)) => return unusable(e),
    };
    if let (Some(since), Some(until)) = (wanted.since, wanted.until) {
        if since >= until {
            return unusable("--since must be before --until");
        }
    }
    inputs.range = (wanted.since, wanted.until);
    let format = match args.input_format.as_deref().map(FlowFormat::parse) {
        None => None,
        Some(Ok(format)) => Some(format),
        Some(Err(e)) => return unusable(format!("--input-format: {e}")),
    };
    let output_format = match output_format(&args) {
        Ok(format) => format,
        Err(e) => return unusable(e),
    };
    let map = match enrichment(&args) {
        Ok(map) => map,
        Err(e) => return unusable(e),
    };
    let report = match &args.dead_letter {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Report::keeping_dead_letters(Box::new(BufWriter::new(file))),
            Err(e) => return unusable(format!("{}: {e}", path.display())),
        },
        None => Report::default(),
    };
    let report = Arc::new(report);
    let options = DecodeOptions {
        format,
        ..DecodeOptions::default()
    };
    let table = FlowTable::new(Arc::new(inputs), wanted, options, map, Arc::clone(&report));
    let session_options = SessionOptions {
        memory_limit: args
            .memory_limit
            .map_or_else(default_memory_limit, |m| m as usize),
        temp_directory: args.temp_directory.clone(),
        partitions: args
            .parallel
            .unwrap_or_else(|| SessionOptions::default().partitions)
            .max(1),
        ..SessionOptions::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(session_options.partitions)
        .thread_name("flowlog-query")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return unusable(format!("cannot start a runtime: {e}")),
    };
    let session = match QuerySession::new(table, &session_options) {
        Ok(session) => session,
        Err(e) => return unusable(e),
    };
    // The answer goes to a file beside --output, renamed over it once every statement
    // is answered: a failed query leaves what was there before, not half an answer.
    let mut replaced = None;
    let mut out: Box<dyn Write + Send> = match &args.output {
        Some(path) => match Replaced::create(path) {
            Ok((file, partial)) => {
                replaced = Some(partial);
                Box::new(BufWriter::new(file))
            }
            Err(e) => return unusable(e),
        },
        None => {
            if output_format == Format::Parquet && io::stdout().is_terminal() {
                return unusable("Parquet is not for a terminal: give --output FILE");
            }
            Box::new(BufWriter::new(io::stdout()))
        }
    };
    let runner = Runner {
        session,
        runtime,
        report: Arc::clone(&report),
        format: output_format,
        max_rows: args.max_rows,
        stats: args.stats,
        quiet: args.quiet,
    };
    let ok = match sql {
        Some(sql) => runner.answer(sql, &mut out),
        None if io::stdin().is_terminal() => runner.prompt(&mut out),
        None => {
            let mut text = String::new();
            if let Err(e) = io::stdin().lock().read_to_string(&mut text) {
                return unusable(format!("standard input: {e}"));
            }
            // Every statement is run; the status says whether any failed.
            let answered: Vec<bool> = statements(&text)
                .iter()
                .map(|sql| runner.answer(sql, &mut out))
                .collect();
            answered.into_iter().all(|ok| ok)
        }
    };
    let flushed = out.flush();
    drop(out);
    // Dropped unkept (a failed query), the partial file goes.
    let kept = match replaced {
        Some(replaced) if ok && flushed.is_ok() => replaced.keep(),
        _ => Ok(()),
    };
    if let Err(e) = flushed {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("flowlog: cannot write the answer: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = kept {
        eprintln!("flowlog: cannot keep the answer: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = report.finish() {
        eprintln!("flowlog: {e}");
        return ExitCode::FAILURE;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The format asked for, or the one `--output`'s extension names, or a table.
fn output_format(args: &QueryArgs) -> Result<Format, String> {
    if let Some(format) = &args.format {
        return format.parse();
    }
    let extension = args
        .output
        .as_deref()
        .and_then(Path::extension)
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    Ok(match extension {
        "csv" => Format::Csv,
        "ndjson" | "jsonl" | "json" => Format::Ndjson,
        "parquet" => Format::Parquet,
        _ => Format::Table,
    })
}

/// Half of this machine's memory, at most 4 GiB (1 GiB when it cannot be read).
fn default_memory_limit() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(2 << 30);
    (total / 2).min(4 << 30) as usize
}

/// Enrichment as the transform's flags ask for it, shared by the scan's threads.
fn enrichment(args: &QueryArgs) -> Result<Option<BatchMap>, String> {
    let enricher =
        crate::transform::enricher(&args.enrich, args.quiet).map_err(|e| e.to_string())?;
    Ok(enricher.map(|enricher| {
        let enricher = Mutex::new(enricher);
        Arc::new(move |batch| enricher.lock().expect("not poisoned").enrich(batch)) as BatchMap
    }))
}

/// Statements of a script, split at `;` outside quotes and comments (`--` to the end of
/// the line, `/* ... */`); empty ones dropped.
fn statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ';' => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            '\'' | '"' => {
                current.push(c);
                for q in chars.by_ref() {
                    current.push(q);
                    if q == c {
                        break;
                    }
                }
                continue;
            }
            '-' if chars.peek() == Some(&'-') => {
                for q in chars.by_ref() {
                    if q == '\n' {
                        current.push('\n');
                        break;
                    }
                }
                continue;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for q in chars.by_ref() {
                    if last == '*' && q == '/' {
                        break;
                    }
                    last = q;
                }
                current.push(' ');
                continue;
            }
            _ => current.push(c),
        }
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Runs statements and reports on them.
struct Runner {
    session: QuerySession,
    runtime: tokio::runtime::Runtime,
    report: Arc<Report>,
    format: Format,
    max_rows: usize,
    stats: bool,
    quiet: bool,
}

impl Runner {
    /// Runs `sql` and writes its answer; false (said on standard error) if it failed.
    fn answer(&self, sql: &str, out: &mut (dyn Write + Send)) -> bool {
        let started = Instant::now();
        let before = self.counts();
        let result = self.runtime.block_on(async {
            let running = self.session.run(sql).await?;
            let written = output::write(running.stream, self.format, self.max_rows, out).await?;
            Ok::<_, flowlog_query::QueryError>((written, spilled_bytes(&running.plan)))
        });
        let (written, spilled) = match result {
            Ok(done) => done,
            Err(flowlog_query::QueryError::Output(e)) if e.contains("Broken pipe") => {
                return true;
            }
            Err(e) => {
                eprintln!("flowlog: {e}");
                return false;
            }
        };
        if let Err(e) = out.flush() {
            if e.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("flowlog: cannot write the answer: {e}");
                return false;
            }
        }
        let after = self.counts();
        if self.format == Format::Table && written.rows > written.shown {
            eprintln!(
                "flowlog: {} rows, the first {} shown (LIMIT, --max-rows, or --format csv)",
                written.rows, written.shown
            );
        }
        let rejected = after.3 - before.3;
        if rejected > 0 && !self.quiet {
            let (_, first) = self.report.dead_letters();
            let example = first
                .first()
                .map(|d| format!("; the first: {}:{}: {}", d.source, d.line, d.reason))
                .unwrap_or_default();
            eprintln!(
                "flowlog: warning: {rejected} lines were not flow-log records and are not in \
                 `flows`{example} (--dead-letter FILE keeps them)"
            );
        }
        if self.stats {
            eprintln!(
                "flowlog: {} rows from {} objects ({}), {} records, in {:.2} s; {} spilled",
                written.rows,
                after.0 - before.0,
                human_bytes(after.1 - before.1),
                after.2 - before.2,
                started.elapsed().as_secs_f64(),
                human_bytes(spilled as u64),
            );
        }
        true
    }

    /// Objects, bytes, records and dead letters read so far.
    fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.report.objects.load(Ordering::Relaxed),
            self.report.bytes.load(Ordering::Relaxed),
            self.report.records.load(Ordering::Relaxed),
            self.report.dead_letters().0,
        )
    }

    /// Statements from a prompt, with history, until `\q` or end of input.
    fn prompt(&self, out: &mut (dyn Write + Send)) -> bool {
        let mut editor = match rustyline::DefaultEditor::new() {
            Ok(editor) => editor,
            Err(e) => {
                eprintln!("flowlog: cannot open the prompt: {e}");
                return false;
            }
        };
        let history = history_file();
        if let Some(path) = &history {
            let _ = editor.load_history(path);
        }
        eprintln!(
            "flowlog query: SQL over `flows`, ended by `;`. \\d flows: its columns; \\q: quit."
        );
        let mut pending = String::new();
        loop {
            let prompt = if pending.is_empty() {
                "flows> "
            } else {
                "   ..> "
            };
            let line = match editor.readline(prompt) {
                Ok(line) => line,
                Err(rustyline::error::ReadlineError::Interrupted) => {
                    pending.clear();
                    continue;
                }
                Err(_) => break,
            };
            let trimmed = line.trim();
            // A command stands on a line of its own, inside a statement being typed too
            // (as in psql).
            if trimmed.starts_with('\\') {
                let _ = editor.add_history_entry(trimmed);
                match trimmed {
                    "\\q" | "\\quit" => break,
                    "\\d" | "\\d flows" => {
                        self.answer(
                            "SELECT column_name, data_type FROM information_schema.columns \
                             WHERE table_name = 'flows' ORDER BY ordinal_position",
                            out,
                        );
                    }
                    _ => eprintln!("\\d flows: the columns; \\q: quit"),
                }
                continue;
            }
            pending.push_str(&line);
            pending.push('\n');
            if !trimmed.ends_with(';') {
                continue;
            }
            let text = std::mem::take(&mut pending);
            let _ = editor.add_history_entry(text.trim());
            for sql in statements(&text) {
                self.answer(&sql, out);
            }
        }
        if let Some(path) = &history {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = editor.save_history(path);
        }
        true
    }
}

/// Where `path` is or would be, with links resolved (its folder must exist).
fn canonical_target(path: &Path) -> Option<PathBuf> {
    if let Ok(path) = path.canonicalize() {
        return Some(path);
    }
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(parent.canonicalize().ok()?.join(name))
}

/// `$XDG_STATE_HOME/flowlog/query_history`, or under `~/.local/state`.
fn history_file() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))?;
    Some(state.join("flowlog/query_history"))
}

/// The inputs of a query: files, and trees planned by their key layout.
#[derive(Debug)]
struct Inputs {
    files: Vec<PathBuf>,
    trees: Vec<Tree>,
    accounts: Vec<String>,
    regions: Vec<String>,
    /// --since and --until.
    range: (Option<i64>, Option<i64>),
    margin_secs: u64,
    quiet: bool,
}

struct Tree {
    url: String,
    #[cfg(feature = "source-s3")]
    planner: flowlog_source_s3::backfill::Backfill,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Inputs {
    fn new(words: &[String], args: &QueryArgs) -> Result<Self, String> {
        let mut inputs = Inputs {
            files: Vec::new(),
            trees: Vec::new(),
            accounts: args.accounts.clone(),
            regions: args.regions.clone(),
            range: (None, None),
            margin_secs: args.margin,
            quiet: args.quiet,
        };
        let choosing = !args.accounts.is_empty() || !args.regions.is_empty();
        for input in words {
            if input.contains("://") || Path::new(input).is_dir() {
                inputs.trees.push(Tree::new(input, args)?);
            } else if input.contains(['*', '?', '[']) && !Path::new(input).exists() {
                let paths = glob::glob(input).map_err(|e| format!("{input}: {e}"))?;
                let mut matched = 0;
                for path in paths {
                    let path = path.map_err(|e| e.to_string())?;
                    matched += 1;
                    if path.is_dir() {
                        inputs.trees.push(Tree::new(&path.to_string_lossy(), args)?);
                    } else {
                        inputs.files.push(path);
                    }
                }
                if matched == 0 {
                    return Err(format!("{input}: matches nothing"));
                }
            } else {
                std::fs::metadata(input).map_err(|e| format!("{input}: {e}"))?;
                inputs.files.push(PathBuf::from(input));
            }
        }
        if let (true, Some(file)) = (choosing, inputs.files.first()) {
            return Err(format!(
                "{}: --account and --region choose folders of AWS's key layout, and a file \
                 has none: use WHERE account_id = '...' or region = '...' instead",
                file.display()
            ));
        }
        for (flag, output) in [
            ("--output", &args.output),
            ("--dead-letter", &args.dead_letter),
        ] {
            if let Some(output) = output {
                inputs.refuse_overwriting(flag, output)?;
            }
        }
        Ok(inputs)
    }

    /// An error if writing `output` would overwrite an input, or write into a tree read.
    fn refuse_overwriting(&self, flag: &str, output: &Path) -> Result<(), String> {
        let Some(written) = canonical_target(output) else {
            return Ok(());
        };
        let inputs = self
            .files
            .iter()
            .cloned()
            .chain(self.trees.iter().map(|t| PathBuf::from(&t.url)));
        for input in inputs {
            let Ok(read) = input.canonicalize() else {
                continue;
            };
            if written == read || (read.is_dir() && written.starts_with(&read)) {
                return Err(format!(
                    "{flag} {} would overwrite what is read ({})",
                    output.display(),
                    input.display()
                ));
            }
        }
        Ok(())
    }
}

impl Tree {
    #[cfg(feature = "source-s3")]
    fn new(url: &str, args: &QueryArgs) -> Result<Self, String> {
        let settings = flowlog_source_s3::S3Source {
            url: url.to_string(),
            since: "1970-01-01".into(),
            until: "2200-01-01".into(),
            accounts: args.accounts.clone(),
            regions: args.regions.clone(),
            flow_logs: Vec::new(),
            margin_secs: args.margin,
            region: args.enrich.aws_region.clone(),
            profile: args.profile.clone(),
            endpoint_url: args.endpoint_url.clone(),
            s3_force_path_style: args.s3_force_path_style,
            workers: 1,
            format: args.input_format.clone(),
            read_timeout_secs: 60,
            plan_file: None,
            tally: None,
        };
        let planner = flowlog_source_s3::backfill::Backfill::new(&settings)
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(Tree {
            url: url.to_string(),
            planner,
        })
    }

    #[cfg(not(feature = "source-s3"))]
    fn new(url: &str, _args: &QueryArgs) -> Result<Self, String> {
        Err(format!(
            "{url}: this build reads files only (directories and S3 need the source-s3 feature)"
        ))
    }
}

impl Objects for Inputs {
    fn list(&self, wanted: &Wanted) -> Result<Vec<Object>, String> {
        let mut objects = Vec::new();
        for (i, path) in self.files.iter().enumerate() {
            let size = std::fs::metadata(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
            objects.push(Object {
                name: path.to_string_lossy().into_owned(),
                size,
                input: i,
            });
        }
        #[cfg(feature = "source-s3")]
        for (t, tree) in self.trees.iter().enumerate() {
            let filter = self.filter(wanted);
            let plan = tree.planner.plan_for(&filter)?;
            // (Only the flags: a region from the query's WHERE is a hint, the rows are held
            // to it anyway, and the names of AWS's objects still say theirs.)
            if plan.style.is_none() && (!self.accounts.is_empty() || !self.regions.is_empty()) {
                return Err(format!(
                    "{}: --account and --region choose folders of AWS's key layout, and this \
                     tree has none: use WHERE account_id = '...' or region = '...' instead",
                    tree.url
                ));
            }
            for warning in &plan.warnings {
                // A directory of files in no layout is read whole, as asked.
                if !(plan.style.is_none() && warning.contains("no flow-log layout")) {
                    eprintln!("flowlog: warning: {warning}");
                }
            }
            if plan.objects.is_empty() {
                let hint = if tree.url.starts_with("s3://") && !tree.url.ends_with('/') {
                    " (an S3 URL names a prefix, read as a folder: the key itself is not read)"
                } else {
                    ""
                };
                eprintln!("flowlog: warning: {}: no objects listed{hint}", tree.url);
            } else if plan.style.is_some() && !self.quiet && self.narrowed_by_query(wanted) {
                eprintln!(
                    "flowlog: note: {}: only the folders of {} to {} were listed (the query's \
                     range of `start`, with --margin {}s): an object AWS delivered later than \
                     that is not read",
                    tree.url,
                    moment(filter.range.since),
                    moment(filter.range.until),
                    self.margin_secs
                );
            }
            for object in plan.objects {
                objects.push(Object {
                    name: object.key,
                    size: object.size,
                    input: self.files.len() + t,
                });
            }
        }
        #[cfg(not(feature = "source-s3"))]
        let _ = wanted;
        Ok(objects)
    }

    fn decode(
        &self,
        object: &Object,
        options: &DecodeOptions,
        sink: &mut dyn RecordSink,
    ) -> Result<DecodeStats, String> {
        if let Some(path) = self.files.get(object.input) {
            let source = SourceId::new(object.name.clone());
            return decode_file(path, source, options, sink).map_err(|e| e.to_string());
        }
        #[cfg(feature = "source-s3")]
        {
            let tree = &self.trees[object.input - self.files.len()];
            let info = flowlog_source_s3::ObjectInfo {
                key: object.name.clone(),
                size: object.size,
                etag: None,
            };
            tree.planner.decode(&info, options, sink)
        }
        #[cfg(not(feature = "source-s3"))]
        Err(format!("{}: no such input", object.name))
    }
}

#[cfg(feature = "source-s3")]
fn moment(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(feature = "source-s3")]
impl Inputs {
    /// Whether the query's WHERE narrowed the range beyond --since and --until.
    fn narrowed_by_query(&self, wanted: &Wanted) -> bool {
        (wanted.since, wanted.until) != self.range
    }

    /// The planner's filter for `wanted`: its range (open ends as far as flow logs go),
    /// with the margin, and the accounts asked for.
    fn filter(&self, wanted: &Wanted) -> flowlog_source_s3::Filter {
        use chrono::{DateTime, Utc};
        let at = |millis: Option<i64>, default: &str| -> DateTime<Utc> {
            millis
                .and_then(DateTime::from_timestamp_millis)
                .unwrap_or_else(|| default.parse().expect("a valid moment"))
        };
        flowlog_source_s3::Filter {
            range: flowlog_source_s3::TimeRange {
                since: at(wanted.since, "1970-01-01T00:00:00Z"),
                until: at(wanted.until, "2200-01-01T00:00:00Z"),
                margin: chrono::Duration::seconds(self.margin_secs as i64),
            },
            accounts: self.accounts.clone(),
            regions: wanted.regions.clone(),
            flow_logs: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn statements_split_at_semicolons_outside_quotes() {
        assert_eq!(
            statements("SELECT 'a;b' FROM flows; ;\nSELECT \"x;\" FROM flows"),
            ["SELECT 'a;b' FROM flows", "SELECT \"x;\" FROM flows"]
        );
        assert!(statements("  ;  ").is_empty());
        assert_eq!(
            statements("SELECT 1 -- a; b\n FROM flows; /* ; */ SELECT 'it''s' -- don't\n;"),
            ["SELECT 1 \n FROM flows", "SELECT 'it''s'"]
        );
    }
}
