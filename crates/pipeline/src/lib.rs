//! The forwarding runtime behind `flowlog run` and `flowlog check`.
//!
//! It knows sources and sinks only through their contracts (`flowlog-source`'s
//! `SourceKind`, `flowlog-sink`'s `SinkKind`); which kinds exist is the registry's
//! business (`flowlog-registry`), which gives [`Config`](config::Config) its two enums.
//!
//! This crate owns:
//! - [`config`]: the TOML file (named sources, transform settings, named sinks; `${ENV}`
//!   interpolation; unknown keys are errors with their line), generic over the registry's
//!   enums ([`Configured`]);
//! - [`filter`]: which records go on to the sinks;
//! - [`api`]: `/metrics` and `/health`;
//! - the wiring ([`run`]): sources -> enrich (one thread) -> every sink (bounded channels,
//!   a share of each batch's acknowledgement per sink), checkpoints saved every 250 ms
//!   after the dead letter is synced, and a shutdown that drains in-flight batches up to
//!   a deadline and never checkpoints what was not acknowledged.

pub mod api;
pub mod config;
mod detect;
pub mod filter;
pub mod reduce;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flowlog_component::{DeadLetters, Metrics, Stop};
use flowlog_model::{FlowBatch, FlowFormat};
use flowlog_sink::{Needs, Sink, SinkContext, SinkError, SinkInput, SinkKind};
use flowlog_source::checkpoint::{Checkpoints, DataDirLock};
use flowlog_source::dead_letter::DeadLetterFile;
use flowlog_source::{CheckOptions, Envelope, Source, SourceContext, SourceError, SourceKind};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::Config;

/// A registry's enum of settings (`[sources.<name>]` or `[sinks.<name>]`, tagged by
/// `type`): the kind it was configured as, and its settings as the contract `K` the
/// pipeline runs them by (`dyn SourceKind`, `dyn SinkKind`).
pub trait Configured<K: ?Sized>: Send + Sync {
    /// The `type` it was configured with.
    fn kind(&self) -> &'static str;
    /// The settings, as the pipeline uses them.
    fn spec(&self) -> &K;
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Why a run could not start or did not end well.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("enrichment: {0}")]
    Enrich(#[from] flowlog_enrich::EnrichError),
    #[error("sink {name}: {source}")]
    Sink { name: String, source: SinkError },
    #[error("source {name}: {source}")]
    Source { name: String, source: SourceError },
    #[error("{NO_SOURCES}")]
    NoSources,
    #[error("detect: {0}")]
    Detect(String),
}

/// What a configuration without sources is told by `run`, `validate` and `check`.
const NO_SOURCES: &str =
    "no [sources.<name>] table: nothing to read (only `flowlog backfill` brings its own)";

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Read what the sources hold now, deliver it, and end (see `SourceContext::once`).
    pub once: bool,
    /// The file the configuration came from: read again on SIGHUP.
    pub config_path: Option<PathBuf>,
}

/// How a run ended.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Batches still unacknowledged at the shutdown deadline (sent again after a restart).
    pub abandoned: bool,
    /// A sink stopped for good (e.g. its token was refused).
    pub failed_sink: Option<(String, SinkError)>,
    /// A source could not do its job (an input it names could not be read).
    pub failed_source: Option<(String, SourceError)>,
    /// Records written to the dead letter during the run.
    pub dead_letters: u64,
    /// The transform stage could not do its job (a `where` that failed on a batch): the
    /// run was stopped, and what that batch and those after it held was not acknowledged.
    pub failed_transform: Option<String>,
    /// What was read and delivered, by component.
    pub totals: flowlog_component::Totals,
}

/// Channel capacities: a few batches between stages, enough to keep each stage busy,
/// few enough that memory stays bounded (a batch is a few MB at most).
const SOURCE_CHANNEL: usize = 4;
const SINK_CHANNEL: usize = 2;
/// How often checkpoints are saved (after the dead letter is synced): what a `kill -9`
/// can make the next run send again, beyond the batches not yet acknowledged.
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// The transform thread's stack (what a long `where` needs to be evaluated; untouched
/// pages cost nothing).
const TRANSFORM_STACK: usize = 64 << 20;

/// How long threads get to notice the end once the shutdown deadline has passed.
const LINGER: Duration = Duration::from_secs(5);

/// Runs the pipeline until every source has ended (files read once, stdin) or a
/// shutdown signal (SIGINT, SIGTERM) arrives.
pub fn run<S, K>(config: Config<S, K>, options: RunOptions) -> Result<RunSummary, RunError>
where
    S: Configured<dyn SourceKind> + serde::de::DeserializeOwned,
    K: Configured<dyn SinkKind> + serde::de::DeserializeOwned,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("flowlog")
        .build()
        .map_err(|e| RunError::Io {
            what: "cannot start the runtime",
            path: PathBuf::new(),
            source: e,
        })?;
    runtime.block_on(run_async(config, options))
}

/// The process's part of a run, which outlives reloads: the data dir's lock, checkpoints,
/// metrics, the dead-letter store, `/health` and `/metrics`, the signals. Each
/// configuration then runs as a generation ([`run_generation`]); SIGHUP ends one, with a
/// drain, and starts the next with the file read again.
async fn run_async<S, K>(config: Config<S, K>, options: RunOptions) -> Result<RunSummary, RunError>
where
    S: Configured<dyn SourceKind> + serde::de::DeserializeOwned,
    K: Configured<dyn SinkKind> + serde::de::DeserializeOwned,
{
    if config.sources.is_empty() {
        return Err(RunError::NoSources);
    }
    let _lock = DataDirLock::acquire(&config.data_dir)
        .map_err(io("cannot lock the data_dir", &config.data_dir))?;
    let state = State::open(&config)?;
    let mut signals = Signals::new().map_err(|source| RunError::Io {
        what: "cannot listen for signals",
        path: PathBuf::new(),
        source,
    })?;
    serve_api(config.api.address.as_ref(), &state)?;
    let started = std::time::Instant::now();
    let mut config = config;
    // The configuration that last started well: what a reload falls back to when the new
    // one passes validation but cannot start (a path gone, a port taken).
    let mut previous: Option<Config<S, K>> = None;
    loop {
        let ended = match run_generation(&config, &state, &mut signals, &options).await {
            Err(e @ (RunError::Source { .. } | RunError::Sink { .. })) if previous.is_some() => {
                tracing::error!(
                    "reload: {e}; starting the previous configuration again (fix the file \
                     and send SIGHUP again)"
                );
                config = previous.take().expect("checked");
                // A SIGHUP kept during the drain would only read the same file again.
                signals.reload_pending = false;
                continue;
            }
            ended => ended?,
        };
        match ended {
            Generation::Reload(next) => {
                previous = Some(std::mem::replace(&mut config, *next));
                tracing::info!("reload: the new configuration starts");
            }
            Generation::Ended(mut summary) => {
                summary.dead_letters = state.dead_letters.written();
                summary.totals = state.metrics.totals();
                report::summary(&summary.totals, started.elapsed());
                return Ok(*summary);
            }
        }
    }
}

/// How a generation ended.
enum Generation<S, K> {
    /// The run is over (sources ended, a stop signal, a part failed).
    Ended(Box<RunSummary>),
    /// SIGHUP with a valid new configuration: everything in flight was drained (or, past
    /// the deadline, left to be sent again from the checkpoints); start this one.
    Reload(Box<Config<S, K>>),
}

/// One configuration's sources, transform and sinks, from start to drain.
async fn run_generation<S, K>(
    config: &Config<S, K>,
    state: &State,
    signals: &mut Signals,
    options: &RunOptions,
) -> Result<Generation<S, K>, RunError>
where
    S: Configured<dyn SourceKind> + serde::de::DeserializeOwned,
    K: Configured<dyn SinkKind> + serde::de::DeserializeOwned,
{
    // Everything that can fail at start does so before anything is read or sent: the
    // sources' paths and ports, then the sinks' settings.
    let (batches, batches_rx) = mpsc::channel::<Envelope>(SOURCE_CHANNEL);
    let stop = Arc::new(Stop::default());
    state.health.starting(config.sinks.keys().cloned());
    // Components an earlier configuration had and this one has not are gone from /health.
    state.metrics.retain(|kind, name| match kind {
        "source" => config.sources.contains_key(name),
        "sink" => config.sinks.contains_key(name),
        _ => true,
    });
    let built = build_sources(config, state, batches, &stop, options.once)?;
    let (sink_inputs, mut sinks) = start_sinks(config, state)?;
    let transform_failed = Arc::new(std::sync::Mutex::new(None));
    let transform = start_transform(
        config,
        state,
        batches_rx,
        sink_inputs,
        (&stop, &transform_failed),
        options.once,
    )?;
    let mut sources = start_sources(built);
    let saver = save_every(SAVE_EVERY, state);
    // Only /ready needs them: without the API nobody asks.
    let probes = match config.api.address {
        Some(_) => probe_sinks(config, state),
        None => JoinSet::new(),
    };
    state.health.running();
    let status = match Duration::try_from_secs_f64(config.status_interval_secs) {
        Ok(every) if !every.is_zero() => Some(tokio::spawn(report::status_lines(
            state.metrics.clone(),
            every,
        ))),
        _ => None,
    };

    let mut summary = RunSummary::default();
    let reload = run_until_done(
        &mut sources,
        &mut sinks,
        signals,
        state,
        config,
        options,
        &mut summary,
    )
    .await;
    state.health.draining();
    drop(probes);
    if let Some(status) = status {
        status.abort();
    }
    stop.set();
    let deadline =
        Duration::try_from_secs_f64(config.shutdown_timeout_secs).unwrap_or(Duration::MAX);
    let (drained, stop_asked) = drain(
        &mut sources,
        &mut sinks,
        signals,
        deadline,
        reload.is_some(),
        &mut summary,
    )
    .await;
    if drained != Drained::All {
        summary.abandoned = true;
        abandon(&mut sources, &mut sinks).await;
    }
    let _ = tokio::time::timeout(
        LINGER,
        tokio::task::spawn_blocking(move || transform.join()),
    )
    .await;
    saver.abort();
    summary.failed_transform = transform_failed.lock().expect("not poisoned").take();
    // What was delivered is checkpointed before the process exits or the next generation
    // reads again.
    let (c, d) = (state.checkpoints.clone(), Arc::clone(&state.dead_letters));
    tokio::task::spawn_blocking(move || save(&c, &d))
        .await
        .expect("saving does not panic")
        .map_err(io("checkpoints in", &config.data_dir))?;
    Ok(match reload {
        // A stop signal during a reload's drain is a stop: the new configuration does not
        // start.
        Some(next) if !stop_asked && summary.failed_transform.is_none() => Generation::Reload(next),
        _ => Generation::Ended(Box::new(summary)),
    })
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// Everything in flight settled.
    All,
    /// The shutdown deadline passed first.
    DeadlinePassed,
    /// A stop signal asked to stop at once.
    Stopped,
}

/// An I/O error of `what` at `path`, for `map_err`.
fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io { what, path, source }
}

/// What a run's parts share: where progress and dead letters are kept, the metrics, and
/// what `/health` reports.
struct State {
    checkpoints: Checkpoints,
    metrics: Metrics,
    dead_letters: Arc<DeadLetterFile>,
    health: Arc<api::Health>,
}

impl State {
    fn open<S, K>(config: &Config<S, K>) -> Result<Self, RunError> {
        let checkpoints =
            Checkpoints::open(&config.data_dir).map_err(io("checkpoints in", &config.data_dir))?;
        let metrics = Metrics::new();
        let (dead_letter_path, limits) = config.dead_letter_store();
        let dead_letters = Arc::new(
            DeadLetterFile::open(
                &dead_letter_path,
                limits,
                metrics.component("dead_letter", "file"),
                metrics.dead_letter_store(limits.max_bytes),
            )
            .map_err(io("dead letter", &dead_letter_path))?,
        );
        let health = Arc::new(api::Health::new(
            Arc::clone(&dead_letters),
            metrics.clone(),
            config.api.unhealthy_after(),
        ));
        Ok(Self {
            checkpoints,
            metrics,
            dead_letters,
            health,
        })
    }
}

/// `/metrics` and `/health` on `address`, if one is configured.
fn serve_api(
    address: Option<&flowlog_component::listen::ListenAddress>,
    state: &State,
) -> Result<(), RunError> {
    let Some(address) = address else {
        return Ok(());
    };
    let unusable = |source| RunError::Io {
        what: "api address",
        path: PathBuf::from(address.to_string()),
        source,
    };
    let listener = address.bind().map_err(unusable)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(unusable)?;
    tokio::spawn(api::serve(
        listener,
        state.metrics.clone(),
        Arc::clone(&state.health),
    ));
    tracing::info!("metrics on http://{address}/metrics, health on /health and /ready");
    Ok(())
}

/// Every sink's task (each ends with its name and how it ended), and the channels they
/// take batches from.
type Sinks = JoinSet<(String, Result<(), SinkError>)>;

fn start_sinks<S, K>(
    config: &Config<S, K>,
    state: &State,
) -> Result<(Vec<mpsc::Sender<SinkInput>>, Sinks), RunError>
where
    K: Configured<dyn SinkKind>,
{
    let mut inputs = Vec::new();
    let mut sinks = Sinks::new();
    for (name, sink_config) in &config.sinks {
        let letters = Arc::clone(&state.dead_letters) as Arc<dyn DeadLetters>;
        let sink = build_sink(
            name,
            sink_config.spec(),
            &state.metrics,
            letters,
            &config.data_dir,
        )
        .map_err(|source| RunError::Sink {
            name: name.clone(),
            source,
        })?;
        let (tx, rx) = mpsc::channel::<SinkInput>(SINK_CHANNEL);
        inputs.push(tx);
        let name = name.clone();
        sinks.spawn(async move { (name, sink.run(rx).await) });
    }
    Ok((inputs, sinks))
}

/// How often a sink that has not yet passed its first check (for `/ready`) is tried again.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Each sink's check, run once per configuration until it passes, for `/ready`: on
/// instances of their own, so the sinks that deliver are not held up. Dropping the set
/// ends the probes.
fn probe_sinks<S, K>(config: &Config<S, K>, state: &State) -> JoinSet<()>
where
    K: Configured<dyn SinkKind>,
{
    let mut probes = JoinSet::new();
    let metrics = Metrics::new();
    for (name, sink_config) in &config.sinks {
        let letters: Arc<dyn DeadLetters> = Arc::new(NoDeadLetters);
        // It was built once already for delivery; it builds again.
        let sink = match build_sink(
            name,
            sink_config.spec(),
            &metrics,
            letters,
            &config.data_dir,
        ) {
            Ok(sink) => sink,
            Err(e) => {
                // It was built once for delivery, so this does not happen; if it did, the
                // sink would be awaited for good, and /ready says why.
                state.health.sink_not_ready(name, e.to_string());
                continue;
            }
        };
        let (name, health) = (name.clone(), Arc::clone(&state.health));
        probes.spawn(async move {
            loop {
                match sink.check().await {
                    Ok(_) => return health.sink_ready(&name),
                    Err(e) => {
                        if health.sink_not_ready(&name, e.to_string()) {
                            tracing::warn!(sink = %name, "not ready (/ready is 503): {e}");
                        }
                    }
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
    }
    probes
}

/// The transform stage on a thread of its own (enrichment is blocking work), and the
/// channel sources send it batches through.
fn start_transform<S, K>(
    config: &Config<S, K>,
    state: &State,
    rx: mpsc::Receiver<Envelope>,
    sink_inputs: Vec<mpsc::Sender<SinkInput>>,
    (stop, failed): (&Arc<Stop>, &Arc<std::sync::Mutex<Option<String>>>),
    once: bool,
) -> Result<std::thread::JoinHandle<()>, RunError> {
    // Sinks on the findings route get findings only; the others the records.
    let (mut records, mut findings) = (Vec::new(), Vec::new());
    for (name, input) in config.sinks.keys().zip(sink_inputs) {
        match config.is_findings_sink(name) {
            true => findings.push(input),
            false => records.push(input),
        }
    }
    let detection = match &config.detect {
        Some(settings) => Some(crate::detect::Detection::start(
            settings,
            &config.data_dir,
            findings,
            once,
            state.metrics.component("transform", "detect"),
        )?),
        None => None,
    };
    let enricher = config
        .transform
        .enrich
        .build(&mut |notice| tracing::info!("{notice}"))?;
    let predicate = config.transform.filter.predicate.as_ref().map(|sql| {
        crate::filter::Where::new(sql, config.transform.enrich.may_enrich())
            .expect("validated with the config")
    });
    let stage = Stage {
        filter: config.transform.filter.clone(),
        predicate,
        stop: Arc::clone(stop),
        failed: Arc::clone(failed),
        enricher,
        metrics: state.metrics.component("transform", "transform"),
        filtered: state.metrics.filtered("transform"),
        detection,
        reduce: config.transform.reduce.as_ref().map(|settings| {
            crate::reduce::Reducing::new(
                settings,
                &state.metrics.component("transform", "reduce"),
                tokio::runtime::Handle::current(),
            )
        }),
    };
    let runtime = tokio::runtime::Handle::current();
    let thread = std::thread::Builder::new()
        .name("flowlog-transform".into())
        // A `where` predicate recurses as deep as it nests.
        .stack_size(TRANSFORM_STACK)
        .spawn(move || stage.run(&runtime, rx, records))
        .map_err(|source| RunError::Io {
            what: "cannot start the transform thread",
            path: PathBuf::new(),
            source,
        })?;
    Ok(thread)
}

/// How a source ended: its name, and whether it did its job.
type SourceEnd = (String, Result<(), SourceError>);

/// The running sources: how many have not ended, and where they say they have.
struct Sources {
    running: usize,
    ended: mpsc::UnboundedReceiver<SourceEnd>,
}

impl Sources {
    /// Waits for the next source to end (`None` once none is left to).
    async fn next_ended(&mut self) -> Option<SourceEnd> {
        if self.running == 0 {
            return None;
        }
        let end = self.ended.recv().await?;
        self.running -= 1;
        Some(end)
    }
}

/// The sources, built and named, not yet running.
type Built = Vec<(String, Box<dyn Source>)>;

/// Every configured source, built (so bound and opened: what cannot work fails here,
/// named) but not yet running.
fn build_sources<S, K>(
    config: &Config<S, K>,
    state: &State,
    batches: mpsc::Sender<Envelope>,
    stop: &Arc<Stop>,
    once: bool,
) -> Result<Built, RunError>
where
    S: Configured<dyn SourceKind>,
    K: Configured<dyn SinkKind>,
{
    let needs = config
        .sinks
        .values()
        .fold(Needs::default(), |needs, s| needs.union(s.spec().needs()));
    let mut built = Vec::new();
    for (name, source_config) in &config.sources {
        let spec = source_config.spec();
        let format = spec
            .format()
            .map(FlowFormat::parse)
            .transpose()
            .expect("validated with the config");
        let ctx = SourceContext {
            name: name.clone(),
            tx: batches.clone(),
            dead_letters: Arc::clone(&state.dead_letters),
            checkpoints: state.checkpoints.clone(),
            metrics: state.metrics.component("source", name),
            stop: Arc::clone(stop),
            format,
            batch_rows: config.transform.batch_rows,
            keep_lines: needs.lines,
            runtime: tokio::runtime::Handle::current(),
            once,
        };
        let source = spec.build(ctx).map_err(|source| RunError::Source {
            name: name.clone(),
            source,
        })?;
        built.push((name.clone(), source));
    }
    Ok(built)
}

fn start_sources(built: Built) -> Sources {
    let (ended_tx, ended) = mpsc::unbounded_channel::<SourceEnd>();
    let running = built.len();
    for (name, source) in built {
        let ended_tx = ended_tx.clone();
        tokio::spawn(async move {
            // A source that panics (a debug build: release builds abort) has failed; it
            // must not count as one that read everything.
            let result = match tokio::spawn(source.run()).await {
                Ok(result) => result,
                Err(e) => Err(SourceError::Unavailable(format!(
                    "stopped by a bug: {}",
                    panic_text(e)
                ))),
            };
            let _ = ended_tx.send((name, result));
        });
    }
    Sources { running, ended }
}

/// What a task that did not finish said.
fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into()),
        Err(e) => e.to_string(),
    }
}

/// Saves checkpoints every `every`, the dead letter first, since checkpoints pass its
/// records.
fn save_every(every: Duration, state: &State) -> tokio::task::JoinHandle<()> {
    let (checkpoints, dead_letters) = (state.checkpoints.clone(), Arc::clone(&state.dead_letters));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let (c, d) = (checkpoints.clone(), Arc::clone(&dead_letters));
            let saved = tokio::task::spawn_blocking(move || save(&c, &d)).await;
            if let Ok(Err(e)) = saved {
                tracing::error!("cannot save checkpoints: {e}");
            }
        }
    })
}

/// Runs until every source has ended, a stop signal arrives, or a sink stops for good
/// (which `summary` and `/health` then tell); or until SIGHUP brings a valid new
/// configuration, which is returned. An invalid one is logged and the run goes on.
async fn run_until_done<S, K>(
    sources: &mut Sources,
    sinks: &mut Sinks,
    signals: &mut Signals,
    state: &State,
    config: &Config<S, K>,
    options: &RunOptions,
    summary: &mut RunSummary,
) -> Option<Box<Config<S, K>>>
where
    S: Configured<dyn SourceKind> + serde::de::DeserializeOwned,
    K: Configured<dyn SinkKind> + serde::de::DeserializeOwned,
{
    loop {
        tokio::select! {
            ended = sources.next_ended() => match ended {
                Some((name, Ok(()))) => {
                    tracing::info!(source = %name, "source finished");
                    if sources.running == 0 { return None; }
                }
                Some((name, Err(e))) => {
                    tracing::error!(source = %name, "{e}");
                    state.health.set_failed(format!("source {name}: {e}"));
                    summary.failed_source = Some((name, e));
                    return None;
                }
                None => return None,
            },
            signal = signals.next() => match signal {
                Signal::Stop => {
                    tracing::info!("shutting down: draining in-flight batches (up to {} s)", config.shutdown_timeout_secs);
                    return None;
                }
                Signal::Reload => {
                    if let Some(next) = reloaded(config, options) {
                        tracing::info!("reload: draining in-flight batches (up to {} s), then starting the new configuration", config.shutdown_timeout_secs);
                        return Some(Box::new(next));
                    }
                }
            },
            Some(done) = sinks.join_next() => {
                if let Ok((name, Err(e))) = done {
                    tracing::error!(sink = %name, "{e}");
                    state.health.set_failed(format!("sink {name}: {e}"));
                    summary.failed_sink = Some((name, e));
                    return None;
                }
            }
        }
    }
}

/// The configuration file read again on SIGHUP, if it is valid and can replace the running
/// one (the data dir, the dead-letter store and the API address belong to the process and
/// need a restart to change). Otherwise the reason is logged and `None` returned: the
/// running configuration stays.
fn reloaded<S, K>(running: &Config<S, K>, options: &RunOptions) -> Option<Config<S, K>>
where
    S: Configured<dyn SourceKind> + serde::de::DeserializeOwned,
    K: Configured<dyn SinkKind> + serde::de::DeserializeOwned,
{
    let Some(path) = &options.config_path else {
        tracing::warn!("SIGHUP: no configuration file to read again");
        return None;
    };
    if options.once {
        tracing::warn!("SIGHUP: a finite run (--once) is not reloaded");
        return None;
    }
    let next = match Config::<S, K>::load(path) {
        Ok(next) => next,
        Err(e) => {
            tracing::error!("reload refused, the running configuration stays: {e}");
            return None;
        }
    };
    let fixed = [
        ("data_dir", next.data_dir != running.data_dir),
        (
            "dead_letter",
            next.dead_letter_store() != running.dead_letter_store(),
        ),
        ("[api] address", next.api.address != running.api.address),
    ];
    if let Some((what, _)) = fixed.iter().find(|(_, changed)| *changed) {
        tracing::error!(
            "reload refused, the running configuration stays: {what} changed, which only a \
             restart applies"
        );
        return None;
    }
    Some(next)
}

/// Once the stop is set: sources stop at their next block and wait for their batches; the
/// transform ends when they have; sinks end when their input is closed and settled. How
/// it ended, and whether a stop signal came during it (which ends a reload's run).
async fn drain(
    sources: &mut Sources,
    sinks: &mut Sinks,
    signals: &mut Signals,
    deadline: Duration,
    reloading: bool,
    summary: &mut RunSummary,
) -> (Drained, bool) {
    let settle = async {
        while let Some((name, ended)) = sources.next_ended().await {
            if let Err(e) = ended {
                tracing::error!(source = %name, "{e}");
                summary.failed_source.get_or_insert((name, e));
            }
        }
        while let Some(done) = sinks.join_next().await {
            if let Ok((name, Err(e))) = done {
                summary.failed_sink.get_or_insert((name, e));
            }
        }
    };
    let settle = tokio::time::timeout(deadline, settle);
    tokio::pin!(settle);
    // A reload's drain was not asked for by a stop: the first stop signal during it ends
    // the run once the drain is done (the new configuration does not start), a second one
    // at once. Otherwise the signal that started the drain was the first.
    let mut stop_asked = false;
    loop {
        tokio::select! {
            drained = &mut settle => {
                if drained.is_err() {
                    tracing::warn!(
                        "shutdown deadline passed before every source and sink finished: \
                         batches not yet acknowledged are not checkpointed and will be sent \
                         again after a restart (what a sink acknowledged, as the records in a \
                         Security Lake spool, that sink keeps)"
                    );
                    return (Drained::DeadlinePassed, stop_asked);
                }
                return (Drained::All, stop_asked);
            }
            _ = signals.next_stop() => {
                if reloading && !stop_asked {
                    tracing::info!(
                        "stop signal during a reload: the drain goes on, then the run ends \
                         (a second signal stops at once)"
                    );
                    stop_asked = true;
                    continue;
                }
                tracing::warn!(
                    "second signal: stopping now; batches not yet acknowledged are not \
                     checkpointed and will be sent again after a restart"
                );
                return (Drained::Stopped, true);
            }
        }
    }
}

/// Gives up on what did not settle: dropping the sinks fails every share they hold, which
/// releases the sources; they see their batches fail and end. One blocked reading (stdin)
/// is left behind, as the process is about to exit.
async fn abandon(sources: &mut Sources, sinks: &mut Sinks) {
    sinks.abort_all();
    while sinks.join_next().await.is_some() {}
    let _ = tokio::time::timeout(LINGER, async {
        while sources.next_ended().await.is_some() {}
    })
    .await;
}

fn save(checkpoints: &Checkpoints, dead_letters: &DeadLetterFile) -> std::io::Result<()> {
    checkpoints.save_after(|| dead_letters.sync())
}

/// A sink from its settings: what `run` and `check` both use.
fn build_sink(
    name: &str,
    config: &dyn SinkKind,
    metrics: &Metrics,
    dead_letters: Arc<dyn DeadLetters>,
    data_dir: &Path,
) -> Result<Box<dyn Sink>, SinkError> {
    config.build(SinkContext {
        name: name.to_string(),
        metrics: metrics.component("sink", name),
        dead_letters,
        data_dir: data_dir.to_path_buf(),
    })
}

/// The transform stage: filter, enrich each batch once, hand every sink its share.
struct Stage {
    filter: crate::filter::Filter,
    predicate: Option<crate::filter::Where>,
    /// Set when the stage cannot go on: the run stops.
    stop: Arc<Stop>,
    /// Why it could not (then no batch is acknowledged any more).
    failed: Arc<std::sync::Mutex<Option<String>>>,
    enricher: Option<flowlog_enrich::Enricher>,
    metrics: flowlog_component::ComponentMetrics,
    filtered: prometheus_client::metrics::counter::Counter,
    detection: Option<crate::detect::Detection>,
    reduce: Option<crate::reduce::Reducing>,
}

/// How often the stage keeps the enricher up to date while no batch arrives (live
/// inventory snapshots, replaced database files), besides before every batch.
const MAINTAIN_EVERY: Duration = Duration::from_secs(1);
/// How long the input may be quiet before what the stage holds is let go: records held
/// for merging are sent, acknowledgements waiting for the detection state are saved free.
const QUIET: Duration = Duration::from_millis(20);

impl Stage {
    fn run(
        mut self,
        runtime: &tokio::runtime::Handle,
        mut input: mpsc::Receiver<Envelope>,
        sinks: Vec<mpsc::Sender<SinkInput>>,
    ) {
        loop {
            self.maintain(&sinks);
            // What the stage holds goes as soon as the input goes quiet: a source that
            // waits for its batches' acknowledgements (a directory's file, an SQS message)
            // would otherwise wait for `max_hold_secs` (held records) or the detection
            // state's next save (held acknowledgements) each time.
            let holding = self.reduce.as_ref().is_some_and(|r| r.holding());
            let detect_holding = self.detection.as_ref().is_some_and(|d| d.holding());
            let wait = match holding || detect_holding {
                true => QUIET,
                false => MAINTAIN_EVERY,
            };
            // The timer is made inside `block_on`, where the runtime's clock is.
            let next = runtime.block_on(async { tokio::time::timeout(wait, input.recv()).await });
            if next.is_err() {
                if let Some(reduce) = self.reduce.as_mut().filter(|_| holding) {
                    let sent = reduce.flush(&sinks);
                    self.metrics.records_out.inc_by(sent as u64);
                }
                if let Some(detection) = self.detection.as_mut().filter(|_| detect_holding) {
                    if let Err(why) = detection.quiet() {
                        self.fail("detect_state", why);
                    }
                }
            }
            match next {
                Ok(Some(envelope)) => self.process(envelope, &sinks),
                Ok(None) => {
                    if let Some(mut reduce) = self.reduce.take() {
                        let sent = reduce.flush(&sinks);
                        self.metrics.records_out.inc_by(sent as u64);
                        reduce.report();
                    }
                    if let Some(detection) = self.detection.take() {
                        detection.finish();
                    }
                    return;
                }
                Err(_idle) => {}
            }
        }
    }

    /// The rows of `batch` the `where` predicate keeps (all without one). `None` when it
    /// failed on the batch (a cast a value does not fit, a division by zero): neither
    /// passing the records unfiltered nor dropping them is what was asked, so the run
    /// stops, with the batch unacknowledged, to be read again once the predicate is fixed.
    fn apply_where(&mut self, batch: FlowBatch) -> Option<FlowBatch> {
        let Some(predicate) = &mut self.predicate else {
            return Some(batch);
        };
        match predicate.apply(batch) {
            (batch, Ok(dropped)) => {
                self.filtered.inc_by(dropped as u64);
                Some(batch)
            }
            (batch, Err(why)) => {
                let why = format!(
                    "{why} (on {}, from line {})",
                    batch.source,
                    batch.line_numbers.first().copied().unwrap_or(0)
                );
                self.fail("where", why);
                None
            }
        }
    }

    /// Stops the run for `why`: nothing more is delivered, and the run's status says why.
    fn fail(&mut self, what: &'static str, why: String) {
        tracing::error!("{why}; stopping: nothing more is delivered");
        self.metrics.error(what, &why);
        self.failed.lock().expect("not poisoned").get_or_insert(why);
        self.stop.set();
    }

    /// Merges inventory refreshes and reopens replaced databases, logging what changed.
    fn maintain(&mut self, sinks: &[mpsc::Sender<SinkInput>]) {
        if let Some(reduce) = &mut self.reduce {
            if reduce.due() {
                let sent = reduce.flush(sinks);
                self.metrics.records_out.inc_by(sent as u64);
            }
        }
        if let Some(enricher) = &mut self.enricher {
            for notice in enricher.maintain() {
                tracing::info!("enrichment: {notice}");
            }
        }
        if let Some(detection) = &mut self.detection {
            if let Err(why) = detection.maintain() {
                self.fail("detect_state", why);
            }
        }
    }

    fn process(&mut self, Envelope { batch, ack }: Envelope, sinks: &[mpsc::Sender<SinkInput>]) {
        if self.failed.lock().expect("not poisoned").is_some() {
            // Dropped unconfirmed: read again after the fix.
            return;
        }
        self.metrics.records_in.inc_by(batch.num_rows() as u64);
        let (batch, dropped) = self.filter.apply(batch);
        self.filtered.inc_by(dropped as u64);
        // A predicate on the decoded columns alone runs before enrichment, which the
        // records it drops are then spared; one on enrichment columns runs after.
        let early = self
            .predicate
            .as_ref()
            .is_some_and(|p| p.reads_only(&batch.records.schema()));
        let batch = match early {
            true => self.apply_where(batch),
            false => Some(batch),
        };
        let Some(batch) = batch else {
            return; // unconfirmed: the run stops
        };
        if batch.num_rows() == 0 {
            // Nothing left to deliver: the batch is done.
            ack.confirm();
            return;
        }
        let batch = match &mut self.enricher {
            Some(enricher) => enricher.enrich(batch),
            None => batch,
        };
        let batch = match early {
            true => batch,
            false => match self.apply_where(batch) {
                Some(batch) => batch,
                None => return,
            },
        };
        if batch.num_rows() == 0 {
            ack.confirm();
            return;
        }
        if let Some(detection) = &mut self.detection {
            detection.observe(&batch, &ack);
        }
        match &mut self.reduce {
            Some(reduce) => {
                let sent = reduce.take(batch, ack, sinks);
                self.metrics.records_out.inc_by(sent as u64);
            }
            None => {
                self.metrics.records_out.inc_by(batch.num_rows() as u64);
                send(batch, ack, sinks);
            }
        }
    }
}

/// Hands every sink its share of `batch`, then gives up the stage's own share.
fn send(batch: FlowBatch, ack: flowlog_component::Ack, sinks: &[mpsc::Sender<SinkInput>]) {
    if batch.num_rows() == 0 {
        ack.confirm();
        return;
    }
    let batch = Arc::new(batch);
    for sink in sinks {
        let share = SinkInput {
            batch: Arc::clone(&batch),
            ack: ack.clone(),
        };
        // A sink that stopped drops its share unconfirmed: the batch fails.
        let _ = sink.blocking_send(share);
    }
    ack.confirm();
}

impl Stage {}

/// What a signal asks for.
enum Signal {
    /// SIGTERM, SIGINT: drain and exit.
    Stop,
    /// SIGHUP: read the configuration again.
    Reload,
}

/// SIGTERM, SIGINT and SIGHUP, listened to from the start of a run, so that a second
/// signal during the drain is seen too (and SIGHUP never takes its default action, which
/// would end the process).
struct Signals {
    /// A SIGHUP came while a drain could not act on it: the file is read again as soon as
    /// the next configuration runs (an edit made meanwhile is not left unapplied; any
    /// number of such signals count as one).
    reload_pending: bool,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                reload_pending: false,
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {
            reload_pending: false,
        })
    }

    /// The next signal (a reload left pending by a drain first).
    async fn next(&mut self) -> Signal {
        if std::mem::take(&mut self.reload_pending) {
            return Signal::Reload;
        }
        self.receive().await
    }

    async fn receive(&mut self) -> Signal {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }

    /// The next SIGTERM or SIGINT; a SIGHUP meanwhile is kept for when the next
    /// configuration runs.
    async fn next_stop(&mut self) {
        while let Signal::Reload = self.receive().await {
            if !self.reload_pending {
                tracing::info!(
                    "SIGHUP while draining: the file is read again once the drain is over"
                );
            }
            self.reload_pending = true;
        }
    }
}

/// One finding of `flowlog check`.
#[derive(Debug)]
pub struct Finding {
    pub ok: bool,
    pub what: String,
    pub detail: String,
}

/// Validates a configuration and reaches everything it names, without sending records;
/// with `sample`, also reads a sample where that has an effect of its own (see
/// [`CheckOptions::sample`]).
pub fn check<S, K>(config: &Config<S, K>, sample: bool) -> Vec<Finding>
where
    S: Configured<dyn SourceKind>,
    K: Configured<dyn SinkKind>,
{
    look(config, Reach::Everything { sample })
}

/// What `flowlog validate` looks at beyond parsing: the files, directories, certificates
/// and databases the configuration names; never the network, a port or the live EC2
/// inventory, so it runs where the configuration is written, before it is deployed.
pub fn validate<S, K>(config: &Config<S, K>) -> Vec<Finding>
where
    S: Configured<dyn SourceKind>,
    K: Configured<dyn SinkKind>,
{
    look(config, Reach::Local)
}

/// How far `check` and `validate` look.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// This machine's files only.
    Local,
    /// Also the network: queues, receivers, ports.
    Everything { sample: bool },
}

fn look<S, K>(config: &Config<S, K>, reach: Reach) -> Vec<Finding>
where
    S: Configured<dyn SourceKind>,
    K: Configured<dyn SinkKind>,
{
    let mut findings = Vec::new();
    let mut note =
        |ok: bool, what: String, detail: String| findings.push(Finding { ok, what, detail });
    if config.sources.is_empty() {
        // Not a failure: a configuration for `flowlog backfill` needs no source.
        note(
            true,
            "sources".into(),
            "none: only `flowlog backfill` can use this configuration (`run` needs a source)"
                .into(),
        );
    }
    // Nothing here may create or change a file: `check` says what `run` would create.
    let checkpoints = match flowlog_component::writable::directory(&config.data_dir) {
        Ok(detail) => match Checkpoints::load(&config.data_dir) {
            Ok(c) => {
                note(true, "data_dir".into(), detail);
                Some(c)
            }
            Err(e) => {
                note(
                    false,
                    "data_dir".into(),
                    format!("{}: {e}", checkpoints_path(config)),
                );
                None
            }
        },
        Err(e) => {
            note(false, "data_dir".into(), e);
            None
        }
    };
    let (dead_letter, _) = config.dead_letter_store();
    match flowlog_component::writable::file(&dead_letter) {
        Ok(detail) => note(true, "dead_letter".into(), detail),
        Err(e) => note(false, "dead_letter".into(), e),
    }
    match (&config.api.address, reach) {
        // The port is left alone offline: the flowlog this file is about to replace
        // listens there.
        (Some(address), Reach::Local) => note(
            true,
            "api".into(),
            format!("http://{address}/metrics, /health and /ready (not bound by validate)"),
        ),
        // Bound and let go at once: whether `run` could listen there now.
        (Some(address), Reach::Everything { .. }) => match address.bind() {
            Ok(_) => note(
                true,
                "api".into(),
                format!("http://{address}/metrics, /health and /ready"),
            ),
            Err(e) => note(
                false,
                "api".into(),
                format!(
                    "cannot listen on {address}: {e}{}",
                    if e.kind() == std::io::ErrorKind::AddrInUse {
                        " (is another flowlog running there?)"
                    } else {
                        ""
                    }
                ),
            ),
        },
        (None, _) => note(true, "api".into(), "off (no [api] address)".into()),
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    for (name, source) in &config.sources {
        let what = format!("source {name} ({})", source.kind());
        let found = match reach {
            Reach::Local => runtime.block_on(source.spec().check_local()),
            Reach::Everything { sample } => runtime.block_on(source.spec().check(CheckOptions {
                checkpoints: checkpoints.as_ref(),
                sample,
            })),
        };
        for finding in found {
            match finding {
                Ok(detail) => note(true, what.clone(), detail),
                Err(e) => note(false, what.clone(), e.to_string()),
            }
        }
    }
    let mut enrich = config.transform.enrich.clone();
    if reach == Reach::Local && enrich.eni_inventory.iter().any(|p| p.as_os_str() == "ec2") {
        enrich.eni_inventory.retain(|p| p.as_os_str() != "ec2");
        note(
            true,
            "enrichment".into(),
            "live EC2 inventory: not read by validate (check reads it)".into(),
        );
    }
    let mut notices = Vec::new();
    match enrich.build(&mut |n| notices.push(n)) {
        Ok(Some(enricher)) => {
            let databases = enricher.database_labels();
            let databases = if databases.is_empty() {
                "no GeoIP/ASN database".to_string()
            } else {
                databases.join(", ")
            };
            let interfaces = enricher.inventory().len();
            note(
                true,
                "enrichment".into(),
                format!("{databases}; {interfaces} interfaces in the inventory"),
            )
        }
        Ok(None) => note(true, "enrichment".into(), "none configured".into()),
        Err(e) => note(false, "enrichment".into(), e.to_string()),
    }
    for n in notices {
        note(true, "enrichment".into(), n);
    }
    let metrics = Metrics::new();
    for (name, sink_config) in &config.sinks {
        let what = format!("sink {name} ({})", sink_config.kind());
        let letters: Arc<dyn DeadLetters> = Arc::new(NoDeadLetters);
        // Building reads certificates and keys and sets up the client; it sends nothing.
        let checked = runtime.block_on(async {
            let sink = build_sink(
                name,
                sink_config.spec(),
                &metrics,
                letters,
                &config.data_dir,
            )?;
            match reach {
                Reach::Local => Ok("settings, certificates and keys load".to_string()),
                Reach::Everything { .. } => sink.check().await,
            }
        });
        match checked {
            Ok(line) => note(true, what, line),
            Err(e) => note(false, what, e.to_string()),
        }
    }
    findings
}

fn checkpoints_path<S, K>(config: &Config<S, K>) -> String {
    config
        .data_dir
        .join("checkpoints.json")
        .display()
        .to_string()
}

/// `check` sends nothing, so nothing can be refused.
struct NoDeadLetters;

impl DeadLetters for NoDeadLetters {
    fn write(
        &self,
        _: flowlog_component::DeadLetter,
    ) -> Result<(), flowlog_component::DeadLetterError> {
        Ok(())
    }
}
