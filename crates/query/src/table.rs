//! `flows`: a DataFusion table over flow-log objects, read by flowlog's own decoder.
//!
//! DataFusion's file formats read through `object_store`; flow logs are read here the way
//! every other part of flowlog reads them (sniffing the envelope: text, gzip, Parquet,
//! CloudWatch Logs and Firehose payloads), from wherever the caller's [`Objects`] finds
//! them (local files, S3 through the AWS SDK's credential chain). A scan lists only what
//! its filters can want (a time range, regions), splits the objects into one group per
//! partition by size, and decodes each group on a blocking thread of its own, so every
//! core decodes.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::{
    new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray,
};
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;
use flowlog_decode::{DecodeOptions, DecodeStats, RecordSink, SinkError};
use flowlog_model::{DeadLetter, FlowBatch};

/// One object (a file, an S3 object) that holds flow-log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// How the [`Objects`] that listed it names it (a path, a key).
    pub name: String,
    /// Its size as stored, in bytes.
    pub size: u64,
    /// Which of the caller's inputs it was found in.
    pub input: usize,
}

/// What a scan asks of the objects: only those that may hold records of this time range
/// (milliseconds, `until` exclusive) and these regions (empty: any). A superset is always
/// right: every record is held to the query's filters after it is decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub regions: Vec<String>,
}

impl Wanted {
    /// `self` narrowed by what `filters` (a scan's, ANDed) bound: `start` and `region`.
    pub fn narrowed(&self, filters: &[Expr]) -> Wanted {
        let (since, until) = crate::start_bounds(filters);
        let mut wanted = self.clone();
        wanted.since = match (wanted.since, since) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        wanted.until = match (wanted.until, until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // A record's `region` is the region of its interface, which is the flow log's,
        // which names the object's folder. (Not so `account_id`: an interface of another
        // account appears in a shared VPC's flow log, filed under the VPC owner.)
        if let Some(regions) = filters
            .iter()
            .flat_map(split_conjunction)
            .find_map(|e| equal_to(e, "region"))
        {
            wanted.regions = if wanted.regions.is_empty() {
                regions
            } else {
                let asked: BTreeSet<String> = regions.into_iter().collect();
                wanted
                    .regions
                    .iter()
                    .filter(|r| asked.contains(*r))
                    .cloned()
                    .collect()
            };
            if wanted.regions.is_empty() {
                // Two conditions no region meets: nothing to read, said as a region
                // that no folder is named.
                wanted.regions.push(String::new());
            }
        }
        wanted
    }
}

/// The values `expr` holds `column` equal to (`column = 'a'`, `column IN ('a', 'b')`).
fn equal_to(expr: &Expr, column: &str) -> Option<Vec<String>> {
    let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    let text = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(v))
            | ScalarValue::Utf8View(Some(v))
            | ScalarValue::LargeUtf8(Some(v)),
            _,
        ) => Some(v.clone()),
        _ => None,
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (is_column(left), is_column(right)) {
            (true, false) => text(right).map(|v| vec![v]),
            (false, true) => text(left).map(|v| vec![v]),
            _ => None,
        },
        Expr::InList(list) if !list.negated && is_column(&list.expr) => {
            list.list.iter().map(text).collect()
        }
        _ => None,
    }
}

/// Where a table's objects are, and how each is read. Both calls block: they are made
/// on threads that may block.
pub trait Objects: fmt::Debug + Send + Sync {
    /// The objects that may hold what `wanted` asks for, in a stable order.
    fn list(&self, wanted: &Wanted) -> Result<Vec<Object>, String>;

    /// Decodes `object` into `sink`. An error names the object and says what failed.
    fn decode(
        &self,
        object: &Object,
        options: &DecodeOptions,
        sink: &mut dyn RecordSink,
    ) -> Result<DecodeStats, String>;
}

/// What a batch goes through between the decoder and the table (enrichment).
pub type BatchMap = Arc<dyn Fn(FlowBatch) -> FlowBatch + Send + Sync>;

/// What the scans of a table read, for the summary after a query.
#[derive(Default)]
pub struct Report {
    pub objects: AtomicU64,
    pub bytes: AtomicU64,
    pub records: AtomicU64,
    rejected: Mutex<Rejected>,
    /// Objects whose dead letters were counted: a table scanned twice (a join, a second
    /// statement) counts each line once.
    counted: Mutex<BTreeSet<String>>,
}

#[derive(Default)]
struct Rejected {
    count: u64,
    first: Vec<DeadLetter>,
    /// Every dead letter, as NDJSON, when asked for.
    out: Option<Box<dyn Write + Send>>,
    failed: Option<String>,
}

/// How many dead letters a report keeps to show.
const SHOWN_REJECTS: usize = 3;

impl Report {
    /// A report that also writes every dead letter to `out` (NDJSON).
    pub fn keeping_dead_letters(out: Box<dyn Write + Send>) -> Self {
        let report = Self::default();
        report.rejected.lock().expect("not poisoned").out = Some(out);
        report
    }

    /// Whether the dead letters of `object` are still to be counted (its first reading).
    fn first_reading(&self, object: &str) -> bool {
        self.counted
            .lock()
            .expect("not poisoned")
            .insert(object.to_string())
    }

    fn reject(&self, letter: DeadLetter) {
        let mut rejected = self.rejected.lock().expect("not poisoned");
        rejected.count += 1;
        if let Some(out) = &mut rejected.out {
            if let Err(e) = writeln!(out, "{}", letter.to_json()) {
                rejected.failed.get_or_insert_with(|| e.to_string());
            }
        }
        if rejected.first.len() < SHOWN_REJECTS {
            rejected.first.push(letter);
        }
    }

    /// Lines that were not records, and the first few of them.
    pub fn dead_letters(&self) -> (u64, Vec<DeadLetter>) {
        let rejected = self.rejected.lock().expect("not poisoned");
        (rejected.count, rejected.first.clone())
    }

    /// Flushes the dead-letter file; an error if writing it failed.
    pub fn finish(&self) -> Result<(), String> {
        let mut rejected = self.rejected.lock().expect("not poisoned");
        if let Some(out) = &mut rejected.out {
            if let Err(e) = out.flush() {
                rejected.failed.get_or_insert_with(|| e.to_string());
            }
        }
        match &rejected.failed {
            Some(e) => Err(format!("writing dead letters: {e}")),
            None => Ok(()),
        }
    }
}

/// The `flows` table.
pub struct FlowTable {
    objects: Arc<dyn Objects>,
    schema: SchemaRef,
    wanted: Wanted,
    options: DecodeOptions,
    map: Option<BatchMap>,
    report: Arc<Report>,
}

impl fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("objects", &self.objects)
            .field("wanted", &self.wanted)
            .finish()
    }
}

impl FlowTable {
    /// A table over what `objects` lists for `wanted`; with `map` (enrichment), the
    /// enrichment columns too.
    pub fn new(
        objects: Arc<dyn Objects>,
        wanted: Wanted,
        options: DecodeOptions,
        map: Option<BatchMap>,
        report: Arc<Report>,
    ) -> Self {
        Self {
            objects,
            schema: crate::columns_schema(map.is_some()),
            wanted,
            options,
            map,
            report,
        }
    }
}

#[async_trait]
impl TableProvider for FlowTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters narrow the listing, never the rows: DataFusion applies each again.
        Ok(filters
            .iter()
            .map(|f| {
                let narrows = Wanted::default().narrowed(&[(*f).clone()]) != Wanted::default();
                if narrows {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let wanted = self.wanted.narrowed(filters);
        let objects = Arc::clone(&self.objects);
        let listed = tokio::task::spawn_blocking(move || objects.list(&wanted))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .map_err(DataFusionError::Execution)?;
        let partitions = state.config().target_partitions().max(1);
        let needed: Option<Vec<usize>> = projection.cloned();
        let mut options = self.options.clone();
        // Parquet objects read only the columns the query reads (enrichment reads the
        // addresses and interface whatever the query asks for).
        if let (Some(needed), None) = (&needed, &self.map) {
            let mut wanted = vec![false; flowlog_model::canonical_width()];
            for &i in needed {
                if let Some(w) = wanted.get_mut(i) {
                    *w = true;
                }
            }
            options.columns = Some(wanted.into());
        }
        let streams: Vec<Arc<dyn PartitionStream>> = groups(listed, partitions)
            .into_iter()
            .map(|objects| {
                Arc::new(FlowPartition {
                    objects,
                    source: Arc::clone(&self.objects),
                    schema: Arc::clone(&self.schema),
                    needed: needed.clone(),
                    range: (self.wanted.since, self.wanted.until),
                    options: options.clone(),
                    map: self.map.clone(),
                    report: Arc::clone(&self.report),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let exec = StreamingTableExec::try_new(
            Arc::clone(&self.schema),
            streams,
            projection,
            [],
            false,
            limit,
        )?;
        Ok(Arc::new(exec))
    }
}

/// `objects` in at most `n` groups of about equal bytes (largest first, each to the
/// lightest group), each group in listing order; at least one group, maybe empty.
fn groups(objects: Vec<Object>, n: usize) -> Vec<Vec<Object>> {
    let n = n.clamp(1, objects.len().max(1));
    let mut order: Vec<usize> = (0..objects.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(objects[i].size));
    let mut loads = vec![0u64; n];
    let mut owner = vec![0usize; objects.len()];
    for i in order {
        let lightest = (0..n).min_by_key(|&g| loads[g]).expect("n >= 1");
        loads[lightest] += objects[i].size.max(1);
        owner[i] = lightest;
    }
    let mut groups = vec![Vec::new(); n];
    for (i, object) in objects.into_iter().enumerate() {
        groups[owner[i]].push(object);
    }
    groups
}

/// One partition of a scan: a group of objects decoded in turn on one blocking thread.
struct FlowPartition {
    objects: Vec<Object>,
    source: Arc<dyn Objects>,
    schema: SchemaRef,
    /// The table's columns the query reads (`None`: all); the others are left null.
    needed: Option<Vec<usize>>,
    /// The table's own range of `start` (not the query's: DataFusion applies that).
    range: (Option<i64>, Option<i64>),
    options: DecodeOptions,
    map: Option<BatchMap>,
    report: Arc<Report>,
}

impl fmt::Debug for FlowPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowPartition")
            .field("objects", &self.objects.len())
            .finish()
    }
}

impl PartitionStream for FlowPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStreamBuilder::new(Arc::clone(&self.schema), 2);
        let mut sink = TableSink {
            tx: builder.tx(),
            schema: Arc::clone(&self.schema),
            needed: self.needed.clone(),
            range: self.range,
            map: self.map.clone(),
            report: Arc::clone(&self.report),
            closed: false,
            object: ObjectCounts::default(),
            nulls: Default::default(),
        };
        let objects = self.objects.clone();
        let source = Arc::clone(&self.source);
        let options = self.options.clone();
        let report = Arc::clone(&self.report);
        builder.spawn_blocking(move || {
            for object in &objects {
                sink.object = ObjectCounts {
                    counts_rejects: report.first_reading(&object.name),
                    ..ObjectCounts::default()
                };
                let decoded = source.decode(object, &options, &mut sink);
                if sink.object.not_flow_logs() {
                    let first = sink.object.first_reject.take().unwrap_or_default();
                    return Err(DataFusionError::Execution(format!(
                        "{}: not flow logs: none of its first {} lines is a record (line {first})",
                        object.name, sink.object.rejects
                    )));
                }
                match decoded {
                    Ok(stats) => {
                        report.objects.fetch_add(1, Ordering::Relaxed);
                        report.bytes.fetch_add(stats.bytes_read, Ordering::Relaxed);
                    }
                    // The query needs no more (a LIMIT met, an error elsewhere).
                    Err(_) if sink.closed => return Ok(()),
                    Err(e) => return Err(DataFusionError::Execution(e)),
                }
            }
            Ok(())
        });
        builder.build()
    }
}

/// How many lines of an object with no record yet are taken as proof that it is not
/// flow logs (a README, a binary file, a gzip'd stream of junk): reading it stops.
const REJECTS_BEFORE_GIVING_UP: u64 = 1000;

/// What the object being decoded has given so far.
#[derive(Default)]
struct ObjectCounts {
    records: u64,
    rejects: u64,
    first_reject: Option<String>,
    /// Its dead letters go to the report (its first reading in this process).
    counts_rejects: bool,
}

impl ObjectCounts {
    /// Lines but no record: not flow logs.
    fn not_flow_logs(&self) -> bool {
        self.records == 0 && self.rejects > 0
    }
}

/// Where a partition's decoder puts batches: conformed to the table and sent on.
struct TableSink {
    tx: tokio::sync::mpsc::Sender<DfResult<RecordBatch>>,
    schema: SchemaRef,
    needed: Option<Vec<usize>>,
    /// Only records whose `start` is in this range (milliseconds, `until` exclusive).
    range: (Option<i64>, Option<i64>),
    map: Option<BatchMap>,
    report: Arc<Report>,
    closed: bool,
    object: ObjectCounts,
    /// One all-null array per type, sliced for the columns a batch leaves out: making
    /// them afresh zeroes megabytes per batch (60 columns of 16-byte views).
    nulls: std::collections::HashMap<arrow_schema::DataType, ArrayRef>,
}

impl TableSink {
    /// `batch` with exactly the table's columns: those a format lacks (or that the
    /// query does not read) are null, enrichment columns in the table's types.
    fn conform(&mut self, batch: &RecordBatch) -> Result<RecordBatch, SinkError> {
        let rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (i, field) in self.schema.fields().iter().enumerate() {
            let wanted = self.needed.as_ref().is_none_or(|n| n.contains(&i));
            let column = match batch.column_by_name(field.name()).filter(|_| wanted) {
                Some(c) if c.data_type() == field.data_type() => Arc::clone(c),
                Some(c) => arrow_cast::cast(c, field.data_type())?,
                None => {
                    let cached = self
                        .nulls
                        .entry(field.data_type().clone())
                        .or_insert_with(|| new_null_array(field.data_type(), rows));
                    if cached.len() < rows {
                        *cached = new_null_array(field.data_type(), rows);
                    }
                    cached.slice(0, rows)
                }
            };
            columns.push(column);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

impl RecordSink for TableSink {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        self.object.records += batch.records.num_rows() as u64;
        self.report
            .records
            .fetch_add(batch.records.num_rows() as u64, Ordering::Relaxed);
        let batch = match self.range {
            (None, None) => batch,
            range => {
                let keep = in_range(&batch.records, range)?;
                batch.filter(&keep)
            }
        };
        if batch.records.num_rows() == 0 {
            return Ok(());
        }
        let batch = match &self.map {
            Some(map) => map(batch),
            None => batch,
        };
        let conformed = self.conform(&batch.records)?;
        if self.tx.blocking_send(Ok(conformed)).is_err() {
            self.closed = true;
            return Err("the query needs no more rows".into());
        }
        Ok(())
    }

    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        self.object.rejects += 1;
        if self.object.first_reject.is_none() {
            self.object.first_reject = Some(format!("{}: {}", letter.line, letter.reason));
        }
        if self.object.counts_rejects {
            self.report.reject(letter);
        }
        if self.object.not_flow_logs() && self.object.rejects >= REJECTS_BEFORE_GIVING_UP {
            return Err("not flow logs".into());
        }
        Ok(())
    }
}

/// Which rows of `records` have a `start` in `range` (a null `start` is in no range).
fn in_range(
    records: &RecordBatch,
    (since, until): (Option<i64>, Option<i64>),
) -> Result<BooleanArray, SinkError> {
    use datafusion::arrow::compute::kernels::{boolean, cmp};
    let start = records
        .column_by_name("start")
        .ok_or("a batch without `start`")?;
    let at = |t: i64| {
        arrow_array::Scalar::new(TimestampMillisecondArray::from(vec![t]).with_timezone("UTC"))
    };
    let mut keep = BooleanArray::from(vec![true; records.num_rows()]);
    if let Some(since) = since {
        keep = boolean::and(&keep, &cmp::gt_eq(start, &at(since))?)?;
    }
    if let Some(until) = until {
        keep = boolean::and(&keep, &cmp::lt(start, &at(until))?)?;
    }
    // Null (no start) is not in the range.
    Ok(crate::true_only(keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, size: u64) -> Object {
        Object {
            name: name.into(),
            size,
            input: 0,
        }
    }

    #[test]
    fn groups_balance_bytes_and_keep_listing_order() {
        let objects = vec![
            object("a", 10),
            object("b", 1),
            object("c", 9),
            object("d", 2),
        ];
        let two = groups(objects, 2);
        let names: Vec<Vec<&str>> = two
            .iter()
            .map(|g| g.iter().map(|o| o.name.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["a", "b"], vec!["c", "d"]]);
        assert_eq!(groups(Vec::new(), 4).len(), 1);
        assert_eq!(groups(vec![object("a", 1)], 4).len(), 1);
    }

    #[test]
    fn filters_narrow_time_and_region_but_not_account() {
        let ctx = datafusion::prelude::SessionContext::new();
        let schema =
            datafusion::common::DFSchema::try_from(crate::columns_schema(false).as_ref().clone())
                .unwrap();
        let parse = |sql: &str| ctx.parse_sql_expr(sql, &schema).unwrap();
        let wanted = Wanted::default().narrowed(&[parse(
            "start >= '2026-08-01' AND region IN ('eu-west-1', 'us-east-1') AND account_id = '1'",
        )]);
        assert_eq!(wanted.since, Some(1_785_542_400_000));
        assert_eq!(wanted.until, None);
        assert_eq!(wanted.regions, ["eu-west-1", "us-east-1"]);
        let narrower = wanted.narrowed(&[parse("region = 'us-east-1'")]);
        assert_eq!(narrower.regions, ["us-east-1"]);
        let none = narrower.narrowed(&[parse("region = 'ap-south-1'")]);
        assert_eq!(none.regions, [""]);
        // Not a bound: an OR, a column compared with a column.
        let open = Wanted::default().narrowed(&[parse(
            "region = 'x' OR start > '2026-01-01' AND srcaddr = dstaddr",
        )]);
        assert_eq!(open, Wanted::default());
    }
}
