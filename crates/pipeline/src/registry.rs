//! The one place that names every kind of source and sink.
//!
//! Each line maps a `type = "..."` to the settings type of a component kind; the macro
//! makes the tagged enum the configuration parses into, and hands out the settings as
//! the trait the pipeline knows components by ([`SourceKind`], [`SinkKind`]). Nothing
//! else in the pipeline names a particular kind: adding one is its module or crate plus
//! one line here (see ARCHITECTURE.md, "Adding a sink" and "Adding a source").

use serde::Deserialize;

use crate::source::file::{DirectorySource, FileSource, StdinSource};
use crate::source::SourceKind;
use flowlog_sink::SinkKind;

macro_rules! registry {
    (
        $(#[$meta:meta])*
        $enum:ident: $kind:ident { $($variant:ident($settings:ty) = $tag:literal,)+ }
    ) => {
        $(#[$meta])*
        // Settings are parsed once per component; their size does not matter.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, Deserialize)]
        #[serde(tag = "type", deny_unknown_fields)]
        pub enum $enum {
            $(#[serde(rename = $tag)] $variant($settings),)+
        }

        impl $enum {
            /// The `type` it was configured with.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $tag,)+
                }
            }

            /// The settings, as the pipeline uses them.
            pub fn spec(&self) -> &dyn $kind {
                match self {
                    $(Self::$variant(settings) => settings,)+
                }
            }
        }
    };
}

registry! {
    /// `[sources.<name>]`: where records come from.
    SourceConfig: SourceKind {
        File(FileSource) = "file",
        Directory(DirectorySource) = "directory",
        Stdin(StdinSource) = "stdin",
        Firehose(crate::source::firehose::FirehoseSource) = "firehose",
        Sqs(crate::source::sqs::SqsSource) = "sqs",
    }
}

registry! {
    /// `[sinks.<name>]`: where records are delivered.
    SinkConfig: SinkKind {
        SplunkHec(flowlog_sink_splunk_hec::HecConfig) = "splunk_hec",
        Elasticsearch(flowlog_sink_elasticsearch::EsConfig) = "elasticsearch",
        Otlp(flowlog_sink_otlp::OtlpConfig) = "otlp",
        File(flowlog_sink_file::FileConfig) = "file",
    }
}
