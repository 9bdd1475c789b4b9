//! What `flowlog backfill` does besides running the `s3` source: planning, measuring a
//! sample for the dry run's estimate, sending the plan to a queue and reading the queue's
//! depth. Each runs on a small runtime of its own, for a caller that has none (the
//! binary's command).

use std::time::{Duration, Instant};

use flowlog_decode::{
    decode_file, decode_reader, DecodeOptions, DecodeStats, RecordSink, SinkError,
};
use flowlog_model::{DeadLetter, FlowBatch, FlowFormat, SourceId};

use crate::aws;
use crate::enqueue::{self, QueueStatus};
use crate::listing::ObjectInfo;
use crate::object::{decode_plain_body, get, ObjectRef};
use crate::plan::{Filter, Plan};
use crate::settings::{Location, S3Source};
use crate::source::Reader;

const NO_REGION: &str = "no AWS region: give --aws-region, or set AWS_REGION or a region in \
                         the AWS profile";

/// The most bytes, and objects, a dry run reads to measure the rate.
pub const SAMPLE_BYTES: u64 = 16 << 20;
const SAMPLE_OBJECTS: u64 = 20;

/// The objects a backfill is asked for, and the means to read them.
pub struct Backfill {
    runtime: tokio::runtime::Runtime,
    settings: S3Source,
    location: Location,
    reader: Reader,
}

/// A sample read and decoded to measure the rate of one worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub objects: u64,
    pub bytes: u64,
    pub records: u64,
    pub seconds: f64,
}

impl Sample {
    /// Bytes (as stored) per second.
    pub fn rate(&self) -> Option<f64> {
        (self.seconds > 0.0 && self.bytes > 0).then(|| self.bytes as f64 / self.seconds)
    }
}

impl Backfill {
    /// Reads the settings and makes the S3 client (nothing is asked of AWS yet).
    pub fn new(settings: &S3Source) -> Result<Self, String> {
        settings.settings_hold()?;
        let location = Location::parse(&settings.url)?;
        if let Location::Directory { prefix } = &location {
            let dir = format!("/{prefix}");
            std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
        }
        // Multi-threaded, so that threads of their own (a query's scans) can read objects
        // through its handle at once.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flowlog-s3")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        let reader = runtime.block_on(Reader::new(settings, &location));
        if let Reader::S3 { client, .. } = &reader {
            if client.config().region().is_none() {
                return Err(NO_REGION.into());
            }
        }
        Ok(Self {
            runtime,
            settings: settings.clone(),
            location,
            reader,
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Lists what the settings ask for.
    pub fn plan(&self) -> Result<Plan, String> {
        let filter = self.settings.filter()?;
        self.plan_for(&filter)
    }

    /// Lists what `filter` asks for (instead of the settings' range and lists).
    pub fn plan_for(&self, filter: &Filter) -> Result<Plan, String> {
        self.runtime
            .block_on(self.reader.plan(&self.location, filter))
    }

    /// Reads `object` (of a plan) and decodes it into `sink` as it arrives; the error
    /// names the object. Blocks: call it on a thread that may (not a runtime's worker).
    pub fn decode(
        &self,
        object: &ObjectInfo,
        options: &DecodeOptions,
        sink: &mut dyn RecordSink,
    ) -> Result<DecodeStats, String> {
        let named = self.location.describe(&object.key);
        let source = SourceId::new(named.clone());
        match &self.reader {
            Reader::Directory => {
                let path = format!("/{}", object.key);
                decode_file(std::path::Path::new(&path), source, options, sink)
                    .map_err(|e| e.to_string())
            }
            Reader::S3 { client, bucket } => {
                let object = listed(bucket, object);
                let timeout = Duration::from_secs(self.settings.read_timeout_secs);
                let handle = self.runtime.handle().clone();
                let output = handle
                    .block_on(async { tokio::time::timeout(timeout, get(client, &object)).await })
                    .map_err(|_| format!("{named}: no answer in {} s", timeout.as_secs()))?
                    .map_err(|e| {
                        format!(
                            "{named}: {}",
                            aws::explain(&e, "S3", crate::source::GET_NEEDS)
                        )
                    })?;
                decode_plain_body(handle, source, output.body, timeout, options, sink)
            }
        }
    }

    /// Reads and decodes the first objects of `objects`, up to [`SAMPLE_BYTES`], on one
    /// thread, as one worker of the backfill would (delivery not included).
    pub fn sample(&self, objects: &[ObjectInfo]) -> Result<Sample, String> {
        let format = match &self.settings.format {
            Some(text) => Some(FlowFormat::parse(text).map_err(|e| format!("format: {e}"))?),
            None => None,
        };
        let options = DecodeOptions {
            format,
            ..DecodeOptions::default()
        };
        let mut sample = Sample::default();
        let started = Instant::now();
        // Objects small enough to hold, in the plan's order, while the sample has room.
        for object in objects.iter().filter(|o| o.size <= SAMPLE_BYTES) {
            if sample.bytes + object.size > SAMPLE_BYTES || sample.objects == SAMPLE_OBJECTS {
                break;
            }
            let body = self.fetch(object)?;
            let mut discard = Discard;
            let source = SourceId::new(object.key.clone());
            let stats = decode_reader(body.as_slice(), source, &options, &mut discard)
                .map_err(|e| format!("{}: {e}", self.location.describe(&object.key)))?;
            sample.objects += 1;
            sample.bytes += body.len() as u64;
            sample.records += stats.records;
        }
        sample.seconds = started.elapsed().as_secs_f64();
        Ok(sample)
    }

    /// An object's bytes, whole (a sample is small).
    fn fetch(&self, object: &ObjectInfo) -> Result<Vec<u8>, String> {
        let named = self.location.describe(&object.key);
        match &self.reader {
            Reader::Directory => {
                std::fs::read(format!("/{}", object.key)).map_err(|e| format!("{named}: {e}"))
            }
            Reader::S3 { client, bucket } => self.runtime.block_on(async {
                let object = listed(bucket, object);
                let read = async {
                    let output = get(client, &object)
                        .await
                        .map_err(|e| aws::explain(&e, "S3", crate::source::GET_NEEDS))?;
                    let body = output.body.collect().await.map_err(|e| e.to_string())?;
                    Ok::<_, String>(body.into_bytes().to_vec())
                };
                match tokio::time::timeout(Duration::from_secs(60), read).await {
                    Ok(read) => read.map_err(|e| format!("{named}: {e}")),
                    Err(_) => Err(format!("{named}: no answer in 60 s")),
                }
            }),
        }
    }

    /// Sends `objects` to `queue_url` as S3 event notifications (see [`enqueue`]); `sent`
    /// is told how many SQS took after each call.
    pub fn enqueue(
        &self,
        queue_url: &str,
        objects: &[ObjectInfo],
        sent: impl FnMut(u64) -> Result<(), String>,
    ) -> Result<(), String> {
        let Location::S3 { bucket, .. } = &self.location else {
            return Err(
                "only objects in S3 can be sent to a queue (the sidecars read them from S3)".into(),
            );
        };
        self.runtime.block_on(async {
            let sqs = sqs_client(&self.settings, queue_url).await?;
            let region = sqs
                .config()
                .region()
                .map(|r| r.to_string())
                .unwrap_or_default();
            enqueue::enqueue(&sqs, queue_url, bucket, &region, objects, sent).await
        })
    }
}

/// An object of a plan, to read from `bucket` (its latest version).
fn listed(bucket: &str, object: &ObjectInfo) -> ObjectRef {
    ObjectRef {
        bucket: bucket.to_string(),
        key: object.key.clone(),
        raw_key: None,
        version_id: None,
        etag: None,
        size: Some(object.size),
    }
}

/// The depth of `queue_url`, with the AWS settings of `settings` (region, profile,
/// endpoint).
pub fn queue_status(settings: &S3Source, queue_url: &str) -> Result<QueueStatus, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let sqs = sqs_client(settings, queue_url).await?;
        enqueue::status(&sqs, queue_url).await
    })
}

async fn sqs_client(settings: &S3Source, queue_url: &str) -> Result<aws_sdk_sqs::Client, String> {
    let region = settings
        .region
        .clone()
        .or_else(|| aws::region_of_queue(queue_url));
    let config = aws::sdk_config(&aws::Connection {
        region: region.as_deref(),
        profile: settings.profile.as_deref(),
        endpoint_url: settings.endpoint_url.as_deref(),
    })
    .await;
    if config.region().is_none() {
        return Err(NO_REGION.into());
    }
    Ok(aws_sdk_sqs::Client::new(&config))
}

/// Where a sample's records go: nowhere (the decoder counts them).
struct Discard;

impl RecordSink for Discard {
    fn batch(&mut self, _batch: FlowBatch) -> Result<(), SinkError> {
        Ok(())
    }
    fn dead_letter(&mut self, _letter: DeadLetter) -> Result<(), SinkError> {
        Ok(())
    }
}
