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

/// An error and its causes, on one line ("client error (Connect): connection refused"). Some
/// libraries (the AWS SDK, hyper) say only "service error" or "error sending request" at
/// the top; the cause is further down.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
