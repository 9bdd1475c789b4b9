//! The flow-log data model shared by every flowlog crate.
//!
//! This crate owns what a flow record *is*, independent of where it came from or where it
//! goes:
//! - [`catalogue`]: every VPC (v2-v11) and Transit Gateway (v6) field with its first
//!   version, value kind, Arrow type, meaning and known values;
//! - [`format`]: [`FlowFormat`], the ordered field list of a flow log, from header lines or
//!   format strings (never from token counts);
//! - [`schema`]: the canonical Arrow schema every [`FlowBatch`] has;
//! - [`batch`]: [`FlowBatch`], a `RecordBatch` with its [`SourceId`] and line numbers;
//! - [`enrichment`]: the columns enrichment appends to a batch;
//! - [`envelope`]: the columns that keep what an input envelope said about a record;
//! - [`address`]: IP addresses read from text exactly as `std::net` reads them, faster;
//! - [`time`]: civil dates to and from day counts;
//! - [`dead_letter`]: [`DeadLetter`], a record that was not emitted or not delivered, as
//!   the decoder and every sink write it.
//!
//! It has no I/O and depends only on Arrow (and serde_json, to write dead letters, and
//! sha1, for deterministic event ids).

pub mod address;
pub mod batch;
pub mod catalogue;
pub mod dead_letter;
pub mod enrichment;
pub mod envelope;
mod error;
pub mod format;
pub mod schema;
pub mod time;

pub use batch::{needs_json_escape, FlowBatch, SourceId};
pub use catalogue::{lookup, FieldDef, FieldId, FieldKind, LogFamily, FIELDS};
pub use dead_letter::DeadLetter;
pub use enrichment::{
    added_field, enrichment_field, enrichment_fields, is_json_field, EnrichField, EnrichKind,
    MERGED_COUNT,
};
pub use envelope::{envelope_field, ENVELOPE_FIELDS};
pub use error::{error_chain, FormatError};
pub use format::{FlowFormat, FormatField, DEFAULT_FORMAT};
pub use schema::{canonical_schema, canonical_width, schema_with_extras};
