//! `flowlog`: decode, enrich, normalize and deliver AWS VPC and Transit Gateway flow logs.
//!
//! The binary only parses arguments and wires the library crates together; each command
//! lives in its own module.

#[cfg(feature = "source-s3")]
mod backfill;
mod cli;
mod detect;
mod fields;
mod logs;
mod output;
#[cfg(feature = "sql")]
mod query;
#[cfg(any(feature = "sql", feature = "sink-security-lake"))]
mod replaced;
mod run;
mod schema;
mod transform;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let default_level = match cli.command {
        cli::Command::Run(_) | cli::Command::Check(_) | cli::Command::Validate(_) => "info",
        _ => "warn",
    };
    logs::init(cli.log_format, cli.log_level.as_deref(), default_level);
    match cli.command {
        cli::Command::Transform(args) => transform::run(*args),
        cli::Command::Detect(args) => detect::run(*args),
        cli::Command::Run(args) => run::run(args),
        #[cfg(feature = "source-s3")]
        cli::Command::Backfill(args) => backfill::run(*args),
        #[cfg(feature = "sql")]
        cli::Command::Query(args) => query::run(*args),
        cli::Command::Validate(args) => run::validate(args),
        cli::Command::Check(args) => run::check(args),
        cli::Command::Fields(args) => fields::run(args),
        cli::Command::Schema(args) => schema::run(args),
        cli::Command::Completions(args) => {
            let mut out = Vec::new();
            clap_complete::generate(args.shell, &mut cli::Cli::command(), "flowlog", &mut out);
            print_bytes(&out)
        }
        cli::Command::Man => {
            let mut out = Vec::new();
            match clap_mangen::Man::new(cli::Cli::command()).render(&mut out) {
                Ok(()) => print_bytes(&out),
                Err(e) => {
                    eprintln!("flowlog: cannot render the manual page: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Generated text on standard output, ending quietly if the reader has gone.
fn print_bytes(bytes: &[u8]) -> ExitCode {
    let mut out = output::Out::new();
    out.text(&String::from_utf8_lossy(bytes));
    out.finish(ExitCode::SUCCESS)
}
