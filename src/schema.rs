//! `flowlog schema`: the ECS field list and Elasticsearch component template, for `schemas/`.

use std::process::ExitCode;

use flowlog_normalize::schema::{component_template, ecs_fields_csv};

use crate::cli::SchemaArgs;
use crate::output::{outln, Out};

pub fn run(args: SchemaArgs) -> ExitCode {
    let mut out = Out::new();
    if args.ecs_fields {
        out.text(&ecs_fields_csv());
    } else {
        let template = serde_json::to_string_pretty(&component_template())
            .expect("a JSON value always serializes");
        outln!(out, "{template}");
    }
    out.finish(ExitCode::SUCCESS)
}
