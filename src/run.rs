//! `flowlog run` and `flowlog check`: load the configuration, then hand over to
//! `flowlog-pipeline`.

use std::process::ExitCode;

use flowlog_pipeline::config::Config;

use crate::cli::{LogFormat, RunArgs};

pub fn run(args: RunArgs) -> ExitCode {
    init_logs(args.log_format);
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flowlog: {e}");
            return ExitCode::from(2);
        }
    };
    match flowlog_pipeline::run(config) {
        Ok(summary) => match summary.failed_sink {
            Some((name, e)) => {
                tracing::error!(sink = %name, "stopped: {e}");
                ExitCode::FAILURE
            }
            None => ExitCode::SUCCESS,
        },
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

pub fn check(args: RunArgs) -> ExitCode {
    init_logs(args.log_format);
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flowlog: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "config {}: ok ({} sources, {} sinks)",
        args.config.display(),
        config.sources.len(),
        config.sinks.len()
    );
    let findings = flowlog_pipeline::check(&config);
    for f in &findings {
        println!(
            "{} {}: {}",
            if f.ok { "ok  " } else { "FAIL" },
            f.what,
            f.detail
        );
    }
    if findings.iter().all(|f| f.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Logs on standard error; `RUST_LOG` filters (default `info`).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
