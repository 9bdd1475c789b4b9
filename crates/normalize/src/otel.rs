//! The OpenTelemetry mapping of a record: resource and log-record attributes and time,
//! for the OTLP sink to put into `LogRecord`s.
//!
//! Names follow the Collector's own decoding of VPC flow logs (contrib
//! `awslogsencodingextension`), so that whatever is built on the Collector's output keeps
//! working: `aws.vpc.flow.*`, `aws.tgw.*`, `aws.ecs.*`, `network.protocol.name`,
//! `source.address` from `pkt-srcaddr` when there is one (with `srcaddr` then in
//! `network.local.address`), time = `end`. [`Naming::Semconv`] differs only where the
//! semantic conventions say otherwise: the transport in `network.transport`, log group and
//! stream names as arrays. Fields the Collector does not know (versions 9 to 11, TGW
//! account ids) go to `aws.vpc.flow.<column>`; what only flowlog adds (enrichment,
//! community id) comes after, under ECS-like names (`source.geo.*`, `source.as.*`,
//! `cloud.instance.*`).
//!
//! A view binds a batch's columns and names once; per row it hands each attribute to a
//! [`Visitor`], so a sink fills its own (reused) messages without a map or a `Vec` per
//! record. Kept free of protobuf types so this crate stays light.

use flowlog_model::envelope::ENVELOPE_PREFIX;
use flowlog_model::FlowBatch;

use crate::columns::{Column, Values};
use crate::network::{address_family, transport_name, FlowTuple};

/// Which names attributes get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Naming {
    /// As the Collector's `awslogsencodingextension` writes them.
    #[default]
    Collector,
    /// The semantic conventions where they differ from the Collector.
    Semconv,
}

/// An attribute value; it borrows from the batch or, for values made per row, from the
/// view, only for the duration of the [`Visitor`] call.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    /// An array holding this one string (`aws.log.group.names` under the conventions).
    StrArray(&'a str),
    /// JSON text (tags as an object, security groups as an array): a map or an array.
    Json(&'a str),
}

/// Receives a row's attributes, resource first.
pub trait Visitor {
    /// An attribute of the `Resource`: where the flow was recorded.
    fn resource(&mut self, key: &str, value: AttributeValue<'_>);
    /// An attribute of the `LogRecord`.
    fn attribute(&mut self, key: &str, value: AttributeValue<'_>);
}

/// What a column becomes.
#[derive(Debug, Clone)]
enum Role {
    /// A resource attribute.
    Resource(&'static str),
    /// The log group or stream: a string to the Collector, an array to the conventions.
    LogName(&'static str),
    /// A record attribute, the value as stored.
    Attribute(String),
    /// A record attribute of a time column, as Unix seconds (`aws.vpc.flow.start`).
    Seconds(&'static str),
    /// A record attribute of a number written as text (`network.tcp.flags`).
    IntAsText(&'static str),
    /// A record attribute, lower-cased (`network.type`).
    Lower(&'static str),
    /// `flow-direction`: `ingress` -> `receive`, `egress` -> `transmit`.
    Direction,
    /// The protocol number, as its IANA keyword.
    Protocol,
    /// The record's time (kept apart from the attributes' columns).
    End,
    /// The account owning the log group: `cloud.account.id` when the record has none.
    Owner,
    /// One of the four addresses, sorted out after the row (see `addresses`).
    Address(usize),
    Skip,
}

/// Columns named by the Collector (or the conventions), by column name.
fn role(name: &str, naming: Naming) -> Role {
    match name {
        "account_id" => Role::Resource("cloud.account.id"),
        "region" => Role::Resource("cloud.region"),
        "envelope_log_group" => Role::LogName("aws.log.group.names"),
        "envelope_log_stream" => Role::LogName("aws.log.stream.names"),
        "envelope_owner" => Role::Owner,
        "end" => Role::End,
        "start" => Role::Seconds("aws.vpc.flow.start"),
        "version" => attribute("aws.vpc.flow.log.version"),
        "interface_id" => attribute("network.interface.name"),
        "srcport" => attribute("source.port"),
        "dstport" => attribute("destination.port"),
        "protocol" => Role::Protocol,
        "packets" => attribute("aws.vpc.flow.packets"),
        "bytes" => attribute("aws.vpc.flow.bytes"),
        "action" => attribute("aws.vpc.flow.action"),
        "log_status" => attribute("aws.vpc.flow.status"),
        "vpc_id" => attribute("aws.vpc.id"),
        "subnet_id" => attribute("aws.vpc.subnet.id"),
        "instance_id" => attribute("host.id"),
        "az_id" => attribute("aws.az.id"),
        "tcp_flags" => Role::IntAsText("network.tcp.flags"),
        "traffic_path" => Role::IntAsText("aws.vpc.flow.traffic_path"),
        "type" => Role::Lower("network.type"),
        "flow_direction" => Role::Direction,
        "sublocation_type" => attribute("aws.sublocation.type"),
        "sublocation_id" => attribute("aws.sublocation.id"),
        "pkt_src_aws_service" => attribute("aws.vpc.flow.source.service"),
        "pkt_dst_aws_service" => attribute("aws.vpc.flow.destination.service"),
        "reject_reason" => attribute("aws.vpc.flow.reject_reason"),
        "srcaddr" => Role::Address(SRC),
        "pkt_srcaddr" => Role::Address(PKT_SRC),
        "dstaddr" => Role::Address(DST),
        "pkt_dstaddr" => Role::Address(PKT_DST),
        "tgw_id" => attribute("aws.tgw.id"),
        "tgw_attachment_id" => attribute("aws.tgw.attachment.id"),
        "tgw_pair_attachment_id" => attribute("aws.tgw.attachment.pair.id"),
        "tgw_src_vpc_id" => attribute("aws.tgw.source.vpc.id"),
        "tgw_dst_vpc_id" => attribute("aws.tgw.destination.vpc.id"),
        "tgw_src_subnet_id" => attribute("aws.tgw.source.vpc.subnet.id"),
        "tgw_dst_subnet_id" => attribute("aws.tgw.destination.vpc.subnet.id"),
        "tgw_src_eni" => attribute("aws.tgw.source.eni.id"),
        "tgw_dst_eni" => attribute("aws.tgw.destination.eni.id"),
        "tgw_src_az_id" => attribute("aws.tgw.source.az.id"),
        "tgw_dst_az_id" => attribute("aws.tgw.destination.az.id"),
        // The Collector reads it to tell TGW logs apart and writes nothing.
        "resource_type" if naming == Naming::Collector => Role::Skip,
        // What flowlog's enrichment adds.
        "eni_instance_id" => attribute("cloud.instance.id"),
        "eni_instance_name" => attribute("cloud.instance.name"),
        "eni_tags" => attribute("cloud.instance.tags"),
        "geoip_database" | "asn_database" => Role::Attribute(format!("flowlog.enrichment.{name}")),
        _ => {
            if let Some(rest) = name.strip_prefix("ecs_") {
                // ecs-task-definition-arn -> aws.ecs.task.definition.arn, as the Collector.
                return Role::Attribute(format!("aws.ecs.{}", rest.replace('_', ".")));
            }
            if let Some(rest) = name.strip_prefix("eni_") {
                return Role::Attribute(format!("aws.vpc.flow.interface.{rest}"));
            }
            for (prefix, side) in [("src_", "source"), ("dst_", "destination")] {
                if let Some(rest) = name.strip_prefix(prefix) {
                    return Role::Attribute(side_name(side, prefix, rest));
                }
            }
            if name.starts_with(ENVELOPE_PREFIX) {
                return Role::Skip;
            }
            Role::Attribute(format!("aws.vpc.flow.{name}"))
        }
    }
}

fn attribute(key: &'static str) -> Role {
    Role::Attribute(key.to_string())
}

/// An enrichment column of one side: geo and AS under ECS's names (`source.geo.city_name`,
/// `source.geo.location.lat`, `source.as.organization.name`), the rest (instance, AWS
/// service, watch list) under `aws.vpc.flow.src.*` as in ECS.
fn side_name(side: &str, prefix: &str, rest: &str) -> String {
    match rest {
        "geo_lat" => format!("{side}.geo.location.lat"),
        "geo_lon" => format!("{side}.geo.location.lon"),
        "as_number" => format!("{side}.as.number"),
        "as_organization" => format!("{side}.as.organization.name"),
        _ => match rest.strip_prefix("geo_") {
            Some(geo) => format!("{side}.geo.{geo}"),
            None => format!("aws.vpc.flow.{}.{rest}", prefix.trim_end_matches('_')),
        },
    }
}

const SRC: usize = 0;
const PKT_SRC: usize = 1;
const DST: usize = 2;
const PKT_DST: usize = 3;

/// A batch bound for OpenTelemetry: columns and their names looked up once, rows mapped
/// on demand.
pub struct OtelView<'a> {
    naming: Naming,
    slots: Vec<(Role, Column<'a>)>,
    /// `end`: the record's time.
    end: Option<Column<'a>>,
    /// The four address columns, by `SRC`..`PKT_DST`.
    addresses: [Option<Column<'a>>; 4],
    /// The community id's inputs: protocol, source and destination port.
    tuple: [Option<Column<'a>>; 3],
    /// Whether the records have a `type` (IPv4/IPv6) of their own.
    has_type: bool,
}

impl<'a> OtelView<'a> {
    pub fn new(batch: &'a FlowBatch, naming: Naming) -> Self {
        let records = &batch.records;
        let mut addresses = [None; 4];
        let mut tuple = [None; 3];
        let mut has_type = false;
        let mut end = None;
        let mut slots = Vec::new();
        for (field, array) in records.schema_ref().fields().iter().zip(records.columns()) {
            if array.null_count() == array.len() {
                continue;
            }
            // Every column of a FlowBatch has a type Column reads.
            let Ok(column) = Column::new(field, array.as_ref()) else {
                continue;
            };
            let name = field.name().as_str();
            match name {
                "protocol" => tuple[0] = Some(column),
                "srcport" => tuple[1] = Some(column),
                "dstport" => tuple[2] = Some(column),
                "type" => has_type = true,
                _ => {}
            }
            match role(name, naming) {
                Role::Address(i) => addresses[i] = Some(column),
                Role::End => end = Some(column),
                Role::Skip => {}
                role => slots.push((role, column)),
            }
        }
        Self {
            naming,
            slots,
            end,
            addresses,
            tuple,
            has_type,
        }
    }

    /// The time of row `row` (its `end`) in Unix nanoseconds, if it has one.
    pub fn time_unix_nano(&self, row: usize) -> Option<u64> {
        self.end
            .as_ref()
            .and_then(|column| column.int(row))
            .and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| ms * 1_000_000)
    }

    /// Hands every attribute of row `row` to `visitor`: the resource's, then the record's.
    pub fn visit(&self, row: usize, visitor: &mut impl Visitor) {
        visitor.resource("cloud.provider", AttributeValue::Str("aws"));
        let mut owner = None;
        let mut has_account = false;
        for (role, column) in &self.slots {
            if column.is_null(row) {
                continue;
            }
            match role {
                Role::Resource(key) => {
                    has_account |= *key == "cloud.account.id";
                    visitor.resource(key, value(column, row));
                }
                Role::LogName(key) => {
                    if let Some(text) = column.text(row) {
                        let value = match self.naming {
                            Naming::Collector => AttributeValue::Str(text),
                            Naming::Semconv => AttributeValue::StrArray(text),
                        };
                        visitor.resource(key, value);
                    }
                }
                Role::Owner => owner = column.text(row),
                _ => {}
            }
        }
        // The account owning the log group, when the records do not name their own.
        if let (Some(owner), false) = (owner, has_account) {
            visitor.resource("cloud.account.id", AttributeValue::Str(owner));
        }

        for (role, column) in &self.slots {
            if column.is_null(row) {
                continue;
            }
            match role {
                Role::Attribute(key) => visitor.attribute(key, value(column, row)),
                Role::Seconds(key) => {
                    if let Some(ms) = column.int(row) {
                        visitor.attribute(key, AttributeValue::Int(ms.div_euclid(1000)));
                    }
                }
                Role::IntAsText(key) => {
                    if let Some(n) = column.int(row) {
                        let mut buffer = itoa::Buffer::new();
                        visitor.attribute(key, AttributeValue::Str(buffer.format(n)));
                    }
                }
                Role::Lower(key) => {
                    if let Some(text) = column.text(row) {
                        let lower = text.to_ascii_lowercase();
                        visitor.attribute(key, AttributeValue::Str(&lower));
                    }
                }
                Role::Direction => {
                    let direction = match column.text(row) {
                        Some("ingress") => "receive",
                        Some("egress") => "transmit",
                        _ => continue,
                    };
                    visitor.attribute("network.io.direction", AttributeValue::Str(direction));
                }
                Role::Protocol => {
                    if let Some(name) = column.int(row).and_then(transport_name) {
                        let key = match self.naming {
                            Naming::Collector => "network.protocol.name",
                            Naming::Semconv => "network.transport",
                        };
                        visitor.attribute(key, AttributeValue::Str(name));
                    }
                }
                _ => {}
            }
        }
        self.visit_addresses(row, visitor);
        if let Some(id) = self.community_id(row) {
            let id = std::str::from_utf8(&id).expect("base64 is ASCII");
            visitor.attribute("network.community_id", AttributeValue::Str(id));
        }
    }

    /// `source.address` is the packet's source (`pkt-srcaddr`) when there is one, else
    /// `srcaddr`; where they differ, `srcaddr` (the interface in between, a NAT gateway
    /// or a load balancer) is `network.local.address`. The same for destinations.
    fn visit_addresses(&self, row: usize, visitor: &mut impl Visitor) {
        let text = |i: usize| self.addresses[i].as_ref().and_then(|c| c.text(row));
        for (interface, packet, key) in [
            (SRC, PKT_SRC, "source.address"),
            (DST, PKT_DST, "destination.address"),
        ] {
            let Some(interface) = text(interface) else {
                continue;
            };
            match text(packet) {
                Some(packet) => {
                    visitor.attribute(key, AttributeValue::Str(packet));
                    if packet != interface {
                        visitor.attribute("network.local.address", AttributeValue::Str(interface));
                    }
                }
                None => visitor.attribute(key, AttributeValue::Str(interface)),
            }
        }
        if self.naming == Naming::Semconv && !self.has_type {
            if let Some(address) = text(SRC) {
                visitor.attribute("network.type", AttributeValue::Str(address_family(address)));
            }
        }
    }

    /// The Community ID of the flow's interface-level 5-tuple.
    fn community_id(&self, row: usize) -> Option<[u8; crate::network::COMMUNITY_ID_LEN]> {
        let text = |i: usize| self.addresses[i].as_ref().and_then(|c| c.text(row));
        let int = |i: usize| self.tuple[i].as_ref().and_then(|c| c.int(row));
        FlowTuple {
            src: text(SRC)?,
            dst: text(DST)?,
            protocol: u8::try_from(int(0)?).ok()?,
            src_port: u16::try_from(int(1).unwrap_or(0)).ok()?,
            dst_port: u16::try_from(int(2).unwrap_or(0)).ok()?,
        }
        .community_id()
    }
}

/// The value of a column as stored.
fn value<'a>(column: &Column<'a>, row: usize) -> AttributeValue<'a> {
    match column.values {
        Values::Text(_) => AttributeValue::Str(column.text(row).unwrap_or_default()),
        Values::Json(_) => AttributeValue::Json(column.json(row).unwrap_or_default()),
        Values::Float64(a) => AttributeValue::Double(a.value(column.index(row))),
        _ => AttributeValue::Int(column.int(row).unwrap_or_default()),
    }
}

/// A row's attributes collected in order, for tests and for `transform`-style output.
#[derive(Debug, Default, PartialEq)]
pub struct Collected {
    pub resource: Vec<(String, Owned)>,
    pub attributes: Vec<(String, Owned)>,
}

/// An [`AttributeValue`] that owns its text.
#[derive(Debug, Clone, PartialEq)]
pub enum Owned {
    Str(String),
    Int(i64),
    Double(f64),
    StrArray(Vec<String>),
    Json(String),
}

impl From<AttributeValue<'_>> for Owned {
    fn from(value: AttributeValue<'_>) -> Self {
        match value {
            AttributeValue::Str(s) => Owned::Str(s.to_string()),
            AttributeValue::Int(n) => Owned::Int(n),
            AttributeValue::Double(x) => Owned::Double(x),
            AttributeValue::StrArray(s) => Owned::StrArray(vec![s.to_string()]),
            AttributeValue::Json(s) => Owned::Json(s.to_string()),
        }
    }
}

impl Visitor for Collected {
    fn resource(&mut self, key: &str, value: AttributeValue<'_>) {
        self.resource.push((key.to_string(), value.into()));
    }
    fn attribute(&mut self, key: &str, value: AttributeValue<'_>) {
        self.attributes.push((key.to_string(), value.into()));
    }
}

impl OtelView<'_> {
    /// Row `row`'s attributes, collected.
    pub fn collect(&self, row: usize) -> Collected {
        let mut collected = Collected::default();
        self.visit(row, &mut collected);
        collected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        ArrayRef, Int32Array, Int64Array, RecordBatch, StringViewArray, TimestampMillisecondArray,
    };
    use arrow_buffer::ScalarBuffer;
    use flowlog_model::{canonical_schema, SourceId};
    use std::collections::HashMap;
    use std::sync::Arc;

    /// A one-row batch in the canonical schema with the given values set.
    fn batch(text: &[(&str, &str)], ints: &[(&str, i64)]) -> FlowBatch {
        let schema = canonical_schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| {
                let name = f.name().as_str();
                let text_value = text.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
                let int_value = ints.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
                match f.data_type() {
                    arrow_schema::DataType::Utf8View => {
                        Arc::new(StringViewArray::from(vec![text_value])) as ArrayRef
                    }
                    arrow_schema::DataType::Int32 => {
                        Arc::new(Int32Array::from(vec![int_value.map(|v| v as i32)]))
                    }
                    arrow_schema::DataType::Int64 => Arc::new(Int64Array::from(vec![int_value])),
                    _ => Arc::new(
                        TimestampMillisecondArray::from(vec![int_value]).with_timezone("UTC"),
                    ),
                }
            })
            .collect();
        FlowBatch::new(
            RecordBatch::try_new(schema, columns).unwrap(),
            SourceId::new("test"),
            ScalarBuffer::from(vec![1u64]),
        )
    }

    fn v5() -> FlowBatch {
        batch(
            &[
                ("account_id", "123456789012"),
                ("interface_id", "eni-1"),
                ("srcaddr", "10.0.0.1"),
                ("dstaddr", "10.0.0.2"),
                ("pkt_srcaddr", "203.0.113.5"),
                ("pkt_dstaddr", "10.0.0.2"),
                ("action", "ACCEPT"),
                ("log_status", "OK"),
                ("region", "us-east-1"),
                ("az_id", "use1-az1"),
                ("instance_id", "i-1"),
                ("type", "IPv4"),
                ("flow_direction", "ingress"),
                ("reject_reason", "BPA"),
            ],
            &[
                ("version", 5),
                ("srcport", 443),
                ("dstport", 50000),
                ("protocol", 6),
                ("packets", 3),
                ("bytes", 120),
                ("start", 1_700_000_000_000),
                ("end", 1_700_000_060_000),
                ("traffic_path", 8),
                ("tcp_flags", 19),
            ],
        )
    }

    fn by_key(pairs: &[(String, Owned)]) -> HashMap<&str, Owned> {
        pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
    }

    fn s(text: &str) -> Owned {
        Owned::Str(text.into())
    }

    #[test]
    fn a_v5_record_is_named_as_the_collector_names_it() {
        let b = v5();
        let view = OtelView::new(&b, Naming::Collector);
        assert_eq!(view.time_unix_nano(0), Some(1_700_000_060_000_000_000));
        let c = view.collect(0);
        let resource = by_key(&c.resource);
        assert_eq!(resource["cloud.provider"], s("aws"));
        assert_eq!(resource["cloud.account.id"], s("123456789012"));
        assert_eq!(resource["cloud.region"], s("us-east-1"));
        assert_eq!(resource.len(), 3);
        let attrs = by_key(&c.attributes);
        assert_eq!(attrs["aws.vpc.flow.log.version"], Owned::Int(5));
        assert_eq!(attrs["network.interface.name"], s("eni-1"));
        // The packet's source, and the interface in between as the local address.
        assert_eq!(attrs["source.address"], s("203.0.113.5"));
        assert_eq!(attrs["network.local.address"], s("10.0.0.1"));
        assert_eq!(attrs["destination.address"], s("10.0.0.2"));
        assert_eq!(attrs["source.port"], Owned::Int(443));
        assert_eq!(attrs["network.protocol.name"], s("tcp"));
        assert_eq!(attrs["network.type"], s("ipv4"));
        assert_eq!(attrs["network.io.direction"], s("receive"));
        assert_eq!(attrs["network.tcp.flags"], s("19"));
        assert_eq!(attrs["aws.vpc.flow.traffic_path"], s("8"));
        assert_eq!(attrs["aws.vpc.flow.start"], Owned::Int(1_700_000_000));
        assert_eq!(attrs["host.id"], s("i-1"));
        assert_eq!(attrs["aws.az.id"], s("use1-az1"));
        assert_eq!(attrs["aws.vpc.flow.reject_reason"], s("BPA"));
        assert!(matches!(&attrs["network.community_id"], Owned::Str(id) if id.starts_with("1:")));
        for absent in [
            "network.transport",
            "aws.vpc.flow.end",
            "aws.vpc.flow.protocol",
        ] {
            assert!(!attrs.contains_key(absent), "{absent}");
        }
    }

    #[test]
    fn the_conventions_differ_only_where_they_say_otherwise() {
        let b = v5();
        let collector = OtelView::new(&b, Naming::Collector).collect(0);
        let semconv = OtelView::new(&b, Naming::Semconv).collect(0);
        let (c, s) = (by_key(&collector.attributes), by_key(&semconv.attributes));
        assert_eq!(s["network.transport"], Owned::Str("tcp".into()));
        assert!(!s.contains_key("network.protocol.name"));
        assert_eq!(c.len(), s.len());
        assert_eq!(collector.resource, semconv.resource);
    }

    #[test]
    fn a_record_without_times_has_no_time() {
        let b = batch(&[("log_status", "NODATA")], &[]);
        let view = OtelView::new(&b, Naming::Collector);
        assert_eq!(view.time_unix_nano(0), None);
        let c = view.collect(0);
        assert_eq!(
            c.attributes,
            vec![("aws.vpc.flow.status".into(), s("NODATA"))]
        );
        assert_eq!(c.resource, vec![("cloud.provider".into(), s("aws"))]);
    }

    #[test]
    fn enrichment_sides_get_ecs_like_names() {
        assert_eq!(
            side_name("source", "src_", "geo_city_name"),
            "source.geo.city_name"
        );
        assert_eq!(
            side_name("source", "src_", "geo_lat"),
            "source.geo.location.lat"
        );
        assert_eq!(
            side_name("destination", "dst_", "as_organization"),
            "destination.as.organization.name"
        );
        assert_eq!(
            side_name("destination", "dst_", "watchlist_name"),
            "aws.vpc.flow.dst.watchlist_name"
        );
        assert!(matches!(role("ecs_task_definition_arn", Naming::Collector),
            Role::Attribute(k) if k == "aws.ecs.task.definition.arn"));
        assert!(matches!(role("next_hop_vpc_id", Naming::Collector),
            Role::Attribute(k) if k == "aws.vpc.flow.next_hop_vpc_id"));
    }
}
