//! Scans: many distinct ports of one destination (vertical), or one port on many
//! destinations (horizontal), counted per window with sketches that stay exact while
//! small and bounded past that (HyperLogLog++).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{address_hash, has_ports, Distinct, Rule};
use crate::finding::{direction, measures, Finding, RuleId, Side};
use crate::flow::Flow;
use crate::settings::{HorizontalScan, VerticalScan};
use crate::window::{Seen, Weighted, Windows};

/// What a pair saw: its distinct destination ports.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Ports {
    ports: Distinct,
    privileged: Distinct,
    protocol: Option<u8>,
    internal: (bool, bool),
    seen: Seen,
}

impl Weighted for Ports {
    fn weight(&self) -> f64 {
        self.ports.estimate() as f64
    }
}

/// One source, one destination, `min_ports` distinct destination ports of which
/// `min_privileged_ports` below 1024.
pub(crate) struct Vertical {
    settings: VerticalScan,
    examples: usize,
    windows: Windows<(IpAddr, IpAddr), Ports>,
}

impl Vertical {
    pub(crate) fn new(settings: &VerticalScan, max_keys: usize, examples: usize) -> Self {
        Self {
            settings: settings.clone(),
            examples,
            windows: Windows::new(settings.window_secs, max_keys),
        }
    }
}

impl Rule for Vertical {
    fn id(&self) -> RuleId {
        RuleId::VerticalScan
    }

    fn observe(&mut self, flow: &Flow<'_>, watermark: i64) {
        let Some(port) = flow.dst_port.filter(|_| has_ports(flow.protocol)) else {
            return;
        };
        if let Some(pair) = self
            .windows
            .entry(flow.time, watermark, (flow.src, flow.dst))
        {
            pair.ports.insert(&u32::from(port));
            if port < 1024 {
                pair.privileged.insert(&u32::from(port));
            }
            pair.protocol.get_or_insert(flow.protocol.unwrap_or(0));
            pair.internal = (flow.src_internal, flow.dst_internal);
            pair.seen.add(flow, self.examples);
        }
    }

    fn close(&mut self, watermark: i64, out: &mut Vec<Finding>) {
        let len = self.windows.len_ms();
        for (start, pairs) in self.windows.close(watermark) {
            for ((src, dst), pair) in pairs {
                let (ports, privileged) = (pair.ports.estimate(), pair.privileged.estimate());
                if ports < self.settings.min_ports
                    || privileged < self.settings.min_privileged_ports
                {
                    continue;
                }
                out.push(Finding {
                    rule: RuleId::VerticalScan,
                    uid: Finding::uid_of(RuleId::VerticalScan, &format!("{src}|{dst}"), start),
                    window_start: start,
                    window_end: start.saturating_add(len),
                    src: Some(src),
                    dst: Some(dst),
                    dst_port: None,
                    protocol: pair.protocol,
                    direction_id: direction(pair.internal.0, pair.internal.1),
                    own: Side::internal(pair.internal.0, pair.internal.1),
                    measures: measures(json!({
                        "distinct_ports": ports,
                        "distinct_privileged_ports": privileged,
                        "min_ports": self.settings.min_ports,
                        "min_privileged_ports": self.settings.min_privileged_ports,
                    })),
                    message: format!(
                        "{src} sent traffic to {ports} distinct ports of {dst} ({privileged} of \
                         them below 1024) within {} s",
                        len / 1000
                    ),
                    seen: pair.seen,
                });
            }
        }
    }

    super::windows_state!();
}

/// What one source's port saw: its distinct destinations.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Destinations {
    destinations: Distinct,
    seen: Seen,
}

impl Weighted for Destinations {
    fn weight(&self) -> f64 {
        self.destinations.estimate() as f64
    }
}

/// One internal source, one destination port and transport, `min_destinations` distinct
/// destination addresses.
pub(crate) struct Horizontal {
    settings: HorizontalScan,
    examples: usize,
    windows: Windows<(IpAddr, u16, u8), Destinations>,
}

impl Horizontal {
    pub(crate) fn new(settings: &HorizontalScan, max_keys: usize, examples: usize) -> Self {
        Self {
            settings: settings.clone(),
            examples,
            windows: Windows::new(settings.window_secs, max_keys),
        }
    }
}

impl Rule for Horizontal {
    fn id(&self) -> RuleId {
        RuleId::HorizontalScan
    }

    fn observe(&mut self, flow: &Flow<'_>, watermark: i64) {
        if !flow.src_internal {
            return;
        }
        let (Some(protocol), port) = (flow.protocol, flow.dst_port.unwrap_or(0)) else {
            return;
        };
        let key = (flow.src, port, protocol);
        if let Some(entry) = self.windows.entry(flow.time, watermark, key) {
            entry.destinations.insert(&address_hash(flow.dst));
            entry.seen.add(flow, self.examples);
        }
    }

    fn close(&mut self, watermark: i64, out: &mut Vec<Finding>) {
        let len = self.windows.len_ms();
        for (start, keys) in self.windows.close(watermark) {
            for ((src, port, protocol), entry) in keys {
                let destinations = entry.destinations.estimate();
                if destinations < self.settings.min_destinations {
                    continue;
                }
                let port_text = if has_ports(Some(protocol)) {
                    format!("port {port}")
                } else {
                    format!("protocol {protocol}")
                };
                out.push(Finding {
                    rule: RuleId::HorizontalScan,
                    uid: Finding::uid_of(
                        RuleId::HorizontalScan,
                        &format!("{src}|{port}|{protocol}"),
                        start,
                    ),
                    window_start: start,
                    window_end: start.saturating_add(len),
                    src: Some(src),
                    dst: None,
                    dst_port: has_ports(Some(protocol)).then_some(port),
                    protocol: Some(protocol),
                    direction_id: 0,
                    own: Side::Source,
                    measures: measures(json!({
                        "distinct_destinations": destinations,
                        "min_destinations": self.settings.min_destinations,
                    })),
                    message: format!(
                        "{src} reached {destinations} distinct addresses on {port_text} within {} s",
                        len / 1000
                    ),
                    seen: entry.seen,
                });
            }
        }
    }

    super::windows_state!();
}
