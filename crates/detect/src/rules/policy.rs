//! Policies: records that should not happen at all (an administration port accepted from
//! the internet, DNS to a public resolver not on the allow list, an address on a watch
//! list), reported once per window with everything the window saw: an administration
//! port per destination and port (with how many public sources it accepted: one finding
//! for the open port, not one per internet scanner), DNS and watch-list traffic per
//! source, destination and port.

use std::net::IpAddr;

use flowlog_model::address::is_public;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{address_hash, has_ports, Distinct, Rule};
use crate::finding::{direction, measures, Finding, RuleId, Side};
use crate::flow::Flow;
use crate::settings::{AdminPorts, NetSet, OutboundDns, Watchlist};
use crate::window::{Seen, Weighted, Windows};

/// What a policy reports once per window.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Offence {
    /// None for an administration port: its sources are counted in [`Hits`].
    src: Option<IpAddr>,
    dst: IpAddr,
    port: Option<u16>,
    /// The watch-list entry and list that matched, and the address that matched it.
    watched: Option<(String, String, IpAddr)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Hits {
    protocol: Option<u8>,
    internal: (bool, bool),
    /// The distinct sources, and the first, when the offence is not per source.
    sources: Distinct,
    first_source: Option<IpAddr>,
    seen: Seen,
}

impl Weighted for Hits {
    fn weight(&self) -> f64 {
        self.seen.records as f64
    }
}

enum Kind {
    AdminPorts { ports: Vec<u16>, trusted: NetSet },
    OutboundDns { ports: Vec<u16>, allowed: NetSet },
    Watchlist,
}

pub(crate) struct Policy {
    rule: RuleId,
    kind: Kind,
    examples: usize,
    windows: Windows<Offence, Hits>,
}

impl Policy {
    pub(crate) fn admin_ports(s: &AdminPorts, max_keys: usize, examples: usize) -> Self {
        Self {
            rule: RuleId::AdminPorts,
            kind: Kind::AdminPorts {
                ports: s.ports.clone(),
                trusted: NetSet::new(&s.trusted_sources),
            },
            examples,
            windows: Windows::new(s.window_secs, max_keys),
        }
    }

    pub(crate) fn outbound_dns(s: &OutboundDns, max_keys: usize, examples: usize) -> Self {
        Self {
            rule: RuleId::OutboundDns,
            kind: Kind::OutboundDns {
                ports: s.ports.clone(),
                allowed: NetSet::new(&s.allowed_resolvers),
            },
            examples,
            windows: Windows::new(s.window_secs, max_keys),
        }
    }

    pub(crate) fn watchlist(s: &Watchlist, max_keys: usize, examples: usize) -> Self {
        Self {
            rule: RuleId::Watchlist,
            kind: Kind::Watchlist,
            examples,
            windows: Windows::new(s.window_secs, max_keys),
        }
    }

    /// The offence `flow` commits, if any.
    fn offence(&self, flow: &Flow<'_>) -> Option<Offence> {
        let plain = |port| Offence {
            src: Some(flow.src),
            dst: flow.dst,
            port: Some(port),
            watched: None,
        };
        match &self.kind {
            Kind::AdminPorts { ports, trusted } => {
                let port = flow.dst_port.filter(|p| ports.contains(p))?;
                let offends = has_ports(flow.protocol)
                    && flow.accepted == Some(true)
                    && flow.dst_internal
                    && !flow.src_internal
                    && is_public(flow.src)
                    && !trusted.contains(flow.src);
                offends.then_some(Offence {
                    src: None,
                    dst: flow.dst,
                    port: Some(port),
                    watched: None,
                })
            }
            Kind::OutboundDns { ports, allowed } => {
                let port = flow.dst_port.filter(|p| ports.contains(p))?;
                let offends = has_ports(flow.protocol)
                    && flow.src_internal
                    && !flow.dst_internal
                    && is_public(flow.dst)
                    && !allowed.contains(flow.dst);
                offends.then(|| plain(port))
            }
            Kind::Watchlist => {
                let (watched, (entry, list)) = match (flow.src_watch, flow.dst_watch) {
                    (Some(hit), _) => (flow.src, hit),
                    (None, Some(hit)) => (flow.dst, hit),
                    (None, None) => return None,
                };
                Some(Offence {
                    src: Some(flow.src),
                    dst: flow.dst,
                    port: flow.dst_port.filter(|_| has_ports(flow.protocol)),
                    watched: Some((entry.to_owned(), list.to_owned(), watched)),
                })
            }
        }
    }

    fn message(&self, o: &Offence, hits: &Hits, sources: u64) -> String {
        let port = o.port.map(|p| format!(" port {p}")).unwrap_or_default();
        let records = hits.seen.records;
        let src = o.src.map(|ip| ip.to_string()).unwrap_or_default();
        match &o.watched {
            Some((entry, list, ip)) => format!(
                "{src} -> {}{port}: {ip} is on watch list {list} (entry {entry}); {records} records",
                o.dst
            ),
            None if self.rule == RuleId::AdminPorts => match (sources, hits.first_source) {
                (1, Some(first)) => format!(
                    "{}{port} accepted {first} from the internet; {records} records",
                    o.dst
                ),
                _ => format!(
                    "{}{port} accepted {sources} public addresses from the internet; \
                     {records} records",
                    o.dst
                ),
            },
            None => format!(
                "{src} sent DNS to {}{port}, a resolver not on the allow list; {records} records",
                o.dst
            ),
        }
    }
}

impl Rule for Policy {
    fn id(&self) -> RuleId {
        self.rule
    }

    fn observe(&mut self, flow: &Flow<'_>, watermark: i64) {
        let Some(offence) = self.offence(flow) else {
            return;
        };
        let per_source = offence.src.is_some();
        if let Some(hits) = self.windows.entry(flow.time, watermark, offence) {
            if !per_source {
                hits.sources.insert(&address_hash(flow.src));
                hits.first_source.get_or_insert(flow.src);
            }
            hits.protocol.get_or_insert(flow.protocol.unwrap_or(0));
            hits.internal = (flow.src_internal, flow.dst_internal);
            hits.seen.add(flow, self.examples);
        }
    }

    fn close(&mut self, watermark: i64, out: &mut Vec<Finding>) {
        let len = self.windows.len_ms();
        for (start, offences) in self.windows.close(watermark) {
            let mut offences: Vec<_> = offences.into_iter().collect();
            offences.sort_by_key(|(o, _)| (o.src, o.dst, o.port));
            for (o, hits) in offences {
                let src = o.src.map(|ip| ip.to_string()).unwrap_or_default();
                let key = format!("{src}|{}|{:?}|{:?}", o.dst, o.port, o.watched);
                let mut m = json!({});
                if let Some((entry, list, ip)) = &o.watched {
                    m = json!({"watchlist": list, "watchlist_entry": entry, "watched_ip": ip.to_string()});
                }
                let sources = hits.sources.estimate() as u64;
                if o.src.is_none() {
                    m = json!({"distinct_sources": sources});
                }
                let message = self.message(&o, &hits, sources);
                // A single source is named; many are counted (and the examples show some).
                let src = o.src.or(hits.first_source.filter(|_| sources == 1));
                out.push(Finding {
                    rule: self.rule,
                    uid: Finding::uid_of(self.rule, &key, start),
                    window_start: start,
                    window_end: start.saturating_add(len),
                    src,
                    dst: Some(o.dst),
                    dst_port: o.port,
                    protocol: hits.protocol,
                    direction_id: direction(hits.internal.0, hits.internal.1),
                    own: Side::internal(hits.internal.0, hits.internal.1),
                    measures: measures(m),
                    message,
                    seen: hits.seen,
                });
            }
        }
    }

    super::windows_state!();
}
