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
    records: u64,
    findings: u64,
}

/// What a snapshot holds.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    settings: DetectSettings,
    latest: i64,
    skipped: u64,
    records: u64,
    findings: u64,
    rules: Vec<(String, Value)>,
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
            records: 0,
            findings: 0,
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
        self.skipped += flow::for_each_flow(batch, &self.networks, |flow| {
            records += 1;
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

    /// Records taken in, records the rules could not read, findings made.
    pub fn totals(&self) -> (u64, u64, u64) {
        (self.records, self.skipped, self.findings)
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
        let rules = self
            .rules
            .iter()
            .map(|r| Ok((r.id().name().to_owned(), r.save()?)))
            .collect::<serde_json::Result<Vec<_>>>()
            .map_err(|e| DetectError::Snapshot(e.to_string()))?;
        serde_json::to_vec(&Snapshot {
            settings: self.settings.clone(),
            latest: self.latest,
            skipped: self.skipped,
            records: self.records,
            findings: self.findings,
            rules,
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
        for (name, state) in snapshot.rules {
            let rule = rules
                .iter_mut()
                .find(|r| r.id().name() == name)
                .ok_or_else(|| DetectError::Snapshot(format!("unknown rule {name}")))?;
            rule.load(state)
                .map_err(|e| DetectError::Snapshot(format!("{name}: {e}")))?;
        }
        self.rules = rules;
        self.latest = snapshot.latest;
        self.skipped = snapshot.skipped;
        self.records = snapshot.records;
        self.findings = snapshot.findings;
        Ok(())
    }
}
