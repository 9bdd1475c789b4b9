//! `[detect]` in the transform stage: the rules see every record the filter keeps (after
//! enrichment, so watch lists count), and their findings go, one batch of documents each,
//! to the sinks `detect.findings` names.
//!
//! The detector's windows and the findings not yet delivered are saved in
//! `<data_dir>/detect.json` (replaced atomically). A batch the rules saw holds a share of
//! its acknowledgement until a save includes what the rules made of it: no checkpoint
//! covers records the windows would forget in a crash. Saves come [`SAVE_HOLDING`] apart
//! while shares are held ([`SAVE_EVERY`] otherwise) and as soon as the input goes quiet
//! (a source may be waiting for those shares), further apart when saving is slow, and when
//! the stage ends. A restart takes the state up and sends the undelivered
//! findings again: a finding is delivered at least once, under the same id (the sink's
//! event id comes from the finding's id, so Elasticsearch keeps one copy, Security Hub
//! updates it). Records read again after a crash (those the sinks had not all
//! acknowledged) are counted again by windows still open.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowlog_component::{Ack, AckWait, BatchStatus, ComponentMetrics, LabelledCounter};
use flowlog_detect::{DetectError, DetectSettings, Detector, Finding, FindingFormat};
use flowlog_model::{FlowBatch, SourceId};
use flowlog_sink::SinkInput;
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::RunError;

/// The file in the data dir.
const STATE_FILE: &str = "detect.json";
/// How often the state is saved while it changes and no acknowledgement waits for it (it
/// is written whole: with many keys, megabytes).
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// How often while batches' acknowledgements wait for a save: the sources' checkpoints
/// lag the sinks' acknowledgements by about this.
const SAVE_HOLDING: Duration = Duration::from_millis(250);
/// The longest acknowledgements wait for a save, however slow saving is (an SQS message's
/// visibility timeout is 30 s by default).
const HOLD_AT_MOST: Duration = Duration::from_secs(5);
/// After a failed save, the next attempt waits this long...
const SAVE_RETRY: Duration = Duration::from_secs(1);
/// ...and after failing this long, the run stops: the sources' checkpoints cannot pass
/// what the rules saw.
const SAVE_GIVE_UP: Duration = Duration::from_secs(60);
/// Saving takes at most this share of the stage's time: a state that takes 0.5 s to
/// write is saved every 10 s rather than every 5 (or every 0.25).
const SAVE_SHARE: u32 = 20;

/// A finding sent and not yet delivered by every sink of the route.
struct Pending {
    saved: SavedFinding,
    /// `None` once a sink gave its share up: sent again by the next run.
    wait: Option<AckWait>,
}

#[derive(Clone, Serialize, Deserialize)]
struct SavedFinding {
    uid: String,
    time: i64,
    document: String,
}

/// What `detect.json` holds (written by `Detection::save` around the snapshot's text).
#[derive(Deserialize)]
struct Saved {
    /// The detector's snapshot, kept as its text.
    detector: Box<serde_json::value::RawValue>,
    pending: Vec<SavedFinding>,
}

pub(crate) struct Detection {
    detector: Detector,
    format: FindingFormat,
    sinks: Vec<mpsc::Sender<SinkInput>>,
    path: PathBuf,
    pending: Vec<Pending>,
    /// Findings the last run had not seen delivered, sent by the stage's thread first
    /// (`start` runs inside the runtime, where sending cannot block).
    resend: Vec<SavedFinding>,
    changed: bool,
    /// Shares of the acknowledgements of the batches the rules saw since the last save.
    held: Vec<Ack>,
    saved_at: Instant,
    /// How long the last save took: saves are at least [`SAVE_SHARE`] times that apart.
    save_cost: Duration,
    /// Since when saves fail, and when to try again.
    failing: Option<(Instant, Instant)>,
    /// A finite run (`--once`): every window closes when the input ends.
    once: bool,
    metrics: ComponentMetrics,
    findings: Counter,
    /// Records the rules left out (late, dated ahead) and keys evicted, as counted so far.
    left_out: LabelledCounter,
    reported: (u64, u64, u64),
}

impl Detection {
    /// The detector with the saved state taken up, and the undelivered findings of the
    /// last run sent again.
    pub(crate) fn start(
        settings: &DetectSettings,
        data_dir: &Path,
        sinks: Vec<mpsc::Sender<SinkInput>>,
        once: bool,
        metrics: ComponentMetrics,
    ) -> Result<Self, RunError> {
        let mut detector =
            Detector::new(settings.clone()).map_err(|e| RunError::Detect(e.to_string()))?;
        let path = data_dir.join(STATE_FILE);
        let mut resend = Vec::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let saved: Saved =
                    serde_json::from_slice(&bytes).map_err(|e| unreadable(&path, e))?;
                match detector.restore(saved.detector.get().as_bytes()) {
                    Ok(()) => {}
                    Err(DetectError::SettingsChanged) => {
                        tracing::warn!("{}: {}", path.display(), DetectError::SettingsChanged)
                    }
                    Err(e) => return Err(unreadable(&path, e)),
                }
                resend = saved.pending;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RunError::Io {
                    what: "cannot read the detection state",
                    path,
                    source: e,
                })
            }
        }
        let findings = metrics.counter("findings", "Findings the detection rules made and sent");
        let left_out = metrics.counter_by(
            "detect_left_out",
            "What the detection rules left out: records late for a closed window or dated \
             more than a day ahead (per rule for late ones), keys evicted at the cap",
            "reason",
        );
        if !resend.is_empty() {
            tracing::info!(
                "detect: {} findings the last run had not seen delivered are sent again",
                resend.len()
            );
        }
        Ok(Self {
            detector,
            format: settings.findings_format,
            sinks,
            path,
            pending: Vec::new(),
            resend,
            changed: false,
            held: Vec::new(),
            saved_at: Instant::now(),
            save_cost: Duration::ZERO,
            failing: None,
            once,
            metrics,
            findings,
            left_out,
            reported: (0, 0, 0),
        })
    }

    /// Adds what the rules left out since the last call to the counters.
    fn count_left_out(&mut self) {
        let counts = self.detector.counts();
        let now = (
            counts.iter().map(|c| c.late).sum::<u64>(),
            self.detector.ahead(),
            counts.iter().map(|c| c.evicted).sum::<u64>(),
        );
        let before = self.reported;
        for (reason, n) in [
            ("late", now.0 - before.0),
            ("ahead", now.1 - before.1),
            ("evicted_keys", now.2 - before.2),
        ] {
            if n > 0 {
                self.left_out.inc_by(reason, n);
            }
        }
        self.reported = now;
    }

    /// Takes in a batch the sinks get (holding a share of its acknowledgement until the
    /// state is saved); sends the findings of the windows it closed.
    pub(crate) fn observe(&mut self, batch: &FlowBatch, ack: &Ack) {
        self.send_resends();
        let findings = self.detector.observe(batch);
        self.held.push(ack.clone());
        self.changed = true;
        self.count_left_out();
        self.send_all(findings);
    }

    fn send_all(&mut self, findings: Vec<Finding>) {
        for finding in findings {
            let document = self.format.document(&finding).to_string();
            tracing::info!(
                rule = finding.rule.name(),
                uid = %finding.uid,
                "finding: {}",
                finding.message
            );
            self.findings.inc();
            self.send(SavedFinding {
                uid: finding.uid.clone(),
                time: finding.time(),
                document,
            });
        }
    }

    /// Sends one finding to every sink of the route, as a batch of its own whose source
    /// is the finding's id (so its event id is the same every time it is sent).
    fn send(&mut self, saved: SavedFinding) {
        let source = SourceId::new(format!("finding:{}", saved.uid));
        let batch = Arc::new(FlowBatch::documents(
            source,
            vec![(saved.time, saved.document.clone())],
        ));
        let (ack, wait) = self.metrics.ack();
        for sink in &self.sinks {
            let _ = sink.blocking_send(SinkInput {
                batch: Arc::clone(&batch),
                ack: ack.clone(),
            });
        }
        ack.confirm();
        self.pending.push(Pending {
            saved,
            wait: Some(wait),
        });
        self.changed = true;
    }

    /// Whether batches' acknowledgements wait for the next save.
    pub(crate) fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// The input went quiet: a source may be waiting for the acknowledgements held here,
    /// so the state is saved now, as far as saving's share of the time allows. An error
    /// when saving has failed for [`SAVE_GIVE_UP`].
    pub(crate) fn quiet(&mut self) -> Result<(), String> {
        if self.holding() && self.saved_at.elapsed() >= self.save_cost * SAVE_SHARE {
            self.try_save()?;
        }
        Ok(())
    }

    /// Forgets the findings every sink delivered; saves the state when it is due. An
    /// error when saving has failed for [`SAVE_GIVE_UP`].
    pub(crate) fn maintain(&mut self) -> Result<(), String> {
        self.send_resends();
        let before = self.pending.len();
        self.pending.retain_mut(|p| match p.wait.as_mut().map(AckWait::try_status) {
            Some(Some(BatchStatus::Delivered)) => false,
            Some(Some(BatchStatus::Failed)) => {
                tracing::warn!(uid = %p.saved.uid, "a finding was not delivered; it is sent again by the next run");
                p.wait = None;
                true
            }
            _ => true,
        });
        self.changed |= self.pending.len() != before;
        let every = match self.held.is_empty() {
            true => SAVE_EVERY.max(self.save_cost * SAVE_SHARE),
            false => SAVE_HOLDING
                .max(self.save_cost * SAVE_SHARE)
                .min(HOLD_AT_MOST),
        };
        if self.changed && self.saved_at.elapsed() >= every {
            self.try_save()?;
        }
        Ok(())
    }

    /// Saves, unless the last failure asks to wait; an error once saves have failed for
    /// [`SAVE_GIVE_UP`].
    fn try_save(&mut self) -> Result<(), String> {
        if let Some((_, retry_at)) = self.failing {
            if Instant::now() < retry_at {
                return Ok(());
            }
        }
        match self.save() {
            Ok(()) => {
                self.failing = None;
                Ok(())
            }
            Err(why) => {
                let now = Instant::now();
                let since = self.failing.map_or(now, |(since, _)| since);
                self.failing = Some((since, now + SAVE_RETRY));
                match since.elapsed() >= SAVE_GIVE_UP {
                    true => Err(format!(
                        "{why}, for {} s: stopping, as no checkpoint can pass the records the \
                         detection rules saw",
                        since.elapsed().as_secs()
                    )),
                    false => Ok(()),
                }
            }
        }
    }

    fn send_resends(&mut self) {
        for saved in std::mem::take(&mut self.resend) {
            self.send(saved);
        }
    }

    /// The input ended: a finite run closes every window and waits for its findings; a
    /// long-running one keeps its windows for the next.
    pub(crate) fn finish(mut self) {
        self.send_resends();
        if self.once {
            let findings = self.detector.flush();
            self.send_all(findings);
        }
        // Drop the route's senders so sinks can end once they have what they were sent.
        self.sinks.clear();
        for p in &mut self.pending {
            if let Some(wait) = p.wait.take() {
                match wait.blocking_wait() {
                    BatchStatus::Delivered => p.saved.uid.clear(),
                    BatchStatus::Failed => {}
                }
            }
        }
        self.pending.retain(|p| !p.saved.uid.is_empty());
        // A failure is logged; the held shares then fail as they drop, so no checkpoint
        // passes what the rules saw.
        let _ = self.save();
    }

    fn save(&mut self) -> Result<(), String> {
        let began = Instant::now();
        // `Saved`, written around the snapshot's text rather than parsing it again.
        let saved = self.detector.snapshot().and_then(|snapshot| {
            let pending: Vec<&SavedFinding> = self.pending.iter().map(|p| &p.saved).collect();
            let pending =
                serde_json::to_vec(&pending).map_err(|e| DetectError::Snapshot(e.to_string()))?;
            let mut bytes = Vec::with_capacity(snapshot.len() + pending.len() + 32);
            bytes.extend_from_slice(b"{\"detector\":");
            bytes.extend_from_slice(&snapshot);
            bytes.extend_from_slice(b",\"pending\":");
            bytes.extend_from_slice(&pending);
            bytes.push(b'}');
            Ok(bytes)
        });
        let result = saved
            .map_err(std::io::Error::other)
            .and_then(|bytes| flowlog_source::checkpoint::write_atomically(&self.path, &bytes));
        match result {
            Ok(()) => {
                self.changed = false;
                self.saved_at = Instant::now();
                self.save_cost = began.elapsed();
                // What the rules made of these batches is on disk: their checkpoints may
                // pass them.
                self.held.drain(..).for_each(Ack::confirm);
                Ok(())
            }
            Err(e) => {
                let why = format!("cannot save {}: {e}", self.path.display());
                tracing::error!("detect: {why}");
                self.metrics.error("detect_state", &why);
                Err(why)
            }
        }
    }
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> RunError {
    RunError::Detect(format!(
        "{}: the detection state cannot be read ({e}); move it away to start with empty windows",
        path.display()
    ))
}
