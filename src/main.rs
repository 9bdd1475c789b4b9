//! `flowlog`: decode, enrich, normalize and deliver AWS VPC and Transit Gateway flow logs.
//!
//! The binary only parses arguments and wires the library crates together; each command
//! lives in its own module.

mod cli;
mod fields;
mod output;
mod run;
mod schema;
mod transform;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Transform(args) => transform::run(*args),
        cli::Command::Run(args) => run::run(args),
        cli::Command::Check(args) => run::check(args),
        cli::Command::Fields(args) => fields::run(args),
        cli::Command::Schema(args) => schema::run(args),
    }
}
