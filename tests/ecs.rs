//! `--to ecs` against every document Elastic's `aws.vpcflow` pipeline tests expect.
//!
//! Every field of Elastic's documents must be in ours with the same value, and every field
//! of ours in theirs, except where [`DIFFERENCES`] names a deliberate difference. The test
//! also fails when a listed difference no longer occurs, so the table stays true.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{elastic_fixture_formats, fixture, transform_file};
use serde_json::Value;

/// One field compared: its dotted path, our value and Elastic's.
struct Field<'a> {
    path: &'a str,
    ours: Option<&'a Value>,
    theirs: Option<&'a Value>,
    /// Elastic's whole document, for rules that depend on the record.
    doc: &'a Value,
}

/// A deliberate difference: a name, why, and which fields it explains.
struct Difference {
    name: &'static str,
    why: &'static str,
    applies: fn(&Field<'_>) -> bool,
}

fn protocol(doc: &Value) -> Option<&str> {
    doc.pointer("/network/iana_number").and_then(Value::as_str)
}

fn mixed_families(doc: &Value) -> bool {
    let family = |p: &str| {
        doc.pointer(p)
            .and_then(Value::as_str)
            .map(|a| a.contains(':'))
    };
    matches!(
        (family("/source/ip"), family("/destination/ip")),
        (Some(a), Some(b)) if a != b
    )
}

const DIFFERENCES: &[Difference] = &[
    Difference {
        name: "geo and AS enrichment",
        why: "comes with the enrichment issue; Elastic's values come from its test databases",
        applies: |f| f.path.contains(".geo.") || f.path.contains(".as."),
    },
    Difference {
        name: "no original event",
        why: "Elastic keeps event.original (and tags it) only with preserve_original_event; \
              the raw line is not part of a flowlog ECS document",
        applies: |f| f.ours.is_none() && matches!(f.path, "event.original" | "tags"),
    },
    Difference {
        name: "no dashes",
        why: "Elastic copies AWS's '-' (no value) into cloud.region and others; flowlog leaves \
              the field out",
        applies: |f| f.ours.is_none() && f.theirs.is_some_and(|v| v == "-"),
    },
    Difference {
        name: "no empty objects",
        why: "Elastic writes aws.vpcflow.sublocation: {} when the record has none",
        applies: |f| f.ours.is_none() && f.theirs.is_some_and(|v| v == &serde_json::json!({})),
    },
    Difference {
        name: "numbers as numbers",
        why: "version, tcp_flags and traffic_path are numbers in flow logs; Elastic keeps \
              them as strings (Elasticsearch indexes a number into a keyword field as text)",
        applies: |f| {
            matches!(
                f.path,
                "aws.vpcflow.version" | "aws.vpcflow.tcp_flags" | "aws.vpcflow.traffic_path"
            ) && matches!((f.ours, f.theirs), (Some(Value::Number(n)), Some(Value::String(s))) if n.to_string() == *s)
        },
    },
    Difference {
        name: "no Community ID for ICMP",
        why: "ICMP's Community ID hashes type and code, which flow logs do not record; Elastic \
              hashes type 0 code 0 and names a different flow",
        applies: |f| {
            f.path == "network.community_id"
                && f.ours.is_none()
                && matches!(protocol(f.doc), Some("1" | "58"))
        },
    },
    Difference {
        name: "no Community ID across address families",
        why: "an IPv4 source and IPv6 destination never share a packet, so no sensor computes \
              that hash",
        applies: |f| f.path == "network.community_id" && f.ours.is_none() && mixed_families(f.doc),
    },
    Difference {
        name: "current pipeline's event fields",
        why: "older pipeline versions wrote event.category and event.type as strings, no \
              event.action and no allowed/denied type, and ECS 8.0.0; flowlog writes what the \
              current pipeline writes for every record",
        applies: |f| match f.path {
            "ecs.version" => f.theirs.is_some_and(|v| v != "8.11.0"),
            "event.category" | "event.type" => f.theirs.is_some_and(|t| {
                let ours = f.ours.and_then(Value::as_array);
                match t {
                    Value::String(s) => {
                        ours.is_some_and(|o| o.first() == Some(&Value::String(s.clone())))
                    }
                    Value::Array(a) => ours.is_some_and(|o| o.starts_with(a)),
                    _ => false,
                }
            }),
            "event.action" => f.theirs.is_none() && f.doc.pointer("/aws/vpcflow/action") == f.ours,
            _ => false,
        },
    },
    Difference {
        name: "data stream fields",
        why: "an integration's documents carry data_stream.* and event.dataset/module (set \
              outside the pipeline Elastic's tests run)",
        applies: |f| {
            f.theirs.is_none()
                && (f.path.starts_with("data_stream.")
                    || matches!(f.path, "event.dataset" | "event.module"))
        },
    },
    Difference {
        name: "related.ip as a set, with packet addresses",
        why: "related.ip lists each address once (Elastic repeats an address that is both \
              source and destination) and also pkt-srcaddr/pkt-dstaddr when they differ, so a \
              search for a NATed address finds its flows",
        applies: |f| {
            f.path == "related.ip"
                && match (
                    f.ours.and_then(Value::as_array),
                    f.theirs.and_then(Value::as_array),
                ) {
                    (Some(o), Some(t)) => {
                        let distinct: BTreeSet<_> = o.iter().filter_map(Value::as_str).collect();
                        distinct.len() == o.len()
                            && t.iter()
                                .filter_map(Value::as_str)
                                .all(|ip| distinct.contains(ip))
                    }
                    _ => false,
                }
        },
    },
];

/// Leaves of a document by dotted path (arrays are leaves).
fn flatten(v: &Value) -> BTreeMap<String, &Value> {
    fn walk<'a>(prefix: &str, v: &'a Value, out: &mut BTreeMap<String, &'a Value>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), v);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

fn ecs_documents(file: &str, format: &str) -> Vec<Value> {
    let run = transform_file(
        &fixture(&format!("elastic-integrations/{file}")),
        &["--to", "ecs", "--format", format],
    );
    assert!(run.success, "{}", run.stderr);
    assert!(run.dead_letters.is_empty(), "{:?}", run.dead_letters);
    run.records
}

#[test]
fn ecs_matches_elastic_except_where_listed() {
    let mut used = BTreeSet::new();
    let mut compared = 0;
    for (file, format) in elastic_fixture_formats() {
        let expected = &common::elastic_expected(file);
        let ours = ecs_documents(file, &format);
        assert_eq!(ours.len(), expected.len(), "{file}: document count");
        for (i, (ours, theirs)) in ours.iter().zip(expected).enumerate() {
            let (o, t) = (flatten(ours), flatten(theirs));
            let paths: BTreeSet<&String> = o.keys().chain(t.keys()).collect();
            for path in paths {
                let field = Field {
                    path,
                    ours: o.get(path).copied(),
                    theirs: t.get(path).copied(),
                    doc: theirs,
                };
                compared += 1;
                if field.ours == field.theirs {
                    continue;
                }
                match DIFFERENCES.iter().find(|d| (d.applies)(&field)) {
                    Some(d) => {
                        used.insert(d.name);
                    }
                    None => panic!(
                        "{file}[{i}] {path}: ours {:?}, Elastic's {:?} (not a listed difference)",
                        field.ours, field.theirs
                    ),
                }
            }
        }
    }
    assert!(compared > 1000, "compared only {compared} fields");
    let unused: Vec<_> = DIFFERENCES
        .iter()
        .filter(|d| !used.contains(d.name))
        .map(|d| d.name)
        .collect();
    assert!(
        unused.is_empty(),
        "listed differences that no longer occur: {unused:?}"
    );
    for d in DIFFERENCES {
        assert!(!d.why.is_empty());
    }
}

#[test]
fn ecs_values_have_ecs_types() {
    // Every document of every fixture: numbers where ECS says long, strings where keyword,
    // arrays where ECS expects several values, RFC 3339 times; and every field is in the
    // field list the index template is made from (the template is not dynamic).
    let listed =
        std::fs::read_to_string(common::manifest_dir().join("schemas/ecs-fields.csv")).unwrap();
    let listed: BTreeSet<&str> = listed
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    for (file, format) in elastic_fixture_formats() {
        for doc in ecs_documents(file, &format) {
            for (path, value) in flatten(&doc) {
                assert!(
                    listed.contains(path.as_str()),
                    "{file}: {path} is not in schemas/ecs-fields.csv"
                );
                let ok = match path.as_str() {
                    "source.port" | "destination.port" | "source.bytes" | "source.packets"
                    | "network.bytes" | "network.packets" => value.is_u64(),
                    "network.iana_number" => {
                        value.as_str().is_some_and(|s| s.parse::<u8>().is_ok())
                    }
                    "@timestamp" | "event.start" | "event.end" => value.as_str().is_some_and(|s| {
                        s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T'
                    }),
                    "event.category"
                    | "event.type"
                    | "related.ip"
                    | "aws.vpcflow.tcp_flags_array" => value.is_array(),
                    _ => !value.is_null() && value != "-",
                };
                assert!(ok, "{file}: {path} = {value}");
            }
        }
    }
}

/// Times far outside flow logs' range are valid input: they are written exactly (ISO 8601
/// expanded years) in every time field, however wide, and the rows fit their bound.
#[test]
fn times_past_year_9999_and_before_year_0_are_written_exactly() {
    let lines = [
        // Year 10000 and the largest millisecond time, then the smallest.
        "2 123456789010 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 1 253402300800000 9223372036854775807 ACCEPT OK\n",
        "2 123456789010 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 1 -9223372036854775808 -62135596800001 ACCEPT OK\n",
    ]
    .concat();
    for to in ["ecs", "ocsf", "cim"] {
        let run = common::transform(&["--to", to], lines.as_bytes());
        assert!(run.success, "{to}: {}", run.stderr);
        assert_eq!(
            run.records.len() + run.dead_letters.len(),
            2,
            "{to}: {}",
            run.stderr
        );
        if to == "ecs" && run.dead_letters.is_empty() {
            assert_eq!(
                run.records[0]["event"]["start"],
                "+10000-01-01T00:00:00.000Z"
            );
            assert_eq!(
                run.records[0]["@timestamp"],
                "+292278994-08-17T07:12:55.807Z"
            );
        }
    }
}

/// Fields of Elastic's `aws.vpcflow` package that flowlog's template leaves out on
/// purpose: what Elastic Agent adds about itself, the host it runs on and the S3 object
/// it read (flowlog writes none of them; `ecs@mappings` or the package maps them).
const NOT_OURS: &[&str] = &[
    "aws.s3.",
    "cloud.machine.",
    "cloud.project.",
    "cloud.image.",
    "container.",
    "host.",
];

/// The field types of Elastic's package (`fields.yml` and friends: `- name:` entries
/// nested by indentation, with their `type:`), groups left out.
fn package_field_types() -> std::collections::BTreeMap<String, String> {
    let dir = common::fixture("elastic-integrations/vpcflow-package");
    let mut types = std::collections::BTreeMap::new();
    for file in [
        "fields.yml",
        "base-fields.yml",
        "package-fields.yml",
        "agent.yml",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut stack: Vec<(usize, String)> = Vec::new();
        let mut current = None;
        for line in text.lines() {
            let indent = line.len() - line.trim_start().len();
            let item = line.trim_start();
            if let Some(name) = item.strip_prefix("- name: ") {
                while stack.last().is_some_and(|(i, _)| *i >= indent) {
                    stack.pop();
                }
                stack.push((indent, name.trim().trim_matches('\'').to_string()));
                current = Some(
                    stack
                        .iter()
                        .map(|(_, n)| n.as_str())
                        .collect::<Vec<_>>()
                        .join("."),
                );
            } else if let (Some(kind), Some(path)) = (item.strip_prefix("type: "), &current) {
                if kind != "group" {
                    types.insert(path.clone(), kind.trim().to_string());
                }
            }
        }
    }
    types
}

#[test]
fn the_component_template_types_fields_as_elastics_package_does() {
    use flowlog_sink_elasticsearch::template::{differences, field_types};
    let ours = field_types(&flowlog_normalize::schema::component_template());
    let theirs = package_field_types();
    assert!(
        theirs.len() > 40,
        "the package's fields were read: {theirs:?}"
    );
    // Every field of the package flowlog writes has the package's type.
    let ours_only: std::collections::BTreeMap<_, _> = ours
        .iter()
        .filter(|(path, _)| theirs.contains_key(*path))
        .map(|(p, t)| (p.clone(), t.clone()))
        .collect();
    assert_eq!(
        differences(&theirs_for(&ours_only, &theirs), &ours_only),
        Vec::<String>::new()
    );
    // What the package has and flowlog's template lacks is only the agent's own fields.
    let missing: Vec<_> = theirs
        .keys()
        .filter(|path| !ours.contains_key(*path))
        .filter(|path| !NOT_OURS.iter().any(|prefix| path.starts_with(prefix)))
        .collect();
    assert!(missing.is_empty(), "{missing:?}");
    // The types the issue names.
    for (path, kind) in [
        ("aws.vpcflow.pkt_srcaddr", "ip"),
        ("aws.vpcflow.pkt_dstaddr", "ip"),
        ("aws.vpcflow.version", "keyword"),
        ("source.ip", "ip"),
        ("destination.ip", "ip"),
        ("source.geo.location", "geo_point"),
        ("destination.geo.location", "geo_point"),
        ("source.port", "long"),
        ("destination.port", "long"),
        ("network.bytes", "long"),
        ("network.packets", "long"),
        ("source.as.number", "long"),
    ] {
        assert_eq!(ours.get(path).map(String::as_str), Some(kind), "{path}");
    }
}

/// The package's types of the fields in `ours`.
fn theirs_for(
    ours: &std::collections::BTreeMap<String, String>,
    theirs: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    ours.keys()
        .map(|p| (p.clone(), theirs[p].clone()))
        .collect()
}
