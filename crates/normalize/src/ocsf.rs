//! `--to ocsf`: OCSF Network Activity (class 4001) events, as Amazon Security Lake maps VPC
//! flow logs (source version 1 = OCSF 1.0.0-rc.2, source version 2 = OCSF 1.1.0), and the
//! same mapping in OCSF 1.8.0.
//!
//! Security Lake's rules, and what this mapping adds where they are silent:
//! - `action` decides activity, action, disposition and status (ACCEPT: 6 Traffic, 1 Allowed,
//!   1 Allowed, 1 Success; REJECT: 5 Refuse, 2 Denied, 2 Blocked, 2 Failure). A record
//!   without `action` (Transit Gateway, NODATA, SKIPDATA) is activity 6 Traffic when it
//!   names an address, else 0 Unknown; its action, disposition and status are 0 Unknown.
//! - When `pkt-srcaddr` differs from `srcaddr`, the endpoint's `ip` is the packet address
//!   and `intermediate_ips` holds `srcaddr` (the same for the destination).
//! - The recording interface's ids (interface, VPC, subnet, instance) go on the endpoint the
//!   flow direction names: ingress the destination, egress the source. An endpoint with no
//!   address (NODATA and SKIPDATA records have none) is the interface itself and carries
//!   them too, so every event names its endpoints as the schema requires. Ids that no
//!   endpoint takes (records without `flow-direction`) go to `unmapped`.
//! - Transit Gateway records name their endpoints by the attachment ENIs, VPCs and subnets
//!   (`tgw-src-eni` ...).
//! - `boundary_id` is `traffic-path` + 3 (1 Same VPC -> 4 ... 8 Internet Gateway -> 11),
//!   99 Other without one.
//! - `time` is `start` (else `end`), in milliseconds; a custom format with neither gets the
//!   time flowlog read the record, as OCSF requires a time.
//! - Every field not mapped goes to `unmapped` under its own name; `"-"` never appears.

use crate::columnar::Kind;
use crate::derived::{first_present_bound, write_first_present, ACCOUNT_ID};
use crate::json::{Number, Out};
use crate::template::{Derivation, Inputs, Member, Member::*, Value::*};
use crate::time::RFC3339_BOUND;

/// The OCSF versions events can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcsfVersion {
    /// Security Lake source version 1.
    V1_0_0Rc2,
    /// Security Lake source version 2 (the default).
    V1_1_0,
    /// The latest 1.x schema.
    V1_8_0,
}

impl OcsfVersion {
    pub const ALL: [OcsfVersion; 3] = [Self::V1_0_0Rc2, Self::V1_1_0, Self::V1_8_0];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_0_0Rc2 => "1.0.0-rc.2",
            Self::V1_1_0 => "1.1.0",
            Self::V1_8_0 => "1.8.0",
        }
    }

    pub(crate) fn table(self) -> &'static [Member] {
        match self {
            Self::V1_0_0Rc2 => OCSF_1_0_0_RC2,
            Self::V1_1_0 => OCSF_1_1_0,
            Self::V1_8_0 => OCSF_1_8_0,
        }
    }
}

impl std::str::FromStr for OcsfVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown OCSF version `{s}` (1.0.0-rc.2, 1.1.0 or 1.8.0)"))
    }
}

/// `metadata`, for an OCSF version and its profiles.
macro_rules! metadata {
    ($version:literal, $profiles:literal, $logged:expr) => {
        Object(
            "metadata",
            &[
                Leaf("version", Literal(concat!("\"", $version, "\""))),
                Leaf("profiles", Literal($profiles)),
                Object(
                    "product",
                    &[
                        Leaf("name", Literal("\"Amazon VPC\"")),
                        Leaf("vendor_name", Literal("\"AWS\"")),
                        Object("feature", &[Leaf("name", Literal("\"Flowlogs\""))]),
                        Leaf("version", FieldAsText("version")),
                    ],
                ),
                Group($logged),
            ],
        )
    };
}

/// What the envelope says about where the record was logged (1.1.0 and later): the
/// CloudWatch Logs group, and when the pipeline in front of flowlog took the record.
static LOGGED: &[Member] = &[
    Leaf("log_name", Field("envelope_log_group")),
    Leaf("logged_time", EpochMillis("envelope_received")),
    Leaf("logged_time_dt", Rfc3339("envelope_received")),
];

/// 1.0.0-rc.2 has neither `log_name` nor the datetime profile.
static LOGGED_RC2: &[Member] = &[Leaf("logged_time", EpochMillis("envelope_received"))];

static OCSF_1_1_0: &[Member] = &[
    metadata!(
        "1.1.0",
        "[\"cloud\",\"security_control\",\"datetime\"]",
        LOGGED
    ),
    Group(SINCE_1_1_0),
];

/// 1.8.0 needs nothing 1.1.0 lacks, and refuses nothing it writes.
static OCSF_1_8_0: &[Member] = &[
    metadata!(
        "1.8.0",
        "[\"cloud\",\"security_control\",\"datetime\"]",
        LOGGED
    ),
    Group(SINCE_1_1_0),
];

/// Everything after `metadata` in 1.1.0 and later.
static SINCE_1_1_0: &[Member] = &[
    Group(CLASS),
    Members(&DISPOSITION),
    Members(&TIME_WITH_DT),
    Group(DATETIMES),
    Group(CLOUD),
    Group(BODY),
    Leaf("observables", Derived(&OBSERVABLES)),
];

/// Source version 1: `cloud.account_uid`, times in milliseconds, no `action`, no
/// datetime profile and no observables (Security Lake wrote none).
static OCSF_1_0_0_RC2: &[Member] = &[
    metadata!("1.0.0-rc.2", "[\"cloud\",\"security_control\"]", LOGGED_RC2),
    Group(CLASS),
    Members(&DISPOSITION_RC2),
    Members(&TIME),
    Leaf("start_time", EpochMillis("start")),
    Leaf("end_time", EpochMillis("end")),
    Object(
        "cloud",
        &[
            Leaf("provider", Literal("\"AWS\"")),
            Leaf("account_uid", Derived(&ACCOUNT_ID)),
            Leaf("region", Field("region")),
            Leaf("zone", Field("az_id")),
        ],
    ),
    Group(BODY),
];

/// Class, category, severity and activity.
static CLASS: &[Member] = &[
    Leaf("category_uid", Literal("4")),
    Leaf("category_name", Literal("\"Network Activity\"")),
    Leaf("class_uid", Literal("4001")),
    Leaf("class_name", Literal("\"Network Activity\"")),
    Leaf("severity_id", Literal("1")),
    Leaf("severity", Literal("\"Informational\"")),
    Members(&ACTIVITY),
];

/// The datetime profile's start and end.
static DATETIMES: &[Member] = &[
    Leaf("start_time_dt", Rfc3339("start")),
    Leaf("end_time_dt", Rfc3339("end")),
];

static CLOUD: &[Member] = &[Object(
    "cloud",
    &[
        Leaf("provider", Literal("\"AWS\"")),
        Object("account", &[Leaf("uid", Derived(&ACCOUNT_ID))]),
        Leaf("region", Field("region")),
        Leaf("zone", Field("az_id")),
    ],
)];

/// Everything the versions share after the header.
static BODY: &[Member] = &[
    Leaf("status_code", Field("log_status")),
    // Records `[transform.reduce]` merged: OCSF's count of events in one logical group
    // between start_time and end_time.
    Leaf("count", Field("merged_count")),
    Object("src_endpoint", SRC_ENDPOINT),
    Object("dst_endpoint", DST_ENDPOINT),
    Object("connection_info", CONNECTION_INFO),
    Object(
        "traffic",
        &[
            Leaf("bytes", Field("bytes")),
            Leaf("packets", Field("packets")),
        ],
    ),
    Object("unmapped", &[Members(&UNMAPPED_INTERFACE), Rest]),
];

/// One endpoint: its address, port, service, ids, the instance holding the address, and
/// where the address is (GeoIP/ASN enrichment).
macro_rules! endpoint {
    ($endpoint:ident, $address:ident, $ids:ident, $service:ident, $coordinates:ident, $side:literal) => {
        static $endpoint: &[Member] = &[
            Members(&$address),
            Leaf("port", Field(concat!($side, "port"))),
            Leaf("svc_name", Derived(&$service)),
            Members(&$ids),
            Leaf("name", Field(concat!($side, "_instance_name"))),
            Object(
                "location",
                &[
                    Leaf("city", Field(concat!($side, "_geo_city_name"))),
                    Leaf("country", Field(concat!($side, "_geo_country_iso_code"))),
                    Leaf("continent", Field(concat!($side, "_geo_continent_name"))),
                    Leaf("region", Field(concat!($side, "_geo_region_name"))),
                    Leaf("postal_code", Field(concat!($side, "_geo_postal_code"))),
                    Leaf("isp", Field(concat!($side, "_as_organization"))),
                    Leaf("coordinates", Derived(&$coordinates)),
                ],
            ),
        ];

        /// The AWS service of the packet address (version 5), else of the address by
        /// ip-ranges.json.
        static $service: Derivation = Derivation {
            inputs: &[
                concat!("pkt_", $side, "_aws_service"),
                concat!($side, "_aws_service"),
            ],
            bound: first_present_bound,
            write: write_first_present,
        };

        static $coordinates: Derivation = Derivation {
            inputs: &[concat!($side, "_geo_lon"), concat!($side, "_geo_lat")],
            bound: |inputs| 3 + inputs.value_bound(0) + inputs.value_bound(1),
            write: write_coordinates,
        };
    };
}
endpoint!(
    SRC_ENDPOINT,
    SRC_ADDRESS,
    SRC_IDS,
    SRC_SERVICE,
    SRC_COORDINATES,
    "src"
);
endpoint!(
    DST_ENDPOINT,
    DST_ADDRESS,
    DST_IDS,
    DST_SERVICE,
    DST_COORDINATES,
    "dst"
);

static CONNECTION_INFO: &[Member] = &[
    Leaf("protocol_num", Field("protocol")),
    Leaf("protocol_ver", Field("type")),
    Leaf("tcp_flags", Field("tcp_flags")),
    Members(&BOUNDARY),
    Members(&DIRECTION),
];

// Inputs shared by the derivations below, by position.
const ACTION: usize = 0;
const SRCADDR: usize = 1;

/// activity_id / activity_name / type_uid / type_name.
static ACTIVITY: Derivation = Derivation {
    inputs: &["action", "srcaddr"],
    bound: |_| 128,
    write: |inputs, row, out| {
        let member: &[u8] = match action(inputs, row) {
            Some(true) => b",\"activity_id\":6,\"activity_name\":\"Traffic\",\"type_uid\":400106,\"type_name\":\"Network Activity: Traffic\"",
            Some(false) => b",\"activity_id\":5,\"activity_name\":\"Refuse\",\"type_uid\":400105,\"type_name\":\"Network Activity: Refuse\"",
            None if inputs.text(SRCADDR, row).is_some() => b",\"activity_id\":6,\"activity_name\":\"Traffic\",\"type_uid\":400106,\"type_name\":\"Network Activity: Traffic\"",
            None => b",\"activity_id\":0,\"activity_name\":\"Unknown\",\"type_uid\":400100,\"type_name\":\"Network Activity: Unknown\"",
        };
        out.bytes(member);
        true
    },
};

/// action / action_id / disposition / disposition_id / status / status_id.
static DISPOSITION: Derivation = Derivation {
    inputs: &["action"],
    bound: |_| 160,
    write: |inputs, row, out| {
        out.bytes(match action(inputs, row) {
            Some(true) => b",\"action_id\":1,\"action\":\"Allowed\",\"disposition_id\":1,\"disposition\":\"Allowed\",\"status_id\":1,\"status\":\"Success\"",
            Some(false) => b",\"action_id\":2,\"action\":\"Denied\",\"disposition_id\":2,\"disposition\":\"Blocked\",\"status_id\":2,\"status\":\"Failure\"",
            None => b",\"action_id\":0,\"action\":\"Unknown\",\"disposition_id\":0,\"disposition\":\"Unknown\",\"status_id\":0,\"status\":\"Unknown\"",
        });
        true
    },
};

/// 1.0.0-rc.2 has no action attributes; disposition_id is required there.
static DISPOSITION_RC2: Derivation = Derivation {
    inputs: &["action"],
    bound: |_| 128,
    write: |inputs, row, out| {
        out.bytes(match action(inputs, row) {
            Some(true) => b",\"disposition_id\":1,\"disposition\":\"Allowed\",\"status_id\":1,\"status\":\"Success\"",
            Some(false) => b",\"disposition_id\":2,\"disposition\":\"Blocked\",\"status_id\":2,\"status\":\"Failure\"",
            None => b",\"disposition_id\":0,\"disposition\":\"Unknown\",\"status_id\":0,\"status\":\"Unknown\"",
        });
        true
    },
};

/// Some(true) for ACCEPT, Some(false) for REJECT, None otherwise.
#[inline]
fn action(inputs: &Inputs<'_>, row: usize) -> Option<bool> {
    match inputs.text(ACTION, row) {
        Some("ACCEPT") => Some(true),
        Some("REJECT") => Some(false),
        _ => None,
    }
}

/// `time` (milliseconds) and, with the datetime profile, `time_dt`: start, else end, else
/// (a custom format without either) when flowlog read the record, since OCSF requires a time.
static TIME: Derivation = Derivation {
    inputs: &["start", "end"],
    bound: |_| 32,
    write: |inputs, row, out| {
        out.bytes(b",\"time\":");
        Number::integer(event_time(inputs, row)).write(out);
        true
    },
};

static TIME_WITH_DT: Derivation = Derivation {
    inputs: &["start", "end"],
    bound: |_| 48 + RFC3339_BOUND,
    write: |inputs, row, out| {
        let time = event_time(inputs, row);
        out.bytes(b",\"time\":");
        Number::integer(time).write(out);
        out.bytes(b",\"time_dt\":");
        inputs.write_rfc3339(out, time);
        true
    },
};

fn event_time(inputs: &Inputs<'_>, row: usize) -> i64 {
    inputs
        .int(0, row)
        .or_else(|| inputs.int(1, row))
        .unwrap_or_else(crate::time::now_millis)
}

/// `[longitude, latitude]`, OCSF's order (GeoJSON's).
fn write_coordinates(inputs: &Inputs<'_>, row: usize, out: &mut Out<'_>) -> bool {
    let before = out.pos();
    out.byte(b'[');
    if !inputs.write(0, row, out) {
        out.truncate(before);
        return false;
    }
    out.byte(b',');
    if !inputs.write(1, row, out) {
        out.truncate(before);
        return false;
    }
    out.byte(b']');
    true
}

/// The inputs of an endpoint's address and id derivations, one side at a time.
macro_rules! side_inputs {
    ($addr:literal, $pkt:literal, $eni:literal, $vpc:literal, $subnet:literal, $instance:literal) => {
        &[
            "flow_direction",
            "interface_id",
            "vpc_id",
            "subnet_id",
            "instance_id",
            $addr,
            $pkt,
            $eni,
            $vpc,
            $subnet,
            $instance,
        ]
    };
}
const DIRECTION_IN: usize = 0;
const INTERFACE_ID: usize = 1;
const VPC_ID: usize = 2;
const SUBNET_ID: usize = 3;
const INSTANCE_ID: usize = 4;
const ADDR: usize = 5;
const PKT_ADDR: usize = ADDR + 1;
const TGW_ENI: usize = ADDR + 2;
const TGW_VPC: usize = 8;
const TGW_SUBNET: usize = 9;
/// The instance holding the address, by the ENI inventory.
const ENRICHED_INSTANCE: usize = 10;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

const SRC_INPUTS: &[&str] = side_inputs!(
    "srcaddr",
    "pkt_srcaddr",
    "tgw_src_eni",
    "tgw_src_vpc_id",
    "tgw_src_subnet_id",
    "src_instance_id"
);
const DST_INPUTS: &[&str] = side_inputs!(
    "dstaddr",
    "pkt_dstaddr",
    "tgw_dst_eni",
    "tgw_dst_vpc_id",
    "tgw_dst_subnet_id",
    "dst_instance_id"
);

static SRC_ADDRESS: Derivation = Derivation {
    inputs: SRC_INPUTS,
    bound: address_bound,
    write: write_address,
};
static DST_ADDRESS: Derivation = Derivation {
    inputs: DST_INPUTS,
    bound: address_bound,
    write: write_address,
};

fn address_bound(inputs: &Inputs<'_>) -> usize {
    32 + inputs.value_bound(ADDR) + inputs.value_bound(PKT_ADDR)
}

/// The endpoint's address: `ip`, and `intermediate_ips` when the packet address differs.
/// `addr` is the input index of the interface-level address; the packet-level one follows.
fn endpoint_ip<'a>(
    inputs: &Inputs<'a>,
    row: usize,
    addr: usize,
) -> (Option<&'a str>, Option<&'a str>) {
    let interface_level = inputs.text(addr, row);
    match (inputs.text(addr + 1, row), interface_level) {
        (Some(pkt), Some(addr)) if pkt != addr => (Some(pkt), Some(addr)),
        (Some(pkt), None) => (Some(pkt), None),
        _ => (interface_level, None),
    }
}

fn write_address(inputs: &Inputs<'_>, row: usize, out: &mut Out<'_>) -> bool {
    let (ip, intermediate) = endpoint_ip(inputs, row, ADDR);
    if let Some(ip) = ip {
        out.bytes(b",\"ip\":");
        out.str(ip);
    }
    if let Some(intermediate) = intermediate {
        out.bytes(b",\"intermediate_ips\":[");
        out.str(intermediate);
        out.byte(b']');
    }
    ip.is_some()
}

static SRC_IDS: Derivation = Derivation {
    inputs: SRC_INPUTS,
    bound: ids_bound,
    write: |inputs, row, out| write_ids(inputs, row, out, Side::Src),
};
static DST_IDS: Derivation = Derivation {
    inputs: DST_INPUTS,
    bound: ids_bound,
    write: |inputs, row, out| write_ids(inputs, row, out, Side::Dst),
};

fn ids_bound(inputs: &Inputs<'_>) -> usize {
    [
        INTERFACE_ID,
        VPC_ID,
        SUBNET_ID,
        INSTANCE_ID,
        TGW_ENI,
        TGW_VPC,
        TGW_SUBNET,
        ENRICHED_INSTANCE,
    ]
    .iter()
    .map(|&i| 20 + inputs.value_bound(i))
    .sum()
}

/// Which side the flow direction names, if any.
fn direction_side(inputs: &Inputs<'_>, row: usize) -> Option<Side> {
    match inputs.text(DIRECTION_IN, row) {
        Some("ingress") => Some(Side::Dst),
        Some("egress") => Some(Side::Src),
        _ => None,
    }
}

/// Whether the recording interface's ids go on `side` (see the module documentation).
/// `addr` is the input index of that side's address, followed by its packet address and
/// Transit Gateway ENI; the flow direction is input 0.
fn interface_on(inputs: &Inputs<'_>, row: usize, side: Side, addr: usize) -> bool {
    direction_side(inputs, row) == Some(side)
        || (endpoint_ip(inputs, row, addr).0.is_none() && inputs.text(addr + 2, row).is_none())
}

const ID_MEMBERS: [(usize, &[u8]); 4] = [
    (INTERFACE_ID, b",\"interface_uid\":"),
    (VPC_ID, b",\"vpc_uid\":"),
    (SUBNET_ID, b",\"subnet_uid\":"),
    (INSTANCE_ID, b",\"instance_uid\":"),
];

fn write_ids(inputs: &Inputs<'_>, row: usize, out: &mut Out<'_>, side: Side) -> bool {
    let start = out.pos();
    let tgw = [
        (TGW_ENI, b",\"interface_uid\":" as &[u8]),
        (TGW_VPC, b",\"vpc_uid\":"),
        (TGW_SUBNET, b",\"subnet_uid\":"),
    ];
    let mut instance_written = false;
    if inputs.text(TGW_ENI, row).is_some() {
        write_members(inputs, row, out, &tgw);
    } else if interface_on(inputs, row, side, ADDR) {
        write_members(inputs, row, out, &ID_MEMBERS);
        instance_written = inputs.text(INSTANCE_ID, row).is_some();
    }
    if !instance_written {
        if let Some(instance) = inputs.text(ENRICHED_INSTANCE, row) {
            out.bytes(b",\"instance_uid\":");
            out.str(instance);
        }
    }
    out.pos() > start
}

fn write_members(inputs: &Inputs<'_>, row: usize, out: &mut Out<'_>, members: &[(usize, &[u8])]) {
    for &(i, key) in members {
        if let Some(value) = inputs.text(i, row) {
            out.bytes(key);
            out.str(value);
        }
    }
}

/// The interface's ids in `unmapped` when neither endpoint took them.
static UNMAPPED_INTERFACE: Derivation = Derivation {
    inputs: &[
        "flow_direction",
        "interface_id",
        "vpc_id",
        "subnet_id",
        "instance_id",
        "srcaddr",
        "pkt_srcaddr",
        "dstaddr",
        "pkt_dstaddr",
    ],
    bound: |inputs| {
        [INTERFACE_ID, VPC_ID, SUBNET_ID, INSTANCE_ID]
            .iter()
            .map(|&i| 20 + inputs.value_bound(i))
            .sum()
    },
    write: |inputs, row, out| {
        let has_address =
            |addr: usize| inputs.text(addr, row).is_some() || inputs.text(addr + 1, row).is_some();
        // Inputs 5-6 are the source's addresses, 7-8 the destination's.
        let placed = direction_side(inputs, row).is_some() || !has_address(5) || !has_address(7);
        if placed {
            return false;
        }
        let start = out.pos();
        write_members(
            inputs,
            row,
            out,
            &[
                (INTERFACE_ID, b",\"interface_id\":"),
                (VPC_ID, b",\"vpc_id\":"),
                (SUBNET_ID, b",\"subnet_id\":"),
                (INSTANCE_ID, b",\"instance_id\":"),
            ],
        );
        out.pos() > start
    },
};

/// boundary_id / boundary from traffic-path.
static BOUNDARY: Derivation = Derivation {
    inputs: &["traffic_path"],
    bound: |_| 64,
    write: |inputs, row, out| {
        const NAMES: [&str; 8] = [
            "Same VPC",
            "Internet/VPC Gateway",
            "Virtual Private Gateway",
            "Intra-region VPC",
            "Inter-region VPC",
            "Local Gateway",
            "Gateway VPC",
            "Internet Gateway",
        ];
        let (id, name) = match inputs.int(0, row) {
            Some(path @ 1..=8) => (path + 3, NAMES[path as usize - 1]),
            _ => (99, "Other"),
        };
        out.bytes(b",\"boundary_id\":");
        Number::integer(id).write(out);
        out.bytes(b",\"boundary\":");
        out.plain_str(name);
        true
    },
};

/// direction_id / direction from flow-direction (required by the schema: 0 Unknown
/// without one).
static DIRECTION: Derivation = Derivation {
    inputs: &["flow_direction"],
    bound: |_| 48,
    write: |inputs, row, out| {
        out.bytes(match inputs.text(0, row) {
            Some("ingress") => b",\"direction_id\":1,\"direction\":\"Inbound\"",
            Some("egress") => b",\"direction_id\":2,\"direction\":\"Outbound\"",
            _ => b",\"direction_id\":0,\"direction\":\"Unknown\"",
        });
        true
    },
};

/// Every address and instance id the event names, as observables.
static OBSERVABLES: Derivation = Derivation {
    // Direction and interface ids as for the endpoints; then each side's address, packet
    // address and Transit Gateway ENI.
    inputs: &[
        "flow_direction",
        "interface_id",
        "vpc_id",
        "subnet_id",
        "instance_id",
        "srcaddr",
        "pkt_srcaddr",
        "tgw_src_eni",
        "dstaddr",
        "pkt_dstaddr",
        "tgw_dst_eni",
    ],
    bound: |inputs| {
        let per_side = |addr: usize| {
            2 * (100 + inputs.value_bound(addr).max(inputs.value_bound(addr + 1)))
                + 100
                + inputs.value_bound(INSTANCE_ID)
        };
        2 + per_side(5) + per_side(8)
    },
    write: |inputs, row, out| {
        // Each observable starts with a comma; the first becomes the opening bracket.
        let open = out.pos();
        for (side, endpoint, addr) in [
            (Side::Src, "src_endpoint", 5),
            (Side::Dst, "dst_endpoint", 8),
        ] {
            let (ip, intermediate) = endpoint_ip(inputs, row, addr);
            if let Some(ip) = ip {
                observable(out, endpoint, ".ip", "IP Address", 2, ip);
            }
            if let Some(ip) = intermediate {
                observable(out, endpoint, ".intermediate_ips", "IP Address", 2, ip);
            }
            if interface_on(inputs, row, side, addr) && inputs.text(addr + 2, row).is_none() {
                if let Some(instance) = inputs.text(INSTANCE_ID, row) {
                    observable(out, endpoint, ".instance_uid", "Resource UID", 10, instance);
                }
            }
        }
        if out.pos() == open {
            return false;
        }
        out.set(open, b'[');
        out.byte(b']');
        true
    },
};

fn observable(
    out: &mut Out<'_>,
    endpoint: &str,
    attribute: &str,
    kind: &str,
    type_id: u8,
    value: &str,
) {
    out.bytes(b",{\"name\":\"");
    out.bytes(endpoint.as_bytes());
    out.bytes(attribute.as_bytes());
    out.bytes(b"\",\"type\":\"");
    out.bytes(kind.as_bytes());
    out.bytes(b"\",\"type_id\":");
    Number::integer(type_id.into()).write(out);
    out.bytes(b",\"value\":");
    out.str(value);
    out.byte(b'}');
}

/// What each derivation of the OCSF tables writes, with the kinds the Arrow schema gives
/// the members ([`crate::columnar`]); a leaf derivation has one entry whose name is unused.
pub(crate) static DERIVED_MEMBERS: &[(&Derivation, &[(&str, Kind)])] = {
    use Kind::*;
    const ADDRESS: &[(&str, Kind)] = &[("ip", Text), ("intermediate_ips", Texts)];
    const IDS: &[(&str, Kind)] = &[
        ("interface_uid", Text),
        ("vpc_uid", Text),
        ("subnet_uid", Text),
        ("instance_uid", Text),
    ];
    const DISPOSITION_MEMBERS: &[(&str, Kind)] = &[
        ("action_id", Int),
        ("action", Text),
        ("disposition_id", Int),
        ("disposition", Text),
        ("status_id", Int),
        ("status", Text),
    ];
    &[
        (
            &ACTIVITY,
            &[
                ("activity_id", Int),
                ("activity_name", Text),
                ("type_uid", Long),
                ("type_name", Text),
            ],
        ),
        (&DISPOSITION, DISPOSITION_MEMBERS),
        (
            &DISPOSITION_RC2,
            &[
                ("disposition_id", Int),
                ("disposition", Text),
                ("status_id", Int),
                ("status", Text),
            ],
        ),
        (&TIME, &[("time", Long)]),
        (&TIME_WITH_DT, &[("time", Long), ("time_dt", Time)]),
        (&ACCOUNT_ID, &[("uid", Text)]),
        (&SRC_SERVICE, &[("svc_name", Text)]),
        (&DST_SERVICE, &[("svc_name", Text)]),
        (&SRC_COORDINATES, &[("coordinates", Floats)]),
        (&DST_COORDINATES, &[("coordinates", Floats)]),
        (&SRC_ADDRESS, ADDRESS),
        (&DST_ADDRESS, ADDRESS),
        (&SRC_IDS, IDS),
        (&DST_IDS, IDS),
        (&BOUNDARY, &[("boundary_id", Int), ("boundary", Text)]),
        (&DIRECTION, &[("direction_id", Int), ("direction", Text)]),
        (&OBSERVABLES, &[("observables", Observables)]),
    ]
};
