//! The rules. Each keeps its own windows and turns the ones the watermark closes into
//! findings: thresholds on distinct counts (`scan`), a key against its own history
//! (`baseline`), and policies that report each offending key once per window (`policy`).

mod baseline;
mod policy;
mod scan;

use serde_json::value::RawValue;

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
    /// The rule's state as JSON text, written without building a tree of values (a
    /// state of many keys would take several times its size as one).
    fn save(&self) -> serde_json::Result<Box<RawValue>>;
    fn load(&mut self, state: &RawValue) -> serde_json::Result<()>;
}

/// The rules `settings` turn on.
pub(crate) fn build(settings: &DetectSettings) -> Vec<Box<dyn Rule>> {
    let (s, keys, examples) = (settings, settings.max_keys, settings.examples);
    let all: [(bool, Box<dyn Rule>); 7] = [
        (
            s.vertical_scan.enabled,
            Box::new(scan::Vertical::new(&s.vertical_scan, keys, examples)),
        ),
        (
            s.horizontal_scan.enabled,
            Box::new(scan::Horizontal::new(&s.horizontal_scan, keys, examples)),
        ),
        (
            s.rejected_spike.enabled,
            Box::new(baseline::Baselined::rejected(
                &s.rejected_spike,
                keys,
                examples,
            )),
        ),
        (
            s.outbound_volume.enabled,
            Box::new(baseline::Baselined::volume(
                &s.outbound_volume,
                keys,
                examples,
            )),
        ),
        (
            s.admin_ports.enabled,
            Box::new(policy::Policy::admin_ports(&s.admin_ports, keys, examples)),
        ),
        (
            s.outbound_dns.enabled,
            Box::new(policy::Policy::outbound_dns(
                &s.outbound_dns,
                keys,
                examples,
            )),
        ),
        (
            s.watchlist.enabled,
            Box::new(policy::Policy::watchlist(&s.watchlist, keys, examples)),
        ),
    ];
    all.into_iter()
        .filter_map(|(on, rule)| on.then_some(rule))
        .collect()
}

/// The `Rule` methods of a rule whose whole state is one `Windows` in `self.windows`.
macro_rules! windows_state {
    () => {
        fn counts(&self) -> (u64, u64, usize) {
            (self.windows.late, self.windows.evicted, self.windows.keys())
        }

        fn save(&self) -> serde_json::Result<Box<serde_json::value::RawValue>> {
            serde_json::value::to_raw_value(&self.windows)
        }

        fn load(&mut self, state: &serde_json::value::RawValue) -> serde_json::Result<()> {
            self.windows = serde_json::from_str(state.get())?;
            Ok(())
        }
    };
}
pub(crate) use windows_state;

/// Distinct values, exact while few (HyperLogLog++ past that).
pub(crate) type Distinct = cardinality_estimator::CardinalityEstimator<u32>;

/// The address as a number for hashing into a sketch (IPv4 as IPv4-mapped IPv6).
pub(crate) fn address_hash(ip: std::net::IpAddr) -> u32 {
    let n = flowlog_model::address::key(ip);
    // Fold to 32 bits; the sketch hashes again.
    (n ^ (n >> 32) ^ (n >> 64) ^ (n >> 96)) as u32
}

/// The transports whose ports mean services: TCP, UDP, SCTP.
pub(crate) fn has_ports(protocol: Option<u8>) -> bool {
    matches!(protocol, Some(6 | 17 | 132))
}
