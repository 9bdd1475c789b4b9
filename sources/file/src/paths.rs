//! What a file source's `paths` name: files, and glob patterns for many (`*`, `?`, `[...]`,
//! `**` for any depth), expanded at start and, when following, again at every poll so that
//! files which appear later are read too.

use std::path::{Path, PathBuf};

use flowlog_source::SourceError;

/// One entry of `paths`.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// A path taken as written.
    File(PathBuf),
    /// A glob pattern (the entry had `*`, `?` or `[`).
    Pattern(String),
}

impl Input {
    pub(crate) fn parse(path: &Path) -> Result<Self, SourceError> {
        let text = path.to_string_lossy();
        if !text.contains(['*', '?', '[']) {
            return Ok(Self::File(path.to_path_buf()));
        }
        glob::Pattern::new(&text).map_err(|e| {
            SourceError::Config(format!("paths: {text:?} is not a valid glob pattern: {e}"))
        })?;
        Ok(Self::Pattern(text.into_owned()))
    }

    /// The files this entry names now, in name order: the path itself (whether or not it
    /// exists), or what the pattern matches (regular files only; `errors` gets the
    /// directories the walk could not read).
    pub(crate) fn expand(&self, errors: &mut Vec<String>) -> Vec<PathBuf> {
        match self {
            Self::File(path) => vec![path.clone()],
            Self::Pattern(pattern) => {
                let Ok(matches) = glob::glob(pattern) else {
                    return Vec::new(); // validated in `parse`
                };
                let mut files = Vec::new();
                for entry in matches {
                    match entry {
                        Ok(path) if path.is_file() => files.push(path),
                        Ok(_) => {}
                        Err(e) => errors.push(format!("{pattern}: {e}")),
                    }
                }
                files
            }
        }
    }

    pub(crate) fn is_pattern(&self) -> bool {
        matches!(self, Self::Pattern(_))
    }
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Pattern(pattern) => f.write_str(pattern),
        }
    }
}

/// `paths`, parsed.
pub(crate) fn inputs(paths: &[PathBuf]) -> Result<Vec<Input>, SourceError> {
    if paths.is_empty() {
        return Err(SourceError::Config("paths is empty".into()));
    }
    paths.iter().map(|p| Input::parse(p)).collect()
}

/// Whether `path` can be read as a file now: the OS error otherwise, with the path.
pub(crate) fn readable(path: &Path) -> Result<u64, String> {
    let opened = std::fs::File::open(path).and_then(|f| f.metadata());
    match opened {
        Ok(m) if m.is_dir() => Err(format!(
            "{}: is a directory (a directory of objects is `type = \"directory\"`)",
            path.display()
        )),
        Ok(m) => Ok(m.len()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The files `inputs` name now, each readable. Read once, every entry must name at least
/// one (a path not there, a pattern matching nothing: the source cannot do what it was
/// configured for); followed, a path not there yet or a pattern matching nothing is
/// waited for.
pub(crate) fn usable_files(inputs: &[Input], follow: bool) -> Result<Vec<PathBuf>, SourceError> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for input in inputs {
        let matched = input.expand(&mut problems);
        if matched.is_empty() && input.is_pattern() && !follow {
            problems.push(format!("{input}: matches no file"));
        }
        for path in matched {
            match readable(&path) {
                Ok(_) => files.push(path),
                Err(_) if follow && !input.is_pattern() && !path.exists() => files.push(path),
                Err(e) => problems.push(e),
            }
        }
    }
    SourceError::unless_failed(problems).map(|()| files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_to_regular_files_in_name_order_and_literals_stay_as_written() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.log.gz", "a.log.gz", "c.txt"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.log.gz")).unwrap();
        let pattern = dir.path().join("*.log.gz");
        let input = Input::parse(&pattern).unwrap();
        assert!(input.is_pattern());
        let mut errors = Vec::new();
        let names: Vec<_> = input
            .expand(&mut errors)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.log.gz", "b.log.gz"]);
        assert!(errors.is_empty());
        let literal = Input::parse(&dir.path().join("missing.log")).unwrap();
        assert!(!literal.is_pattern());
        assert_eq!(literal.expand(&mut errors).len(), 1);
    }

    #[test]
    fn what_cannot_be_read_once_is_named_with_the_os_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.log");
        let nothing = dir.path().join("*.gz");
        let inputs = inputs(&[missing.clone(), nothing.clone(), dir.path().into()]).unwrap();
        let Err(SourceError::Inputs(problems)) = usable_files(&inputs, false) else {
            panic!("every entry is unusable");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with(&format!("{}: No such file", missing.display())));
        assert_eq!(
            problems[1],
            format!("{}: matches no file", nothing.display())
        );
        assert!(problems[2].contains("is a directory"), "{}", problems[2]);
        // Followed, a path not there yet or a pattern matching nothing is waited for.
        assert_eq!(usable_files(&inputs[..2], true).unwrap(), [missing]);
    }

    #[test]
    fn an_invalid_pattern_is_a_setting_error() {
        let e = inputs(&["/data/[a.log".into()]).unwrap_err();
        assert!(e.to_string().contains("not a valid glob pattern"), "{e}");
    }
}
