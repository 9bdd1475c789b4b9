//! A file written beside its final name (`<name>.partial-<pid>`) and renamed over it once
//! complete: a command that fails leaves what was there before, not half an output.
//! `query --output` and `transform --output-format parquet` write their files this way.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The file being written; removed when dropped without [`Replaced::keep`].
pub struct Replaced {
    partial: PathBuf,
    path: PathBuf,
    kept: bool,
}

impl Replaced {
    /// Creates the file beside `path`.
    pub fn create(path: &Path) -> Result<(File, Replaced), String> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".partial-{}", std::process::id()));
        let partial = path.with_file_name(name);
        let file = File::create(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
        let replaced = Replaced {
            partial,
            path: path.to_path_buf(),
            kept: false,
        };
        Ok((file, replaced))
    }

    /// Puts the written file on disk, then under its name (over what was there).
    pub fn keep(mut self) -> io::Result<()> {
        File::open(&self.partial)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&self.partial, &self.path))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for Replaced {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
