//! AWS's published address ranges (`ip-ranges.json`): which service and region an AWS
//! public address belongs to. Flow logs before version 5 lack `pkt-*-aws-service`; this
//! fills the gap for every version.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::prefixes::PrefixTable;
use crate::EnrichError;

/// The service and region of a prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsRange {
    pub service: Arc<str>,
    pub region: Arc<str>,
}

/// `ip-ranges.json`, loaded.
#[derive(Debug, Default)]
pub struct AwsIpRanges {
    table: PrefixTable<AwsRange>,
    pub create_date: String,
}

#[derive(Deserialize)]
struct File {
    #[serde(rename = "createDate", default)]
    create_date: String,
    #[serde(default)]
    prefixes: Vec<Prefix>,
    #[serde(default)]
    ipv6_prefixes: Vec<Prefix>,
}

#[derive(Deserialize)]
struct Prefix {
    #[serde(alias = "ipv6_prefix")]
    ip_prefix: String,
    region: String,
    service: String,
}

impl AwsIpRanges {
    pub fn load(path: &Path) -> Result<Self, EnrichError> {
        let text = std::fs::read(path).map_err(|e| EnrichError::io(path, e))?;
        let file: File = serde_json::from_slice(&text).map_err(|e| EnrichError::Json {
            path: path.to_path_buf(),
            message: format!("not AWS ip-ranges.json: {e}"),
        })?;
        let mut ranges = Self {
            create_date: file.create_date,
            ..Self::default()
        };
        let mut strings = std::collections::HashMap::<String, Arc<str>>::new();
        let mut intern =
            |s: String| Arc::clone(strings.entry(s.clone()).or_insert_with(|| s.into()));
        for (i, p) in file
            .prefixes
            .into_iter()
            .chain(file.ipv6_prefixes)
            .enumerate()
        {
            let net = p.ip_prefix.parse().map_err(|_| EnrichError::Json {
                path: path.to_path_buf(),
                message: format!("prefix {} `{}` is not a network", i + 1, p.ip_prefix),
            })?;
            let range = AwsRange {
                service: intern(p.service),
                region: intern(p.region),
            };
            // A prefix is listed once per service: AMAZON (all of Amazon) and the service
            // using it (EC2, S3, ...). The specific service is the useful answer.
            let entry = ranges.table.entry(net, || range.clone());
            if &*entry.service == "AMAZON" {
                *entry = range;
            }
        }
        Ok(ranges)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&AwsRange> {
        self.table.longest_match(ip).map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_service_over_amazon() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ip-ranges.json");
        std::fs::write(
            &p,
            r#"{"syncToken":"1","createDate":"2026-11-20-01-02-03","prefixes":[
              {"ip_prefix":"52.94.0.0/22","region":"us-east-1","service":"AMAZON","network_border_group":"us-east-1"},
              {"ip_prefix":"52.94.0.0/22","region":"us-east-1","service":"DYNAMODB","network_border_group":"us-east-1"},
              {"ip_prefix":"52.0.0.0/11","region":"us-east-1","service":"EC2","network_border_group":"us-east-1"}],
              "ipv6_prefixes":[{"ipv6_prefix":"2600:1f18::/33","region":"us-east-1","service":"EC2","network_border_group":"us-east-1"}]}"#,
        )
        .unwrap();
        let r = AwsIpRanges::load(&p).unwrap();
        let get = |ip: &str| {
            r.lookup(ip.parse().unwrap())
                .map(|r| format!("{} {}", r.service, r.region))
        };
        assert_eq!(get("52.94.1.9").as_deref(), Some("DYNAMODB us-east-1"));
        assert_eq!(get("52.1.2.3").as_deref(), Some("EC2 us-east-1"));
        assert_eq!(get("2600:1f18:1::1").as_deref(), Some("EC2 us-east-1"));
        assert_eq!(get("8.8.8.8"), None);
        assert_eq!(r.len(), 3);
    }
}
