//! The file sink: records appended to a file as NDJSON, in any of the encoder's shapes
//! (raw fields, ECS, OCSF, CIM).
//!
//! ```toml
//! [sinks.archive]
//! type = "file"
//! path = "/var/lib/flowlog/vpc.ndjson"
//! format = "ecs"          # raw (default), ecs, ocsf, cim
//! sync = true             # fsync before a batch counts as delivered (default)
//! ```
//!
//! A batch is acknowledged once its documents are written (and, with `sync`, on disk), so
//! a source's checkpoint never passes records the file does not hold. A write that fails
//! (disk full, file removed from under a read-only mount) stops the sink: its batches
//! fail, nothing past them is checkpointed, and a restart writes them again.
//!
//! This is also the smallest complete sink, and the one ARCHITECTURE.md's "adding a sink"
//! recipe follows: a settings type implementing [`SinkKind`], a [`Sink`] built from it,
//! and one line and one feature in the registry.

mod settings;

pub use settings::FileConfig;

use std::fs::File;
use std::io::Write;
use std::path::Path;

use flowlog_component::thread::on_thread;
use flowlog_normalize::{EncodeOptions, Target};
use flowlog_sink::{BoxFuture, Sink, SinkContext, SinkError, SinkInput, SinkKind};
use tokio::sync::mpsc;

impl SinkKind for FileConfig {
    /// Findings are written as they are, one per line.
    fn carries_documents(&self, _format: &str) -> Result<(), String> {
        Ok(())
    }

    fn validate(&self) -> Result<(), SinkError> {
        if self.path.as_os_str().is_empty() {
            return Err(SinkError::Config("path is empty".into()));
        }
        self.target().map(|_| ())
    }

    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(FileSink {
            target: self.target()?,
            config: self.clone(),
            ctx,
        }))
    }
}

/// A configured file sink.
pub struct FileSink {
    config: FileConfig,
    target: Target,
    ctx: SinkContext,
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.ctx.name
    }

    fn run(
        self: Box<Self>,
        input: mpsc::Receiver<SinkInput>,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        let name = format!("sink-{}", self.ctx.name);
        on_thread(name, move || self.write_all(input))
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SinkError>> {
        // Says what `run` would create rather than creating it.
        let result = flowlog_component::writable::file(&self.config.path)
            .map(|found| format!("{found}, {} documents", self.config.format))
            .map_err(|message| SinkError::Io {
                sink: self.ctx.name.clone(),
                message,
            });
        Box::pin(async move { result })
    }
}

/// The most batches written before one sync.
const GROUP_COMMIT: usize = 256;

impl FileSink {
    /// Writes every batch until the channel closes; runs on its own thread.
    fn write_all(self, mut input: mpsc::Receiver<SinkInput>) -> Result<(), SinkError> {
        let mut file = open(&self.config.path).map_err(|e| self.io_error(e))?;
        // A pipe or a terminal holds nothing to make durable (and fsync on one fails).
        let sync = self.config.sync && file.metadata().is_ok_and(|m| m.is_file());
        let mut encoder = self.target.encoder_with(&EncodeOptions {
            envelope_key: self.config.envelope_key.clone(),
        });
        let metrics = &self.ctx.metrics;
        while let Some(first) = input.blocking_recv() {
            // Group commit: the batches already waiting are written too and made durable
            // by one sync (findings come one batch each, many at once).
            let mut written = Vec::new();
            let mut next = Some(first);
            while let Some(SinkInput { batch, ack }) = next.take() {
                let rows = batch.num_rows() as u64;
                metrics.records_in.inc_by(rows);
                let documents = encoder
                    .encode(&batch)
                    .map_err(|e| SinkError::Config(e.to_string()))?;
                file.write_all(documents).map_err(|e| self.io_error(e))?;
                written.push((ack, rows, documents.len() as u64));
                if written.len() < GROUP_COMMIT {
                    next = input.try_recv().ok();
                }
            }
            if sync {
                file.sync_data().map_err(|e| self.io_error(e))?;
            }
            for (ack, rows, bytes) in written {
                metrics.records_out.inc_by(rows);
                metrics.bytes_out.inc_by(bytes);
                ack.confirm();
            }
        }
        Ok(())
    }

    fn io_error(&self, e: std::io::Error) -> SinkError {
        SinkError::Io {
            sink: self.ctx.name.clone(),
            message: format!("{}: {e}", self.config.path.display()),
        }
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let appending = flowlog_component::append::open(path)?;
    if let Some(text) = &appending.terminated {
        tracing::warn!(
            "{}: its last line had no newline (a record cut short by a crash, sent \
             again): one was added so that the next starts a line of its own: {text:?}",
            path.display()
        );
    }
    Ok(appending.file)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flowlog_decode::{decode_reader, DecodeOptions, RecordSink};
    use flowlog_model::{DeadLetter, FlowBatch, SourceId};
    use flowlog_sink::{Ack, BatchStatus, DeadLetters, Metrics};

    use super::*;

    struct Nowhere;
    impl DeadLetters for Nowhere {
        fn write(&self, _: DeadLetter) -> Result<(), flowlog_sink::DeadLetterError> {
            Ok(())
        }
    }

    fn batch(text: &str) -> FlowBatch {
        struct One(Option<FlowBatch>);
        impl RecordSink for One {
            fn batch(&mut self, b: FlowBatch) -> Result<(), flowlog_decode::SinkError> {
                self.0 = Some(b);
                Ok(())
            }
            fn dead_letter(&mut self, _: DeadLetter) -> Result<(), flowlog_decode::SinkError> {
                Ok(())
            }
        }
        let mut one = One(None);
        let options = DecodeOptions::default();
        decode_reader(text.as_bytes(), SourceId::new("t"), &options, &mut one).unwrap();
        one.0.unwrap()
    }

    fn sink(config: &FileConfig) -> Box<dyn Sink> {
        let ctx = SinkContext {
            name: "archive".into(),
            metrics: Metrics::new().component("sink", "archive"),
            dead_letters: Arc::new(Nowhere),
            data_dir: std::env::temp_dir(),
        };
        config.build(ctx).unwrap()
    }

    const LINE: &str = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n";

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn batches_are_acknowledged_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileConfig {
            path: dir.path().join("out/flows.ndjson"),
            format: "ecs".into(),
            ocsf_version: None,
            envelope_key: None,
            sync: true,
        };
        let sink = sink(&config);
        // check says what run would create, and creates nothing.
        let checked = sink.check().await.unwrap();
        assert!(checked.contains("run would create it"), "{checked}");
        assert!(!dir.path().join("out").exists());
        let (tx, rx) = mpsc::channel(2);
        let running = tokio::spawn(sink.run(rx));
        let (ack, wait) = Ack::new();
        let batch = Arc::new(batch(&LINE.repeat(3)));
        tx.send(SinkInput { batch, ack }).await.unwrap();
        assert_eq!(wait.wait().await, BatchStatus::Delivered);
        drop(tx);
        running.await.unwrap().unwrap();
        let text = std::fs::read_to_string(&config.path).unwrap();
        assert_eq!(text.lines().count(), 3);
        let doc: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(doc["destination"]["port"], 22);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_file_that_cannot_be_written_fails_the_batch_and_the_sink() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: opening it for writing fails.
        let config = FileConfig {
            path: dir.path().to_path_buf(),
            format: "raw".into(),
            ocsf_version: None,
            envelope_key: None,
            sync: false,
        };
        let sink = sink(&config);
        assert!(sink.check().await.is_err());
        let (tx, rx) = mpsc::channel(2);
        let (ack, wait) = Ack::new();
        tx.send(SinkInput {
            batch: Arc::new(batch(LINE)),
            ack,
        })
        .await
        .unwrap();
        let err = sink.run(rx).await.unwrap_err();
        assert!(matches!(err, SinkError::Io { .. }), "{err}");
        drop(tx);
        assert_eq!(wait.wait().await, BatchStatus::Failed);
    }

    #[test]
    fn formats_are_checked() {
        let mut config = FileConfig {
            path: "x".into(),
            format: "xml".into(),
            ocsf_version: None,
            envelope_key: None,
            sync: true,
        };
        assert!(config.validate().is_err());
        config.format = "ocsf".into();
        config.ocsf_version = Some("9".into());
        assert!(config.validate().is_err());
        config.ocsf_version = Some("1.8.0".into());
        assert!(config.validate().is_ok());
    }
}
