//! Reading one announced S3 object: streamed from GetObject into the decoder on a blocking
//! thread (`flowlog_source_s3::object`), its batches sent into the pipeline as they are
//! decoded, their waiters kept for the message's deletion.

use std::sync::Arc;
use std::time::Duration;

use flowlog_component::AckWait;
use flowlog_decode::{DeadLetter, RecordSink, SinkError};
use flowlog_model::{error_chain, FlowBatch, SourceId};
use flowlog_source::SourceContext;
pub use flowlog_source_s3::object::Unread;
use flowlog_source_s3::object::{decode_body, get, is_missing, Decoded};

use crate::queue::Shared;
use crate::ObjectRef;

/// Reads `object`; the waiters of the batches sent. An object that is gone, or that
/// cannot be decoded (a corrupt gzip stream, not Parquet: `is_corrupt_input`), is
/// dead-lettered and counts as read: reading it again would not help.
pub async fn read(shared: &Arc<Shared>, object: &ObjectRef) -> Result<Vec<AckWait>, Unread> {
    let source = SourceId::new(object.identity());
    let body = match get(&shared.clients.s3, object).await {
        Ok(output) => output.body,
        Err(e) if is_missing(&e) => {
            let reason = format!("the object is gone: {}", error_chain(&e));
            tracing::warn!(source = %shared.ctx.name, object = %source, "{reason}; dead-lettered");
            dead_letter(&shared.ctx, &source, reason)?;
            return Ok(Vec::new());
        }
        Err(e) => return Err(Unread::Failed(format!("{source}: {}", error_chain(&e)))),
    };
    let shared = Arc::clone(shared);
    let decoded = tokio::task::spawn_blocking(move || {
        let ctx = &shared.ctx;
        let timeout = Duration::from_secs(shared.settings.read_timeout_secs);
        let mut sent = Submit {
            ctx,
            waits: Vec::new(),
            gone: false,
        };
        match decode_body(ctx, source.clone(), body, timeout, &mut sent, |s| s.gone)? {
            Decoded::Whole => {}
            Decoded::Corrupt(e) => {
                tracing::warn!(source = %ctx.name, "{e}; dead-lettered");
                dead_letter(ctx, &source, e.to_string())?;
            }
        }
        Ok(sent.waits)
    })
    .await;
    decoded.unwrap_or_else(|e| Err(Unread::Failed(format!("decoding stopped: {e}"))))
}

/// A whole object dead-lettered (line 0, no text: it is the object that failed); when the
/// dead letter cannot keep it, the object counts as not read (its message comes back).
fn dead_letter(ctx: &SourceContext, source: &SourceId, reason: String) -> Result<(), Unread> {
    ctx.dead_letter(DeadLetter::new(source, 0, reason, b""))
        .map_err(|e| Unread::Failed(format!("{source}: {e}")))
}

/// Sends decoded batches into the pipeline (waiting for room: the backpressure) and keeps
/// their waiters; dead letters go to the dead-letter file.
struct Submit<'a> {
    ctx: &'a SourceContext,
    waits: Vec<AckWait>,
    gone: bool,
}

impl RecordSink for Submit<'_> {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        if self.ctx.stopping() {
            return Err("stopping".into());
        }
        match self.ctx.runtime.block_on(self.ctx.submit(batch)) {
            Some(wait) => {
                self.waits.push(wait);
                Ok(())
            }
            None => {
                self.gone = true;
                Err("the pipeline has stopped".into())
            }
        }
    }

    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        // Not kept: decoding stops, and the message is not deleted.
        Ok(self.ctx.dead_letter(letter)?)
    }
}
