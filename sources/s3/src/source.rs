//! The `s3` source: plans (or takes a plan), then reads each object once, several at a
//! time, each on a thread of its own; an object's checkpoint marks it done once every
//! record of it is delivered or dead-lettered, so a run started again reads only the
//! objects not done (and, of an object begun, only what was not acknowledged).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use flowlog_component::BoxFuture;
use flowlog_model::{error_chain, DeadLetter, SourceId};
use flowlog_source::checkpoint::{key_of, FileCheckpoint};
use flowlog_source::{
    threaded, CheckOptions, Emit, Findings, Progress, Source, SourceContext, SourceError,
    SourceKind,
};

use crate::aws;
use crate::listing::{DirectoryListing, ObjectInfo, S3Listing};
use crate::object::{decode_body, get, is_missing, unquoted, Decoded, ObjectRef, Unread};
use crate::plan::{plan, Filter, Plan};
use crate::settings::{Location, S3Source};

/// What S3 needs to allow for a backfill to read an object.
pub(crate) const GET_NEEDS: &str = "s3:GetObject (and kms:Decrypt for SSE-KMS objects)";

/// Attempts at an object whose reading fails for a reason that may pass (S3 slow or
/// unreachable, a stalled body), before it is left for a later run.
const ATTEMPTS: u32 = 3;

impl SourceKind for S3Source {
    fn format(&self) -> Option<&str> {
        self.format.as_deref()
    }

    fn validate(&self) -> Result<(), SourceError> {
        self.settings_hold().map_err(SourceError::Config)
    }

    fn build(&self, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
        self.validate()?;
        let location = Location::parse(&self.url).map_err(SourceError::Config)?;
        if let Location::Directory { prefix } = &location {
            let dir = format!("/{prefix}");
            std::fs::read_dir(&dir).map_err(|e| SourceError::Unavailable(format!("{dir}: {e}")))?;
        }
        let planned = match &self.plan_file {
            Some(path) => Some(read_plan(path).map_err(SourceError::Unavailable)?),
            None => None,
        };
        let settings = self.clone();
        Ok(threaded(ctx, move |ctx| {
            run(ctx, &settings, location, planned)
        }))
    }

    fn check<'a>(&'a self, _options: CheckOptions<'a>) -> BoxFuture<'a, Findings> {
        Box::pin(check(self))
    }

    fn check_local(&self) -> BoxFuture<'_, Findings> {
        Box::pin(async move {
            match Location::parse(&self.url) {
                Ok(Location::Directory { .. }) => check(self).await,
                _ => Findings::new(),
            }
        })
    }
}

/// A plan as kept in a file: what was asked, and the objects found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlanFile {
    pub url: String,
    pub since: String,
    pub until: String,
    pub objects: Vec<ObjectInfo>,
}

fn read_plan(path: &Path) -> Result<PlanFile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Where objects are read from.
pub(crate) enum Reader {
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
    Directory,
}

impl Reader {
    /// The reader for `location`: an S3 client from the settings and the AWS chain, made
    /// once for listing and reading.
    pub(crate) async fn new(settings: &S3Source, location: &Location) -> Self {
        match location {
            Location::S3 { bucket, .. } => Reader::S3 {
                client: s3_client(settings).await,
                bucket: bucket.clone(),
            },
            Location::Directory { .. } => Reader::Directory,
        }
    }

    /// Lists what `filter` asks for under `location`.
    pub(crate) async fn plan(&self, location: &Location, filter: &Filter) -> Result<Plan, String> {
        let (Location::S3 { prefix, .. } | Location::Directory { prefix }) = location;
        let planned = match self {
            Reader::S3 { client, bucket } => {
                let listing = S3Listing {
                    client: client.clone(),
                    bucket: bucket.clone(),
                };
                plan(&listing, prefix, filter).await
            }
            Reader::Directory => plan(&DirectoryListing::new("/"), prefix, filter).await,
        };
        planned.map_err(|e| e.to_string())
    }
}

async fn s3_client(settings: &S3Source) -> aws_sdk_s3::Client {
    let config = aws::sdk_config(&aws::Connection {
        region: settings.region.as_deref(),
        profile: settings.profile.as_deref(),
        endpoint_url: settings.endpoint_url.as_deref(),
    })
    .await;
    aws::s3_client(&config, settings.s3_force_path_style)
}

fn run(
    ctx: &SourceContext,
    settings: &S3Source,
    location: Location,
    planned: Option<PlanFile>,
) -> Result<(), SourceError> {
    let reader = ctx.runtime.block_on(Reader::new(settings, &location));
    let objects = match planned {
        Some(plan) => plan.objects,
        None => {
            let filter = settings.filter().map_err(SourceError::Config)?;
            let plan = ctx
                .runtime
                .block_on(reader.plan(&location, &filter))
                .map_err(SourceError::Unavailable)?;
            for warning in &plan.warnings {
                tracing::warn!(source = %ctx.name, "{warning}");
            }
            tracing::info!(
                source = %ctx.name,
                "{}: {} objects ({} bytes) to read",
                settings.url,
                plan.objects.len(),
                plan.bytes()
            );
            plan.objects
        }
    };
    let tally = settings.tally.clone().unwrap_or_default();
    tally.planned(objects.len() as u64, objects.iter().map(|o| o.size).sum());
    tally.count_records(&ctx.metrics.records_in);
    let timeout = Duration::from_secs(settings.read_timeout_secs);
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let work = || loop {
        if ctx.stopping() {
            return;
        }
        let Some(object) = objects.get(next.fetch_add(1, Ordering::Relaxed)) else {
            return;
        };
        let read = match &reader {
            Reader::S3 { client, bucket } => read_s3(ctx, client, bucket, object, timeout),
            Reader::Directory => read_local(ctx, object),
        };
        match read {
            Ok(Read::Done) => tally.done(object.size, false),
            Ok(Read::AlreadyDone) => tally.done(object.size, true),
            Ok(Read::Stopped) => {}
            Err(why) => {
                tally.failed();
                ctx.metrics.error("read", &why);
                failed.lock().unwrap().push(why);
            }
        }
    };
    std::thread::scope(|scope| {
        for i in 0..settings.workers.min(objects.len()) {
            std::thread::Builder::new()
                .name(format!("{}-{i}", ctx.name))
                .spawn_scoped(scope, work)
                .expect("a thread starts");
        }
    });
    SourceError::unless_failed(failed.into_inner().unwrap())
}

/// How reading one object ended, when it did not fail.
enum Read {
    Done,
    /// Its checkpoint said so: not read again.
    AlreadyDone,
    Stopped,
}

/// A local object: read as the file source reads one (its checkpoint is its path's).
fn read_local(ctx: &SourceContext, object: &ObjectInfo) -> Result<Read, String> {
    let path = format!("/{}", object.key);
    if ctx
        .checkpoints
        .get(&key_of(Path::new(&path)))
        .is_some_and(|c| c.done)
    {
        return Ok(Read::AlreadyDone);
    }
    if let Err(e) = std::fs::symlink_metadata(&path) {
        if e.kind() == std::io::ErrorKind::NotFound {
            let key = key_of(Path::new(&path));
            return gone(ctx, &key, format!("the file is gone: {e}"));
        }
    }
    flowlog_source_file::read_once(ctx, Path::new(&path))?;
    Ok(match ctx.stopping() {
        true => Read::Stopped,
        false => Read::Done,
    })
}

/// A planned object deleted since it was listed (a lifecycle rule, a clean-up): what it
/// held cannot be read, which is said where every loss is, and it is done.
fn gone(ctx: &SourceContext, key: &str, reason: String) -> Result<Read, String> {
    tracing::warn!(source = %ctx.name, object = %key, "{reason}; dead-lettered");
    ctx.dead_letter(DeadLetter::new(&SourceId::new(key), 0, reason, b""))
        .map_err(|e| e.to_string())?;
    ctx.checkpoints.set(
        key,
        FileCheckpoint {
            done: true,
            ..FileCheckpoint::default()
        },
    );
    Ok(Read::Done)
}

/// An S3 object, tried up to [`ATTEMPTS`] times.
fn read_s3(
    ctx: &SourceContext,
    client: &aws_sdk_s3::Client,
    bucket: &str,
    object: &ObjectInfo,
    timeout: Duration,
) -> Result<Read, String> {
    let planned = ObjectRef {
        bucket: bucket.to_string(),
        key: object.key.clone(),
        raw_key: None,
        version_id: None,
        etag: object.etag.clone(),
        size: Some(object.size),
    };
    // The plan's identity keys the checkpoint: known before the object is asked for.
    let key = planned.identity();
    let mut backoff = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let checkpoint = ctx.checkpoints.get(&key).unwrap_or_default();
        if checkpoint.done {
            return Ok(if attempt == 1 {
                Read::AlreadyDone
            } else {
                Read::Done
            });
        }
        match read_s3_once(ctx, client, &planned, &key, &checkpoint, timeout) {
            Ok(read) => return Ok(read),
            Err(why) if attempt == ATTEMPTS => {
                let why = format!("{key}: {why} (given up after {ATTEMPTS} attempts)");
                tracing::error!(source = %ctx.name, "{why}");
                return Err(why);
            }
            Err(why) => {
                tracing::warn!(source = %ctx.name, "{key}: {why}; trying again in {} s", backoff.as_secs());
                ctx.metrics.retries.inc();
                let mut left = backoff;
                while !left.is_zero() {
                    if ctx.stopping() {
                        return Ok(Read::Stopped);
                    }
                    let step = left.min(Duration::from_millis(100));
                    std::thread::sleep(step);
                    left -= step;
                }
                backoff *= 2;
            }
        }
    }
    unreachable!("the last attempt returns")
}

fn read_s3_once(
    ctx: &SourceContext,
    client: &aws_sdk_s3::Client,
    planned: &ObjectRef,
    key: &str,
    checkpoint: &FileCheckpoint,
    timeout: Duration,
) -> Result<Read, String> {
    let output = match ctx.runtime.block_on(get(client, planned)) {
        Ok(output) => output,
        Err(e) if is_missing(&e) => {
            return gone(ctx, key, format!("the object is gone: {}", error_chain(&e)))
        }
        Err(e) => return Err(aws::explain(&e, "S3", GET_NEEDS)),
    };
    // Event ids come from what was read: the version S3 says it served (as a
    // notification of a versioned bucket names it), else the ETag, as the SQS source's.
    let read = ObjectRef {
        version_id: output
            .version_id()
            .filter(|v| *v != "null")
            .map(str::to_string),
        etag: output.e_tag().map(unquoted).or(planned.etag.clone()),
        ..planned.clone()
    };
    let size = output.content_length().unwrap_or(0).max(0) as u64;
    let mut progress = Progress::new(Some(key.to_string()), (0, 0), checkpoint);
    let mut emit = Emit::new(ctx, &mut progress, checkpoint);
    let decoded = decode_body(
        ctx,
        SourceId::new(read.identity()),
        output.body,
        timeout,
        &mut emit,
        |emit| emit.gone(),
    );
    drop(emit);
    match decoded {
        Ok(Decoded::Whole) => match progress.finish(&ctx.checkpoints, true) {
            true => Ok(Read::Done),
            false if ctx.stopping() => Ok(Read::Stopped),
            false => Err("not every batch was delivered".into()),
        },
        Ok(Decoded::Corrupt(e)) => {
            flowlog_source::quarantine(ctx, key, size, &e, &mut progress);
            Ok(Read::Done)
        }
        Err(Unread::Stopped) => {
            progress.finish(&ctx.checkpoints, false);
            Ok(Read::Stopped)
        }
        Err(Unread::Failed(why)) => {
            progress.finish(&ctx.checkpoints, false);
            Err(why)
        }
    }
}

/// `flowlog check`: the listing the plan needs, and reading the first byte of one object
/// found (a ranged GetObject, which changes nothing).
async fn check(settings: &S3Source) -> Findings {
    let (location, filter) = match (Location::parse(&settings.url), settings.filter()) {
        (Ok(location), Ok(filter)) => (location, filter),
        (Err(e), _) | (_, Err(e)) => return vec![Err(SourceError::Config(e))],
    };
    let reader = Reader::new(settings, &location).await;
    let plan = match reader.plan(&location, &filter).await {
        Ok(plan) => plan,
        Err(e) => return vec![Err(SourceError::Unavailable(e))],
    };
    let mut findings: Findings = plan
        .warnings
        .iter()
        .map(|w| Ok(format!("note: {w}")))
        .collect();
    findings.push(Ok(format!(
        "{}: {} objects ({} bytes) in {} prefixes listed{}",
        settings.url,
        plan.objects.len(),
        plan.bytes(),
        plan.prefixes.len(),
        match plan.style {
            Some(crate::layout::Style::Plain) => ", AWS's layout",
            Some(crate::layout::Style::Hive) => ", AWS's Hive-compatible layout",
            None => "",
        }
    )));
    let (Reader::S3 { client, bucket }, Some(first)) = (&reader, plan.objects.first()) else {
        return findings;
    };
    let uri = format!("s3://{bucket}/{}", first.key);
    let read = client
        .get_object()
        .bucket(bucket)
        .key(&first.key)
        .range("bytes=0-0")
        .send();
    findings.push(
        match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(Ok(_)) => Ok(format!("s3:GetObject on {uri}: readable")),
            Ok(Err(e)) => Err(SourceError::Unavailable(format!(
                "s3:GetObject on {uri}: {}",
                aws::explain(&e, "S3", GET_NEEDS)
            ))),
            Err(_) => Err(SourceError::Unavailable(format!(
                "s3:GetObject on {uri}: no answer in 30 s"
            ))),
        },
    );
    findings
}
