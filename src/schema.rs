//! `flowlog schema`: the ECS field list and Elasticsearch component template, for `schemas/`.

use std::process::ExitCode;

use flowlog_normalize::schema::{component_template, ecs_fields_csv};

use crate::cli::SchemaArgs;

pub fn run(args: SchemaArgs) -> ExitCode {
    if args.ecs_fields {
        print!("{}", ecs_fields_csv());
    } else {
        let template = serde_json::to_string_pretty(&component_template())
            .expect("a JSON value always serializes");
        println!("{template}");
    }
    ExitCode::SUCCESS
}
