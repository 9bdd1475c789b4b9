//! `[detect]`: which rules run and their thresholds. Every default is a published one
//! where a source publishes it (the README's rule table names the source).

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{DetectError, FindingFormat};

/// The `[detect]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSettings {
    /// Networks that are ours. Empty: every address that is not public (RFC 1918, unique
    /// local, link-local, CGNAT...). IPv6 VPCs use public (global unicast) addresses: list
    /// their prefixes here so their hosts count as internal.
    pub internal_networks: Vec<Net>,
    /// How far behind the latest record time a record may arrive and still count: a
    /// window closes once the latest time seen passes its end by this much.
    pub allowed_lateness_secs: u64,
    /// The most keys (pairs, sources, interfaces) one rule keeps per window; past it the
    /// lighter half is evicted and counted.
    pub max_keys: usize,
    /// Flow ids kept per finding as examples.
    pub examples: usize,
    /// `flowlog run`: the sinks findings go to. A sink named here gets findings only, no
    /// flow records.
    pub findings: Vec<String>,
    /// `flowlog run`: findings as `ocsf` (Detection Finding) or `ecs` (alerts).
    pub findings_format: FindingFormat,
    pub vertical_scan: VerticalScan,
    pub horizontal_scan: HorizontalScan,
    pub rejected_spike: Baseline,
    pub admin_ports: AdminPorts,
    pub outbound_dns: OutboundDns,
    pub watchlist: Watchlist,
    pub outbound_volume: Baseline,
}

impl Default for DetectSettings {
    fn default() -> Self {
        Self {
            internal_networks: Vec::new(),
            allowed_lateness_secs: 600,
            max_keys: 100_000,
            examples: 5,
            findings: Vec::new(),
            findings_format: FindingFormat::Ocsf,
            vertical_scan: VerticalScan::default(),
            horizontal_scan: HorizontalScan::default(),
            rejected_spike: Baseline::default(),
            admin_ports: AdminPorts::default(),
            outbound_dns: OutboundDns::default(),
            watchlist: Watchlist::default(),
            outbound_volume: Baseline::default(),
        }
    }
}

/// One source, one destination, many destination ports (Splunk's thresholds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerticalScan {
    pub enabled: bool,
    pub window_secs: u64,
    /// Distinct destination ports at or above which the pair is a scan.
    pub min_ports: usize,
    /// ... of which at least this many below 1024.
    pub min_privileged_ports: usize,
}

impl Default for VerticalScan {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 3600,
            min_ports: 500,
            min_privileged_ports: 20,
        }
    }
}

/// One internal source, one port and transport, many destinations (Splunk's threshold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HorizontalScan {
    pub enabled: bool,
    pub window_secs: u64,
    pub min_destinations: usize,
}

impl Default for HorizontalScan {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 3600,
            min_destinations: 250,
        }
    }
}

/// A value per key and window against the key's own history: the latest above the mean
/// plus `sigma` standard deviations of at least `min_history` earlier windows, and at
/// least `min_value` (rejected records per internal source; outbound bytes per interface).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Baseline {
    pub enabled: bool,
    pub window_secs: u64,
    pub sigma: f64,
    pub min_history: usize,
    /// Windows of history kept per key.
    pub max_history: usize,
    /// The least value that can fire; default 20 rejected records, or 1 GiB sent out.
    pub min_value: Option<f64>,
    /// ... and at least this many times the mean: with a short or quiet history the
    /// standard deviation alone flags noise (on the bench corpus, 30 rejected records
    /// against a mean of 19 and a deviation of 2).
    pub min_ratio: f64,
}

impl Default for Baseline {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 3600,
            sigma: 3.0,
            min_history: 5,
            max_history: 24,
            min_value: None,
            min_ratio: 2.0,
        }
    }
}

/// Accepted inbound traffic to administration ports from public addresses (Panther).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminPorts {
    pub enabled: bool,
    /// One finding per source, destination and port per window.
    pub window_secs: u64,
    pub ports: Vec<u16>,
    /// Sources allowed to reach them (a VPN's egress, a bastion's peers).
    pub trusted_sources: Vec<Net>,
}

impl Default for AdminPorts {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 300,
            // SSH, RDP, WinRM over HTTP and HTTPS.
            ports: vec![22, 3389, 5985, 5986],
            trusted_sources: Vec::new(),
        }
    }
}

/// Outbound DNS from an internal host to a public resolver not on the allow list
/// (Panther). Resolvers that are not public (the VPC's, 169.254.169.253) are never
/// reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundDns {
    pub enabled: bool,
    pub window_secs: u64,
    pub ports: Vec<u16>,
    pub allowed_resolvers: Vec<Net>,
}

impl Default for OutboundDns {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 300,
            ports: vec![53, 5353],
            allowed_resolvers: Vec::new(),
        }
    }
}

/// Traffic to or from an address on the enrichment's watch lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Watchlist {
    pub enabled: bool,
    /// One finding per watched address, peer and list per window.
    pub window_secs: u64,
}

impl Default for Watchlist {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 300,
        }
    }
}

impl DetectSettings {
    /// Checks what serde cannot: windows and thresholds that make sense.
    pub fn validate(&self) -> Result<(), DetectError> {
        let windows = [
            ("vertical_scan", self.vertical_scan.window_secs),
            ("horizontal_scan", self.horizontal_scan.window_secs),
            ("rejected_spike", self.rejected_spike.window_secs),
            ("admin_ports", self.admin_ports.window_secs),
            ("outbound_dns", self.outbound_dns.window_secs),
            ("watchlist", self.watchlist.window_secs),
            ("outbound_volume", self.outbound_volume.window_secs),
        ];
        for (rule, secs) in windows {
            if secs == 0 || secs > 7 * 86_400 {
                return Err(DetectError::Settings(format!(
                    "detect.{rule}.window_secs must be between 1 and 604800, not {secs}"
                )));
            }
        }
        for (rule, b) in [
            ("rejected_spike", &self.rejected_spike),
            ("outbound_volume", &self.outbound_volume),
        ] {
            if b.min_history < 2 || b.max_history < b.min_history || b.max_history > 1000 {
                return Err(DetectError::Settings(format!(
                    "detect.{rule}: min_history must be at least 2 and at most max_history \
                     (at most 1000), not {} and {}",
                    b.min_history, b.max_history
                )));
            }
            let good = b.sigma.is_finite()
                && b.sigma > 0.0
                && b.min_value.is_none_or(f64::is_finite)
                && b.min_ratio.is_finite()
                && b.min_ratio >= 0.0;
            if !good {
                return Err(DetectError::Settings(format!(
                    "detect.{rule}: sigma must be a positive number, min_value a number and \
                     min_ratio a number of at least 0"
                )));
            }
        }
        if self.allowed_lateness_secs > 7 * 86_400 {
            return Err(DetectError::Settings(format!(
                "detect.allowed_lateness_secs must be at most 604800 (a week), not {}",
                self.allowed_lateness_secs
            )));
        }
        if self.max_keys < 16 {
            return Err(DetectError::Settings(format!(
                "detect.max_keys must be at least 16, not {}",
                self.max_keys
            )));
        }
        if self.vertical_scan.min_ports == 0 || self.horizontal_scan.min_destinations == 0 {
            return Err(DetectError::Settings(
                "detect: min_ports and min_destinations must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// True when both define the same rules (where findings go does not matter to the
    /// windows a snapshot holds).
    pub fn same_rules(&self, other: &DetectSettings) -> bool {
        let routeless = |s: &DetectSettings| DetectSettings {
            findings: Vec::new(),
            findings_format: FindingFormat::Ocsf,
            ..s.clone()
        };
        routeless(self) == routeless(other)
    }

    /// True when any rule is on.
    pub fn any_enabled(&self) -> bool {
        self.vertical_scan.enabled
            || self.horizontal_scan.enabled
            || self.rejected_spike.enabled
            || self.admin_ports.enabled
            || self.outbound_dns.enabled
            || self.watchlist.enabled
            || self.outbound_volume.enabled
    }
}

/// A network in settings: CIDR (`10.0.0.0/8`) or a single address (`8.8.8.8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net(pub IpNet);

impl std::str::FromStr for Net {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(Net)
            .map_err(|_| format!("`{text}` is not an IP address or CIDR network"))
    }
}

impl Serialize for Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which addresses are ours.
#[derive(Debug, Clone)]
pub(crate) struct Networks {
    listed: Option<NetSet>,
}

impl Networks {
    pub(crate) fn new(listed: &[Net]) -> Self {
        Self {
            listed: (!listed.is_empty()).then(|| NetSet::new(listed)),
        }
    }

    pub(crate) fn internal(&self, ip: IpAddr) -> bool {
        match &self.listed {
            None => !flowlog_model::address::is_public(ip),
            Some(set) => set.contains(ip),
        }
    }
}

/// Addresses and networks to test against: single addresses in a hash set (allow lists
/// are mostly addresses, and may hold thousands), networks in a list.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetSet {
    addresses: HashSet<IpAddr>,
    networks: Vec<IpNet>,
}

impl NetSet {
    pub(crate) fn new(nets: &[Net]) -> Self {
        let mut set = NetSet::default();
        for Net(net) in nets {
            if net.prefix_len() == net.max_prefix_len() {
                set.addresses.insert(net.addr());
            } else {
                set.networks.push(*net);
            }
        }
        set
    }

    /// True when `ip` is listed or in a listed network (an IPv4-mapped IPv6 address
    /// counts as IPv4).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.addresses.contains(&ip) || self.networks.iter().any(|n| n.contains(&ip))
    }
}
