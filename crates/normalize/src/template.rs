//! Documents described as data: a target (ECS, OCSF, CIM) is a table of [`Member`]s, and one
//! engine writes any table from Arrow columns.
//!
//! A table is compiled once ([`Template::new`]: field names resolved, member names
//! pre-rendered), bound to each batch (columns looked up, members whose fields the batch
//! lacks dropped, the row bound computed), then written row by row. A member whose value
//! is absent in a row is left out, and so is an object none of whose members is present:
//! documents never carry `null`, `"-"` or `{}`.

use arrow_array::RecordBatch;
use flowlog_model::{lookup, FieldId, FlowBatch};

use crate::columns::{short_view, Column, Values};
use crate::json::{MemberKey, Number, Object, Out, OutBuffer, Rows, NUMBER_BOUND};
use crate::time::{write_rfc3339, RFC3339_BOUND};
use crate::{EncodeError, Encoder};

/// One member of a document.
pub(crate) enum Member {
    /// `"key": value`, left out when the value is absent.
    Leaf(&'static str, Value),
    /// `"key": {members}`, left out when none of its members is present.
    Object(&'static str, &'static [Member]),
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
    /// Fields some member reads, which [`Member::Rest`] leaves out.
    read: Vec<bool>,
}

fn field_id(name: &str) -> FieldId {
    lookup(name).unwrap_or_else(|| panic!("template names unknown field `{name}`"))
}

impl Template {
    /// Compiles a table. Panics on a field name the catalogue lacks (a bug in the table,
    /// caught by every test that uses it).
    pub fn new(members: &[Member]) -> Self {
        let mut read = vec![false; flowlog_model::FIELDS.len()];
        let nodes = compile(members, &mut read);
        Self { nodes, read }
    }

    fn bind<'t, 'a>(
        &'t self,
        records: &'a RecordBatch,
        plain: bool,
    ) -> Result<Plan<'t, 'a>, EncodeError> {
        let schema = records.schema();
        let mut columns = Vec::with_capacity(records.num_columns());
        for (field, array) in schema.fields().iter().zip(records.columns()) {
            columns.push(if array.null_count() < array.len() {
                Some(Column::new(field.name(), array.as_ref())?)
            } else {
                None
            });
        }
        let ctx = BindContext {
            columns: &columns,
            schema_names: schema.fields().iter().map(|f| f.name().as_str()).collect(),
            read: &self.read,
            plain,
        };
        let nodes = bind_nodes(&self.nodes, &ctx);
        let row_bound = nodes.iter().map(Bound::bound).sum::<usize>() + Object::BOUND + 1;
        Ok(Plan {
            nodes,
            num_rows: records.num_rows(),
            row_bound,
        })
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
    let column = |id: FieldId| ctx.columns.get(id).copied().flatten();
    // A derivation takes part when the batch has any of its inputs.
    let bind_inputs = |ids: &[FieldId]| {
        let columns: Vec<_> = ids.iter().map(|&id| column(id)).collect();
        columns.iter().any(Option::is_some).then_some(Inputs {
            columns,
            plain: ctx.plain,
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
                    .filter(|(id, c)| c.is_some() && !ctx.read.get(*id).copied().unwrap_or(false))
                    .map(|(id, c)| (MemberKey::new(ctx.schema_names[id]), c.unwrap()))
                    .collect();
                (!rest.is_empty()).then_some(Bound::Rest(rest))
            }
        };
        bound.extend(b);
    }
    bound
}

impl Bound<'_, '_> {
    fn bound(&self) -> usize {
        match self {
            Bound::Field {
                key,
                column,
                format,
            } => {
                key.len()
                    + match format {
                        Format::AsIs => column.value_bound(),
                        Format::AsText => NUMBER_BOUND + 2,
                        Format::Rfc3339 => RFC3339_BOUND.max(column.value_bound()),
                        Format::EpochMillis => NUMBER_BOUND,
                    }
            }
            Bound::Literal(member) => member.len(),
            Bound::Map { bound, .. } => *bound,
            Bound::Derived {
                key,
                derivation,
                inputs,
            } => key.len() + (derivation.bound)(inputs),
            Bound::Object { key, members } => {
                key.len() + Object::BOUND + members.iter().map(Bound::bound).sum::<usize>()
            }
            Bound::Members { derivation, inputs } => (derivation.bound)(inputs),
            Bound::Rest(members) => members.iter().map(|(k, c)| k.len() + c.value_bound()).sum(),
        }
    }

    #[inline]
    fn write<const PLAIN: bool>(&self, out: &mut Out<'_>, row: usize) {
        match self {
            Bound::Field {
                key,
                column,
                format,
            } => {
                if column.is_null(row) {
                    return;
                }
                key.write(out);
                write_field::<PLAIN>(out, column, *format, row);
            }
            Bound::Literal(member) => member.write(out),
            Bound::Map {
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
            Bound::Derived {
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
            Bound::Object { key, members } => {
                let before = out.pos();
                key.write(out);
                let object = Object::begin(out);
                for member in members {
                    member.write::<PLAIN>(out, row);
                }
                if out.pos() == before + key.len() {
                    out.truncate(before);
                } else {
                    object.end(out);
                }
            }
            Bound::Members { derivation, inputs } => {
                let before = out.pos();
                if !(derivation.write)(inputs, row, out) {
                    out.truncate(before);
                }
            }
            Bound::Rest(members) => {
                for (key, column) in members {
                    if !column.is_null(row) {
                        key.write(out);
                        column.write_value::<PLAIN>(out, row);
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn write_field<const PLAIN: bool>(
    out: &mut Out<'_>,
    column: &Column<'_>,
    format: Format,
    row: usize,
) {
    match (format, column.values) {
        (Format::AsIs, _) => column.write_value::<PLAIN>(out, row),
        (Format::AsText, Values::Text(a)) => out.view_str::<PLAIN>(a, row),
        (Format::AsText, _) => {
            out.byte(b'"');
            Number::integer(column.int(row).expect("not null")).write(out);
            out.byte(b'"');
        }
        (Format::Rfc3339, Values::Time(a)) => write_rfc3339(out, a.value(row)),
        (Format::EpochMillis, Values::Time(a)) => Number::integer(a.value(row)).write(out),
        // A template asking for a time from a column that holds none (a table bug) still
        // writes the value rather than something made up.
        (Format::Rfc3339 | Format::EpochMillis, _) => column.write_value::<PLAIN>(out, row),
    }
}

/// A template bound to one batch.
struct Plan<'t, 'a> {
    nodes: Vec<Bound<'t, 'a>>,
    num_rows: usize,
    row_bound: usize,
}

impl Plan<'_, '_> {
    fn write<const PLAIN: bool>(&self, rows: &mut Rows<'_>) {
        for row in 0..self.num_rows {
            rows.row(self.row_bound, |out| {
                let object = Object::begin(out);
                for node in &self.nodes {
                    node.write::<PLAIN>(out, row);
                }
                object.end(out);
                out.byte(b'\n');
            });
        }
    }
}

/// An [`Encoder`] that writes one table.
pub(crate) struct TemplateEncoder {
    template: Template,
    buffer: OutBuffer,
}

impl TemplateEncoder {
    pub fn new(members: &[Member]) -> Self {
        Self {
            template: Template::new(members),
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
