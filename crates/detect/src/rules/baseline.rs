//! A value per key and window, against the key's own history: rejected records per
//! internal source, outbound bytes per interface. A key fires when the window's value is
//! above its history's mean plus `sigma` sample standard deviations, with at least
//! `min_history` earlier windows and at least `min_value`. Windows a key was quiet in
//! count as zero.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::Rule;
use crate::finding::{direction, measures, Finding, RuleId, Side};
use crate::flow::Flow;
use crate::settings::Baseline;
use crate::window::{HashMap, Seen, Weighted, Windows};

/// What a baselined rule keys on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Key {
    Source(IpAddr),
    Interface(String),
}

/// A key's value in one window.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Sum {
    value: f64,
    seen: Seen,
}

impl Weighted for Sum {
    fn weight(&self) -> f64 {
        self.value
    }
}

/// A key's values in the windows before.
#[derive(Debug, Default, Serialize, Deserialize)]
struct History {
    values: VecDeque<f64>,
    /// Start of the last window it has a value for.
    last: i64,
}

pub(crate) struct Baselined {
    rule: RuleId,
    settings: Baseline,
    /// `settings.min_value`, or the rule's own default.
    min_value: f64,
    examples: usize,
    max_keys: usize,
    windows: Windows<Key, Sum>,
    history: HashMap<Key, History>,
    evicted_history: u64,
}

impl Baselined {
    fn new(rule: RuleId, settings: &Baseline, max_keys: usize, examples: usize) -> Self {
        let default = match rule {
            RuleId::RejectedSpike => 20.0,
            _ => (1u64 << 30) as f64,
        };
        Self {
            min_value: settings.min_value.unwrap_or(default),
            rule,
            settings: settings.clone(),
            examples,
            max_keys,
            windows: Windows::new(settings.window_secs, max_keys),
            history: HashMap::default(),
            evicted_history: 0,
        }
    }

    /// Rejected records per internal source.
    pub(crate) fn rejected(settings: &Baseline, max_keys: usize, examples: usize) -> Self {
        Self::new(RuleId::RejectedSpike, settings, max_keys, examples)
    }

    /// Bytes per interface from internal addresses to external ones.
    pub(crate) fn volume(settings: &Baseline, max_keys: usize, examples: usize) -> Self {
        Self::new(RuleId::OutboundVolume, settings, max_keys, examples)
    }

    fn key_and_value(&self, flow: &Flow<'_>) -> Option<(Key, f64)> {
        match self.rule {
            RuleId::RejectedSpike => (flow.src_internal && flow.accepted == Some(false))
                .then_some((Key::Source(flow.src), 1.0)),
            _ => (flow.src_internal && !flow.dst_internal)
                .then(|| {
                    Some((
                        Key::Interface(flow.interface_id?.to_owned()),
                        flow.bytes as f64,
                    ))
                })
                .flatten(),
        }
    }

    fn judge(&mut self, start: i64, key: Key, sum: Sum, out: &mut Vec<Finding>) {
        let len = self.windows.len_ms();
        let s = &self.settings;
        let history = self.history.entry(key.clone()).or_default();
        if !history.values.is_empty() {
            // Windows it was quiet in since its last value.
            let quiet =
                (start.saturating_sub(history.last) / len - 1).clamp(0, s.max_history as i64);
            for _ in 0..quiet {
                history.values.push_back(0.0);
            }
        }
        while history.values.len() > s.max_history {
            history.values.pop_front();
        }
        let n = history.values.len();
        if n >= s.min_history {
            let mean = history.values.iter().sum::<f64>() / n as f64;
            let variance = history
                .values
                .iter()
                .map(|v| (v - mean).powi(2))
                .sum::<f64>()
                / (n - 1) as f64;
            let deviation = variance.sqrt();
            let limit = mean + s.sigma * deviation;
            if sum.value > limit && sum.value >= self.min_value && sum.value >= s.min_ratio * mean {
                out.push(self.finding(
                    start,
                    &key,
                    sum.value,
                    (mean, deviation, limit, n),
                    sum.seen,
                ));
            }
        }
        let history = self.history.entry(key).or_default();
        history.values.push_back(sum.value);
        if history.values.len() > s.max_history {
            history.values.pop_front();
        }
        history.last = start;
    }

    fn finding(
        &self,
        start: i64,
        key: &Key,
        value: f64,
        (mean, deviation, limit, n): (f64, f64, f64, usize),
        seen: Seen,
    ) -> Finding {
        let len = self.windows.len_ms();
        let (what, src, key_text) = match key {
            Key::Source(ip) => ("rejected records", Some(*ip), ip.to_string()),
            Key::Interface(i) => ("bytes sent out", None, i.clone()),
        };
        Finding {
            rule: self.rule,
            uid: Finding::uid_of(self.rule, &key_text, start),
            window_start: start,
            window_end: start.saturating_add(len),
            src,
            dst: None,
            dst_port: None,
            protocol: None,
            direction_id: if src.is_some() {
                0
            } else {
                direction(true, false)
            },
            own: Side::Source,
            measures: measures(json!({
                "value": value,
                "baseline_mean": mean,
                "baseline_stddev": deviation,
                "threshold": limit,
                "history_windows": n,
                "sigma": self.settings.sigma,
                "min_ratio": self.settings.min_ratio,
            })),
            message: format!(
                "{key_text}: {value} {what} within {} s, above its baseline of {mean:.1} + \
                 {} x {deviation:.1} over {n} windows",
                len / 1000,
                self.settings.sigma
            ),
            seen,
        }
    }
}

impl Rule for Baselined {
    fn id(&self) -> RuleId {
        self.rule
    }

    fn observe(&mut self, flow: &Flow<'_>, watermark: i64) {
        let Some((key, value)) = self.key_and_value(flow) else {
            return;
        };
        if let Some(sum) = self.windows.entry(flow.time, watermark, key) {
            sum.value += value;
            sum.seen.add(flow, self.examples);
        }
    }

    fn close(&mut self, watermark: i64, out: &mut Vec<Finding>) {
        let len = self.windows.len_ms();
        for (start, keys) in self.windows.close(watermark) {
            let mut keys: Vec<_> = keys.into_iter().collect();
            // Findings in a stable order.
            keys.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
            for (key, sum) in keys {
                self.judge(start, key, sum, out);
            }
            // Keys quiet for longer than the history holds are forgotten: their next value
            // would be judged against zeros alone.
            let horizon =
                start.saturating_sub(len.saturating_mul(self.settings.max_history as i64));
            self.history.retain(|_, h| h.last >= horizon);
            if self.history.len() > self.max_keys {
                let before = self.history.len();
                let mut n = 0;
                self.history.retain(|_, _| {
                    n += 1;
                    n % 2 == 0
                });
                self.evicted_history += (before - self.history.len()) as u64;
            }
        }
    }

    fn counts(&self) -> (u64, u64, usize) {
        (
            self.windows.late,
            self.windows.evicted + self.evicted_history,
            self.windows.keys() + self.history.len(),
        )
    }

    fn save(&self) -> serde_json::Result<Box<RawValue>> {
        serde_json::value::to_raw_value(&StateRef {
            windows: &self.windows,
            history: self.history.iter().collect(),
            evicted_history: self.evicted_history,
        })
    }

    fn load(&mut self, state: &RawValue) -> serde_json::Result<()> {
        let state: StateOwned = serde_json::from_str(state.get())?;
        self.windows = state.windows;
        self.history = state.history.into_iter().collect();
        self.evicted_history = state.evicted_history;
        Ok(())
    }
}

#[derive(Serialize)]
struct StateRef<'a> {
    windows: &'a Windows<Key, Sum>,
    history: Vec<(&'a Key, &'a History)>,
    evicted_history: u64,
}

#[derive(Deserialize)]
struct StateOwned {
    windows: Windows<Key, Sum>,
    history: Vec<(Key, History)>,
    evicted_history: u64,
}
