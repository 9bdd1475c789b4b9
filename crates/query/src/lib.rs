//! SQL over flow logs, with DataFusion.
//!
//! This crate owns flowlog's SQL:
//! - the record predicate ([`Predicate`]: `[transform.filter] where`, `flowlog backfill
//!   --where`): a SQL expression over the canonical columns (and the enrichment columns),
//!   parsed once, planned once per batch schema into a DataFusion physical expression,
//!   and evaluated on whole Arrow batches, never row by row. Its semantics are SQL's
//!   `WHERE`: a row is kept only where the expression is true (null is not true), and a
//!   column the batch's format does not have is null;
//! - the `flows` table behind `flowlog query` ([`table`]): flow-log objects, wherever an
//!   [`table::Objects`] finds them, decoded by flowlog's decoder on every core, with the
//!   query's time range and regions narrowing what is listed; the session that runs SQL
//!   on it with bounded memory, spilling to disk ([`session`]); and its answers written
//!   as a table, CSV, NDJSON or Parquet ([`output`]).
//!
//! DataFusion stays in this crate (and the crates that opt in to it), so the rest of the
//! workspace builds without it.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{utils::split_conjunction, BinaryExpr, Expr, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

pub mod output;
pub mod session;
pub mod table;

/// A predicate that cannot be used, or could not be evaluated on a batch; a query that
/// cannot be planned or run, or whose answer cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("where {sql:?}: {message}")]
    Invalid { sql: String, message: String },
    #[error("where {sql:?} could not be evaluated: {message}")]
    Evaluate { sql: String, message: String },
    #[error("{message}")]
    Sql { message: String },
    #[error("cannot set up the query engine: {0}")]
    Setup(String),
    #[error("cannot write the answer: {0}")]
    Output(String),
}

impl QueryError {
    /// A query's failure as a person should read it: DataFusion's first line, and for a
    /// memory limit too small to spill within, the option that raises it.
    pub(crate) fn from_datafusion(e: &datafusion::error::DataFusionError) -> Self {
        let mut message = first_line(&e.to_string());
        if matches!(
            e.find_root(),
            datafusion::error::DataFusionError::ResourcesExhausted(_)
        ) || message.contains("Not enough memory")
        {
            message = format!(
                "{message} (the memory limit is too small even to spill: raise --memory-limit)"
            );
        }
        QueryError::Sql { message }
    }
}

/// The longest predicate accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 16 * 1024;

/// The stack that parsing, planning and evaluating a predicate need at most (a chain of
/// [`MAX_SQL_BYTES`] of ORs recurses that deep); a thread that calls [`Predicate::select`]
/// should have it.
pub const STACK_BYTES: usize = 64 << 20;

/// How many batch schemas a predicate keeps a plan for (formats with extra fields, with
/// or without enrichment: a handful in practice).
const PLANS_KEPT: usize = 8;

/// A `where` predicate over flow-log batches.
pub struct Predicate {
    sql: String,
    ctx: SessionContext,
    /// The expression as parsed against every column a batch may have.
    expr: Expr,
    /// The columns it reads, with their types (what a batch without one gets, as nulls).
    columns: Vec<Arc<Field>>,
    /// Plans by batch schema, most recently used last.
    plans: Vec<(SchemaRef, Arc<dyn PhysicalExpr>)>,
}

impl std::fmt::Debug for Predicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predicate").field("sql", &self.sql).finish()
    }
}

impl Predicate {
    /// Parses `sql` against the canonical columns and, with `enriched`, the enrichment
    /// columns. Unknown columns, unknown functions, types that do not compare and
    /// expressions that are not true/false are refused here.
    pub fn new(sql: &str, enriched: bool) -> Result<Self, QueryError> {
        let invalid = |message: String| QueryError::Invalid {
            sql: sql.to_string(),
            message,
        };
        if sql.len() > MAX_SQL_BYTES {
            return Err(invalid(format!(
                "longer than {MAX_SQL_BYTES} bytes (an IN list is the short way to name many \
                 values)"
            )));
        }
        // Parsing and planning recurse as deep as the expression nests: on a stack of
        // their own, so that a long chain of ORs is planned, not a crash.
        let owned = sql.to_string();
        std::thread::Builder::new()
            .name("flowlog-sql".into())
            .stack_size(STACK_BYTES)
            .spawn(move || Self::planned(&owned, enriched))
            .map_err(|e| invalid(format!("cannot start a thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(invalid("could not be planned".into())))
    }

    fn planned(sql: &str, enriched: bool) -> Result<Self, QueryError> {
        let invalid = |message: String| QueryError::Invalid {
            sql: sql.to_string(),
            message,
        };
        // Parsed against every column there is (DataFusion names a misspelt one and
        // the nearest), then held to the columns these batches will have.
        let schema = columns_schema(true);
        let df_schema =
            DFSchema::try_from(schema.as_ref().clone()).map_err(|e| invalid(e.to_string()))?;
        let ctx = SessionContext::new();
        let expr = ctx
            .parse_sql_expr(sql, &df_schema)
            .map_err(|e| invalid(first_line(&e.to_string())))?;
        let mut names = BTreeSet::new();
        for column in expr.column_refs() {
            if !enriched && flowlog_model::enrichment::enrichment_field(&column.name).is_some() {
                return Err(invalid(format!(
                    "{:?} is an enrichment column: configure [transform.enrich]",
                    column.name
                )));
            }
            names.insert(column.name.clone());
        }
        // Planning once against the full schema finds type errors now, not at the first
        // batch.
        let physical = ctx
            .create_physical_expr(expr.clone(), &df_schema)
            .map_err(|e| invalid(first_line(&e.to_string())))?;
        let kind = physical
            .data_type(&schema)
            .map_err(|e| invalid(e.to_string()))?;
        if !matches!(kind, DataType::Boolean | DataType::Null) {
            return Err(invalid(format!(
                "the expression is a {kind}, not true or false"
            )));
        }
        let columns = names
            .iter()
            .map(|name| Arc::new(schema.field_with_name(name).expect("checked").clone()))
            .collect();
        Ok(Self {
            sql: sql.to_string(),
            ctx,
            expr,
            columns,
            plans: Vec::new(),
        })
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The columns the predicate reads.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|f| f.name().as_str())
    }

    /// Whether a batch of `schema` has every column the predicate reads.
    pub fn reads_only(&self, schema: &Schema) -> bool {
        self.columns
            .iter()
            .all(|f| schema.field_with_name(f.name()).is_ok())
    }

    /// Which rows of `batch` pass: true only where the predicate is true.
    pub fn select(&mut self, batch: &RecordBatch) -> Result<BooleanArray, QueryError> {
        let batch = self.with_every_column(batch)?;
        let plan = self.plan(batch.schema())?;
        let value = plan
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| QueryError::Evaluate {
                sql: self.sql.clone(),
                message: first_line(&e.to_string()),
            })?;
        let selected = match value.data_type() {
            DataType::Boolean => value
                .as_any()
                .downcast_ref::<BooleanArray>()
                .expect("a boolean array")
                .clone(),
            // `where null`, or a column absent from every format: nothing is true.
            _ => BooleanArray::from(vec![false; batch.num_rows()]),
        };
        Ok(true_only(selected))
    }

    /// `batch`, with a column of nulls for each column the predicate reads and the batch
    /// lacks (enrichment not configured for it).
    fn with_every_column(&self, batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
        if self.reads_only(&batch.schema()) {
            return Ok(batch.clone());
        }
        let schema = batch.schema();
        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for field in &self.columns {
            if schema.field_with_name(field.name()).is_err() {
                fields.push(Arc::clone(field));
                columns.push(arrow_array::new_null_array(
                    field.data_type(),
                    batch.num_rows(),
                ));
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| {
            QueryError::Evaluate {
                sql: self.sql.clone(),
                message: e.to_string(),
            }
        })
    }

    /// The physical expression for batches of `schema`, planned on first sight.
    fn plan(&mut self, schema: SchemaRef) -> Result<Arc<dyn PhysicalExpr>, QueryError> {
        if let Some(at) = self
            .plans
            .iter()
            .position(|(s, _)| Arc::ptr_eq(s, &schema) || s.fields() == schema.fields())
        {
            let plan = Arc::clone(&self.plans[at].1);
            if at + 1 != self.plans.len() {
                let entry = self.plans.remove(at);
                self.plans.push(entry);
            }
            return Ok(plan);
        }
        let invalid = |message: String| QueryError::Evaluate {
            sql: self.sql.clone(),
            message,
        };
        let df_schema =
            DFSchema::try_from(schema.as_ref().clone()).map_err(|e| invalid(e.to_string()))?;
        let plan = self
            .ctx
            .create_physical_expr(self.expr.clone(), &df_schema)
            .map_err(|e| invalid(first_line(&e.to_string())))?;
        if self.plans.len() == PLANS_KEPT {
            self.plans.remove(0);
        }
        self.plans.push((schema, Arc::clone(&plan)));
        Ok(plan)
    }

    /// The range of `start` the predicate's top-level conjuncts bound (`start >= '...'`,
    /// `start < '...'`, `start BETWEEN ... AND ...`), in milliseconds: what lets a
    /// backfill list fewer partitions. Bounds it cannot read are left open.
    pub fn start_bounds(&self) -> (Option<i64>, Option<i64>) {
        start_bounds(std::slice::from_ref(&self.expr))
    }
}

/// The range of `start` that the top-level conjuncts of `filters` bound, in
/// milliseconds (`since` inclusive, `until` exclusive); bounds it cannot read are open.
pub(crate) fn start_bounds(filters: &[Expr]) -> (Option<i64>, Option<i64>) {
    let mut since: Option<i64> = None;
    let mut until: Option<i64> = None;
    let mut lower = |t: i64| since = Some(since.map_or(t, |s| s.max(t)));
    let mut upper = |t: i64| until = Some(until.map_or(t, |u| u.min(t)));
    for conjunct in filters.iter().flat_map(split_conjunction) {
        match conjunct {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, value) = match (is_start(left), is_start(right)) {
                    (true, false) => (*op, moment(right)),
                    (false, true) => (op.swap().unwrap_or(*op), moment(left)),
                    _ => continue,
                };
                let Some(t) = value else { continue };
                match op {
                    Operator::GtEq => lower(t),
                    Operator::Gt => lower(t + 1),
                    Operator::Lt => upper(t),
                    Operator::LtEq => upper(t + 1),
                    Operator::Eq => {
                        lower(t);
                        upper(t + 1);
                    }
                    _ => {}
                }
            }
            Expr::Between(between) if !between.negated && is_start(&between.expr) => {
                if let Some(t) = moment(&between.low) {
                    lower(t);
                }
                if let Some(t) = moment(&between.high) {
                    upper(t + 1);
                }
            }
            _ => {}
        }
    }
    (since, until)
}

/// `mask` with null as false (SQL's WHERE: null is not true), for filtering.
pub(crate) fn true_only(mask: BooleanArray) -> BooleanArray {
    match mask.nulls() {
        Some(_) => BooleanArray::from_iter(mask.iter().map(|v| Some(v == Some(true)))),
        None => mask,
    }
}

/// Every column a batch may have: the catalogue's, then (with `enriched`) enrichment's.
pub fn columns_schema(enriched: bool) -> SchemaRef {
    let canonical = flowlog_model::schema::canonical_schema();
    if !enriched {
        return canonical;
    }
    let mut fields: Vec<Arc<Field>> = canonical.fields().iter().cloned().collect();
    fields.extend(
        flowlog_model::enrichment::enrichment_schema_fields()
            .iter()
            .cloned(),
    );
    Arc::new(Schema::new(fields))
}

fn is_start(expr: &Expr) -> bool {
    match expr {
        Expr::Column(c) => c.name == "start",
        Expr::Cast(cast) => is_start(&cast.expr),
        _ => false,
    }
}

/// A literal moment in milliseconds: text as flowlog reads times, or a timestamp.
fn moment(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::Utf8(Some(text))
        | ScalarValue::Utf8View(Some(text))
        | ScalarValue::LargeUtf8(Some(text)) => flowlog_model::time::parse_instant(text),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1000),
        ScalarValue::TimestampMillisecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampMicrosecond(Some(t), _) => Some(t.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(t.div_euclid(1_000_000)),
        _ => None,
    }
}

/// DataFusion's messages can carry a backtrace or a plan dump after the first line, or
/// a whole expression's debug form in it: the first line, at most 300 characters.
pub(crate) fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests;
