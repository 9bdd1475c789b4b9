//! `[transform.reduce]`: fewer records to the sinks, with an account of every one.
//!
//! Three reductions, applied in this order after the filter, enrichment and detection
//! (the rules see every record):
//! - **sampling** (`sample_rate`): a record is kept when a hash of its flow key, the same
//!   for both directions (the lower address and port first), falls under the rate, so a
//!   conversation is kept or dropped whole, and the same on every run;
//! - **cross-interface duplicates** (`dedup_interfaces`): a flow recorded by the
//!   interfaces at both ends (or by a NAT gateway's or load balancer's interface in between)
//!   is kept as the first interface reported it. Copies match on the packet's own
//!   addresses (`pkt-srcaddr`/`pkt-dstaddr` where the format has them, which see through
//!   NAT, else `srcaddr`/`dstaddr`), ports, protocol, action and start; a copy from the
//!   same interface is not a duplicate and is kept;
//! - **aggregation** (`aggregate`): records with the same flow key within one event-time
//!   window of `window_secs` become one: `bytes`, `packets` and the Transit Gateway loss
//!   counters summed, `start` the earliest, `end` the latest, `tcp_flags` OR-ed (as AWS
//!   ORs them within a capture window), and `merged_count` how many were merged. The key
//!   is every flow-log column but those, less the columns `drop` names (whose values are
//!   then left out). REJECTs and records with a watch-listed address are passed on as
//!   they are unless told otherwise. Records are held until the held ones reach
//!   `max_held_records` or the oldest was held `max_hold_secs` (or the input ends); their
//!   acknowledgements wait for the merged records' delivery.
//!
//! Every record that goes in comes out, is merged (counted), or is dropped by a reduction
//! (counted by reduction): `flowlog_reduce_records_total{outcome}`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{
    new_null_array, Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch,
    TimestampMillisecondArray,
};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use flowlog_component::{Ack, BatchStatus, ComponentMetrics, LabelledCounter};
use flowlog_model::{FlowBatch, MERGED_COUNT};
use flowlog_normalize::columns::{Column, Values};
use flowlog_sink::SinkInput;
use hashbrown::{DefaultHashBuilder, HashTable};
use serde::Deserialize;
use tokio::sync::mpsc;

/// `[transform.reduce]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Reduce {
    /// Merge the records of one flow key within `window_secs`.
    #[serde(default)]
    pub aggregate: bool,
    #[serde(default = "default_window")]
    pub window_secs: u64,
    /// Columns left out of the flow key (their values are not kept on merged records):
    /// `srcport` merges a client's connections from ephemeral ports.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Pass REJECT records on unmerged.
    #[serde(default = "yes")]
    pub exempt_rejects: bool,
    /// Pass records with a watch-listed address on unmerged.
    #[serde(default = "yes")]
    pub exempt_watchlisted: bool,
    /// Count a flow recorded by several interfaces once.
    #[serde(default)]
    pub dedup_interfaces: bool,
    /// Keep this share of conversations (0 < rate <= 1).
    pub sample_rate: Option<f64>,
    /// The longest a record is held for merging (seconds).
    #[serde(default = "default_hold")]
    pub max_hold_secs: f64,
    /// The most records held for merging.
    #[serde(default = "default_held")]
    pub max_held_records: usize,
}

fn default_window() -> u64 {
    60
}
fn default_hold() -> f64 {
    10.0
}
fn default_held() -> usize {
    250_000
}
fn yes() -> bool {
    true
}

/// Columns summed, widened or OR-ed when records merge; never part of the key.
const MEASURES: [&str; 9] = [
    "bytes",
    "packets",
    "start",
    "end",
    "tcp_flags",
    "packets_lost_no_route",
    "packets_lost_blackhole",
    "packets_lost_mtu_exceeded",
    "packets_lost_ttl_expired",
];

impl Reduce {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(rate) = self.sample_rate {
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(format!(
                    "sample_rate must be above 0 and at most 1, not {rate}"
                ));
            }
        }
        if self.window_secs == 0 || self.window_secs > 86_400 {
            return Err("window_secs must be between 1 and 86400".into());
        }
        flowlog_component::duration::seconds("max_hold_secs", self.max_hold_secs, false)?;
        if self.max_held_records == 0 {
            return Err("max_held_records must be at least 1".into());
        }
        for column in &self.drop {
            let Some(id) = flowlog_model::lookup(column) else {
                return Err(format!("drop: `{column}` is not a flow-log field"));
            };
            let column = flowlog_model::FIELDS[id].column;
            if MEASURES.contains(&column) {
                return Err(format!("drop: `{column}` is merged, not part of the key"));
            }
        }
        Ok(())
    }
}

/// How many records each reduction took out, and the traffic they stood for (the sum
/// of their `bytes`): aggregation keeps every byte, sampling and duplicates remove some.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub records_in: u64,
    pub sampled_out: u64,
    pub duplicates: u64,
    /// Records merged into another (a group of n counts n - 1).
    pub merged: u64,
    pub records_out: u64,
    pub bytes_in: u64,
    pub bytes_sampled_out: u64,
    pub bytes_duplicates: u64,
    pub bytes_out: u64,
}

/// What became of a batch given to [`Reducer::push`].
pub(crate) enum Pushed {
    /// What is left of it, to send on.
    Passed(FlowBatch),
    /// Held for merging: acknowledged once the merged records are delivered.
    Held,
    /// Nothing left (sampled out, duplicates): done.
    Emptied,
}

/// One group of records being merged.
struct Group {
    /// Where its first record is: held batch, row.
    first: (usize, usize),
    /// Its key: where in `Reducer::keys`, and the key's hash.
    key: std::ops::Range<usize>,
    hash: u64,
    count: u64,
    sums: [Option<i64>; 6],
    start: Option<i64>,
    end: Option<i64>,
    tcp_flags: Option<i32>,
}

/// Sum columns, in `Group::sums` order.
const SUMMED: [&str; 6] = [
    "bytes",
    "packets",
    "packets_lost_no_route",
    "packets_lost_blackhole",
    "packets_lost_mtu_exceeded",
    "packets_lost_ttl_expired",
];

/// The most rows in one batch [`Reducer::flush`] gives out (the decoder's default).
const OUTPUT_ROWS: usize = 8192;

/// What comes out, in the order it came in.
enum Entry {
    Group(usize),
    /// An exempt record, as it is.
    Row(usize, usize),
}

impl Entry {
    /// The held batch and row whose values it starts from.
    fn first(&self, groups: &[Group]) -> (usize, usize) {
        match self {
            Entry::Group(g) => groups[*g].first,
            Entry::Row(b, r) => (*b, *r),
        }
    }
}

pub(crate) struct Reducer {
    settings: Reduce,
    dropped: Vec<String>,
    held: Vec<FlowBatch>,
    groups: Vec<Group>,
    /// The groups by key. The keys themselves are in `keys`, one after another: a
    /// million held groups then cost one buffer, not a million allocations.
    index: HashTable<usize>,
    keys: Vec<u8>,
    hasher: DefaultHashBuilder,
    entries: Vec<Entry>,
    held_rows: usize,
    since: Option<Instant>,
    /// Cross-interface duplicates: a flow's key -> the interface that reported it, for the
    /// current and the previous window (`dedup_window` is the current's start).
    seen: [HashMap<Vec<u8>, Box<str>>; 2],
    dedup_window: i64,
    pub counts: Counts,
}

impl Reducer {
    pub(crate) fn new(settings: &Reduce) -> Self {
        let dropped = settings
            .drop
            .iter()
            .filter_map(|c| flowlog_model::lookup(c))
            .map(|id| flowlog_model::FIELDS[id].column.to_owned())
            .collect();
        Self {
            settings: settings.clone(),
            dropped,
            held: Vec::new(),
            groups: Vec::new(),
            index: HashTable::new(),
            keys: Vec::new(),
            hasher: DefaultHashBuilder::default(),
            entries: Vec::new(),
            held_rows: 0,
            since: None,
            seen: [HashMap::new(), HashMap::new()],
            dedup_window: i64::MIN,
            counts: Counts::default(),
        }
    }

    /// True when held records must go out now (see [`Reducer::flush`]).
    pub(crate) fn due(&self) -> bool {
        self.held_rows >= self.settings.max_held_records
            || self.since.is_some_and(|since| {
                since.elapsed() >= Duration::from_secs_f64(self.settings.max_hold_secs)
            })
    }

    /// Samples and removes duplicates; without aggregation, passes on what is left.
    /// With it, the rest is held for merging.
    pub(crate) fn push(&mut self, batch: FlowBatch) -> Pushed {
        let rows = batch.num_rows();
        self.counts.records_in += rows as u64;
        self.counts.bytes_in += flow_bytes(&batch);
        let batch = self.sample_and_dedup(batch);
        if !self.settings.aggregate {
            self.counts.records_out += batch.num_rows() as u64;
            self.counts.bytes_out += flow_bytes(&batch);
            return Pushed::Passed(batch);
        }
        if batch.num_rows() == 0 {
            return Pushed::Emptied;
        }
        self.hold(batch);
        Pushed::Held
    }

    /// True while records are held.
    pub(crate) fn holding(&self) -> bool {
        self.held_rows > 0
    }

    fn sample_and_dedup(&mut self, batch: FlowBatch) -> FlowBatch {
        if self.settings.sample_rate.is_none() && !self.settings.dedup_interfaces {
            return batch;
        }
        let view = View::new(&batch.records);
        let mut keep = vec![true; batch.num_rows()];
        let mut key = Vec::with_capacity(96);
        for (row, keep) in keep.iter_mut().enumerate() {
            if let Some(rate) = self.settings.sample_rate {
                if rate < 1.0 && !sampled_in(&view, row, rate, &mut key) {
                    *keep = false;
                    self.counts.sampled_out += 1;
                    self.counts.bytes_sampled_out += row_bytes(&view, row);
                    continue;
                }
            }
            if self.settings.dedup_interfaces && self.is_duplicate(&view, row, &mut key) {
                *keep = false;
                self.counts.duplicates += 1;
                self.counts.bytes_duplicates += row_bytes(&view, row);
            }
        }
        batch.keep_rows(keep)
    }

    /// True when another interface reported this flow already.
    fn is_duplicate(&mut self, view: &View<'_>, row: usize, key: &mut Vec<u8>) -> bool {
        let (Some(interface), Some(start)) = (text(&view.interface_id, row), int(&view.start, row))
        else {
            return false;
        };
        let len = self.settings.window_secs as i64 * 1000;
        let window = start.div_euclid(len).saturating_mul(len);
        if window > self.dedup_window {
            // A later window: the older of the two kept goes.
            let [older, newer] = &mut self.seen;
            *older = std::mem::take(newer);
            if window > self.dedup_window.saturating_add(len) {
                older.clear();
            }
            self.dedup_window = window;
        }
        key.clear();
        let src = text(&view.pkt_srcaddr, row).or_else(|| text(&view.srcaddr, row));
        let dst = text(&view.pkt_dstaddr, row).or_else(|| text(&view.dstaddr, row));
        for part in [src, dst, text(&view.action, row)] {
            push_text(key, part);
        }
        for column in [&view.srcport, &view.dstport, &view.protocol, &view.start] {
            push_int(key, int(column, row));
        }
        let current = if window == self.dedup_window { 1 } else { 0 };
        if let Some(first) = self.seen.iter().find_map(|seen| seen.get(key.as_slice())) {
            return **first != *interface;
        }
        // Bounded: past the cap a window remembers no more flows (their copies pass, which
        // costs reduction, not records).
        if self.seen[current].len() < self.settings.max_held_records {
            self.seen[current].insert(key.clone(), interface.into());
        }
        false
    }

    fn hold(&mut self, batch: FlowBatch) {
        let b = self.held.len();
        let view = View::new(&batch.records);
        let schema = batch.records.schema();
        // The key: every flow-log column but the merged ones and those dropped. A column of
        // a type the key cannot hold keeps the batch's records apart (passed as they are).
        let key_columns: Option<Vec<Column<'_>>> = schema
            .fields()
            .iter()
            .zip(batch.records.columns())
            .filter(|(f, _)| {
                let name = f.name().as_str();
                (flowlog_model::lookup(name).is_some() || !is_added(name))
                    && !MEASURES.contains(&name)
                    && !self.dropped.iter().any(|d| d == name)
            })
            .map(|(f, array)| Column::new(f, array.as_ref()).ok())
            .collect();
        let schema_tag = schema_fingerprint(&schema);
        let len = self.settings.window_secs as i64 * 1000;
        // Room for as many groups as records may be held, made once (the table is kept
        // between flushes): growing it would rehash every group, reading each one's hash
        // from a random place in `groups`.
        let room = self.settings.max_held_records.min(1 << 20);
        if self.index.capacity() < room {
            let groups = &self.groups;
            self.index
                .reserve(room - self.index.len(), |&g| groups[g].hash);
        }
        let mut key = Vec::with_capacity(128);
        for row in 0..batch.num_rows() {
            let exempt = (self.settings.exempt_rejects
                && text(&view.action, row) == Some("REJECT"))
                || (self.settings.exempt_watchlisted
                    && (present(&view.src_watch, row) || present(&view.dst_watch, row)));
            let (Some(start), Some(key_columns)) = (
                int(&view.start, row).filter(|_| !exempt),
                key_columns.as_ref(),
            ) else {
                self.entries.push(Entry::Row(b, row));
                continue;
            };
            key.clear();
            key.extend_from_slice(&schema_tag.to_le_bytes());
            key.extend_from_slice(&start.div_euclid(len).to_le_bytes());
            for column in key_columns {
                push_value(&mut key, column, row);
            }
            let hash = self.hasher.hash_one(key.as_slice());
            let found = self
                .index
                .find(hash, |&g| self.keys[self.groups[g].key.clone()] == key[..])
                .copied();
            let at = match found {
                Some(at) => {
                    self.counts.merged += 1;
                    at
                }
                None => {
                    let at = self.groups.len();
                    let from = self.keys.len();
                    self.keys.extend_from_slice(&key);
                    self.groups.push(Group {
                        first: (b, row),
                        key: from..self.keys.len(),
                        hash,
                        count: 0,
                        sums: [None; 6],
                        start: None,
                        end: None,
                        tcp_flags: None,
                    });
                    let groups = &self.groups;
                    self.index.insert_unique(hash, at, |&g| groups[g].hash);
                    self.entries.push(Entry::Group(at));
                    at
                }
            };
            let group = &mut self.groups[at];
            group.count += 1;
            for (sum, column) in group.sums.iter_mut().zip(&view.sums) {
                if let Some(v) = int(column, row) {
                    *sum = Some(sum.unwrap_or(0).saturating_add(v));
                }
            }
            group.start = min_some(group.start, Some(start));
            group.end = max_some(group.end, int(&view.end, row));
            if let Some(flags) = int(&view.tcp_flags, row) {
                group.tcp_flags = Some(group.tcp_flags.unwrap_or(0) | flags as i32);
            }
        }
        self.held_rows += batch.num_rows();
        self.since.get_or_insert_with(Instant::now);
        self.held.push(batch);
    }

    /// The held records, merged, handed to `emit` one batch at a time: batches of one
    /// schema and source, in arrival order, of at most [`OUTPUT_ROWS`] (all at once would
    /// be encoded, sent and kept whole by each sink).
    ///
    /// Each held batch gives its first records of groups and its exempt records, which
    /// are its own rows in order (entries are in arrival order): the batch filtered, not
    /// gathered row by row, and the batch itself when none of its rows merged into an
    /// earlier one. Small parts of one schema and source are put together up to
    /// [`OUTPUT_ROWS`], so a high reduction does not send many small batches.
    pub(crate) fn flush(&mut self, mut emit: impl FnMut(FlowBatch)) {
        let held = std::mem::take(&mut self.held);
        let groups = std::mem::take(&mut self.groups);
        let entries = std::mem::take(&mut self.entries);
        self.index.clear();
        self.keys.clear();
        self.held_rows = 0;
        self.since = None;
        let (mut records_out, mut bytes_out) = (0, 0);
        let mut emit = |batch: FlowBatch| {
            records_out += batch.num_rows() as u64;
            bytes_out += flow_bytes(&batch);
            emit(batch);
        };
        // Outputs being filled: the held batch whose schema and source they have, and
        // their parts so far.
        let mut outputs: Vec<(usize, Parts)> = Vec::new();
        let mut at = 0;
        for (b, batch) in held.iter().enumerate() {
            let end = at + entries[at..].partition_point(|e| e.first(&groups).0 <= b);
            let mine = &entries[at..end];
            at = end;
            if mine.is_empty() {
                continue;
            }
            let part = self.build(batch, &groups, mine);
            let same = |(first, _): &(usize, Parts)| {
                let a = &held[*first];
                a.source == batch.source
                    && (Arc::ptr_eq(a.records.schema_ref(), batch.records.schema_ref())
                        || a.records.schema_ref() == batch.records.schema_ref())
            };
            let o = outputs.iter().position(same).unwrap_or_else(|| {
                outputs.push((b, Parts::default()));
                outputs.len() - 1
            });
            outputs[o].1.add(part, &mut emit);
        }
        for (_, parts) in outputs {
            parts.finish(&mut emit);
        }
        self.counts.records_out += records_out;
        self.counts.bytes_out += bytes_out;
        // Kept for the next records: memory this large comes fresh from the system (and
        // is paged in again) each time it is allocated anew.
        let (mut groups, mut entries) = (groups, entries);
        groups.clear();
        entries.clear();
        self.groups = groups;
        self.entries = entries;
    }

    /// The output of one held batch: the rows `entries` start from (its own, in order),
    /// with the merged values.
    fn build(&self, batch: &FlowBatch, groups: &[Group], entries: &[Entry]) -> FlowBatch {
        let mut mask = vec![false; batch.num_rows()];
        entries.iter().for_each(|e| mask[e.first(groups).1] = true);
        // The batch itself when every row is kept.
        let firsts = batch.clone().filter(&BooleanArray::from(mask));
        let schema = batch.records.schema();
        let group_of = |i: usize| match entries[i] {
            Entry::Group(g) => Some(&groups[g]),
            Entry::Row(..) => None,
        };
        let n = entries.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len() + 1);
        for (c, field) in schema.fields().iter().enumerate() {
            let name = field.name().as_str();
            let original = firsts.records.column(c);
            let merged: Option<ArrayRef> = if let Some(s) = SUMMED.iter().position(|&m| m == name) {
                Some(Arc::new(merge_i64(original, n, |i| {
                    group_of(i).map(|g| g.sums[s])
                })))
            } else if name == "start" || name == "end" {
                let values = merge_i64(original, n, |i| {
                    group_of(i).map(|g| if name == "start" { g.start } else { g.end })
                });
                let tz = match field.data_type() {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Some(Arc::new(
                    TimestampMillisecondArray::new(
                        values.values().clone(),
                        values.nulls().cloned(),
                    )
                    .with_timezone_opt(tz),
                ))
            } else if name == "tcp_flags" {
                let old = original.as_primitive::<Int32Type>();
                Some(Arc::new(Int32Array::from_iter((0..n).map(
                    |i| match group_of(i) {
                        Some(g) => g.tcp_flags,
                        None => old.is_valid(i).then(|| old.value(i)),
                    },
                ))))
            } else if self.dropped.iter().any(|d| d == name) {
                Some(new_null_array(field.data_type(), n))
            } else {
                None
            };
            columns.push(merged.unwrap_or_else(|| Arc::clone(original)));
        }
        let counts = Int64Array::from_iter(
            (0..n).map(|i| group_of(i).map(|g| g.count as i64).filter(|&c| c > 1)),
        );
        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        let existing = fields.iter().position(|f| f.name() == MERGED_COUNT.column);
        match existing {
            // Records merged by a flowlog before this one: the count of this merge.
            Some(i) => columns[i] = Arc::new(counts),
            None => {
                fields.push(Arc::new(Field::new(
                    MERGED_COUNT.column,
                    DataType::Int64,
                    true,
                )));
                columns.push(Arc::new(counts));
            }
        }
        let out_schema: SchemaRef =
            Arc::new(Schema::new(fields).with_metadata(schema.metadata().clone()));
        let records = RecordBatch::try_new(out_schema, columns).expect("columns match the schema");
        // Lines are left out: a merged record's line would not be its values; sinks that
        // forward lines rebuild them from the columns.
        FlowBatch::new(records, batch.source.clone(), firsts.line_numbers)
            .with_plain_text(batch.plain_text)
    }
}

/// The parts of one output batch (one schema and source) not yet given out.
#[derive(Default)]
struct Parts {
    parts: Vec<FlowBatch>,
    rows: usize,
}

impl Parts {
    /// Adds `part`. A large part (over half of [`OUTPUT_ROWS`]) goes out as it is, after
    /// what is held and in slices of at most [`OUTPUT_ROWS`]: copying it into a larger
    /// batch would gain little. A small one is held, what is held going out first when
    /// the two would pass [`OUTPUT_ROWS`].
    fn add(&mut self, part: FlowBatch, emit: &mut impl FnMut(FlowBatch)) {
        let rows = part.num_rows();
        if rows > OUTPUT_ROWS / 2 {
            self.take(emit);
            if rows <= OUTPUT_ROWS {
                return emit(part);
            }
            for offset in (0..rows).step_by(OUTPUT_ROWS) {
                emit(part.slice(offset, OUTPUT_ROWS.min(rows - offset)));
            }
            return;
        }
        if self.rows + rows > OUTPUT_ROWS {
            self.take(emit);
        }
        self.rows += rows;
        self.parts.push(part);
    }

    /// Gives out what is held, as one batch.
    fn take(&mut self, emit: &mut impl FnMut(FlowBatch)) {
        let parts = std::mem::take(&mut self.parts);
        self.rows = 0;
        match parts.len() {
            0 => {}
            1 => emit(parts.into_iter().next().expect("one part")),
            _ => {
                let schema = parts[0].records.schema();
                let records =
                    arrow_select::concat::concat_batches(&schema, parts.iter().map(|p| &p.records))
                        .expect("parts of one schema");
                let line_numbers: ScalarBuffer<u64> = parts
                    .iter()
                    .flat_map(|p| p.line_numbers.iter().copied())
                    .collect();
                let plain = parts.iter().all(|p| p.plain_text);
                emit(
                    FlowBatch::new(records, parts[0].source.clone(), line_numbers)
                        .with_plain_text(plain),
                );
            }
        }
    }

    fn finish(mut self, emit: &mut impl FnMut(FlowBatch)) {
        self.take(emit);
    }
}

/// The `bytes` of a record (0 when it has none, or a negative number).
fn row_bytes(view: &View<'_>, row: usize) -> u64 {
    int(&view.sums[0], row).map_or(0, |b| b.max(0) as u64)
}

/// The sum of a batch's `bytes`.
fn flow_bytes(batch: &FlowBatch) -> u64 {
    let view = View::new(&batch.records);
    (0..batch.num_rows())
        .map(|row| row_bytes(&view, row))
        .fold(0, u64::saturating_add)
}

fn is_added(name: &str) -> bool {
    flowlog_model::added_field(name).is_some()
}

/// A number standing for the schema's field names and types.
fn schema_fingerprint(schema: &Schema) -> u64 {
    let mut h = Fnv::default();
    for f in schema.fields() {
        h.write(f.name().as_bytes());
        h.write(f.data_type().to_string().as_bytes());
    }
    h.0
}

fn merge_i64(
    original: &ArrayRef,
    n: usize,
    merged: impl Fn(usize) -> Option<Option<i64>>,
) -> Int64Array {
    let old: Option<&arrow_array::PrimitiveArray<Int64Type>> = original.as_primitive_opt();
    let old_ts: Option<&arrow_array::PrimitiveArray<TimestampMillisecondType>> =
        original.as_primitive_opt();
    Int64Array::from_iter((0..n).map(|i| match merged(i) {
        Some(value) => value,
        None => match (old, old_ts) {
            (Some(a), _) => a.is_valid(i).then(|| a.value(i)),
            (_, Some(a)) => a.is_valid(i).then(|| a.value(i)),
            _ => None,
        },
    }))
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A value's bytes in a key: a tag for null, else the value (text with its length).
fn push_value(key: &mut Vec<u8>, column: &Column<'_>, row: usize) {
    if column.is_null(row) {
        key.push(0);
        return;
    }
    key.push(1);
    let i = column.index(row);
    match column.values {
        Values::Text(a) | Values::Json(a) => push_text(key, Some(a.value(i))),
        Values::Float64(a) => key.extend_from_slice(&a.value(i).to_bits().to_le_bytes()),
        Values::Int32(a) => key.extend_from_slice(&i64::from(a.value(i)).to_le_bytes()),
        Values::Int64(a) => key.extend_from_slice(&a.value(i).to_le_bytes()),
        Values::Time(a) => key.extend_from_slice(&a.value(i).to_le_bytes()),
    }
}

fn push_text(key: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(t) => {
            key.extend_from_slice(&(t.len() as u32).to_le_bytes());
            key.extend_from_slice(t.as_bytes());
        }
        None => key.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

fn push_int(key: &mut Vec<u8>, value: Option<i64>) {
    match value {
        Some(v) => {
            key.push(1);
            key.extend_from_slice(&v.to_le_bytes());
        }
        None => key.push(0),
    }
}

/// True when the conversation of `row` is in the sample: FNV-1a over its endpoints (the
/// lower one first, so both directions agree) and protocol, against the rate.
fn sampled_in(view: &View<'_>, row: usize, rate: f64, key: &mut Vec<u8>) -> bool {
    let a = (text(&view.srcaddr, row), int(&view.srcport, row));
    let b = (text(&view.dstaddr, row), int(&view.dstport, row));
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    key.clear();
    push_text(key, low.0);
    push_int(key, low.1);
    push_text(key, high.0);
    push_int(key, high.1);
    push_int(key, int(&view.protocol, row));
    let mut h = Fnv::default();
    h.write(key);
    // The top 53 bits as a fraction in [0, 1).
    ((h.0 >> 11) as f64 / (1u64 << 53) as f64) < rate
}

/// FNV-1a, 64 bits: stable across builds and runs, which sampling needs.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The columns of a batch the reductions read, bound once per batch (absent when the
/// batch has no such column).
struct View<'a> {
    action: Option<Column<'a>>,
    interface_id: Option<Column<'a>>,
    srcaddr: Option<Column<'a>>,
    dstaddr: Option<Column<'a>>,
    pkt_srcaddr: Option<Column<'a>>,
    pkt_dstaddr: Option<Column<'a>>,
    srcport: Option<Column<'a>>,
    dstport: Option<Column<'a>>,
    protocol: Option<Column<'a>>,
    start: Option<Column<'a>>,
    end: Option<Column<'a>>,
    tcp_flags: Option<Column<'a>>,
    /// In [`SUMMED`] order.
    sums: [Option<Column<'a>>; 6],
    /// Enrichment's watch-list columns: dictionary-encoded, null where nothing matched.
    src_watch: Option<Column<'a>>,
    dst_watch: Option<Column<'a>>,
}

impl<'a> View<'a> {
    fn new(records: &'a RecordBatch) -> Self {
        let column = |name: &str| {
            let (i, field) = records.schema_ref().column_with_name(name)?;
            Column::new(field, records.column(i).as_ref()).ok()
        };
        Self {
            action: column("action"),
            interface_id: column("interface_id"),
            srcaddr: column("srcaddr"),
            dstaddr: column("dstaddr"),
            pkt_srcaddr: column("pkt_srcaddr"),
            pkt_dstaddr: column("pkt_dstaddr"),
            srcport: column("srcport"),
            dstport: column("dstport"),
            protocol: column("protocol"),
            start: column("start"),
            end: column("end"),
            tcp_flags: column("tcp_flags"),
            sums: SUMMED.map(column),
            src_watch: column("src_watchlist"),
            dst_watch: column("dst_watchlist"),
        }
    }
}

fn text<'a>(column: &Option<Column<'a>>, row: usize) -> Option<&'a str> {
    column.as_ref().and_then(|c| c.text(row))
}

fn int(column: &Option<Column<'_>>, row: usize) -> Option<i64> {
    column.as_ref().and_then(|c| c.int(row))
}

fn present(column: &Option<Column<'_>>, row: usize) -> bool {
    column.as_ref().is_some_and(|c| !c.is_null(row))
}

/// The reducer in the transform stage: what it holds is acknowledged once the records
/// made of it are delivered, and what it does is counted.
pub(crate) struct Reducing {
    reducer: Reducer,
    /// The acknowledgements of the batches held for merging.
    held: Vec<Ack>,
    runtime: tokio::runtime::Handle,
    records: LabelledCounter,
    bytes: LabelledCounter,
    reported: Counts,
}

impl Reducing {
    pub(crate) fn new(
        settings: &Reduce,
        metrics: &ComponentMetrics,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            reducer: Reducer::new(settings),
            held: Vec::new(),
            runtime,
            records: metrics.counter_by(
                "reduce_records",
                "Records [transform.reduce] took in and gave out, and what it did with the rest",
                "outcome",
            ),
            bytes: metrics.counter_by(
                "reduce_flow_bytes",
                "The traffic (sum of `bytes`) of the records [transform.reduce] took in and \
                 gave out, and of those it dropped",
                "outcome",
            ),
            reported: Counts::default(),
        }
    }

    pub(crate) fn due(&self) -> bool {
        self.reducer.due()
    }

    /// True while records are held (the stage flushes them when its input goes quiet).
    pub(crate) fn holding(&self) -> bool {
        self.reducer.holding()
    }

    /// Takes in a batch and its acknowledgement; sends what is ready. Returns how many
    /// records went on to the sinks.
    pub(crate) fn take(
        &mut self,
        batch: FlowBatch,
        ack: Ack,
        sinks: &[mpsc::Sender<SinkInput>],
    ) -> usize {
        let mut sent = 0;
        match self.reducer.push(batch) {
            Pushed::Passed(out) => {
                sent = out.num_rows();
                crate::send(out, ack, sinks);
            }
            Pushed::Emptied => ack.confirm(),
            Pushed::Held => {
                self.held.push(ack);
                if self.reducer.due() {
                    sent = self.flush(sinks);
                }
            }
        }
        self.count();
        sent
    }

    /// Sends the merged records; the held batches are acknowledged once every sink has
    /// them (or they fail with them).
    pub(crate) fn flush(&mut self, sinks: &[mpsc::Sender<SinkInput>]) -> usize {
        let held = std::mem::take(&mut self.held);
        let (ack, wait) = Ack::new();
        let mut sent = 0;
        self.reducer.flush(|out| {
            sent += out.num_rows();
            crate::send(out, ack.clone(), sinks);
        });
        self.count();
        ack.confirm();
        if sent == 0 {
            held.into_iter().for_each(Ack::confirm);
            return 0;
        }
        self.runtime.spawn(async move {
            if wait.wait().await == BatchStatus::Delivered {
                held.into_iter().for_each(Ack::confirm);
            }
            // Otherwise dropped unconfirmed: the sources read them again.
        });
        sent
    }

    fn count(&mut self) {
        let (now, before) = (self.reducer.counts, self.reported);
        for (outcome, n) in [
            ("in", now.records_in - before.records_in),
            ("out", now.records_out - before.records_out),
            ("merged", now.merged - before.merged),
            ("duplicate", now.duplicates - before.duplicates),
            ("sampled_out", now.sampled_out - before.sampled_out),
        ] {
            if n > 0 {
                self.records.inc_by(outcome, n);
            }
        }
        for (outcome, n) in [
            ("in", now.bytes_in - before.bytes_in),
            ("out", now.bytes_out - before.bytes_out),
            ("duplicate", now.bytes_duplicates - before.bytes_duplicates),
            (
                "sampled_out",
                now.bytes_sampled_out - before.bytes_sampled_out,
            ),
        ] {
            if n > 0 {
                self.bytes.inc_by(outcome, n);
            }
        }
        self.reported = now;
    }

    /// The account, logged when the stage ends.
    pub(crate) fn report(&self) {
        let c = self.reducer.counts;
        tracing::info!(
            records_in = c.records_in,
            records_out = c.records_out,
            merged = c.merged,
            duplicates = c.duplicates,
            sampled_out = c.sampled_out,
            bytes_in = c.bytes_in,
            bytes_out = c.bytes_out,
            "reduce: {} records in, {} out ({:.1}%): {} merged into others, {} cross-interface \
             duplicates, {} sampled out; flow bytes {} in, {} out ({} in duplicates, {} \
             sampled out)",
            c.records_in,
            c.records_out,
            100.0 * c.records_out as f64 / (c.records_in.max(1)) as f64,
            c.merged,
            c.duplicates,
            c.sampled_out,
            c.bytes_in,
            c.bytes_out,
            c.bytes_duplicates,
            c.bytes_sampled_out
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> FlowBatch {
        let mut c = flowlog_decode::Collected::decode(text.as_bytes(), "test").unwrap();
        assert!(c.dead_letters.is_empty(), "{:?}", c.dead_letters);
        assert_eq!(c.batches.len(), 1);
        c.batches.remove(0)
    }

    fn settings(toml_text: &str) -> Reduce {
        toml::from_str(toml_text).unwrap()
    }

    fn column<'a>(batch: &'a FlowBatch, name: &str) -> Option<Column<'a>> {
        let (i, field) = batch.records.schema_ref().column_with_name(name)?;
        Column::new(field, batch.records.column(i).as_ref()).ok()
    }

    fn column_i64(batch: &FlowBatch, name: &str) -> Vec<Option<i64>> {
        let c = column(batch, name);
        (0..batch.num_rows()).map(|r| int(&c, r)).collect()
    }

    fn flush(r: &mut Reducer) -> Vec<FlowBatch> {
        let mut out = Vec::new();
        r.flush(|b| out.push(b));
        out
    }

    const LONG_LIVED: &str = "\
2 1 eni-a 10.0.0.1 10.0.0.2 4000 443 6 10 1000 1700000000 1700000059 ACCEPT OK
2 1 eni-a 10.0.0.1 10.0.0.2 4000 443 6 20 2000 1700000060 1700000119 ACCEPT OK
2 1 eni-a 10.0.0.1 10.0.0.2 4001 443 6 1 40 1700000000 1700000001 ACCEPT OK
2 1 eni-a 10.0.0.1 10.0.0.2 4000 443 6 3 300 1700000005 1700000030 REJECT OK
2 1 eni-a 10.0.0.1 10.0.0.2 4000 443 6 5 500 1700000020 1700000050 ACCEPT OK
";

    #[test]
    fn aggregation_sums_per_key_and_window_and_passes_rejects() {
        let mut r = Reducer::new(&settings("aggregate = true\nwindow_secs = 3600"));
        assert!(matches!(r.push(decode(LONG_LIVED)), Pushed::Held));
        let out = flush(&mut r);
        assert_eq!(out.len(), 1);
        let b = &out[0];
        // Three groups: port 4000 (rows 1, 2, 5), port 4001, and the REJECT as it is.
        assert_eq!(column_i64(b, "bytes"), [Some(3500), Some(40), Some(300)]);
        assert_eq!(column_i64(b, "packets"), [Some(35), Some(1), Some(3)]);
        assert_eq!(
            column_i64(b, "start"),
            [
                Some(1_700_000_000_000),
                Some(1_700_000_000_000),
                Some(1_700_000_005_000)
            ]
        );
        assert_eq!(
            column_i64(b, "end"),
            [
                Some(1_700_000_119_000),
                Some(1_700_000_001_000),
                Some(1_700_000_030_000)
            ]
        );
        assert_eq!(column_i64(b, "merged_count"), [Some(3), None, None]);
        assert_eq!(b.line_numbers.to_vec(), [1, 3, 4]);
        assert_eq!(
            r.counts,
            Counts {
                records_in: 5,
                merged: 2,
                records_out: 3,
                bytes_in: 3840,
                bytes_out: 3840,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn windows_and_dropped_columns_shape_the_key() {
        let mut r = Reducer::new(&settings(
            "aggregate = true\nwindow_secs = 60\ndrop = [\"srcport\"]\nexempt_rejects = false",
        ));
        r.push(decode(LONG_LIVED));
        let b = &flush(&mut r)[0];
        // Minute one: 4000, 4001 and the REJECT (action is in the key) ; minute two: one.
        assert_eq!(column_i64(b, "bytes"), [Some(1540), Some(2000), Some(300)]);
        assert_eq!(column_i64(b, "srcport"), [None, None, None]);
    }

    #[test]
    fn sampling_keeps_both_directions_together() {
        let mut lines = String::new();
        for i in 0..2000 {
            let (a, b) = (format!("10.0.{}.{}", i / 250, i % 250), "52.1.2.3");
            lines.push_str(&format!(
                "2 1 eni-a {a} {b} {} 443 6 1 40 1700000000 1700000001 ACCEPT OK\n",
                1024 + i
            ));
            lines.push_str(&format!(
                "2 1 eni-a {b} {a} 443 {} 6 1 40 1700000000 1700000001 ACCEPT OK\n",
                1024 + i
            ));
        }
        let mut r = Reducer::new(&settings("sample_rate = 0.25"));
        let Pushed::Passed(out) = r.push(decode(&lines)) else {
            panic!("sampling alone holds nothing")
        };
        let kept = out.num_rows();
        assert_eq!(kept % 2, 0);
        assert!((800..1200).contains(&kept), "{kept} of 4000");
        // Pairs stay together: every kept line's reverse is kept too.
        let (src, dst) = (column(&out, "srcaddr"), column(&out, "dstaddr"));
        for row in (0..kept).step_by(2) {
            assert_eq!(text(&src, row), text(&dst, row + 1));
        }
        assert_eq!(r.counts.sampled_out as usize, 4000 - kept);
        assert_eq!(r.counts.bytes_sampled_out, 40 * r.counts.sampled_out);
        assert_eq!(
            r.counts.bytes_out + r.counts.bytes_sampled_out,
            r.counts.bytes_in
        );
        // The same on every run.
        let Pushed::Passed(again) =
            Reducer::new(&settings("sample_rate = 0.25")).push(decode(&lines))
        else {
            panic!("sampling alone holds nothing")
        };
        assert_eq!(again.num_rows(), kept);
    }

    /// `text` decoded as one batch of source `name`, whatever its size.
    fn decode_as(name: &str, text: &str) -> FlowBatch {
        let mut batch = decode(text);
        batch.source = flowlog_model::SourceId::new(name);
        batch
    }

    #[test]
    fn merged_output_keeps_sources_apart_in_order_and_within_the_batch_size() {
        /// An output row: its line, bytes and merged count.
        type Row = (u64, i64, Option<i64>);
        // A record: its port (the only part of the key that varies), bytes, and action.
        let line = |port: usize, bytes: usize, action: &str| {
            format!(
                "2 1 eni-a 10.0.0.1 10.0.0.2 {port} 443 6 1 {bytes} 1700000000 1700000059 {action} OK\n"
            )
        };
        // Small batches of two sources, interleaved, 40 records each: the last ten repeat
        // ports of the first ten (one of them a REJECT, passed on as it is), and the very
        // last repeats a port of the same source's batch before (a merge across batches).
        let record = |b: usize, i: usize| -> (usize, usize, &'static str) {
            let base = 10_000 + b * 30;
            let port = match i {
                39 if b >= 2 => base - 60,
                30.. => base + i - 30,
                _ => base + i,
            };
            (
                port,
                (b * 40 + i + 1) * 10,
                if i == 35 { "REJECT" } else { "ACCEPT" },
            )
        };
        // What each source should give: per output row, its line, bytes and merged count,
        // worked out the plain way.
        let mut expected: HashMap<&str, Vec<Row>> = HashMap::new();
        let mut groups: HashMap<usize, (&str, usize)> = HashMap::new();
        let mut r = Reducer::new(&settings("aggregate = true\nwindow_secs = 3600"));
        for b in 0..300 {
            let source = if b % 2 == 0 { "even" } else { "odd" };
            let mut text = String::new();
            for i in 0..40 {
                let (port, bytes, action) = record(b, i);
                text.push_str(&line(port, bytes, action));
                let rows = expected.entry(source).or_default();
                let row = (i as u64 + 1, bytes as i64, None);
                match groups.get(&port) {
                    _ if action == "REJECT" => rows.push(row),
                    Some(&(s, at)) => {
                        let first = &mut expected.get_mut(s).unwrap()[at];
                        first.1 += bytes as i64;
                        first.2 = Some(first.2.unwrap_or(1) + 1);
                    }
                    None => {
                        groups.insert(port, (source, rows.len()));
                        rows.push(row);
                    }
                }
            }
            assert!(matches!(r.push(decode_as(source, &text)), Pushed::Held));
        }
        // Then one batch larger than an output batch, nothing in it merging.
        let large: String = (0..20_000)
            .map(|i| line(30_000 + i, 40, "ACCEPT"))
            .collect();
        let decoded = {
            let mut c = flowlog_decode::Collected::default();
            let options = flowlog_decode::DecodeOptions {
                batch_rows: 20_000,
                ..Default::default()
            };
            let source = flowlog_model::SourceId::new("large");
            flowlog_decode::decode_reader(large.as_bytes(), source, &options, &mut c).unwrap();
            assert_eq!((c.batches.len(), c.dead_letters.len()), (1, 0));
            c.batches.remove(0)
        };
        assert!(matches!(r.push(decoded), Pushed::Held));
        let out = flush(&mut r);
        let by_source = |name: &str| -> Vec<&FlowBatch> {
            out.iter()
                .filter(|b| b.source.to_string() == name)
                .collect()
        };
        assert!(out.iter().all(|b| b.num_rows() <= OUTPUT_ROWS));
        for name in ["even", "odd"] {
            let batches = by_source(name);
            // 150 batches of 31 records: put together, not sent 150 times.
            assert!(batches.len() <= 2, "{name}: {} batches", batches.len());
            let rows: Vec<Row> = batches
                .iter()
                .flat_map(|b| {
                    let (bytes, merged) =
                        (column_i64(b, "bytes"), column_i64(b, MERGED_COUNT.column));
                    (0..b.num_rows())
                        .map(move |i| (b.line_numbers[i], bytes[i].unwrap(), merged[i]))
                })
                .collect();
            assert_eq!(rows.len(), 150 * 31);
            assert!(
                rows == expected[name],
                "{name}: the rows differ from what was expected"
            );
        }
        let large = by_source("large");
        assert_eq!(
            large.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [8192, 8192, 3616]
        );
        let lines: Vec<u64> = large
            .iter()
            .flat_map(|b| b.line_numbers.iter().copied())
            .collect();
        assert_eq!(lines, (1..=20_000).collect::<Vec<u64>>());
        assert_eq!(r.counts.bytes_out, r.counts.bytes_in);
    }

    #[test]
    fn a_flow_seen_by_two_interfaces_is_kept_once() {
        let text = "\
2 1 eni-a 10.0.0.1 10.0.0.2 4000 443 6 10 1000 1700000000 1700000059 ACCEPT OK
2 1 eni-b 10.0.0.1 10.0.0.2 4000 443 6 10 1000 1700000000 1700000059 ACCEPT OK
2 1 eni-a 10.0.0.1 10.0.0.2 4000 443 6 10 1000 1700000000 1700000059 ACCEPT OK
2 1 eni-b 10.0.0.1 10.0.0.2 4000 443 6 10 1000 1700000060 1700000119 ACCEPT OK
";
        let mut r = Reducer::new(&settings("dedup_interfaces = true"));
        let Pushed::Passed(out) = r.push(decode(text)) else {
            panic!("dedup alone holds nothing")
        };
        // The copy from eni-b goes; a repeat from eni-a is not a cross-interface copy; a
        // later capture window is another record.
        assert_eq!(out.line_numbers.to_vec(), [1, 3, 4]);
        assert_eq!(r.counts.duplicates, 1);
        assert_eq!((r.counts.bytes_in, r.counts.bytes_duplicates), (4000, 1000));
    }
}
