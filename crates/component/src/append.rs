//! Files of lines flowlog appends to (outputs, file sinks, dead letters), opened so that a
//! line a crash cut short is not glued to the next one written.
//!
//! `kill -9` (or a power cut) in the middle of a large write can leave part of a line on
//! disk: Linux stops a write to a regular file between pages when a fatal signal is
//! pending. That part was never confirmed (a confirmation, a checkpoint or an
//! acknowledgement waits for the whole write), so it is written again in full later;
//! appending after it would make one line of two, which no reader can parse.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A file opened for appending whole lines.
pub struct Appending {
    pub file: File,
    /// The end of a line cut short that was removed, if there was one (lossy UTF-8, at
    /// most 200 characters), and how many bytes it had: for a warning, so that nothing
    /// goes unsaid.
    pub removed: Option<(u64, String)>,
}

/// Opens `path` for appending (creating it, not its directory), first removing a last
/// line that lacks its newline.
pub fn open(path: &Path) -> io::Result<Appending> {
    let as_it_is = || {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Appending {
            file,
            removed: None,
        })
    };
    // Only a regular file has a tail to look at. A pipe, a terminal or /dev/null is opened
    // for writing alone, as before: opened for reading as well, a FIFO would not wait for
    // its reader and would keep what is written when nobody reads it.
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        _ => return as_it_is(),
    }
    // Reading the tail takes read permission, which appending alone does not.
    let file = match OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return as_it_is(),
        Err(e) => return Err(e),
    };
    let metadata = file.metadata()?;
    let len = metadata.len();
    let keep = complete_lines(&file, len)?;
    let removed = if keep < len {
        let mut tail = vec![0; (len - keep).min(4096) as usize];
        file.read_exact_at(&mut tail, keep)?;
        file.set_len(keep)?;
        let text: String = String::from_utf8_lossy(&tail).chars().take(200).collect();
        Some((len - keep, text))
    } else {
        None
    };
    Ok(Appending { file, removed })
}

/// The length of the file's complete lines: up to and including its last newline (all of
/// it when it ends with one, nothing when it has none).
fn complete_lines(file: &File, len: u64) -> io::Result<u64> {
    const STEP: u64 = 64 << 10;
    let mut end = len;
    let mut buf = vec![0u8; STEP as usize];
    while end > 0 {
        let start = end.saturating_sub(STEP);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(at) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(contents: &[u8]) -> (Vec<u8>, Option<(u64, String)>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "flowlog-append-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let path = dir.join("out.ndjson");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, contents).unwrap();
        let appending = open(&path).unwrap();
        use std::io::Write;
        (&appending.file).write_all(b"{\"next\":1}\n").unwrap();
        let after = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        (after, appending.removed)
    }

    #[test]
    fn what_is_not_a_readable_regular_file_is_opened_as_it_is() {
        let dir = std::env::temp_dir().join(format!("flowlog-append-x-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Write permission only (unless root, who may read anyway).
        let path = dir.join("write-only.ndjson");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o200)).unwrap();
        assert!(open(&path).is_ok());
        // A character device: nothing to repair, nothing read.
        let null = open(Path::new("/dev/null")).unwrap();
        assert!(null.removed.is_none());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_line_cut_short_is_removed_and_whole_lines_stay() {
        let (after, removed) = opened(b"{\"a\":1}\n{\"b\":");
        assert_eq!(after, b"{\"a\":1}\n{\"next\":1}\n");
        assert_eq!(removed, Some((5, "{\"b\":".to_string())));

        let (after, removed) = opened(b"{\"a\":1}\n");
        assert_eq!(after, b"{\"a\":1}\n{\"next\":1}\n");
        assert_eq!(removed, None);

        let (after, removed) = opened(b"");
        assert_eq!(after, b"{\"next\":1}\n");
        assert_eq!(removed, None);

        // No newline at all, and a cut-short line longer than one read.
        let long = vec![b'x'; 200_000];
        let (after, removed) = opened(&long);
        assert_eq!(after, b"{\"next\":1}\n");
        assert_eq!(removed.map(|(n, _)| n), Some(200_000));
        let mut two = b"{\"a\":1}\n".to_vec();
        two.extend_from_slice(&long);
        let (after, _) = opened(&two);
        assert_eq!(after, b"{\"a\":1}\n{\"next\":1}\n");
    }
}
