//! Reading one S3 object: streamed from GetObject into the decoder on a blocking thread,
//! its batches sent into the pipeline as they are decoded.

use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use bytes::{Buf, Bytes};
use flowlog_component::{AckWait, Stop};
use flowlog_decode::{decode_reader, DeadLetter, DecodeOptions, RecordSink, SinkError};
use flowlog_model::{error_chain, FlowBatch, SourceId};
use flowlog_source::SourceContext;

use crate::queue::Shared;
use crate::ObjectRef;

/// Why an object was not read to its end.
pub enum Unread {
    /// The process is stopping.
    Stopped,
    /// Something that may pass (S3 unreachable, access denied, a stalled body): the
    /// message is read again later.
    Failed(String),
}

/// Reads `object`; the waiters of the batches sent. An object that is gone, or that
/// cannot be decoded (a corrupt gzip stream, not Parquet: `is_corrupt_input`), is
/// dead-lettered and counts as read: reading it again would not help.
pub async fn read(shared: &Arc<Shared>, object: &ObjectRef) -> Result<Vec<AckWait>, Unread> {
    let source = SourceId::new(object.identity());
    let mut response = get(shared, object, &object.key).await;
    if let (Err(e), Some(raw_key)) = (&response, &object.raw_key) {
        if is_missing(e) {
            response = get(shared, object, raw_key).await;
        }
    }
    let body = match response {
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
    let decoded = tokio::task::spawn_blocking(move || decode(&shared, source, body)).await;
    decoded.unwrap_or_else(|e| Err(Unread::Failed(format!("decoding stopped: {e}"))))
}

async fn get(
    shared: &Shared,
    object: &ObjectRef,
    key: &str,
) -> Result<
    aws_sdk_s3::operation::get_object::GetObjectOutput,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
> {
    shared
        .clients
        .s3
        .get_object()
        .bucket(&object.bucket)
        .key(key)
        .set_version_id(object.version_id.clone())
        .send()
        .await
}

fn is_missing(
    e: &aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
) -> bool {
    // A version that does not exist (NoSuchVersion, which the SDK does not model) is as
    // gone as a key that does not.
    e.as_service_error().is_some_and(|e| {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        e.is_no_such_key() || e.code() == Some("NoSuchVersion")
    })
}

/// A whole object dead-lettered (line 0, no text: it is the object that failed); when the
/// dead letter cannot keep it, the object counts as not read (its message comes back).
fn dead_letter(ctx: &SourceContext, source: &SourceId, reason: String) -> Result<(), Unread> {
    ctx.dead_letter(DeadLetter::new(source, 0, reason, b""))
        .map_err(|e| Unread::Failed(format!("{source}: {e}")))
}

/// Decodes the body as it arrives (on a blocking thread).
fn decode(shared: &Shared, source: SourceId, body: ByteStream) -> Result<Vec<AckWait>, Unread> {
    let ctx = &shared.ctx;
    let options = DecodeOptions {
        format: ctx.format.clone(),
        batch_rows: ctx.batch_rows,
        keep_lines: ctx.keep_lines,
        ..DecodeOptions::default()
    };
    let transport = Rc::new(RefCell::new(None));
    let reader = BodyReader {
        body,
        chunk: Bytes::new(),
        runtime: ctx.runtime.clone(),
        timeout: Duration::from_secs(shared.settings.read_timeout_secs),
        stop: Arc::clone(&ctx.stop),
        failure: Rc::clone(&transport),
        bytes_in: ctx.metrics.bytes_in.clone(),
    };
    let mut sent = Submit {
        ctx,
        waits: Vec::new(),
        gone: false,
    };
    let decoded = decode_reader(reader, source.clone(), &options, &mut sent);
    if ctx.stopping() || sent.gone {
        return Err(Unread::Stopped);
    }
    if let Some(failure) = transport.borrow_mut().take() {
        return Err(Unread::Failed(format!("{source}: {failure}")));
    }
    match decoded {
        Ok(_) => Ok(sent.waits),
        // The object itself is at fault (reading it again gives the same error): what
        // decoded before the fault is delivered, the object dead-lettered.
        Err(e) if e.is_corrupt_input() => {
            tracing::warn!(source = %ctx.name, "{e}; dead-lettered");
            dead_letter(ctx, &source, e.to_string())?;
            Ok(sent.waits)
        }
        // This machine's fault (a spill file that cannot be written): read again later.
        Err(e) => Err(Unread::Failed(e.to_string())),
    }
}

/// A GetObject body as a blocking reader. A failure of the transfer (not of the data) is
/// kept aside, so that it is told apart from a corrupt object.
struct BodyReader {
    body: ByteStream,
    chunk: Bytes,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
    stop: Arc<Stop>,
    failure: Rc<RefCell<Option<String>>>,
    bytes_in: flowlog_component::metrics::Counter,
}

impl BodyReader {
    fn fail(&self, why: String) -> std::io::Error {
        *self.failure.borrow_mut() = Some(why.clone());
        std::io::Error::other(why)
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            if self.stop.is_set() {
                return Err(std::io::Error::other("stopping"));
            }
            let next = self
                .runtime
                .block_on(tokio::time::timeout(self.timeout, self.body.next()));
            match next {
                Ok(None) => return Ok(0),
                Ok(Some(Ok(chunk))) => {
                    self.bytes_in.inc_by(chunk.len() as u64);
                    self.chunk = chunk;
                }
                Ok(Some(Err(e))) => {
                    return Err(self.fail(format!("reading the object: {}", error_chain(&e))))
                }
                Err(_) => {
                    let secs = self.timeout.as_secs();
                    return Err(self.fail(format!("the object's body sent nothing for {secs} s")));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
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
