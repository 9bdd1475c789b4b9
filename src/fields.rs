//! `flowlog fields`: the field catalogue, for people and for `schemas/`.

use std::process::ExitCode;

use flowlog_model::{catalogue::catalogue_csv, FIELDS};

use crate::cli::FieldsArgs;
use crate::output::{outln, Out};

pub fn run(args: FieldsArgs) -> ExitCode {
    let mut out = Out::new();
    if args.csv {
        out.text(&catalogue_csv());
        return out.finish(ExitCode::SUCCESS);
    }
    outln!(
        out,
        "{:<28} {:<5} {:<8} {:<11} meaning",
        "field",
        "since",
        "family",
        "kind"
    );
    for f in FIELDS {
        outln!(
            out,
            "{:<28} {:<5} {:<8} {:<11} {}",
            f.name,
            f.since,
            f.family.name(),
            f.kind.name(),
            f.meaning
        );
    }
    out.finish(ExitCode::SUCCESS)
}
