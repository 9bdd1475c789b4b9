//! Batches as Sumo Logic messages, one per line: the flow-log line, or a JSON document;
//! with templated metadata, each message's group is its headers' values.

use bytes::Bytes;
use flowlog_model::FlowBatch;
use flowlog_normalize::lines::RowTexts;
use flowlog_normalize::Encoder;
use flowlog_sink::request::{EventWriter, WriteRow};
use flowlog_sink::SinkError;

use crate::settings::{Metadata, SumoConfig};
use flowlog_sink::template::Columns;

/// Writes the messages of batches.
pub(crate) struct MessageWriter {
    /// JSON documents (`format` other than `line`).
    documents: Option<Box<dyn Encoder + Send>>,
    /// Set when a header takes a record's field.
    metadata: Option<Metadata>,
}

impl MessageWriter {
    pub fn new(config: &SumoConfig) -> Result<Self, SinkError> {
        let metadata = config.metadata()?;
        Ok(Self {
            documents: config
                .target()?
                .map(|t| t.encoder_with(&config.encode_options())),
            metadata: metadata.is_templated().then_some(metadata),
        })
    }
}

/// One batch, ready to be written row by row.
struct Prepared<'a> {
    texts: RowTexts<'a>,
    groups: Option<Groups<'a>>,
}

/// The headers' values of each row, as the group its message is sent in.
struct Groups<'a> {
    metadata: &'a Metadata,
    columns: Columns,
    /// The last row's values, and its group (rows of one object mostly share it).
    text: String,
    last: Option<(String, Bytes)>,
}

impl Groups<'_> {
    /// The headers' values ([`Metadata::render`]).
    fn group(&mut self, row: usize) -> Bytes {
        self.text.clear();
        self.metadata.render(&self.columns, row, &mut self.text);
        match &self.last {
            Some((text, group)) if *text == self.text => group.clone(),
            _ => {
                let group = Bytes::from(self.text.clone().into_bytes());
                self.last = Some((self.text.clone(), group.clone()));
                group
            }
        }
    }
}

impl WriteRow for Prepared<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self.texts.next(row));
        out.push(b'\n');
    }

    fn group(&mut self, row: usize) -> Option<Bytes> {
        self.groups.as_mut().map(|g| g.group(row))
    }
}

impl EventWriter for MessageWriter {
    fn prepare<'a>(
        &'a mut self,
        batch: &'a FlowBatch,
    ) -> Result<Box<dyn WriteRow + 'a>, SinkError> {
        let encoder = self.documents.as_deref_mut().map(|e| e as _);
        let texts = RowTexts::new(encoder, batch).map_err(|e| SinkError::Config(e.to_string()))?;
        let groups = self.metadata.as_ref().map(|metadata| {
            let names = metadata
                .headers
                .iter()
                .filter_map(|(_, t)| t.as_ref())
                .chain(metadata.fields.iter().map(|(_, t)| t))
                .flat_map(|t| t.columns());
            Groups {
                metadata,
                columns: Columns::of(&batch.records, names),
                text: String::new(),
                last: None,
            }
        });
        Ok(Box::new(Prepared { texts, groups }))
    }
}
