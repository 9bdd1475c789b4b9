//! The ENI inventory: which instance, name, tags, security groups, subnet and VPC an
//! elastic network interface belongs to, and which interface holds an address.
//!
//! An interface can be detached from one instance and attached to another, so the
//! inventory keeps, per interface, the mappings it has seen with the time each began
//! (the attachment time when EC2 gives one, else when the inventory first saw it). A
//! record is labelled with the mapping that held at its start time; a record older than
//! every mapping the inventory knows is not labelled at all rather than labelled wrongly.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::EnrichError;

/// One interface as the inventory knows it at one time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Interface {
    pub id: Arc<str>,
    pub instance_id: Option<Arc<str>>,
    /// The instance's `Name` tag, else the interface's.
    pub name: Option<Arc<str>>,
    /// Interface tags overlaid with the instance's, as a JSON object.
    pub tags_json: Option<Arc<str>>,
    /// Security group ids, as a JSON array.
    pub security_groups_json: Option<Arc<str>>,
    pub subnet_id: Option<Arc<str>>,
    pub vpc_id: Option<Arc<str>>,
    pub interface_type: Option<Arc<str>>,
    pub requester_id: Option<Arc<str>>,
    pub description: Option<Arc<str>>,
    /// Private and public addresses, IPv4 and IPv6.
    pub addresses: Vec<IpAddr>,
    /// When this mapping began (Unix ms); 0 when unknown (assumed to have always held).
    pub since_ms: i64,
}

impl Interface {
    /// True if both describe the same mapping (ignoring when it was seen).
    fn same_mapping(&self, other: &Self) -> bool {
        Self {
            since_ms: 0,
            ..self.clone()
        } == Self {
            since_ms: 0,
            ..other.clone()
        }
    }
}

/// The mappings seen for one interface, oldest first.
#[derive(Debug)]
struct History {
    versions: Vec<Arc<Interface>>,
    last_seen_ms: i64,
}

/// Most mappings kept per interface.
const MAX_VERSIONS: usize = 4;

/// Interfaces by id and by address, bounded in size.
#[derive(Debug)]
pub struct Inventory {
    by_id: HashMap<Arc<str>, History>,
    by_address: HashMap<IpAddr, Arc<Interface>>,
    capacity: usize,
}

impl Default for Inventory {
    fn default() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }
}

impl Inventory {
    /// Interfaces kept by default; the least recently seen beyond it are forgotten.
    pub const DEFAULT_CAPACITY: usize = 200_000;

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            by_id: HashMap::new(),
            by_address: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Merges a snapshot of interfaces seen at `now_ms`. A changed mapping becomes a new
    /// version; interfaces absent from the snapshot are kept (their records may still
    /// arrive) until the capacity pushes them out.
    pub fn merge(&mut self, snapshot: Vec<Interface>, now_ms: i64) {
        for mut interface in snapshot {
            match self.by_id.get_mut(&interface.id) {
                Some(history) => {
                    history.last_seen_ms = now_ms;
                    let newest = history.versions.last().expect("never empty");
                    if !newest.same_mapping(&interface) {
                        if interface.since_ms <= newest.since_ms {
                            // No attachment time, or an older one: it changed now.
                            interface.since_ms = now_ms;
                        }
                        history.versions.push(Arc::new(interface));
                        if history.versions.len() > MAX_VERSIONS {
                            history.versions.remove(0);
                        }
                    }
                }
                None => {
                    self.by_id.insert(
                        Arc::clone(&interface.id),
                        History {
                            versions: vec![Arc::new(interface)],
                            last_seen_ms: now_ms,
                        },
                    );
                }
            }
        }
        if self.by_id.len() > self.capacity {
            let mut seen: Vec<i64> = self.by_id.values().map(|h| h.last_seen_ms).collect();
            let excess = self.by_id.len() - self.capacity;
            let (_, cutoff, _) = seen.select_nth_unstable(excess - 1);
            let cutoff = *cutoff;
            let mut removed = 0;
            self.by_id.retain(|_, h| {
                let keep = removed >= excess || h.last_seen_ms > cutoff;
                removed += usize::from(!keep);
                keep
            });
        }
        self.by_address = self
            .by_id
            .values()
            .map(|h| h.versions.last().expect("never empty"))
            .flat_map(|i| i.addresses.iter().map(move |a| (*a, Arc::clone(i))))
            .collect();
    }

    /// The mapping of interface `id` that held at `at_ms` (the newest when the time is
    /// unknown).
    pub fn interface(&self, id: &str, at_ms: Option<i64>) -> Option<&Arc<Interface>> {
        let versions = &self.by_id.get(id)?.versions;
        match at_ms {
            None => versions.last(),
            Some(at) => versions.iter().rev().find(|v| v.since_ms <= at),
        }
    }

    /// The interface that holds `ip` now.
    pub fn by_address(&self, ip: IpAddr) -> Option<&Arc<Interface>> {
        self.by_address.get(&ip)
    }

    /// Reads the JSON output of `aws ec2 describe-network-interfaces` and/or
    /// `aws ec2 describe-instances` (one file may hold either or both; instance tags are
    /// joined to the interfaces of every file read together).
    pub fn load_files(paths: &[&Path]) -> Result<Vec<Interface>, EnrichError> {
        let mut interfaces = Vec::new();
        let mut instances = Vec::new();
        for path in paths {
            let text = std::fs::read(path).map_err(|e| EnrichError::io(path, e))?;
            let file: AwsCliFile =
                serde_json::from_slice(&text).map_err(|e| EnrichError::Json {
                    path: path.to_path_buf(),
                    message: format!(
                        "not the output of describe-network-interfaces or describe-instances: {e}"
                    ),
                })?;
            if file.network_interfaces.is_none() && file.reservations.is_none() {
                return Err(EnrichError::Json {
                    path: path.to_path_buf(),
                    message: "has neither NetworkInterfaces nor Reservations".into(),
                });
            }
            interfaces.extend(file.network_interfaces.unwrap_or_default());
            instances.extend(
                file.reservations
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|r| r.instances),
            );
        }
        Ok(join(interfaces, instances))
    }
}

/// Interfaces as the EC2 API describes them (the AWS CLI's JSON, or converted from the
/// SDK's types), before instance tags are joined.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawInterface {
    pub network_interface_id: String,
    pub attachment: Option<RawAttachment>,
    #[serde(default)]
    pub groups: Vec<RawGroup>,
    pub subnet_id: Option<String>,
    pub vpc_id: Option<String>,
    pub interface_type: Option<String>,
    pub requester_id: Option<String>,
    pub description: Option<String>,
    pub private_ip_address: Option<String>,
    #[serde(default)]
    pub private_ip_addresses: Vec<RawPrivateIp>,
    #[serde(default)]
    pub ipv6_addresses: Vec<RawIpv6>,
    pub association: Option<RawAssociation>,
    #[serde(default)]
    pub tag_set: Vec<RawTag>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawAttachment {
    pub instance_id: Option<String>,
    /// RFC 3339 in the CLI's output; Unix ms once converted from the SDK.
    pub attach_time: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawGroup {
    pub group_id: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawPrivateIp {
    pub private_ip_address: Option<String>,
    pub association: Option<RawAssociation>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawIpv6 {
    pub ipv6_address: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawAssociation {
    pub public_ip: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawTag {
    pub key: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawInstance {
    pub instance_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<RawTag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AwsCliFile {
    network_interfaces: Option<Vec<RawInterface>>,
    reservations: Option<Vec<RawReservation>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawReservation {
    #[serde(default)]
    instances: Vec<RawInstance>,
}

fn text(s: Option<String>) -> Option<Arc<str>> {
    s.filter(|s| !s.is_empty()).map(Arc::from)
}

/// Joins instance tags to interfaces and builds the inventory's view of each.
pub(crate) fn join(interfaces: Vec<RawInterface>, instances: Vec<RawInstance>) -> Vec<Interface> {
    let instance_tags: HashMap<String, Vec<RawTag>> = instances
        .into_iter()
        .filter_map(|i| Some((i.instance_id?, i.tags)))
        .collect();
    interfaces
        .into_iter()
        .map(|raw| {
            let attachment = raw.attachment.unwrap_or_default();
            let mut tags: BTreeMap<String, String> = tag_map(&raw.tag_set);
            let interface_name = tags.get("Name").cloned();
            let instance_tags = attachment
                .instance_id
                .as_ref()
                .and_then(|id| instance_tags.get(id));
            tags.extend(instance_tags.map(|t| tag_map(t)).unwrap_or_default());
            let name = instance_tags
                .and_then(|t| tag_map(t).remove("Name"))
                .or(interface_name);
            let mut addresses: Vec<IpAddr> = raw
                .private_ip_address
                .iter()
                .chain(
                    raw.private_ip_addresses
                        .iter()
                        .filter_map(|p| p.private_ip_address.as_ref()),
                )
                .chain(
                    raw.private_ip_addresses
                        .iter()
                        .filter_map(|p| p.association.as_ref()?.public_ip.as_ref()),
                )
                .chain(raw.association.as_ref().and_then(|a| a.public_ip.as_ref()))
                .chain(
                    raw.ipv6_addresses
                        .iter()
                        .filter_map(|a| a.ipv6_address.as_ref()),
                )
                .filter_map(|a| a.parse().ok())
                .collect();
            addresses.sort_unstable();
            addresses.dedup();
            let groups: Vec<&str> = raw
                .groups
                .iter()
                .filter_map(|g| g.group_id.as_deref())
                .collect();
            Interface {
                id: raw.network_interface_id.into(),
                instance_id: text(attachment.instance_id),
                name: text(name),
                tags_json: (!tags.is_empty()).then(|| {
                    serde_json::to_string(&tags)
                        .expect("strings serialize")
                        .into()
                }),
                security_groups_json: (!groups.is_empty()).then(|| {
                    serde_json::to_string(&groups)
                        .expect("strings serialize")
                        .into()
                }),
                subnet_id: text(raw.subnet_id),
                vpc_id: text(raw.vpc_id),
                interface_type: text(raw.interface_type),
                requester_id: text(raw.requester_id),
                description: text(raw.description),
                addresses,
                since_ms: attachment
                    .attach_time
                    .as_ref()
                    .and_then(time_ms)
                    .unwrap_or(0),
            }
        })
        .collect()
}

fn tag_map(tags: &[RawTag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

/// Unix ms from a number (already ms) or an RFC 3339 / ISO 8601 UTC-offset timestamp
/// such as the CLI prints (`2026-11-20T10:15:00+00:00`, `2026-11-20T10:15:00.000Z`).
fn time_ms(value: &serde_json::Value) -> Option<i64> {
    if let Some(ms) = value.as_i64() {
        return Some(ms);
    }
    let s = value.as_str()?;
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = s.get(19..)?;
    let rest = rest
        .strip_prefix('.')
        .map_or(rest, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
    let offset_min = match rest {
        "Z" | "" => 0,
        r if r.len() == 6 => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (r.get(1..3)?.parse::<i64>().ok()? * 60 + r.get(4..6)?.parse::<i64>().ok()?)
        }
        _ => return None,
    };
    let days = flowlog_model::time::days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERFACES: &str = r#"{"NetworkInterfaces": [
      {"Attachment": {"AttachTime": "2026-11-01T00:00:00+00:00", "InstanceId": "i-0abc"},
       "Description": "", "Groups": [{"GroupName": "web", "GroupId": "sg-1"}, {"GroupName": "db", "GroupId": "sg-2"}],
       "InterfaceType": "interface", "NetworkInterfaceId": "eni-1", "PrivateIpAddress": "10.0.3.17",
       "PrivateIpAddresses": [{"Primary": true, "PrivateIpAddress": "10.0.3.17", "Association": {"PublicIp": "54.1.2.3"}}],
       "Ipv6Addresses": [{"Ipv6Address": "2600:1f18:aaaa:bbbb::17"}],
       "SubnetId": "subnet-1", "VpcId": "vpc-1", "TagSet": [{"Key": "Name", "Value": "eni-name"}, {"Key": "team", "Value": "eni-team"}]},
      {"Description": "Interface for NAT Gateway nat-0123", "InterfaceType": "nat_gateway", "NetworkInterfaceId": "eni-nat",
       "PrivateIpAddress": "10.0.0.9", "RequesterId": "amazon-nat", "SubnetId": "subnet-0", "VpcId": "vpc-1", "TagSet": []}]}"#;
    const INSTANCES: &str = r#"{"Reservations": [{"Instances": [{"InstanceId": "i-0abc",
       "Tags": [{"Key": "Name", "Value": "payments-api"}, {"Key": "team", "Value": "checkout"}]}]}]}"#;

    #[test]
    fn cli_output_joined_with_instance_tags() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            dir.path().join("enis.json"),
            dir.path().join("instances.json"),
        );
        std::fs::write(&a, INTERFACES).unwrap();
        std::fs::write(&b, INSTANCES).unwrap();
        let mut inv = Inventory::default();
        inv.merge(Inventory::load_files(&[&a, &b]).unwrap(), 1);
        let eni = inv.interface("eni-1", None).unwrap();
        assert_eq!(eni.instance_id.as_deref(), Some("i-0abc"));
        assert_eq!(eni.name.as_deref(), Some("payments-api"));
        assert_eq!(
            eni.tags_json.as_deref(),
            Some(r#"{"Name":"payments-api","team":"checkout"}"#)
        );
        assert_eq!(
            eni.security_groups_json.as_deref(),
            Some(r#"["sg-1","sg-2"]"#)
        );
        assert_eq!(eni.since_ms, 1_793_491_200_000);
        for ip in ["10.0.3.17", "54.1.2.3", "2600:1f18:aaaa:bbbb::17"] {
            assert_eq!(
                inv.by_address(ip.parse().unwrap()).unwrap().id.as_ref(),
                "eni-1"
            );
        }
        let nat = inv.interface("eni-nat", Some(5)).unwrap();
        assert_eq!(nat.interface_type.as_deref(), Some("nat_gateway"));
        assert_eq!(nat.requester_id.as_deref(), Some("amazon-nat"));
        assert_eq!(nat.name, None);
        // Before the attachment, eni-1 was not this instance's.
        assert!(inv.interface("eni-1", Some(1_793_491_199_000)).is_none());
    }

    #[test]
    fn reattached_interface_keeps_both_mappings() {
        let old = Interface {
            id: "eni-1".into(),
            instance_id: Some("i-old".into()),
            since_ms: 0,
            ..Default::default()
        };
        let new = Interface {
            id: "eni-1".into(),
            instance_id: Some("i-new".into()),
            since_ms: 0,
            ..Default::default()
        };
        let mut inv = Inventory::default();
        inv.merge(vec![old.clone()], 1_000);
        inv.merge(vec![old], 2_000);
        inv.merge(vec![new], 3_000);
        let at = |t| {
            inv.interface("eni-1", Some(t))
                .and_then(|i| i.instance_id.clone())
        };
        assert_eq!(at(2_500).as_deref(), Some("i-old"));
        assert_eq!(at(3_000).as_deref(), Some("i-new"));
        assert_eq!(
            inv.interface("eni-1", None).unwrap().instance_id.as_deref(),
            Some("i-new")
        );
    }

    #[test]
    fn bounded_by_capacity_least_recently_seen_first() {
        let mut inv = Inventory::with_capacity(2);
        let eni = |id: &str| Interface {
            id: id.into(),
            ..Default::default()
        };
        inv.merge(vec![eni("a")], 1);
        inv.merge(vec![eni("b")], 2);
        inv.merge(vec![eni("c")], 3);
        assert_eq!(inv.len(), 2);
        assert!(inv.interface("a", None).is_none());
        assert!(inv.interface("c", None).is_some());
    }

    #[test]
    fn wrong_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("inv.json");
        std::fs::write(&p, r#"{"Foo": 1}"#).unwrap();
        let err = Inventory::load_files(&[&p]).unwrap_err().to_string();
        assert!(
            err.contains("inv.json: has neither NetworkInterfaces nor Reservations"),
            "{err}"
        );
    }

    #[test]
    fn timestamps() {
        let t = |s: &str| time_ms(&serde_json::Value::String(s.into()));
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2026-11-01T00:00:00.000Z"), Some(1_793_491_200_000));
        assert_eq!(t("2026-11-01T02:00:00+02:00"), Some(1_793_491_200_000));
        assert_eq!(t("yesterday"), None);
    }
}
