//! Counters every component reports, in Prometheus form, labelled by component name.
//!
//! One [`Metrics`] per process holds the registry; each source, stage and sink takes a
//! [`ComponentMetrics`] (cheap handles onto the shared families) under its own name. The
//! series every component has are fields of it; a series only one kind has (HEC's
//! capacity warnings, a queue source's messages) is registered by that kind through
//! [`ComponentMetrics::counter`], [`ComponentMetrics::counter_by`],
//! [`ComponentMetrics::gauge`] or [`ComponentMetrics::gauge_by`], so it is exported only
//! when such a component runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ack::{Ack, AckWait, Unacknowledged};
use crate::status::{State, Status};

type Labels = Vec<(&'static str, String)>;

fn seconds_histogram() -> Histogram {
    // 1 ms .. about 2 minutes.
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

/// The process's metrics.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

/// A component's counters a status line reads.
struct Counts {
    records_in: Counter,
    records_out: Counter,
    bytes_in: Counter,
    dead_letters: Counter,
}

/// What a run has done so far ([`Metrics::totals`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Records the sources decoded.
    pub records_read: u64,
    /// Bytes the sources read (before decompression).
    pub bytes_read: u64,
    /// Records each sink had confirmed, by name.
    pub delivered: Vec<(String, u64)>,
    /// Records written to the dead letter by sources and sinks.
    pub dead_letters: u64,
    /// Batches read and not yet settled, and how long the oldest has waited.
    pub unacknowledged: usize,
    pub oldest_unacknowledged: Option<Duration>,
}

struct Inner {
    /// Behind a lock because components register their own series as they are built.
    registry: Mutex<Registry>,
    /// Series registered by components, by name (two components of a kind share one).
    own: Mutex<HashMap<&'static str, Family<Labels, Counter>>>,
    own_gauges: Mutex<HashMap<&'static str, Family<Labels, Gauge>>>,
    /// Each component's state, by kind and name.
    statuses: Mutex<BTreeMap<(&'static str, String), Arc<Status>>>,
    /// Each component's counts, by kind and name (what a status line sums up).
    counts: Mutex<BTreeMap<(&'static str, String), Counts>>,
    /// Batches read and not yet settled.
    unacknowledged: Arc<Unacknowledged>,
    oldest_unacknowledged: Gauge<f64, AtomicU64>,
    component_errors: Family<Labels, Counter>,
    records_in: Family<Labels, Counter>,
    records_out: Family<Labels, Counter>,
    filtered: Family<Labels, Counter>,
    dead_letters: Family<Labels, Counter>,
    records_rejected: Family<Labels, Counter>,
    bytes_in: Family<Labels, Counter>,
    bytes_out: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    protocol_errors: Family<Labels, Counter>,
    in_flight: Family<Labels, Gauge>,
    batch_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    ack_wait_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    dead_letter_bytes: Gauge,
    dead_letter_capacity: Gauge,
}

/// One component's handles.
#[derive(Clone, Debug)]
pub struct ComponentMetrics {
    /// Records taken in (sources: decoded; sinks: received from the pipeline).
    pub records_in: Counter,
    /// Records passed on (sinks: confirmed by the receiver).
    pub records_out: Counter,
    /// Records written to the dead letter.
    pub dead_letters: Counter,
    /// Records a receiver took a request for but said it dropped, without naming them
    /// (an OTLP partial success).
    pub records_rejected: Counter,
    /// Bytes read (sources) before decompression.
    pub bytes_in: Counter,
    /// Bytes sent (sinks), as sent (compressed).
    pub bytes_out: Counter,
    /// Attempts that failed transiently and were retried.
    pub retries: Counter,
    /// Answers that cannot be taken as they are (a redirect, an answer that does not
    /// account for what was sent): the request is sent again, never counted delivered.
    pub protocol_errors: Counter,
    /// Requests (sinks) or batches (sources) sent and not yet answered.
    pub in_flight: Gauge,
    /// Time from a request's first attempt to its last answer.
    pub batch_seconds: Histogram,
    /// Time from a request's acceptance to its indexer acknowledgement.
    pub ack_wait_seconds: Histogram,
    /// Where this component's own series are registered, and its labels.
    metrics: Metrics,
    labels: Labels,
    status: Arc<Status>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl ComponentMetrics {
    /// An attempt at this component's job failed (`kind`: what it was doing, as a
    /// metric label: `list`, `read`, `receive`, `request`...): counted, and the
    /// component is failing until [`Self::recovered`].
    pub fn error(&self, kind: &'static str, message: impl std::fmt::Display) {
        let mut labels = self.labels.clone();
        labels.push(("kind", kind.into()));
        self.metrics.0.component_errors.get_or_create(&labels).inc();
        self.status.fail(message.to_string());
    }

    /// A new batch's acknowledgement, counted among the unacknowledged until it settles.
    pub fn ack(&self) -> (Ack, AckWait) {
        Ack::tracked(&self.metrics.0.unacknowledged)
    }

    /// An attempt at this component's job succeeded: it is no longer failing.
    pub fn recovered(&self) {
        self.status.recover();
    }

    /// A counter only this kind of component has (`flowlog_<name>_total`), under this
    /// component's labels.
    pub fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        self.metrics
            .own_family(&self.metrics.0.own, name, help)
            .get_or_create(&self.labels)
            .clone()
    }

    /// A gauge only this kind of component has (`flowlog_<name>`), under this component's
    /// labels: a stream source's leases held.
    pub fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        self.metrics
            .own_family(&self.metrics.0.own_gauges, name, help)
            .get_or_create(&self.labels)
            .clone()
    }

    /// A gauge only this kind of component has, with one more label (`label`) whose value
    /// each reading names: a stream source's lag by shard.
    pub fn gauge_by(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
    ) -> LabelledGauge {
        LabelledGauge {
            family: self
                .metrics
                .own_family(&self.metrics.0.own_gauges, name, help),
            labels: self.labels.clone(),
            label,
        }
    }

    /// A counter only this kind of component has, with one more label (`label`) whose
    /// value each count names: a queue source's messages by outcome.
    pub fn counter_by(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
    ) -> LabelledCounter {
        LabelledCounter {
            family: self.metrics.own_family(&self.metrics.0.own, name, help),
            labels: self.labels.clone(),
            label,
        }
    }
}

/// A component's counter with one label more (see [`ComponentMetrics::counter_by`]).
#[derive(Clone, Debug)]
pub struct LabelledCounter {
    family: Family<Labels, Counter>,
    labels: Labels,
    label: &'static str,
}

impl LabelledCounter {
    /// Counts one under `value` (e.g. the outcome `deleted`).
    pub fn inc(&self, value: &str) {
        self.inc_by(value, 1);
    }

    /// Counts `n` under `value`.
    pub fn inc_by(&self, value: &str, n: u64) {
        self.family
            .get_or_create(&labelled(&self.labels, self.label, value))
            .inc_by(n);
    }
}

/// A component's gauge with one label more (see [`ComponentMetrics::gauge_by`]).
#[derive(Clone, Debug)]
pub struct LabelledGauge {
    family: Family<Labels, Gauge>,
    labels: Labels,
    label: &'static str,
}

impl LabelledGauge {
    /// Sets the reading under `value` (e.g. a shard's lag).
    pub fn set(&self, value: &str, reading: i64) {
        self.family
            .get_or_create(&labelled(&self.labels, self.label, value))
            .set(reading);
    }

    /// Drops the series under `value` (a shard no longer read here), so a stale reading
    /// is not exported as if it were current.
    pub fn remove(&self, value: &str) {
        self.family
            .remove(&labelled(&self.labels, self.label, value));
    }
}

fn labelled(labels: &Labels, label: &'static str, value: &str) -> Labels {
    let mut labels = labels.clone();
    labels.push((label, value.into()));
    labels
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flowlog");
        let records_in = Family::default();
        let records_out = Family::default();
        let filtered = Family::default();
        let dead_letters = Family::default();
        let records_rejected = Family::default();
        let bytes_in = Family::default();
        let bytes_out = Family::default();
        let retries = Family::default();
        let protocol_errors = Family::default();
        let in_flight = Family::default();
        let batch_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(seconds_histogram);
        let ack_wait_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(seconds_histogram);
        let component_errors = Family::default();
        registry.register(
            "component_errors",
            "Attempts at a component's job that failed (kind: what it was doing); \
             /health says whether they still do",
            component_errors.clone(),
        );
        registry.register(
            "records_in",
            "Records taken in by a component",
            records_in.clone(),
        );
        registry.register(
            "records_out",
            "Records a component passed on or had confirmed",
            records_out.clone(),
        );
        registry.register(
            "records_filtered",
            "Records the transform stage's filter left out (as configured)",
            filtered.clone(),
        );
        registry.register(
            "dead_letters",
            "Records a component wrote to the dead letter",
            dead_letters.clone(),
        );
        registry.register(
            "records_rejected",
            "Records a receiver said it dropped without naming them (OTLP partial success)",
            records_rejected.clone(),
        );
        registry.register(
            "bytes_in",
            "Bytes a source read (before decompression)",
            bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Bytes a sink sent (as sent)",
            bytes_out.clone(),
        );
        registry.register(
            "retries",
            "Attempts that failed transiently and were retried",
            retries.clone(),
        );
        registry.register(
            "protocol_errors",
            "Answers a sink could not take as they were (redirects, answers that do not \
             account for what was sent); the request was sent again",
            protocol_errors.clone(),
        );
        registry.register(
            "in_flight",
            "Requests or batches sent and not yet answered",
            in_flight.clone(),
        );
        registry.register(
            "batch_seconds",
            "Time from a request's first attempt to its final answer",
            batch_seconds.clone(),
        );
        registry.register(
            "ack_wait_seconds",
            "Time from acceptance to indexer acknowledgement",
            ack_wait_seconds.clone(),
        );
        let dead_letter_bytes = Gauge::default();
        let dead_letter_capacity = Gauge::default();
        registry.register(
            "dead_letter_bytes",
            "Bytes the dead-letter store holds (its file and the rotated ones)",
            dead_letter_bytes.clone(),
        );
        registry.register(
            "dead_letter_capacity_bytes",
            "What the dead-letter store may hold; past it nothing more is acknowledged",
            dead_letter_capacity.clone(),
        );
        let oldest_unacknowledged = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_unacknowledged_seconds",
            "How long the oldest batch read and not yet delivered (or dead-lettered) has \
             waited: how far delivery lags behind reading",
            oldest_unacknowledged.clone(),
        );
        Self(Arc::new(Inner {
            registry: Mutex::new(registry),
            own: Mutex::default(),
            own_gauges: Mutex::default(),
            statuses: Mutex::default(),
            counts: Mutex::default(),
            unacknowledged: Arc::default(),
            oldest_unacknowledged,
            component_errors,
            records_in,
            records_out,
            filtered,
            dead_letters,
            records_rejected,
            bytes_in,
            bytes_out,
            retries,
            protocol_errors,
            in_flight,
            batch_seconds,
            ack_wait_seconds,
            dead_letter_bytes,
            dead_letter_capacity,
        }))
    }

    /// The handles of one component. `kind` is `source`, `transform`, `sink` or
    /// `dead_letter`; only the series that mean something for the kind are exported (the
    /// other handles count into nothing).
    pub fn component(&self, kind: &'static str, name: &str) -> ComponentMetrics {
        let labels: Labels = vec![("component_kind", kind.into()), ("component", name.into())];
        let m = &self.0;
        let sink = kind == "sink";
        let counter = |family: &Family<Labels, Counter>, exported: bool| {
            if exported {
                family.get_or_create(&labels).clone()
            } else {
                Counter::default()
            }
        };
        let histogram = |family: &Family<Labels, Histogram, fn() -> Histogram>| {
            if sink {
                family.get_or_create(&labels).clone()
            } else {
                seconds_histogram()
            }
        };
        let handles = ComponentMetrics {
            records_in: counter(&m.records_in, kind != "dead_letter"),
            records_out: counter(&m.records_out, sink || kind == "transform"),
            dead_letters: counter(
                &m.dead_letters,
                sink || kind == "source" || kind == "dead_letter",
            ),
            records_rejected: counter(&m.records_rejected, sink),
            bytes_in: counter(&m.bytes_in, kind == "source"),
            bytes_out: counter(&m.bytes_out, sink),
            retries: counter(&m.retries, sink),
            protocol_errors: counter(&m.protocol_errors, sink),
            in_flight: if sink {
                m.in_flight.get_or_create(&labels).clone()
            } else {
                Gauge::default()
            },
            batch_seconds: histogram(&m.batch_seconds),
            ack_wait_seconds: histogram(&m.ack_wait_seconds),
            status: Arc::clone(
                self.0
                    .statuses
                    .lock()
                    .expect("not poisoned")
                    .entry((kind, name.to_string()))
                    .or_default(),
            ),
            metrics: self.clone(),
            labels,
        };
        self.0
            .counts
            .lock()
            .expect("not poisoned")
            .entry((kind, name.to_string()))
            .or_insert_with(|| Counts {
                records_in: handles.records_in.clone(),
                records_out: handles.records_out.clone(),
                bytes_in: handles.bytes_in.clone(),
                dead_letters: handles.dead_letters.clone(),
            });
        handles
    }

    /// Forgets the state of components `keep` says no longer exist (a source or sink a
    /// reload removed), so `/health` names only what runs, and removed sinks' deliveries,
    /// so status lines list only running sinks. What removed sources read still counts in
    /// the run's total; exported series stay, as counters do.
    pub fn retain(&self, keep: impl Fn(&'static str, &str) -> bool) {
        self.0
            .statuses
            .lock()
            .expect("not poisoned")
            .retain(|(kind, name), _| keep(kind, name));
        self.0
            .counts
            .lock()
            .expect("not poisoned")
            .retain(|(kind, name), _| *kind == "source" || keep(kind, name));
    }

    /// What has gone through so far: the sum over sources, each sink's deliveries.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for ((kind, name), counts) in self.0.counts.lock().expect("not poisoned").iter() {
            match *kind {
                "source" => {
                    totals.records_read += counts.records_in.get();
                    totals.bytes_read += counts.bytes_in.get();
                    totals.dead_letters += counts.dead_letters.get();
                }
                "sink" => {
                    totals.dead_letters += counts.dead_letters.get();
                    totals
                        .delivered
                        .push((name.clone(), counts.records_out.get()));
                }
                _ => {}
            }
        }
        (totals.unacknowledged, totals.oldest_unacknowledged) = self.0.unacknowledged.oldest();
        totals
    }

    /// Every component's state, by kind and name (what `/health` reports).
    pub fn states(&self) -> Vec<(&'static str, String, State)> {
        let statuses = self.0.statuses.lock().expect("not poisoned");
        statuses
            .iter()
            .map(|((kind, name), status)| (*kind, name.clone(), status.read()))
            .collect()
    }

    /// The family `name` (registered the first time a component asks for it).
    fn own_family<M>(
        &self,
        own: &Mutex<HashMap<&'static str, Family<Labels, M>>>,
        name: &'static str,
        help: &'static str,
    ) -> Family<Labels, M>
    where
        M: Default,
        Family<Labels, M>: prometheus_client::registry::Metric + Clone,
    {
        let mut own = own.lock().expect("not poisoned");
        own.entry(name)
            .or_insert_with(|| {
                let family = Family::default();
                self.0
                    .registry
                    .lock()
                    .expect("not poisoned")
                    .register(name, help, family.clone());
                family
            })
            .clone()
    }

    /// The dead-letter store's gauge of bytes held, its capacity set to `cap`.
    pub fn dead_letter_store(&self, cap: u64) -> Gauge {
        self.0
            .dead_letter_capacity
            .set(cap.min(i64::MAX as u64) as i64);
        self.0.dead_letter_bytes.clone()
    }

    /// Records a transform stage's filter left out.
    pub fn filtered(&self, name: &str) -> Counter {
        let labels: Labels = vec![
            ("component_kind", "transform".into()),
            ("component", name.into()),
        ];
        self.0.filtered.get_or_create(&labels).clone()
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let (_, oldest) = self.0.unacknowledged.oldest();
        self.0
            .oldest_unacknowledged
            .set(oldest.map_or(0.0, |d| d.as_secs_f64()));
        let mut out = String::new();
        encode(&mut out, &self.0.registry.lock().expect("not poisoned"))
            .expect("writing to a String cannot fail");
        out
    }
}

/// `n` bytes for people: `812 B`, `3.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_share_families_and_render() {
        let metrics = Metrics::new();
        let a = metrics.component("sink", "splunk");
        a.records_out.inc_by(3);
        metrics.component("sink", "splunk").records_out.inc();
        a.batch_seconds.observe(0.5);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"flowlog_records_out_total{component_kind="sink",component="splunk"} 4"#
            ),
            "{text}"
        );
        assert!(text.contains("flowlog_batch_seconds_bucket"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        // A source has no retries or in-flight requests to report.
        metrics.component("source", "files").records_in.inc();
        let text = metrics.render();
        assert!(text
            .contains(r#"flowlog_records_in_total{component_kind="source",component="files"} 1"#));
        assert!(
            !text.contains(r#"flowlog_retries_total{component_kind="source""#),
            "{text}"
        );
        let messages = |name| {
            metrics
                .component("source", name)
                .counter_by("messages", "Queue messages", "outcome")
        };
        assert!(!metrics.render().contains("flowlog_messages"));
        messages("queue").inc("deleted");
        messages("other").inc("deleted");
        let text = metrics.render();
        assert!(text.contains(
            r#"flowlog_messages_total{component_kind="source",component="queue",outcome="deleted"} 1"#
        ));
        assert_eq!(text.matches("# TYPE flowlog_messages").count(), 1, "{text}");
    }

    #[test]
    fn a_labelled_gauge_reads_per_value_and_forgets_a_removed_one() {
        let metrics = Metrics::new();
        let source = metrics.component("source", "stream");
        let lag = source.gauge_by("lag_millis", "Lag", "shard");
        source.gauge("held", "Held").set(2);
        lag.set("shard-0", 1500);
        lag.set("shard-1", 0);
        lag.set("shard-0", 20);
        let text = metrics.render();
        assert!(text.contains(
            r#"flowlog_lag_millis{component_kind="source",component="stream",shard="shard-0"} 20"#
        ), "{text}");
        assert!(text.contains(r#"flowlog_held{component_kind="source",component="stream"} 2"#));
        lag.remove("shard-0");
        let text = metrics.render();
        assert!(!text.contains(r#"shard="shard-0""#), "{text}");
        assert!(text.contains(r#"shard="shard-1"} 0"#), "{text}");
    }
}
