//! The source: a coordinator that holds this process's leases, and a reader per leased
//! shard that decodes each record (a CloudWatch Logs subscription payload, gzip'd JSON)
//! into batches, sends them on, and has the shard's checkpoint moved only past records
//! every sink has delivered (or dead-lettered).
//!
//! Records are identified by stream, shard and sequence number (`kinesis://<stream>/
//! <shard>/<sequence>`, then the line within the record), so a record read again after a
//! crash or a lost lease carries the same event ids.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowlog_component::metrics::Gauge;
use flowlog_component::{AckWait, BoxFuture, LabelledCounter, LabelledGauge};
use flowlog_decode::{DecodeOptions, RecordSink, SinkError};
use flowlog_model::{DeadLetter, FlowBatch, SourceId};
use flowlog_source::{CheckOptions, Findings, Source, SourceContext, SourceError, SourceKind};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::coordinator::Coordinator;
use crate::lease::{Checkpoint, LeaseTable};
use crate::progress::InOrder;
use crate::reader::{Backoff, ShardReader};
use crate::settings::KinesisSource;
use crate::shards::{self, Stream};

/// The most bytes one record's payload may inflate to (CloudWatch Logs sends at most
/// 1 MB of events per record; this bounds what a hostile one can take).
const MAX_INFLATED: u64 = 64 << 20;
/// How often the shard list is read again (new shards after a resharding).
const SHARDS_EVERY: Duration = Duration::from_secs(30);

impl SourceKind for KinesisSource {
    fn format(&self) -> Option<&str> {
        self.format.as_deref()
    }

    fn validate(&self) -> Result<(), SourceError> {
        self.settings_hold().map_err(SourceError::Config)
    }

    fn build(&self, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(Kinesis {
            settings: self.clone(),
            ctx: Arc::new(ctx),
        }))
    }

    fn check<'a>(&'a self, _options: CheckOptions<'a>) -> BoxFuture<'a, Findings> {
        Box::pin(async move {
            let clients = Clients::load(self).await;
            crate::check::check(self, &clients.kinesis, clients.dynamodb).await
        })
    }
}

impl KinesisSource {
    pub(crate) fn stream(&self) -> Stream {
        match (&self.stream_arn, &self.stream_name) {
            (Some(arn), _) => Stream::Arn(arn.clone()),
            (None, Some(name)) => Stream::Name(name.clone()),
            (None, None) => unreachable!("settings_hold requires one"),
        }
    }

    pub(crate) fn stream_label(&self) -> &str {
        self.stream_arn
            .as_deref()
            .or(self.stream_name.as_deref())
            .unwrap_or("?")
    }

    /// The stream's name, for event ids (the last part of an ARN).
    fn stream_id(&self) -> &str {
        let label = self.stream_label();
        label.rsplit('/').next().unwrap_or(label)
    }

    fn at_timestamp_ms(&self) -> Option<i64> {
        let text = self.starting_timestamp.as_deref()?;
        aws_sdk_kinesis::primitives::DateTime::from_str(
            text,
            aws_sdk_kinesis::primitives::DateTimeFormat::DateTime,
        )
        .ok()
        .and_then(|t| t.to_millis().ok())
    }
}

struct Clients {
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
}

impl Clients {
    async fn load(settings: &KinesisSource) -> Self {
        // arn:aws:kinesis:<region>:<account>:stream/<name>
        let arn_region = settings
            .stream_arn
            .as_deref()
            .and_then(|arn| arn.split(':').nth(3));
        let config = flowlog_aws::sdk_config(&flowlog_aws::Connection {
            region: settings.region.as_deref().or(arn_region),
            profile: settings.profile.as_deref(),
            endpoint_url: settings.endpoint_url.as_deref(),
        })
        .await;
        Self {
            kinesis: aws_sdk_kinesis::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
        }
    }
}

struct Kinesis {
    settings: KinesisSource,
    ctx: Arc<SourceContext>,
}

/// What a shard's reader tells the coordinating loop.
enum Event {
    /// Every record through this one is delivered: move the checkpoint.
    Delivered(String, Checkpoint),
    /// Read to its end and delivered: the children may start.
    Ended(String),
    /// Caught up with the stream in a finite run, everything delivered.
    CaughtUp(String),
    /// Could not be read (after retries); the lease is given up for another to try.
    Failed(String, String),
}

impl Source for Kinesis {
    fn run(self: Box<Self>) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(self.run_async())
    }
}

impl Kinesis {
    async fn run_async(self: Box<Self>) -> Result<(), SourceError> {
        let settings = &self.settings;
        let clients = Clients::load(settings).await;
        let table = LeaseTable::new(clients.dynamodb.clone(), settings.lease_table());
        table
            .create_if_missing(Duration::from_secs(1), Duration::from_secs(120))
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        let stream = settings.stream();
        // Host, process and start: two sources of one process (or a restarted process
        // with its old pid) are two workers, as the KCL's random worker ids are.
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let worker = format!(
            "{}:{}:{started:x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "flowlog".into()),
            std::process::id()
        );
        let mut coordinator = Coordinator::new(table.clone(), worker, settings.balance());
        let metrics = &self.ctx.metrics;
        let leases_held =
            HeldGauge(metrics.gauge("kinesis_leases_held", "Shard leases this source holds"));
        let shard_metrics = ShardMetrics {
            behind: metrics.gauge_by(
                "kinesis_millis_behind_latest",
                "How far a shard's last read is behind the stream's tip (GetRecords' \
                 MillisBehindLatest), by shard read here",
                "shard",
            ),
            records: metrics.counter_by(
                "kinesis_records_read",
                "Kinesis records (subscription payloads) read, by shard",
                "shard",
            ),
        };
        let (events_tx, mut events) = mpsc::channel::<Event>(256);
        // The running readers, each with its stop flag; a shard's lag series lives as long
        // as its reader here (a stopped reader's last poll may still land: it sets nothing
        // once stopped).
        let mut readers: HashMap<String, Arc<AtomicBool>> = HashMap::new();
        let stop_reader = |readers: &mut HashMap<String, Arc<AtomicBool>>, shard: &str| {
            if let Some(stop) = readers.remove(shard) {
                stop.store(true, Ordering::Relaxed);
            }
            shard_metrics.behind.remove(shard);
        };
        let mut tasks = JoinSet::new();
        let mut caught_up: Vec<String> = Vec::new();
        let mut last_sync: Option<tokio::time::Instant> = None;
        let mut failure: Option<String> = None;
        let mut idle_rounds = 0;
        loop {
            if self.ctx.stopping() {
                break;
            }
            if last_sync.is_none_or(|t| t.elapsed() >= SHARDS_EVERY) {
                let list = shards::list(&clients.kinesis, &stream)
                    .await
                    .map_err(SourceError::Unavailable)?;
                shards::sync(&table, &list, settings.starting_position)
                    .await
                    .map_err(|e| SourceError::Unavailable(e.to_string()))?;
                last_sync = Some(tokio::time::Instant::now());
            }
            let round = coordinator
                .round()
                .await
                .map_err(|e| SourceError::Unavailable(e.to_string()))?;
            for shard in round.lost {
                stop_reader(&mut readers, &shard);
            }
            for lease in round.started {
                let stop = Arc::new(AtomicBool::new(false));
                readers.insert(lease.key.clone(), Arc::clone(&stop));
                let ending = shards::list(&clients.kinesis, &stream)
                    .await
                    .ok()
                    .and_then(|l| l.into_iter().find(|s| s.id == lease.key))
                    .and_then(|s| s.ending);
                let reader = ShardReader::new(
                    clients.kinesis.clone(),
                    stream.clone(),
                    lease.key.clone(),
                    lease.checkpoint.clone(),
                    ending,
                    settings.at_timestamp_ms(),
                    settings.max_records,
                    Backoff::default(),
                );
                tasks.spawn(read_shard(ReadShard {
                    reader,
                    ctx: Arc::clone(&self.ctx),
                    stop,
                    events: events_tx.clone(),
                    idle: Duration::from_secs_f64(settings.idle_poll_secs),
                    stream_id: settings.stream_id().to_owned(),
                    once: self.ctx.once,
                    metrics: shard_metrics.clone(),
                }));
            }
            leases_held.set(coordinator.held().len());
            let mut failed = false;
            // Events until the next renewal is due.
            let next = tokio::time::Instant::now() + coordinator.renew_every();
            while let Ok(Some(event)) = tokio::time::timeout_at(next, events.recv()).await {
                // The shard this process lets go of, if the event ends its reading.
                let done = match event {
                    Event::Delivered(shard, checkpoint) => {
                        // The dead letters among those records are kept before the
                        // checkpoint passes them.
                        self.ctx
                            .durable()
                            .map_err(|e| SourceError::Unavailable(format!("dead letters: {e}")))?;
                        coordinator
                            .checkpoint(&shard, checkpoint)
                            .await
                            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
                        None
                    }
                    Event::CaughtUp(shard) => {
                        caught_up.push(shard);
                        None
                    }
                    Event::Ended(shard) => {
                        // Its children get leases on the next sync.
                        last_sync = None;
                        Some(shard)
                    }
                    Event::Failed(shard, why) => {
                        // Counted, and the source is failing (`/health`) until a round
                        // passes without a failure. The lease is given up so that the
                        // shard is tried again (here or by another process) from its
                        // checkpoint, not held unread.
                        tracing::error!(source = %self.ctx.name, "kinesis: {why}");
                        self.ctx.metrics.error("read", &why);
                        failed = true;
                        // A finite run reports it at its end; a long one retries.
                        if self.ctx.once {
                            failure.get_or_insert(why);
                        }
                        Some(shard)
                    }
                };
                if let Some(shard) = done {
                    stop_reader(&mut readers, &shard);
                    coordinator
                        .release(&shard)
                        .await
                        .map_err(|e| SourceError::Unavailable(e.to_string()))?;
                    leases_held.set(coordinator.held().len());
                }
            }
            if !failed {
                self.ctx.metrics.recovered();
            }
            if self.ctx.once && !readers.is_empty() && readers.keys().all(|s| caught_up.contains(s))
            {
                break;
            }
            // A finite run with nothing of its own to read (every shard finished, or held
            // by other processes) ends after a round that found nothing to take either.
            if self.ctx.once && readers.is_empty() {
                idle_rounds += 1;
                if idle_rounds >= 2 {
                    break;
                }
            } else {
                idle_rounds = 0;
            }
            if self.ctx.once && failure.is_some() {
                break;
            }
        }
        for shard in readers.keys().cloned().collect::<Vec<_>>() {
            stop_reader(&mut readers, &shard);
        }
        drop(events_tx);
        // Checkpoints the readers still report as they stop.
        while let Some(event) = events.recv().await {
            if let Event::Delivered(shard, checkpoint) = event {
                if self.ctx.durable().is_ok() {
                    let _ = coordinator.checkpoint(&shard, checkpoint).await;
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        coordinator
            .give_up_all()
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        match failure {
            Some(why) => Err(SourceError::Inputs(vec![why])),
            None => Ok(()),
        }
    }
}

struct ReadShard {
    reader: ShardReader,
    ctx: Arc<SourceContext>,
    stop: Arc<AtomicBool>,
    events: mpsc::Sender<Event>,
    idle: Duration,
    stream_id: String,
    once: bool,
    metrics: ShardMetrics,
}

/// The leases-held gauge, back at 0 however the source ends.
struct HeldGauge(Gauge);

impl HeldGauge {
    fn set(&self, held: usize) {
        self.0.set(held as i64);
    }
}

impl Drop for HeldGauge {
    fn drop(&mut self) {
        self.0.set(0);
    }
}

/// A shard reader's own series, labelled by shard.
#[derive(Clone)]
struct ShardMetrics {
    behind: LabelledGauge,
    records: LabelledCounter,
}

/// Reads one shard until it ends, its lease is lost or the run stops; reports what may be
/// checkpointed as it is delivered.
async fn read_shard(mut r: ReadShard) {
    let shard = r.reader.shard().to_owned();
    let mut progress = InOrder::<AckWait>::default();
    let stopped = |r: &ReadShard| r.stop.load(Ordering::Relaxed) || r.ctx.stopping();
    loop {
        if stopped(&r) {
            break;
        }
        let poll = match r.reader.poll().await {
            Ok(poll) => poll,
            Err(e) => {
                let _ = r
                    .events
                    .send(Event::Failed(shard.clone(), e.to_string()))
                    .await;
                return;
            }
        };
        let empty = poll.records.is_empty();
        if let Some(millis) = poll.millis_behind.filter(|_| !stopped(&r)) {
            r.metrics.behind.set(&shard, millis);
        }
        r.metrics.records.inc_by(&shard, poll.records.len() as u64);
        for record in poll.records {
            r.ctx.metrics.bytes_in.inc_by(record.data.len() as u64);
            let source = SourceId::new(format!(
                "kinesis://{}/{shard}/{}",
                r.stream_id, record.sequence
            ));
            match decode(&r.ctx, source, record.data).await {
                Ok(batches) => {
                    let mut waits = Vec::with_capacity(batches.len());
                    for batch in batches {
                        match r.ctx.submit(batch).await {
                            Some(wait) => waits.push(wait),
                            None => return, // the pipeline is gone
                        }
                    }
                    progress.sent(record.sequence, waits);
                }
                Err(why) => {
                    let _ = r.events.send(Event::Failed(shard.clone(), why)).await;
                    return;
                }
            }
        }
        if let Some(sequence) = progress.poll() {
            let at = Checkpoint::At {
                sequence,
                sub_sequence: 0,
            };
            let _ = r.events.send(Event::Delivered(shard.clone(), at)).await;
        }
        if poll.ended || (empty && r.once) {
            // Everything read is delivered before the shard is called done.
            while !progress.is_empty() && !progress.failed() && !stopped(&r) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Some(sequence) = progress.poll() {
                    let at = Checkpoint::At {
                        sequence,
                        sub_sequence: 0,
                    };
                    let _ = r.events.send(Event::Delivered(shard.clone(), at)).await;
                }
            }
            if !progress.is_empty() {
                return;
            }
            if poll.ended {
                let _ = r
                    .events
                    .send(Event::Delivered(shard.clone(), Checkpoint::ShardEnd))
                    .await;
                let _ = r.events.send(Event::Ended(shard.clone())).await;
            } else {
                let _ = r.events.send(Event::CaughtUp(shard.clone())).await;
            }
            return;
        }
        if empty {
            tokio::time::sleep(r.idle).await;
        }
    }
    // Stopping: what is delivered by now is still checkpointed.
    if let Some(sequence) = progress.poll() {
        let at = Checkpoint::At {
            sequence,
            sub_sequence: 0,
        };
        let _ = r.events.send(Event::Delivered(shard, at)).await;
    }
}

/// One record's payload as batches (its dead letters written), off the runtime's workers.
async fn decode(
    ctx: &Arc<SourceContext>,
    source: SourceId,
    data: Vec<u8>,
) -> Result<Vec<FlowBatch>, String> {
    let ctx = Arc::clone(ctx);
    tokio::task::spawn_blocking(move || {
        struct Collect<'a> {
            ctx: &'a SourceContext,
            batches: Vec<FlowBatch>,
        }
        impl RecordSink for Collect<'_> {
            fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
                self.batches.push(batch);
                Ok(())
            }
            fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
                Ok(self.ctx.dead_letter(letter)?)
            }
        }
        let options = DecodeOptions {
            format: ctx.format.clone(),
            batch_rows: ctx.batch_rows,
            keep_lines: ctx.keep_lines,
            max_inflated_bytes: Some(MAX_INFLATED),
            ..DecodeOptions::default()
        };
        let mut sink = Collect {
            ctx: &ctx,
            batches: Vec::new(),
        };
        let decoded = flowlog_decode::decode_reader(
            Cursor::new(data.as_slice()),
            source.clone(),
            &options,
            &mut sink,
        );
        if let Err(e) = decoded {
            // Not a payload at all (not gzip, not JSON, inflating past the bound): the
            // record is kept whole as a dead letter, beside what was read of it.
            let letter = DeadLetter::new(&source, 0, format!("not a readable record: {e}"), &data);
            ctx.dead_letter(letter)
                .map_err(|e| format!("{source}: the dead letter was not kept: {e}"))?;
        }
        Ok(sink.batches)
    })
    .await
    .map_err(|e| format!("decoding stopped: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use arrow_array::Array;
    use aws_sdk_kinesis::primitives::Blob;
    use flowlog_component::{Metrics, Stop};
    use flowlog_source::dead_letter::{DeadLetterFile, DeadLetterLimits};
    use flowlog_source::{Checkpoints, Envelope};
    use std::time::Duration;

    /// A text column's values (the decoder's string views).
    fn texts(array: &arrow_array::ArrayRef) -> Vec<String> {
        let a = array
            .as_any()
            .downcast_ref::<arrow_array::StringViewArray>()
            .unwrap();
        (0..a.len()).map(|i| a.value(i).to_owned()).collect()
    }

    /// A CloudWatch Logs subscription payload of `events` flow records, gzip'd.
    fn payload(record: usize, events: usize) -> Vec<u8> {
        let log_events: Vec<serde_json::Value> = (0..events)
            .map(|e| {
                serde_json::json!({
                    "id": format!("{record}-{e}"),
                    "timestamp": 1_763_800_000_000_i64,
                    "message": format!(
                        "2 123456789012 eni-0a1b2c3d4e5f60718 10.0.{}.{} 10.1.0.9 {} 443 6 10 840 1763800000 1763800060 ACCEPT OK",
                        record % 200, e % 250, 1024 + e
                    ),
                })
            })
            .collect();
        let body = serde_json::json!({
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": "vpc-flow-logs",
            "logStream": "eni-0a1b2c3d4e5f60718-all",
            "subscriptionFilters": ["to-kinesis"],
            "logEvents": log_events,
        });
        gzip(body.to_string().as_bytes())
    }

    fn control() -> Vec<u8> {
        gzip(br#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1763800000000,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#)
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn context(dir: &std::path::Path, tx: mpsc::Sender<Envelope>) -> SourceContext {
        measured_context(dir, tx, &Metrics::new())
    }

    fn measured_context(
        dir: &std::path::Path,
        tx: mpsc::Sender<Envelope>,
        metrics: &Metrics,
    ) -> SourceContext {
        SourceContext {
            name: "stream".into(),
            tx,
            dead_letters: Arc::new(
                DeadLetterFile::open(
                    &dir.join("dead-letter.ndjson"),
                    DeadLetterLimits::default(),
                    metrics.component("dead_letter", "file"),
                    Default::default(),
                )
                .unwrap(),
            ),
            checkpoints: Checkpoints::open(dir).unwrap(),
            metrics: metrics.component("source", "stream"),
            stop: Arc::new(Stop::default()),
            format: None,
            batch_rows: 8192,
            keep_lines: false,
            runtime: tokio::runtime::Handle::current(),
            once: true,
        }
    }

    /// A payload of one flow record whose source port carries `(key, index)`.
    fn numbered(key: usize, index: usize) -> Vec<u8> {
        let body = serde_json::json!({
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": "vpc-flow-logs",
            "logStream": "eni-0a1b2c3d4e5f60718-all",
            "subscriptionFilters": ["to-kinesis"],
            "logEvents": [{
                "id": format!("{key}-{index}"),
                "timestamp": 1_763_800_000_000_i64,
                "message": format!(
                    "2 123456789012 eni-0a1b2c3d4e5f60718 10.0.0.{key} 10.1.0.9 {} 443 6 10 840 1763800000 1763800060 ACCEPT OK",
                    1000 + index
                ),
            }],
        });
        gzip(body.to_string().as_bytes())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shard_split_during_the_run_is_read_parent_first_in_order_per_key() {
        let (name, client) = crate::testing::stream("source-split", 1).await;
        let put = |key: usize, index: usize| {
            let client = client.clone();
            let name = name.clone();
            async move {
                client
                    .put_record()
                    .stream_name(&name)
                    .partition_key(format!("key-{key}"))
                    .data(Blob::new(numbered(key, index)))
                    .send()
                    .await
                    .unwrap();
            }
        };
        let keys = 8;
        for index in 0..20 {
            for key in 0..keys {
                put(key, index).await;
            }
        }
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        let settings: KinesisSource = toml::from_str(&format!(
            "stream_name = \"{name}\"\napplication_name = \"{name}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\nidle_poll_secs = 0.2\nlease_duration_secs = 3",
            crate::testing::endpoint()
        ))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let mut ctx = context(dir.path(), tx);
        ctx.once = false;
        let stop = Arc::clone(&ctx.stop);
        let source = settings.build(ctx).unwrap();
        let run = tokio::spawn(source.run());
        // (key, index) in the order delivered, read back from the address and port.
        let mut seen: Vec<(usize, usize)> = Vec::new();
        let mut split = false;
        let total = keys * 40;
        while seen.len() < total {
            let Envelope { batch, ack } = rx.recv().await.expect("the source ended early");
            let records = &batch.records;
            let src = records.column_by_name("srcaddr").unwrap();
            let port = records.column_by_name("srcport").unwrap();
            let src = texts(src);
            let port = port
                .as_any()
                .downcast_ref::<arrow_array::Int32Array>()
                .unwrap();
            for (row, address) in src.iter().enumerate() {
                let key: usize = address.rsplit('.').next().unwrap().parse().unwrap();
                seen.push((key, port.value(row) as usize - 1000));
            }
            ack.confirm();
            if !split && seen.len() >= keys * 5 {
                // Split while the parent is being read, then put the second half.
                split = true;
                let shard = crate::testing::first_shard(&client, &name).await;
                crate::testing::split_in_half(&client, &name, &shard).await;
                for index in 20..40 {
                    for key in 0..keys {
                        put(key, index).await;
                    }
                }
            }
        }
        stop.set();
        run.await.unwrap().unwrap();
        // Every record once, and per key in the order put.
        assert_eq!(seen.len(), total);
        for key in 0..keys {
            let order: Vec<usize> = seen
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, i)| *i)
                .collect();
            assert_eq!(order, (0..40).collect::<Vec<_>>(), "key {key}");
        }
    }

    /// A stream of four shards with `records` payloads of `events` flow records each; the
    /// source settings that read it.
    async fn four_shard_stream(test: &str, records: usize, events: usize) -> KinesisSource {
        let (name, client) = crate::testing::stream(test, 4).await;
        for r in 0..records {
            client
                .put_record()
                .stream_name(&name)
                .partition_key(format!("eni-{}", r % 37))
                .data(Blob::new(payload(r, events)))
                .send()
                .await
                .unwrap();
        }
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        toml::from_str(&format!(
            "stream_name = \"{name}\"\napplication_name = \"{name}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\nidle_poll_secs = 0.2\nlease_duration_secs = 2",
            crate::testing::endpoint()
        ))
        .unwrap()
    }

    /// A running source and what it delivered: event ids (source and line), by shard.
    struct Running {
        stop: Arc<Stop>,
        run: tokio::task::JoinHandle<Result<(), SourceError>>,
        seen: Arc<std::sync::Mutex<Vec<String>>>,
        consumer: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    fn start(settings: &KinesisSource) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let mut ctx = context(dir.path(), tx);
        ctx.once = false;
        let stop = Arc::clone(&ctx.stop);
        let run = tokio::spawn(settings.build(ctx).unwrap().run());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        let consumer = tokio::spawn(async move {
            while let Some(Envelope { batch, ack }) = rx.recv().await {
                let mut seen = kept.lock().unwrap();
                for line in batch.line_numbers.iter() {
                    seen.push(format!("{}-{line}", batch.source));
                }
                drop(seen);
                ack.confirm();
            }
        });
        Running {
            stop,
            run,
            seen,
            consumer,
            _dir: dir,
        }
    }

    /// The shard an event id's record came from (`kinesis://stream/shard/sequence-line`).
    fn shard_of(id: &str) -> &str {
        id.split('/').nth(3).unwrap()
    }

    async fn wait_for(what: impl Fn() -> bool) {
        for _ in 0..600 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("waited a minute");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_workers_split_the_shards_and_a_killed_ones_are_taken_over() {
        let (records, events) = (200, 10);
        let settings = four_shard_stream("source-two", records, events).await;
        let a = start(&settings);
        // a alone takes all four shards and delivers every record.
        wait_for(|| a.seen.lock().unwrap().len() == records * events).await;
        let b = start(&settings);
        let tip = records * events;
        // b steals one lease a round until each holds two.
        let table = LeaseTable::new(crate::testing::dynamodb(), settings.lease_table());
        for _ in 0..600 {
            let leases = table.list().await.unwrap();
            let mut owners: Vec<&str> = leases.iter().filter_map(|l| l.owner.as_deref()).collect();
            owners.sort();
            owners.dedup();
            let held = |o: &str| {
                leases
                    .iter()
                    .filter(|l| l.owner.as_deref() == Some(o))
                    .count()
            };
            if owners.len() == 2 && owners.iter().all(|o| held(o) == 2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // a reads a stolen shard until its next round finds the lease gone (a third of a
        // lease duration; as the KCL's workers do, and the thief reads again from the
        // checkpoint). Past a lease duration both know; then what is put is read by one of
        // them, shard by shard.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let a_before = a.seen.lock().unwrap().len();
        let client = crate::testing::kinesis();
        let name = settings.stream_name.clone().unwrap();
        for r in records..records * 2 {
            client
                .put_record()
                .stream_name(&name)
                .partition_key(format!("eni-{}", r % 37))
                .data(Blob::new(payload(r, events)))
                .send()
                .await
                .unwrap();
        }
        // (Counted as distinct ids: a stolen shard's records after its last checkpoint are
        // read again by the thief.)
        let distinct = |a: &Running, b: &Running| {
            let (a, b) = (a.seen.lock().unwrap(), b.seen.lock().unwrap());
            a.iter()
                .chain(b.iter())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        wait_for(|| distinct(&a, &b) == 2 * tip).await;
        let shards = |r: &Running, from: usize| -> std::collections::BTreeSet<String> {
            r.seen.lock().unwrap()[from..]
                .iter()
                .map(|id| shard_of(id).to_owned())
                .collect()
        };
        // (Records a read before b came are all from a; after, the shards are split.)
        let (a_after, b_all) = (shards(&a, a_before), shards(&b, 0));
        assert_eq!(b_all.len(), 2, "b holds two shards: {b_all:?}");
        assert_eq!(a_after.len(), 2, "a kept two shards: {a_after:?}");
        assert!(a_after.is_disjoint(&b_all), "{a_after:?} {b_all:?}");
        // Kill a: no give-up, no last checkpoint. b takes its shards once their leases
        // expire, from their checkpoints.
        a.run.abort();
        a.consumer.abort();
        let a_seen = a.seen.lock().unwrap().clone();
        for r in records * 2..records * 3 {
            client
                .put_record()
                .stream_name(&name)
                .partition_key(format!("eni-{}", r % 37))
                .data(Blob::new(payload(r, events)))
                .send()
                .await
                .unwrap();
        }
        // Every record put is delivered by a or b; what both delivered is what a delivered
        // after its last checkpoint.
        wait_for(|| {
            let b_seen = b.seen.lock().unwrap();
            let all: std::collections::BTreeSet<&String> =
                a_seen.iter().chain(b_seen.iter()).collect();
            all.len() == 3 * tip
        })
        .await;
        let b_seen = b.seen.lock().unwrap().clone();
        let twice = b_seen.iter().filter(|id| a_seen.contains(id)).count();
        assert!(
            twice <= a_seen.len() - tip,
            "duplicates only from a's unacknowledged window"
        );
        assert_eq!(
            shards(&b, 0).len(),
            4,
            "b reads every shard after a is gone"
        );
        b.stop.set();
        b.run.await.unwrap().unwrap();
        b.consumer.await.unwrap();
        eprintln!("delivered twice after the kill: {twice}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn four_shards_are_read_whole_and_checkpointed_at_their_last_record() {
        let (name, client) = crate::testing::stream("source-four", 4).await;
        let (records, events) = (200, 25);
        for r in 0..records {
            let data = if r % 50 == 7 {
                control()
            } else {
                payload(r, events)
            };
            client
                .put_record()
                .stream_name(&name)
                .partition_key(format!("eni-{}", r % 37))
                .data(Blob::new(data))
                .send()
                .await
                .unwrap();
        }
        let expected_rows = (0..records).filter(|r| r % 50 != 7).count() * events;

        // SAFETY of the test's environment: moto takes any credentials.
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        let settings: KinesisSource = toml::from_str(&format!(
            "stream_name = \"{name}\"\napplication_name = \"{name}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\nidle_poll_secs = 0.2",
            crate::testing::endpoint()
        ))
        .unwrap();
        settings.settings_hold().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let metrics = Metrics::new();
        let source = settings
            .build(measured_context(dir.path(), tx, &metrics))
            .unwrap();
        let consumer = tokio::spawn(async move {
            let mut rows = 0;
            let mut ids = std::collections::BTreeSet::new();
            while let Some(Envelope { batch, ack }) = rx.recv().await {
                rows += batch.num_rows();
                for line in batch.line_numbers.iter() {
                    assert!(
                        ids.insert(format!("{}-{line}", batch.source)),
                        "delivered twice"
                    );
                }
                ack.confirm();
            }
            (rows, ids.len())
        });
        source.run().await.unwrap();
        let (rows, distinct) = consumer.await.unwrap();
        assert_eq!((rows, distinct), (expected_rows, expected_rows));

        // Every record counted under its shard; no lease or lag left to report.
        let text = metrics.render();
        let read: u64 = text
            .lines()
            .filter(|l| l.starts_with("flowlog_kinesis_records_read_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(read, records as u64, "{text}");
        assert_eq!(
            text.matches("flowlog_kinesis_records_read_total{").count(),
            4,
            "{text}"
        );
        assert!(
            text.contains(
                r#"flowlog_kinesis_leases_held{component_kind="source",component="stream"} 0"#
            ),
            "{text}"
        );
        assert!(
            !text.contains("flowlog_kinesis_millis_behind_latest{"),
            "{text}"
        );

        // Every lease checkpointed at its shard's last record, and given up.
        let leases = LeaseTable::new(crate::testing::dynamodb(), settings.lease_table())
            .list()
            .await
            .unwrap();
        assert_eq!(leases.len(), 4);
        for lease in &leases {
            let iterator = client
                .get_shard_iterator()
                .stream_name(&name)
                .shard_id(&lease.key)
                .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap();
            let all = client
                .get_records()
                .shard_iterator(iterator.shard_iterator().unwrap())
                .send()
                .await
                .unwrap();
            match all.records().last() {
                Some(last) => assert_eq!(
                    lease.checkpoint,
                    Checkpoint::At {
                        sequence: last.sequence_number().to_owned(),
                        sub_sequence: 0
                    },
                    "{}",
                    lease.key
                ),
                None => assert_eq!(lease.checkpoint, Checkpoint::TrimHorizon),
            }
            assert_eq!(lease.owner, None, "given up at the end of the run");
        }
    }
}
