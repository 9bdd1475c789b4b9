//! The Sumo Logic sink: records to an HTTP Logs source.
//!
//! Each record is one message on its own line ([`encoder`]): the original flow-log line,
//! which the Sumo Logic app for Amazon VPC Flow Logs parses, or an ECS, OCSF or CIM
//! document. Messages are gathered into requests of at most `max_bytes` (1 MB by default,
//! the most Sumo Logic takes before compression), gzipped, and `POST`ed to the source's
//! unique URL, or to its base URL with the source's token in `X-Sumo-Token`.
//!
//! Metadata goes in headers that speak for the whole request: `X-Sumo-Category`,
//! `X-Sumo-Name`, `X-Sumo-Host` and `X-Sumo-Fields`. A header may take a record's fields
//! (`aws/vpc/{{ account-id }}/{{ region }}`, [`flowlog_sink::template`]); messages are then sent in
//! requests of their own headers' values.
//!
//! The unique URL is a credential: only its scheme and host are ever logged or shown.
//!
//! Answers ([`response`]): 200 delivers the request; 429 (throttled: Sumo Logic drops the
//! data and asks the sender to send it again), 408 (timed out while processing: part may
//! be ingested, so the request is sent again, a possible duplicate), 5xx and dropped
//! connections are retried with backoff, honouring `Retry-After`; 413 halves the request;
//! 400 halves it down to the message the source refuses, which is dead-lettered with the
//! answer; 401, 403, 404 and other refusals stop the sink with the answer.

mod encoder;
pub mod response;
pub mod settings;

use std::sync::Arc;

use bytes::Bytes;
use flowlog_sink::http::{origin_of, warn_if_plaintext, Response};
use flowlog_sink::request::{Piece, Protocol, Requests, Verdict};
use flowlog_sink::{
    BoxFuture, DeadLetters, HttpClient, Needs, Sink, SinkContext, SinkError, SinkInput, SinkKind,
};
use http::HeaderValue;
use tokio::sync::mpsc;

pub use settings::{Format, SumoConfig};

use crate::encoder::MessageWriter;
use crate::settings::Metadata;

/// Sumo Logic refuses a request of more than 1 MB before compression.
const MOST_BYTES: usize = 1 << 20;

/// Answers are empty or a line of text.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

impl SinkKind for SumoConfig {
    fn validate(&self) -> Result<(), SinkError> {
        SumoConfig::validate(self)?;
        if self.max_bytes > MOST_BYTES {
            return Err(SinkError::Config(format!(
                "max_bytes {} is over the 1 MB (1048576 bytes) Sumo Logic takes in one request",
                self.max_bytes
            )));
        }
        Ok(())
    }

    /// Findings are JSON messages; a flow-log line they are not.
    fn carries_documents(&self, _format: &str) -> Result<(), String> {
        if self.format == Format::Line {
            return Err(
                "set format = \"ecs\" (or ocsf, cim): findings are JSON messages, not lines".into(),
            );
        }
        Ok(())
    }

    fn needs(&self) -> Needs {
        Needs {
            lines: self.format == Format::Line,
        }
    }

    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        SinkKind::validate(self)?;
        let endpoint = self.resolve_endpoint()?;
        let origin = origin_of(&endpoint.parse().expect("checked by validate"));
        warn_if_plaintext(&ctx.name, &origin);
        let mut token = None;
        if let Some(value) = self.resolve_token()? {
            let mut value = HeaderValue::try_from(value)
                .map_err(|_| SinkError::Config("the token is not a valid header value".into()))?;
            value.set_sensitive(true);
            token = Some(value);
        }
        let metadata = self.metadata()?;
        let fixed = fixed_headers(&metadata);
        let source = Arc::new(SumoSource {
            name: ctx.name.clone(),
            client: self.http_client(MAX_RESPONSE_BYTES, false)?,
            endpoint,
            origin,
            token,
            metadata,
            fixed,
        });
        Ok(Box::new(SumoSink {
            config: self.clone(),
            ctx,
            source,
        }))
    }
}

/// A configured Sumo Logic sink.
pub struct SumoSink {
    config: SumoConfig,
    ctx: SinkContext,
    source: Arc<SumoSource>,
}

/// The HTTP Logs source and how to speak to it.
struct SumoSource {
    name: String,
    client: HttpClient,
    /// The whole URL: a credential, never shown.
    endpoint: String,
    /// What may be shown of it.
    origin: String,
    token: Option<HeaderValue>,
    metadata: Metadata,
    /// The metadata headers when no header takes a record's field.
    fixed: Vec<(&'static str, HeaderValue)>,
}

impl Sink for SumoSink {
    fn name(&self) -> &str {
        &self.ctx.name
    }

    fn run(
        self: Box<Self>,
        input: mpsc::Receiver<SinkInput>,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(async move {
            let writer = MessageWriter::new(&self.config)?;
            let requests = Requests::new(
                &self.ctx.name,
                Upload(Arc::clone(&self.source)),
                self.source.client.clone(),
                self.config.request_settings(),
                self.ctx.metrics.clone(),
                Arc::clone(&self.ctx.dead_letters) as Arc<dyn DeadLetters>,
            );
            requests.run(writer, input).await
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(self.check_source())
    }
}

impl SumoSink {
    /// Sends an empty request: a source that takes it takes the URL (and token); an empty
    /// body holds no message, so nothing is ingested.
    async fn check_source(&self) -> Result<String, SinkError> {
        let source = &self.source;
        let request = source.request(Bytes::new(), false, None);
        let response = source
            .client
            .send(request)
            .await
            .map_err(|e| SinkError::Unreachable {
                sink: source.name.clone(),
                message: format!("{}: {e}", source.origin),
            })?;
        match response::verdict(&response) {
            Verdict::Delivered { .. } => {
                let auth = if source.token.is_some() {
                    "URL and token accepted"
                } else {
                    "URL accepted"
                };
                let format = match self.config.format {
                    Format::Line => "lines",
                    Format::Ecs => "ECS documents",
                    Format::Ocsf => "OCSF documents",
                    Format::Cim => "CIM documents",
                };
                Ok(format!("{}: {auth}, {format}", source.origin))
            }
            Verdict::Fatal { status, reason } => Err(SinkError::Rejected {
                sink: source.name.clone(),
                status,
                message: reason,
            }),
            _ => Err(SinkError::Unreachable {
                sink: source.name.clone(),
                message: format!(
                    "{} answered {}: {}",
                    source.origin,
                    response.status,
                    response::text(&response.body)
                ),
            }),
        }
    }
}

/// The headers' values when none takes a record's field (empty ones left out).
fn fixed_headers(metadata: &Metadata) -> Vec<(&'static str, HeaderValue)> {
    if metadata.is_templated() {
        return Vec::new();
    }
    let mut values = String::new();
    metadata.render(&flowlog_sink::template::Columns::none(), 0, &mut values);
    headers_of(metadata, values.as_bytes())
}

/// The metadata headers for `values` (a group: one value per line, headers then fields).
pub(crate) fn headers_of(metadata: &Metadata, values: &[u8]) -> Vec<(&'static str, HeaderValue)> {
    let mut values = values.split(|&b| b == b'\n');
    let mut headers = Vec::new();
    for (name, _) in &metadata.headers {
        let value = values.next().unwrap_or_default();
        if let Some(value) = header_value(value) {
            headers.push((*name, value));
        }
    }
    let mut fields = Vec::new();
    for (key, _) in &metadata.fields {
        let value = values.next().unwrap_or_default();
        if !value.is_empty() {
            fields.push(format!("{key}={}", String::from_utf8_lossy(value)));
        }
    }
    if let Some(value) = header_value(fields.join(",").as_bytes()) {
        headers.push(("X-Sumo-Fields", value));
    }
    headers
}

fn header_value(value: &[u8]) -> Option<HeaderValue> {
    (!value.is_empty())
        .then(|| HeaderValue::from_bytes(value).ok())
        .flatten()
}

impl SumoSource {
    fn request(&self, body: Bytes, gzip: bool, group: Option<&Bytes>) -> http::Request<Bytes> {
        let mut request = http::Request::post(&self.endpoint);
        if gzip {
            request = request.header(http::header::CONTENT_ENCODING, "gzip");
        }
        if let Some(token) = &self.token {
            request = request.header("X-Sumo-Token", token.clone());
        }
        match group {
            Some(values) => {
                for (name, value) in headers_of(&self.metadata, values) {
                    request = request.header(name, value);
                }
            }
            None => {
                for (name, value) in &self.fixed {
                    request = request.header(*name, value.clone());
                }
            }
        }
        request
            .body(body)
            .expect("the URL and headers were checked")
    }
}

/// The upload protocol on the shared request layer.
struct Upload(Arc<SumoSource>);

impl Protocol for Upload {
    fn request(&self, body: Bytes, gzip: bool, group: Option<&Bytes>) -> http::Request<Bytes> {
        self.0.request(body, gzip, group)
    }

    fn classify(&self, response: &Response, _piece: &Piece) -> Verdict {
        response::verdict(response)
    }
}
