//! The dead-letter store: records a source could not decode and records a sink's receiver
//! refused for good, one NDJSON object each (`source`, `line`, `reason`, `raw`).
//!
//! A dead-lettered record counts as handled, so the file is flushed and synced before
//! any acknowledgement that covers it (a checkpoint, a Firehose `200`, an SQS delete):
//! [`DeadLetterFile::sync`].
//!
//! The store is bounded, because undecodable input is cheap to send and each record of it
//! costs a dead letter: the file being written is rotated past `rotate_bytes` (renamed to
//! `<path>.1`, `<path>.2`, ..., numbers only growing, nothing overwritten), and once the
//! file and its rotated files together hold `max_bytes`, writes are refused
//! ([`DeadLetterError::Full`]): whatever the refused letter stands for is not acknowledged
//! (a request is answered 503, a message is left on its queue, a checkpoint stays), so
//! nothing is dropped and the disk does not fill. Moving or removing rotated files frees
//! room; the store notices within a second.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flowlog_component::{ComponentMetrics, DeadLetter, DeadLetterError, DeadLetters};
use prometheus_client::metrics::gauge::Gauge;

/// How large the store may grow, and where its file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterLimits {
    /// The file and its rotated files together, at most.
    pub max_bytes: u64,
    /// The file being written is rotated once it holds this much.
    pub rotate_bytes: u64,
}

impl Default for DeadLetterLimits {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            rotate_bytes: 64 << 20,
        }
    }
}

/// How often a full store looks again at what its rotated files hold.
const RESCAN: Duration = Duration::from_secs(1);

/// What a store must have free to count as not full.
const ROOM: u64 = 16 << 10;

pub struct DeadLetterFile {
    path: PathBuf,
    limits: DeadLetterLimits,
    state: Mutex<State>,
    full: AtomicBool,
    metrics: ComponentMetrics,
    stored: Gauge,
}

struct State {
    out: BufWriter<File>,
    /// Bytes in the file being written.
    active: u64,
    /// Bytes in the rotated files, as last counted.
    rotated: u64,
    /// The number the next rotated file gets.
    next: u64,
    /// Written since the last sync.
    dirty: bool,
    scanned: Instant,
}

impl DeadLetterFile {
    pub fn open(
        path: &Path,
        limits: DeadLetterLimits,
        metrics: ComponentMetrics,
        stored: Gauge,
    ) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let appending = flowlog_component::append::open(path)?;
        if let Some(text) = &appending.terminated {
            tracing::warn!(
                "{}: its last line had no newline (a dead letter cut short by a crash, sent \
                 again): one was added so that the next starts a line of its own: {text:?}",
                path.display()
            );
        }
        let file = appending.file;
        let active = file.metadata()?.len();
        let (rotated, last) = rotated_files(path)?;
        stored.set((active + rotated) as i64);
        Ok(Self {
            path: path.to_path_buf(),
            limits,
            state: Mutex::new(State {
                out: BufWriter::new(file),
                active,
                rotated,
                next: last + 1,
                dirty: false,
                scanned: Instant::now(),
            }),
            full: AtomicBool::new(false),
            metrics,
            stored,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Dead letters written since the store was opened (this run's).
    pub fn written(&self) -> u64 {
        self.metrics.dead_letters.get()
    }

    /// Whether the store is at its cap (what `/health` reports, and what a source asks
    /// before taking in more). A full store looks again, at most once a second, at what
    /// its rotated files hold, so that moving them away is noticed without a write.
    pub fn is_full(&self) -> bool {
        if !self.full.load(Ordering::Relaxed) {
            return false;
        }
        let mut state = self.state.lock().unwrap();
        if state.scanned.elapsed() >= RESCAN {
            if let Ok((rotated, _)) = rotated_files(&self.path) {
                state.rotated = rotated;
            }
            state.scanned = Instant::now();
            // Room for a dead letter of any size (its raw text is at most 4 KiB).
            if state.active + state.rotated + ROOM < self.limits.max_bytes {
                self.full.store(false, Ordering::Relaxed);
                self.stored.set((state.active + state.rotated) as i64);
                tracing::info!("the dead-letter store has room again");
            }
        }
        self.full.load(Ordering::Relaxed)
    }

    /// Makes everything written so far durable (nothing to do when nothing was written
    /// since the last time).
    pub fn sync(&self) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap();
        if state.dirty {
            state.out.flush()?;
            state.out.get_ref().sync_data()?;
            state.dirty = false;
        }
        Ok(())
    }

    fn io_error(&self, error: std::io::Error) -> DeadLetterError {
        DeadLetterError::Io {
            path: self.path.display().to_string(),
            error,
        }
    }

    /// Makes room for `len` more bytes: rotates the file when it is due, and refuses
    /// when the store would pass its cap.
    fn room(&self, state: &mut State, len: u64) -> Result<(), DeadLetterError> {
        let cap = self.limits.max_bytes;
        if state.active + state.rotated + len > cap && state.scanned.elapsed() >= RESCAN {
            // Rotated files may have been moved away since they were counted.
            state.rotated = rotated_files(&self.path).map_err(|e| self.io_error(e))?.0;
            state.scanned = Instant::now();
        }
        if state.active + state.rotated + len > cap {
            return Err(DeadLetterError::Full {
                path: self.path.display().to_string(),
                stored: state.active + state.rotated,
                cap,
            });
        }
        if state.active > 0 && state.active + len > self.limits.rotate_bytes {
            self.rotate(state).map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }

    /// The file becomes `<path>.<n>` (synced first, so what was acknowledged stays
    /// durable under its new name) and a new file is started. A failure at any step
    /// leaves the state true to what is on disk: the new file is made (under a name of its
    /// own) before anything is renamed, a rotated file is never renamed onto (`n` skips
    /// names that exist), and once the old file is renamed the counts follow at once.
    fn rotate(&self, state: &mut State) -> std::io::Result<()> {
        state.out.flush()?;
        state.out.get_ref().sync_data()?;
        let mut fresh_name = self.path.as_os_str().to_owned();
        fresh_name.push(".new");
        let fresh = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&fresh_name)?;
        while numbered(&self.path, state.next).exists() {
            state.next += 1;
        }
        let rotated = numbered(&self.path, state.next);
        if let Err(e) = std::fs::rename(&self.path, &rotated) {
            let _ = std::fs::remove_file(&fresh_name);
            return Err(e);
        }
        state.next += 1;
        state.rotated += state.active;
        state.active = 0;
        state.dirty = false;
        // From here on letters go to the new file, whatever its name: the same directory
        // makes a failing rename unlikely, and the letters are not lost if it fails.
        state.out = BufWriter::new(fresh);
        if let Err(e) = std::fs::rename(&fresh_name, &self.path) {
            tracing::error!(
                "dead letter: {} could not be renamed to {}: {e}",
                PathBuf::from(&fresh_name).display(),
                self.path.display()
            );
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                tracing::warn!("dead letter: syncing {} after rotation: {e}", dir.display());
            }
        }
        tracing::info!("dead letter rotated to {}", rotated.display());
        Ok(())
    }
}

impl DeadLetters for DeadLetterFile {
    fn write(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        let mut line = letter.to_json();
        line.push('\n');
        let mut state = self.state.lock().unwrap();
        if let Err(e) = self.room(&mut state, line.len() as u64) {
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::error!("{e}; what it would hold is not acknowledged until then");
            }
            return Err(e);
        }
        if self.full.swap(false, Ordering::Relaxed) {
            tracing::info!("the dead-letter store has room again");
        }
        state
            .out
            .write_all(line.as_bytes())
            .map_err(|e| self.io_error(e))?;
        state.active += line.len() as u64;
        state.dirty = true;
        self.metrics.dead_letters.inc();
        self.stored.set((state.active + state.rotated) as i64);
        Ok(())
    }
}

/// `<path>.<n>`.
fn numbered(path: &Path, n: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The bytes held by the rotated files beside `path` (`<name>.<n>`), and the largest `n`.
fn rotated_files(path: &Path) -> std::io::Result<(u64, u64)> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok((0, 0));
    };
    let prefix = format!("{name}.");
    let (mut bytes, mut last) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(n) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        // A file removed between the listing and here holds nothing.
        bytes += entry.metadata().map_or(0, |m| m.len());
        last = last.max(n);
    }
    Ok((bytes, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(i: u64) -> DeadLetter {
        DeadLetter::new(
            &flowlog_model::SourceId::new("s3://b/k"),
            i,
            "bad".to_string(),
            &[b'x'; 100],
        )
    }

    fn store(dir: &Path, limits: DeadLetterLimits) -> DeadLetterFile {
        let metrics = flowlog_component::Metrics::new();
        DeadLetterFile::open(
            &dir.join("dead.ndjson"),
            limits,
            metrics.component("dead_letter", "file"),
            Gauge::default(),
        )
        .unwrap()
    }

    #[test]
    fn the_store_rotates_refuses_past_its_cap_and_takes_again_once_files_are_moved() {
        let dir = tempfile::tempdir().unwrap();
        let line = letter(1).to_json().len() as u64 + 1;
        let limits = DeadLetterLimits {
            // Ten letters, with room for the digits of two-digit line numbers.
            max_bytes: 10 * line + 20,
            rotate_bytes: 3 * line,
        };
        let store = store(dir.path(), limits);
        for i in 0..10 {
            store.write(letter(i)).unwrap();
        }
        assert!(!store.is_full());
        let err = store.write(letter(10)).unwrap_err();
        assert!(matches!(err, DeadLetterError::Full { .. }), "{err}");
        assert!(err.to_string().contains("dead.ndjson"), "{err}");
        assert!(store.is_full());
        store.sync().unwrap();
        // Rotated at three letters a file, numbered from 1, nothing lost or overwritten.
        let mut held = 0;
        for n in 1..=3 {
            let text = std::fs::read_to_string(numbered(&store.path, n)).unwrap();
            held += text.lines().count();
        }
        held += std::fs::read_to_string(&store.path)
            .unwrap()
            .lines()
            .count();
        assert_eq!(held, 10);
        assert!(!numbered(&store.path, 4).exists());

        // An operator moves the first rotated file away: within a second there is room.
        std::fs::rename(numbered(&store.path, 1), dir.path().join("shipped")).unwrap();
        std::thread::sleep(RESCAN);
        store.write(letter(10)).unwrap();
        assert!(!store.is_full());
        // A restart counts what is there and goes on numbering after the last file.
        drop(store);
        let again = self::store(dir.path(), limits);
        again.write(letter(11)).unwrap();
        again.write(letter(12)).unwrap();
        assert!(numbered(&again.path, 4).exists());
    }
}
