use thiserror::Error;

/// A format string or header line that cannot describe a flow log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    #[error("the format names no fields")]
    Empty,
    #[error("`{0}` is not a field name (expected `${{name}}` or a name such as `pkt-srcaddr`)")]
    BadToken(String),
    #[error("field `{0}` appears twice in the format")]
    Duplicate(String),
}
