//! An OCSF Detection Finding (what `[detect]` makes) as an AWS Security Finding Format
//! finding: what `BatchImportFindings` takes.
//!
//! - `Id` is the finding's own deterministic id (`finding_info.uid`), so a finding sent
//!   again (a restart, a replay) updates the one Security Hub has instead of adding one.
//! - `GeneratorId` is the rule (`flowlog/vertical_scan`); `Types` the ASFF type the rule's
//!   pattern is (a scan is `TTPs/Discovery`), with the ATT&CK technique where one fits.
//! - `CreatedAt` is when the rule first saw the behaviour, `UpdatedAt` when it decided;
//!   `FirstObservedAt`/`LastObservedAt` the flows' own times.
//! - `Severity.Label` from OCSF's `severity_id`; `Title`, `Description` (cut to ASFF's 1,024
//!   characters) from the finding.
//! - `Resources`: the network interface and instance the finding is about, or, for a
//!   finding about an address alone, the address as an `Other` resource (ASFF needs one).
//! - `Network`: direction, addresses, port and protocol of the evidence.
//! - `ProductFields`: the rule's figures (`flowlog/distinct_ports`...).

use aws_sdk_securityhub::types::{
    AwsSecurityFinding, Network, NetworkDirection, Partition, Resource, Severity, SeverityLabel,
};
use serde_json::Value;

/// Where the findings go: the account's default product (a custom integration).
#[derive(Debug, Clone)]
pub struct Product {
    pub arn: String,
    pub account_id: String,
    pub region: String,
}

impl Product {
    /// The default product of `account_id` in `region`.
    pub fn default_for(account_id: &str, region: &str) -> Self {
        let partition = partition(region);
        Self {
            arn: format!(
                "arn:{}:securityhub:{region}:{account_id}:product/{account_id}/default",
                partition.as_str()
            ),
            account_id: account_id.to_string(),
            region: region.to_string(),
        }
    }
}

/// The AWS partition `region` is in (China's and GovCloud's have ARNs of their own).
fn partition(region: &str) -> Partition {
    if region.starts_with("cn-") {
        Partition::AwsCn
    } else if region.starts_with("us-gov-") {
        Partition::AwsUsGov
    } else {
        Partition::Aws
    }
}

/// ASFF types by rule (namespace/category/classifier).
fn types(rule: &str) -> &'static str {
    match rule {
        "vertical_scan" | "horizontal_scan" => "TTPs/Discovery/Network Service Discovery",
        "rejected_spike" => "Unusual Behaviors/Network Flow/Rejected traffic",
        "admin_ports" => {
            "Software and Configuration Checks/AWS Security Best Practices/Network Reachability"
        }
        "outbound_dns" => "Unusual Behaviors/Network Flow/DNS to an unapproved resolver",
        "watchlist" => "Unusual Behaviors/Network Flow/Watch-listed address",
        "outbound_volume" => "Effects/Data Exfiltration",
        _ => "Unusual Behaviors/Network Flow",
    }
}

fn severity(id: u64) -> SeverityLabel {
    match id {
        0 | 1 => SeverityLabel::Informational,
        2 => SeverityLabel::Low,
        3 => SeverityLabel::Medium,
        4 => SeverityLabel::High,
        _ => SeverityLabel::Critical,
    }
}

/// The finding `ocsf` as ASFF, or why it cannot be one.
pub fn finding(ocsf: &Value, product: &Product) -> Result<AwsSecurityFinding, String> {
    if ocsf["class_uid"] != 2004 {
        return Err("not an OCSF Detection Finding (class_uid 2004)".into());
    }
    let info = &ocsf["finding_info"];
    let id = info["uid"].as_str().ok_or("finding_info.uid is missing")?;
    let rule = info["analytic"]["uid"].as_str().unwrap_or("flowlog");
    let text = |v: &Value| v.as_str().map(str::to_string);
    let first = text(&info["first_seen_time_dt"]);
    let last = text(&info["last_seen_time_dt"]);
    let decided = text(&ocsf["time_dt"]).ok_or("time_dt is missing")?;
    let mut types = vec![types(rule).to_string()];
    if let Some(technique) = info["attacks"][0]["technique"]["uid"].as_str() {
        let name = info["attacks"][0]["technique"]["name"]
            .as_str()
            .unwrap_or_default();
        types.push(
            format!("TTPs/MITRE ATT&CK/{technique} {name}")
                .trim()
                .to_string(),
        );
    }
    let description: String = text(&ocsf["message"])
        .unwrap_or_else(|| rule.to_string())
        .chars()
        .take(1024)
        .collect();
    let evidence = &ocsf["evidences"][0];
    let mut builder = AwsSecurityFinding::builder()
        .schema_version("2018-10-08")
        .id(id)
        .product_arn(&product.arn)
        .generator_id(format!("flowlog/{rule}"))
        .aws_account_id(&product.account_id)
        .set_types(Some(types))
        .created_at(first.clone().unwrap_or_else(|| decided.clone()))
        .updated_at(&decided)
        .set_first_observed_at(first)
        .set_last_observed_at(last)
        .severity(
            Severity::builder()
                .label(severity(ocsf["severity_id"].as_u64().unwrap_or(3)))
                .original(ocsf["severity"].as_str().unwrap_or("Medium"))
                .build(),
        )
        .title(text(&info["title"]).unwrap_or_else(|| rule.to_string()))
        .description(description)
        .company_name("flowlog")
        .product_name("flowlog")
        .source_url("https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs.html");
    for resource in resources(ocsf, evidence, &product.region) {
        builder = builder.resources(resource);
    }
    if let Some(network) = network(evidence) {
        builder = builder.network(network);
    }
    if let Some(data) = evidence["data"].as_object() {
        for (key, value) in data {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            builder = builder.product_fields(format!("flowlog/{key}"), value);
        }
    }
    if let Some(account) = ocsf["cloud"]["account"]["uid"].as_str() {
        builder = builder.product_fields("flowlog/flow_log_account_id", account);
    }
    Ok(builder.build())
}

/// The interface and instance, else the address the finding is about.
fn resources(ocsf: &Value, evidence: &Value, region: &str) -> Vec<Resource> {
    let region = ocsf["cloud"]["region"].as_str().unwrap_or(region);
    let mut out: Vec<Resource> = ocsf["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(
                Resource::builder()
                    .r#type(r["type"].as_str()?)
                    .id(r["uid"].as_str()?)
                    .region(region)
                    .partition(partition(region))
                    .build(),
            )
        })
        .collect();
    if out.is_empty() {
        let ip = evidence["src_endpoint"]["ip"]
            .as_str()
            .or(evidence["dst_endpoint"]["ip"].as_str())
            .unwrap_or("unknown");
        out.push(
            Resource::builder()
                .r#type("Other")
                .id(format!("ip-address/{ip}"))
                .region(region)
                .build(),
        );
    }
    out
}

fn network(evidence: &Value) -> Option<Network> {
    let ip = |side: &str| evidence[side]["ip"].as_str().map(str::to_string);
    let (src, dst) = (ip("src_endpoint"), ip("dst_endpoint"));
    if src.is_none() && dst.is_none() {
        return None;
    }
    let v4 = |ip: &Option<String>| ip.clone().filter(|i| !i.contains(':'));
    let v6 = |ip: &Option<String>| ip.clone().filter(|i| i.contains(':'));
    let connection = &evidence["connection_info"];
    let direction = match connection["direction_id"].as_u64() {
        Some(1) => Some(NetworkDirection::In),
        Some(2) => Some(NetworkDirection::Out),
        _ => None,
    };
    Some(
        Network::builder()
            .set_direction(direction)
            .set_source_ipv4(v4(&src))
            .set_source_ipv6(v6(&src))
            .set_destination_ipv4(v4(&dst))
            .set_destination_ipv6(v6(&dst))
            .set_destination_port(evidence["dst_endpoint"]["port"].as_i64().map(|p| p as i32))
            .set_protocol(connection["protocol_name"].as_str().map(str::to_string))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan() -> Value {
        serde_json::json!({
            "class_uid": 2004, "severity_id": 3, "severity": "Medium",
            "time": 1763800900000u64, "time_dt": "2025-11-22T08:41:40.000Z",
            "message": "10.0.7.77 sent traffic to 594 distinct ports of 10.0.3.9",
            "finding_info": {
                "uid": "ee517813ab97b6e539f00e63e56fd310", "title": "Vertical port scan",
                "analytic": {"uid": "vertical_scan"},
                "first_seen_time_dt": "2025-11-22T08:26:50.000Z",
                "last_seen_time_dt": "2025-11-22T08:28:30.000Z",
                "attacks": [{"technique": {"uid": "T1046", "name": "Network Service Discovery"}}]
            },
            "cloud": {"provider": "AWS", "account": {"uid": "123456789012"}, "region": "us-east-1"},
            "resources": [{"uid": "eni-0a77", "type": "AwsEc2NetworkInterface"}],
            "evidences": [{
                "src_endpoint": {"ip": "10.0.7.77", "interface_uid": "eni-0a77"},
                "dst_endpoint": {"ip": "10.0.3.9"},
                "connection_info": {"direction_id": 2, "protocol_name": "tcp"},
                "data": {"distinct_ports": 594, "records": 600}
            }]
        })
    }

    #[test]
    fn a_scan_is_a_discovery_ttp_on_its_interface() {
        let product = Product::default_for("111122223333", "us-east-1");
        let f = finding(&scan(), &product).unwrap();
        assert_eq!(f.id(), Some("ee517813ab97b6e539f00e63e56fd310"));
        assert_eq!(
            f.product_arn(),
            Some("arn:aws:securityhub:us-east-1:111122223333:product/111122223333/default")
        );
        assert_eq!(f.generator_id(), Some("flowlog/vertical_scan"));
        assert_eq!(f.aws_account_id(), Some("111122223333"));
        assert_eq!(
            f.types(),
            [
                "TTPs/Discovery/Network Service Discovery",
                "TTPs/MITRE ATT&CK/T1046 Network Service Discovery"
            ]
        );
        assert_eq!(f.created_at(), Some("2025-11-22T08:26:50.000Z"));
        assert_eq!(f.updated_at(), Some("2025-11-22T08:41:40.000Z"));
        assert_eq!(f.severity().unwrap().label(), Some(&SeverityLabel::Medium));
        let resource = &f.resources()[0];
        assert_eq!(
            (resource.r#type(), resource.id()),
            (Some("AwsEc2NetworkInterface"), Some("eni-0a77"))
        );
        let network = f.network().unwrap();
        assert_eq!(network.direction(), Some(&NetworkDirection::Out));
        assert_eq!(network.destination_ipv4(), Some("10.0.3.9"));
        assert_eq!(f.product_fields().unwrap()["flowlog/distinct_ports"], "594");
    }

    #[test]
    fn china_and_govcloud_have_partitions_of_their_own() {
        assert_eq!(
            Product::default_for("1", "cn-north-1").arn,
            "arn:aws-cn:securityhub:cn-north-1:1:product/1/default"
        );
        let mut doc = scan();
        doc["cloud"]["region"] = "us-gov-west-1".into();
        let f = finding(&doc, &Product::default_for("1", "us-gov-west-1")).unwrap();
        assert!(f.product_arn().unwrap().starts_with("arn:aws-us-gov:"));
        assert_eq!(f.resources()[0].partition(), Some(&Partition::AwsUsGov));
    }

    #[test]
    fn an_address_alone_is_an_other_resource_and_flow_records_are_refused() {
        let mut doc = scan();
        doc.as_object_mut().unwrap().remove("resources");
        let f = finding(&doc, &Product::default_for("1", "eu-west-1")).unwrap();
        assert_eq!(f.resources()[0].r#type(), Some("Other"));
        assert_eq!(f.resources()[0].id(), Some("ip-address/10.0.7.77"));
        let record = serde_json::json!({"class_uid": 4001});
        assert!(finding(&record, &Product::default_for("1", "eu-west-1")).is_err());
    }
}
