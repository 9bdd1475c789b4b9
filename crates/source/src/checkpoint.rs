//! Checkpoints: how far each file has been delivered, so a restart resumes without loss
//! and re-sends at most what was not acknowledged.
//!
//! A file's checkpoint is the highest line such that it and every line before it were
//! delivered or dead-lettered, plus, for plain text read from a known position, the byte
//! offset where the next block starts and the format in force there (a header line may
//! have set it). The file is identified by device and inode, so a replaced file starts
//! over. All checkpoints live in one JSON file, replaced atomically (write a temporary
//! file, fsync, rename, fsync the directory), so a crash leaves the old or the new
//! version, never a mix.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// `<data_dir>/lock`, held exclusively while a run lives: two runs on one data_dir would
/// overwrite each other's checkpoints. The operating system releases it when the
/// process ends, however it ends (kill -9 included), so a stale lock cannot exist.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock, or fails at once (`WouldBlock`) when another process holds it.
    pub fn acquire(data_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!(
                    "{} is held by another flowlog run on this data_dir",
                    path.display()
                ),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Where one file stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    /// Device and inode of the file the numbers belong to.
    pub dev: u64,
    pub ino: u64,
    /// Every line up to this one is delivered or dead-lettered.
    pub line: u64,
    /// Where to resume reading plain text: the byte offset of a block start at or before
    /// `line + 1`, with the line number it starts at and the format in force there.
    pub resume: Option<Resume>,
    /// The whole file is delivered (read-once sources).
    #[serde(default)]
    pub done: bool,
    /// Lines past `line` that are delivered too (inclusive ranges, in order): batches
    /// acknowledged while an earlier one was not. A restart skips them, so one slow
    /// batch does not make everything after it be sent again. At most
    /// [`MAX_ACKED_RANGES`]; what does not fit is merely sent again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acked: Vec<(u64, u64)>,
}

/// How many delivered ranges past the prefix a checkpoint keeps.
pub const MAX_ACKED_RANGES: usize = 64;

impl FileCheckpoint {
    /// Whether `line` was delivered (or dead-lettered) before.
    pub fn covers(&self, line: u64) -> bool {
        line <= self.line
            || self
                .acked
                .iter()
                .any(|&(first, last)| first <= line && line <= last)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub offset: u64,
    pub first_line: u64,
    pub format: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    version: u32,
    files: BTreeMap<String, FileCheckpoint>,
}

/// The checkpoints of a run, shared by its sources; [`Checkpoints::save`] writes them.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    path: PathBuf,
    inner: Arc<Mutex<(Stored, bool)>>,
    /// Held for a whole save: two saves at once (the periodic one, which an abort cannot
    /// stop once it runs on a blocking thread, and the final one) would share the
    /// temporary file, and the second rename would find it gone.
    saving: Arc<Mutex<()>>,
}

impl Checkpoints {
    /// Loads `<data_dir>/checkpoints.json` (none yet is an empty set), creating the
    /// directory if it is not there.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        Self::load(data_dir)
    }

    /// Loads `<data_dir>/checkpoints.json` (none yet, or no directory, is an empty set),
    /// creating nothing: what `check` reads.
    pub fn load(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("checkpoints.json");
        let stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored {
                version: 1,
                ..Stored::default()
            },
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            inner: Arc::new(Mutex::new((stored, false))),
            saving: Arc::new(Mutex::new(())),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &str) -> Option<FileCheckpoint> {
        self.inner.lock().unwrap().0.files.get(key).cloned()
    }

    pub fn set(&self, key: &str, checkpoint: FileCheckpoint) {
        let mut inner = self.inner.lock().unwrap();
        if inner.0.files.get(key) != Some(&checkpoint) {
            inner.0.files.insert(key.to_string(), checkpoint);
            inner.1 = true;
        }
    }

    /// Keeps only the checkpoints `keep` says yes to (by key and checkpoint).
    pub fn retain(&self, mut keep: impl FnMut(&str, &FileCheckpoint) -> bool) {
        let mut inner = self.inner.lock().unwrap();
        let before = inner.0.files.len();
        inner
            .0
            .files
            .retain(|key, checkpoint| keep(key, checkpoint));
        if inner.0.files.len() != before {
            inner.1 = true;
        }
    }

    /// Writes the checkpoints if they changed since the last save.
    pub fn save(&self) -> std::io::Result<()> {
        self.save_after(|| Ok(()))
    }

    /// Writes the checkpoints if they changed since the last save, as they were before
    /// `first` ran (the dead letter's sync): what the saved checkpoints cover is then
    /// durable, even for checkpoints that moved on while `first` ran.
    pub fn save_after(&self, first: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        let _saving = self.saving.lock().unwrap();
        let bytes = {
            let mut inner = self.inner.lock().unwrap();
            if !inner.1 {
                return first();
            }
            inner.1 = false;
            serde_json::to_vec_pretty(&inner.0).expect("checkpoints serialize")
        };
        let result = first().and_then(|()| write_atomically(&self.path, &bytes));
        if result.is_err() {
            self.inner.lock().unwrap().1 = true;
        }
        result
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new content.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable only once the directory is.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The key of a file's checkpoint: its path as given (so it is also the records'
/// source name), lossily made text. Sources and `check` look checkpoints up by this.
pub fn key_of(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Device and inode of a file.
pub fn identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (metadata.dev(), metadata.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_at_once_from_several_threads_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let checkpoints = checkpoints.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        checkpoints.set(
                            &format!("f{t}"),
                            FileCheckpoint {
                                line: i,
                                ..FileCheckpoint::default()
                            },
                        );
                        checkpoints.save().unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let again = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(again.get("f7").unwrap().line, 49);
    }

    #[test]
    fn saved_checkpoints_load_again() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        let cp = FileCheckpoint {
            dev: 1,
            ino: 2,
            line: 41,
            resume: Some(Resume {
                offset: 4096,
                first_line: 40,
                format: "${version} ${srcaddr}".into(),
            }),
            done: false,
            acked: vec![(50, 60), (70, 70)],
        };
        checkpoints.set("/var/log/a.log", cp.clone());
        checkpoints.save().unwrap();
        assert!(!dir.path().join("checkpoints.json.tmp").exists());
        let again = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(again.get("/var/log/a.log"), Some(cp));
        assert_eq!(again.get("/var/log/b.log"), None);
    }
}
