//! Facts about network traffic that several targets share: IANA protocol keywords, TCP
//! flag names, address families and the Community ID flow hash.

use base64::Engine;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// The IANA keyword of a protocol number, lowercased (ECS `network.transport`, CIM
/// `transport`, OTel `network.transport`). `None` for numbers without a keyword
/// (unassigned, experimental, "any host internal protocol"...).
pub fn transport_name(protocol: i64) -> Option<&'static str> {
    usize::try_from(protocol)
        .ok()
        .and_then(|p| PROTOCOL_KEYWORDS.get(p).copied().flatten())
}

/// IANA "Assigned Internet Protocol Numbers", keywords lowercased, 0 to 145 (146-252 are
/// unassigned, 253-254 experimental, 255 reserved).
const PROTOCOL_KEYWORDS: [Option<&str>; 146] = {
    const NAMES: [&str; 146] = [
        "hopopt",
        "icmp",
        "igmp",
        "ggp",
        "ipv4",
        "st",
        "tcp",
        "cbt",
        "egp",
        "igp",
        "bbn-rcc-mon",
        "nvp-ii",
        "pup",
        "argus",
        "emcon",
        "xnet",
        "chaos",
        "udp",
        "mux",
        "dcn-meas",
        "hmp",
        "prm",
        "xns-idp",
        "trunk-1",
        "trunk-2",
        "leaf-1",
        "leaf-2",
        "rdp",
        "irtp",
        "iso-tp4",
        "netblt",
        "mfe-nsp",
        "merit-inp",
        "dccp",
        "3pc",
        "idpr",
        "xtp",
        "ddp",
        "idpr-cmtp",
        "tp++",
        "il",
        "ipv6",
        "sdrp",
        "ipv6-route",
        "ipv6-frag",
        "idrp",
        "rsvp",
        "gre",
        "dsr",
        "bna",
        "esp",
        "ah",
        "i-nlsp",
        "swipe",
        "narp",
        "min-ipv4",
        "tlsp",
        "skip",
        "ipv6-icmp",
        "ipv6-nonxt",
        "ipv6-opts",
        "",
        "cftp",
        "",
        "sat-expak",
        "kryptolan",
        "rvd",
        "ippc",
        "",
        "sat-mon",
        "visa",
        "ipcv",
        "cpnx",
        "cphb",
        "wsn",
        "pvp",
        "br-sat-mon",
        "sun-nd",
        "wb-mon",
        "wb-expak",
        "iso-ip",
        "vmtp",
        "secure-vmtp",
        "vines",
        "iptm",
        "nsfnet-igp",
        "dgp",
        "tcf",
        "eigrp",
        "ospfigp",
        "sprite-rpc",
        "larp",
        "mtp",
        "ax.25",
        "ipip",
        "micp",
        "scc-sp",
        "etherip",
        "encap",
        "",
        "gmtp",
        "ifmp",
        "pnni",
        "pim",
        "aris",
        "scps",
        "qnx",
        "a/n",
        "ipcomp",
        "snp",
        "compaq-peer",
        "ipx-in-ip",
        "vrrp",
        "pgm",
        "",
        "l2tp",
        "ddx",
        "iatp",
        "stp",
        "srp",
        "uti",
        "smp",
        "sm",
        "ptp",
        "isis",
        "fire",
        "crtp",
        "crudp",
        "sscopmce",
        "iplt",
        "sps",
        "pipe",
        "sctp",
        "fc",
        "rsvp-e2e-ignore",
        "mobility-header",
        "udplite",
        "mpls-in-ip",
        "manet",
        "hip",
        "shim6",
        "wesp",
        "rohc",
        "ethernet",
        "aggfrag",
        "nsh",
    ];
    let mut table = [None; 146];
    let mut i = 0;
    while i < NAMES.len() {
        if !NAMES[i].is_empty() {
            table[i] = Some(NAMES[i]);
        }
        i += 1;
    }
    table
};

/// TCP flag names by bit, lowest first, as Elastic's `tcp_flags_array` spells them.
pub const TCP_FLAG_NAMES: [&str; 8] = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"];

/// `ipv4` or `ipv6` for an address in text form (already validated by the decoder).
pub fn address_family(address: &str) -> &'static str {
    if address.contains(':') {
        "ipv6"
    } else {
        "ipv4"
    }
}

/// An address in network byte order: 4 or 16 bytes of `bytes`.
struct Address {
    bytes: [u8; 16],
    len: usize,
}

/// Parses an address the decoder has validated.
fn parse_address(text: &str) -> Option<Address> {
    let mut bytes = [0u8; 16];
    let len = match flowlog_model::address::parse_ip(text.as_bytes())? {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            bytes = v6.octets();
            16
        }
    };
    Some(Address { bytes, len })
}

/// The flow of one record, as the Community ID hashes it.
#[derive(Debug, Clone, Copy)]
pub struct FlowTuple<'a> {
    pub src: &'a str,
    pub dst: &'a str,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Bytes of a Community ID v1 string: `1:` and 28 base64 characters.
pub const COMMUNITY_ID_LEN: usize = 30;

impl FlowTuple<'_> {
    /// The [Community ID](https://github.com/corelight/community-id-spec) v1 (seed 0) of
    /// the flow, as Zeek, Suricata and Elastic compute it from packets; `None` when flow
    /// logs cannot give the same answer:
    /// - ICMP and ICMPv6 hash the message type and code, which flow logs do not record
    ///   (their ports are 0); a hash of "type 0, code 0" would name a different flow;
    /// - addresses of different families never belong to one packet;
    /// - an address that does not parse.
    pub fn community_id(&self) -> Option<[u8; COMMUNITY_ID_LEN]> {
        let has_ports = match self.protocol {
            1 | 58 => return None,
            6 | 17 | 132 => true,
            _ => false,
        };
        let (src, dst) = (parse_address(self.src)?, parse_address(self.dst)?);
        let len = src.len;
        if dst.len != len {
            return None;
        }
        let (src, dst) = (&src.bytes[..len], &dst.bytes[..len]);
        // Both directions of a flow hash alike: the smaller endpoint goes first.
        let forward = if has_ports {
            (src, self.src_port) <= (dst, self.dst_port)
        } else {
            src <= dst
        };
        let (a, b, pa, pb) = if forward {
            (src, dst, self.src_port, self.dst_port)
        } else {
            (dst, src, self.dst_port, self.src_port)
        };
        // seed (0), addresses, protocol, a zero byte, ports: hashed in one call.
        let mut message = [0u8; 2 + 16 + 16 + 2 + 4];
        let mut n = 2;
        message[n..n + len].copy_from_slice(a);
        n += len;
        message[n..n + len].copy_from_slice(b);
        n += len;
        message[n] = self.protocol;
        n += 2;
        if has_ports {
            message[n..n + 2].copy_from_slice(&pa.to_be_bytes());
            message[n + 2..n + 4].copy_from_slice(&pb.to_be_bytes());
            n += 4;
        }
        let digest = Sha1::digest(&message[..n]);
        let mut id = [0u8; COMMUNITY_ID_LEN];
        id[..2].copy_from_slice(b"1:");
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(digest, &mut id[2..])
            .expect("28 bytes hold the base64 of 20");
        debug_assert_eq!(written, 28);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(src: &str, dst: &str, protocol: u8, sp: u16, dp: u16) -> Option<String> {
        FlowTuple {
            src,
            dst,
            protocol,
            src_port: sp,
            dst_port: dp,
        }
        .community_id()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn community_id_matches_the_specification_examples() {
        // From the Community ID specification's baseline (community-id-spec, seed 0).
        assert_eq!(
            id("128.232.110.120", "66.35.250.204", 6, 34855, 80).as_deref(),
            Some("1:LQU9qZlK+B5F3KDmev6m5PMibrg=")
        );
        // The reverse direction hashes the same.
        assert_eq!(
            id("66.35.250.204", "128.232.110.120", 6, 80, 34855),
            id("128.232.110.120", "66.35.250.204", 6, 34855, 80)
        );
    }

    #[test]
    fn flows_flow_logs_cannot_identify_have_none() {
        assert_eq!(id("10.0.0.1", "10.0.0.2", 1, 0, 0), None);
        assert_eq!(id("fe80::1", "fe80::2", 58, 0, 0), None);
        assert_eq!(id("10.0.0.1", "2a02:cf40::", 17, 1, 2), None);
        assert!(id("10.0.0.1", "10.0.0.2", 47, 0, 0).is_some());
    }

    #[test]
    fn protocol_keywords() {
        assert_eq!(transport_name(6), Some("tcp"));
        assert_eq!(transport_name(17), Some("udp"));
        assert_eq!(transport_name(58), Some("ipv6-icmp"));
        assert_eq!(transport_name(132), Some("sctp"));
        assert_eq!(transport_name(145), Some("nsh"));
        assert_eq!(transport_name(61), None);
        assert_eq!(transport_name(200), None);
        assert_eq!(transport_name(-1), None);
    }
}
