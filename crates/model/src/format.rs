//! Flow-log formats: which fields a record has, in which order.
//!
//! A format is never guessed from the number of tokens in a line. It comes from an S3 header
//! line, Parquet column names, or a format string the user gives (`${a} ${b}` as in the AWS
//! console, or plain names with hyphens or underscores).

use std::fmt;
use std::sync::Arc;

use crate::catalogue::{lookup, FieldId, FIELDS};
use crate::error::FormatError;

/// One position of a format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FormatField {
    /// A field of the catalogue.
    Known(FieldId),
    /// A field name the catalogue does not know (a future AWS field): kept as text under
    /// its snake_case name.
    Unknown(Arc<str>),
}

impl FormatField {
    /// The snake_case output name.
    pub fn column(&self) -> &str {
        match self {
            FormatField::Known(id) => FIELDS[*id].column,
            FormatField::Unknown(name) => name,
        }
    }
}

/// An ordered list of fields, as a flow log was configured.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowFormat {
    fields: Vec<FormatField>,
}

/// The AWS default format (version 2).
pub const DEFAULT_FORMAT: &str =
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";

impl FlowFormat {
    /// The default (version 2) format.
    pub fn default_v2() -> Self {
        Self::parse(DEFAULT_FORMAT).expect("the default format is valid")
    }

    /// Parses a format string: `${version} ${account-id} ...` or `version account_id ...`.
    pub fn parse(spec: &str) -> Result<Self, FormatError> {
        let mut names = Vec::new();
        for token in spec.split_ascii_whitespace() {
            let name = match token.strip_prefix("${") {
                Some(rest) => rest
                    .strip_suffix('}')
                    .ok_or_else(|| FormatError::BadToken(token.to_string()))?,
                None => token,
            };
            if !is_field_name(name) {
                return Err(FormatError::BadToken(token.to_string()));
            }
            names.push(name);
        }
        Self::from_names(&names)
    }

    /// Builds a format from field names (AWS hyphenated or snake_case); unknown names are kept.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, FormatError> {
        if names.is_empty() {
            return Err(FormatError::Empty);
        }
        let mut fields = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_ref();
            let field = match lookup(name) {
                Some(id) => FormatField::Known(id),
                None => FormatField::Unknown(Arc::from(unknown_column(name))),
            };
            if fields.contains(&field) {
                return Err(FormatError::Duplicate(name.to_string()));
            }
            fields.push(field);
        }
        Ok(Self { fields })
    }

    /// Recognises an S3 header line: every token is a field name and at least one is a field
    /// the catalogue knows (so a future field name is accepted alongside known ones, while a
    /// record never is: records carry numbers, addresses, `-` or upper-case words).
    pub fn from_header_line(line: &str) -> Option<Self> {
        let mut any_known = false;
        let mut names = Vec::new();
        for token in line.split_ascii_whitespace() {
            if !is_field_name(token) {
                return None;
            }
            any_known |= lookup(token).is_some();
            names.push(token);
        }
        if !any_known {
            return None;
        }
        Self::from_names(&names).ok()
    }

    pub fn fields(&self) -> &[FormatField] {
        &self.fields
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// A warning per name the catalogue does not know but is close to one it does (a typo
    /// such as `srcadr`, whose values would otherwise land in a field of that name).
    pub fn likely_typos(&self) -> Vec<String> {
        self.unknown_fields()
            .filter_map(|name| {
                let near = crate::catalogue::nearest(name)?;
                Some(format!(
                    "`{name}` is not a flow-log field (did you mean `{near}`?); its values \
                     are kept under `{name}`"
                ))
            })
            .collect()
    }

    /// Names of the fields the catalogue does not know, in format order.
    pub fn unknown_fields(&self) -> impl Iterator<Item = &Arc<str>> {
        self.fields.iter().filter_map(|f| match f {
            FormatField::Unknown(name) => Some(name),
            FormatField::Known(_) => None,
        })
    }
}

impl fmt::Display for FlowFormat {
    /// Writes the format with AWS's hyphenated names, space-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match field {
                FormatField::Known(id) => f.write_str(FIELDS[*id].name)?,
                FormatField::Unknown(name) => f.write_str(&name.replace('_', "-"))?,
            }
        }
        Ok(())
    }
}

/// A field name as AWS spells them: lower-case ASCII letters and digits in hyphen- or
/// underscore-separated words, starting with a letter.
fn is_field_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
        && !b.ends_with(b"-")
        && !b.ends_with(b"_")
}

/// The column of a field flowlog does not know: its name in snake_case, except that a
/// name enrichment writes (`src_watchlist`, `eni_instance_id`...) gets `unknown_` in front.
/// A header line is input: without this, one naming `src-watchlist` would put a column
/// beside (and, found first by name, in place of) what enrichment says.
fn unknown_column(name: &str) -> String {
    let column = name.replace('-', "_");
    if crate::enrichment_field(&column).is_some() {
        format!("unknown_{column}")
    } else {
        column
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_cannot_name_an_enrichment_column() {
        let format =
            FlowFormat::from_header_line("version srcaddr src-watchlist eni_tags future-field")
                .unwrap();
        let names: Vec<&str> = format.fields().iter().map(|f| f.column()).collect();
        assert_eq!(
            names,
            [
                "version",
                "srcaddr",
                "unknown_src_watchlist",
                "unknown_eni_tags",
                "future_field"
            ]
        );
        // Written back (a checkpoint's resume format) and read again, it stays put.
        let again = FlowFormat::parse(&format.to_string()).unwrap();
        assert_eq!(again, format);
    }

    #[test]
    fn parses_console_and_plain_formats_alike() {
        let a = FlowFormat::parse("${version} ${account-id} ${pkt-srcaddr}").unwrap();
        let b = FlowFormat::parse("version account_id pkt_srcaddr").unwrap();
        let c = FlowFormat::parse("version  account-id\tpkt-srcaddr\n").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.to_string(), "version account-id pkt-srcaddr");
    }

    #[test]
    fn keeps_unknown_fields_and_rejects_duplicates() {
        let f = FlowFormat::parse("version some-future-field srcaddr").unwrap();
        assert_eq!(
            f.unknown_fields().map(|s| &**s).collect::<Vec<_>>(),
            ["some_future_field"]
        );
        assert_eq!(
            FlowFormat::parse("srcaddr srcaddr"),
            Err(FormatError::Duplicate("srcaddr".into()))
        );
        assert_eq!(
            FlowFormat::parse("srcaddr account_id account-id"),
            Err(FormatError::Duplicate("account-id".into()))
        );
        assert!(matches!(
            FlowFormat::parse("${srcaddr"),
            Err(FormatError::BadToken(_))
        ));
        assert_eq!(FlowFormat::parse("  "), Err(FormatError::Empty));
    }

    #[test]
    fn recognises_header_lines_but_not_records() {
        assert!(FlowFormat::from_header_line(DEFAULT_FORMAT).is_some());
        assert!(FlowFormat::from_header_line("flow-direction traffic-path future-thing").is_some());
        assert!(FlowFormat::from_header_line(
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA"
        )
        .is_none());
        assert!(FlowFormat::from_header_line("ingress egress").is_none());
        assert!(FlowFormat::from_header_line("ingress - 10.0.0.1").is_none());
        assert!(FlowFormat::from_header_line("").is_none());
    }
}
