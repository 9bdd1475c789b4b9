//! The one place that names every kind of source and sink (`type = "..."`).
//!
//! Each line maps a `type` to the settings type of a component kind, behind the cargo
//! feature that builds it (`source-<kind>`, `sink-<kind>`; all on by default, and the
//! binary passes its own features through). The macro makes the tagged enums a
//! configuration parses into; the pipeline knows them only as [`Configured`] settings
//! handed out as the contracts `SourceKind` and `SinkKind`. Adding a kind is its crate
//! plus one line and one feature here (see ARCHITECTURE.md, "Adding a sink" and "Adding a
//! source").

use serde::Deserialize;

pub use flowlog_pipeline::Configured;
use flowlog_sink::SinkKind;
use flowlog_source::SourceKind;

/// A whole configuration file, with every kind this build has.
pub type Config = flowlog_pipeline::config::Config<SourceConfig, SinkConfig>;

macro_rules! registry {
    (
        $(#[$meta:meta])*
        $enum:ident: $kind:ident {
            $($(#[$variant_meta:meta])* $variant:ident($settings:ty) = $tag:literal,)+
        }
    ) => {
        $(#[$meta])*
        // Settings are parsed once per component; their size does not matter.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, Deserialize)]
        #[serde(tag = "type", deny_unknown_fields)]
        pub enum $enum {
            $($(#[$variant_meta])* #[serde(rename = $tag)] $variant($settings),)+
        }

        impl Configured<dyn $kind> for $enum {
            fn kind(&self) -> &'static str {
                match self {
                    $($(#[$variant_meta])* Self::$variant(_) => $tag,)+
                }
            }

            fn spec(&self) -> &(dyn $kind + 'static) {
                match self {
                    $($(#[$variant_meta])* Self::$variant(settings) => settings,)+
                }
            }
        }
    };
}

#[cfg(not(any(
    feature = "source-file",
    feature = "source-directory",
    feature = "source-stdin",
    feature = "source-firehose",
    feature = "source-sqs",
    feature = "source-s3",
    feature = "source-kinesis"
)))]
compile_error!("flowlog needs at least one source kind: enable a `source-*` feature");

#[cfg(not(any(
    feature = "sink-splunk-hec",
    feature = "sink-elasticsearch",
    feature = "sink-otlp",
    feature = "sink-sumo-logic",
    feature = "sink-loki",
    feature = "sink-file",
    feature = "sink-security-lake",
    feature = "sink-security-hub"
)))]
compile_error!("flowlog needs at least one sink kind: enable a `sink-*` feature");

registry! {
    /// `[sources.<name>]`: where records come from.
    SourceConfig: SourceKind {
        #[cfg(feature = "source-file")]
        File(flowlog_source_file::FileSource) = "file",
        #[cfg(feature = "source-directory")]
        Directory(flowlog_source_file::DirectorySource) = "directory",
        #[cfg(feature = "source-stdin")]
        Stdin(flowlog_source_file::StdinSource) = "stdin",
        #[cfg(feature = "source-firehose")]
        Firehose(flowlog_source_firehose::FirehoseSource) = "firehose",
        #[cfg(feature = "source-sqs")]
        Sqs(flowlog_source_sqs::SqsSource) = "sqs",
        #[cfg(feature = "source-s3")]
        S3(flowlog_source_s3::S3Source) = "s3",
        #[cfg(feature = "source-kinesis")]
        Kinesis(flowlog_source_kinesis::KinesisSource) = "kinesis",
    }
}

registry! {
    /// `[sinks.<name>]`: where records are delivered.
    SinkConfig: SinkKind {
        #[cfg(feature = "sink-splunk-hec")]
        SplunkHec(flowlog_sink_splunk_hec::HecConfig) = "splunk_hec",
        #[cfg(feature = "sink-elasticsearch")]
        Elasticsearch(flowlog_sink_elasticsearch::EsConfig) = "elasticsearch",
        #[cfg(feature = "sink-otlp")]
        Otlp(flowlog_sink_otlp::OtlpConfig) = "otlp",
        #[cfg(feature = "sink-sumo-logic")]
        SumoLogic(flowlog_sink_sumo_logic::SumoConfig) = "sumo_logic",
        #[cfg(feature = "sink-loki")]
        Loki(flowlog_sink_loki::LokiConfig) = "loki",
        #[cfg(feature = "sink-file")]
        File(flowlog_sink_file::FileConfig) = "file",
        #[cfg(feature = "sink-security-lake")]
        SecurityLake(flowlog_sink_security_lake::SecurityLakeConfig) = "security_lake",
        #[cfg(feature = "sink-security-hub")]
        SecurityHub(flowlog_sink_security_hub::SecurityHubConfig) = "security_hub",
    }
}

#[cfg(all(
    test,
    feature = "source-file",
    feature = "sink-splunk-hec",
    feature = "sink-file"
))]
mod tests;
