//! The line decoder: blocks of flow-log text to [`FlowBatch`]es.
//!
//! Input arrives as blocks: byte buffers holding whole lines. Text columns are Arrow string
//! views into the block itself, so a value is never copied (values of up to 12 bytes are
//! stored inline in the view). Integers are parsed and range-checked in one pass; a line
//! that fails any check is rolled back out of every column and dead-lettered with the
//! field that failed.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, StringViewArray, TimestampMillisecondArray};
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBuffer, ScalarBuffer};
use flowlog_model::{FieldKind, FlowBatch, FlowFormat, SourceId};

use crate::assemble::{Layout, NullColumns};
use crate::envelope::{BlockMetadata, EnvelopeColumns};
use crate::text::MAX_LINE_BYTES;
use crate::tokens::{self, Line};
use crate::values::{epoch_millis_in, max_value, parse_integer_in, BadValue, CheckedAddresses};
use crate::{DeadLetter, DecodeError, DecodeStats, RecordSink};

/// How the lines of a block are numbered in their source.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LineNumbers<'a> {
    /// Physical lines, the first one being this number.
    From(u64),
    /// One number per line of the block, in order (log events of an envelope), and what
    /// the envelope said about each.
    Listed(&'a [u64], &'a BlockMetadata),
}

impl LineNumbers<'_> {
    fn get(&self, index: usize) -> u64 {
        match self {
            LineNumbers::From(first) => first + index as u64,
            LineNumbers::Listed(numbers, _) => numbers[index],
        }
    }

    fn envelopes(&self) -> Option<&BlockMetadata> {
        match self {
            LineNumbers::From(_) => None,
            LineNumbers::Listed(_, envelopes) => Some(envelopes),
        }
    }
}

/// Values of one format position for the batch being built.
enum Column {
    Text {
        views: Vec<u128>,
        nulls: NullRows,
    },
    Int32 {
        values: Vec<i32>,
        nulls: NullRows,
        max: u64,
    },
    Int64 {
        values: Vec<i64>,
        nulls: NullRows,
        max: u64,
    },
    Time {
        values: Vec<i64>,
        nulls: NullRows,
    },
}

impl Column {
    fn new(kind: FieldKind, capacity: usize) -> Self {
        let nulls = NullRows::default();
        match kind {
            FieldKind::Text | FieldKind::IpAddr => Column::Text {
                views: Vec::with_capacity(capacity),
                nulls,
            },
            FieldKind::Port | FieldKind::Code | FieldKind::Int32 => Column::Int32 {
                values: Vec::with_capacity(capacity),
                nulls,
                max: max_value(kind),
            },
            FieldKind::Count => Column::Int64 {
                values: Vec::with_capacity(capacity),
                nulls,
                max: max_value(kind),
            },
            FieldKind::EpochTime => Column::Time {
                values: Vec::with_capacity(capacity),
                nulls,
            },
        }
    }

    #[inline]
    fn push_null(&mut self) {
        match self {
            Column::Text { views, nulls } => {
                nulls.push(views.len());
                views.push(0);
            }
            Column::Int32 { values, nulls, .. } => {
                nulls.push(values.len());
                values.push(0);
            }
            Column::Int64 { values, nulls, .. } | Column::Time { values, nulls } => {
                nulls.push(values.len());
                values.push(0);
            }
        }
    }

    /// Removes the values of a line that failed part-way.
    fn truncate(&mut self, rows: usize) {
        match self {
            Column::Text { views, nulls } => {
                views.truncate(rows);
                nulls.truncate(rows);
            }
            Column::Int32 { values, nulls, .. } => {
                values.truncate(rows);
                nulls.truncate(rows);
            }
            Column::Int64 { values, nulls, .. } | Column::Time { values, nulls } => {
                values.truncate(rows);
                nulls.truncate(rows);
            }
        }
    }

    fn finish(&mut self, blocks: &[Buffer]) -> ArrayRef {
        match self {
            Column::Text { views, nulls } => {
                let nulls = nulls.finish(views.len());
                let views = ScalarBuffer::from(take_keeping_capacity(views));
                // SAFETY: every non-null view was made by `make_view` over a token of a line
                // that was checked to be UTF-8, at its offset in one of `blocks`, whose
                // index it carries; tokens end at ASCII separators, so each is UTF-8 on its
                // own. Null views are zero. `try_new` would re-validate every value, which
                // costs as much as the rest of decoding.
                let array = if cfg!(debug_assertions) {
                    // Tests and debug builds check the claim above.
                    StringViewArray::try_new(views, blocks.to_vec(), nulls)
                        .expect("string views are valid")
                } else {
                    unsafe { StringViewArray::new_unchecked(views, blocks.to_vec(), nulls) }
                };
                Arc::new(array)
            }
            Column::Int32 { values, nulls, .. } => {
                let nulls = nulls.finish(values.len());
                Arc::new(Int32Array::new(
                    ScalarBuffer::from(take_keeping_capacity(values)),
                    nulls,
                ))
            }
            Column::Int64 { values, nulls, .. } => {
                let nulls = nulls.finish(values.len());
                Arc::new(Int64Array::new(
                    ScalarBuffer::from(take_keeping_capacity(values)),
                    nulls,
                ))
            }
            Column::Time { values, nulls } => {
                let nulls = nulls.finish(values.len());
                Arc::new(
                    TimestampMillisecondArray::new(
                        ScalarBuffer::from(take_keeping_capacity(values)),
                        nulls,
                    )
                    .with_timezone("UTC"),
                )
            }
        }
    }
}

/// Why a line was not decoded (before it is turned into a dead letter).
enum LineError {
    FieldCount,
    Value { position: usize, bad: BadValue },
}

/// Decodes blocks of flow-log lines of one source into batches.
pub struct LineDecoder {
    source: SourceId,
    batch_rows: usize,
    layout: Layout,
    kinds: Vec<FieldKind>,
    columns: Vec<Column>,
    /// Blocks the current batch's string views point into.
    blocks: Vec<Buffer>,
    /// No block of the current batch holds `"` or `\`. Tokens never hold control
    /// characters (they end at them), so then no text value needs escaping in JSON.
    plain_text: bool,
    line_numbers: Vec<u64>,
    /// Views of each row's line, when asked for ([`LineDecoder::keeping_lines`]).
    lines: Option<Vec<u128>>,
    /// Each row's envelope, when its lines came out of envelopes.
    envelopes: EnvelopeColumns,
    rows: usize,
    addresses: CheckedAddresses,
    /// Token offsets of the line being decoded (reused).
    spans: Vec<(u32, u32)>,
    nulls: NullColumns,
    stats: DecodeStats,
}

impl LineDecoder {
    /// `format` is used until a header line names another one; without one, the default
    /// (version 2) format.
    pub fn new(source: SourceId, format: Option<FlowFormat>, batch_rows: usize) -> Self {
        let batch_rows = batch_rows.max(1);
        let layout = Layout::new(format.unwrap_or_else(FlowFormat::default_v2));
        let mut decoder = Self {
            source,
            batch_rows,
            kinds: Vec::new(),
            columns: Vec::new(),
            layout,
            blocks: Vec::new(),
            plain_text: true,
            line_numbers: Vec::with_capacity(batch_rows),
            lines: None,
            envelopes: EnvelopeColumns::default(),
            rows: 0,
            addresses: CheckedAddresses::default(),
            spans: Vec::with_capacity(64),
            nulls: NullColumns::default(),
            stats: DecodeStats::default(),
        };
        decoder.reset_columns();
        decoder
    }

    /// Keep each record's line in [`FlowBatch::lines`].
    pub fn keeping_lines(mut self, keep: bool) -> Self {
        self.lines = keep.then(|| Vec::with_capacity(self.batch_rows));
        self
    }

    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    pub(crate) fn stats_mut(&mut self) -> &mut DecodeStats {
        &mut self.stats
    }

    pub fn source(&self) -> &SourceId {
        &self.source
    }

    /// The format lines are decoded with now.
    pub fn format(&self) -> &FlowFormat {
        &self.layout.format
    }

    fn reset_columns(&mut self) {
        let n = self.layout.format.len();
        self.kinds = (0..n).map(|i| self.layout.kind(i)).collect();
        self.columns = self
            .kinds
            .iter()
            .map(|&k| Column::new(k, self.batch_rows))
            .collect();
    }

    /// Decodes a block of whole lines of a plain-text source whose first line is
    /// `first_line` (lines end with `\n`; the last one need not). Returns the number of
    /// lines the block held. For callers that frame text themselves (a followed file);
    /// call [`LineDecoder::flush`] to emit the rows decoded so far.
    pub fn decode_lines(
        &mut self,
        block: Buffer,
        first_line: u64,
        sink: &mut dyn RecordSink,
    ) -> Result<u64, DecodeError> {
        self.decode_block(block, LineNumbers::From(first_line), sink)
    }

    /// Decodes what a [`Framer`](crate::Framer) handed out, its first line numbered
    /// `first_line`; returns how many lines it held.
    pub fn decode_frame(
        &mut self,
        frame: crate::Frame,
        first_line: u64,
        sink: &mut dyn RecordSink,
    ) -> Result<u64, DecodeError> {
        match frame {
            crate::Frame::Lines(block) => self.decode_lines(block, first_line, sink),
            crate::Frame::LongLine { head, length } => self
                .over_long_line(first_line, &head, length, sink)
                .map(|()| 1),
        }
    }

    /// Decodes every line of `block` (lines end with `\n`; the last one need not). Returns
    /// the number of lines the block held.
    pub(crate) fn decode_block(
        &mut self,
        block: Buffer,
        numbers: LineNumbers<'_>,
        sink: &mut dyn RecordSink,
    ) -> Result<u64, DecodeError> {
        assert!(
            block.len() <= u32::MAX as usize,
            "blocks are bounded well below 4 GiB"
        );
        // One check for the whole block instead of one per line in the common case.
        let all_utf8 = std::str::from_utf8(&block).is_ok();
        let bytes = block.as_slice();
        let plain_text = memchr::memchr2(b'"', b'\\', bytes).is_none();
        // The block joins the current batch's blocks when its first record is decoded, and
        // again after every flush (batch full, or a header line changed the format).
        let mut block_index: Option<u32> = None;
        let mut index = 0;
        let mut spans = std::mem::take(&mut self.spans);
        let result = tokens::for_each_line(bytes, &mut spans, |line| {
            let line_no = numbers.get(index);
            index += 1;
            let current = *block_index.get_or_insert_with(|| {
                self.blocks.push(block.clone());
                self.plain_text &= plain_text;
                (self.blocks.len() - 1) as u32
            });
            let rows = self.rows;
            self.decode_line(bytes, &line, current, all_utf8, line_no, sink)?;
            if let Some(envelopes) = numbers.envelopes().filter(|_| self.rows > rows) {
                self.envelopes.push(envelopes, index - 1);
            }
            if self.rows >= self.batch_rows {
                self.flush(sink)?;
            }
            if self.blocks.is_empty() {
                block_index = None;
            }
            Ok(())
        });
        self.spans = spans;
        result.map(|()| index as u64)
    }

    #[inline]
    fn decode_line(
        &mut self,
        bytes: &[u8],
        line: &Line<'_>,
        block_index: u32,
        all_utf8: bool,
        line_no: u64,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        let (Some(&(first, _)), Some(&(_, last))) = (line.tokens.first(), line.tokens.last())
        else {
            self.stats.blank_lines += 1;
            return Ok(());
        };
        let raw = &bytes[line.start..line.end];
        if raw.len() > MAX_LINE_BYTES {
            return self.over_long_line(line_no, raw, raw.len() as u64, sink);
        }
        let text = &bytes[first as usize..last as usize];
        if !all_utf8 {
            if let Err(err) = std::str::from_utf8(text) {
                let reason = format!(
                    "not valid UTF-8 (at byte {} of the line)",
                    err.valid_up_to() + 1
                );
                return self.dead_letter(line_no, reason, raw, sink);
            }
        }
        // Records start with a digit, `-`, an id or an address; only a line that starts
        // with a lower-case letter can be a header, and the check stops at the first token
        // that is not a field name.
        if text[0].is_ascii_lowercase() {
            // UTF-8 was checked above (or for the whole block).
            let text = std::str::from_utf8(text).unwrap_or_default();
            if let Some(format) = FlowFormat::from_header_line(text) {
                self.stats.header_lines += 1;
                return self.set_format(format, sink);
            }
        }

        match self.append_record(bytes, line.tokens, block_index) {
            Ok(()) => {
                self.rows += 1;
                self.line_numbers.push(line_no);
                if let Some(lines) = &mut self.lines {
                    lines.push(make_view(bytes, first as usize, last as usize, block_index));
                }
                Ok(())
            }
            Err(err) => {
                for column in &mut self.columns {
                    column.truncate(self.rows);
                }
                let reason = self.describe(err, line.tokens.len(), bytes, line.tokens);
                self.dead_letter(line_no, reason, raw.trim_ascii_end(), sink)
            }
        }
    }

    /// Appends one record's tokens to the columns (a column may be left one value longer
    /// than `rows` on error; the caller truncates).
    #[inline]
    fn append_record(
        &mut self,
        bytes: &[u8],
        tokens: &[(u32, u32)],
        block_index: u32,
    ) -> Result<(), LineError> {
        if tokens.len() != self.columns.len() {
            return Err(LineError::FieldCount);
        }
        for (position, (column, &(a, b))) in self.columns.iter_mut().zip(tokens).enumerate() {
            if &bytes[a as usize..b as usize] == b"-" {
                column.push_null();
            } else {
                push_value(
                    column,
                    self.kinds[position],
                    bytes,
                    a,
                    b,
                    block_index,
                    &mut self.addresses,
                )
                .map_err(|bad| LineError::Value { position, bad })?;
            }
        }
        Ok(())
    }

    fn describe(
        &self,
        err: LineError,
        found: usize,
        bytes: &[u8],
        tokens: &[(u32, u32)],
    ) -> String {
        let format = &self.layout.format;
        match err {
            LineError::FieldCount => format!(
                "expected {} fields, found {found} (format: {format})",
                format.len()
            ),
            LineError::Value { position, bad } => {
                let (a, b) = tokens[position];
                format!(
                    "field `{}` (field {} of {}): `{}` {}",
                    format.fields()[position].column(),
                    position + 1,
                    format.len(),
                    String::from_utf8_lossy(&bytes[a as usize..b as usize]),
                    bad.0
                )
            }
        }
    }

    /// Counts and emits a dead letter (also for records an envelope found unusable).
    pub(crate) fn dead_letter(
        &mut self,
        line_no: u64,
        reason: String,
        raw: &[u8],
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        self.dead_letter_of(line_no, reason, raw, raw.len() as u64, sink)
    }

    /// Dead-letters a line of `length` bytes, longer than [`MAX_LINE_BYTES`], whose first
    /// bytes are `head` (for callers that frame text themselves and skipped the rest).
    pub fn over_long_line(
        &mut self,
        line_no: u64,
        head: &[u8],
        length: u64,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        let reason = format!(
            "line of {length} bytes, longer than the {} KiB a record can be",
            MAX_LINE_BYTES >> 10
        );
        self.dead_letter_of(line_no, reason, head, length, sink)
    }

    /// A dead letter for a record of `length` bytes that starts with `head`.
    pub(crate) fn dead_letter_of(
        &mut self,
        line_no: u64,
        reason: String,
        head: &[u8],
        length: u64,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        self.stats.dead_letters += 1;
        let letter = DeadLetter::truncated(&self.source, line_no, reason, head, length);
        sink.dead_letter(letter).map_err(DecodeError::Sink)
    }

    fn set_format(
        &mut self,
        format: FlowFormat,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DecodeError> {
        if format == self.layout.format {
            return Ok(());
        }
        self.flush(sink)?;
        self.layout = Layout::new(format);
        self.reset_columns();
        Ok(())
    }

    /// Emits the rows decoded so far as one batch.
    pub fn flush(&mut self, sink: &mut dyn RecordSink) -> Result<(), DecodeError> {
        if self.rows == 0 {
            self.blocks.clear();
            self.plain_text = true;
            return Ok(());
        }
        let blocks = std::mem::take(&mut self.blocks);
        let mut plain_text = std::mem::replace(&mut self.plain_text, true);
        let arrays = self.columns.iter_mut().map(|c| c.finish(&blocks)).collect();
        let mut records = self.nulls.assemble(&self.layout, arrays, self.rows);
        records = self.envelopes.finish(records, &mut plain_text);
        let numbers = ScalarBuffer::from(std::mem::replace(
            &mut self.line_numbers,
            Vec::with_capacity(self.batch_rows),
        ));
        self.stats.records += self.rows as u64;
        self.rows = 0;
        let mut batch = FlowBatch::new(records, self.source.clone(), numbers);
        if let Some(lines) = &mut self.lines {
            let views = ScalarBuffer::from(take_keeping_capacity(lines));
            // SAFETY: each view was made by `make_view` over a token range of a UTF-8
            // line (checked above) in the block it names, and `blocks` are those blocks.
            let lines = unsafe { StringViewArray::new_unchecked(views, blocks.clone(), None) };
            batch = batch.with_lines(lines);
        }
        sink.batch(batch.with_plain_text(plain_text))
            .map_err(DecodeError::Sink)
    }
}

/// The rows of a column that are null. Nulls are rare (`NODATA` and `SKIPDATA` records,
/// fields a record type lacks), so the column remembers where they are and builds the
/// validity bitmap when the batch is finished, instead of appending a bit for every value.
#[derive(Debug, Default)]
struct NullRows {
    rows: Vec<usize>,
}

impl NullRows {
    fn push(&mut self, row: usize) {
        self.rows.push(row);
    }

    fn truncate(&mut self, len: usize) {
        while self.rows.last().is_some_and(|&row| row >= len) {
            self.rows.pop();
        }
    }

    /// The validity of `len` values, None when all are valid. Leaves the list empty.
    fn finish(&mut self, len: usize) -> Option<NullBuffer> {
        if self.rows.is_empty() {
            return None;
        }
        let mut valid = BooleanBufferBuilder::new(len);
        valid.append_n(len, true);
        for row in self.rows.drain(..) {
            valid.set_bit(row, false);
        }
        Some(NullBuffer::new(valid.finish()))
    }
}

/// Takes a column's values, leaving an empty vector as large as the old one so the next
/// batch does not regrow it from nothing.
fn take_keeping_capacity<T>(values: &mut Vec<T>) -> Vec<T> {
    let capacity = values.capacity();
    std::mem::replace(values, Vec::with_capacity(capacity))
}

/// An Arrow string view of `block[start..end]` in block `block_index`: up to 12 bytes are
/// stored in the view itself, longer values as length, 4-byte prefix, block and offset.
/// (What `arrow_array::builder::make_view` does, but reading the value with one 16-byte
/// load from the block where it has room, instead of assembling it in a stack buffer.)
#[inline(always)]
fn make_view(block: &[u8], start: usize, end: usize, block_index: u32) -> u128 {
    let len = end - start;
    let window = |at: usize| -> Option<u128> {
        let bytes: [u8; 16] = block.get(at..at + 16)?.try_into().ok()?;
        Some(u128::from_le_bytes(bytes))
    };
    if len <= 12 {
        let text = match window(start) {
            Some(w) => w & ((1u128 << (8 * len)) - 1),
            None => {
                let mut bytes = [0u8; 16];
                bytes[..len].copy_from_slice(&block[start..end]);
                u128::from_le_bytes(bytes)
            }
        };
        (len as u128) | text << 32
    } else {
        let prefix = u32::from_le_bytes(block[start..start + 4].try_into().expect("four bytes"));
        (len as u128) | (prefix as u128) << 32 | (block_index as u128) << 64 | (start as u128) << 96
    }
}

#[inline]
fn push_value(
    column: &mut Column,
    kind: FieldKind,
    bytes: &[u8],
    start: u32,
    end: u32,
    block_index: u32,
    addresses: &mut CheckedAddresses,
) -> Result<(), BadValue> {
    let (a, b) = (start as usize, end as usize);
    match column {
        Column::Text { views, .. } => {
            if kind == FieldKind::IpAddr {
                addresses.check(bytes, a, b)?;
            }
            views.push(make_view(bytes, a, b, block_index));
        }
        Column::Int32 { values, max, .. } => {
            values.push(parse_integer_in(kind, *max, bytes, a, b)? as i32);
        }
        Column::Int64 { values, max, .. } => {
            values.push(parse_integer_in(kind, *max, bytes, a, b)?);
        }
        Column::Time { values, .. } => {
            values.push(epoch_millis_in(bytes, a, b)?);
        }
    }
    Ok(())
}
