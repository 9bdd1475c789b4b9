//! The rules. Each keeps its own windows and turns the ones the watermark closes into
//! findings: thresholds on distinct counts (`scan`), a key against its own history
//! (`baseline`), and policies that report each offending key once per window (`policy`).

mod baseline;
mod policy;
mod scan;

use serde_json::Value;

use crate::finding::{Finding, RuleId};
use crate::flow::Flow;
use crate::settings::DetectSettings;

/// What every rule does.
pub(crate) trait Rule: Send {
    fn id(&self) -> RuleId;
    /// Takes in one record; `watermark` is the moment before which windows are closed.
    fn observe(&mut self, flow: &Flow<'_>, watermark: i64);
    /// Appends the findings of every window that ends at or before `watermark`.
    fn close(&mut self, watermark: i64, out: &mut Vec<Finding>);
    /// Records that came for a closed window, keys evicted, keys held.
    fn counts(&self) -> (u64, u64, usize);
    fn save(&self) -> serde_json::Result<Value>;
    fn load(&mut self, state: Value) -> serde_json::Result<()>;
}

/// The rules `settings` turn on.
pub(crate) fn build(settings: &DetectSettings) -> Vec<Box<dyn Rule>> {
    let mut rules: Vec<Box<dyn Rule>> = Vec::new();
    let (keys, examples) = (settings.max_keys, settings.examples);
    if settings.vertical_scan.enabled {
        rules.push(Box::new(scan::Vertical::new(
            &settings.vertical_scan,
            keys,
            examples,
        )));
    }
    if settings.horizontal_scan.enabled {
        rules.push(Box::new(scan::Horizontal::new(
            &settings.horizontal_scan,
            keys,
            examples,
        )));
    }
    if settings.rejected_spike.enabled {
        rules.push(Box::new(baseline::Baselined::rejected(
            &settings.rejected_spike,
            keys,
            examples,
        )));
    }
    if settings.outbound_volume.enabled {
        rules.push(Box::new(baseline::Baselined::volume(
            &settings.outbound_volume,
            keys,
            examples,
        )));
    }
    if settings.admin_ports.enabled {
        rules.push(Box::new(policy::Policy::admin_ports(
            &settings.admin_ports,
            keys,
            examples,
        )));
    }
    if settings.outbound_dns.enabled {
        rules.push(Box::new(policy::Policy::outbound_dns(
            &settings.outbound_dns,
            keys,
            examples,
        )));
    }
    if settings.watchlist.enabled {
        rules.push(Box::new(policy::Policy::watchlist(
            &settings.watchlist,
            keys,
            examples,
        )));
    }
    rules
}

/// The transports whose ports mean services: TCP, UDP, SCTP.
pub(crate) fn has_ports(protocol: Option<u8>) -> bool {
    matches!(protocol, Some(6 | 17 | 132))
}
