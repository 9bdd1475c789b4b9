//! A backfill's state on disk, so that it can be resumed and is never done twice by
//! accident.
//!
//! Each backfill has a folder `<data_dir>/backfill/<id>/`, where the id is a digest of
//! what was asked (location, time range, filters, sinks, predicate): the same command
//! finds the same folder. It holds the plan (`plan.json`, the objects listed when the
//! backfill began, which a resumed run reads instead of listing again), the run's own data
//! dir (checkpoints per object, dead letter, lock) and, once it ended, `summary.json`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::source::PlanFile;

/// What a backfill was asked to do: what identifies it. The caller normalises it (the
/// location made absolute, times in one form, lists sorted), so that the same backfill
/// spelt differently finds the same folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    pub since: String,
    pub until: String,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub flow_logs: Vec<String>,
    pub margin_secs: u64,
    /// The format of headerless lines.
    pub format: Option<String>,
    /// The sinks delivered to (a backfill into another sink is another backfill).
    pub sinks: Vec<String>,
    /// The record predicate, if any.
    pub predicate: Option<String>,
}

impl Request {
    /// A stable name for the request: 16 hex digits of FNV-1a over its JSON (stable across
    /// builds and machines, unlike std's hasher).
    pub fn id(&self) -> String {
        let text = serde_json::to_vec(self).expect("a request serialises");
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in text {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

/// How a backfill ended (or stands), as `summary.json` and `--summary-json` hold it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub url: String,
    pub since: String,
    pub until: String,
    /// Every planned object was read and everything read was delivered or dead-lettered.
    pub finished: bool,
    /// Stopped by a signal before the end (`--resume` continues).
    pub interrupted: bool,
    pub objects_planned: u64,
    /// Objects read to their end in this run.
    pub objects_read: u64,
    /// Objects an earlier run had finished, not read again.
    pub objects_skipped: u64,
    /// Objects given up on in this run (read again by `--resume`).
    pub objects_failed: u64,
    pub bytes_planned: u64,
    /// Bytes of the objects read to their end in this run.
    pub bytes_read: u64,
    /// Records decoded in this run.
    pub records_read: u64,
    /// Records each sink confirmed in this run.
    pub records_delivered: std::collections::BTreeMap<String, u64>,
    /// Records (and objects) written to the dead letter in this run.
    pub dead_letters: u64,
    pub dead_letter_path: PathBuf,
    pub seconds: f64,
    pub state_dir: PathBuf,
}

impl Summary {
    /// Planned bytes per second of this run, for estimating the next one.
    pub fn rate(&self) -> Option<f64> {
        (self.finished && self.seconds > 0.0 && self.bytes_read > 0)
            .then(|| self.bytes_read as f64 / self.seconds)
    }
}

/// A backfill's folder.
#[derive(Debug, Clone)]
pub struct Job {
    pub dir: PathBuf,
}

/// What the folder holds.
#[derive(Debug)]
pub enum Found {
    /// Nothing: a new backfill.
    New,
    /// A plan and no end: a backfill begun and not finished.
    Unfinished(PlanFile),
    /// A plan and a summary saying it finished.
    Finished(Box<Summary>),
}

/// The state cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct JobError {
    pub path: PathBuf,
    pub message: String,
}

impl Job {
    /// The folder of `request` under `data_dir`.
    pub fn of(data_dir: &Path, request: &Request) -> Self {
        Job {
            dir: data_dir.join("backfill").join(request.id()),
        }
    }

    pub fn plan_path(&self) -> PathBuf {
        self.dir.join("plan.json")
    }

    /// The data dir the backfill runs with (its checkpoints, lock and dead letter).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn summary_path(&self) -> PathBuf {
        self.dir.join("summary.json")
    }

    /// Whether a run of this backfill holds its lock now (another process is at it).
    pub fn running(&self) -> bool {
        if !self.data_dir().is_dir() {
            return false;
        }
        matches!(
            flowlog_source::checkpoint::DataDirLock::acquire(&self.data_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }

    pub fn look(&self) -> Result<Found, JobError> {
        let plan: PlanFile = match read_json(&self.plan_path())? {
            Some(plan) => plan,
            None => return Ok(Found::New),
        };
        match read_json::<Summary>(&self.summary_path())? {
            Some(summary) if summary.finished => Ok(Found::Finished(Box::new(summary))),
            _ => Ok(Found::Unfinished(plan)),
        }
    }

    /// Saves the plan (the backfill has begun once this returns).
    pub fn save_plan(&self, plan: &PlanFile) -> Result<(), JobError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.error(&self.dir, e))?;
        write_json(&self.plan_path(), plan)
    }

    pub fn save_summary(&self, summary: &Summary) -> Result<(), JobError> {
        write_json(&self.summary_path(), summary)
    }

    fn error(&self, path: &Path, e: impl std::fmt::Display) -> JobError {
        JobError {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// The rate of the last backfill that finished under `data_dir` (bytes per second), what
/// a dry run estimates with when there is one.
pub fn last_rate(data_dir: &Path) -> Option<(f64, Summary)> {
    let folders = std::fs::read_dir(data_dir.join("backfill")).ok()?;
    folders
        .flatten()
        .filter_map(|f| {
            let path = f.path().join("summary.json");
            let when = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
            let summary: Summary = read_json(&path).ok()??;
            Some((when, summary.rate()?, summary))
        })
        .max_by_key(|(when, ..)| *when)
        .map(|(_, rate, summary)| (rate, summary))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, JobError> {
    let error = |message: String| JobError {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            error(format!(
                "{e} (remove the folder to start the backfill over)"
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(error(e.to_string())),
    }
}

/// Writes `value` whole or not at all: a temporary file, synced, renamed over `path`, and
/// the folder synced, so a crash leaves the old file or the new one.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), JobError> {
    let error = |e: std::io::Error| JobError {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    // Named for the process: two runs started at once must not write one temporary file.
    let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&temporary).map_err(error)?;
    let text = serde_json::to_vec_pretty(value).expect("state serialises");
    file.write_all(&text).map_err(error)?;
    file.write_all(b"\n").map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&temporary, path).map_err(error)?;
    if let Some(folder) = path.parent() {
        std::fs::File::open(folder)
            .and_then(|f| f.sync_all())
            .map_err(error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            url: "s3://b/p/".into(),
            since: "2026-08-01".into(),
            until: "2026-08-02".into(),
            sinks: vec!["out".into()],
            ..Request::default()
        }
    }

    #[test]
    fn the_same_request_finds_the_same_folder_and_another_does_not() {
        let a = request();
        assert_eq!(a.id(), request().id());
        assert_eq!(a.id().len(), 16);
        let other_sink = Request {
            sinks: vec!["elastic".into()],
            ..request()
        };
        let other_day = Request {
            until: "2026-08-03".into(),
            ..request()
        };
        assert_ne!(a.id(), other_sink.id());
        assert_ne!(a.id(), other_day.id());
    }

    #[test]
    fn a_folder_is_new_then_unfinished_then_finished() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job::of(dir.path(), &request());
        assert!(matches!(job.look().unwrap(), Found::New));
        let plan = PlanFile {
            url: "s3://b/p/".into(),
            since: "2026-08-01".into(),
            until: "2026-08-02".into(),
            objects: Vec::new(),
        };
        job.save_plan(&plan).unwrap();
        assert!(matches!(job.look().unwrap(), Found::Unfinished(_)));
        let mut summary = Summary {
            interrupted: true,
            ..Summary::default()
        };
        job.save_summary(&summary).unwrap();
        assert!(matches!(job.look().unwrap(), Found::Unfinished(_)));
        assert!(last_rate(dir.path()).is_none());
        summary.finished = true;
        summary.bytes_read = 1000;
        summary.seconds = 2.0;
        job.save_summary(&summary).unwrap();
        assert!(matches!(job.look().unwrap(), Found::Finished(_)));
        assert_eq!(last_rate(dir.path()).unwrap().0, 500.0);
        std::fs::write(job.plan_path(), "{").unwrap();
        let err = job.look().unwrap_err().to_string();
        assert!(
            err.contains("plan.json") && err.contains("start the backfill over"),
            "{err}"
        );
    }
}
