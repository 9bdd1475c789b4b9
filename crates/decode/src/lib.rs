//! Decoding AWS VPC and Transit Gateway flow logs into Arrow [`FlowBatch`]es.
//!
//! This crate owns everything between raw bytes and batches:
//! - [`sniff`]: which envelope a stream is in, from its first bytes (gzip, Parquet, JSON,
//!   text), never from a file name;
//! - envelopes: gzip (multi-member, streamed), Parquet, CloudWatch Logs subscription
//!   payloads, Firehose HTTP endpoint requests, Lambda `awslogs` events, `{"message": ...}`
//!   JSON lines, plain text;
//! - [`LineDecoder`]: the exact line decoder (header lines, formats, `-` as null, checked
//!   numbers and addresses, string views into the input);
//! - [`DeadLetter`]: every record that cannot be decoded, with source, line, reason and
//!   raw text. A bad record never stops a source; only an unreadable source is an error.
//!
//! Decoding pushes its results into a [`RecordSink`], so callers choose what happens next
//! (write NDJSON, feed a bounded channel) and memory stays bounded: text is read in blocks
//! of about a megabyte, and batches hold at most [`DecodeOptions::batch_rows`] rows.

mod assemble;
mod envelope;
mod error;
mod json;
mod line;
mod parquet;
mod sniff;
mod text;
mod tokens;
mod values;

use std::cell::Cell;
use std::fs::File;
use std::io::{Cursor, Read};
use std::ops::AddAssign;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use flowlog_model::{FlowBatch, FlowFormat, SourceId};

pub use error::{DecodeError, SinkError};
pub use flowlog_model::DeadLetter;
pub use json::MAX_ENVELOPE_BYTES;
pub use line::LineDecoder;
pub use sniff::{sniff, Envelope, SNIFF_LEN};
pub use text::{Frame, Framer, BLOCK_BYTES, MAX_LINE_BYTES};

/// Where decoded batches and dead letters go.
pub trait RecordSink {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError>;
    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError>;
    /// A streaming input ([`DecodeOptions::streaming`]) went quiet after what was just
    /// emitted: write out anything held in buffers.
    fn idle(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A [`RecordSink`] that keeps everything it is given, in order: what tests and small
/// tools decode into.
#[derive(Debug, Default)]
pub struct Collected {
    pub batches: Vec<FlowBatch>,
    pub dead_letters: Vec<DeadLetter>,
}

impl Collected {
    /// Everything `input` decodes to with the default options, as from `source`.
    pub fn decode(input: &[u8], source: &str) -> Result<Self, DecodeError> {
        let mut collected = Self::default();
        decode_reader(
            input,
            SourceId::new(source),
            &DecodeOptions::default(),
            &mut collected,
        )?;
        Ok(collected)
    }
}

impl RecordSink for Collected {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        self.batches.push(batch);
        Ok(())
    }
    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        self.dead_letters.push(letter);
        Ok(())
    }
}

/// Called with the number of input bytes consumed, as they are consumed (progress bars).
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// Settings for decoding one source.
#[derive(Clone)]
pub struct DecodeOptions {
    /// The format of lines that are not preceded by a header line (CloudWatch Logs, Firehose,
    /// headerless files). Without it, the default version 2 format. A header line in the
    /// data always takes precedence from that line on.
    pub format: Option<FlowFormat>,
    /// The most rows a batch holds.
    pub batch_rows: usize,
    /// Told how many input bytes were read, as they are read.
    pub progress: Option<ProgressFn>,
    /// Keep each record's line in [`FlowBatch::lines`] (text and JSON envelopes; Parquet
    /// has no lines).
    pub keep_lines: bool,
    /// For input that arrives over time (a pipe, a terminal, a socket): emit records as
    /// their lines arrive instead of waiting for a whole block. Without it, streams are
    /// read a block (about 1 MiB) at a time, which is fastest for files.
    pub streaming: Option<Streaming>,
    /// The most bytes that decompressing record data inside JSON envelopes (gzip'd
    /// CloudWatch Logs payloads in Firehose records) may produce for the whole source;
    /// past it the source fails with [`DecodeError::TooLarge`]. Each record is also held to
    /// [`MAX_ENVELOPE_BYTES`]. `None`: no bound beyond the per-record one (a file is as
    /// large as it is; a network request is not).
    pub max_inflated_bytes: Option<u64>,
    /// The catalogue columns wanted (by catalogue index), when not all are: Parquet input
    /// then reads only those columns (and checks only their values); the others are null.
    /// Text is decoded and checked whole either way. `None`: every column.
    pub columns: Option<Arc<[bool]>>,
}

/// How a stream that arrives over time is decoded promptly: read what is there, and emit
/// what was decoded (then call [`RecordSink::idle`]) whenever nothing more is ready to be
/// read, or once the oldest line not yet emitted has waited `flush_interval`. Partial lines
/// wait for their end; a busy stream is still read in whole blocks.
#[derive(Clone)]
pub struct Streaming {
    /// Whether more input can be read now without waiting.
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The longest a decoded line waits to be emitted while input keeps arriving.
    pub flush_interval: std::time::Duration,
}

impl Streaming {
    /// The default flush interval: a tenth of a second.
    pub const DEFAULT_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

    /// Streaming for standard input when it is not a regular file (a pipe, a terminal, a
    /// socket); `None` for a file, which is read in whole blocks.
    #[cfg(unix)]
    pub fn stdin(flush_interval: std::time::Duration) -> Option<Self> {
        use std::os::unix::fs::FileTypeExt;
        // The metadata of fd 0 itself, whatever path (if any) it came from.
        let kind = std::fs::metadata("/dev/stdin").ok()?.file_type();
        if kind.is_file() || kind.is_block_device() {
            return None;
        }
        let ready = || {
            let mut fd = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no timeout; fd 0 is only inspected.
            let n = unsafe { libc::poll(&mut fd, 1, 0) };
            // Readable, or at its end or broken (a read then returns at once too).
            n > 0 && fd.revents != 0
        };
        Some(Self {
            ready: Arc::new(ready),
            flush_interval,
        })
    }

    /// Whether to emit now: nothing more is ready, or the oldest pending line (waiting
    /// since `since`) has waited long enough.
    pub(crate) fn due(&self, since: Option<std::time::Instant>) -> bool {
        since.is_some_and(|t| t.elapsed() >= self.flush_interval) || !(self.ready)()
    }
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            format: None,
            batch_rows: 8192,
            progress: None,
            keep_lines: false,
            streaming: None,
            max_inflated_bytes: None,
            columns: None,
        }
    }
}

impl std::fmt::Debug for DecodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeOptions")
            .field("format", &self.format.as_ref().map(|f| f.to_string()))
            .field("batch_rows", &self.batch_rows)
            .field("progress", &self.progress.is_some())
            .field("keep_lines", &self.keep_lines)
            .field(
                "streaming",
                &self.streaming.as_ref().map(|s| s.flush_interval),
            )
            .field("max_inflated_bytes", &self.max_inflated_bytes)
            .field("columns", &self.columns)
            .finish()
    }
}

/// Counts for one source (or, added up, for a run).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecodeStats {
    /// Records emitted in batches.
    pub records: u64,
    /// Records written to the dead letter instead.
    pub dead_letters: u64,
    /// Empty or white-space lines (not records).
    pub blank_lines: u64,
    /// S3 header lines (format declarations, not records).
    pub header_lines: u64,
    /// CloudWatch Logs CONTROL_MESSAGE payloads (health checks, not records).
    pub control_messages: u64,
    /// Input bytes read (before decompression).
    pub bytes_read: u64,
}

impl AddAssign for DecodeStats {
    fn add_assign(&mut self, o: Self) {
        self.records += o.records;
        self.dead_letters += o.dead_letters;
        self.blank_lines += o.blank_lines;
        self.header_lines += o.header_lines;
        self.control_messages += o.control_messages;
        self.bytes_read += o.bytes_read;
    }
}

/// The longest envelope magic [`sniff`] looks for (`PAR1`; gzip's is 2 bytes, UTF-8's BOM 3).
const MAGIC_LEN: usize = 4;

/// How many gzip layers are unwrapped before giving up.
const MAX_GZIP_DEPTH: usize = 3;

/// The largest Parquet stream (after decompression) decoded: it is spilled to a temporary
/// file for random access. VPC flow-log Parquet objects are far smaller.
const MAX_PARQUET_STREAM: u64 = 4 << 30;

/// Decodes a file, detecting its envelope from its bytes. Parquet is read with random
/// access, plain text through memory-mapped windows; everything else is streamed.
pub fn decode_file(
    path: &Path,
    source: SourceId,
    options: &DecodeOptions,
    sink: &mut dyn RecordSink,
) -> Result<DecodeStats, DecodeError> {
    let io = |e| DecodeError::io(&source, e);
    let mut file = File::open(path).map_err(io)?;
    let mut magic = [0u8; SNIFF_LEN];
    let n = read_prefix(&mut file, &mut magic).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    // Whole files whose size is known: Parquet needs random access, and plain text is
    // mapped instead of read. Anything else (gzip, JSON, pipes) is streamed.
    let stats = match sniff(&magic[..n]) {
        Envelope::Parquet => {
            let mut stats = DecodeStats::default();
            parquet::decode_parquet(file, &source, options, &mut stats, sink)?;
            stats
        }
        // (A size below what was just read is a /proc-like file: streamed.)
        Envelope::Text if metadata.is_file() && metadata.len() >= n as u64 => {
            let mut lines =
                LineDecoder::new(source.clone(), options.format.clone(), options.batch_rows)
                    .keeping_lines(options.keep_lines);
            let map = |offset, len| map_window(&file, offset, len);
            text::decode_mapped(metadata.len(), map, &mut lines, sink)?;
            lines.flush(sink)?;
            *lines.stats()
        }
        _ => {
            let rest = Cursor::new(magic[..n].to_vec()).chain(file);
            return decode_reader(rest, source, options, sink);
        }
    };
    if let Some(progress) = &options.progress {
        progress(metadata.len());
    }
    Ok(DecodeStats {
        bytes_read: metadata.len(),
        ..stats
    })
}

/// Decodes a stream (standard input, an object body...), detecting its envelope from its
/// bytes. A Parquet stream is first copied to a temporary file, as Parquet needs random
/// access.
pub fn decode_reader(
    reader: impl Read,
    source: SourceId,
    options: &DecodeOptions,
    sink: &mut dyn RecordSink,
) -> Result<DecodeStats, DecodeError> {
    let counted = Rc::new(Cell::new(0));
    let metered = Metered {
        inner: reader,
        counted: Rc::clone(&counted),
        progress: options.progress.clone(),
    };
    let mut stats = decode_stream(Box::new(metered), &source, options, 0, sink)?;
    stats.bytes_read = counted.get();
    Ok(stats)
}

/// Decodes the body of an Amazon Data Firehose HTTP endpoint request (after its
/// `Content-Encoding` is undone): `{"requestId", "timestamp", "records": [{"data"}]}`,
/// each record's data base64 of a CloudWatch Logs payload (gzip'd), a `{"message"}`
/// event, or lines.
///
/// The body is checked whole before any record is emitted: a body that is not such a
/// request is [`DecodeError::NotARequest`] and nothing is emitted, so the caller can
/// refuse it and let Firehose retry or back it up, instead of acknowledging a part. The
/// body may be as large as the caller accepts (Firehose sends up to 64 MiB); records
/// inside it that cannot be decoded are dead letters, as anywhere else.
pub fn decode_firehose_request(
    body: &[u8],
    source: SourceId,
    options: &DecodeOptions,
    sink: &mut dyn RecordSink,
) -> Result<DecodeStats, DecodeError> {
    let mut lines = LineDecoder::new(source.clone(), options.format.clone(), options.batch_rows)
        .keeping_lines(options.keep_lines);
    json::JsonDecoder::new(&mut lines, options.max_inflated_bytes).decode_request(body, sink)?;
    lines.flush(sink)?;
    Ok(DecodeStats {
        bytes_read: body.len() as u64,
        ..*lines.stats()
    })
}

/// Counts the bytes read through it and reports them to the progress callback.
struct Metered<R> {
    inner: R,
    counted: Rc<Cell<u64>>,
    progress: Option<ProgressFn>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counted.set(self.counted.get() + n as u64);
        if let Some(progress) = &self.progress {
            progress(n as u64);
        }
        Ok(n)
    }
}

fn decode_stream(
    mut reader: Box<dyn Read + '_>,
    source: &SourceId,
    options: &DecodeOptions,
    gzip_depth: usize,
    sink: &mut dyn RecordSink,
) -> Result<DecodeStats, DecodeError> {
    // Only the outer stream arrives over time; what a gzip layer holds is read whole.
    let streaming = options.streaming.as_ref().filter(|_| gzip_depth == 0);
    let mut prefix = [0u8; SNIFF_LEN];
    let n = match streaming {
        // A first line shorter than the sniffer's window must not wait for the next one,
        // but gzip's and Parquet's magic must be whole, however the stream is cut, and
        // what was read must tell the sniffer something: white space (after a byte-order
        // mark) alone would be taken for an empty stream and the rest never read.
        Some(streaming) => fill_prefix(&mut reader, &mut prefix, |read| {
            read.len() >= MAGIC_LEN && sniff(read) != Envelope::Empty && !(streaming.ready)()
        }),
        None => read_prefix(&mut reader, &mut prefix),
    }
    .map_err(|e| DecodeError::io(source, e))?;
    let reader = Cursor::new(prefix[..n].to_vec()).chain(reader);
    let mut lines = LineDecoder::new(source.clone(), options.format.clone(), options.batch_rows)
        .keeping_lines(options.keep_lines);
    match sniff(&prefix[..n]) {
        Envelope::Gzip if gzip_depth >= MAX_GZIP_DEPTH => {
            return Err(DecodeError::TooDeep {
                source_id: source.clone(),
                depth: MAX_GZIP_DEPTH,
            })
        }
        Envelope::Gzip => {
            let plain = flate2::read::MultiGzDecoder::new(reader);
            return decode_stream(Box::new(plain), source, options, gzip_depth + 1, sink);
        }
        Envelope::Parquet => {
            // Parquet needs random access: the stream goes to an unnamed temporary file
            // (never to memory: a gzip'd object can decompress to any size), at most
            // MAX_PARQUET_STREAM bytes of it.
            let io = |e| DecodeError::io(source, e);
            let mut spill = tempfile::tempfile().map_err(io)?;
            let copied =
                std::io::copy(&mut reader.take(MAX_PARQUET_STREAM + 1), &mut spill).map_err(io)?;
            if copied > MAX_PARQUET_STREAM {
                return Err(DecodeError::TooLarge {
                    source_id: source.clone(),
                    what: "Parquet stream",
                    limit: MAX_PARQUET_STREAM,
                });
            }
            let mut stats = DecodeStats::default();
            parquet::decode_parquet(spill, source, options, &mut stats, sink)?;
            return Ok(stats);
        }
        Envelope::Json => json::JsonDecoder::new(&mut lines, options.max_inflated_bytes)
            .decode_stream(reader, streaming, sink)?,
        Envelope::Text => {
            text::decode_text(reader, &mut lines, 1, streaming, sink)?;
        }
        Envelope::Empty => {}
    }
    lines.flush(sink)?;
    Ok(*lines.stats())
}

/// Maps part of a plain-text file into memory, so its lines are decoded where they lie: no
/// read copies, and string columns point into the mapping, which is unmapped when the last
/// batch pointing into it is dropped.
///
/// Flow-log objects are written once and not changed; a file truncated by another process
/// while it is being decoded would fault, which is why only `decode_file` (whole files
/// given by the user) maps, never a followed or streamed source.
fn map_window(file: &File, offset: u64, len: usize) -> std::io::Result<arrow_buffer::Buffer> {
    // SAFETY: see above; the mapping is read-only and lives as long as any buffer slice.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)?
    };
    let ptr = std::ptr::NonNull::new(map.as_ptr() as *mut u8)
        .ok_or_else(|| std::io::Error::other("empty mapping"))?;
    let len = map.len();
    // SAFETY: `ptr` is valid for `len` bytes for as long as `map` lives, and the buffer
    // keeps `map` alive through its owner.
    Ok(unsafe { arrow_buffer::Buffer::from_custom_allocation(ptr, len, Arc::new(map)) })
}

/// Fills `buf` as far as the input allows; returns how many bytes were read (what
/// [`sniff`] is given: [`SNIFF_LEN`] bytes, or fewer at the end of the input).
pub fn read_prefix(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    fill_prefix(reader, buf, |_| false)
}

/// [`read_prefix`] that also stops once `enough` says so of what was read so far.
fn fill_prefix(
    reader: &mut impl Read,
    buf: &mut [u8],
    enough: impl Fn(&[u8]) -> bool,
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() && !enough(&buf[..filled]) {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
