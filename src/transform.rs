//! `flowlog transform`: inputs -> decode -> encode -> NDJSON (or OCSF Parquet) on standard
//! output or into a file.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowlog_component::metrics::human_bytes;
use flowlog_decode::{
    decode_file, decode_reader, DeadLetter, DecodeError, DecodeOptions, DecodeStats, RecordSink,
    SinkError, Streaming,
};
use flowlog_model::{FlowBatch, FlowFormat, SourceId};
use flowlog_normalize::parallel::ParallelWriter;
use flowlog_normalize::{EncodeOptions, Encoder, Target};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{EnrichArgs, OutputFormat, OutputShape, TransformArgs};
#[cfg(feature = "sink-security-lake")]
use crate::replaced::Replaced;
use flowlog_enrich::Enricher;

/// Inputs at least this large (in total) get a progress bar on a terminal.
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

pub fn run(args: TransformArgs) -> ExitCode {
    let target = match args.to {
        OutputShape::Raw => Target::Raw,
        OutputShape::Ecs => Target::Ecs,
        OutputShape::Ocsf => Target::Ocsf(args.ocsf_version),
        OutputShape::Cim => Target::Cim,
    };
    let reading = Reading {
        inputs: &args.inputs,
        format: args.format.as_deref(),
        dead_letter: args.dead_letter.as_deref(),
        quiet: args.quiet,
        flush_interval: args.flush_interval,
        enrich: &args.enrich,
        confirm: args.confirm,
    };
    let options = EncodeOptions {
        envelope_key: args.envelope_key.clone(),
    };
    let threads = match args.threads {
        // One more than the cores: a thread waiting for its turn to write leaves its core
        // to the others (two cores: 1.7 cores busy with two threads, 1.9 with three). At
        // most DEFAULT_THREADS: one reading thread keeps no more busy, and each holds an
        // encoder's buffer of a batch's documents.
        0 => match std::thread::available_parallelism().map_or(1, |n| n.get()) {
            1 => 1,
            cores => (cores + 1).min(DEFAULT_THREADS),
        },
        n => usize::from(n),
    };
    read_into(reading, || match args.output_format {
        OutputFormat::Ndjson if threads > 1 => {
            let writer = ParallelWriter::new(
                threads,
                || target.encoder_with(&options),
                sendable_writer(args.output.as_deref())?,
            )
            .map_err(|e| format!("cannot start encoding threads: {e}"))?;
            Ok(Output::Parallel(Some(writer)))
        }
        OutputFormat::Ndjson => Ok(Output::Ndjson {
            encoder: target.encoder_with(&options),
            writer: output_writer(args.output.as_deref())?,
        }),
        OutputFormat::Parquet => parquet_output(&args),
    })
}

/// The most encoding threads `--threads 0` starts.
const DEFAULT_THREADS: usize = 8;

/// What `transform` and `detect` share: the inputs and how they are read.
pub(crate) struct Reading<'a> {
    pub inputs: &'a [PathBuf],
    pub format: Option<&'a str>,
    pub dead_letter: Option<&'a Path>,
    pub quiet: bool,
    pub flush_interval: f64,
    pub enrich: &'a EnrichArgs,
    pub confirm: bool,
}

/// Standard output, or `path` opened for appending.
pub(crate) fn output_writer(path: Option<&Path>) -> Result<Box<dyn Write>, String> {
    Ok(match path {
        Some(_) => sendable_writer(path)?,
        None => Box::new(io::stdout().lock()),
    })
}

/// [`output_writer`] for writing from other threads: standard output unlocked (each
/// batch's documents are one write).
fn sendable_writer(path: Option<&Path>) -> Result<Box<dyn Write + Send>, String> {
    Ok(match path {
        Some(path) => match append(path) {
            Ok(file) => Box::new(BufWriter::with_capacity(1 << 20, file)),
            Err(err) => return Err(format!("cannot open output file {}: {err}", path.display())),
        },
        None => Box::new(io::stdout()),
    })
}

/// Reads every input of `reading`, decoded (and enriched), into the output `output`
/// makes once the arguments are known to be good; prints the summary; exit code 2 for
/// arguments that cannot work, 1 for an input that could not be read or a failed output.
pub(crate) fn read_into(
    reading: Reading<'_>,
    output: impl FnOnce() -> Result<Output, String>,
) -> ExitCode {
    let format = match reading.format.map(FlowFormat::parse).transpose() {
        Ok(Some(format)) => {
            for typo in format.likely_typos() {
                eprintln!("flowlog: warning: --format: {typo}");
            }
            Some(format)
        }
        Ok(f) => f,
        Err(err) => {
            eprintln!("flowlog: --format: {err}");
            return ExitCode::from(2);
        }
    };
    let dead_letters = match reading.dead_letter {
        Some(path) => match append(path) {
            Ok(file) => DeadLetterOut::File(BufWriter::new(file)),
            Err(err) => {
                eprintln!(
                    "flowlog: cannot open dead letter file {}: {err}",
                    path.display()
                );
                return ExitCode::from(2);
            }
        },
        // Even with --quiet: a record that cannot be decoded is data, not a warning.
        None => DeadLetterOut::Stderr,
    };
    let inputs = if reading.inputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        reading.inputs.to_vec()
    };
    if reading.confirm && inputs.iter().any(|i| i.as_os_str() != "-") {
        eprintln!("flowlog: --confirm confirms lines of standard input; give no FILE");
        return ExitCode::from(2);
    }
    let output = match output() {
        Ok(output) => output,
        Err(err) => {
            eprintln!("flowlog: {err}");
            return ExitCode::from(2);
        }
    };
    let confirm = reading.confirm.then(Confirm::default);

    let progress = progress_bar(&inputs, reading.quiet);
    let options = DecodeOptions {
        format,
        progress: progress
            .clone()
            .map(|bar| Arc::new(move |n| bar.inc(n)) as flowlog_decode::ProgressFn),
        ..DecodeOptions::default()
    };
    let enricher = match enricher(reading.enrich, reading.quiet) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("flowlog: {err}");
            return ExitCode::from(2);
        }
    };
    let mut sink = NdjsonSink {
        enricher,
        quiet: reading.quiet,
        output,
        dead_letters,
        confirm,
    };
    // Ready to take lines: the engine waits for this before it sends the first.
    if let Some(confirm) = &mut sink.confirm {
        if let Err(err) = confirm.ready() {
            eprintln!("flowlog: cannot confirm on standard output: {err}");
            return ExitCode::FAILURE;
        }
    }

    let flush_interval = Duration::from_secs_f64(reading.flush_interval);
    let started = Instant::now();
    let mut totals = DecodeStats::default();
    let mut unreadable = 0;
    for input in &inputs {
        match decode_input(input, &options, flush_interval, &mut sink) {
            Ok(stats) => totals += stats,
            Err(DecodeError::Sink(err)) if is_broken_pipe(&*err) => {
                // The reader went away (`| head`): stop quietly, as Unix tools do.
                return ExitCode::SUCCESS;
            }
            Err(DecodeError::Sink(err)) => {
                eprintln!("flowlog: output failed: {err}");
                return ExitCode::FAILURE;
            }
            Err(err) => {
                eprintln!("flowlog: {err}");
                unreadable += 1;
            }
        }
    }
    if let Err(err) = sink.finish().and_then(|()| sink.output.close()) {
        if !is_broken_pipe(&err) {
            eprintln!("flowlog: output failed: {err}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if !reading.quiet {
        eprintln!(
            "{}",
            summary(
                &totals,
                started.elapsed().as_secs_f64(),
                reading.dead_letter
            )
        );
        if let Some(line) = sink.output.summary() {
            eprintln!("{line}");
        }
        if let Some(enricher) = &sink.enricher {
            let s = enricher.stats();
            eprintln!(
                "flowlog: enrichment: {} addresses, {:.1}% repeats within a batch, {:.1}% of the rest from the cache",
                s.addresses,
                100.0 * s.batch_hit_rate(),
                100.0 * s.cache_hit_rate()
            );
        }
    }
    if unreadable > 0 {
        eprintln!(
            "flowlog: {unreadable} of {} inputs could not be read completely",
            inputs.len()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `path` opened for appending lines; a last line without its newline (cut short by a
/// crash) is ended first, and said so.
fn append(path: &Path) -> std::io::Result<File> {
    let appending = flowlog_component::append::open(path)?;
    if let Some(text) = &appending.terminated {
        eprintln!(
            "flowlog: warning: {}: its last line had no newline (cut short by a crash?): one \
             was added so that the next record starts a line of its own: {text:?}",
            path.display()
        );
    }
    Ok(appending.file)
}

/// The enricher the arguments ask for, if any (the same settings as a config file's
/// `[transform.enrich]`).
pub(crate) fn enricher(
    args: &EnrichArgs,
    quiet: bool,
) -> Result<Option<Enricher>, flowlog_enrich::EnrichError> {
    let settings = flowlog_pipeline::config::Enrich {
        geoip: args.geoip.clone(),
        asn: args.asn.clone(),
        eni_inventory: args.eni_inventory.clone(),
        eni_refresh_secs: args.eni_refresh,
        aws_region: args.aws_region.clone(),
        aws_endpoint: args.aws_endpoint.clone(),
        aws_ip_ranges: args.aws_ip_ranges.clone(),
        watchlist: args.watchlist.clone(),
        geoip_search: !args.no_geoip_search,
        ..flowlog_pipeline::config::Enrich::default()
    };
    settings.build(&mut |notice| {
        if !quiet {
            eprintln!("flowlog: {notice}");
        }
    })
}

fn decode_input(
    input: &Path,
    options: &DecodeOptions,
    flush_interval: Duration,
    sink: &mut NdjsonSink,
) -> Result<DecodeStats, DecodeError> {
    if input.as_os_str() == "-" {
        // A pipe or a terminal is written through as records arrive; a file in blocks.
        let options = DecodeOptions {
            streaming: Streaming::stdin(flush_interval),
            ..options.clone()
        };
        let stdin = io::stdin().lock();
        match &sink.confirm {
            Some(confirm) => {
                let counted = CountLines {
                    inner: stdin,
                    lines: Arc::clone(&confirm.lines),
                };
                decode_reader(counted, SourceId::new("-"), &options, sink)
            }
            None => decode_reader(stdin, SourceId::new("-"), &options, sink),
        }
    } else {
        let source = SourceId::new(input.to_string_lossy().into_owned());
        decode_file(input, source, options, sink)
    }
}

/// On a terminal: a bar for files large enough to be worth one; for standard input, whose
/// size nobody knows, a running count of bytes and their rate.
fn progress_bar(inputs: &[PathBuf], quiet: bool) -> Option<ProgressBar> {
    if quiet || !io::stderr().is_terminal() {
        return None;
    }
    if inputs.iter().any(|p| p.as_os_str() == "-") {
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {bytes} read, {bytes_per_sec} ({elapsed})")
                .expect("static template"),
        );
        // The rate falls while input pauses; redrawn without new bytes, it shows that.
        spinner.enable_steady_tick(Duration::from_millis(250));
        return Some(spinner);
    }
    let total: u64 = inputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    if total < PROGRESS_MIN_BYTES {
        return None;
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template"),
    );
    Some(bar)
}

fn summary(stats: &DecodeStats, secs: f64, dead_letter: Option<&Path>) -> String {
    let mut s = format!(
        "flowlog: {} records, {} dead letters, {} read in {:.2} s",
        stats.records,
        stats.dead_letters,
        human_bytes(stats.bytes_read),
        secs
    );
    if secs > 0.0 {
        s.push_str(&format!(" ({:.0} records/s)", stats.records as f64 / secs));
    }
    let mut skipped = Vec::new();
    if stats.header_lines > 0 {
        skipped.push(format!("{} header lines", stats.header_lines));
    }
    if stats.blank_lines > 0 {
        skipped.push(format!("{} blank lines", stats.blank_lines));
    }
    if stats.control_messages > 0 {
        skipped.push(format!("{} control messages", stats.control_messages));
    }
    if !skipped.is_empty() {
        s.push_str(&format!("; not records: {}", skipped.join(", ")));
    }
    if stats.dead_letters > 0 {
        match dead_letter {
            Some(path) => s.push_str(&format!("; dead letters in {}", path.display())),
            None => s.push_str("; keep dead letters with --dead-letter PATH"),
        }
    }
    s
}

fn is_broken_pipe(err: &(dyn std::error::Error + 'static)) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

enum DeadLetterOut {
    File(BufWriter<File>),
    Stderr,
}

/// Encodes batches to the output and routes dead letters.
struct NdjsonSink {
    enricher: Option<Enricher>,
    quiet: bool,
    output: Output,
    dead_letters: DeadLetterOut,
    confirm: Option<Confirm>,
}

/// Where documents go.
pub(crate) enum Output {
    Ndjson {
        encoder: Box<dyn Encoder + Send>,
        writer: Box<dyn Write>,
    },
    /// NDJSON encoded on several threads, written in order (`None` once closed).
    Parallel(Option<ParallelWriter>),
    /// OCSF events in one Parquet file, complete only once closed; a file is written
    /// beside its final name and renamed over it then.
    #[cfg(feature = "sink-security-lake")]
    Parquet {
        writer: Option<Box<flowlog_sink_security_lake::ParquetOutput<Box<dyn Write + Send>>>>,
        replaced: Option<Replaced>,
    },
    /// Records go through the detection rules; their findings are written.
    Findings(Box<crate::detect::Findings>),
}

impl Output {
    /// Writes the batch; what the output cannot hold comes back as dead letters.
    fn write(&mut self, batch: &FlowBatch) -> Result<Vec<DeadLetter>, SinkError> {
        match self {
            Output::Ndjson { encoder, writer } => {
                let ndjson = encoder.encode(batch)?;
                writer.write_all(ndjson)?;
            }
            Output::Parallel(writer) => writer
                .as_mut()
                .expect("open until closed")
                .write(batch.clone())?,
            #[cfg(feature = "sink-security-lake")]
            Output::Parquet { writer, .. } => {
                let rejected = writer.as_mut().expect("open until closed").write(batch)?;
                return Ok(rejected);
            }
            Output::Findings(findings) => findings.write(batch)?,
        }
        Ok(Vec::new())
    }

    /// Makes what was written so far readable (NDJSON); Parquet is readable only whole.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Ndjson { writer, .. } => writer.flush(),
            Output::Parallel(writer) => writer.as_mut().map_or(Ok(()), ParallelWriter::flush),
            #[cfg(feature = "sink-security-lake")]
            Output::Parquet { .. } => Ok(()),
            Output::Findings(findings) => findings.flush(),
        }
    }

    /// Ends the output: a Parquet file gets its footer and its name.
    fn close(&mut self) -> io::Result<()> {
        match self {
            Output::Ndjson { writer, .. } => writer.flush(),
            Output::Parallel(writer) => writer.take().map_or(Ok(()), ParallelWriter::finish),
            #[cfg(feature = "sink-security-lake")]
            Output::Parquet { writer, replaced } => {
                if let Some(writer) = writer.take() {
                    writer.finish().map_err(io::Error::other)?.flush()?;
                }
                // Dropped unkept (a failed run), the partial file goes.
                replaced.take().map_or(Ok(()), |r| r.keep())
            }
            Output::Findings(findings) => findings.close(),
        }
    }

    /// A line for the summary, beside the records'.
    fn summary(&self) -> Option<String> {
        match self {
            Output::Findings(findings) => Some(findings.summary()),
            _ => None,
        }
    }
}

/// `--output-format parquet`: OCSF only, to a file or to standard output when that is
/// not a terminal.
#[cfg(feature = "sink-security-lake")]
fn parquet_output(args: &TransformArgs) -> Result<Output, String> {
    if args.to != OutputShape::Ocsf {
        return Err("--output-format parquet writes OCSF: add --to ocsf".into());
    }
    if args.confirm {
        return Err(
            "--confirm needs records written as they arrive; a Parquet file is written whole"
                .into(),
        );
    }
    if args.envelope_key.is_some() {
        return Err("--envelope-key adds a member OCSF's Parquet schema does not have".into());
    }
    let (writer, replaced): (Box<dyn Write + Send>, _) = match &args.output {
        Some(path) => {
            let (file, replaced) =
                Replaced::create(path).map_err(|e| format!("cannot create {e}"))?;
            (
                Box::new(BufWriter::with_capacity(1 << 20, file)),
                Some(replaced),
            )
        }
        None if io::stdout().is_terminal() => {
            return Err("Parquet is not for a terminal: give --output FILE or redirect".into())
        }
        None => (
            Box::new(BufWriter::with_capacity(1 << 20, io::stdout())),
            None,
        ),
    };
    let writer = flowlog_sink_security_lake::ParquetOutput::new(writer, args.ocsf_version)
        .map_err(|e| e.to_string())?;
    Ok(Output::Parquet {
        writer: Some(Box::new(writer)),
        replaced,
    })
}

#[cfg(not(feature = "sink-security-lake"))]
fn parquet_output(_: &TransformArgs) -> Result<Output, String> {
    Err("this build has no Parquet output (cargo feature sink-security-lake)".into())
}

impl NdjsonSink {
    /// Writes out whatever the output and the dead-letter file hold, then confirms the
    /// lines read so far: each of them has been written out or dead-lettered.
    fn finish(&mut self) -> io::Result<()> {
        self.output.flush()?;
        if let DeadLetterOut::File(file) = &mut self.dead_letters {
            file.flush()?;
        }
        if let Some(confirm) = &mut self.confirm {
            confirm.lines_done()?;
        }
        Ok(())
    }
}

/// Confirmations for an engine that sends a line and waits for `OK` (rsyslog's omprog
/// with `confirmMessages="on"`).
#[derive(Default)]
struct Confirm {
    /// Lines read from standard input (newlines, and a last line without one).
    lines: Arc<AtomicU64>,
    confirmed: u64,
}

impl Confirm {
    fn ready(&mut self) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(b"OK\n")?;
        stdout.flush()
    }

    /// Confirms every line read since the last confirmation. Called once what they held
    /// is written: streaming decoding reads on only after it has emitted every whole line
    /// it read, and reports that (`RecordSink::idle`) before a read that may wait.
    fn lines_done(&mut self) -> io::Result<()> {
        let lines = self.lines.load(Ordering::Relaxed);
        if lines == self.confirmed {
            return Ok(());
        }
        let mut stdout = io::stdout().lock();
        for _ in self.confirmed..lines {
            stdout.write_all(b"OK\n")?;
        }
        stdout.flush()?;
        self.confirmed = lines;
        Ok(())
    }
}

/// Counts the lines read through it.
struct CountLines<R> {
    inner: R,
    lines: Arc<AtomicU64>,
}

impl<R: io::Read> io::Read for CountLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let newlines = memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        self.lines.fetch_add(newlines, Ordering::Relaxed);
        Ok(n)
    }
}

impl RecordSink for NdjsonSink {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        let batch = match &mut self.enricher {
            Some(enricher) => {
                for notice in enricher.maintain() {
                    if !self.quiet {
                        eprintln!("flowlog: {notice}");
                    }
                }
                enricher.enrich(batch)
            }
            None => batch,
        };
        for letter in self.output.write(&batch)? {
            self.dead_letter(letter)?;
        }
        Ok(())
    }

    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        match &mut self.dead_letters {
            DeadLetterOut::File(file) => {
                file.write_all(letter.to_json().as_bytes())?;
                file.write_all(b"\n")?;
            }
            DeadLetterOut::Stderr => {
                eprintln!("flowlog: dead letter: {}", letter.to_json());
            }
        }
        Ok(())
    }

    /// Everything read so far is written before the next read: what a crash can lose
    /// stays the pipe's contents and one block, however many threads encode.
    fn idle(&mut self) -> Result<(), SinkError> {
        Ok(self.finish()?)
    }
}
