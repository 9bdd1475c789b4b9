//! `--to cim`: flat JSON with Splunk CIM Network_Traffic field names, for Splunk users who do
//! not run the Splunk Add-on for AWS. Fields CIM does not define keep their flow-log names
//! (`vpc_id`, `log_status`, `start`, ...), so nothing a record carries is dropped.
//!
//! Where CIM leaves a choice, this follows Splunk's own OCSF-to-CIM add-on: `direction`
//! `inbound`/`outbound`, `protocol_version` from the record's `type`, `tcp_flag` as the
//! upper-case flag names.

use crate::derived::{tcp_flags_bound, write_tcp_flags, TRANSPORT};
use crate::json::{Number, NUMBER_BOUND};
use crate::template::{Derivation, Member, Member::*, Value::*};

pub(crate) static CIM: &[Member] = &[
    Leaf(
        "action",
        Map {
            field: "action",
            cases: &[("ACCEPT", "\"allowed\""), ("REJECT", "\"blocked\"")],
            otherwise: None,
        },
    ),
    Leaf("src", Field("srcaddr")),
    Leaf("src_ip", Field("srcaddr")),
    Leaf("src_port", Field("srcport")),
    Leaf("dest", Field("dstaddr")),
    Leaf("dest_ip", Field("dstaddr")),
    Leaf("dest_port", Field("dstport")),
    // Names as Splunk's `iplocation` and ASN lookups give them, per side; the instance
    // name (ENI inventory) as the host. Other enrichment columns keep their own names.
    Leaf("src_country", Field("src_geo_country_name")),
    Leaf("src_region", Field("src_geo_region_name")),
    Leaf("src_city", Field("src_geo_city_name")),
    Leaf("src_lat", Field("src_geo_lat")),
    Leaf("src_lon", Field("src_geo_lon")),
    Leaf("src_asn", Field("src_as_number")),
    Leaf("src_host", Field("src_instance_name")),
    Leaf("dest_country", Field("dst_geo_country_name")),
    Leaf("dest_region", Field("dst_geo_region_name")),
    Leaf("dest_city", Field("dst_geo_city_name")),
    Leaf("dest_lat", Field("dst_geo_lat")),
    Leaf("dest_lon", Field("dst_geo_lon")),
    Leaf("dest_asn", Field("dst_as_number")),
    Leaf("dest_host", Field("dst_instance_name")),
    Leaf("transport", Derived(&TRANSPORT)),
    Leaf("protocol", Derived(&PROTOCOL)),
    // CIM's `protocol` is the layer-3 name, so the flow log's number gets its own name.
    Leaf("protocol_number", Field("protocol")),
    Leaf("protocol_version", Field("type")),
    Leaf("bytes", Field("bytes")),
    Leaf("packets", Field("packets")),
    Members(&IN_OUT),
    Leaf(
        "direction",
        Map {
            field: "flow_direction",
            cases: &[("ingress", "\"inbound\""), ("egress", "\"outbound\"")],
            otherwise: None,
        },
    ),
    Leaf("duration", Derived(&DURATION)),
    Leaf("tcp_flag", Derived(&TCP_FLAG)),
    Leaf("tcp_flags", Field("tcp_flags")),
    Leaf("dvc", Derived(&DVC)),
    Leaf("vendor_account", Field("account_id")),
    Leaf("vendor_product", Derived(&VENDOR_PRODUCT)),
    // The flow-log fields read above that CIM has no name for.
    Leaf("start", Field("start")),
    Leaf("end", Field("end")),
    Leaf("interface_id", Field("interface_id")),
    Leaf("tgw_id", Field("tgw_id")),
    Rest,
];

/// `ip` (the layer-3 protocol) for records that carry traffic.
static PROTOCOL: Derivation = Derivation {
    inputs: &["srcaddr"],
    bound: |_| 4,
    write: |inputs, row, out| {
        let has = inputs.text(0, row).is_some();
        if has {
            out.bytes(b"\"ip\"");
        }
        has
    },
};

/// `bytes_in`/`packets_in` for ingress records, `bytes_out`/`packets_out` for egress.
static IN_OUT: Derivation = Derivation {
    inputs: &["flow_direction", "bytes", "packets"],
    bound: |inputs| 32 + inputs.value_bound(1) + inputs.value_bound(2),
    write: |inputs, row, out| {
        let (bytes, packets): (&[u8], &[u8]) = match inputs.text(0, row) {
            Some("ingress") => (b",\"bytes_in\":", b",\"packets_in\":"),
            Some("egress") => (b",\"bytes_out\":", b",\"packets_out\":"),
            _ => return false,
        };
        let start = out.pos();
        out.bytes(bytes);
        if !inputs.write(1, row, out) {
            out.truncate(start);
        }
        let start = out.pos();
        out.bytes(packets);
        if !inputs.write(2, row, out) {
            out.truncate(start);
        }
        true
    },
};

/// Upper-case names of the TCP flags set, as a multivalue field.
static TCP_FLAG: Derivation = Derivation {
    inputs: &["tcp_flags"],
    bound: tcp_flags_bound,
    write: |inputs, row, out| {
        const UPPER: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        write_tcp_flags(inputs, row, out, &UPPER)
    },
};

/// Seconds from the first to the last packet of the flow.
static DURATION: Derivation = Derivation {
    inputs: &["start", "end"],
    bound: |_| NUMBER_BOUND,
    write: |inputs, row, out| match (inputs.int(0, row), inputs.int(1, row)) {
        (Some(start), Some(end)) if end >= start => {
            Number::epoch_seconds(end - start).write(out);
            true
        }
        _ => false,
    },
};

/// The device that recorded the flow: the network interface, or the transit gateway.
static DVC: Derivation = Derivation {
    inputs: &["interface_id", "tgw_id"],
    bound: |inputs| inputs.value_bound(0).max(inputs.value_bound(1)),
    write: |inputs, row, out| inputs.write(0, row, out) || inputs.write(1, row, out),
};

static VENDOR_PRODUCT: Derivation = Derivation {
    inputs: &["tgw_id", "interface_id"],
    bound: |_| 40,
    write: |inputs, row, out| {
        out.str(if inputs.text(0, row).is_some() {
            "AWS Transit Gateway Flow Logs"
        } else {
            "AWS VPC Flow Logs"
        });
        true
    },
};
