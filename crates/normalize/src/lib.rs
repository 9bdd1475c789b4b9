//! Turning [`FlowBatch`]es into output documents.
//!
//! Each target is an [`Encoder`] that writes one JSON document per record (NDJSON) into a
//! buffer it owns and lends out, reading Arrow columns directly: no per-record
//! `serde_json::Value`. The JSON primitives in [`json`] are shared by every target.
//!
//! Targets:
//! - [`Target::Raw`]: the record's own fields;
//! - [`Target::Ecs`]: Elastic Common Schema, as Elastic's `aws.vpcflow` integration writes it;
//! - [`Target::Ocsf`]: OCSF Network Activity, as Amazon Security Lake maps flow logs;
//! - [`Target::Cim`]: Splunk CIM Network_Traffic names, flat;
//!
//! and [`otel`], the OpenTelemetry attributes of a record, for the OTLP sink;
//! [`parallel`] encodes one input's batches on several threads, written in order.
//!
//! Each mapped target is a table of members written by one engine
//! ([`template`]); the facts several targets share (protocol names, Community ID, RFC 3339
//! times) live in [`network`] and [`time`].

mod cim;
pub mod columnar;
pub mod columns;
mod derived;
mod ecs;
mod envelope;
pub mod json;
pub mod lines;
pub mod network;
mod ocsf;
pub mod otel;
pub mod parallel;
mod raw;
pub mod schema;
mod template;
pub mod time;

use flowlog_model::FlowBatch;
use thiserror::Error;

pub use columnar::{ocsf_schema, ColumnarError, OcsfColumns};
pub use ecs::ECS_VERSION;
pub use ocsf::OcsfVersion;
pub use raw::RawEncoder;

/// What a sink that sends one text per record sends (the `format` of the HEC, Sumo Logic
/// and Loki sinks): the flow-log line, or a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// The original flow-log line (for Parquet input, rebuilt in the default format).
    #[default]
    Line,
    /// An ECS document.
    Ecs,
    /// An OCSF Network Activity event.
    Ocsf,
    /// Flat JSON with Splunk CIM Network_Traffic names.
    Cim,
}

impl RecordFormat {
    /// The documents' target (`None` for lines), OCSF in `ocsf_version` (1.1.0 when none).
    pub fn target(self, ocsf_version: Option<&str>) -> Result<Option<Target>, String> {
        let name = match self {
            RecordFormat::Line => return Ok(None),
            RecordFormat::Ecs => "ecs",
            RecordFormat::Ocsf => "ocsf",
            RecordFormat::Cim => "cim",
        };
        Target::named(name, ocsf_version)
            .map(Some)
            .map_err(|e| format!("ocsf_version: {e}"))
    }
}

/// The shape of the documents to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The record's fields under AWS's names in snake_case.
    Raw,
    /// Elastic Common Schema (`logs-aws.vpcflow-*` documents).
    Ecs,
    /// OCSF Network Activity events, as Amazon Security Lake maps flow logs.
    Ocsf(OcsfVersion),
    /// Flat JSON with Splunk CIM Network_Traffic names.
    Cim,
}

impl Target {
    /// The target a setting names: `raw`, `ecs`, `ocsf` (in `ocsf_version`, 1.1.0 when
    /// none) or `cim`.
    pub fn named(name: &str, ocsf_version: Option<&str>) -> Result<Target, String> {
        let version = ocsf_version
            .map(str::parse::<OcsfVersion>)
            .transpose()?
            .unwrap_or(OcsfVersion::V1_1_0);
        match name {
            "raw" => Ok(Target::Raw),
            "ecs" => Ok(Target::Ecs),
            "ocsf" => Ok(Target::Ocsf(version)),
            "cim" => Ok(Target::Cim),
            _ => Err(format!("unknown format `{name}` (raw, ecs, ocsf or cim)")),
        }
    }

    /// A fresh encoder for this target, with default options.
    pub fn encoder(self) -> Box<dyn Encoder + Send> {
        self.encoder_with(&EncodeOptions::default())
    }

    /// A fresh encoder for this target.
    pub fn encoder_with(self, options: &EncodeOptions) -> Box<dyn Encoder + Send> {
        let key = options.envelope_key.as_deref();
        let table = |members| -> Box<dyn Encoder + Send> {
            Box::new(template::TemplateEncoder::new(members, key))
        };
        let records = match self {
            Target::Raw => Box::new(RawEncoder::new(key)),
            Target::Ecs => table(ecs::ECS),
            Target::Ocsf(version) => table(version.table()),
            Target::Cim => table(cim::CIM),
        };
        Box::new(Documents {
            records,
            out: Vec::new(),
        })
    }
}

/// An encoder that writes batches of finished documents (findings:
/// [`FlowBatch::documents`]) as they are, and hands flow records to the target's encoder.
struct Documents {
    records: Box<dyn Encoder + Send>,
    out: Vec<u8>,
}

impl Encoder for Documents {
    fn encode(&mut self, batch: &FlowBatch) -> Result<&[u8], EncodeError> {
        let Some(documents) = batch.document_column() else {
            return self.records.encode(batch);
        };
        self.out.clear();
        for document in documents.iter().flatten() {
            self.out.extend_from_slice(document.as_bytes());
            self.out.push(b'\n');
        }
        Ok(&self.out)
    }
}

/// Settings every target shares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Write envelope metadata the target has no field for (a CloudWatch Logs event id,
    /// a Firehose request id, what a log engine added to a `{"message"}` event) as one
    /// object under this key. Without it, that metadata is not written; what the target
    /// maps (ECS `cloud.account.id` from the payload's `owner`...) always is.
    pub envelope_key: Option<String>,
}

/// Writes documents for every record of a batch, one per line.
pub trait Encoder {
    /// The batch as NDJSON, in a buffer the encoder keeps for the next batch (so its
    /// memory is neither reallocated nor re-zeroed per batch).
    fn encode(&mut self, batch: &FlowBatch) -> Result<&[u8], EncodeError>;
}

/// A batch an encoder cannot write.
#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("column `{column}` has type {data_type}, which this encoder does not write")]
    UnsupportedColumn { column: String, data_type: String },
}
