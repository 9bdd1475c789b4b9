//! The Amazon Security Lake sink: records as OCSF 1.1.0 Network Activity (class 4001) in
//! Parquet, laid out as a custom source's objects
//! (`ext/<source>/region=<region>/accountId=<account>/eventDay=<YYYYMMDD>/<uuid>.parquet`),
//! in the lake's S3 bucket or a local directory.
//!
//! ```toml
//! [sinks.lake]
//! type = "security_lake"
//! bucket = "aws-security-data-lake-us-east-1-abcdefghij"
//! source_name = "vpcflow"
//! region = "us-east-1"
//! role_arn = "arn:aws:iam::111122223333:role/AmazonSecurityLake-Provider-vpcflow-us-east-1"
//! external_id = "flowlog"
//! ```
//!
//! Events are gathered per partition. A partition's object is written when it has been
//! open `roll_interval_secs` (5 minutes by default), when its events reach
//! `max_object_bytes`, when all open objects together pass `max_buffered_bytes` (the
//! largest goes first), and, once the run is ending (a stop signal, or a finite run such
//! as `run --once` or a backfill), as soon as the input is quiet for a second. Each object holds one OCSF class, sorted by
//! `time`, zstd-compressed, in pages of at most 1 MiB.
//!
//! A batch is acknowledged only when every object holding its events is complete (the
//! multipart upload completed, or the file renamed into place): until then a crash loses
//! nothing, because the source reads the batch again and its events go into a new object.
//! `metadata.uid` is the record's deterministic event id, so a reader can tell a replay.
//! Upload failures that can pass (throttling, 5xx, a network) are retried without end
//! while the sources wait; a refusal (access denied, no such bucket) stops the sink.

mod events;
mod object;
mod settings;
mod store;

pub use settings::{Destination, SecurityLakeConfig};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::ProvideCredentials;
use bytes::Bytes;
use flowlog_model::{DeadLetter, FlowBatch};
use events::Events;
use flowlog_normalize::OcsfVersion;
use flowlog_sink::{
    Backoff, BoxFuture, RetryPolicy, Sink, SinkContext, SinkError, SinkInput, SinkKind,
};
use flowlog_source_s3::aws::{s3_client, sdk_config, Connection};
use object::{Encoding, Open, Partition};
use store::Store;
use tokio::sync::mpsc;

/// Security Lake's custom sources take OCSF 1.1.0 (source version 2).
const OCSF_VERSION: OcsfVersion = OcsfVersion::V1_1_0;

/// Once the run is ending, how long the input must be quiet before what is held is
/// written.
const QUIET: Duration = Duration::from_secs(1);

impl SinkKind for SecurityLakeConfig {
    fn validate(&self) -> Result<(), SinkError> {
        self.check()
    }

    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        self.check()?;
        Ok(Box::new(SecurityLakeSink {
            config: self.clone(),
            ctx,
        }))
    }
}

/// A configured Security Lake sink.
pub struct SecurityLakeSink {
    config: SecurityLakeConfig,
    ctx: SinkContext,
}

impl Sink for SecurityLakeSink {
    fn name(&self) -> &str {
        &self.ctx.name
    }

    fn run(
        self: Box<Self>,
        input: mpsc::Receiver<SinkInput>,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(async move {
            let store = self.store().await?;
            Writer::new(*self, store).run(input).await
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(async move {
            let store = self.store().await?;
            store
                .check(&self.config.prefix())
                .await
                .map(|found| format!("{found}; OCSF {} Parquet", OCSF_VERSION.as_str()))
                .map_err(|message| SinkError::Unreachable {
                    sink: self.ctx.name.clone(),
                    message,
                })
        })
    }
}

impl SecurityLakeSink {
    /// The bucket's client (through the provider role when one is set), or the directory.
    async fn store(&self) -> Result<Store, SinkError> {
        let config = &self.config;
        let bucket = match config.destination()? {
            Destination::Directory(dir) => return Ok(Store::Directory(dir)),
            Destination::Bucket(bucket) => bucket,
        };
        let mut sdk = sdk_config(&Connection {
            region: config.region.as_deref(),
            profile: config.profile.as_deref(),
            endpoint_url: config.endpoint_url.as_deref(),
        })
        .await;
        if let Some(role) = &config.role_arn {
            let mut provider = AssumeRoleProvider::builder(role)
                .session_name(format!("flowlog-{}", self.ctx.name))
                .configure(&sdk);
            if let Some(id) = &config.external_id {
                provider = provider.external_id(id);
            }
            let provider = provider.build().await;
            // Assumed once now, so that a role flowlog may not assume (or whose trust
            // policy wants another external id) is said as such, at start.
            provider
                .provide_credentials()
                .await
                .map_err(|e| SinkError::Unreachable {
                    sink: self.ctx.name.clone(),
                    message: format!(
                    "assuming {role}{}: {} (refused: flowlog needs sts:AssumeRole on the role, \
                     and the role's trust policy must name flowlog's identity{})",
                    if config.external_id.is_some() { " with the external id" } else { "" },
                    flowlog_model::error_chain(&e),
                    if config.external_id.is_some() { " and that external id" } else { "" },
                ),
                })?;
            sdk = sdk
                .into_builder()
                .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(provider))
                .build();
        }
        Ok(Store::Bucket {
            client: s3_client(&sdk, config.force_path_style),
            bucket,
        })
    }
}

/// The running sink: open objects by partition.
struct Writer {
    config: SecurityLakeConfig,
    ctx: SinkContext,
    store: Store,
    events: Events,
    encoding: Encoding,
    prefix: String,
    open: HashMap<Partition, Open>,
    buffered: usize,
}

impl Writer {
    fn new(sink: SecurityLakeSink, store: Store) -> Self {
        let encoding = Encoding {
            zstd_level: sink.config.zstd_level,
            row_group_rows: sink.config.row_group_rows,
        };
        Self {
            prefix: sink.config.prefix(),
            config: sink.config,
            ctx: sink.ctx,
            store,
            events: Events::new(OCSF_VERSION),
            encoding,
            open: HashMap::new(),
            buffered: 0,
        }
    }

    async fn run(mut self, mut input: mpsc::Receiver<SinkInput>) -> Result<(), SinkError> {
        let interval = self.config.roll_interval();
        let ending = Arc::clone(&self.ctx.ending);
        let mut last_batch = Instant::now();
        loop {
            let mut due = self.open.values().map(|o| o.opened + interval).min();
            if ending.is_set() && !self.open.is_empty() {
                // The sources wait for what they sent: once the input is quiet, nothing
                // held is worth waiting for.
                due = due.min(Some(last_batch + QUIET));
            }
            let received = tokio::select! {
                received = input.recv() => received,
                () = sleep_until(due) => {
                    if ending.is_set() && last_batch.elapsed() >= QUIET {
                        self.roll_all().await?;
                    } else {
                        self.roll_due(interval).await?;
                    }
                    continue;
                }
                () = ending.wait(), if !ending.is_set() => continue,
            };
            let Some(SinkInput { batch, ack }) = received else {
                break;
            };
            last_batch = Instant::now();
            self.take(&batch, ack)?;
            self.roll_full().await?;
        }
        // The input is closed: everything still open is written before the sink ends.
        self.roll_all().await
    }

    async fn roll_all(&mut self) -> Result<(), SinkError> {
        let mut all: Vec<Partition> = self.open.keys().cloned().collect();
        all.sort();
        for partition in all {
            self.roll(&partition).await?;
        }
        Ok(())
    }

    /// Converts a batch and files its events under their partitions.
    fn take(&mut self, batch: &FlowBatch, ack: flowlog_sink::Ack) -> Result<(), SinkError> {
        let metrics = &self.ctx.metrics;
        metrics.records_in.inc_by(batch.num_rows() as u64);
        let events = self.events.convert(batch).map_err(|e| self.io(e))?;
        let object::Split { parts, orphans } = object::split(
            &events,
            self.config.region.as_deref(),
            self.config.account_id.as_deref(),
        )
        .map_err(|e| self.io(e))?;
        for row in orphans {
            self.dead_letter(batch, &events, row)?;
        }
        for (partition, part) in parts {
            let bytes = part.get_array_memory_size();
            self.buffered += bytes;
            self.open
                .entry(partition)
                .or_insert_with(Open::new)
                .push(part, ack.clone());
        }
        // This share (the rows dead-lettered) is done; the partitions hold the rest.
        ack.confirm();
        Ok(())
    }

    fn dead_letter(
        &self,
        batch: &FlowBatch,
        events: &RecordBatch,
        row: usize,
    ) -> Result<(), SinkError> {
        let mut raw = Vec::new();
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut raw);
        writer
            .write(&events.slice(row, 1))
            .and_then(|()| writer.finish())
            .map_err(|e| self.io(e))?;
        let line = batch.line_numbers.get(row).copied().unwrap_or_default();
        self.ctx
            .dead_letters
            .write(DeadLetter::new(
                &batch.source,
                line,
                format!("{}: {}", self.ctx.name, object::NO_ACCOUNT),
                raw.trim_ascii_end(),
            ))
            .map_err(|e| self.io(e))?;
        self.ctx.metrics.dead_letters.inc();
        Ok(())
    }

    /// Writes the objects open for `interval` or longer.
    async fn roll_due(&mut self, interval: Duration) -> Result<(), SinkError> {
        let due: Vec<Partition> = self
            .open
            .iter()
            .filter(|(_, o)| o.opened.elapsed() >= interval)
            .map(|(p, _)| p.clone())
            .collect();
        for partition in due {
            self.roll(&partition).await?;
        }
        Ok(())
    }

    /// Writes objects that reached their size, then the largest while all together are
    /// past theirs.
    async fn roll_full(&mut self) -> Result<(), SinkError> {
        let full: Vec<Partition> = self
            .open
            .iter()
            .filter(|(_, o)| o.bytes >= self.config.max_object_bytes)
            .map(|(p, _)| p.clone())
            .collect();
        for partition in full {
            self.roll(&partition).await?;
        }
        while self.buffered > self.config.max_buffered_bytes {
            let largest = self
                .open
                .iter()
                .max_by_key(|(_, o)| o.bytes)
                .map(|(p, _)| p.clone())
                .expect("bytes are buffered in some object");
            self.roll(&largest).await?;
        }
        Ok(())
    }

    /// Writes one partition's object and acknowledges what it holds.
    async fn roll(&mut self, partition: &Partition) -> Result<(), SinkError> {
        let Some(open) = self.open.remove(partition) else {
            return Ok(());
        };
        self.buffered -= open.bytes;
        let Open {
            batches,
            rows,
            acks,
            ..
        } = open;
        let schema = self.events.schema().clone();
        let encoding = self.encoding.clone();
        let body =
            tokio::task::spawn_blocking(move || object::parquet(&schema, &batches, &encoding))
                .await
                .map_err(|e| self.io(e))?
                .map_err(|e| self.io(e))?;
        let body = Bytes::from(body);
        let key = partition.key(&self.prefix, &format!("{}.parquet", uuid::Uuid::new_v4()));
        let mut backoff = Backoff::new(RetryPolicy {
            initial: flowlog_component::duration::duration(self.config.retry_initial_backoff_secs),
            max: flowlog_component::duration::duration(self.config.retry_max_backoff_secs),
        });
        loop {
            match self.store.put(&key, body.clone()).await {
                Ok(()) => break,
                Err(e) if e.transient => {
                    let wait = backoff.next_delay(None);
                    tracing::warn!(
                        "{}: {} (attempt {}, retrying in {:.1} s)",
                        self.ctx.name,
                        e.message,
                        backoff.attempts(),
                        wait.as_secs_f64()
                    );
                    self.ctx.metrics.retries.inc();
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    return Err(SinkError::Io {
                        sink: self.ctx.name.clone(),
                        message: e.message,
                    })
                }
            }
        }
        tracing::debug!("{}: wrote {rows} events to {key}", self.ctx.name);
        self.ctx.metrics.records_out.inc_by(rows as u64);
        self.ctx.metrics.bytes_out.inc_by(body.len() as u64);
        for ack in acks {
            ack.confirm();
        }
        Ok(())
    }

    fn io(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::Io {
            sink: self.ctx.name.clone(),
            message: e.to_string(),
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// `flowlog transform --to ocsf --output-format parquet`: OCSF events written as one
/// Parquet file, in the order read (the same schema and encoding the sink writes).
pub struct ParquetOutput<W: std::io::Write + Send> {
    events: Events,
    writer: parquet::arrow::ArrowWriter<W>,
}

impl<W: std::io::Write + Send> ParquetOutput<W> {
    pub fn new(output: W, version: OcsfVersion) -> Result<Self, parquet::errors::ParquetError> {
        let events = Events::new(version);
        let properties = object::properties(&Encoding {
            zstd_level: 3,
            row_group_rows: 128 * 1024,
        })?;
        let writer = parquet::arrow::ArrowWriter::try_new(
            output,
            events.schema().clone(),
            Some(properties),
        )?;
        Ok(Self { events, writer })
    }

    pub fn write(
        &mut self,
        batch: &FlowBatch,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let events = self.events.convert(batch)?;
        self.writer.write(&events)?;
        Ok(())
    }

    /// Writes the footer; the output is a Parquet file only after this.
    pub fn finish(self) -> Result<W, parquet::errors::ParquetError> {
        self.writer.into_inner()
    }
}
