//! `flowlog detect`: inputs -> decode (-> enrich) -> the detection rules -> findings as
//! NDJSON. Reading is `transform`'s; only the output differs.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flowlog_detect::{DetectError, DetectSettings, Detector, FindingFormat};
use flowlog_model::FlowBatch;

use crate::cli::{DetectArgs, FindingShape};
use crate::transform::{output_writer, read_into, Output, Reading};

pub fn run(args: DetectArgs) -> ExitCode {
    let settings = match args.rules.as_deref().map(rules).transpose() {
        Ok(settings) => settings.unwrap_or_default(),
        Err(err) => {
            eprintln!("flowlog: {err}");
            return ExitCode::from(2);
        }
    };
    let format = match args.to {
        FindingShape::Ocsf => FindingFormat::Ocsf,
        FindingShape::Ecs => FindingFormat::Ecs,
    };
    let reading = Reading {
        inputs: &args.inputs,
        format: args.format.as_deref(),
        dead_letter: args.dead_letter.as_deref(),
        quiet: args.quiet,
        flush_interval: 0.1,
        enrich: &args.enrich,
        confirm: false,
    };
    read_into(reading, || {
        let findings = Findings::open(settings, format, args.state.clone(), args.quiet)?;
        let writer = output_writer(args.output.as_deref())?;
        Ok(Output::Findings(Box::new(Findings { writer, ..findings })))
    })
}

/// The `[detect]` settings in `path`: a file of the table's keys, or a configuration
/// with a `[detect]` table.
fn rules(path: &Path) -> Result<DetectSettings, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let table = match table.remove("detect") {
        Some(toml::Value::Table(detect)) => detect,
        Some(_) => return Err(format!("{}: `detect` is not a table", path.display())),
        None => table,
    };
    let settings: DetectSettings = toml::Value::Table(table)
        .try_into()
        .map_err(|e| format!("{}: [detect]: {e}", path.display()))?;
    settings
        .validate()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(settings)
}

/// The detector and where its findings go.
pub(crate) struct Findings {
    detector: Detector,
    format: FindingFormat,
    writer: Box<dyn Write>,
    state: Option<PathBuf>,
    written: u64,
}

impl Findings {
    /// A detector with `settings`, taking up the state saved in `state` if there is one.
    fn open(
        settings: DetectSettings,
        format: FindingFormat,
        state: Option<PathBuf>,
        quiet: bool,
    ) -> Result<Findings, String> {
        let mut detector = Detector::new(settings).map_err(|e| e.to_string())?;
        if let Some(path) = &state {
            match std::fs::read(path) {
                Ok(bytes) => match detector.restore(&bytes) {
                    Ok(()) => {}
                    Err(DetectError::SettingsChanged) => {
                        if !quiet {
                            eprintln!(
                                "flowlog: warning: {}: {}",
                                path.display(),
                                DetectError::SettingsChanged
                            );
                        }
                    }
                    Err(err) => {
                        return Err(format!(
                            "{}: {err} (move it away to start with empty windows)",
                            path.display()
                        ))
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            }
        }
        Ok(Findings {
            detector,
            format,
            writer: Box::new(io::sink()),
            state,
            written: 0,
        })
    }

    pub(crate) fn write(&mut self, batch: &FlowBatch) -> io::Result<()> {
        let findings = self.detector.observe(batch);
        self.emit(findings)
    }

    fn emit(&mut self, findings: Vec<flowlog_detect::Finding>) -> io::Result<()> {
        for finding in &findings {
            serde_json::to_writer(&mut self.writer, &self.format.document(finding))?;
            self.writer.write_all(b"\n")?;
        }
        self.written += findings.len() as u64;
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    /// The end of the input: every window closes, or with `--state`, the open ones are
    /// saved (after the findings written so far are out).
    pub(crate) fn close(&mut self) -> io::Result<()> {
        match &self.state {
            Some(path) => {
                self.writer.flush()?;
                let snapshot = self.detector.snapshot().map_err(io::Error::other)?;
                flowlog_source::checkpoint::write_atomically(path, &snapshot)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            }
            None => {
                let findings = self.detector.flush();
                self.emit(findings)?;
            }
        }
        self.writer.flush()
    }

    pub(crate) fn summary(&self) -> String {
        let (records, skipped, _) = self.detector.totals();
        let mut line = format!(
            "flowlog: detect: {} findings from {records} records",
            self.written
        );
        if skipped > 0 {
            line.push_str(&format!(
                " ({skipped} without addresses or time, or not OK)"
            ));
        }
        let late: u64 = self.detector.counts().iter().map(|c| c.late).sum();
        let evicted: u64 = self.detector.counts().iter().map(|c| c.evicted).sum();
        if late > 0 {
            line.push_str(&format!(
                "; {late} record-rule pairs came after their window closed"
            ));
        }
        if evicted > 0 {
            line.push_str(&format!("; {evicted} keys evicted at the cap"));
        }
        if self.detector.ahead() > 0 {
            line.push_str(&format!(
                "; {} records dated more than a day ahead of the clock left out",
                self.detector.ahead()
            ));
        }
        if let Some(path) = &self.state {
            line.push_str(&format!("; open windows saved in {}", path.display()));
        }
        line
    }
}
