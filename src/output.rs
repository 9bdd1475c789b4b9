//! Standard output for the commands that print a report (`check`, `fields`, `schema`).
//!
//! Rust's `println!` panics when the reader has gone (`flowlog check | head -1`). Here a
//! closed pipe ends the output quietly and the command still ends with its own status;
//! any other write error (a full disk behind a redirect) is reported and fails it.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

pub struct Out {
    out: io::StdoutLock<'static>,
    /// The reader has gone: nothing more is written.
    closed: bool,
    failed: Option<io::Error>,
}

impl Out {
    pub fn new() -> Self {
        Self {
            out: io::stdout().lock(),
            closed: false,
            failed: None,
        }
    }

    /// Writes `args` and a newline.
    pub fn line(&mut self, args: fmt::Arguments<'_>) {
        if self.open() {
            let written = self
                .out
                .write_fmt(args)
                .and_then(|_| self.out.write_all(b"\n"));
            self.settle(written);
        }
    }

    /// Writes `text` as it is.
    pub fn text(&mut self, text: &str) {
        if self.open() {
            let written = self.out.write_all(text.as_bytes());
            self.settle(written);
        }
    }

    /// Flushes, and ends with `code` unless writing failed for another reason than the
    /// reader going away.
    pub fn finish(mut self, code: ExitCode) -> ExitCode {
        if self.open() {
            let flushed = self.out.flush();
            self.settle(flushed);
        }
        match self.failed {
            Some(e) => {
                eprintln!("flowlog: cannot write to standard output: {e}");
                ExitCode::FAILURE
            }
            None => code,
        }
    }

    fn open(&self) -> bool {
        !self.closed && self.failed.is_none()
    }

    fn settle(&mut self, written: io::Result<()>) {
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.closed = true,
            Err(e) => self.failed = Some(e),
        }
    }
}

/// `outln!(out, "...", args)`: a line to an [`Out`].
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))
    };
}
pub(crate) use outln;
