//! `--to ecs`: Elastic Common Schema documents as Elastic's `aws.vpcflow` integration
//! writes them (same names and types), without its quirks: no `"-"` values, numbers as
//! numbers, no Community ID where flow logs cannot know it.
//!
//! The table below is the whole mapping; `schemas/ecs-fields.csv` and the Elasticsearch
//! component template in `schemas/` are generated from it ([`crate::schema`]).

use crate::derived::{
    first_present_bound, tcp_flags_bound, write_first_present, write_tcp_flags, ACCOUNT_ID,
    TRANSPORT,
};
use crate::json::Out;
use crate::network::{address_family, FlowTuple, COMMUNITY_ID_LEN, TCP_FLAG_NAMES};
use crate::template::{Derivation, Inputs, Member, Member::*, Value::*};
use crate::time::RFC3339_BOUND;

/// The ECS version Elastic's integration declares for these documents.
macro_rules! ecs_version {
    () => {
        "8.11.0"
    };
}
pub const ECS_VERSION: &str = ecs_version!();

/// The document.
pub(crate) static ECS: &[Member] = &[
    Members(&TIMESTAMP),
    Object(
        "ecs",
        &[Leaf(
            "version",
            Literal(concat!("\"", ecs_version!(), "\"")),
        )],
    ),
    Object(
        "data_stream",
        &[
            Leaf("type", Literal("\"logs\"")),
            Leaf("dataset", Literal("\"aws.vpcflow\"")),
            Leaf("namespace", Literal("\"default\"")),
        ],
    ),
    Object(
        "event",
        &[
            Leaf("kind", Literal("\"event\"")),
            Leaf("category", Literal("[\"network\"]")),
            Leaf(
                "type",
                Map {
                    field: "action",
                    cases: &[
                        ("ACCEPT", "[\"connection\",\"allowed\"]"),
                        ("REJECT", "[\"connection\",\"denied\"]"),
                    ],
                    otherwise: Some("[\"connection\"]"),
                },
            ),
            Leaf("action", Field("action")),
            Leaf(
                "outcome",
                Map {
                    field: "action",
                    cases: &[("ACCEPT", "\"success\""), ("REJECT", "\"failure\"")],
                    otherwise: None,
                },
            ),
            Leaf("reason", Field("reject_reason")),
            Leaf("start", Rfc3339("start")),
            Leaf("end", Rfc3339("end")),
            Leaf("module", Literal("\"aws\"")),
            Leaf("dataset", Literal("\"aws.vpcflow\"")),
            // When the pipeline in front of flowlog took the record (Firehose, a log
            // engine); Elastic's own pipeline would stamp its arrival.
            Leaf("ingested", Rfc3339("envelope_received")),
        ],
    ),
    Object(
        "source",
        &[
            Leaf("address", Field("srcaddr")),
            Leaf("ip", Field("srcaddr")),
            Leaf("port", Field("srcport")),
            Leaf("bytes", Field("bytes")),
            Leaf("packets", Field("packets")),
            Group(SOURCE_ENRICHED),
        ],
    ),
    Object(
        "destination",
        &[
            Leaf("address", Field("dstaddr")),
            Leaf("ip", Field("dstaddr")),
            Leaf("port", Field("dstport")),
            Group(DESTINATION_ENRICHED),
        ],
    ),
    Object(
        "network",
        &[
            Leaf("bytes", Field("bytes")),
            Leaf("packets", Field("packets")),
            Leaf("iana_number", FieldAsText("protocol")),
            Leaf("transport", Derived(&TRANSPORT)),
            Leaf("type", Derived(&NETWORK_TYPE)),
            Leaf("direction", Field("flow_direction")),
            Leaf("community_id", Derived(&COMMUNITY_ID)),
        ],
    ),
    Object(
        "related",
        &[
            Leaf("ip", Derived(&RELATED_IP)),
            Leaf("hosts", Derived(&RELATED_HOSTS)),
        ],
    ),
    Object(
        "cloud",
        &[
            Leaf("provider", Literal("\"aws\"")),
            Object("account", &[Leaf("id", Derived(&ACCOUNT_ID))]),
            Object(
                "instance",
                &[
                    Leaf("id", Derived(&INSTANCE_ID)),
                    Leaf("name", Field("eni_instance_name")),
                ],
            ),
            Leaf("region", Field("region")),
            Leaf("availability_zone", Field("az_id")),
        ],
    ),
    Object(
        "orchestrator",
        &[
            Object(
                "cluster",
                &[
                    Leaf("id", Field("ecs_cluster_arn")),
                    Leaf("name", Field("ecs_cluster_name")),
                ],
            ),
            Object(
                "resource",
                &[
                    Leaf("id", Field("ecs_container_instance_id")),
                    Leaf("name", Field("ecs_container_instance_arn")),
                ],
            ),
        ],
    ),
    Object("service", &[Leaf("name", Field("ecs_service_name"))]),
    // The recording interface's tags (its instance's over its own), as Elastic's AWS
    // integrations carry resource tags.
    Leaf("labels", Field("eni_tags")),
    Object(
        "flowlog",
        &[
            Object(
                "enrichment",
                &[
                    Leaf("geoip_database", Field("geoip_database")),
                    Leaf("asn_database", Field("asn_database")),
                ],
            ),
            Leaf("merged_count", Field("merged_count")),
        ],
    ),
    Object(
        "aws",
        &[
            // Where the record came through CloudWatch Logs, as Elastic's Serverless
            // Forwarder writes it.
            Object(
                "cloudwatch",
                &[
                    Leaf("log_group", Field("envelope_log_group")),
                    Leaf("log_stream", Field("envelope_log_stream")),
                    Leaf("event_id", Field("envelope_event_id")),
                ],
            ),
            Object(
                "vpcflow",
                &[
                    Leaf("version", Field("version")),
                    Leaf("account_id", Field("account_id")),
                    Leaf("interface_id", Field("interface_id")),
                    Leaf("instance_id", Field("instance_id")),
                    Leaf("action", Field("action")),
                    Leaf("log_status", Field("log_status")),
                    Leaf("tcp_flags", Field("tcp_flags")),
                    Leaf("tcp_flags_array", Derived(&TCP_FLAGS_ARRAY)),
                    Leaf("pkt_srcaddr", Field("pkt_srcaddr")),
                    Leaf("pkt_dstaddr", Field("pkt_dstaddr")),
                    Leaf("pkt_src_service", Field("pkt_src_aws_service")),
                    Leaf("pkt_dst_service", Field("pkt_dst_aws_service")),
                    Object(
                        "sublocation",
                        &[
                            Leaf("type", Field("sublocation_type")),
                            Leaf("id", Field("sublocation_id")),
                        ],
                    ),
                    Object(
                        "interface",
                        &[
                            Leaf("instance_id", Field("eni_instance_id")),
                            Leaf("security_groups", Field("eni_security_groups")),
                            Leaf("subnet_id", Field("eni_subnet_id")),
                            Leaf("vpc_id", Field("eni_vpc_id")),
                            Leaf("type", Field("eni_type")),
                            Leaf("requester_id", Field("eni_requester_id")),
                            Leaf("description", Field("eni_description")),
                        ],
                    ),
                    Object("src", SRC_AWS),
                    Object("dst", DST_AWS),
                    // vpc_id, subnet_id, type, traffic_path, the ECS-task ids, tgw_*, and every
                    // later or unknown field, under their names.
                    Rest,
                ],
            ),
        ],
    ),
];

/// `geo` and `as` of one side, as Elastic's geoip processor writes them (its default
/// properties plus continent code, postal code and time zone), and what the ENI inventory,
/// ip-ranges.json and the watch lists say about the address under `aws.vpcflow.src|dst`.
macro_rules! side_enriched {
    ($enriched:ident, $aws:ident, $side:literal) => {
        static $enriched: &[Member] = &[
            Object(
                "geo",
                &[
                    Leaf(
                        "continent_code",
                        Field(concat!($side, "_geo_continent_code")),
                    ),
                    Leaf(
                        "continent_name",
                        Field(concat!($side, "_geo_continent_name")),
                    ),
                    Leaf(
                        "country_iso_code",
                        Field(concat!($side, "_geo_country_iso_code")),
                    ),
                    Leaf("country_name", Field(concat!($side, "_geo_country_name"))),
                    Leaf(
                        "region_iso_code",
                        Field(concat!($side, "_geo_region_iso_code")),
                    ),
                    Leaf("region_name", Field(concat!($side, "_geo_region_name"))),
                    Leaf("city_name", Field(concat!($side, "_geo_city_name"))),
                    Leaf("postal_code", Field(concat!($side, "_geo_postal_code"))),
                    Leaf("timezone", Field(concat!($side, "_geo_timezone"))),
                    Object(
                        "location",
                        &[
                            Leaf("lat", Field(concat!($side, "_geo_lat"))),
                            Leaf("lon", Field(concat!($side, "_geo_lon"))),
                        ],
                    ),
                ],
            ),
            Object(
                "as",
                &[
                    Leaf("number", Field(concat!($side, "_as_number"))),
                    Object(
                        "organization",
                        &[Leaf("name", Field(concat!($side, "_as_organization")))],
                    ),
                ],
            ),
        ];
        static $aws: &[Member] = &[
            Leaf("instance_id", Field(concat!($side, "_instance_id"))),
            Leaf("instance_name", Field(concat!($side, "_instance_name"))),
            Leaf("interface_id", Field(concat!($side, "_interface_id"))),
            Leaf("service", Field(concat!($side, "_aws_service"))),
            Leaf("region", Field(concat!($side, "_aws_region"))),
            Object(
                "watchlist",
                &[
                    Leaf("entry", Field(concat!($side, "_watchlist"))),
                    Leaf("list", Field(concat!($side, "_watchlist_name"))),
                ],
            ),
        ];
    };
}
side_enriched!(SOURCE_ENRICHED, SRC_AWS, "src");
side_enriched!(DESTINATION_ENRICHED, DST_AWS, "dst");

/// `cloud.instance.id`: the record's instance (version 3 on), else the one the ENI
/// inventory attaches to the recording interface.
static INSTANCE_ID: Derivation = Derivation {
    inputs: &["instance_id", "eni_instance_id"],
    bound: first_present_bound,
    write: write_first_present,
};

/// `related.hosts`: the names of the instances at either end (ENI inventory).
static RELATED_HOSTS: Derivation = Derivation {
    inputs: &["src_instance_name", "dst_instance_name"],
    bound: |inputs| 4 + inputs.value_bound(0) + inputs.value_bound(1),
    write: |inputs, row, out| {
        let (a, b) = (inputs.text(0, row), inputs.text(1, row));
        let names: &[Option<&str>] = if a == b { &[a] } else { &[a, b] };
        let mut first = true;
        for name in names.iter().flatten() {
            out.byte(if first { b'[' } else { b',' });
            out.str(name);
            first = false;
        }
        if !first {
            out.byte(b']');
        }
        !first
    },
};

/// `@timestamp`: when the flow's last packet was seen (`end`), else its first (`start`),
/// else (a custom format without either) when flowlog read the record, as Elastic's agent
/// would stamp it: data streams refuse documents without one.
static TIMESTAMP: Derivation = Derivation {
    inputs: &["end", "start"],
    bound: |_| 16 + RFC3339_BOUND,
    write: |inputs, row, out| {
        let time = inputs
            .int(0, row)
            .or_else(|| inputs.int(1, row))
            .unwrap_or_else(crate::time::now_millis);
        out.bytes(b",\"@timestamp\":");
        inputs.write_rfc3339(out, time);
        true
    },
};

/// `ipv4` or `ipv6`, from the source address (as Elastic does; `type` can say `EFA`).
static NETWORK_TYPE: Derivation = Derivation {
    inputs: &["srcaddr"],
    bound: |_| 6,
    write: |inputs, row, out| match inputs.text(0, row) {
        Some(address) => {
            out.plain_str(address_family(address));
            true
        }
        None => false,
    },
};

pub(crate) static COMMUNITY_ID: Derivation = Derivation {
    inputs: &["srcaddr", "dstaddr", "protocol", "srcport", "dstport"],
    bound: |_| COMMUNITY_ID_LEN + 2,
    write: write_community_id,
};

fn write_community_id(inputs: &Inputs<'_>, row: usize, out: &mut Out<'_>) -> bool {
    let tuple = (|| {
        Some(FlowTuple {
            src: inputs.text(0, row)?,
            dst: inputs.text(1, row)?,
            protocol: u8::try_from(inputs.int(2, row)?).ok()?,
            src_port: u16::try_from(inputs.int(3, row).unwrap_or(0)).ok()?,
            dst_port: u16::try_from(inputs.int(4, row).unwrap_or(0)).ok()?,
        })
    })();
    match tuple.and_then(|t| t.community_id()) {
        Some(id) => {
            out.byte(b'"');
            out.bytes(&id);
            out.byte(b'"');
            true
        }
        None => false,
    }
}

/// Every address of the record, once each: the interface-level pair and, where they
/// differ, the packet-level pair (so a search for a NATed address finds its flows).
static RELATED_IP: Derivation = Derivation {
    inputs: &["srcaddr", "dstaddr", "pkt_srcaddr", "pkt_dstaddr"],
    bound: |inputs| 2 + (0..4).map(|i| inputs.value_bound(i) + 1).sum::<usize>(),
    write: |inputs, row, out| {
        let mut seen: [Option<&str>; 4] = [None; 4];
        let mut n = 0;
        // Each address starts with a comma; the first becomes the opening bracket.
        let open = out.pos();
        for i in 0..4 {
            if let Some(ip) = inputs.text(i, row) {
                if !seen[..n].contains(&Some(ip)) {
                    out.byte(b',');
                    inputs.write(i, row, out);
                    seen[n] = Some(ip);
                    n += 1;
                }
            }
        }
        if n == 0 {
            return false;
        }
        out.set(open, b'[');
        out.byte(b']');
        true
    },
};

/// The names of the TCP flags set, as Elastic spells them (`18` -> `["syn","ack"]`).
static TCP_FLAGS_ARRAY: Derivation = Derivation {
    inputs: &["tcp_flags"],
    bound: tcp_flags_bound,
    write: |inputs, row, out| write_tcp_flags(inputs, row, out, &TCP_FLAG_NAMES),
};
