//! The ECS field list and the Elasticsearch component template, generated from the ECS
//! table itself so they cannot drift from what `--to ecs` writes. `schemas/ecs-fields.csv`
//! and `schemas/elasticsearch/component-template.json` hold the output; a test checks
//! them (`flowlog schema` prints them).

use flowlog_model::{added_field, lookup, EnrichKind, FieldKind, FIELDS};
use serde_json::{json, Map, Value};

use crate::ecs::{ECS, ECS_VERSION};
use crate::template::{Member, Value as Source};

/// One field of the ECS documents: dotted path, Elasticsearch type, and what it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsField {
    pub path: String,
    pub es_type: &'static str,
    pub from: String,
}

/// Types of the values the ECS table computes (derived members), by path.
const DERIVED_TYPES: &[(&str, &str, &str)] = &[
    ("@timestamp", "date", "end, else start"),
    ("network.transport", "keyword", "protocol (IANA keyword)"),
    ("network.type", "keyword", "srcaddr (address family)"),
    (
        "network.community_id",
        "keyword",
        "srcaddr dstaddr protocol srcport dstport",
    ),
    (
        "related.ip",
        "ip",
        "srcaddr dstaddr pkt_srcaddr pkt_dstaddr",
    ),
    (
        "aws.vpcflow.tcp_flags_array",
        "keyword",
        "tcp_flags (flag names)",
    ),
    (
        "cloud.account.id",
        "keyword",
        "account_id, else envelope_owner",
    ),
    (
        "cloud.instance.id",
        "keyword",
        "instance_id, else eni_instance_id",
    ),
    (
        "related.hosts",
        "keyword",
        "src_instance_name dst_instance_name",
    ),
];

/// Where ECS or Elastic's `aws.vpcflow` package gives a field a type other than its
/// value's: addresses may be host names; data streams fix their `data_stream.*` and
/// `event.module`/`event.dataset` per stream; the package maps these codes as keywords
/// (a number is indexed as its text, so dashboards built on the package keep working).
const ECS_TYPES: &[(&str, &str)] = &[
    ("source.address", "keyword"),
    ("destination.address", "keyword"),
    ("data_stream.type", "constant_keyword"),
    ("data_stream.dataset", "constant_keyword"),
    ("data_stream.namespace", "constant_keyword"),
    ("event.module", "constant_keyword"),
    ("event.dataset", "constant_keyword"),
    ("aws.vpcflow.version", "keyword"),
    ("aws.vpcflow.tcp_flags", "keyword"),
    ("aws.vpcflow.traffic_path", "keyword"),
    // Tags: keyword values under the tag's key.
    ("labels", "object"),
];

/// Every field `--to ecs` can write, in table order.
pub fn ecs_fields() -> Vec<EcsField> {
    let mut fields = Vec::new();
    let mut read = vec![false; FIELDS.len()];
    mark_read(ECS, &mut read);
    walk(ECS, "", &read, &mut fields);
    fields
}

fn mark_read(members: &[Member], read: &mut [bool]) {
    for member in members {
        match member {
            Member::Leaf(_, value) => {
                let names: &[&str] = match value {
                    Source::Field(f)
                    | Source::FieldAsText(f)
                    | Source::Rfc3339(f)
                    | Source::EpochMillis(f) => std::slice::from_ref(f),
                    Source::Map { field, .. } => std::slice::from_ref(field),
                    Source::Derived(d) => d.inputs,
                    Source::Literal(_) => &[],
                };
                // Enrichment columns are not flow-log fields: Rest never writes them.
                for id in names.iter().filter_map(|n| lookup(n)) {
                    read[id] = true;
                }
            }
            Member::Members(d) => d
                .inputs
                .iter()
                .filter_map(|n| lookup(n))
                .for_each(|id| read[id] = true),
            Member::Object(_, members) | Member::Group(members) => mark_read(members, read),
            Member::Rest => {}
        }
    }
}

fn derived(path: &str) -> (&'static str, String) {
    let (_, es_type, from) = DERIVED_TYPES
        .iter()
        .find(|(p, _, _)| *p == path)
        .unwrap_or_else(|| panic!("no type for derived ECS field {path}"));
    (es_type, from.to_string())
}

fn walk(members: &[Member], prefix: &str, read: &[bool], out: &mut Vec<EcsField>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    for member in members {
        match member {
            Member::Leaf(key, value) => {
                let path = join(key);
                let (es_type, from) = match value {
                    Source::Field(f) => (field_type(f), f.to_string()),
                    Source::FieldAsText(f) => ("keyword", f.to_string()),
                    Source::Rfc3339(f) | Source::EpochMillis(f) => ("date", f.to_string()),
                    Source::Literal(json) => (literal_type(json), format!("constant {json}")),
                    Source::Map { field, .. } => ("keyword", field.to_string()),
                    Source::Derived(_) => derived(&path),
                };
                let es_type = ECS_TYPES
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map_or(es_type, |(_, t)| t);
                out.push(EcsField {
                    path,
                    es_type,
                    from,
                });
            }
            // The only Members of the ECS table writes @timestamp.
            Member::Members(_) => {
                let (es_type, from) = derived("@timestamp");
                out.push(EcsField {
                    path: "@timestamp".into(),
                    es_type,
                    from,
                });
            }
            // Latitude and longitude are one geo_point in Elasticsearch.
            Member::Object(key @ "location", members) => out.push(EcsField {
                path: join(key),
                es_type: "geo_point",
                from: members
                    .iter()
                    .filter_map(|m| match m {
                        Member::Leaf(_, Source::Field(f)) => Some(*f),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            }),
            Member::Object(key, members) => walk(members, &join(key), read, out),
            Member::Group(members) => walk(members, prefix, read, out),
            Member::Rest => {
                let unread = FIELDS.iter().zip(read).filter(|(_, read)| !**read);
                for (field, _) in unread {
                    let path = join(field.column);
                    let es_type = ECS_TYPES
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map_or_else(|| kind_type(field.kind), |(_, t)| *t);
                    out.push(EcsField {
                        path,
                        es_type,
                        from: field.column.to_string(),
                    });
                }
            }
        }
    }
}

fn field_type(name: &str) -> &'static str {
    match lookup(name) {
        Some(id) => kind_type(FIELDS[id].kind),
        None => match added_field(name)
            .expect("catalogue, enrichment, envelope or reduction field")
            .kind
        {
            EnrichKind::Text | EnrichKind::Json => "keyword",
            EnrichKind::Int => "long",
            EnrichKind::Float => "float",
            EnrichKind::Time => "date",
        },
    }
}

fn kind_type(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "keyword",
        FieldKind::IpAddr => "ip",
        FieldKind::Port | FieldKind::Code | FieldKind::Int32 | FieldKind::Count => "long",
        FieldKind::EpochTime => "date",
    }
}

fn literal_type(json: &str) -> &'static str {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Number(_)) => "long",
        // Strings and arrays of strings.
        _ => "keyword",
    }
}

/// `schemas/ecs-fields.csv`.
pub fn ecs_fields_csv() -> String {
    let mut out = String::from("field,type,from\n");
    for f in ecs_fields() {
        out.push_str(&format!(
            "{},{},\"{}\"\n",
            f.path,
            f.es_type,
            f.from.replace('"', "\"\"")
        ));
    }
    out
}

/// `schemas/elasticsearch/component-template.json`: mappings for every field, for
/// `PUT _component_template/<name>`.
pub fn component_template() -> Value {
    let mut properties = Map::new();
    for f in ecs_fields() {
        let mut node = &mut properties;
        let parts: Vec<&str> = f.path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            let entry = node
                .entry(part.to_string())
                .or_insert_with(|| json!({ "properties": {} }));
            node = entry["properties"]
                .as_object_mut()
                .expect("an object mapping");
        }
        let mapping = match f.es_type {
            // `ignore_above` as Elastic's ECS templates set it for keywords.
            "keyword" => json!({ "type": "keyword", "ignore_above": 1024 }),
            other => json!({ "type": other }),
        };
        node.insert(parts[parts.len() - 1].to_string(), mapping);
    }
    json!({
        "template": {
            "mappings": {
                "dynamic": false,
                "properties": properties,
            }
        },
        "_meta": {
            "description": "Mappings for flowlog --to ecs documents (AWS VPC and Transit Gateway flow logs)",
            "ecs_version": ECS_VERSION,
            "generated_by": "flowlog schema --component-template",
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas_file(name: &str) -> String {
        // Where cargo runs the test (a shared target dir may have built it elsewhere).
        let dir: String = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
        let path = format!("{dir}/../../schemas/{name}");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn schemas_files_match_the_ecs_table() {
        assert_eq!(
            schemas_file("ecs-fields.csv"),
            ecs_fields_csv(),
            "regenerate with: flowlog schema --ecs-fields > schemas/ecs-fields.csv"
        );
        let on_disk: Value =
            serde_json::from_str(&schemas_file("elasticsearch/component-template.json")).unwrap();
        assert_eq!(
            on_disk,
            component_template(),
            "regenerate with: flowlog schema --component-template > schemas/elasticsearch/component-template.json"
        );
    }

    #[test]
    fn ecs_types_where_ecs_defines_them() {
        let fields = ecs_fields();
        let ty = |p: &str| fields.iter().find(|f| f.path == p).map(|f| f.es_type);
        assert_eq!(ty("@timestamp"), Some("date"));
        assert_eq!(ty("source.ip"), Some("ip"));
        assert_eq!(ty("source.address"), Some("keyword"));
        assert_eq!(ty("source.port"), Some("long"));
        assert_eq!(ty("network.iana_number"), Some("keyword"));
        assert_eq!(ty("related.ip"), Some("ip"));
        assert_eq!(ty("event.start"), Some("date"));
        assert_eq!(ty("aws.vpcflow.tgw_id"), Some("keyword"));
        assert_eq!(ty("aws.vpcflow.vpc_id"), Some("keyword"));
        assert_eq!(ty("event.ingested"), Some("date"));
        assert_eq!(ty("aws.cloudwatch.log_group"), Some("keyword"));
        assert_eq!(ty("cloud.account.id"), Some("keyword"));
        // Fields read for ECS names do not come back under aws.vpcflow.
        assert_eq!(ty("aws.vpcflow.srcaddr"), None);
        let paths: std::collections::BTreeSet<_> = fields.iter().map(|f| &f.path).collect();
        assert_eq!(paths.len(), fields.len(), "a path listed twice");
    }
}
