//! Files of lines flowlog appends to (outputs, file sinks, dead letters), opened so that a
//! line a crash cut short is not glued to the next one written.
//!
//! `kill -9` (or a power cut) in the middle of a large write can leave part of a line on
//! disk: Linux stops a write to a regular file between pages when a fatal signal is
//! pending. That part was never confirmed (a confirmation, a checkpoint or an
//! acknowledgement waits for the whole write), so it is sent again; appending right after
//! it would make one line of two, which no reader can parse. The part is ended with a
//! newline rather than removed: the file may not be flowlog's alone (a line typed without
//! its newline, another writer's line in progress), and nothing is deleted.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A file opened for appending whole lines.
pub struct Appending {
    pub file: File,
    /// The end of the last line, when it had no newline and one was added (lossy UTF-8,
    /// at most 200 characters): for a warning, so that it goes not unsaid.
    pub terminated: Option<String>,
}

/// Opens `path` for appending (creating it, not its directory); a last line without its
/// newline gets one first.
pub fn open(path: &Path) -> io::Result<Appending> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    // Only a regular file has a tail to look at (not a pipe, a terminal or /dev/null), and
    // reading it takes read permission, which appending alone does not: without it the
    // file is appended to as it is.
    let metadata = file.metadata()?;
    if !metadata.is_file() || metadata.len() == 0 {
        return Ok(Appending {
            file,
            terminated: None,
        });
    }
    let reader = match File::open(path) {
        Ok(reader) => reader,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Ok(Appending {
                file,
                terminated: None,
            })
        }
        Err(e) => return Err(e),
    };
    let len = metadata.len();
    let take = len.min(4096);
    let mut tail = vec![0; take as usize];
    reader.read_exact_at(&mut tail, len - take)?;
    if tail.last() == Some(&b'\n') {
        return Ok(Appending {
            file,
            terminated: None,
        });
    }
    use std::io::Write;
    (&file).write_all(b"\n")?;
    let line = tail
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&tail[..], |at| &tail[at + 1..]);
    let text = String::from_utf8_lossy(line);
    let skip = text.chars().count().saturating_sub(200);
    Ok(Appending {
        file,
        terminated: Some(text.chars().skip(skip).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(contents: &[u8]) -> (Vec<u8>, Option<String>) {
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
        (after, appending.terminated)
    }

    #[test]
    fn a_line_without_its_newline_is_ended_and_nothing_is_removed() {
        let (after, terminated) = opened(b"{\"a\":1}\n{\"b\":");
        assert_eq!(after, b"{\"a\":1}\n{\"b\":\n{\"next\":1}\n");
        assert_eq!(terminated.as_deref(), Some("{\"b\":"));

        let (after, terminated) = opened(b"{\"a\":1}\n");
        assert_eq!(after, b"{\"a\":1}\n{\"next\":1}\n");
        assert_eq!(terminated, None);

        let (after, terminated) = opened(b"");
        assert_eq!(after, b"{\"next\":1}\n");
        assert_eq!(terminated, None);

        // A long line without a newline anywhere: kept whole, its end quoted.
        let long = vec![b'x'; 200_000];
        let (after, terminated) = opened(&long);
        assert_eq!(after.len(), 200_000 + 1 + 11);
        assert_eq!(terminated.map(|t| t.len()), Some(200));
    }

    #[test]
    fn what_is_not_a_readable_regular_file_is_opened_as_it_is() {
        let null = open(Path::new("/dev/null")).unwrap();
        assert!(null.terminated.is_none());
    }
}
