//! What `flowlog check` says about a path `run` would write (a data dir, an output file),
//! found without writing, creating or truncating anything.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An existing file that would be appended to: its size. A missing one: where it would
/// be created, which directories with it, and that the nearest existing one is writable.
pub fn file(path: &Path) -> Result<String, String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(format!("{}: is a directory", path.display())),
        Ok(m) => {
            // Opened for appending without creating: what `run` does, minus the writes
            // (opening changes neither the contents nor the times).
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(format!("{} writable ({} bytes)", path.display(), m.len()))
        }
        Err(e) if missing(&e) => would_create(path),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A directory `run` keeps files in: writable if it exists, or creatable.
pub fn directory(path: &Path) -> Result<String, String> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(format!("{}: is not a directory", path.display())),
        Ok(_) => {
            access(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(format!("{} writable", path.display()))
        }
        Err(e) if missing(&e) => would_create(path),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// `path` does not exist: the nearest ancestor that does must be a directory the process
/// may create entries in.
fn would_create(path: &Path) -> Result<String, String> {
    let mut missing: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                access(dir).map_err(|e| {
                    format!(
                        "{}: cannot be created: {}: {e}",
                        path.display(),
                        dir.display()
                    )
                })?;
                missing.reverse();
                let created = if missing.len() == 1 {
                    String::new()
                } else {
                    let dirs: Vec<_> = missing[..missing.len() - 1]
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect();
                    format!(", with the directories {}", dirs.join(", "))
                };
                return Ok(format!(
                    "{} does not exist; run would create it{created}",
                    path.display()
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "{}: cannot be created: {} is not a directory",
                    path.display(),
                    dir.display()
                ))
            }
            Err(e) if self::missing(&e) => {
                missing.push(dir.to_path_buf());
                ancestor = dir.parent();
            }
            Err(e) => return Err(format!("{}: {}: {e}", path.display(), dir.display())),
        }
    }
    Err(format!(
        "{}: no existing directory above it",
        path.display()
    ))
}

/// Not there: no such entry, or a file where a directory of the path should be (which
/// the walk up then names).
fn missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Whether this process (its effective ids) may create entries in `dir`: the kernel's
/// answer, which also knows read-only mounts.
fn access(dir: &Path) -> io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<PathBuf> {
        let mut all = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p.clone());
                }
                all.push(p);
            }
        }
        all.sort();
        all
    }

    #[test]
    fn a_missing_file_is_said_to_be_created_and_nothing_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/out.ndjson");
        let said = file(&path).unwrap();
        assert!(said.contains("run would create it"), "{said}");
        assert!(
            said.contains(&dir.path().join("a").display().to_string()),
            "{said}"
        );
        assert!(listing(dir.path()).is_empty(), "check created something");
        let said = directory(&dir.path().join("data")).unwrap();
        assert!(said.contains("run would create it"), "{said}");
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn an_existing_file_is_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, b"{}\n").unwrap();
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(file(&path).unwrap().contains("writable (3 bytes)"));
        assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
    }

    #[test]
    fn what_cannot_be_created_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("plain");
        std::fs::write(&blocker, b"").unwrap();
        let e = file(&blocker.join("x/out.ndjson")).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        let e = file(dir.path()).unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        let e = directory(&blocker).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
    }
}
