//! Documents described as data: a target (ECS, OCSF, CIM) is a table of [`Member`]s, and one
//! engine writes any table from Arrow columns.
//!
//! A table is compiled once ([`Template::new`]: field names resolved, member names
//! pre-rendered), bound to each batch (columns looked up, members whose fields the batch
//! lacks dropped, the row bound computed), then written row by row. A member whose value
//! is absent in a row is left out, and so is an object none of whose members is present:
//! documents never carry `null`, `"-"` or `{}`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use arrow_array::RecordBatch;
use flowlog_model::{enrichment_fields, FieldId, FlowBatch, ENVELOPE_FIELDS, FIELDS, MERGED_COUNT};

use crate::columns::{short_view, Column, Keys, Values};
use crate::envelope::EnvelopeObject;
use crate::json::{MemberKey, Number, Object, Out, OutBuffer, Rows, NUMBER_BOUND};
use crate::time::{DateCache, RFC3339_BOUND};
use crate::{EncodeError, Encoder};

/// One member of a document.
pub(crate) enum Member {
    /// `"key": value`, left out when the value is absent.
    Leaf(&'static str, Value),
    /// `"key": {members}`, left out when none of its members is present.
    Object(&'static str, &'static [Member]),
    /// The members of a table shared by several tables, in place.
    Group(&'static [Member]),
    /// Members written by a function, keys and all, when one fact decides several members
    /// (OCSF's activity, action, disposition and status all follow from `action`). Unlike
    /// a [`Value::Derived`] leaf, which takes part only when the batch has one of its
    /// inputs, the function runs for every row, so it can write defaults.
    Members(&'static Derivation),
    /// Every field that no other member of the table reads, under its own snake_case name
    /// and written as `--to raw` writes it, unknown fields of custom formats included:
    /// nothing a record carries is dropped.
    Rest,
}

/// How a leaf's value is obtained.
pub(crate) enum Value {
    /// A field as it is: text as a string, numbers as numbers.
    Field(&'static str),
    /// A numeric field as a JSON string (`"17"`), for keyword-typed codes.
    FieldAsText(&'static str),
    /// A time field as an RFC 3339 string.
    Rfc3339(&'static str),
    /// A time field as Unix milliseconds.
    EpochMillis(&'static str),
    /// A JSON value that never changes.
    Literal(&'static str),
    /// A text field translated: the JSON of the first case whose text equals the value,
    /// else `otherwise` (also used when the field is absent), else nothing.
    Map {
        field: &'static str,
        cases: &'static [(&'static str, &'static str)],
        otherwise: Option<&'static str>,
    },
    /// Computed from several fields.
    Derived(&'static Derivation),
}

/// A value computed from several fields by a function.
pub(crate) struct Derivation {
    /// The fields it reads, in the order [`Inputs`] presents them.
    pub inputs: &'static [&'static str],
    /// The most bytes the value takes in any row of a batch.
    pub bound: fn(&Inputs<'_>) -> usize,
    /// Writes the value of a row; returns false when the row has none (what it wrote is
    /// then discarded).
    pub write: fn(&Inputs<'_>, usize, &mut Out<'_>) -> bool,
}

/// The columns a [`Derivation`] reads, bound to one batch.
pub(crate) struct Inputs<'a> {
    columns: Vec<Option<Column<'a>>>,
    plain: bool,
    dates: DateCache,
}

impl<'a> Inputs<'a> {
    #[inline]
    pub fn text(&self, i: usize, row: usize) -> Option<&'a str> {
        self.columns[i].as_ref().and_then(|c| c.text(row))
    }

    #[inline]
    pub fn int(&self, i: usize, row: usize) -> Option<i64> {
        self.columns[i].as_ref().and_then(|c| c.int(row))
    }

    /// Writes a time (Unix milliseconds) as a quoted RFC 3339 timestamp.
    #[inline]
    pub fn write_rfc3339(&self, out: &mut Out<'_>, millis: i64) {
        self.dates.write(out, millis)
    }

    /// How many inputs the derivation has.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// The most bytes input `i` takes as JSON in any row (0 when the batch lacks it).
    pub fn value_bound(&self, i: usize) -> usize {
        self.columns[i].as_ref().map_or(0, Column::value_bound)
    }

    /// Writes input `i` of `row` as it is; false when the row has no value.
    #[inline]
    pub fn write(&self, i: usize, row: usize, out: &mut Out<'_>) -> bool {
        match &self.columns[i] {
            Some(c) if !c.is_null(row) => {
                if self.plain {
                    c.write_value::<true>(out, row)
                } else {
                    c.write_value::<false>(out, row)
                }
                true
            }
            _ => false,
        }
    }
}

/// How a field's value is written.
#[derive(Clone, Copy)]
enum Format {
    AsIs,
    AsText,
    Rfc3339,
    EpochMillis,
}

enum Node {
    Field {
        key: MemberKey,
        field: FieldId,
        format: Format,
    },
    /// The whole member, key and value, pre-rendered.
    Literal(MemberKey),
    Map {
        key: MemberKey,
        field: FieldId,
        /// (string view of the case text, JSON)
        cases: Vec<(u128, &'static str)>,
        otherwise: Option<MemberKey>,
    },
    Derived {
        key: MemberKey,
        derivation: &'static Derivation,
        inputs: Vec<FieldId>,
    },
    Object {
        key: MemberKey,
        members: Vec<Node>,
    },
    Members {
        derivation: &'static Derivation,
        inputs: Vec<FieldId>,
    },
    Rest,
}

/// A compiled table.
pub(crate) struct Template {
    nodes: Vec<Node>,
    /// Fields some member reads, which [`Member::Rest`] and the envelope object leave out.
    read: Vec<bool>,
    /// `,"key":` of the object for envelope metadata the table does not map, if wanted.
    envelope: Option<MemberKey>,
}

/// The columns a table can read, by name: catalogue fields (their ids), then enrichment
/// columns, then envelope columns (ids counted on from the catalogue's length).
fn known_columns() -> &'static HashMap<&'static str, FieldId> {
    static KNOWN: OnceLock<HashMap<&'static str, FieldId>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        FIELDS
            .iter()
            .map(|f| f.column)
            .chain(enrichment_fields().iter().map(|f| f.column))
            .chain(ENVELOPE_FIELDS.iter().map(|f| f.column))
            .chain([MERGED_COUNT.column])
            .enumerate()
            .map(|(id, name)| (name, id))
            .collect()
    })
}

/// The id of a column a table reads.
fn field_id(name: &str) -> FieldId {
    *known_columns()
        .get(name)
        .unwrap_or_else(|| panic!("template names unknown field `{name}`"))
}

/// True for the id of an envelope column (these go to the envelope object, never to
/// [`Member::Rest`]).
fn is_envelope(id: FieldId) -> bool {
    let first = FIELDS.len() + enrichment_fields().len();
    (first..first + ENVELOPE_FIELDS.len()).contains(&id)
}

/// Where a batch's columns are, by the ids of [`field_id`]: catalogue fields lead every
/// schema; unknown fields of custom formats, envelope and enrichment columns follow.
struct Positions {
    /// By id: the schema position.
    positions: Vec<Option<usize>>,
    /// By schema position: the id, if the column has one (unknown fields have none).
    ids: Vec<Option<FieldId>>,
}

impl Positions {
    fn new(schema: &arrow_schema::Schema) -> Self {
        let known = known_columns();
        let mut positions = vec![None; known.len()];
        let ids: Vec<_> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(position, field)| {
                let id = if position < FIELDS.len() {
                    Some(position)
                } else {
                    known.get(field.name().as_str()).copied()
                };
                if let Some(id) = id {
                    positions[id] = Some(position);
                }
                id
            })
            .collect();
        Self { positions, ids }
    }

    /// The schema position of column `id`.
    fn position(&self, id: FieldId) -> Option<usize> {
        self.positions[id]
    }

    /// The id of the column at schema `position`, if it has one.
    fn id(&self, position: usize) -> Option<FieldId> {
        self.ids[position]
    }
}

impl Template {
    /// Compiles a table. Panics on a field name the catalogue lacks (a bug in the table,
    /// caught by every test that uses it). With `envelope_key`, envelope metadata the
    /// table does not map is written under that key.
    pub fn new(members: &[Member], envelope_key: Option<&str>) -> Self {
        let mut read = vec![false; known_columns().len()];
        let nodes = compile(members, &mut read);
        Self {
            nodes,
            read,
            envelope: envelope_key.map(MemberKey::new),
        }
    }

    fn bind<'t, 'a>(
        &'t self,
        records: &'a RecordBatch,
        plain: bool,
    ) -> Result<Plan<'t, 'a>, EncodeError> {
        let schema = records.schema();
        let mut columns = Vec::with_capacity(records.num_columns());
        for (field, array) in schema.fields().iter().zip(records.columns()) {
            // (A dictionary column counts its keys' nulls: the enricher leaves a column out
            // when none of its distinct values has one.)
            columns.push(if array.null_count() < array.len() {
                Some(Column::new(field, array.as_ref())?)
            } else {
                None
            });
        }
        let ctx = BindContext {
            positions: Positions::new(&schema),
            columns: &columns,
            schema_names: schema.fields().iter().map(|f| f.name().as_str()).collect(),
            read: &self.read,
            plain,
        };
        let members = bind_nodes(&self.nodes, &ctx);
        let envelope = match &self.envelope {
            Some(key) => EnvelopeObject::bind(key, records, |name| self.read[field_id(name)])?,
            None => None,
        };
        Ok(Plan::new(members, envelope, records.num_rows()))
    }
}

/// The id of a field the table reads, noted in `read`.
fn mark(read: &mut [bool], name: &str) -> FieldId {
    let id = field_id(name);
    read[id] = true;
    id
}

fn compile(members: &[Member], read: &mut [bool]) -> Vec<Node> {
    let mut nodes = Vec::with_capacity(members.len());
    for member in members {
        if let Member::Group(members) = member {
            nodes.extend(compile(members, read));
            continue;
        }
        nodes.push(match member {
            Member::Leaf(key, value) => {
                let field = |name, format| Node::Field {
                    key: MemberKey::new(key),
                    field: name,
                    format,
                };
                match value {
                    Value::Field(f) => field(mark(read, f), Format::AsIs),
                    Value::FieldAsText(f) => field(mark(read, f), Format::AsText),
                    Value::Rfc3339(f) => field(mark(read, f), Format::Rfc3339),
                    Value::EpochMillis(f) => field(mark(read, f), Format::EpochMillis),
                    Value::Literal(json) => Node::Literal(literal(key, json)),
                    Value::Map {
                        field,
                        cases,
                        otherwise,
                    } => Node::Map {
                        key: MemberKey::new(key),
                        field: mark(read, field),
                        cases: cases.iter().map(|(t, j)| (short_view(t), *j)).collect(),
                        otherwise: otherwise.map(|json| literal(key, json)),
                    },
                    Value::Derived(derivation) => Node::Derived {
                        key: MemberKey::new(key),
                        derivation,
                        inputs: derivation.inputs.iter().map(|f| mark(read, f)).collect(),
                    },
                }
            }
            Member::Object(key, members) => Node::Object {
                key: MemberKey::new(key),
                members: compile(members, read),
            },
            Member::Members(derivation) => Node::Members {
                derivation,
                inputs: derivation.inputs.iter().map(|f| mark(read, f)).collect(),
            },
            Member::Rest => Node::Rest,
            Member::Group(_) => unreachable!("spliced above"),
        });
    }
    nodes
}

fn literal(key: &str, json: &str) -> MemberKey {
    debug_assert!(
        serde_json::from_str::<serde_json::Value>(json).is_ok(),
        "literal for `{key}` is not JSON: {json}"
    );
    MemberKey::with_value(key, json.as_bytes())
}

struct BindContext<'c, 'a> {
    positions: Positions,
    /// By schema position; `None` when the batch has no value in that column.
    columns: &'c [Option<Column<'a>>],
    schema_names: Vec<&'c str>,
    read: &'c [bool],
    plain: bool,
}

/// A node bound to a batch's columns.
enum Bound<'t, 'a> {
    Field {
        key: &'t MemberKey,
        column: Column<'a>,
        format: Format,
    },
    Literal(&'t MemberKey),
    Map {
        key: &'t MemberKey,
        column: Column<'a>,
        cases: &'t [(u128, &'static str)],
        otherwise: Option<&'t MemberKey>,
        bound: usize,
    },
    Derived {
        key: &'t MemberKey,
        derivation: &'static Derivation,
        inputs: Inputs<'a>,
    },
    Object {
        key: &'t MemberKey,
        members: Vec<Bound<'t, 'a>>,
    },
    Members {
        derivation: &'static Derivation,
        inputs: Inputs<'a>,
    },
    Rest(Vec<(MemberKey, Column<'a>)>),
}

fn bind_nodes<'t, 'a>(nodes: &'t [Node], ctx: &BindContext<'_, 'a>) -> Vec<Bound<'t, 'a>> {
    let column = |id: FieldId| {
        let position = ctx.positions.position(id)?;
        ctx.columns.get(position).copied().flatten()
    };
    // A derivation takes part when the batch has any of its inputs.
    let bind_inputs = |ids: &[FieldId]| {
        let columns: Vec<_> = ids.iter().map(|&id| column(id)).collect();
        columns.iter().any(Option::is_some).then(|| Inputs {
            columns,
            plain: ctx.plain,
            dates: DateCache::default(),
        })
    };
    let mut bound = Vec::with_capacity(nodes.len());
    for node in nodes {
        let b = match node {
            Node::Field { key, field, format } => column(*field).map(|column| Bound::Field {
                key,
                column,
                format: *format,
            }),
            Node::Literal(member) => Some(Bound::Literal(member)),
            Node::Map {
                key,
                field,
                cases,
                otherwise,
            } => match column(*field) {
                Some(column) => Some(Bound::Map {
                    key,
                    column,
                    cases,
                    otherwise: otherwise.as_ref(),
                    bound: key.len()
                        + cases
                            .iter()
                            .map(|(_, j)| j.len())
                            .chain(otherwise.as_ref().map(|o| o.len()))
                            .max()
                            .unwrap_or(0),
                }),
                None => otherwise.as_ref().map(Bound::Literal),
            },
            Node::Derived {
                key,
                derivation,
                inputs,
            } => bind_inputs(inputs).map(|inputs| Bound::Derived {
                key,
                derivation,
                inputs,
            }),
            // Members are written whatever the batch has: they carry defaults (OCSF's
            // required `direction_id` is 0 Unknown without a flow direction).
            Node::Members { derivation, inputs } => Some(Bound::Members {
                derivation,
                inputs: Inputs {
                    columns: inputs.iter().map(|&id| column(id)).collect(),
                    plain: ctx.plain,
                    dates: DateCache::default(),
                },
            }),
            Node::Object { key, members } => {
                let members = bind_nodes(members, ctx);
                (!members.is_empty()).then_some(Bound::Object { key, members })
            }
            Node::Rest => {
                let rest: Vec<_> = ctx
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(position, c)| {
                        c.is_some()
                            && !ctx
                                .positions
                                .id(*position)
                                .is_some_and(|id| ctx.read[id] || is_envelope(id))
                    })
                    .map(|(id, c)| (MemberKey::new(ctx.schema_names[id]), c.unwrap()))
                    .collect();
                (!rest.is_empty()).then_some(Bound::Rest(rest))
            }
        };
        bound.extend(b);
    }
    bound
}

/// One step of the program a [`Plan`] runs per row.
///
/// The bound tree is flattened into a list of steps so rows are written by one loop, not
/// by recursion; members whose value never changes are folded into [`Op::Static`] runs,
/// objects that always have such a member open and close inside them, and only objects
/// whose every member may be absent need [`Op::Open`]/[`Op::Close`] to be left out.
enum Op<'t, 'a> {
    /// Bytes written as they are.
    Static(MemberKey),
    /// `,"key":` of an object that is left out if none of its members is written.
    Open(&'t MemberKey),
    /// Closes the innermost [`Op::Open`]: `}`, or rewinds to before its key.
    Close,
    Field {
        key: &'t MemberKey,
        column: Column<'a>,
        format: Format,
        dates: DateCache,
    },
    Map {
        key: &'t MemberKey,
        column: Column<'a>,
        cases: &'t [(u128, &'static str)],
        otherwise: Option<&'t MemberKey>,
        bound: usize,
    },
    Derived {
        key: &'t MemberKey,
        derivation: &'static Derivation,
        inputs: Inputs<'a>,
    },
    Members {
        derivation: &'static Derivation,
        inputs: Inputs<'a>,
    },
    Rest(Vec<(MemberKey, Column<'a>)>),
    /// The envelope object (always the document's last member).
    Envelope(EnvelopeObject<'t, 'a>),
    /// The next `len` ops write an object whose columns are all dictionary-encoded with
    /// these keys: its bytes depend on the key alone, so they are written once per
    /// distinct key and copied (from memo `slot`) for the other rows.
    Memo {
        slot: usize,
        keys: Keys<'a>,
        len: usize,
    },
}

/// The bytes of one memoized object, per dictionary key, for one batch.
#[derive(Default)]
struct Memo {
    /// Per key: where its bytes are in `bytes` (start << 32 | length), or `EMPTY`.
    spans: Vec<u64>,
    bytes: Vec<u8>,
}

impl Memo {
    const EMPTY: u64 = u64::MAX;

    fn get(&self, key: usize) -> Option<&[u8]> {
        let span = *self.spans.get(key)?;
        (span != Self::EMPTY).then(|| &self.bytes[(span >> 32) as usize..][..span as u32 as usize])
    }

    fn put(&mut self, key: usize, bytes: &[u8]) {
        if self.spans.len() <= key {
            self.spans.resize(key + 1, Self::EMPTY);
        }
        self.spans[key] = (self.bytes.len() as u64) << 32 | bytes.len() as u64;
        self.bytes.extend_from_slice(bytes);
    }
}

/// The keys shared by every column `members` read, if they all are dictionary-encoded
/// with the same keys (enrichment columns filled from one lookup).
fn shared_keys<'a>(members: &[Bound<'_, 'a>]) -> Option<Keys<'a>> {
    fn columns<'b, 'a>(members: &'b [Bound<'_, 'a>], all: &mut Vec<&'b Column<'a>>) {
        for member in members {
            match member {
                Bound::Field { column, .. } | Bound::Map { column, .. } => all.push(column),
                Bound::Derived { inputs, .. } | Bound::Members { inputs, .. } => {
                    all.extend(inputs.columns.iter().flatten())
                }
                Bound::Rest(rest) => all.extend(rest.iter().map(|(_, c)| c)),
                Bound::Literal(_) => {}
                Bound::Object { members, .. } => columns(members, all),
            }
        }
    }
    let mut all = Vec::new();
    columns(members, &mut all);
    let first = all.first()?.keys?;
    all.iter()
        .all(|c| c.keys.is_some_and(|k| k.same(&first)))
        .then_some(first)
}

/// The deepest nesting of objects that may be left out.
const MAX_OPEN: usize = 8;

impl Bound<'_, '_> {
    /// True if the member is written in every row: a literal, or an object holding one.
    fn always_written(&self) -> bool {
        match self {
            Bound::Literal(_) => true,
            Bound::Object { members, .. } => members.iter().any(Bound::always_written),
            _ => false,
        }
    }
}

/// Flattens bound members into `ops`, members written in every row first so that their
/// bytes merge into one static run. `pending` collects static bytes not yet emitted.
///
/// With `brace_first`, the members belong to an object that is written in every row: the
/// first member is static, and its leading comma becomes the object's opening brace.
fn linearize<'t, 'a>(
    members: Vec<Bound<'t, 'a>>,
    ops: &mut Vec<Op<'t, 'a>>,
    pending: &mut Vec<u8>,
    depth: usize,
    brace_first: bool,
    in_memo: bool,
) {
    let (always, sometimes): (Vec<_>, Vec<_>) =
        members.into_iter().partition(Bound::always_written);
    let mut brace_at = brace_first.then_some(pending.len());
    let mut brace = |pending: &mut Vec<u8>| {
        if let Some(at) = brace_at.take() {
            pending[at] = b'{';
        }
    };
    for member in always.into_iter().chain(sometimes) {
        match member {
            Bound::Literal(member) => {
                pending.extend_from_slice(member.bytes());
                brace(pending);
            }
            Bound::Object { key, members } if members.iter().any(Bound::always_written) => {
                pending.extend_from_slice(key.bytes());
                brace(pending);
                linearize(members, ops, pending, depth, true, in_memo);
                pending.push(b'}');
            }
            Bound::Object { key, members } => {
                assert!(depth < MAX_OPEN, "objects nested too deeply");
                flush(ops, pending);
                let memo = (!in_memo).then(|| shared_keys(&members)).flatten();
                let memo_at = ops.len();
                if let Some(keys) = memo {
                    let slot = ops
                        .iter()
                        .filter(|op| matches!(op, Op::Memo { .. }))
                        .count();
                    ops.push(Op::Memo { slot, keys, len: 0 });
                }
                ops.push(Op::Open(key));
                linearize(members, ops, pending, depth + 1, false, memo.is_some());
                flush(ops, pending);
                ops.push(Op::Close);
                let object_len = ops.len() - memo_at - 1;
                if let Some(Op::Memo { len, .. }) = memo.and(ops.get_mut(memo_at)) {
                    *len = object_len;
                }
            }
            other => {
                flush(ops, pending);
                ops.push(match other {
                    Bound::Field {
                        key,
                        column,
                        format,
                    } => Op::Field {
                        key,
                        column,
                        format,
                        dates: DateCache::default(),
                    },
                    Bound::Map {
                        key,
                        column,
                        cases,
                        otherwise,
                        bound,
                    } => Op::Map {
                        key,
                        column,
                        cases,
                        otherwise,
                        bound,
                    },
                    Bound::Derived {
                        key,
                        derivation,
                        inputs,
                    } => Op::Derived {
                        key,
                        derivation,
                        inputs,
                    },
                    Bound::Members { derivation, inputs } => Op::Members { derivation, inputs },
                    Bound::Rest(members) => Op::Rest(members),
                    Bound::Literal(_) | Bound::Object { .. } => unreachable!("handled above"),
                });
            }
        }
    }
}

fn flush(ops: &mut Vec<Op<'_, '_>>, pending: &mut Vec<u8>) {
    if !pending.is_empty() {
        ops.push(Op::Static(MemberKey::from_bytes(pending)));
        pending.clear();
    }
}

impl Op<'_, '_> {
    /// The most bytes the step writes in any row.
    fn bound(&self) -> usize {
        match self {
            Op::Static(bytes) => bytes.len(),
            Op::Open(key) => key.len(),
            Op::Close => 2,
            Op::Field {
                key,
                column,
                format,
                ..
            } => {
                key.len()
                    + match format {
                        Format::AsIs => column.value_bound(),
                        Format::AsText => NUMBER_BOUND + 2,
                        Format::Rfc3339 => RFC3339_BOUND.max(column.value_bound()),
                        Format::EpochMillis => NUMBER_BOUND,
                    }
            }
            Op::Map { bound, .. } => *bound,
            Op::Derived {
                key,
                derivation,
                inputs,
            } => key.len() + (derivation.bound)(inputs),
            Op::Members { derivation, inputs } => (derivation.bound)(inputs),
            Op::Rest(members) => members.iter().map(|(k, c)| k.len() + c.value_bound()).sum(),
            Op::Envelope(object) => object.bound(),
            // The ops it stands for are counted themselves.
            Op::Memo { .. } => 0,
        }
    }
}

#[inline(always)]
fn write_field<const PLAIN: bool>(
    out: &mut Out<'_>,
    column: &Column<'_>,
    format: Format,
    dates: &DateCache,
    row: usize,
) {
    match (format, column.values) {
        (Format::AsIs, _) => column.write_value::<PLAIN>(out, row),
        (Format::AsText, Values::Text(a)) => out.view_str::<PLAIN>(a, column.index(row)),
        (Format::AsText, _) => {
            out.byte(b'"');
            Number::integer(column.int(row).expect("not null")).write(out);
            out.byte(b'"');
        }
        (Format::Rfc3339, Values::Time(a)) => dates.write(out, a.value(column.index(row))),
        (Format::EpochMillis, Values::Time(a)) => {
            Number::integer(a.value(column.index(row))).write(out)
        }
        // A template asking for a time from a column that holds none (a table bug) still
        // writes the value rather than something made up.
        (Format::Rfc3339 | Format::EpochMillis, _) => column.write_value::<PLAIN>(out, row),
    }
}

/// A template bound to one batch: the program for its rows.
struct Plan<'t, 'a> {
    ops: Vec<Op<'t, 'a>>,
    /// One per [`Op::Memo`], by slot.
    memos: Vec<RefCell<Memo>>,
    /// The program opens and closes the document itself (it has a static member).
    root_static: bool,
    num_rows: usize,
    row_bound: usize,
}

impl<'t, 'a> Plan<'t, 'a> {
    fn new(
        members: Vec<Bound<'t, 'a>>,
        envelope: Option<EnvelopeObject<'t, 'a>>,
        num_rows: usize,
    ) -> Self {
        let mut ops = Vec::new();
        let mut pending = Vec::new();
        // The document is an object without a key; an empty one is still written (`{}`).
        let root_static = members.iter().any(Bound::always_written);
        linearize(members, &mut ops, &mut pending, 0, root_static, false);
        if let Some(envelope) = envelope {
            flush(&mut ops, &mut pending);
            ops.push(Op::Envelope(envelope));
        }
        if root_static {
            pending.extend_from_slice(b"}\n");
        }
        flush(&mut ops, &mut pending);
        let row_bound = ops.iter().map(Op::bound).sum::<usize>() + Object::BOUND + 1;
        let memos = ops
            .iter()
            .filter(|op| matches!(op, Op::Memo { .. }))
            .map(|_| RefCell::default())
            .collect();
        Self {
            ops,
            memos,
            root_static,
            num_rows,
            row_bound,
        }
    }

    fn write<const PLAIN: bool>(&self, rows: &mut Rows<'_>) {
        for row in 0..self.num_rows {
            rows.row(self.row_bound, |out| {
                if self.root_static {
                    self.write_row::<PLAIN>(&self.ops, out, row);
                } else {
                    let object = Object::begin(out);
                    self.write_row::<PLAIN>(&self.ops, out, row);
                    object.end(out);
                    out.byte(b'\n');
                }
            });
        }
    }

    /// Writes `ops` (the whole program, or the object of a memo) for one row.
    #[inline]
    fn write_row<const PLAIN: bool>(&self, ops: &[Op<'t, 'a>], out: &mut Out<'_>, row: usize) {
        // Where each open object's key starts, and its key's length.
        let mut open = [(0usize, 0usize); MAX_OPEN];
        let mut depth = 0;
        let mut i = 0;
        while i < ops.len() {
            let op = &ops[i];
            i += 1;
            match op {
                Op::Memo { slot, keys, len } => {
                    let object = &ops[i..i + len];
                    i += len;
                    // Without a key, every column of the object is null: nothing to write.
                    if keys.is_null(row) {
                        continue;
                    }
                    let key = keys.keys[row] as usize;
                    let mut memo = self.memos[*slot].borrow_mut();
                    match memo.get(key) {
                        Some(bytes) => out.bytes(bytes),
                        None => {
                            let start = out.pos();
                            self.write_row::<PLAIN>(object, out, row);
                            memo.put(key, out.since(start));
                        }
                    }
                }
                Op::Static(bytes) => bytes.write(out),
                Op::Open(key) => {
                    open[depth] = (out.pos(), key.len());
                    depth += 1;
                    key.write(out);
                }
                Op::Close => {
                    depth -= 1;
                    let (before, key_len) = open[depth];
                    let start = before + key_len;
                    if out.pos() == start {
                        out.truncate(before);
                    } else {
                        out.set(start, b'{');
                        out.byte(b'}');
                    }
                }
                Op::Field {
                    key,
                    column,
                    format,
                    dates,
                } => {
                    if !column.is_null(row) {
                        key.write(out);
                        write_field::<PLAIN>(out, column, *format, dates, row);
                    }
                }
                Op::Map {
                    key,
                    column,
                    cases,
                    otherwise,
                    ..
                } => {
                    let json = column
                        .view(row)
                        .and_then(|view| cases.iter().find(|(v, _)| *v == view));
                    match (json, otherwise) {
                        (Some((_, json)), _) => {
                            key.write(out);
                            out.bytes(json.as_bytes());
                        }
                        (None, Some(member)) => member.write(out),
                        (None, None) => {}
                    }
                }
                Op::Derived {
                    key,
                    derivation,
                    inputs,
                } => {
                    let before = out.pos();
                    key.write(out);
                    if !(derivation.write)(inputs, row, out) {
                        out.truncate(before);
                    }
                }
                Op::Members { derivation, inputs } => {
                    let before = out.pos();
                    if !(derivation.write)(inputs, row, out) {
                        out.truncate(before);
                    }
                }
                Op::Rest(members) => {
                    for (key, column) in members {
                        if !column.is_null(row) {
                            key.write(out);
                            column.write_value::<PLAIN>(out, row);
                        }
                    }
                }
                Op::Envelope(object) => object.write::<PLAIN>(out, row),
            }
        }
    }
}

/// An [`Encoder`] that writes one table.
pub(crate) struct TemplateEncoder {
    template: Template,
    buffer: OutBuffer,
}

impl TemplateEncoder {
    pub fn new(members: &[Member], envelope_key: Option<&str>) -> Self {
        Self {
            template: Template::new(members, envelope_key),
            buffer: OutBuffer::default(),
        }
    }
}

impl Encoder for TemplateEncoder {
    fn encode(&mut self, batch: &FlowBatch) -> Result<&[u8], EncodeError> {
        let plan = self.template.bind(&batch.records, batch.plain_text)?;
        let mut rows = self.buffer.rows();
        if batch.plain_text {
            plan.write::<true>(&mut rows);
        } else {
            plan.write::<false>(&mut rows);
        }
        let written = rows.finish();
        Ok(self.buffer.written(written))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt32Type;
    use arrow_array::{
        new_null_array, Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch,
        StringViewArray, UInt32Array, UInt32DictionaryArray,
    };
    use arrow_buffer::ScalarBuffer;
    use arrow_schema::{Field, Schema};
    use flowlog_model::enrichment::enrichment_schema_fields;
    use flowlog_model::{canonical_schema, enrichment_field, EnrichKind, SourceId};

    use crate::{OcsfVersion, Target};

    use super::*;

    /// Six records between two peers and three interfaces, with enrichment columns as
    /// the enricher stores them (dictionary-encoded, each side's columns sharing keys).
    fn enriched_batch() -> FlowBatch {
        let rows = 6;
        let text = |v: &[Option<&str>]| Arc::new(StringViewArray::from(v.to_vec())) as ArrayRef;
        let schema = canonical_schema();
        let mut columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "srcaddr" => text(&[
                    Some("8.8.8.8"),
                    Some("1.1.1.1"),
                    Some("8.8.8.8"),
                    Some("10.0.0.1"),
                    Some("8.8.8.8"),
                    None,
                ]),
                "dstaddr" => text(&[Some("10.0.0.1"); 6]),
                "interface_id" => text(&[
                    Some("eni-1"),
                    Some("eni-2"),
                    Some("eni-1"),
                    None,
                    Some("eni-1"),
                    Some("eni-3"),
                ]),
                "action" => text(&[Some("ACCEPT"); 6]),
                "srcport" | "dstport" | "protocol" => {
                    Arc::new(Int32Array::from(vec![Some(6); rows])) as ArrayRef
                }
                // (A record without an end would be stamped with the time it is written.)
                "start" | "end" => Arc::new(
                    arrow_array::TimestampMillisecondArray::from(vec![1_700_000_000_000; rows])
                        .with_timezone("UTC"),
                ),
                _ => new_null_array(f.data_type(), rows),
            })
            .collect();
        // Source side: key 0 = 8.8.8.8, 1 = 1.1.1.1 (no city); 10.0.0.1 and null: no key.
        let src_keys = UInt32Array::from(vec![Some(0), Some(1), Some(0), None, Some(0), None]);
        let eni_keys = UInt32Array::from(vec![Some(0), Some(1), Some(0), None, Some(0), Some(2)]);
        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        for field in enrichment_schema_fields().iter() {
            let name = field.name().as_str();
            let values: Option<(ArrayRef, &UInt32Array)> = match name {
                "src_geo_country_iso_code" => Some((text(&[Some("US"), Some("AU")]), &src_keys)),
                "src_geo_city_name" => Some((text(&[Some("Mountain \"View\""), None]), &src_keys)),
                "src_geo_lat" => Some((
                    Arc::new(Float64Array::from(vec![Some(37.4), None])),
                    &src_keys,
                )),
                "src_geo_lon" => Some((
                    Arc::new(Float64Array::from(vec![Some(-122.1), None])),
                    &src_keys,
                )),
                "src_as_number" => {
                    Some((Arc::new(Int64Array::from(vec![15169, 13335])), &src_keys))
                }
                "src_as_organization" => Some((
                    text(&[Some("Google LLC"), Some("Cloudflare, Inc.")]),
                    &src_keys,
                )),
                "eni_instance_id" => Some((text(&[Some("i-1"), None, Some("i-3")]), &eni_keys)),
                "eni_tags" => Some((
                    text(&[Some(r#"{"team":"a"}"#), Some("{}"), None]),
                    &eni_keys,
                )),
                "eni_vpc_id" => Some((
                    text(&[Some("vpc-1"), Some("vpc-1"), Some("vpc-2")]),
                    &eni_keys,
                )),
                _ => None,
            };
            let kind = enrichment_field(name).unwrap().kind;
            columns.push(match values {
                Some((values, keys)) => {
                    Arc::new(UInt32DictionaryArray::try_new(keys.clone(), values).unwrap())
                }
                None => new_null_array(&kind.data_type(), rows),
            });
            fields.push(Arc::clone(field));
        }
        let records = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        FlowBatch::new(
            records,
            SourceId::new("t"),
            ScalarBuffer::from(vec![1u64, 2, 3, 4, 5, 6]),
        )
    }

    /// The same batch with every dictionary column expanded to plain values.
    fn expanded(batch: &FlowBatch) -> FlowBatch {
        let schema = batch.records.schema();
        let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = schema
            .fields()
            .iter()
            .zip(batch.records.columns())
            .map(|(f, a)| match a.as_dictionary_opt::<UInt32Type>() {
                Some(d) => {
                    let plain =
                        arrow_select::take::take(d.values().as_ref(), d.keys(), None).unwrap();
                    let kind = enrichment_field(f.name()).unwrap().kind;
                    assert_eq!(plain.data_type(), &kind.value_type());
                    (f.as_ref().clone().with_data_type(kind.value_type()), plain)
                }
                None => (f.as_ref().clone(), Arc::clone(a)),
            })
            .unzip();
        let records = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        FlowBatch::new(records, batch.source.clone(), batch.line_numbers.clone())
    }

    #[test]
    fn memoized_objects_write_what_expanded_columns_write() {
        let batch = enriched_batch();
        let plain = expanded(&batch);
        for target in [
            Target::Ecs,
            Target::Cim,
            Target::Raw,
            Target::Ocsf(OcsfVersion::V1_1_0),
        ] {
            let mut a = target.encoder();
            let mut b = target.encoder();
            let memoized = String::from_utf8(a.encode(&batch).unwrap().to_vec()).unwrap();
            let direct = String::from_utf8(b.encode(&plain).unwrap().to_vec()).unwrap();
            assert_eq!(memoized, direct, "{target:?}");
            for line in memoized.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("{target:?}: {e}: {line}"));
            }
        }
        // The ECS program memoizes the source's geo and as objects, and they are right.
        let mut ecs = Target::Ecs.encoder();
        let out = String::from_utf8(ecs.encode(&batch).unwrap().to_vec()).unwrap();
        let docs: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(docs[0]["source"]["geo"]["city_name"], "Mountain \"View\"");
        assert_eq!(docs[2]["source"]["as"]["number"], 15169);
        assert_eq!(
            docs[1]["source"]["as"]["organization"]["name"],
            "Cloudflare, Inc."
        );
        assert!(docs[1]["source"]["geo"].get("city_name").is_none());
        assert!(docs[3]["source"].get("geo").is_none());
        assert_eq!(docs[5]["labels"], serde_json::Value::Null);
        assert_eq!(docs[0]["labels"]["team"], "a");
        let kinds = [EnrichKind::Text, EnrichKind::Int, EnrichKind::Float];
        assert!(kinds
            .iter()
            .all(|k| matches!(k.data_type(), arrow_schema::DataType::Dictionary(..))));
    }

    #[test]
    fn programs_memoize_only_objects_of_one_key() {
        let batch = enriched_batch();
        let template = Template::new(crate::ecs::ECS, None);
        let plan = template.bind(&batch.records, false).unwrap();
        // source.geo, source.as (src keys) and aws.vpcflow.interface (interface keys);
        // objects mixing record columns and enrichment are written field by field.
        let memos = plan
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Memo { .. }))
            .count();
        assert!(memos >= 3, "{memos} memoized objects");
        let plain = expanded(&batch);
        let plan = template.bind(&plain.records, false).unwrap();
        assert!(!plan.ops.iter().any(|op| matches!(op, Op::Memo { .. })));
    }
}
