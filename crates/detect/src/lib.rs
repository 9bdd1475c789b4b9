//! Findings from flow records, in the stream.
//!
//! A [`Detector`] takes in [`FlowBatch`]es and runs the rules `[detect]` turns on
//! ([`DetectSettings`]):
//! - vertical port scan and horizontal sweep (distinct counts per window, sketches that
//!   are exact while small and HyperLogLog++ past that);
//! - spikes of rejected traffic per internal source and unusual outbound volume per
//!   interface, each against the key's own history;
//! - administration ports accepted from the internet, DNS to resolvers outside an allow
//!   list, and traffic with watch-listed addresses (the enrichment's watch lists).
//!
//! Windows are event time: a record belongs to the window its `start` falls in, and a
//! window closes once the latest `start` seen is `allowed_lateness_secs` past its end, so
//! records arriving late and out of order still count; what comes later than that is
//! counted as late. State is bounded (a cap on keys per window; the lighter half is
//! evicted and counted) and can be saved and restored ([`Detector::snapshot`]), so a
//! restart neither forgets a window nor reports it twice.
//!
//! A [`Finding`] is written as an OCSF Detection Finding or an ECS alert; its id is
//! derived from the rule, its key and the window, so a replay produces the same ids.

mod finding;
mod flow;
mod rules;
pub mod settings;
mod window;

use std::cell::RefCell;

use flowlog_model::FlowBatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

pub use finding::{Attack, Finding, RuleId};
pub use settings::DetectSettings;

use rules::Rule;
use settings::Networks;

#[derive(Debug, Error)]
pub enum DetectError {
    #[error("{0}")]
    Settings(String),
    #[error("the detection state could not be read: {0}")]
    Snapshot(String),
    #[error(
        "the detection state was saved with other [detect] settings; starting with empty windows"
    )]
    SettingsChanged,
}

/// How findings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingFormat {
    /// OCSF 1.1.0 Detection Finding.
    #[default]
    Ocsf,
    /// ECS alert documents.
    Ecs,
}

impl FindingFormat {
    /// The document of `finding`.
    pub fn document(self, finding: &Finding) -> Value {
        let version = env!("CARGO_PKG_VERSION");
        match self {
            FindingFormat::Ocsf => finding.ocsf(version),
            FindingFormat::Ecs => finding.ecs(version),
        }
    }
}

/// Per rule: records that came after their window closed, keys evicted, keys held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounts {
    pub rule: RuleId,
    pub late: u64,
    pub evicted: u64,
    pub keys: usize,
}

/// The rules and their windows.
pub struct Detector {
    settings: DetectSettings,
    networks: Networks,
    rules: Vec<Box<dyn Rule>>,
    /// The latest record time seen (milliseconds), from which the watermark follows.
    latest: i64,
    /// Records the rules could not read (no time or addresses; NODATA, SKIPDATA).
    skipped: u64,
    /// Records dated more than [`MAX_AHEAD_MS`] after the wall clock: left out, or one
    /// of them would close every window at once.
    ahead: u64,
    records: u64,
    findings: u64,
    contexts: RefCell<flow::Contexts>,
}

/// How far after the wall clock a record's time may be: flow logs are never from the
/// future, and one record dated 2100 would otherwise move the watermark past every
/// window.
pub const MAX_AHEAD_MS: i64 = 86_400_000;

/// What a snapshot holds.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    settings: DetectSettings,
    latest: i64,
    skipped: u64,
    records: u64,
    findings: u64,
    rules: Vec<(String, Box<serde_json::value::RawValue>)>,
    /// What the rules' keys share, which they refer to by number (absent from a state
    /// saved before there were tables, whose keys hold it in full).
    #[serde(default)]
    shared: window::shared::Shared,
}

impl Detector {
    pub fn new(settings: DetectSettings) -> Result<Self, DetectError> {
        settings.validate()?;
        Ok(Self {
            networks: Networks::new(&settings.internal_networks),
            rules: rules::build(&settings),
            settings,
            latest: i64::MIN,
            skipped: 0,
            ahead: 0,
            records: 0,
            findings: 0,
            contexts: RefCell::default(),
        })
    }

    fn watermark(&self) -> i64 {
        self.latest
            .saturating_sub(self.settings.allowed_lateness_secs as i64 * 1000)
    }

    /// Takes in a batch; returns the findings of the windows it closed.
    pub fn observe(&mut self, batch: &FlowBatch) -> Vec<Finding> {
        let lateness = self.settings.allowed_lateness_secs as i64 * 1000;
        let rules = &mut self.rules;
        let latest = &mut self.latest;
        let mut records = 0;
        let horizon = flowlog_normalize::time::now_millis().saturating_add(MAX_AHEAD_MS);
        let ahead = &mut self.ahead;
        self.skipped += flow::for_each_flow(batch, &self.networks, &self.contexts, |flow| {
            records += 1;
            if flow.time > horizon {
                *ahead += 1;
                return;
            }
            *latest = (*latest).max(flow.time);
            let watermark = latest.saturating_sub(lateness);
            for rule in rules.iter_mut() {
                rule.observe(flow, watermark);
            }
        });
        self.records += records;
        self.close(self.watermark())
    }

    /// Closes every window (the end of a finite input); returns their findings.
    pub fn flush(&mut self) -> Vec<Finding> {
        self.close(i64::MAX)
    }

    fn close(&mut self, watermark: i64) -> Vec<Finding> {
        let mut out = Vec::new();
        for rule in &mut self.rules {
            rule.close(watermark, &mut out);
        }
        out.sort_by(|a, b| (a.window_end, a.rule, &a.uid).cmp(&(b.window_end, b.rule, &b.uid)));
        self.findings += out.len() as u64;
        out
    }

    /// Records taken in, records the rules could not read (including those dated too far
    /// ahead), findings made.
    pub fn totals(&self) -> (u64, u64, u64) {
        (self.records, self.skipped + self.ahead, self.findings)
    }

    /// Records left out for being dated more than a day after the wall clock.
    pub fn ahead(&self) -> u64 {
        self.ahead
    }

    pub fn counts(&self) -> Vec<RuleCounts> {
        self.rules
            .iter()
            .map(|r| {
                let (late, evicted, keys) = r.counts();
                RuleCounts {
                    rule: r.id(),
                    late,
                    evicted,
                    keys,
                }
            })
            .collect()
    }

    /// The open windows and histories, as JSON.
    pub fn snapshot(&self) -> Result<Vec<u8>, DetectError> {
        let (rules, shared) = window::shared::Shared::writing(|| {
            self.rules
                .iter()
                .map(|r| Ok((r.id().name().to_owned(), r.save()?)))
                .collect::<serde_json::Result<Vec<_>>>()
        })
        .map_err(DetectError::Snapshot)?;
        let rules = rules.map_err(|e| DetectError::Snapshot(e.to_string()))?;
        serde_json::to_vec(&Snapshot {
            settings: self.settings.clone(),
            latest: self.latest,
            skipped: self.skipped,
            records: self.records,
            findings: self.findings,
            rules,
            shared,
        })
        .map_err(|e| DetectError::Snapshot(e.to_string()))
    }

    /// Takes up a [`snapshot`](Self::snapshot). Saved with other settings, it is refused
    /// ([`DetectError::SettingsChanged`]) and the detector stays empty: windows of another
    /// length or thresholds would mix two definitions in one finding.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), DetectError> {
        let snapshot: Snapshot =
            serde_json::from_slice(bytes).map_err(|e| DetectError::Snapshot(e.to_string()))?;
        if !snapshot.settings.same_rules(&self.settings) {
            return Err(DetectError::SettingsChanged);
        }
        let mut rules = rules::build(&self.settings);
        snapshot
            .shared
            .reading(|| {
                for (name, state) in &snapshot.rules {
                    let rule = rules
                        .iter_mut()
                        .find(|r| r.id().name() == name)
                        .ok_or_else(|| DetectError::Snapshot(format!("unknown rule {name}")))?;
                    rule.load(state)
                        .map_err(|e| DetectError::Snapshot(format!("{name}: {e}")))?;
                }
                Ok::<_, DetectError>(())
            })
            .map_err(DetectError::Snapshot)??;
        self.rules = rules;
        self.latest = snapshot.latest;
        self.skipped = snapshot.skipped;
        self.records = snapshot.records;
        self.findings = snapshot.findings;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(lines: &[String]) -> FlowBatch {
        struct One(Option<FlowBatch>);
        impl flowlog_decode::RecordSink for One {
            fn batch(&mut self, batch: FlowBatch) -> Result<(), flowlog_decode::SinkError> {
                assert!(self.0.replace(batch).is_none());
                Ok(())
            }
            fn dead_letter(
                &mut self,
                letter: flowlog_model::DeadLetter,
            ) -> Result<(), flowlog_decode::SinkError> {
                panic!("{letter:?}")
            }
        }
        let text = lines.join("\n") + "\n";
        let mut one = One(None);
        flowlog_decode::decode_reader(
            text.as_bytes(),
            flowlog_model::SourceId::new("test"),
            &flowlog_decode::DecodeOptions::default(),
            &mut one,
        )
        .unwrap();
        one.0.unwrap()
    }

    /// A connection attempt from 10.0.0.5 to port `port` of 10.0.0.9 at `t` (seconds).
    fn probe(port: u32, t: i64) -> String {
        format!(
            "2 1 eni-a 10.0.0.5 10.0.0.9 40000 {port} 6 1 40 {t} {} REJECT OK",
            t + 1
        )
    }

    fn scan(from: u32, to: u32, t: i64) -> Vec<String> {
        (from..to).map(|p| probe(p, t)).collect()
    }

    fn only_vertical() -> DetectSettings {
        let mut s = DetectSettings::default();
        s.horizontal_scan.enabled = false;
        s.rejected_spike.enabled = false;
        s.outbound_volume.enabled = false;
        s.admin_ports.enabled = false;
        s.outbound_dns.enabled = false;
        s.watchlist.enabled = false;
        s
    }

    const HOUR: i64 = 1_763_798_400; // on an hour boundary

    #[test]
    fn a_window_closes_when_the_watermark_passes_its_end() {
        let mut d = Detector::new(only_vertical()).unwrap();
        assert!(d.observe(&batch(&scan(1, 600, HOUR + 10))).is_empty());
        // Ten minutes of lateness: a record 3599 + 599 s later does not close the hour...
        assert!(d.observe(&batch(&[probe(80, HOUR + 4199)])).is_empty());
        // ...one at 3600 + 600 s does.
        let found = d.observe(&batch(&[probe(80, HOUR + 4200)]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule, RuleId::VerticalScan);
        assert_eq!(found[0].window_start, HOUR * 1000);
        // A record for the closed hour now is late: counted, not in any window.
        assert!(d.observe(&batch(&[probe(81, HOUR + 100)])).is_empty());
        assert_eq!(d.counts()[0].late, 1);
        assert!(d.flush().is_empty());
    }

    #[test]
    fn out_of_order_records_within_the_lateness_count() {
        let mut d = Detector::new(only_vertical()).unwrap();
        d.observe(&batch(&scan(1, 300, HOUR + 900)));
        // Earlier records of the same hour, after later ones.
        d.observe(&batch(&scan(300, 600, HOUR + 400)));
        let found = d.flush();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].seen.records, 599);
        assert_eq!(found[0].seen.first, (HOUR + 400) * 1000);
    }

    #[test]
    fn keys_past_the_cap_evict_the_lighter_half_and_say_so() {
        let mut settings = only_vertical();
        settings.max_keys = 16;
        let mut d = Detector::new(settings).unwrap();
        // The scanner first, then 40 pairs with one port each.
        d.observe(&batch(&scan(1, 600, HOUR)));
        let noise: Vec<String> = (0..40)
            .map(|i| {
                format!("2 1 eni-a 10.0.1.{i} 10.0.0.9 40000 443 6 1 40 {HOUR} {HOUR} ACCEPT OK")
            })
            .collect();
        d.observe(&batch(&noise));
        let counts = &d.counts()[0];
        assert!(counts.evicted > 0);
        assert!(counts.keys <= 16);
        // The heavy key survived.
        assert_eq!(d.flush().len(), 1);
    }

    #[test]
    fn a_snapshot_restores_the_windows_and_refuses_other_rules() {
        let mut d = Detector::new(only_vertical()).unwrap();
        d.observe(&batch(&scan(1, 300, HOUR)));
        let saved = d.snapshot().unwrap();
        let mut restored = Detector::new(only_vertical()).unwrap();
        restored.restore(&saved).unwrap();
        restored.observe(&batch(&scan(300, 600, HOUR)));
        let found = restored.flush();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].seen.records, 599);
        assert_eq!(
            found[0].uid,
            Finding::uid_of(RuleId::VerticalScan, "10.0.0.5|10.0.0.9", HOUR * 1000)
        );
        // Another route is no other rule; another threshold is.
        let mut routed = only_vertical();
        routed.findings = vec!["alerts".into()];
        Detector::new(routed).unwrap().restore(&saved).unwrap();
        let mut other = only_vertical();
        other.vertical_scan.min_ports = 100;
        assert!(matches!(
            Detector::new(other).unwrap().restore(&saved),
            Err(DetectError::SettingsChanged)
        ));
    }

    #[test]
    fn a_snapshot_writes_shared_contexts_and_prefixes_once_and_reads_full_ones_too() {
        let mut d = Detector::new(DetectSettings::default()).unwrap();
        // Many keys of every rule, from one interface and one source.
        let lines: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    "2 1 eni-a 10.0.{}.{} 52.1.2.3 40000 {} 6 1 40 {HOUR} {HOUR} REJECT OK",
                    i / 100,
                    i % 100,
                    1000 + i
                )
            })
            .collect();
        d.observe(&batch(&lines));
        // A scan from another interface, read from another source.
        let other: Vec<String> = scan(1, 600, HOUR)
            .iter()
            .map(|l| l.replace("eni-a", "eni-b"))
            .collect();
        let mut other = batch(&other);
        other.source = flowlog_model::SourceId::new("other");
        d.observe(&other);
        let saved = d.snapshot().unwrap();
        let text = String::from_utf8(saved.clone()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["shared"]["contexts"].as_array().unwrap().len(), 2);
        assert_eq!(value["shared"]["prefixes"].as_array().unwrap().len(), 2);
        assert_eq!(text.matches(r#""interface_id":"eni-a""#).count(), 1);
        assert_eq!(text.matches(r#""interface_id":"eni-b""#).count(), 1);
        // The same state with every context and example written in full, as states were
        // saved before the tables: taken up alike.
        let full = {
            let mut v = value.clone();
            let tables = v["shared"].clone();
            fn expand(v: &mut serde_json::Value, tables: &serde_json::Value) {
                match v {
                    serde_json::Value::Object(map) => {
                        if let Some(c) = map.get_mut("context").filter(|c| c.is_number()) {
                            *c = tables["contexts"][c.as_u64().unwrap() as usize].clone();
                        }
                        if let Some(serde_json::Value::Array(examples)) = map.get_mut("examples") {
                            for e in examples.iter_mut() {
                                let prefix = &tables["prefixes"][e[0].as_u64().unwrap() as usize];
                                *e = serde_json::json!({"prefix": prefix, "line": e[1]});
                            }
                        }
                        map.values_mut().for_each(|v| expand(v, tables));
                    }
                    serde_json::Value::Array(items) => {
                        items.iter_mut().for_each(|v| expand(v, tables))
                    }
                    _ => {}
                }
            }
            let obj = v.as_object_mut().unwrap();
            obj.remove("shared");
            // The rules' states are JSON text inside the snapshot.
            for rule in obj["rules"].as_array_mut().unwrap() {
                expand(&mut rule[1], &tables);
            }
            serde_json::to_vec(&v).unwrap()
        };
        assert!(full.len() > saved.len());
        let mut from_full = Detector::new(DetectSettings::default()).unwrap();
        from_full.restore(&full).unwrap();
        let mut from_tables = Detector::new(DetectSettings::default()).unwrap();
        from_tables.restore(&saved).unwrap();
        let (a, b) = (from_full.flush(), from_tables.flush());
        assert!(!a.is_empty());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(format!("{a:?}"), format!("{:?}", d.flush()));
        // A number without its table is an error, not a guess.
        let mut orphan = value;
        orphan.as_object_mut().unwrap().remove("shared");
        assert!(Detector::new(DetectSettings::default())
            .unwrap()
            .restore(&serde_json::to_vec(&orphan).unwrap())
            .is_err());
    }

    #[test]
    fn a_quiet_window_counts_as_zero_in_a_baseline() {
        let mut s = DetectSettings::default();
        s.vertical_scan.enabled = false;
        s.horizontal_scan.enabled = false;
        s.rejected_spike.window_secs = 60;
        s.rejected_spike.min_value = Some(5.0);
        s.allowed_lateness_secs = 0;
        let mut d = Detector::new(s).unwrap();
        let rejects = |n: usize, t: i64| -> Vec<String> {
            (0..n)
                .map(|i| {
                    format!(
                        "2 1 eni-a 10.0.0.5 52.1.2.3 {} 443 6 1 40 {t} {t} REJECT OK",
                        1024 + i
                    )
                })
                .collect()
        };
        // Ten rejected a minute for six minutes, two quiet minutes, then thirty: the
        // history (10 x 6, 0, 0) has a mean of 7.5 and a deviation of 4.6, so the limit is
        // 21.4; without the quiet minutes it would have no deviation at all.
        let mut found = Vec::new();
        for minute in 0..6 {
            found.extend(d.observe(&batch(&rejects(10, HOUR + minute * 60))));
        }
        found.extend(d.observe(&batch(&rejects(30, HOUR + 8 * 60))));
        found.extend(d.flush());
        let spikes: Vec<_> = found
            .iter()
            .filter(|f| f.rule == RuleId::RejectedSpike)
            .collect();
        assert_eq!(spikes.len(), 1, "{found:#?}");
        assert_eq!(spikes[0].measures["history_windows"], 8);
        assert_eq!(spikes[0].measures["baseline_mean"], 7.5);
    }
}
