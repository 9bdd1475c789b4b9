//! `flowlog run` and `flowlog check`: load the configuration, then hand over to
//! `flowlog-pipeline`.

use std::process::ExitCode;

use flowlog_pipeline::Finding;
use flowlog_registry::Config;

use crate::cli::{CheckArgs, ConfigArgs, RunArgs, ValidateArgs};
use crate::output::{outln, Out};

/// Loads the configuration (exit status 2 if it is invalid).
fn start(args: &ConfigArgs) -> Result<Config, ExitCode> {
    Config::load(&args.config).map_err(|e| {
        eprintln!("flowlog: {e}");
        ExitCode::from(2)
    })
}

pub fn run(args: RunArgs) -> ExitCode {
    let config = match start(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let options = flowlog_pipeline::RunOptions {
        once: args.once,
        config_path: Some(args.config.config.clone()),
    };
    match flowlog_pipeline::run(config, options) {
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
            if let Some(e) = summary.failed_transform {
                tracing::error!("transform failed: {e}");
                code = ExitCode::FAILURE;
            }
            if args.once && summary.abandoned {
                tracing::error!("not everything read was delivered before the shutdown deadline");
                code = ExitCode::FAILURE;
            }
            if args.once && summary.dead_letters > 0 {
                tracing::error!(
                    "{} record(s) were dead-lettered (see the dead-letter file)",
                    summary.dead_letters
                );
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

pub fn check(args: CheckArgs) -> ExitCode {
    let config = match start(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let findings = flowlog_pipeline::check(&config, args.sample);
    report(&args.config, &config, &findings)
}

pub fn validate(args: ValidateArgs) -> ExitCode {
    let config = match start(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let findings = match args.no_environment {
        true => Vec::new(),
        false => flowlog_pipeline::validate(&config),
    };
    report(&args.config, &config, &findings)
}

/// The findings, one line each, after the configuration's own line; exit 1 if any failed.
fn report(args: &ConfigArgs, config: &Config, findings: &[Finding]) -> ExitCode {
    let mut out = Out::new();
    outln!(
        out,
        "config {}: ok ({} {}, {} {})",
        args.config.display(),
        config.sources.len(),
        plural(config.sources.len(), "source", "sources"),
        config.sinks.len(),
        plural(config.sinks.len(), "sink", "sinks"),
    );
    for f in findings {
        let status = if f.ok { "ok  " } else { "FAIL" };
        outln!(out, "{status} {}: {}", f.what, f.detail);
    }
    let code = match findings.iter().all(|f| f.ok) {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    };
    out.finish(code)
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}
