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
/// the top; the cause is further down. A cause that says nothing the line does not say
/// already is left out (the AWS SDK's service errors repeat their code and message).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod chain_tests {
    use super::error_chain;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn causes_are_joined_and_repeats_left_out() {
        let repeated = Layer("Code: message", None);
        let e = Layer(
            "service error",
            Some(Box::new(Layer("Code: message", Some(Box::new(repeated))))),
        );
        assert_eq!(error_chain(&e), "service error: Code: message");
        let e = Layer("client error", Some(Box::new(Layer("refused", None))));
        assert_eq!(error_chain(&e), "client error: refused");
    }
}
