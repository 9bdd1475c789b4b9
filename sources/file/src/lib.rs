//! Local inputs: files (read once or followed), directories of objects, and standard
//! input. Decoding is synchronous, so each runs on a thread of its own ([`threaded`]);
//! their acknowledgement action is the checkpoint ([`Progress`]).

mod paths;
mod settings;
mod text;

use flowlog_component::duration::duration as secs;
use settings::positive_poll;
pub use settings::{DirectorySource, FileSource, StdinSource};

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flowlog_decode::{
    decode_file, decode_reader, read_prefix, sniff, DecodeOptions, Envelope, LineDecoder, Streaming,
};
use flowlog_model::{FlowFormat, SourceId};

use flowlog_component::BoxFuture;
use flowlog_source::checkpoint::{identity, key_of, Checkpoints, FileCheckpoint, Resume};
use flowlog_source::{
    threaded, CheckOptions, Emit, Findings, Progress, Source, SourceContext, SourceError,
    SourceKind,
};

use crate::paths::{inputs, readable, usable_files, Input};
use crate::text::TextReader;

impl SourceKind for FileSource {
    fn format(&self) -> Option<&str> {
        self.format.as_deref()
    }

    fn validate(&self) -> Result<(), SourceError> {
        inputs(&self.paths)?;
        positive_poll(self.poll_secs)
    }

    fn build(&self, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
        let inputs = inputs(&self.paths)?;
        // A finite run reads followed files to their current end, like files read once.
        let (follow, poll) = (self.follow && !ctx.once, secs(self.poll_secs));
        let files = usable_files(&inputs, follow)?;
        let source = if follow {
            threaded(ctx, move |ctx| {
                follow_files(ctx, &inputs, poll);
                Ok(())
            })
        } else {
            threaded(ctx, move |ctx| read_files(ctx, &files))
        };
        Ok(source)
    }

    fn check<'a>(&'a self, options: CheckOptions<'a>) -> BoxFuture<'a, Findings> {
        let checkpoints = options.checkpoints;
        let mut findings = Findings::new();
        let Ok(inputs) = inputs(&self.paths) else {
            return Box::pin(std::future::ready(findings));
        };
        for input in &inputs {
            let mut problems = Vec::new();
            let matched = input.expand(&mut problems);
            findings.extend(
                problems
                    .into_iter()
                    .map(|p| Err(SourceError::Unavailable(p))),
            );
            if matched.is_empty() {
                findings.push(if self.follow {
                    Ok(format!(
                        "{input} (matches no file yet; followed once one appears)"
                    ))
                } else {
                    Err(SourceError::Unavailable(format!(
                        "{input}: matches no file"
                    )))
                });
            }
            for path in matched {
                findings.push(match readable(&path) {
                    Ok(len) => {
                        let state = checkpoints.and_then(|c| c.get(&key_of(&path))).map_or(
                            "no checkpoint".to_string(),
                            |c| match c.done {
                                true => "delivered".to_string(),
                                false => format!("delivered through line {}", c.line),
                            },
                        );
                        Ok(format!("{} ({len} bytes, {state})", path.display()))
                    }
                    Err(_) if self.follow && !path.exists() => Ok(format!(
                        "{} (not there yet; will be followed once it is)",
                        path.display()
                    )),
                    Err(e) => Err(SourceError::Unavailable(e)),
                });
            }
        }
        Box::pin(std::future::ready(findings))
    }

    fn check_local(&self) -> BoxFuture<'_, Findings> {
        self.check(CheckOptions::default())
    }
}

impl SourceKind for DirectorySource {
    fn format(&self) -> Option<&str> {
        self.format.as_deref()
    }

    fn validate(&self) -> Result<(), SourceError> {
        positive_poll(self.poll_secs)
    }

    fn build(&self, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
        // A directory that cannot be listed now is a setting to fix, not a state to wait
        // out (a drop box exists before anything is put in it).
        std::fs::read_dir(&self.path)
            .map_err(|e| SourceError::Unavailable(format!("{}: {e}", self.path.display())))?;
        let settings = self.clone();
        Ok(threaded(ctx, move |ctx| read_directory(ctx, &settings)))
    }

    fn check<'a>(&'a self, _: CheckOptions<'a>) -> BoxFuture<'a, Findings> {
        // The listing `run` makes: the objects it would read, and what it could not list.
        let findings = match list_objects(&self.path, self.depth()) {
            Ok((objects, unlisted)) => {
                let mut findings = vec![Ok(format!(
                    "{} ({} objects)",
                    self.path.display(),
                    objects.len()
                ))];
                findings.extend(
                    unlisted
                        .into_iter()
                        .map(|p| Err(SourceError::Unavailable(p))),
                );
                findings
            }
            Err(e) => vec![Err(SourceError::Unavailable(format!(
                "{}: {e}",
                self.path.display()
            )))],
        };
        Box::pin(std::future::ready(findings))
    }

    fn check_local(&self) -> BoxFuture<'_, Findings> {
        self.check(CheckOptions::default())
    }
}

impl SourceKind for StdinSource {
    fn format(&self) -> Option<&str> {
        self.format.as_deref()
    }

    fn validate(&self) -> Result<(), SourceError> {
        Ok(())
    }

    fn build(&self, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
        Ok(threaded(ctx, read_stdin))
    }

    fn check<'a>(&'a self, _: CheckOptions<'a>) -> BoxFuture<'a, Findings> {
        Box::pin(std::future::ready(vec![Ok("standard input".into())]))
    }

    fn check_local(&self) -> BoxFuture<'_, Findings> {
        self.check(CheckOptions::default())
    }
}

/// How reading one file ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Read to the end (read once), everything settled.
    Complete,
    /// The path now names another file, or the file shrank: read it again from the start.
    Replaced,
    /// Shutdown, or the pipeline is gone.
    Stopped,
}

/// Reads files one after the other, to their end. A file that cannot be read is named
/// and the others are still read; the source then ends with the list (the run fails).
fn read_files(ctx: &SourceContext, paths: &[PathBuf]) -> Result<(), SourceError> {
    let mut failed = Vec::new();
    for path in paths {
        if ctx.stopping() {
            break;
        }
        if let Err(what) = read_once(ctx, path) {
            failed.push(what);
        }
    }
    SourceError::unless_failed(failed)
}

/// Follows every file the inputs name, one thread each (a handful per source at most).
/// Patterns are expanded again every `poll`: a file that appears later is followed from
/// its start, and one that is removed is let go of (taken up again if it comes back).
fn follow_files(ctx: &SourceContext, inputs: &[Input], poll: Duration) {
    let followed = std::sync::Mutex::new(std::collections::HashSet::<PathBuf>::new());
    let followed = &followed;
    let patterns = inputs.iter().any(Input::is_pattern);
    std::thread::scope(|scope| loop {
        for input in inputs {
            let mut problems = Vec::new();
            for path in input.expand(&mut problems) {
                if !followed.lock().expect("not poisoned").insert(path.clone()) {
                    continue;
                }
                let wait_for_it = !input.is_pattern();
                scope.spawn(move || {
                    if follow_file(ctx, &path, poll, wait_for_it) {
                        followed.lock().expect("not poisoned").remove(&path);
                    }
                });
            }
            for problem in problems {
                tracing::warn!(source = %ctx.name, "{problem}");
            }
        }
        if !patterns || sleep_unless_stopped(ctx, poll) {
            return;
        }
    });
}

/// Reads every object put in the directory (and, when recursive, in its subdirectories:
/// the tree `aws s3 sync` leaves), once each, in path order; looks again every poll, or
/// ends after one pass in a finite run. Names starting with `.` are left alone (objects
/// being written, by convention).
fn read_directory(ctx: &SourceContext, settings: &DirectorySource) -> Result<(), SourceError> {
    let dir = settings.path.as_path();
    let depth = settings.depth();
    let poll = secs(settings.poll_secs);
    // The listing's error, logged when it starts or changes rather than at every poll
    // (it is counted every time, and /health tells how long it has lasted).
    let mut listing_error: Option<String> = None;
    loop {
        // The poll is a success only if the listing and every read in it were.
        let mut failed = Vec::new();
        match list_objects(dir, depth) {
            Ok((paths, unlisted)) => {
                if listing_error.take().is_some() {
                    tracing::info!(source = %ctx.name, "{}: listing again", dir.display());
                }
                for problem in unlisted {
                    tracing::warn!(source = %ctx.name, "{problem}");
                    ctx.metrics.error("list", &problem);
                    failed.push(problem);
                }
                forget_removed(&ctx.checkpoints, dir, depth > 0, &paths);
                for path in paths {
                    if ctx.stopping() {
                        return Ok(());
                    }
                    if let Err(problem) = read_once(ctx, &path) {
                        failed.push(problem);
                    }
                }
            }
            Err(e) => {
                let message = format!("{}: {e}", dir.display());
                if listing_error.as_ref() != Some(&message) {
                    tracing::error!(source = %ctx.name, "{message}; trying again every poll");
                }
                ctx.metrics.error("list", &message);
                listing_error = Some(message.clone());
                failed.push(message);
            }
        }
        if failed.is_empty() {
            ctx.metrics.recovered();
        }
        if ctx.once {
            return SourceError::unless_failed(failed);
        }
        if sleep_unless_stopped(ctx, poll) {
            return Ok(());
        }
    }
}

/// The objects under `dir` down to `depth` levels of subdirectories, in path order, and
/// the subdirectories that could not be listed. Entries whose names start with `.` and
/// symbolic links are left alone. An error: `dir` itself cannot be listed.
fn list_objects(dir: &Path, depth: usize) -> std::io::Result<(Vec<PathBuf>, Vec<String>)> {
    let mut files = Vec::new();
    let mut unlisted = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), 0usize)];
    while let Some((current, level)) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(e) if current == dir => return Err(e),
            Err(e) => {
                unlisted.push(format!("{}: {e}", current.display()));
                continue;
            }
        };
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_file() => files.push(entry.path()),
                Ok(t) if t.is_dir() && level < depth => pending.push((entry.path(), level + 1)),
                _ => {}
            }
        }
    }
    files.sort();
    Ok((files, unlisted))
}

/// Drops the checkpoints of delivered objects that are no longer in `dir` (`present`
/// is its listing; `tree`: anywhere under it): a drop box sees a stream of new names, and
/// the checkpoints of the ones cleaned up would otherwise pile up forever. An object that
/// is still there keeps its checkpoint, so it is not read again.
fn forget_removed(checkpoints: &Checkpoints, dir: &Path, tree: bool, present: &[PathBuf]) {
    // Compared as keys, as the checkpoints were stored: a name that is not UTF-8 then
    // still matches its own checkpoint instead of looking removed (and being read again).
    let present: std::collections::HashSet<String> = present.iter().map(|p| key_of(p)).collect();
    checkpoints.retain(|key, checkpoint| {
        let path = Path::new(key);
        let here = if tree {
            path.starts_with(dir)
        } else {
            path.parent() == Some(dir)
        };
        !(checkpoint.done && here && !present.contains(key))
    });
}

/// Reads standard input to its end. It cannot be read again, so it has no checkpoint.
fn read_stdin(ctx: &SourceContext) -> Result<(), SourceError> {
    let start = FileCheckpoint::default();
    let mut progress = Progress::new(None, (0, 0), &start);
    // A pipe or a terminal sends records on as their lines arrive; a file, in blocks.
    let options = DecodeOptions {
        streaming: Streaming::stdin(Streaming::DEFAULT_FLUSH_INTERVAL),
        ..decode_options(ctx, ctx.format.clone())
    };
    let mut emit = Emit::new(ctx, &mut progress, &start);
    let stdin = std::io::stdin();
    match decode_reader(stdin.lock(), SourceId::new("-"), &options, &mut emit) {
        Ok(stats) => {
            ctx.metrics.bytes_in.inc_by(stats.bytes_read);
        }
        Err(e) if emit.gone() => tracing::debug!("stdin: {e}"),
        Err(e) => {
            drop(emit);
            progress.finish(&ctx.checkpoints, true);
            return Err(SourceError::Unavailable(format!("standard input: {e}")));
        }
    }
    drop(emit);
    progress.finish(&ctx.checkpoints, true);
    Ok(())
}

fn decode_options(ctx: &SourceContext, format: Option<FlowFormat>) -> DecodeOptions {
    DecodeOptions {
        format,
        batch_rows: ctx.batch_rows,
        keep_lines: ctx.keep_lines,
        ..DecodeOptions::default()
    }
}

/// Reads one file or object to its end unless its checkpoint says it was delivered
/// already. One that cannot be read is reported and counted; the error names it (a
/// directory reads it again at the next poll). Public for sources that find local
/// objects their own way (a backfill of a copied bucket).
pub fn read_once(ctx: &SourceContext, path: &Path) -> Result<(), String> {
    open_and_read(ctx, path, None).map(|_| ()).map_err(|e| {
        let what = format!("{}: {e}", path.display());
        tracing::error!(source = %ctx.name, "{what}");
        ctx.metrics.error("read", &what);
        what
    })
}

/// Follows `path` through rotations and truncations until shutdown. A path that is not
/// there is waited for when `wait_for_it` (a path configured as written); one a pattern
/// matched is let go of, and true is returned so that it is taken up again if it comes
/// back. Anything else ends only with the source (a compressed file matched by a pattern
/// is read once and kept, so that it is not read again at the next expansion).
fn follow_file(ctx: &SourceContext, path: &Path, poll: Duration, wait_for_it: bool) -> bool {
    loop {
        let ended = match File::open(path) {
            Ok(_) => {
                ctx.metrics.recovered();
                open_and_read(ctx, path, Some(poll))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !wait_for_it {
                    return true;
                }
                // Not there yet (or between rotation steps): wait for it.
                if sleep_unless_stopped(ctx, poll) {
                    return false;
                }
                continue;
            }
            Err(e) => Err(e),
        };
        match ended {
            Ok(Ended::Replaced) => continue,
            Ok(_) => return false,
            Err(e) => {
                tracing::error!(source = %ctx.name, "{}: {e}; retrying", path.display());
                ctx.metrics
                    .error("read", format!("{}: {e}", path.display()));
                if sleep_unless_stopped(ctx, poll.max(Duration::from_secs(1))) {
                    return false;
                }
            }
        }
    }
}

/// Reads `path` from its checkpoint; `poll` = follow it, looking for more that often.
fn open_and_read(
    ctx: &SourceContext,
    path: &Path,
    poll: Option<Duration>,
) -> std::io::Result<Ended> {
    let mut file = File::open(path)?;
    let metadata = file.metadata()?;
    let id = identity(&metadata);
    let key = key_of(path);
    let checkpoint = ctx
        .checkpoints
        .get(&key)
        .filter(|c| (c.dev, c.ino) == id)
        .filter(|c| c.resume.as_ref().is_none_or(|r| r.offset <= metadata.len()))
        .unwrap_or_default();
    if checkpoint.done && poll.is_none() {
        return Ok(Ended::Complete);
    }
    let mut magic = [0u8; flowlog_decode::SNIFF_LEN];
    let n = read_prefix(&mut file, &mut magic)?;
    let text = matches!(sniff(&magic[..n]), Envelope::Text | Envelope::Empty);
    let mut progress = Progress::new(Some(key.clone()), id, &checkpoint);
    let ended = if text {
        read_text(ctx, path, file, &key, &checkpoint, &mut progress, poll)?
    } else {
        if poll.is_some() {
            tracing::warn!(source = %ctx.name, "{}: only plain text can be followed; reading it once", path.display());
        }
        let options = decode_options(ctx, ctx.format.clone());
        let mut emit = Emit::new(ctx, &mut progress, &checkpoint);
        match decode_file(path, SourceId::new(key.as_str()), &options, &mut emit) {
            Ok(stats) => {
                ctx.metrics.bytes_in.inc_by(stats.bytes_read);
                Ended::Complete
            }
            Err(_) if emit.gone() => Ended::Stopped,
            Err(e) if e.is_corrupt_input() && poll.is_none() => {
                drop(emit);
                flowlog_source::quarantine(ctx, &key, metadata.len(), &e, &mut progress);
                return Ok(Ended::Complete);
            }
            Err(e) => {
                drop(emit);
                progress.finish(&ctx.checkpoints, false);
                return Err(std::io::Error::other(e.to_string()));
            }
        }
    };
    let delivered = progress.finish(&ctx.checkpoints, ended == Ended::Complete);
    if ended == Ended::Complete && !delivered {
        tracing::warn!(source = %ctx.name, "{}: not every batch was delivered; it will be read again from its checkpoint", path.display());
    }
    Ok(ended)
}

/// Plain text from the checkpoint's resume point, a block at a time, each block's last
/// batch carrying the point after it.
fn read_text(
    ctx: &SourceContext,
    path: &Path,
    mut file: File,
    key: &str,
    checkpoint: &FileCheckpoint,
    progress: &mut Progress,
    poll: Option<Duration>,
) -> std::io::Result<Ended> {
    let (offset, mut next_line, format) = match &checkpoint.resume {
        Some(Resume {
            offset,
            first_line,
            format,
        }) => (*offset, *first_line, FlowFormat::parse(format).ok()),
        None => (0, 1, ctx.format.clone()),
    };
    file.seek(SeekFrom::Start(offset))?;
    let identity = identity(&file.metadata()?);
    let mut reader = TextReader::new(file, offset);
    let mut decoder = LineDecoder::new(
        SourceId::new(key),
        format.or(ctx.format.clone()),
        ctx.batch_rows,
    )
    .keeping_lines(ctx.keep_lines);
    let decode_error = |e: flowlog_decode::DecodeError| std::io::Error::other(e.to_string());
    loop {
        if ctx.stopping() {
            return Ok(Ended::Stopped);
        }
        match reader.next_block(poll.is_none())? {
            Some((block, end)) => {
                let mut emit = Emit::new(ctx, progress, checkpoint);
                emit.hold();
                ctx.metrics.bytes_in.inc_by(block.input_bytes());
                let lines = decoder
                    .decode_frame(block, next_line, &mut emit)
                    .map_err(decode_error)?;
                decoder.flush(&mut emit).map_err(decode_error)?;
                next_line += lines;
                let resume = Resume {
                    offset: end,
                    first_line: next_line,
                    format: decoder.format().to_string(),
                };
                if !emit.send_kept(Some(resume)) {
                    return Ok(Ended::Stopped);
                }
            }
            None => {
                let Some(poll) = poll else {
                    return Ok(Ended::Complete);
                };
                progress.poll(&ctx.checkpoints);
                // Rotated (the path names another file) or truncated: start over.
                match std::fs::metadata(path) {
                    Ok(m) if flowlog_source::checkpoint::identity(&m) != identity => {
                        return Ok(Ended::Replaced)
                    }
                    Ok(m) if m.len() < reader.offset() => {
                        ctx.checkpoints.set(key, FileCheckpoint::default());
                        return Ok(Ended::Replaced);
                    }
                    _ => {}
                }
                if sleep_unless_stopped(ctx, poll) {
                    return Ok(Ended::Stopped);
                }
            }
        }
    }
}

/// Sleeps up to `d`, waking early on shutdown; true if stopping.
fn sleep_unless_stopped(ctx: &SourceContext, d: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() {
        if ctx.stopping() {
            return true;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    ctx.stopping()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_delivered_objects_gone_from_the_directory_are_forgotten() {
        let data = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(data.path()).unwrap();
        let dir = Path::new("/drop");
        let done = FileCheckpoint {
            done: true,
            ..FileCheckpoint::default()
        };
        #[cfg(unix)]
        let odd = {
            use std::os::unix::ffi::OsStrExt;
            dir.join(std::ffi::OsStr::from_bytes(b"caf\xe9.log"))
        };
        #[cfg(not(unix))]
        let odd = dir.join("odd.log");
        for name in ["/drop/kept.log", "/drop/gone.log", "/elsewhere/gone.log"] {
            checkpoints.set(name, done.clone());
        }
        checkpoints.set(&key_of(&odd), done.clone());
        checkpoints.set("/drop/reading.log", FileCheckpoint::default());
        forget_removed(
            &checkpoints,
            dir,
            false,
            &[dir.join("kept.log"), odd.clone()],
        );
        assert!(checkpoints.get("/drop/kept.log").is_some());
        // A name that is not UTF-8 still matches its own (lossy) key.
        assert!(checkpoints.get(&key_of(&odd)).is_some());
        assert!(checkpoints.get("/drop/gone.log").is_none());
        // Other directories' files, and objects not yet delivered, are not this scan's.
        assert!(checkpoints.get("/elsewhere/gone.log").is_some());
        assert!(checkpoints.get("/drop/reading.log").is_some());
    }
}
