//! `flowlog backfill`: the configuration's sinks and transform, with one `s3` source in
//! place of its sources, run on a data dir of the backfill's own (so a sidecar on the same
//! configuration keeps running), with a plan kept for `--resume`, a progress line and a
//! summary. Planning, sampling and the queue are `flowlog_source_s3::backfill`'s.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowlog_component::metrics::human_bytes;
use flowlog_pipeline::config::{DeadLetterSettings, DeadLetterTable};
use flowlog_registry::{Config, SourceConfig};
use flowlog_source_s3::backfill::{queue_status, Backfill, Sample};
use flowlog_source_s3::job::{self, Found, Job, Request, Summary};
use flowlog_source_s3::progress::{Counts, Tally};
use flowlog_source_s3::{Location, Plan, PlanFile, S3Source, Style};

use crate::cli::BackfillArgs;
use crate::output::{outln, Out};

/// The name the backfill's source has in logs and metrics.
const SOURCE: &str = "backfill";

/// Prefixes a dry run names before it says how many more there are.
const SHOWN_PREFIXES: usize = 8;

/// Exit status for arguments or a configuration that cannot be used.
fn unusable(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("flowlog backfill: {message}");
    ExitCode::from(2)
}

fn failed(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("flowlog backfill: {message}");
    ExitCode::FAILURE
}

pub fn run(args: BackfillArgs) -> ExitCode {
    let mut settings = settings(&args);
    if let Some(queue) = &args.status {
        return status(&settings, queue);
    }
    // Option errors in the options' own names (the source's settings say them otherwise).
    if !(1..=256).contains(&args.parallel) {
        return unusable("--parallel must be from 1 to 256");
    }
    if args.margin > 7 * 86_400 {
        return unusable("--margin must be at most a week (7d)");
    }
    let asked = match settings.filter() {
        Ok(filter) => filter,
        Err(e) => return unusable(format!("--{e}")),
    };
    let mut config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(config) => Some(config),
            Err(e) => return unusable(e),
        },
        None => None,
    };
    // The configuration's own time range, and bounds --where puts on `start`, narrow the
    // plan; the records kept are those every one of them keeps.
    if let Some(config) = &config {
        let filter = &config.transform.filter;
        narrow(&mut settings, (filter.since, filter.until));
    }
    if let Some(sql) = &args.predicate {
        let enriched = config
            .as_ref()
            .is_some_and(|c| c.transform.enrich.may_enrich());
        let bounds = match flowlog_pipeline::filter::check_where(sql, enriched) {
            Ok(bounds) => bounds,
            Err(e) => return unusable(format!("--{e}")),
        };
        narrow(&mut settings, bounds);
        if let Some(config) = &mut config {
            let filter = &mut config.transform.filter;
            filter.predicate = Some(match filter.predicate.take() {
                Some(own) => format!("({own}) AND ({sql})"),
                None => sql.clone(),
            });
        }
    }
    if settings.filter().is_err() {
        return unusable(format!(
            "nothing is left of --since {} --until {} once the configuration's \
             [transform.filter] since/until and the bounds --where puts on start apply",
            settings_text(&args.since),
            settings_text(&args.until)
        ));
    }
    let backfill = match Backfill::new(&settings) {
        Ok(b) => b,
        Err(e) => return unusable(e),
    };
    if args.enqueue.is_some() && !matches!(backfill.location(), Location::S3 { .. }) {
        return unusable(
            "--enqueue sends S3 objects to sidecars, which read them from S3: give an \
             s3:// URL",
        );
    }
    if args.dry_run {
        return dry_run(&args, &backfill, config.as_ref());
    }
    let Some(mut config) = config else {
        return unusable("--config is needed to deliver (its sinks and data_dir)");
    };
    if let Some(unknown) = args.sinks.iter().find(|s| !config.sinks.contains_key(*s)) {
        let known: Vec<&str> = config.sinks.keys().map(String::as_str).collect();
        return unusable(format!(
            "--sink {unknown}: the configuration has no such sink (it has: {})",
            known.join(", ")
        ));
    }
    if !args.sinks.is_empty() {
        config.sinks.retain(|name, _| args.sinks.contains(name));
    }
    // Checked now, not after hours of work.
    if let Some(path) = &args.summary_json {
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            return unusable(format!("--summary-json {}: {e}", path.display()));
        }
    }
    let sorted = |list: &[String]| {
        let set: std::collections::BTreeSet<&String> = list.iter().collect();
        set.into_iter().cloned().collect::<Vec<_>>()
    };
    let request = Request {
        url: backfill.location().url(),
        since: rfc3339(asked.range.since),
        until: rfc3339(asked.range.until),
        accounts: sorted(&args.accounts),
        regions: sorted(&args.regions),
        flow_logs: sorted(&args.flow_logs),
        margin_secs: args.margin,
        format: args.format.clone(),
        sinks: match &args.enqueue {
            Some(queue) => vec![format!("sqs:{queue}")],
            None => config.sinks.keys().cloned().collect(),
        },
        predicate: args.predicate.as_ref().map(|p| p.trim().to_string()),
    };
    let job = Job::of(&config.data_dir, &request);
    let (plan, before) = match job.look() {
        Err(e) => return failed(e),
        Ok(Found::Finished(summary)) => return finished_already(&args, &job, &summary),
        Ok(Found::Unfinished(_)) if job.running() => {
            return failed(format!(
                "this backfill is running now, in another process (state in {})",
                job.dir.display()
            ))
        }
        Ok(Found::Unfinished(plan)) if args.resume => {
            let before = std::fs::read(job.summary_path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Summary>(&b).ok());
            (plan, before)
        }
        Ok(Found::Unfinished(plan)) => {
            return unusable(format!(
                "a backfill with these arguments began and did not finish ({} objects \
                 planned; state in {}): add --resume to continue it, or remove that folder \
                 to start over",
                plan.objects.len(),
                job.dir.display()
            ))
        }
        Ok(Found::New) if args.resume => {
            return unusable(format!(
                "nothing to resume: no backfill with these arguments began (no {})",
                job.plan_path().display()
            ))
        }
        Ok(Found::New) => {
            let plan = match backfill.plan() {
                Ok(plan) => plan,
                Err(e) => return failed(e),
            };
            for warning in &plan.warnings {
                tracing::warn!("{warning}");
            }
            // Nothing found is a mistake more often than not (a region spelt wrong); no
            // state is kept, so the corrected command starts afresh.
            if plan.objects.is_empty() {
                return failed(format!(
                    "nothing to read: no object under {} fits the range and the filters ({} \
                     listed and left out by their names; --dry-run shows what was listed)",
                    backfill.location().url(),
                    plan.passed_over
                ));
            }
            let file = PlanFile {
                url: settings.url.clone(),
                since: settings.since.clone(),
                until: settings.until.clone(),
                objects: plan.objects,
            };
            if let Err(e) = job.save_plan(&file) {
                return failed(e);
            }
            (file, None)
        }
    };
    match &args.enqueue {
        Some(queue) => enqueue(&args, &backfill, &job, &plan, before, queue),
        None => deliver(&args, settings, config, &job, &plan),
    }
}

fn settings_text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or_default()
}

/// A backfill done before: said, its summary written where asked, and its outcome as the
/// exit status (1 when it dead-lettered anything).
fn finished_already(args: &BackfillArgs, job: &Job, summary: &Summary) -> ExitCode {
    if let Some(path) = &args.summary_json {
        if let Err(e) = write_summary(path, summary) {
            return failed(e);
        }
    }
    let dead = match summary.dead_letters {
        0 => String::new(),
        n => format!(
            ", {n} record(s) dead-lettered to {}",
            summary.dead_letter_path.display()
        ),
    };
    eprintln!(
        "flowlog backfill: this backfill finished already ({} objects{dead}; state in {}); \
         remove that folder to do it again",
        summary.objects_planned,
        job.dir.display()
    );
    match summary.dead_letters {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// The `s3` source the arguments describe.
fn settings(args: &BackfillArgs) -> S3Source {
    S3Source {
        url: args.url.clone().unwrap_or_default(),
        since: args.since.clone().unwrap_or_default(),
        until: args.until.clone().unwrap_or_default(),
        accounts: args.accounts.clone(),
        regions: args.regions.clone(),
        flow_logs: args.flow_logs.clone(),
        margin_secs: args.margin,
        workers: args.parallel,
        region: args.aws_region.clone(),
        profile: args.profile.clone(),
        endpoint_url: args.endpoint_url.clone(),
        s3_force_path_style: args.s3_force_path_style,
        format: args.format.clone(),
        read_timeout_secs: 60,
        plan_file: None,
        tally: None,
    }
}

/// Narrows the range to what `--where` bounds `start` to (`start >= ...`), so fewer
/// partitions are listed.
fn narrow(settings: &mut S3Source, (since, until): (Option<i64>, Option<i64>)) {
    let Ok(filter) = settings.filter() else {
        return;
    };
    let text = |millis: i64| chrono::DateTime::from_timestamp_millis(millis).map(rfc3339);
    if let Some(t) = since.filter(|&t| t > filter.range.since.timestamp_millis()) {
        if let Some(t) = text(t) {
            settings.since = t;
        }
    }
    if let Some(t) = until.filter(|&t| t < filter.range.until.timestamp_millis()) {
        if let Some(t) = text(t) {
            settings.until = t;
        }
    }
}

/// A moment as the state and the plan write it.
fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `--dry-run`: the plan, and how long it should take.
fn dry_run(args: &BackfillArgs, backfill: &Backfill, config: Option<&Config>) -> ExitCode {
    let plan = match backfill.plan() {
        Ok(plan) => plan,
        Err(e) => return failed(e),
    };
    let mut out = Out::new();
    if args.list {
        for object in &plan.objects {
            outln!(
                out,
                "{} {}",
                backfill.location().describe(&object.key),
                object.size
            );
        }
        return out.finish(ExitCode::SUCCESS);
    }
    let layout = match plan.style {
        Some(Style::Plain) => "AWS's layout",
        Some(Style::Hive) => "AWS's Hive-compatible layout",
        None => "no known layout",
    };
    outln!(
        out,
        "plan: {} from {} to {} ({layout}, margin {})",
        args.url.as_deref().unwrap_or_default(),
        args.since.as_deref().unwrap_or_default(),
        args.until.as_deref().unwrap_or_default(),
        duration(Duration::from_secs(args.margin)),
    );
    for warning in &plan.warnings {
        outln!(out, "  warning: {warning}");
    }
    outln!(out, "  prefixes listed: {}", plan.prefixes.len());
    for prefix in plan.prefixes.iter().take(SHOWN_PREFIXES) {
        outln!(out, "    {}", backfill.location().describe(prefix));
    }
    if plan.prefixes.len() > SHOWN_PREFIXES {
        outln!(
            out,
            "    ... and {} more",
            plan.prefixes.len() - SHOWN_PREFIXES
        );
    }
    outln!(
        out,
        "  objects: {} ({}); {} more listed and left out by their names",
        plan.objects.len(),
        human_bytes(plan.bytes()),
        plan.passed_over
    );
    outln!(
        out,
        "  estimated time: {}",
        estimate(args, backfill, &plan, config)
    );
    out.finish(ExitCode::SUCCESS)
}

/// How long reading `plan` should take: at the rate the last finished backfill under
/// the configuration's data_dir ran, or else at the rate a sample read and decoded now
/// gives one worker, times the workers the cores can keep busy.
fn estimate(
    args: &BackfillArgs,
    backfill: &Backfill,
    plan: &Plan,
    config: Option<&Config>,
) -> String {
    let bytes = plan.bytes() as f64;
    if plan.objects.is_empty() {
        return "nothing to read".into();
    }
    if let Some((rate, _)) = config.and_then(|c| job::last_rate(&c.data_dir)) {
        return format!(
            "{} at {}/s, the rate the last backfill under this data_dir ran at",
            duration(Duration::from_secs_f64(bytes / rate)),
            human_bytes(rate as u64)
        );
    }
    match backfill.sample(&plan.objects) {
        Ok(sample) => match sample.rate() {
            Some(rate) => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                let workers = args.parallel.min(cores).min(plan.objects.len()).max(1);
                format!(
                    "{} at {}/s ({} worker(s) at {}/s each, measured now reading and decoding \
                     {}; delivery not included)",
                    duration(Duration::from_secs_f64(bytes / (rate * workers as f64))),
                    human_bytes((rate * workers as f64) as u64),
                    workers,
                    human_bytes(rate as u64),
                    sampled(&sample),
                )
            }
            None => "unknown (the sample read nothing)".into(),
        },
        Err(e) => format!("unknown (reading a sample failed: {e})"),
    }
}

fn sampled(sample: &Sample) -> String {
    format!(
        "{} object(s), {}, {} records",
        sample.objects,
        human_bytes(sample.bytes),
        sample.records
    )
}

/// Runs the pipeline on the plan, with a progress line, and says how it ended.
fn deliver(
    args: &BackfillArgs,
    mut settings: S3Source,
    mut config: Config,
    job: &Job,
    plan: &PlanFile,
) -> ExitCode {
    let tally = Arc::new(Tally::default());
    settings.plan_file = Some(job.plan_path());
    settings.tally = Some(Arc::clone(&tally));
    let (since, until) = match settings.filter() {
        Ok(filter) => (filter.range.since, filter.range.until),
        Err(e) => return unusable(e),
    };
    config.transform.filter.since = Some(since.timestamp_millis());
    config.transform.filter.until = Some(until.timestamp_millis());
    config.sources = BTreeMap::from([(SOURCE.to_string(), SourceConfig::S3(settings))]);
    // The backfill's own checkpoints, lock and dead letter: a sidecar may be running on
    // the configuration's, and this run must not share them.
    let limits = config.dead_letter_store().1;
    config.data_dir = job.data_dir();
    let dead_letter_path = config.data_dir.join("dead-letter.ndjson");
    config.dead_letter = Some(DeadLetterSettings::Table(DeadLetterTable {
        path: Some(dead_letter_path.clone()),
        max_bytes: Some(limits.max_bytes),
        rotate_bytes: Some(limits.rotate_bytes),
    }));
    // No /metrics port (the sidecar's may be taken) and no status lines: the progress
    // line says it.
    config.api.address = None;
    config.status_interval_secs = 0.0;

    let started = Instant::now();
    let progress = Progress::start(Arc::clone(&tally), args.quiet);
    let options = flowlog_pipeline::RunOptions {
        once: true,
        config_path: None,
    };
    let ran = flowlog_pipeline::run(config, options);
    progress.stop();
    let ran = match ran {
        Ok(ran) => ran,
        Err(e) => return failed(e),
    };
    let counts = tally.counts();
    let left = counts.objects_planned - counts.objects_done;
    let finished = left == 0
        && counts.objects_failed == 0
        && !ran.abandoned
        && ran.failed_sink.is_none()
        && ran.failed_source.is_none()
        && ran.failed_transform.is_none();
    let summary = Summary {
        url: plan.url.clone(),
        since: plan.since.clone(),
        until: plan.until.clone(),
        finished,
        interrupted: !finished
            && counts.objects_failed == 0
            && ran.failed_sink.is_none()
            && ran.failed_transform.is_none(),
        objects_planned: counts.objects_planned,
        objects_read: counts.objects_done - counts.objects_skipped,
        objects_skipped: counts.objects_skipped,
        objects_failed: counts.objects_failed,
        bytes_planned: counts.bytes_planned,
        bytes_read: counts.bytes_done - counts.bytes_skipped,
        records_read: ran.totals.records_read,
        records_delivered: ran.totals.delivered.iter().cloned().collect(),
        dead_letters: ran.dead_letters,
        dead_letter_path,
        seconds: started.elapsed().as_secs_f64(),
        state_dir: job.dir.clone(),
    };
    if let Err(e) = keep_summary(args, job, &summary) {
        return failed(e);
    }
    if !args.quiet {
        eprintln!("{}", summary_line(&summary));
    }
    if let Some((name, e)) = &ran.failed_sink {
        eprintln!("flowlog backfill: sink {name} stopped: {e}");
    }
    if let Some(e) = &ran.failed_transform {
        return failed(format!(
            "stopped: {e}. Fix the expression and run again: another --where is another \
             backfill, which delivers again what this one delivered before it stopped"
        ));
    }
    if let Some((name, e)) = &ran.failed_source {
        tracing::debug!(source = %name, "{e}");
    }
    let resume = "the same command with --resume continues";
    if counts.objects_failed > 0 {
        return failed(format!(
            "{} object(s) could not be read (see the errors above); {resume}",
            counts.objects_failed
        ));
    }
    if !finished {
        return failed(format!(
            "stopped with {left} of {} object(s) not read; {resume}",
            counts.objects_planned
        ));
    }
    if summary.dead_letters > 0 {
        return failed(format!(
            "{} record(s) were dead-lettered: {}",
            summary.dead_letters,
            summary.dead_letter_path.display()
        ));
    }
    ExitCode::SUCCESS
}

/// `--enqueue`: the plan's objects (those not sent by an earlier, interrupted run) sent to
/// the queue, with what was sent saved after each call.
fn enqueue(
    args: &BackfillArgs,
    backfill: &Backfill,
    job: &Job,
    plan: &PlanFile,
    before: Option<Summary>,
    queue: &str,
) -> ExitCode {
    let started = Instant::now();
    let mut summary = Summary {
        url: plan.url.clone(),
        since: plan.since.clone(),
        until: plan.until.clone(),
        objects_planned: plan.objects.len() as u64,
        bytes_planned: plan.objects.iter().map(|o| o.size).sum(),
        state_dir: job.dir.clone(),
        ..Summary::default()
    };
    let done = before.map_or(0, |b| b.objects_read + b.objects_skipped) as usize;
    summary.objects_skipped = done as u64;
    let rest = &plan.objects[done.min(plan.objects.len())..];
    let sent = backfill.enqueue(queue, rest, |n| {
        summary.objects_read += n;
        summary.seconds = started.elapsed().as_secs_f64();
        job.save_summary(&summary).map_err(|e| e.to_string())
    });
    summary.finished = sent.is_ok();
    summary.interrupted = false;
    summary.seconds = started.elapsed().as_secs_f64();
    if let Err(e) = keep_summary(args, job, &summary) {
        return failed(e);
    }
    match sent {
        Ok(()) => {
            if !args.quiet {
                eprintln!(
                    "sent {} object(s) ({}) to {queue}{}; `flowlog backfill --status {queue}` \
                     shows how far the sidecars are",
                    summary.objects_read,
                    human_bytes(rest.iter().map(|o| o.size).sum()),
                    match done {
                        0 => String::new(),
                        n => format!(" ({n} sent before)"),
                    }
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => failed(format!(
            "{e} ({} of {} object(s) sent; --resume sends the rest)",
            summary.objects_read + summary.objects_skipped,
            summary.objects_planned
        )),
    }
}

/// `--status`: the queue's depth.
fn status(settings: &S3Source, queue: &str) -> ExitCode {
    match queue_status(settings, queue) {
        Ok(status) => {
            let mut out = Out::new();
            outln!(
                out,
                "{queue}: {} waiting, {} being read, {} delayed{}",
                status.waiting,
                status.in_flight,
                status.delayed,
                match &status.dead_letter_queue {
                    Some((name, held)) => format!("; dead-letter queue {name}: {held}"),
                    None => "; no dead-letter queue".into(),
                }
            );
            out.finish(ExitCode::SUCCESS)
        }
        Err(e) => failed(e),
    }
}

/// The summary saved with the backfill's state, and written where `--summary-json` asks.
fn keep_summary(args: &BackfillArgs, job: &Job, summary: &Summary) -> Result<(), String> {
    job.save_summary(summary).map_err(|e| e.to_string())?;
    match &args.summary_json {
        Some(path) => write_summary(path, summary),
        None => Ok(()),
    }
}

fn write_summary(path: &Path, summary: &Summary) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(summary).expect("a summary serialises");
    text.push('\n');
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `backfill finished: 744 of 744 objects (2.9 GiB; 0 read before), 1234567 records read,
/// delivered: out 1234567; 0 dead letters; 42.1 s`.
fn summary_line(s: &Summary) -> String {
    let delivered: Vec<String> = s
        .records_delivered
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    format!(
        "backfill {}: {} of {} objects ({}; {} done before), {} records read, delivered: {}; \
         {} dead letters; {}",
        match (s.finished, s.interrupted) {
            (true, _) => "finished",
            (false, true) => "stopped",
            (false, false) => "failed",
        },
        s.objects_read + s.objects_skipped,
        s.objects_planned,
        human_bytes(s.bytes_read),
        s.objects_skipped,
        s.records_read,
        delivered.join(", "),
        s.dead_letters,
        duration(Duration::from_secs_f64(s.seconds)),
    )
}

/// The progress line: redrawn in place on a terminal, else printed every
/// [`PLAIN_EVERY`] and at the end (a log file or a CI job).
struct Progress {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const PLAIN_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    fn start(tally: Arc<Tally>, quiet: bool) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if quiet {
            return Self { stop, thread: None };
        }
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let terminal = std::io::stderr().is_terminal();
            let bar = terminal.then(|| {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{wide_msg}")
                        .expect("a valid template"),
                );
                bar
            });
            let started = Instant::now();
            let mut printed = Instant::now();
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let line = progress_line(&tally.counts(), started.elapsed());
                match &bar {
                    Some(bar) => bar.set_message(line),
                    None if printed.elapsed() >= PLAIN_EVERY => {
                        eprintln!("{line}");
                        printed = Instant::now();
                    }
                    None => {}
                }
            }
            match bar {
                Some(bar) => bar.finish_and_clear(),
                // A log keeps the last line: where the run got to.
                None => {
                    let counts = tally.counts();
                    if counts.objects_planned > 0 {
                        eprintln!("{}", progress_line(&counts, started.elapsed()));
                    }
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `backfill: 312/744 objects, 1.2 GiB/2.9 GiB, 48213 records/s, ETA 3m 12s`.
fn progress_line(c: &Counts, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    // Bytes of objects done in this run: those done before took no time now.
    let rate = (c.bytes_done - c.bytes_skipped) as f64 / secs;
    let eta = match c.bytes_planned.checked_sub(c.bytes_done) {
        Some(0) => "done".to_string(),
        Some(left) if rate > 0.0 => {
            format!(
                "ETA {}",
                duration(Duration::from_secs_f64(left as f64 / rate))
            )
        }
        _ => "ETA unknown".to_string(),
    };
    format!(
        "backfill: {}/{} objects, {}/{}, {:.0} records/s, {}{}",
        c.objects_done,
        c.objects_planned,
        human_bytes(c.bytes_done),
        human_bytes(c.bytes_planned),
        c.records as f64 / secs,
        eta,
        match c.objects_failed {
            0 => String::new(),
            n => format!(", {n} failed"),
        }
    )
}

/// `42.1 s`, `3m 12s`, `2h 05m`.
fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(Duration::from_millis(42_100)), "42.1 s");
        assert_eq!(duration(Duration::from_secs(192)), "3m 12s");
        assert_eq!(duration(Duration::from_secs(7500)), "2h 05m");
    }

    #[test]
    fn the_progress_line_counts_and_estimates() {
        let counts = Counts {
            objects_planned: 4,
            bytes_planned: 4096,
            objects_done: 1,
            bytes_done: 1024,
            records: 100,
            ..Counts::default()
        };
        assert_eq!(
            progress_line(&counts, Duration::from_secs(1)),
            "backfill: 1/4 objects, 1.0 KiB/4.0 KiB, 100 records/s, ETA 3.0 s"
        );
    }
}
