//! The dead-letter file: records a source could not decode and records a sink's receiver
//! refused for good, one NDJSON object each (`source`, `line`, `reason`, `raw`).
//!
//! A dead-lettered record counts as handled, so the file is flushed and synced before
//! any checkpoint that passes it is written ([`DeadLetterFile::sync`]).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flowlog_sink::{ComponentMetrics, DeadLetter, DeadLetters};

pub struct DeadLetterFile {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
    metrics: ComponentMetrics,
}

impl DeadLetterFile {
    pub fn open(path: &Path, metrics: ComponentMetrics) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            out: Mutex::new(BufWriter::new(file)),
            metrics,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> std::io::Result<()> {
        let mut out = self.out.lock().unwrap();
        out.flush()?;
        out.get_ref().sync_data()
    }
}

impl DeadLetters for DeadLetterFile {
    fn write(&self, letter: DeadLetter) {
        self.metrics.dead_letters.inc();
        let mut line = letter.to_json();
        line.push('\n');
        let mut out = self.out.lock().unwrap();
        if let Err(e) = out.write_all(line.as_bytes()) {
            // Nowhere else to put it: say so loudly, with the record's place.
            tracing::error!(
                "cannot write to the dead letter {}: {e}; lost: {} line {}",
                self.path.display(),
                letter.source,
                letter.line
            );
        }
    }
}
