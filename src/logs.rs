//! Logging on standard error for every command: text or JSON, filtered by `--log-level`,
//! else `RUST_LOG`, else the command's own default.

use crate::cli::LogFormat;

/// `quiet_default`: the level when neither `--log-level` nor `RUST_LOG` says (`run` and
/// `check` report at `info`; the commands that print results only warn).
pub fn init(format: LogFormat, level: Option<&str>, quiet_default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(quiet_default)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
