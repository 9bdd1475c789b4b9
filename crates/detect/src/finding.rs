//! A finding, and its two documents: OCSF Detection Finding (class 2004, 1.1.0, with the
//! cloud, datetime and security-control profiles) and an ECS alert (`event.kind: alert`).
//!
//! Findings are few, so their documents are built as `serde_json` values: clarity over
//! speed. Every value in them comes from event time, so a replay writes the same bytes.

use std::net::IpAddr;

use flowlog_normalize::network::transport_name;
use flowlog_normalize::time::rfc3339_string;
use serde_json::{json, Map, Value};
use sha1::Digest;

use crate::window::{Context, Seen};

/// The rules, with what a finding of each says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    VerticalScan,
    HorizontalScan,
    RejectedSpike,
    AdminPorts,
    OutboundDns,
    Watchlist,
    OutboundVolume,
}

/// A MITRE ATT&CK technique and its tactic.
#[derive(Debug, Clone, Copy)]
pub struct Attack {
    pub technique: (&'static str, &'static str),
    pub tactic: (&'static str, &'static str),
}

impl RuleId {
    pub const ALL: [RuleId; 7] = [
        RuleId::VerticalScan,
        RuleId::HorizontalScan,
        RuleId::RejectedSpike,
        RuleId::AdminPorts,
        RuleId::OutboundDns,
        RuleId::Watchlist,
        RuleId::OutboundVolume,
    ];

    /// The name in settings and in `finding_info.analytic.uid`.
    pub fn name(self) -> &'static str {
        match self {
            RuleId::VerticalScan => "vertical_scan",
            RuleId::HorizontalScan => "horizontal_scan",
            RuleId::RejectedSpike => "rejected_spike",
            RuleId::AdminPorts => "admin_ports",
            RuleId::OutboundDns => "outbound_dns",
            RuleId::Watchlist => "watchlist",
            RuleId::OutboundVolume => "outbound_volume",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            RuleId::VerticalScan => "Vertical port scan",
            RuleId::HorizontalScan => "Horizontal port sweep",
            RuleId::RejectedSpike => "Spike of rejected traffic",
            RuleId::AdminPorts => "Administration port reached from the internet",
            RuleId::OutboundDns => "DNS to a resolver not on the allow list",
            RuleId::Watchlist => "Traffic with a watch-listed address",
            RuleId::OutboundVolume => "Unusual outbound volume",
        }
    }

    /// OCSF severity: 2 low, 3 medium, 4 high.
    pub fn severity_id(self) -> u8 {
        match self {
            RuleId::AdminPorts | RuleId::Watchlist => 4,
            RuleId::VerticalScan
            | RuleId::HorizontalScan
            | RuleId::OutboundDns
            | RuleId::OutboundVolume => 3,
            RuleId::RejectedSpike => 2,
        }
    }

    /// True for rules that compare a key with its own history (OCSF analytic type 3,
    /// statistical), false for thresholds and policies (type 1, rule).
    pub fn statistical(self) -> bool {
        matches!(self, RuleId::RejectedSpike | RuleId::OutboundVolume)
    }

    pub fn attack(self) -> Option<Attack> {
        let discovery = ("TA0007", "Discovery");
        match self {
            RuleId::VerticalScan | RuleId::HorizontalScan => Some(Attack {
                technique: ("T1046", "Network Service Discovery"),
                tactic: discovery,
            }),
            RuleId::AdminPorts => Some(Attack {
                technique: ("T1133", "External Remote Services"),
                tactic: ("TA0001", "Initial Access"),
            }),
            RuleId::OutboundDns => Some(Attack {
                technique: ("T1071.004", "Application Layer Protocol: DNS"),
                tactic: ("TA0011", "Command and Control"),
            }),
            RuleId::OutboundVolume => Some(Attack {
                technique: ("T1048", "Exfiltration Over Alternative Protocol"),
                tactic: ("TA0010", "Exfiltration"),
            }),
            RuleId::RejectedSpike | RuleId::Watchlist => None,
        }
    }
}

/// A side of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Destination,
}

impl Side {
    /// The internal side, the source when both are.
    pub(crate) fn internal(src_internal: bool, dst_internal: bool) -> Side {
        if !src_internal && dst_internal {
            Side::Destination
        } else {
            Side::Source
        }
    }
}

/// One finding: a rule, what it keyed on, the window, and the evidence.
#[derive(Debug, Clone)]
pub struct Finding {
    pub rule: RuleId,
    /// Deterministic: the rule, its key and the window's start.
    pub uid: String,
    pub window_start: i64,
    pub window_end: i64,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub protocol: Option<u8>,
    /// 1 inbound, 2 outbound, 3 lateral, 0 unknown (OCSF `direction_id`).
    pub direction_id: u8,
    /// The side whose interface logged the flows (the internal one), which gets the
    /// interface and instance ids.
    pub(crate) own: Side,
    /// What the evidence counts beyond records and bytes (distinct ports, the baseline).
    pub measures: Map<String, Value>,
    pub message: String,
    pub(crate) seen: Seen,
}

impl Finding {
    pub(crate) fn uid_of(rule: RuleId, key: &str, window_start: i64) -> String {
        let digest = sha1::Sha1::digest(format!("{}|{key}|{window_start}", rule.name()));
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn context(&self) -> Context {
        self.seen.context.as_deref().cloned().unwrap_or_default()
    }

    /// The ids of the example flows (their deterministic event ids).
    pub fn example_ids(&self) -> Vec<String> {
        self.seen.examples.iter().map(|e| e.id()).collect()
    }

    /// The finding's event time: the end of the last flow it saw.
    pub fn time(&self) -> i64 {
        self.seen.last
    }

    fn action(&self) -> (u8, &'static str) {
        match (self.seen.accepted > 0, self.seen.rejected > 0) {
            (true, false) => (1, "Allowed"),
            (false, true) => (2, "Denied"),
            _ => (0, "Unknown"),
        }
    }

    /// The OCSF 1.1.0 Detection Finding.
    pub fn ocsf(&self, product_version: &str) -> Value {
        let rule = self.rule;
        let ctx = self.context();
        let severity_id = rule.severity_id();
        let (action_id, action) = self.action();
        let mut finding_info = json!({
            "uid": self.uid,
            "title": rule.title(),
            "desc": self.message,
            "types": [rule.name()],
            "analytic": {
                "uid": rule.name(),
                "name": rule.title(),
                "type_id": if rule.statistical() { 3 } else { 1 },
                "type": if rule.statistical() { "Statistical" } else { "Rule" },
            },
            "data_sources": ["AWS VPC Flow Logs"],
            "first_seen_time": self.seen.first,
            "first_seen_time_dt": rfc3339_string(self.seen.first),
            "last_seen_time": self.seen.last,
            "last_seen_time_dt": rfc3339_string(self.seen.last),
            "related_events": self.example_ids().into_iter()
                .map(|uid| json!({"uid": uid, "type": "Network Activity", "type_uid": 400106}))
                .collect::<Vec<_>>(),
        });
        if let Some(attack) = rule.attack() {
            finding_info["attacks"] = json!([{
                "technique": {"uid": attack.technique.0, "name": attack.technique.1},
                "tactic": {"uid": attack.tactic.0, "name": attack.tactic.1},
                "version": "14.1",
            }]);
        }
        let endpoint = |ip: Option<IpAddr>, own: bool| {
            let mut e = Map::new();
            if let Some(ip) = ip {
                e.insert("ip".into(), json!(ip.to_string()));
            }
            if own {
                if let Some(i) = &ctx.interface_id {
                    e.insert("interface_uid".into(), json!(i));
                }
                if let Some(i) = &ctx.instance_id {
                    e.insert("instance_uid".into(), json!(i));
                }
            }
            Value::Object(e)
        };
        let mut evidence = Map::new();
        let src = endpoint(self.src, self.own == Side::Source);
        if !src.as_object().is_some_and(Map::is_empty) {
            evidence.insert("src_endpoint".into(), src);
        }
        let dst = endpoint(self.dst, self.own == Side::Destination);
        if !dst.as_object().is_some_and(Map::is_empty) {
            let mut dst = dst;
            if let Some(port) = self.dst_port {
                dst["port"] = json!(port);
            }
            evidence.insert("dst_endpoint".into(), dst);
        }
        let mut connection = json!({
            "direction_id": self.direction_id,
            "direction": direction_name(self.direction_id),
        });
        if let Some(p) = self.protocol {
            connection["protocol_num"] = json!(p);
            if let Some(name) = transport_name(p.into()) {
                connection["protocol_name"] = json!(name);
            }
        }
        evidence.insert("connection_info".into(), connection);
        evidence.insert("data".into(), Value::Object(self.evidence_data()));
        let mut cloud = json!({"provider": "AWS"});
        if let Some(a) = &ctx.account_id {
            cloud["account"] = json!({"uid": a});
        }
        if let Some(r) = &ctx.region {
            cloud["region"] = json!(r);
        }
        let mut event = json!({
            "activity_id": 1,
            "activity_name": "Create",
            "category_uid": 2,
            "category_name": "Findings",
            "class_uid": 2004,
            "class_name": "Detection Finding",
            "type_uid": 200401,
            "type_name": "Detection Finding: Create",
            "severity_id": severity_id,
            "severity": severity_name(severity_id),
            "status_id": 1,
            "status": "New",
            "confidence_id": if rule.statistical() { 2 } else { 3 },
            "confidence": if rule.statistical() { "Medium" } else { "High" },
            "action_id": action_id,
            "action": action,
            "time": self.time(),
            "time_dt": rfc3339_string(self.time()),
            "start_time": self.seen.first,
            "start_time_dt": rfc3339_string(self.seen.first),
            "end_time": self.seen.last,
            "end_time_dt": rfc3339_string(self.seen.last),
            "count": self.seen.records,
            "message": self.message,
            "metadata": {
                "uid": self.uid,
                "version": "1.1.0",
                "profiles": ["cloud", "datetime", "security_control"],
                "product": {"vendor_name": "flowlog", "name": "flowlog", "version": product_version},
            },
            "finding_info": finding_info,
            "cloud": cloud,
            "evidences": [Value::Object(evidence)],
        });
        let resources = self.resources();
        if !resources.is_empty() {
            event["resources"] = Value::Array(resources);
        }
        event
    }

    /// The interface and instance the finding is about, as OCSF/ASFF resources.
    fn resources(&self) -> Vec<Value> {
        let ctx = self.context();
        let mut out = Vec::new();
        if let Some(i) = &ctx.interface_id {
            out.push(json!({"uid": i, "type": "AwsEc2NetworkInterface"}));
        }
        if let Some(i) = &ctx.instance_id {
            out.push(json!({"uid": i, "type": "AwsEc2Instance"}));
        }
        if let Some(r) = &ctx.region {
            for resource in &mut out {
                resource["region"] = json!(r);
            }
        }
        out
    }

    /// Counts, the window, and what the rule measured.
    fn evidence_data(&self) -> Map<String, Value> {
        let mut data = Map::new();
        data.insert("records".into(), json!(self.seen.records));
        data.insert("bytes".into(), json!(self.seen.bytes));
        data.insert("packets".into(), json!(self.seen.packets));
        data.insert("accepted".into(), json!(self.seen.accepted));
        data.insert("rejected".into(), json!(self.seen.rejected));
        data.insert(
            "window_start".into(),
            json!(rfc3339_string(self.window_start)),
        );
        data.insert("window_end".into(), json!(rfc3339_string(self.window_end)));
        if let (None, Some(port)) = (self.dst, self.dst_port) {
            // Many destinations: the port is evidence of its own (an endpoint needs an
            // address or a name in OCSF).
            data.insert("dst_port".into(), json!(port));
        }
        data.extend(self.measures.clone());
        data
    }

    /// The ECS alert document.
    pub fn ecs(&self, product_version: &str) -> Value {
        let rule = self.rule;
        let ctx = self.context();
        let severity_id = rule.severity_id();
        let mut doc = json!({
            "@timestamp": rfc3339_string(self.time()),
            "ecs": {"version": flowlog_normalize::ECS_VERSION},
            "message": self.message,
            "event": {
                "kind": "alert",
                "category": ["network", "intrusion_detection"],
                "type": ["info"],
                "module": "flowlog",
                "dataset": "flowlog.findings",
                "id": self.uid,
                "severity": ecs_severity(severity_id),
                "risk_score": ecs_severity(severity_id),
                "start": rfc3339_string(self.seen.first),
                "end": rfc3339_string(self.seen.last),
                "outcome": match self.action().0 { 1 => "success", 2 => "failure", _ => "unknown" },
            },
            "rule": {
                "id": rule.name(),
                "name": rule.title(),
                "description": self.message,
                "ruleset": "flowlog",
                "version": product_version,
            },
            "observer": {"vendor": "flowlog", "product": "flowlog", "version": product_version},
            "cloud": {"provider": "aws"},
            "flowlog": {
                "evidence": Value::Object(self.evidence_data()),
                "related_event_ids": self.example_ids(),
            },
        });
        if let Some(attack) = rule.attack() {
            doc["threat"] = json!({
                "framework": "MITRE ATT&CK",
                "technique": {
                    "id": [attack.technique.0],
                    "name": [attack.technique.1],
                    "reference": [format!("https://attack.mitre.org/techniques/{}/", attack.technique.0.replace('.', "/"))],
                },
                "tactic": {
                    "id": [attack.tactic.0],
                    "name": [attack.tactic.1],
                    "reference": [format!("https://attack.mitre.org/tactics/{}/", attack.tactic.0)],
                },
            });
        }
        let mut related = Vec::new();
        if let Some(ip) = self.src {
            doc["source"] = json!({"ip": ip.to_string()});
            related.push(ip.to_string());
        }
        if self.dst.is_some() || self.dst_port.is_some() {
            let mut d = Map::new();
            if let Some(ip) = self.dst {
                d.insert("ip".into(), json!(ip.to_string()));
                related.push(ip.to_string());
            }
            if let Some(p) = self.dst_port {
                d.insert("port".into(), json!(p));
            }
            doc["destination"] = Value::Object(d);
        }
        if !related.is_empty() {
            doc["related"] = json!({"ip": related});
        }
        let mut network = json!({"direction": ecs_direction(self.direction_id)});
        if let Some(p) = self.protocol {
            network["iana_number"] = json!(p.to_string());
            if let Some(name) = transport_name(p.into()) {
                network["transport"] = json!(name);
            }
        }
        doc["network"] = network;
        if let Some(a) = &ctx.account_id {
            doc["cloud"]["account"] = json!({"id": a});
        }
        if let Some(r) = &ctx.region {
            doc["cloud"]["region"] = json!(r);
        }
        if let Some(i) = &ctx.instance_id {
            doc["cloud"]["instance"] = json!({"id": i});
        }
        if let Some(i) = &ctx.interface_id {
            doc["flowlog"]["interface_id"] = json!(i);
        }
        doc
    }
}

fn severity_name(id: u8) -> &'static str {
    match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        _ => "Unknown",
    }
}

/// Elastic's severity scale, as its detection rules use it (low 21, medium 47, high 73).
fn ecs_severity(id: u8) -> u8 {
    match id {
        1 | 2 => 21,
        3 => 47,
        4 => 73,
        _ => 99,
    }
}

fn direction_name(id: u8) -> &'static str {
    match id {
        1 => "Inbound",
        2 => "Outbound",
        3 => "Lateral",
        _ => "Unknown",
    }
}

fn ecs_direction(id: u8) -> &'static str {
    match id {
        1 => "inbound",
        2 => "outbound",
        3 => "internal",
        _ => "unknown",
    }
}

/// A JSON object's members (what `json!({...})` builds) as a map.
pub(crate) fn measures(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(members) => members,
        _ => Map::new(),
    }
}

/// OCSF's direction of a flow between `src` and `dst`, by which side is internal.
pub(crate) fn direction(src_internal: bool, dst_internal: bool) -> u8 {
    match (src_internal, dst_internal) {
        (false, true) => 1,
        (true, false) => 2,
        (true, true) => 3,
        (false, false) => 0,
    }
}
