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
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{
    new_null_array, Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringViewArray,
    TimestampMillisecondArray,
};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use flowlog_component::{Ack, BatchStatus, ComponentMetrics, LabelledCounter};
use flowlog_model::{FlowBatch, MERGED_COUNT};
use flowlog_sink::SinkInput;
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
    1_000_000
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

/// How many records each reduction took out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub records_in: u64,
    pub sampled_out: u64,
    pub duplicates: u64,
    /// Records merged into another (a group of n counts n - 1).
    pub merged: u64,
    pub records_out: u64,
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

/// What comes out, in the order it came in.
enum Entry {
    Group(usize),
    /// An exempt record, as it is.
    Row(usize, usize),
}

pub(crate) struct Reducer {
    settings: Reduce,
    dropped: Vec<String>,
    held: Vec<FlowBatch>,
    groups: Vec<Group>,
    index: HashMap<Vec<u8>, usize>,
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
            index: HashMap::new(),
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
        let batch = self.sample_and_dedup(batch);
        if !self.settings.aggregate {
            self.counts.records_out += batch.num_rows() as u64;
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
        for (row, keep) in keep.iter_mut().enumerate() {
            if let Some(rate) = self.settings.sample_rate {
                if rate < 1.0 && !sampled_in(&view, row, rate) {
                    *keep = false;
                    self.counts.sampled_out += 1;
                    continue;
                }
            }
            if self.settings.dedup_interfaces && self.is_duplicate(&view, row) {
                *keep = false;
                self.counts.duplicates += 1;
            }
        }
        batch.keep_rows(keep)
    }

    /// True when another interface reported this flow already.
    fn is_duplicate(&mut self, view: &View<'_>, row: usize) -> bool {
        let (Some(interface), Some(start)) =
            (view.text("interface_id", row), view.int("start", row))
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
        let mut key = Vec::with_capacity(96);
        let src = view
            .text("pkt_srcaddr", row)
            .or_else(|| view.text("srcaddr", row));
        let dst = view
            .text("pkt_dstaddr", row)
            .or_else(|| view.text("dstaddr", row));
        for part in [src, dst, view.text("action", row)] {
            push_text(&mut key, part);
        }
        for column in ["srcport", "dstport", "protocol", "start"] {
            push_int(&mut key, view.int(column, row));
        }
        let current = if window == self.dedup_window { 1 } else { 0 };
        if let Some(first) = self.seen.iter().find_map(|seen| seen.get(&key)) {
            return **first != *interface;
        }
        // Bounded: past the cap a window remembers no more flows (their copies pass, which
        // costs reduction, not records).
        if self.seen[current].len() < self.settings.max_held_records {
            self.seen[current].insert(key, interface.into());
        }
        false
    }

    fn hold(&mut self, batch: FlowBatch) {
        let b = self.held.len();
        let view = View::new(&batch.records);
        let schema = batch.records.schema();
        let key_columns: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                let name = f.name().as_str();
                (flowlog_model::lookup(name).is_some() || !is_added(name))
                    && !MEASURES.contains(&name)
                    && !self.dropped.iter().any(|d| d == name)
            })
            .map(|(i, _)| i)
            .collect();
        let schema_tag = schema_fingerprint(&schema);
        let len = self.settings.window_secs as i64 * 1000;
        for row in 0..batch.num_rows() {
            let exempt = (self.settings.exempt_rejects
                && view.text("action", row) == Some("REJECT"))
                || (self.settings.exempt_watchlisted
                    && (view.present("src_watchlist", row) || view.present("dst_watchlist", row)));
            let Some(start) = view.int("start", row).filter(|_| !exempt) else {
                self.entries.push(Entry::Row(b, row));
                continue;
            };
            let mut key = Vec::with_capacity(128);
            key.extend_from_slice(&schema_tag.to_le_bytes());
            key.extend_from_slice(&start.div_euclid(len).to_le_bytes());
            for &c in &key_columns {
                push_value(&mut key, batch.records.column(c).as_ref(), row);
            }
            let at = match self.index.get(&key) {
                Some(&at) => {
                    self.counts.merged += 1;
                    at
                }
                None => {
                    let at = self.groups.len();
                    self.groups.push(Group {
                        first: (b, row),
                        count: 0,
                        sums: [None; 6],
                        start: None,
                        end: None,
                        tcp_flags: None,
                    });
                    self.index.insert(key, at);
                    self.entries.push(Entry::Group(at));
                    at
                }
            };
            let group = &mut self.groups[at];
            group.count += 1;
            for (sum, column) in group.sums.iter_mut().zip(SUMMED) {
                if let Some(v) = view.int(column, row) {
                    *sum = Some(sum.unwrap_or(0).saturating_add(v));
                }
            }
            group.start = min_some(group.start, view.int("start", row));
            group.end = max_some(group.end, view.int("end", row));
            if let Some(flags) = view.int("tcp_flags", row) {
                group.tcp_flags = Some(group.tcp_flags.unwrap_or(0) | flags as i32);
            }
        }
        self.held_rows += batch.num_rows();
        self.since.get_or_insert_with(Instant::now);
        self.held.push(batch);
    }

    /// The held records, merged: one batch per schema and source, in arrival order.
    pub(crate) fn flush(&mut self) -> Vec<FlowBatch> {
        let held = std::mem::take(&mut self.held);
        let groups = std::mem::take(&mut self.groups);
        let entries = std::mem::take(&mut self.entries);
        self.index.clear();
        self.held_rows = 0;
        self.since = None;
        // Output batches by (schema, source) of each entry's first record.
        let mut outputs: Vec<(usize, Vec<&Entry>)> = Vec::new();
        for entry in &entries {
            let b = match entry {
                Entry::Group(g) => groups[*g].first.0,
                Entry::Row(b, _) => *b,
            };
            let same = |o: &(usize, Vec<&Entry>)| {
                let first = &held[o.0];
                first.source == held[b].source
                    && first.records.schema_ref() == held[b].records.schema_ref()
            };
            match outputs.iter_mut().find(|o| same(o)) {
                Some(o) => o.1.push(entry),
                None => outputs.push((b, vec![entry])),
            }
        }
        let mut out = Vec::new();
        for (first, entries) in outputs {
            let batch = self.build(&held, &groups, first, &entries);
            self.counts.records_out += batch.num_rows() as u64;
            out.push(batch);
        }
        out
    }

    fn build(
        &self,
        held: &[FlowBatch],
        groups: &[Group],
        first: usize,
        entries: &[&Entry],
    ) -> FlowBatch {
        let schema = held[first].records.schema();
        // The held batches of this schema, and each entry's row among them.
        let members: Vec<usize> = (0..held.len())
            .filter(|&b| held[b].records.schema_ref() == &schema)
            .collect();
        let position = |b: usize| members.iter().position(|&m| m == b).expect("same schema");
        let rows: Vec<(usize, usize)> = entries
            .iter()
            .map(|e| match e {
                Entry::Group(g) => (position(groups[*g].first.0), groups[*g].first.1),
                Entry::Row(b, r) => (position(*b), *r),
            })
            .collect();
        let batches: Vec<&RecordBatch> = members.iter().map(|&b| &held[b].records).collect();
        let firsts = arrow_select::interleave::interleave_record_batch(&batches, &rows)
            .expect("batches of one schema");
        let group_of = |i: usize| match entries[i] {
            Entry::Group(g) => Some(&groups[*g]),
            Entry::Row(..) => None,
        };
        let n = entries.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len() + 1);
        for (c, field) in schema.fields().iter().enumerate() {
            let name = field.name().as_str();
            let original = firsts.column(c);
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
        let line_numbers: ScalarBuffer<u64> = entries
            .iter()
            .map(|e| {
                let (b, r) = match e {
                    Entry::Group(g) => groups[*g].first,
                    Entry::Row(b, r) => (*b, *r),
                };
                held[b].line_numbers[r]
            })
            .collect();
        let plain = members.iter().all(|&b| held[b].plain_text);
        // Lines are left out: a merged record's line would not be its values; sinks that
        // forward lines rebuild them from the columns.
        FlowBatch::new(records, held[first].source.clone(), line_numbers).with_plain_text(plain)
    }
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

/// A value's bytes in a key: a tag for null, else the value with its length.
fn push_value(key: &mut Vec<u8>, array: &dyn Array, row: usize) {
    if array.is_null(row) {
        key.push(0);
        return;
    }
    key.push(1);
    match array.data_type() {
        DataType::Utf8View => push_text(key, Some(array.as_string_view().value(row))),
        DataType::Int32 => {
            key.extend_from_slice(&array.as_primitive::<Int32Type>().value(row).to_le_bytes())
        }
        DataType::Int64 => {
            key.extend_from_slice(&array.as_primitive::<Int64Type>().value(row).to_le_bytes())
        }
        DataType::Timestamp(..) => key.extend_from_slice(
            &array
                .as_primitive::<TimestampMillisecondType>()
                .value(row)
                .to_le_bytes(),
        ),
        // Other types are not flow-log columns; a value of one keeps its record apart.
        _ => key.extend_from_slice(&(row as u64).to_le_bytes()),
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
fn sampled_in(view: &View<'_>, row: usize, rate: f64) -> bool {
    let a = (view.text("srcaddr", row), view.int("srcport", row));
    let b = (view.text("dstaddr", row), view.int("dstport", row));
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let mut key = Vec::with_capacity(64);
    push_text(&mut key, low.0);
    push_int(&mut key, low.1);
    push_text(&mut key, high.0);
    push_int(&mut key, high.1);
    push_int(&mut key, view.int("protocol", row));
    let mut h = Fnv::default();
    h.write(&key);
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

/// The columns of a batch by name, typed.
struct View<'a> {
    records: &'a RecordBatch,
}

impl<'a> View<'a> {
    fn new(records: &'a RecordBatch) -> Self {
        Self { records }
    }

    fn text(&self, name: &str, row: usize) -> Option<&'a str> {
        let c: &'a StringViewArray = self.records.column_by_name(name)?.as_string_view_opt()?;
        c.is_valid(row).then(|| c.value(row))
    }

    fn int(&self, name: &str, row: usize) -> Option<i64> {
        let c = self.records.column_by_name(name)?;
        if c.is_null(row) {
            return None;
        }
        match c.data_type() {
            DataType::Int32 => Some(c.as_primitive::<Int32Type>().value(row).into()),
            DataType::Int64 => Some(c.as_primitive::<Int64Type>().value(row)),
            DataType::Timestamp(..) => {
                Some(c.as_primitive::<TimestampMillisecondType>().value(row))
            }
            _ => None,
        }
    }

    /// True when the column exists and `row` has a value. Enrichment columns are
    /// dictionary-encoded with a key for every row and null values where nothing matched,
    /// so the logical nulls are what count.
    fn present(&self, name: &str, row: usize) -> bool {
        self.records
            .column_by_name(name)
            .is_some_and(|c| c.logical_nulls().is_none_or(|nulls| nulls.is_valid(row)))
    }
}

/// The reducer in the transform stage: what it holds is acknowledged once the records
/// made of it are delivered, and what it does is counted.
pub(crate) struct Reducing {
    reducer: Reducer,
    /// The acknowledgements of the batches held for merging.
    held: Vec<Ack>,
    runtime: tokio::runtime::Handle,
    records: LabelledCounter,
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
        let outputs = self.reducer.flush();
        let held = std::mem::take(&mut self.held);
        self.count();
        let sent = outputs.iter().map(FlowBatch::num_rows).sum();
        if sent == 0 {
            held.into_iter().for_each(Ack::confirm);
            return 0;
        }
        let (ack, wait) = Ack::new();
        for out in outputs {
            crate::send(out, ack.clone(), sinks);
        }
        ack.confirm();
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
            "reduce: {} records in, {} out ({:.1}%): {} merged into others, {} cross-interface \
             duplicates, {} sampled out",
            c.records_in,
            c.records_out,
            100.0 * c.records_out as f64 / (c.records_in.max(1)) as f64,
            c.merged,
            c.duplicates,
            c.sampled_out
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> FlowBatch {
        struct Collect(Vec<FlowBatch>);
        impl flowlog_decode::RecordSink for Collect {
            fn batch(&mut self, batch: FlowBatch) -> Result<(), flowlog_decode::SinkError> {
                self.0.push(batch);
                Ok(())
            }
            fn dead_letter(
                &mut self,
                letter: flowlog_model::DeadLetter,
            ) -> Result<(), flowlog_decode::SinkError> {
                panic!("{letter:?}")
            }
        }
        let mut sink = Collect(Vec::new());
        flowlog_decode::decode_reader(
            text.as_bytes(),
            flowlog_model::SourceId::new("test"),
            &flowlog_decode::DecodeOptions::default(),
            &mut sink,
        )
        .unwrap();
        assert_eq!(sink.0.len(), 1);
        sink.0.remove(0)
    }

    fn settings(toml_text: &str) -> Reduce {
        toml::from_str(toml_text).unwrap()
    }

    fn column_i64(batch: &FlowBatch, name: &str) -> Vec<Option<i64>> {
        let view = View::new(&batch.records);
        (0..batch.num_rows()).map(|r| view.int(name, r)).collect()
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
        let out = r.flush();
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
        let b = &r.flush()[0];
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
        let view = View::new(&out.records);
        for row in (0..kept).step_by(2) {
            assert_eq!(view.text("srcaddr", row), view.text("dstaddr", row + 1));
        }
        assert_eq!(r.counts.sampled_out as usize, 4000 - kept);
        // The same on every run.
        let Pushed::Passed(again) =
            Reducer::new(&settings("sample_rate = 0.25")).push(decode(&lines))
        else {
            panic!("sampling alone holds nothing")
        };
        assert_eq!(again.num_rows(), kept);
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
    }
}
