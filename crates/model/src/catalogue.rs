//! Every field AWS defines for VPC flow logs (versions 2 to 11) and Transit Gateway flow logs
//! (version 6), as data: name, first version, value kind, meaning and known values.
//!
//! The table is the single source of truth: the decoder takes value kinds from it, the
//! canonical Arrow schema is built from it, `flowlog fields` prints it and
//! `schemas/flow-log-fields.csv` is checked against it by a test.

use arrow_schema::{DataType, TimeUnit};

/// How a field's text is checked and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Free text, stored as given (UTF-8, may be non-ASCII).
    Text,
    /// An IPv4 or IPv6 address, checked, stored as given.
    IpAddr,
    /// A TCP/UDP port, 0 to 65535.
    Port,
    /// A small non-negative code (protocol number, TCP flag bits, traffic path...), 0 to 255.
    Code,
    /// A non-negative 32-bit integer (version, encryption status).
    Int32,
    /// A non-negative 64-bit counter (packets, bytes).
    Count,
    /// Unix time in seconds, or in milliseconds when the value has 13 or more digits; stored
    /// as milliseconds.
    EpochTime,
}

impl FieldKind {
    /// The Arrow type this kind is stored as in the canonical schema.
    pub fn data_type(self) -> DataType {
        match self {
            FieldKind::Text | FieldKind::IpAddr => DataType::Utf8View,
            FieldKind::Port | FieldKind::Code | FieldKind::Int32 => DataType::Int32,
            FieldKind::Count => DataType::Int64,
            FieldKind::EpochTime => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        }
    }

    /// Inclusive value range for integer kinds.
    pub fn range(self) -> Option<(i64, i64)> {
        match self {
            FieldKind::Port => Some((0, 65_535)),
            FieldKind::Code => Some((0, 255)),
            FieldKind::Int32 => Some((0, i32::MAX as i64)),
            FieldKind::Count | FieldKind::EpochTime => Some((0, i64::MAX)),
            FieldKind::Text | FieldKind::IpAddr => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::IpAddr => "ip",
            FieldKind::Port => "port",
            FieldKind::Code => "code",
            FieldKind::Int32 => "int32",
            FieldKind::Count => "int64",
            FieldKind::EpochTime => "epoch-time",
        }
    }
}

/// Which kind of flow log a field occurs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFamily {
    Vpc,
    TransitGateway,
    Both,
}

impl LogFamily {
    pub fn name(self) -> &'static str {
        match self {
            LogFamily::Vpc => "vpc",
            LogFamily::TransitGateway => "tgw",
            LogFamily::Both => "vpc+tgw",
        }
    }
}

/// One field of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    /// AWS's name, as in format strings and S3 header lines (`pkt-srcaddr`).
    pub name: &'static str,
    /// The snake_case name used for columns and output keys (`pkt_srcaddr`).
    pub column: &'static str,
    /// The first VPC flow-log version that has it (Transit Gateway fields: 6).
    pub since: u8,
    pub family: LogFamily,
    pub kind: FieldKind,
    pub meaning: &'static str,
    pub known_values: &'static [&'static str],
}

macro_rules! field {
    ($name:literal, $column:literal, $since:literal, $family:ident, $kind:ident, $meaning:literal) => {
        field!($name, $column, $since, $family, $kind, $meaning, [])
    };
    ($name:literal, $column:literal, $since:literal, $family:ident, $kind:ident, $meaning:literal, [$($v:literal),*]) => {
        field!($name, $column, $since, $family, $kind, $meaning, values = &[$($v),*])
    };
    ($name:literal, $column:literal, $since:literal, $family:ident, $kind:ident, $meaning:literal, values = $values:expr) => {
        FieldDef {
            name: $name,
            column: $column,
            since: $since,
            family: LogFamily::$family,
            kind: FieldKind::$kind,
            meaning: $meaning,
            known_values: $values,
        }
    };
}

const AWS_SERVICES: &[&str] = &[
    "AMAZON",
    "AMAZON_APPFLOW",
    "AMAZON_CONNECT",
    "API_GATEWAY",
    "CHIME_MEETINGS",
    "CHIME_VOICECONNECTOR",
    "CLOUD9",
    "CLOUDFRONT",
    "CODEBUILD",
    "DYNAMODB",
    "EBS",
    "EC2",
    "EC2_INSTANCE_CONNECT",
    "GLOBALACCELERATOR",
    "KINESIS_VIDEO_STREAMS",
    "ROUTE53",
    "ROUTE53_HEALTHCHECKS",
    "ROUTE53_HEALTHCHECKS_PUBLISHING",
    "ROUTE53_RESOLVER",
    "S3",
    "WORKSPACES_GATEWAYS",
];

/// The catalogue, in canonical column order: VPC fields by version, then Transit Gateway fields.
pub static FIELDS: &[FieldDef] = &[
    // Version 2: the default format, in its order.
    field!("version", "version", 2, Both, Int32, "Flow log record version (2 for the default format, the highest version among the fields of a custom format; 6 for Transit Gateway)."),
    field!("account-id", "account_id", 2, Both, Text, "AWS account that owns the interface (VPC) or the transit gateway; 'unknown' for some AWS-managed interfaces. Kept as text: leading zeros matter."),
    field!("interface-id", "interface_id", 2, Vpc, Text, "Network interface (ENI) the traffic was recorded on."),
    field!("srcaddr", "srcaddr", 2, Both, IpAddr, "Source address of incoming traffic, or the interface's address for outgoing traffic."),
    field!("dstaddr", "dstaddr", 2, Both, IpAddr, "Destination address of outgoing traffic, or the interface's address for incoming traffic."),
    field!("srcport", "srcport", 2, Both, Port, "Source port."),
    field!("dstport", "dstport", 2, Both, Port, "Destination port."),
    field!("protocol", "protocol", 2, Both, Code, "IANA protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6)."),
    field!("packets", "packets", 2, Both, Count, "Packets transferred during the flow."),
    field!("bytes", "bytes", 2, Both, Count, "Bytes transferred during the flow."),
    field!("start", "start", 2, Both, EpochTime, "Time the first packet of the flow was received within the aggregation interval (Unix seconds)."),
    field!("end", "end", 2, Both, EpochTime, "Time the last packet of the flow was received within the aggregation interval (Unix seconds)."),
    field!("action", "action", 2, Vpc, Text, "Whether security groups and network ACLs allowed the traffic.", ["ACCEPT", "REJECT"]),
    field!("log-status", "log_status", 2, Both, Text, "Logging status: OK, NODATA (no traffic in the interval) or SKIPDATA (records skipped in the interval).", ["OK", "NODATA", "SKIPDATA"]),
    // Version 3.
    field!("vpc-id", "vpc_id", 3, Vpc, Text, "VPC of the interface."),
    field!("subnet-id", "subnet_id", 3, Vpc, Text, "Subnet of the interface."),
    field!("instance-id", "instance_id", 3, Vpc, Text, "Instance the interface is attached to, when you own it."),
    field!("tcp-flags", "tcp_flags", 3, Both, Code, "Bitwise OR of the TCP flags seen in the interval (FIN 1, SYN 2, RST 4, PSH 8, ACK 16, URG 32; SYN-ACK 18).", ["1", "2", "4", "18"]),
    field!("type", "type", 3, Both, Text, "Traffic type.", ["IPv4", "IPv6", "EFA"]),
    field!("pkt-srcaddr", "pkt_srcaddr", 3, Vpc, IpAddr, "Packet-level (original) source address, when it differs from srcaddr (NAT gateways, EKS pods...)."),
    field!("pkt-dstaddr", "pkt_dstaddr", 3, Vpc, IpAddr, "Packet-level (original) destination address."),
    // Version 4.
    field!("region", "region", 4, Both, Text, "Region of the interface or transit gateway."),
    field!("az-id", "az_id", 4, Vpc, Text, "Availability Zone ID of the interface."),
    field!("sublocation-type", "sublocation_type", 4, Vpc, Text, "Type of sublocation.", ["wavelength", "outpost", "localzone"]),
    field!("sublocation-id", "sublocation_id", 4, Vpc, Text, "ID of the sublocation (Wavelength Zone, Outpost or Local Zone)."),
    // Version 5.
    field!("pkt-src-aws-service", "pkt_src_aws_service", 5, Both, Text, "AWS service pkt-srcaddr belongs to, when it is one of AWS's ranges.", values = AWS_SERVICES),
    field!("pkt-dst-aws-service", "pkt_dst_aws_service", 5, Both, Text, "AWS service pkt-dstaddr belongs to, when it is one of AWS's ranges.", values = AWS_SERVICES),
    field!("flow-direction", "flow_direction", 5, Both, Text, "Direction of the flow relative to the interface.", ["ingress", "egress"]),
    field!("traffic-path", "traffic_path", 5, Vpc, Code, "Path egress traffic takes: 1 same VPC, 2 internet or gateway VPC endpoint, 3 virtual private gateway, 4 intra-region peering, 5 inter-region peering, 6 local gateway, 7 gateway VPC endpoint (Nitro), 8 internet gateway (Nitro).", ["1", "2", "3", "4", "5", "6", "7", "8"]),
    // Version 7: ECS.
    field!("ecs-cluster-arn", "ecs_cluster_arn", 7, Vpc, Text, "ARN of the ECS cluster of the task."),
    field!("ecs-cluster-name", "ecs_cluster_name", 7, Vpc, Text, "Name of the ECS cluster of the task."),
    field!("ecs-container-instance-arn", "ecs_container_instance_arn", 7, Vpc, Text, "ARN of the ECS container instance (EC2 launch type)."),
    field!("ecs-container-instance-id", "ecs_container_instance_id", 7, Vpc, Text, "ID of the ECS container instance (EC2 launch type)."),
    field!("ecs-container-id", "ecs_container_id", 7, Vpc, Text, "Docker runtime ID of the task's first container."),
    field!("ecs-second-container-id", "ecs_second_container_id", 7, Vpc, Text, "Docker runtime ID of the task's second container."),
    field!("ecs-service-name", "ecs_service_name", 7, Vpc, Text, "ECS service the task belongs to."),
    field!("ecs-task-definition-arn", "ecs_task_definition_arn", 7, Vpc, Text, "ARN of the task definition."),
    field!("ecs-task-arn", "ecs_task_arn", 7, Vpc, Text, "ARN of the ECS task."),
    field!("ecs-task-id", "ecs_task_id", 7, Vpc, Text, "ID of the ECS task."),
    // Version 8.
    field!("reject-reason", "reject_reason", 8, Vpc, Text, "Why traffic was rejected, when not by security groups or ACLs (BPA: VPC Block Public Access).", ["BPA"]),
    // Version 9.
    field!("resource-id", "resource_id", 9, Vpc, Text, "Resource the flow belongs to when it is not an instance (e.g. a NAT gateway id)."),
    // Version 10.
    field!("encryption-status", "encryption_status", 10, Vpc, Int32, "Whether the traffic was encrypted in transit: 0 not encrypted, 1 Nitro-encrypted, 2 application-encrypted, 3 both.", ["0", "1", "2", "3"]),
    // Version 11.
    field!("instance-tag", "instance_tag", 11, Vpc, Text, "Value of the first instance tag chosen in the flow log's tag specification (percent-encoded)."),
    field!("instance-tag-2", "instance_tag_2", 11, Vpc, Text, "Value of the second chosen instance tag."),
    field!("interface-tag", "interface_tag", 11, Vpc, Text, "Value of the first chosen network-interface tag."),
    field!("interface-tag-2", "interface_tag_2", 11, Vpc, Text, "Value of the second chosen network-interface tag."),
    field!("asg-tag", "asg_tag", 11, Vpc, Text, "Value of the first chosen Auto Scaling group tag."),
    field!("asg-tag-2", "asg_tag_2", 11, Vpc, Text, "Value of the second chosen Auto Scaling group tag."),
    field!("interface-type", "interface_type", 11, Vpc, Text, "Type of the interface that recorded the flow.", ["nat_gateway", "network_load_balancer", "regional_nat_gateway", "transit_gateway", "vpc_endpoint"]),
    field!("next-hop-interface-id", "next_hop_interface_id", 11, Vpc, Text, "Interface of the next hop (receiver for egress, sender for ingress)."),
    field!("next-hop-subnet-id", "next_hop_subnet_id", 11, Vpc, Text, "Subnet of the next-hop interface."),
    field!("next-hop-az-id", "next_hop_az_id", 11, Vpc, Text, "Availability Zone ID of the next-hop interface."),
    field!("next-hop-vpc-id", "next_hop_vpc_id", 11, Vpc, Text, "VPC of the next-hop interface."),
    field!("next-hop-interface-type", "next_hop_interface_type", 11, Vpc, Text, "Type of the next-hop interface."),
    // Transit Gateway flow logs (version 6).
    field!("resource-type", "resource_type", 6, TransitGateway, Text, "Type of resource the flow was recorded on.", ["TransitGateway"]),
    field!("tgw-id", "tgw_id", 6, TransitGateway, Text, "Transit gateway the traffic was recorded on."),
    field!("tgw-attachment-id", "tgw_attachment_id", 6, TransitGateway, Text, "Attachment the traffic was recorded on."),
    field!("tgw-src-vpc-account-id", "tgw_src_vpc_account_id", 6, TransitGateway, Text, "Account of the source VPC."),
    field!("tgw-dst-vpc-account-id", "tgw_dst_vpc_account_id", 6, TransitGateway, Text, "Account of the destination VPC."),
    field!("tgw-src-vpc-id", "tgw_src_vpc_id", 6, TransitGateway, Text, "Source VPC."),
    field!("tgw-dst-vpc-id", "tgw_dst_vpc_id", 6, TransitGateway, Text, "Destination VPC."),
    field!("tgw-src-subnet-id", "tgw_src_subnet_id", 6, TransitGateway, Text, "Subnet of the source transit gateway ENI."),
    field!("tgw-dst-subnet-id", "tgw_dst_subnet_id", 6, TransitGateway, Text, "Subnet of the destination transit gateway ENI."),
    field!("tgw-src-eni", "tgw_src_eni", 6, TransitGateway, Text, "Source transit gateway attachment ENI."),
    field!("tgw-dst-eni", "tgw_dst_eni", 6, TransitGateway, Text, "Destination transit gateway attachment ENI."),
    field!("tgw-src-az-id", "tgw_src_az_id", 6, TransitGateway, Text, "Availability Zone ID of the source ENI."),
    field!("tgw-dst-az-id", "tgw_dst_az_id", 6, TransitGateway, Text, "Availability Zone ID of the destination ENI."),
    field!("tgw-pair-attachment-id", "tgw_pair_attachment_id", 6, TransitGateway, Text, "The other attachment of the flow (egress attachment for ingress records and vice versa)."),
    field!("packets-lost-no-route", "packets_lost_no_route", 6, TransitGateway, Count, "Packets dropped because no route matched."),
    field!("packets-lost-blackhole", "packets_lost_blackhole", 6, TransitGateway, Count, "Packets dropped by a blackhole route."),
    field!("packets-lost-mtu-exceeded", "packets_lost_mtu_exceeded", 6, TransitGateway, Count, "Packets dropped for exceeding the MTU."),
    field!("packets-lost-ttl-expired", "packets_lost_ttl_expired", 6, TransitGateway, Count, "Packets dropped because their TTL expired."),
];

/// Index of a field in [`FIELDS`] (and column in the canonical schema).
pub type FieldId = usize;

/// Looks a field up by its AWS name or its snake_case name (`pkt-srcaddr`, `pkt_srcaddr`,
/// `${pkt-srcaddr}` are all accepted by callers that strip the `${}`).
pub fn lookup(name: &str) -> Option<FieldId> {
    // 72 entries, compared on short strings: a linear scan is as fast as a map here, and
    // lookups happen per format, not per record.
    FIELDS
        .iter()
        .position(|f| f.name == name || f.column == name)
        .or_else(|| {
            let hyphenated = name.replace('_', "-");
            FIELDS.iter().position(|f| f.name == hyphenated)
        })
}

/// The catalogue's name nearest to `name` (at most two edits away, `_` read as `-`): what
/// a user most likely meant by a name the catalogue does not know (`srcadr`).
pub fn nearest(name: &str) -> Option<&'static str> {
    let name = name.replace('_', "-");
    FIELDS
        .iter()
        .map(|f| (edit_distance(&name, f.name), f.name))
        .filter(|&(d, _)| d > 0 && d <= 2)
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n)
}

/// Levenshtein distance over bytes (field names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The catalogue as CSV (the content of `schemas/flow-log-fields.csv`).
pub fn catalogue_csv() -> String {
    let mut out = String::from("name,column,since,family,kind,arrow_type,known_values,meaning\n");
    for f in FIELDS {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            f.name,
            f.column,
            f.since,
            f.family.name(),
            f.kind.name(),
            f.kind.data_type(),
            quote(&f.known_values.join(" ")),
            quote(f.meaning),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_finds_the_field_meant_and_a_new_name_finds_none() {
        assert_eq!(nearest("srcadr"), Some("srcaddr"));
        assert_eq!(nearest("account_ld"), Some("account-id"));
        assert_eq!(nearest("srcaddr"), None, "a known name is not a typo");
        assert_eq!(nearest("my-custom-tag"), None);
        let format = crate::FlowFormat::parse("version srcadr dstaddr").unwrap();
        let typos = format.likely_typos();
        assert_eq!(typos.len(), 1);
        assert!(typos[0].contains("did you mean `srcaddr`"), "{typos:?}");
    }

    #[test]
    fn names_and_columns_are_unique_and_consistent() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(f.column, f.name.replace('-', "_"), "{}", f.name);
            assert_eq!(lookup(f.name), Some(i));
            assert_eq!(lookup(f.column), Some(i));
            assert!(
                FIELDS[..i].iter().all(|g| g.name != f.name),
                "duplicate {}",
                f.name
            );
        }
    }

    #[test]
    fn version_counts_match_aws() {
        // AWS: the default format has 14 fields; all VPC fields up to v11 are 54; Transit
        // Gateway logs add 18 fields of their own.
        let vpc = |max| {
            FIELDS
                .iter()
                .filter(|f| f.family != LogFamily::TransitGateway && f.since <= max)
                .count()
        };
        assert_eq!(vpc(2), 14);
        assert_eq!(vpc(5), 29);
        assert_eq!(vpc(8), 40);
        assert_eq!(vpc(11), 54);
        let tgw_only = FIELDS
            .iter()
            .filter(|f| f.family == LogFamily::TransitGateway)
            .count();
        assert_eq!(tgw_only, 18);
    }

    #[test]
    fn catalogue_csv_matches_schemas_file() {
        // The directory cargo runs the test for, not the one it was compiled in: the
        // shared target dir can hand a checkout a binary another checkout built.
        let dir: String = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
        let path = format!("{dir}/../../schemas/flow-log-fields.csv");
        let on_disk = std::fs::read_to_string(path).expect("schemas/flow-log-fields.csv");
        assert_eq!(
            on_disk,
            catalogue_csv(),
            "regenerate with `flowlog fields --csv > schemas/flow-log-fields.csv`"
        );
    }
}
