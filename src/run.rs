//! `flowlog run` and `flowlog check`: load the configuration, then hand over to
//! `flowlog-pipeline`.

use std::process::ExitCode;

use flowlog_registry::Config;

use crate::cli::{LogFormat, RunArgs};
use crate::output::{outln, Out};

/// Sets up logging and loads the configuration (exit status 2 if it is invalid).
fn start(args: &RunArgs) -> Result<Config, ExitCode> {
    init_logs(args.log_format);
    Config::load(&args.config).map_err(|e| {
        eprintln!("flowlog: {e}");
        ExitCode::from(2)
    })
}

pub fn run(args: RunArgs) -> ExitCode {
    let config = match start(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match flowlog_pipeline::run(config) {
        Ok(summary) => {
            let mut code = ExitCode::SUCCESS;
            if let Some((name, e)) = summary.failed_sink {
                tracing::error!(sink = %name, "stopped: {e}");
                code = ExitCode::FAILURE;
            }
            if let Some((name, e)) = summary.failed_source {
                tracing::error!(source = %name, "failed: {e}");
                code = ExitCode::FAILURE;
            }
            code
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

pub fn check(args: RunArgs) -> ExitCode {
    let config = match start(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut out = Out::new();
    outln!(
        out,
        "config {}: ok ({} sources, {} sinks)",
        args.config.display(),
        config.sources.len(),
        config.sinks.len()
    );
    let findings = flowlog_pipeline::check(&config);
    for f in &findings {
        let status = if f.ok { "ok  " } else { "FAIL" };
        outln!(out, "{status} {}: {}", f.what, f.detail);
    }
    let code = match findings.iter().all(|f| f.ok) {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    };
    out.finish(code)
}

/// Logs on standard error; `RUST_LOG` filters (default `info`).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
