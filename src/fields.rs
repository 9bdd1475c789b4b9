//! `flowlog fields`: the field catalogue, for people and for `schemas/`.

use std::process::ExitCode;

use flowlog_model::{catalogue::catalogue_csv, FIELDS};

use crate::cli::FieldsArgs;

pub fn run(args: FieldsArgs) -> ExitCode {
    if args.csv {
        print!("{}", catalogue_csv());
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<28} {:<5} {:<8} {:<11} meaning",
        "field", "since", "family", "kind"
    );
    for f in FIELDS {
        println!(
            "{:<28} {:<5} {:<8} {:<11} {}",
            f.name,
            f.since,
            f.family.name(),
            f.kind.name(),
            f.meaning
        );
    }
    ExitCode::SUCCESS
}
