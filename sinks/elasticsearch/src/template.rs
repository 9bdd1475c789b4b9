//! flowlog's templates for its target: the component template of the ECS mappings
//! (`schemas/elasticsearch/component-template.json`, generated from the ECS table) and an
//! index template that applies it to the target (as a data stream where it is one), and
//! the comparison `check` makes with what the cluster has.

use std::collections::BTreeMap;

use flowlog_normalize::schema::component_template;
use flowlog_sink::SinkError;
use serde_json::{json, Map, Value};

use crate::settings::{Destination, EsConfig, Flavor, Format};
use crate::Cluster;

/// The component template holding flowlog's ECS mappings.
pub(crate) const COMPONENT: &str = "flowlog-aws.vpcflow@ecs";

/// Above the built-in `logs` template (100) and Elastic's integration's (200).
const PRIORITY: u32 = 250;

/// The index template's name and body for the configured target.
fn index_template(config: &EsConfig, flavor: Flavor) -> (String, Value) {
    let (pattern, data_stream) = match config.destination() {
        Destination::DataStream(name) => (name, true),
        Destination::Index(pattern) => (
            pattern
                .replace("%Y", "*")
                .replace("%m", "*")
                .replace("%d", "*"),
            false,
        ),
    };
    let mut composed_of = Vec::new();
    let mut optional = Vec::new();
    if flavor == Flavor::Elasticsearch && data_stream {
        // Elastic's own building blocks for logs data streams (settings, `ecs@mappings`
        // for fields flowlog does not map), where the cluster has them.
        optional = vec!["logs@mappings", "logs@settings", "ecs@mappings"];
        composed_of.extend(optional.iter().map(|s| s.to_string()));
    }
    if config.format == Format::Ecs {
        composed_of.push(COMPONENT.to_string());
    }
    let mut body = json!({
        "index_patterns": [pattern],
        "priority": PRIORITY,
        "composed_of": composed_of,
        "_meta": {"managed_by": "flowlog"},
    });
    if !optional.is_empty() {
        body["ignore_missing_component_templates"] = json!(optional);
    }
    if data_stream {
        body["data_stream"] = json!({});
    }
    let stem = pattern.split('*').next().unwrap_or_default();
    let name = format!("flowlog-{}", stem.trim_end_matches(['-', '.', '_']));
    (name, body)
}

/// Installs the component template (ECS) and the index template.
pub(crate) async fn install(
    cluster: &Cluster,
    config: &EsConfig,
    flavor: Flavor,
) -> Result<(), SinkError> {
    if config.format == Format::Ecs {
        put(
            cluster,
            &format!("/_component_template/{COMPONENT}"),
            &component_template(),
        )
        .await?;
    }
    let (name, body) = index_template(config, flavor);
    put(cluster, &format!("/_index_template/{name}"), &body).await?;
    tracing::info!(sink = %cluster.name, template = %name, "index template installed");
    Ok(())
}

async fn put(cluster: &Cluster, path: &str, body: &Value) -> Result<(), SinkError> {
    let response = cluster.call(http::Method::PUT, path, Some(body)).await?;
    match response.status {
        200..=299 => Ok(()),
        status => Err(SinkError::Rejected {
            sink: cluster.name.clone(),
            status,
            message: format!("PUT {path}: {}", crate::response_text(&response)),
        }),
    }
}

/// What the cluster's copy of flowlog's component template lacks or types differently.
pub(crate) async fn compare(
    cluster: &Cluster,
    config: &EsConfig,
    flavor: Flavor,
) -> Result<String, SinkError> {
    let (name, _) = index_template(config, flavor);
    let index = cluster
        .call(http::Method::GET, &format!("/_index_template/{name}"), None)
        .await?;
    let index_note = match index.status {
        200 => format!("index template `{name}` installed"),
        404 => {
            format!("index template `{name}` not installed (install_template = true installs it)")
        }
        status => format!("index template `{name}`: not checked ({status})"),
    };
    if config.format != Format::Ecs {
        return Ok(index_note);
    }
    let response = cluster
        .call(
            http::Method::GET,
            &format!("/_component_template/{COMPONENT}"),
            None,
        )
        .await?;
    let installed = match response.status {
        200 => {
            let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
            answer["component_templates"][0]["component_template"].clone()
        }
        404 => {
            return Ok(format!(
                "{index_note}; component template `{COMPONENT}` not installed (install_template = true installs it)"
            ))
        }
        status => {
            return Ok(format!(
                "{index_note}; component template `{COMPONENT}`: not checked ({status}: {})",
                crate::response_text(&response)
            ))
        }
    };
    let differences = differences(
        &field_types(&component_template()),
        &field_types(&installed),
    );
    if differences.is_empty() {
        Ok(format!(
            "{index_note}; component template `{COMPONENT}` matches flowlog's ECS mappings"
        ))
    } else {
        Ok(format!(
            "{index_note}; component template `{COMPONENT}` differs from flowlog's: {}",
            differences.join("; ")
        ))
    }
}

/// Every mapped field of a template (`template.mappings.properties`) with its type.
pub fn field_types(template: &Value) -> BTreeMap<String, String> {
    fn walk(properties: &Map<String, Value>, prefix: &str, out: &mut BTreeMap<String, String>) {
        for (name, mapping) in properties {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            if let Some(inner) = mapping["properties"].as_object() {
                walk(inner, &path, out);
            } else {
                let kind = mapping["type"].as_str().unwrap_or("object");
                out.insert(path, kind.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Some(properties) = template["template"]["mappings"]["properties"].as_object() {
        walk(properties, "", &mut out);
    }
    out
}

/// `field: missing` and `field: keyword, not ip` for each field of `ours` that `theirs`
/// lacks or types differently.
pub fn differences(
    ours: &BTreeMap<String, String>,
    theirs: &BTreeMap<String, String>,
) -> Vec<String> {
    ours.iter()
        .filter_map(|(path, kind)| match theirs.get(path) {
            None => Some(format!("{path}: missing")),
            Some(other) if other != kind => Some(format!("{path}: {other}, not {kind}")),
            Some(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_streams_get_an_index_template_with_data_stream_on_both_products() {
        let config = EsConfig::new("http://es:9200");
        let (name, body) = index_template(&config, Flavor::Elasticsearch);
        assert_eq!(name, "flowlog-logs-aws.vpcflow-default");
        assert_eq!(body["index_patterns"], json!(["logs-aws.vpcflow-default"]));
        assert_eq!(body["data_stream"], json!({}));
        assert_eq!(
            body["composed_of"].as_array().unwrap().last().unwrap(),
            COMPONENT
        );
        let (_, body) = index_template(&config, Flavor::OpenSearch);
        assert_eq!(body["composed_of"], json!([COMPONENT]));
        assert!(body.get("ignore_missing_component_templates").is_none());
        let mut config = EsConfig::new("http://es:9200");
        config.index = Some("vpcflow-%Y.%m.%d".into());
        let (name, body) = index_template(&config, Flavor::Elasticsearch);
        assert_eq!(name, "flowlog-vpcflow");
        assert_eq!(body["index_patterns"], json!(["vpcflow-*.*.*"]));
        assert!(body.get("data_stream").is_none());
    }

    #[test]
    fn differences_name_missing_and_retyped_fields() {
        let ours = field_types(&component_template());
        assert_eq!(ours.get("source.ip").map(String::as_str), Some("ip"));
        let mut theirs = ours.clone();
        theirs.remove("source.port");
        theirs.insert("destination.ip".into(), "keyword".into());
        assert_eq!(
            differences(&ours, &theirs),
            ["destination.ip: keyword, not ip", "source.port: missing"]
        );
    }
}
