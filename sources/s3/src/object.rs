//! An S3 object: what names it, and (with the `client` feature) reading it, streamed from
//! GetObject into the decoder, off the runtime's workers.

/// An S3 object to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The key, decoded.
    pub key: String,
    /// The key as a notification spelled it, when that differs and the encoding is not
    /// documented (EventBridge): tried when the decoded key is not found.
    pub raw_key: Option<String>,
    pub version_id: Option<String>,
    /// Without the quotes ListObjectsV2 and GetObject put around it (as notifications
    /// give it).
    pub etag: Option<String>,
    pub size: Option<u64>,
}

impl ObjectRef {
    /// The object's identity, which its records' event ids derive from: the same object
    /// announced again, or listed by a backfill, gives the same ids, and a key written
    /// twice gives different ones.
    pub fn identity(&self) -> String {
        let base = format!("s3://{}/{}", self.bucket, self.key);
        match (&self.version_id, &self.etag) {
            (Some(version), _) => format!("{base}?versionId={version}"),
            (None, Some(etag)) => format!("{base}?etag={etag}"),
            (None, None) => base,
        }
    }
}

/// An ETag as S3's XML APIs give it (`"..."`), as notifications give it.
pub fn unquoted(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

#[cfg(feature = "client")]
pub use reading::*;

#[cfg(feature = "client")]
mod reading {
    use std::io::Read;
    use std::sync::Arc;
    use std::time::Duration;

    use aws_sdk_s3::error::SdkError;
    use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
    use aws_sdk_s3::primitives::ByteStream;
    use bytes::{Buf, Bytes};
    use flowlog_component::Stop;
    use flowlog_decode::{decode_reader, DecodeError, DecodeOptions, RecordSink};
    use flowlog_model::{error_chain, SourceId};
    use flowlog_source::SourceContext;

    use super::ObjectRef;

    /// Why an object was not read to its end.
    #[derive(Debug)]
    pub enum Unread {
        /// The process is stopping, or the pipeline took no more.
        Stopped,
        /// Something that may pass (S3 unreachable, access denied, a stalled body): the
        /// object is read again later.
        Failed(String),
    }

    /// How an object's bytes decoded.
    #[derive(Debug)]
    pub enum Decoded {
        /// To their end.
        Whole,
        /// The object itself is at fault (reading it again gives the same error: a
        /// corrupt gzip stream, not Parquet): what decoded before the fault was sent.
        Corrupt(DecodeError),
    }

    /// GetObject on `object` (its version, if it names one); the key a notification
    /// spelled differently is tried when the decoded one is not found.
    pub async fn get(
        s3: &aws_sdk_s3::Client,
        object: &ObjectRef,
    ) -> Result<GetObjectOutput, SdkError<GetObjectError>> {
        let get = |key: &str| {
            s3.get_object()
                .bucket(&object.bucket)
                .key(key)
                .set_version_id(object.version_id.clone())
                .send()
        };
        let response = get(&object.key).await;
        match (&response, &object.raw_key) {
            (Err(e), Some(raw_key)) if is_missing(e) => get(raw_key).await,
            _ => response,
        }
    }

    /// The object (or the version asked for) is not there: reading it again will not help.
    pub fn is_missing(e: &SdkError<GetObjectError>) -> bool {
        // A version that does not exist (NoSuchVersion, which the SDK does not model) is
        // as gone as a key that does not.
        e.as_service_error().is_some_and(|e| {
            use aws_sdk_s3::error::ProvideErrorMetadata;
            e.is_no_such_key() || e.code() == Some("NoSuchVersion")
        })
    }

    /// Decodes a GetObject body as it arrives, into `sink`; call it on a blocking thread.
    /// A body that sends nothing for `read_timeout` is abandoned (a half-open connection
    /// must not hold a reader forever). `gone` tells whether the sink stopped because the
    /// pipeline took no more.
    pub fn decode_body<S: RecordSink>(
        ctx: &SourceContext,
        source: SourceId,
        body: ByteStream,
        read_timeout: Duration,
        sink: &mut S,
        gone: impl Fn(&S) -> bool,
    ) -> Result<Decoded, Unread> {
        let options = DecodeOptions {
            format: ctx.format.clone(),
            batch_rows: ctx.batch_rows,
            keep_lines: ctx.keep_lines,
            ..DecodeOptions::default()
        };
        let mut reader = BodyReader {
            body,
            chunk: Bytes::new(),
            runtime: ctx.runtime.clone(),
            timeout: read_timeout,
            stop: Some(Arc::clone(&ctx.stop)),
            failure: None,
            bytes_in: Some(ctx.metrics.bytes_in.clone()),
        };
        let decoded = decode_reader(&mut reader, source.clone(), &options, sink);
        if ctx.stopping() || gone(sink) {
            return Err(Unread::Stopped);
        }
        if let Some(failure) = reader.failure.take() {
            return Err(Unread::Failed(format!("{source}: {failure}")));
        }
        match decoded {
            Ok(_) => Ok(Decoded::Whole),
            Err(e) if e.is_corrupt_input() => Ok(Decoded::Corrupt(e)),
            // This machine's fault (a spill file that cannot be written): read again later.
            Err(e) => Err(Unread::Failed(format!("{source}: {e}"))),
        }
    }

    /// Decodes a GetObject body as it arrives, into `sink`, outside any source (a query's
    /// scan); call it on a thread that may block, with a handle of a multi-threaded
    /// runtime. A body that sends nothing for `read_timeout` is given up.
    pub fn decode_plain_body(
        runtime: tokio::runtime::Handle,
        source: SourceId,
        body: ByteStream,
        read_timeout: Duration,
        options: &DecodeOptions,
        sink: &mut dyn RecordSink,
    ) -> Result<flowlog_decode::DecodeStats, String> {
        let mut reader = BodyReader {
            body,
            chunk: Bytes::new(),
            runtime,
            timeout: read_timeout,
            stop: None,
            failure: None,
            bytes_in: None,
        };
        let decoded = decode_reader(&mut reader, source.clone(), options, sink);
        match (reader.failure.take(), decoded) {
            (Some(failure), _) => Err(format!("{source}: {failure}")),
            (None, Ok(stats)) => Ok(stats),
            (None, Err(e)) => Err(e.to_string()),
        }
    }

    /// A GetObject body as a blocking reader. A failure of the transfer (not of the data)
    /// is kept aside, so that it is told apart from a corrupt object.
    struct BodyReader {
        body: ByteStream,
        chunk: Bytes,
        runtime: tokio::runtime::Handle,
        timeout: Duration,
        /// A source's stop (reading ends when it is set).
        stop: Option<Arc<Stop>>,
        failure: Option<String>,
        bytes_in: Option<flowlog_component::metrics::Counter>,
    }

    impl BodyReader {
        fn fail(&mut self, why: String) -> std::io::Error {
            self.failure = Some(why.clone());
            std::io::Error::other(why)
        }
    }

    impl Read for BodyReader {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            while self.chunk.is_empty() {
                if self.stop.as_ref().is_some_and(|s| s.is_set()) {
                    return Err(std::io::Error::other("stopping"));
                }
                // The timer is made inside the runtime: this runs on a plain thread.
                let (timeout, body) = (self.timeout, &mut self.body);
                let next = self
                    .runtime
                    .block_on(async move { tokio::time::timeout(timeout, body.next()).await });
                match next {
                    Ok(None) => return Ok(0),
                    Ok(Some(Ok(chunk))) => {
                        if let Some(counter) = &self.bytes_in {
                            counter.inc_by(chunk.len() as u64);
                        }
                        self.chunk = chunk;
                    }
                    Ok(Some(Err(e))) => {
                        let why = format!("reading the object: {}", error_chain(&e));
                        return Err(self.fail(why));
                    }
                    Err(_) => {
                        let secs = self.timeout.as_secs();
                        return Err(
                            self.fail(format!("the object's body sent nothing for {secs} s"))
                        );
                    }
                }
            }
            let n = buf.len().min(self.chunk.len());
            buf[..n].copy_from_slice(&self.chunk[..n]);
            self.chunk.advance(n);
            Ok(n)
        }
    }
}
