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
//! Events are gathered per partition in a spool in the data dir ([`spool`]). A
//! partition's object is written when it has been open `roll_interval_secs` (5 minutes by
//! default), when its events reach `max_object_bytes`, when all open objects together pass
//! `max_buffered_bytes` (the largest goes first), and when the run ends. Each object holds
//! one OCSF class, sorted by `time`, zstd-compressed, in pages of at most 1 MiB.
//!
//! A batch is acknowledged once its events are in the spool and on disk (fsync), so the
//! sources, which hold each SQS message, Firehose request or file until then, are not held
//! for the minutes an object stays open; a spool file is deleted only once its object is
//! complete (the `PutObject` or multipart upload answered, or the file renamed into place),
//! and a run writes what an earlier one left before anything else. `metadata.uid` is the
//! record's deterministic event id, so a reader can tell a record written twice (a crash
//! between an upload and the deletion of its spool file). Upload failures that can pass
//! (throttling, 5xx, a network) are retried without end; a refusal (access denied, no
//! such bucket) stops the sink, and the spool waits for the next run.

mod events;
mod object;
mod settings;
mod spool;
mod store;

pub use settings::{Destination, SecurityLakeConfig};

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::ProvideCredentials;
use bytes::Bytes;
use events::Events;
use flowlog_model::{DeadLetter, FlowBatch};
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
            let (store, region) = self.store().await?;
            Writer::new(*self, store, region).run(input).await
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(async move {
            let unreachable = |message| SinkError::Unreachable {
                sink: self.ctx.name.clone(),
                message,
            };
            let spool = spool::Spool::new(&self.ctx.data_dir, &self.ctx.name);
            let mut spooled = flowlog_component::writable::directory(spool.dir())
                .map_err(|e| unreachable(format!("spool: {e}")))?;
            for (dir, files) in spool.others() {
                spooled.push_str(&format!(
                    "; {} holds {files} spool file(s) of a sink by that name (renamed or \
                     removed?)",
                    dir.display()
                ));
            }
            let (store, region) = self.store().await?;
            let found = store
                .check(&self.config.prefix())
                .await
                .map_err(unreachable)?;
            let region = match region {
                Some(region) => format!("records without a region go under region={region}"),
                None => "records without a region are dead letters (no `region`)".into(),
            };
            Ok(format!(
                "{found}; OCSF {} Parquet; {region}; spool {spooled}",
                OCSF_VERSION.as_str()
            ))
        })
    }
}

impl SecurityLakeSink {
    /// The bucket's client (through the provider role when one is set), or the directory;
    /// and the region of records that name none (the setting, else the AWS chain's).
    async fn store(&self) -> Result<(Store, Option<String>), SinkError> {
        let config = &self.config;
        let bucket = match config.destination()? {
            Destination::Directory(dir) => {
                return Ok((Store::Directory(dir), config.region.clone()))
            }
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
        let region = sdk.region().map(|r| r.to_string());
        Ok((
            Store::Bucket {
                client: s3_client(&sdk, config.force_path_style),
                bucket,
            },
            region,
        ))
    }
}

/// The running sink: open objects by partition, each in a spool file.
struct Writer {
    config: SecurityLakeConfig,
    ctx: SinkContext,
    store: Store,
    spool: spool::Spool,
    events: Events,
    encoding: Encoding,
    prefix: String,
    /// The partition of records that name no region.
    region: Option<String>,
    open: HashMap<Partition, Open>,
    buffered: usize,
}

impl Writer {
    fn new(sink: SecurityLakeSink, store: Store, region: Option<String>) -> Self {
        let encoding = Encoding {
            zstd_level: sink.config.zstd_level,
            row_group_rows: sink.config.row_group_rows,
        };
        Self {
            prefix: sink.config.prefix(),
            spool: spool::Spool::new(&sink.ctx.data_dir, &sink.ctx.name),
            config: sink.config,
            ctx: sink.ctx,
            store,
            events: Events::new(OCSF_VERSION),
            encoding,
            region,
            open: HashMap::new(),
            buffered: 0,
        }
    }

    async fn run(mut self, mut input: mpsc::Receiver<SinkInput>) -> Result<(), SinkError> {
        self.write_leftovers().await?;
        let interval = self.config.roll_interval();
        loop {
            let due = self.open.values().map(|o| o.opened + interval).min();
            let received = tokio::select! {
                received = input.recv() => received,
                () = sleep_until(due) => {
                    self.roll_due(interval).await?;
                    continue;
                }
            };
            let Some(SinkInput { batch, ack }) = received else {
                break;
            };
            self.take(&batch).await?;
            // Every event of the batch is in the spool and on disk.
            ack.confirm();
            self.roll_full().await?;
        }
        // The run is ending: what is open is written now rather than left to the next run
        // (a sidecar's disk may not come back).
        self.roll_where(|_| true).await
    }

    /// Writes the objects of the spool files an earlier run left.
    async fn write_leftovers(&mut self) -> Result<(), SinkError> {
        self.store.clear_staging().map_err(|e| self.io(e))?;
        let leftovers = self.spool.leftovers().map_err(|e| self.spool_error(e))?;
        if !leftovers.is_empty() {
            tracing::info!(
                "{}: writing {} object(s) an earlier run left in {}",
                self.ctx.name,
                leftovers.len(),
                self.spool.dir().display()
            );
        }
        for (partition, path) in leftovers {
            self.write_object(&partition, path).await?;
        }
        for (dir, files) in self.spool.others() {
            tracing::warn!(
                "{}: {} holds {files} spool file(s) of a sink by that name: if it was \
                 renamed or removed, its acknowledged records wait there (rename the folder \
                 to this sink's, {}, to write them)",
                self.ctx.name,
                dir.display(),
                self.spool.dir().display()
            );
        }
        Ok(())
    }

    /// Converts a batch and appends its events to their partitions' spool files, durably.
    async fn take(&mut self, batch: &FlowBatch) -> Result<(), SinkError> {
        let metrics = &self.ctx.metrics;
        metrics.records_in.inc_by(batch.num_rows() as u64);
        let events = self.convert(batch)?;
        let object::Split { parts, orphans } = object::split(
            &events.events,
            self.region.as_deref(),
            self.config.account_id.as_deref(),
        )
        .map_err(|e| self.io(e))?;
        for (at, why) in orphans {
            self.orphan(batch, events.rows[at], why, (&events.events, at))?;
        }
        let mut touched: Vec<Partition> = Vec::with_capacity(parts.len());
        for (partition, part) in parts {
            let bytes = part.get_array_memory_size();
            if !self.open.contains_key(&partition) {
                // Each open object holds a file: past the limit, the largest one this
                // batch has not touched is written (else the largest), so a batch naming
                // thousands of partitions cannot run out of file descriptors.
                while self.open.len() >= self.config.max_open_objects {
                    let largest = self
                        .largest(&touched)
                        .or_else(|| self.largest(&[]))
                        .expect("objects are open");
                    touched.retain(|p| p != &largest);
                    self.roll(&largest).await?;
                }
                let file = self
                    .spool
                    .create(&partition, self.events.schema())
                    .map_err(|e| self.spool_error(e))?;
                self.open.insert(partition.clone(), Open::new(file));
            }
            let open = self.open.get_mut(&partition).expect("just opened");
            open.append(&part, bytes).map_err(|e| self.spool_error(e))?;
            self.buffered += bytes;
            touched.push(partition);
        }
        for partition in touched {
            if let Some(open) = self.open.get_mut(&partition) {
                open.file.sync().map_err(|e| self.spool_error(e))?;
            }
        }
        Ok(())
    }

    /// The batch as events; a record the columns cannot hold is a dead letter.
    fn convert(&mut self, batch: &FlowBatch) -> Result<events::Converted, SinkError> {
        let converted = self.events.convert_each(batch).map_err(|e| self.io(e))?;
        for (row, why) in &converted.rejected {
            let letter = events::rejected(batch, *row, why);
            self.dead_letter(DeadLetter {
                reason: format!("{}: {}", self.ctx.name, letter.reason),
                ..letter
            })?;
        }
        Ok(converted)
    }

    /// A record without a partition, with its event as JSON.
    fn orphan(
        &self,
        batch: &FlowBatch,
        row: usize,
        why: &str,
        (events, at): (&RecordBatch, usize),
    ) -> Result<(), SinkError> {
        let mut raw = Vec::new();
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut raw);
        writer
            .write(&events.slice(at, 1))
            .and_then(|()| writer.finish())
            .map_err(|e| self.io(e))?;
        let line = batch.line_numbers.get(row).copied().unwrap_or_default();
        let reason = format!("{}: {why}", self.ctx.name);
        self.dead_letter(DeadLetter::new(
            &batch.source,
            line,
            reason,
            raw.trim_ascii_end(),
        ))
    }

    fn dead_letter(&self, letter: DeadLetter) -> Result<(), SinkError> {
        self.ctx
            .dead_letters
            .write(letter)
            .map_err(|e| self.io(e))?;
        self.ctx.metrics.dead_letters.inc();
        Ok(())
    }

    /// Writes the objects open for `interval` or longer.
    async fn roll_due(&mut self, interval: Duration) -> Result<(), SinkError> {
        self.roll_where(|o| o.opened.elapsed() >= interval).await
    }

    /// Writes objects that reached their size, then the largest while all together are
    /// past theirs.
    async fn roll_full(&mut self) -> Result<(), SinkError> {
        let most = self.config.max_object_bytes;
        self.roll_where(|o| o.bytes >= most).await?;
        while self.buffered > self.config.max_buffered_bytes {
            let largest = self
                .largest(&[])
                .expect("bytes are buffered in some object");
            self.roll(&largest).await?;
        }
        Ok(())
    }

    /// Writes the open objects `due` picks, in partition order.
    async fn roll_where(&mut self, due: impl Fn(&Open) -> bool) -> Result<(), SinkError> {
        let mut picked: Vec<Partition> = self
            .open
            .iter()
            .filter(|(_, o)| due(o))
            .map(|(p, _)| p.clone())
            .collect();
        picked.sort();
        for partition in picked {
            self.roll(&partition).await?;
        }
        Ok(())
    }

    /// The open object whose events take the most memory, besides those in `except`.
    fn largest(&self, except: &[Partition]) -> Option<Partition> {
        self.open
            .iter()
            .filter(|(p, _)| !except.contains(p))
            .max_by_key(|(_, o)| o.bytes)
            .map(|(p, _)| p.clone())
    }

    /// Ends one partition's spool file and writes its object.
    async fn roll(&mut self, partition: &Partition) -> Result<(), SinkError> {
        let Some(open) = self.open.remove(partition) else {
            return Ok(());
        };
        self.buffered -= open.bytes;
        let path = open.file.finish().map_err(|e| self.spool_error(e))?;
        self.write_object(partition, path).await
    }

    /// The object of a spool file: read back, sorted, encoded, stored, then the file
    /// deleted.
    async fn write_object(
        &mut self,
        partition: &Partition,
        path: PathBuf,
    ) -> Result<(), SinkError> {
        let encoding = self.encoding.clone();
        let schema = self.events.schema().clone();
        let read_from = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let (batches, torn) = match spool::read(&read_from)? {
                spool::Read::Whole { batches, torn } => (batches, torn),
                spool::Read::Damaged(why) => return Ok(Err(why)),
            };
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            // An earlier version's spool is written in its own schema; a file of another
            // shape is not a spool file.
            let schema = batches.first().map_or(schema, RecordBatch::schema);
            let has_time = schema
                .field_with_name("time")
                .is_ok_and(|f| f.data_type() == &arrow_schema::DataType::Int64);
            if !has_time {
                return Ok(Err("it holds no OCSF events (no `time`)".to_string()));
            }
            let body = (rows > 0)
                .then(|| object::parquet(&schema, &batches, &encoding))
                .transpose()
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(Ok((body, rows, torn)))
        })
        .await
        .map_err(|e| self.io(e))?
        .map_err(|e| self.io(format!("{}: {e}", path.display())))?;
        let (body, rows, torn) = match written {
            Ok(written) => written,
            Err(why) => {
                // Acknowledged records that cannot be read back: kept aside, and said
                // loudly; the next run goes on without the file.
                let kept = spool::quarantine(&path).map_err(|e| self.spool_error(e))?;
                return Err(self.io(format!(
                    "spool file {} is damaged ({why}); its records were acknowledged and are \
                     not in the lake: it is kept as {}",
                    path.display(),
                    kept.display()
                )));
            }
        };
        if torn {
            tracing::warn!(
                "{}: {}: its last batch was cut short by a crash before it was \
                 acknowledged (its source sends it again); left out",
                self.ctx.name,
                path.display()
            );
        }
        if let Some(body) = body {
            let body = Bytes::from(body);
            let key = partition.key(&self.prefix, &format!("{}.parquet", uuid::Uuid::new_v4()));
            self.put(&key, body.clone()).await?;
            tracing::debug!("{}: wrote {rows} events to {key}", self.ctx.name);
            self.ctx.metrics.records_out.inc_by(rows as u64);
            self.ctx.metrics.bytes_out.inc_by(body.len() as u64);
        }
        std::fs::remove_file(&path).map_err(|e| self.spool_error(e))?;
        Ok(())
    }

    /// Stores an object, trying again for as long as the failure can pass.
    // `&mut`: the writer is Send but not Sync (arrow-json's decoder), and this is awaited.
    async fn put(&mut self, key: &str, body: Bytes) -> Result<(), SinkError> {
        let mut backoff = Backoff::new(RetryPolicy {
            initial: flowlog_component::duration::duration(self.config.retry_initial_backoff_secs),
            max: flowlog_component::duration::duration(self.config.retry_max_backoff_secs),
        });
        loop {
            match self.store.put(key, body.clone()).await {
                Ok(()) => {
                    self.ctx.metrics.recovered();
                    return Ok(());
                }
                Err(e) if e.transient => {
                    self.ctx.metrics.error("write", &e.message);
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
                    self.ctx.metrics.error("write", &e.message);
                    return Err(SinkError::Io {
                        sink: self.ctx.name.clone(),
                        message: format!(
                            "{} (what is not written stays in {} for the next run)",
                            e.message,
                            self.spool.dir().display()
                        ),
                    });
                }
            }
        }
    }

    fn spool_error(&self, e: std::io::Error) -> SinkError {
        self.io(format!("spool {}: {e}", self.spool.dir().display()))
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

    /// Writes the batch's events; the records that cannot be events come back as dead
    /// letters.
    pub fn write(
        &mut self,
        batch: &FlowBatch,
    ) -> Result<Vec<DeadLetter>, Box<dyn std::error::Error + Send + Sync>> {
        let converted = self.events.convert_each(batch)?;
        self.writer.write(&converted.events)?;
        Ok(converted
            .rejected
            .iter()
            .map(|(row, why)| events::rejected(batch, *row, why))
            .collect())
    }

    /// Writes the footer; the output is a Parquet file only after this.
    pub fn finish(self) -> Result<W, parquet::errors::ParquetError> {
        self.writer.into_inner()
    }
}
