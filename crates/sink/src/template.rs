//! Values that take a record's fields: `aws/vpc/{{ account-id }}/{{ region }}`, for what a
//! sink sends beside its events (Sumo Logic's metadata headers, Loki's stream labels).
//!
//! `{{ name }}` (Vector's template syntax; `${...}` in a configuration is an environment
//! variable) names a field by AWS's name or its column name. A field the record lacks
//! renders empty. Characters a header cannot carry (control characters) and those that
//! would break a list of `key=value` apart (`,` and `=`) render as `_`.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use flowlog_model::catalogue::{self, FieldKind, FIELDS};

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// A column of the canonical schema.
    Field(&'static str),
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` without a closing `}}}}` in `{text}`"))?;
            let name = after[..close].trim();
            let id = catalogue::lookup(name).ok_or_else(|| {
                let hint = catalogue::nearest(name)
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                format!("`{name}` is not a flow-log field{hint}")
            })?;
            let field = &FIELDS[id];
            if field.kind == FieldKind::EpochTime {
                return Err(format!(
                    "`{name}` is a time: a header from it would split requests by the second"
                ));
            }
            parts.push(Part::Field(field.column));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if let Some(bad) = text.chars().find(|c| c.is_control()) {
            return Err(format!("holds the control character {bad:?}"));
        }
        Ok(Self { parts })
    }

    /// The kinds of field the template names.
    pub fn kinds(&self) -> impl Iterator<Item = (&'static str, FieldKind)> + '_ {
        self.columns().map(|c| {
            let field = &FIELDS[catalogue::lookup(c).expect("parsed from the catalogue")];
            (field.name, field.kind)
        })
    }

    /// Whether the value depends on the record.
    pub fn has_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// The columns the template reads.
    pub fn columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(c) => Some(*c),
            Part::Text(_) => None,
        })
    }

    /// Appends the value for `row` of `columns` (the batch's, found by [`Columns::of`]).
    pub fn render(&self, columns: &Columns, row: usize, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(column) => columns.write(column, row, out),
            }
        }
    }
}

/// The columns of one batch that templates read.
pub struct Columns {
    found: Vec<(&'static str, Option<ArrayRef>)>,
}

impl Columns {
    /// No columns: for templates without fields.
    pub fn none() -> Self {
        Self { found: Vec::new() }
    }

    pub fn of<'a>(records: &RecordBatch, names: impl Iterator<Item = &'a str>) -> Self {
        let mut found: Vec<(&'static str, Option<ArrayRef>)> = Vec::new();
        for name in names {
            let Some(id) = catalogue::lookup(name) else {
                continue;
            };
            let column = FIELDS[id].column;
            if !found.iter().any(|(n, _)| *n == column) {
                found.push((column, records.column_by_name(column).cloned()));
            }
        }
        Self { found }
    }

    fn write(&self, name: &str, row: usize, out: &mut String) {
        let Some((_, Some(column))) = self.found.iter().find(|(n, _)| *n == name) else {
            return;
        };
        if column.is_null(row) {
            return;
        }
        let mut digits = itoa::Buffer::new();
        let text = if let Some(strings) = column.as_string_view_opt() {
            strings.value(row)
        } else if let Some(ints) = column.as_primitive_opt::<Int32Type>() {
            digits.format(ints.value(row))
        } else if let Some(ints) = column.as_primitive_opt::<Int64Type>() {
            digits.format(ints.value(row))
        } else {
            return;
        };
        out.extend(text.chars().map(|c| {
            if c.is_control() || c == ',' || c == '=' {
                '_'
            } else {
                c
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_by_either_name_and_refuses_unknown_ones_and_times() {
        let t = Template::parse("aws/{{ account-id }}/{{region}}-x").unwrap();
        assert_eq!(t.columns().collect::<Vec<_>>(), ["account_id", "region"]);
        assert!(t.has_fields());
        assert!(!Template::parse("aws/vpc").unwrap().has_fields());
        let e = Template::parse("{{ regoin }}").unwrap_err();
        assert!(e.contains("`region`"), "{e}");
        assert!(Template::parse("{{ start }}").unwrap_err().contains("time"));
        assert!(Template::parse("{{ region")
            .unwrap_err()
            .contains("closing"));
        assert!(Template::parse("a\nb").is_err());
    }
}
