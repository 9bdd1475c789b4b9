//! The Grafana Loki sink: records as log entries through the push API.
//!
//! Each record is one entry: its time (the capture window's start, or end), its line (the
//! flow-log line, or an ECS, OCSF or CIM document) and its stream: a small set of labels
//! (by default `job`, `account_id`, `region`, `action`), values taken from the record's
//! fields where the configuration says (`{{ account-id }}`). Fields with many values
//! (addresses, ports, counts, times) are refused as labels: every label value is a stream
//! of its own, and a stream per address is what makes Loki slow or refuse a tenant. They
//! stay in the line, where LogQL reads them.
//!
//! Entries are gathered into pushes of at most `max_bytes` ([`push`]): grouped by stream,
//! each stream's entries in time order, as protobuf compressed with snappy (Loki's own
//! clients' form) or as JSON (gzipped), `POST`ed to `/loki/api/v1/push` with the tenant
//! in `X-Scope-OrgID` and Basic or Bearer credentials. Answers: see [`response`]; an
//! entry Loki refuses for good (too old, out of order) is dead-lettered with Loki's
//! reason and never sent again.
//!
//! Loki 3 also takes OTLP (`/otlp/v1/logs`): the `otlp` sink can feed it instead, with
//! resource attributes as its labels.

mod encoder;
pub mod push;
pub mod response;
pub mod settings;

use std::sync::Arc;

use bytes::Bytes;
use flowlog_sink::http::{warn_if_plaintext, Response};
use flowlog_sink::request::{Piece, Protocol, Requests, Verdict};
use flowlog_sink::{
    BoxFuture, DeadLetters, HttpClient, Needs, Sink, SinkContext, SinkError, SinkInput, SinkKind,
};
use http::HeaderValue;
use tokio::sync::mpsc;

pub use settings::{Auth, Encoding, Format, LokiConfig, TimeField};

use crate::encoder::EntryWriter;

/// Answers are empty or a few lines of text (at most `max_returned_errors` entries).
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

impl SinkKind for LokiConfig {
    fn validate(&self) -> Result<(), SinkError> {
        LokiConfig::validate(self)
    }

    /// The flow-log lines as they were read, for `format = "line"`.
    fn needs(&self) -> Needs {
        Needs {
            lines: self.format == Format::Line,
        }
    }

    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        self.validate()?;
        warn_if_plaintext(&ctx.name, &self.endpoint);
        let authorization = self
            .authorization()?
            .map(|value| {
                let mut value = HeaderValue::try_from(value).map_err(|_| {
                    SinkError::Config("auth: the credentials are not a header value".into())
                })?;
                value.set_sensitive(true);
                Ok::<_, SinkError>(value)
            })
            .transpose()?;
        let tenant = self
            .tenant_id
            .as_deref()
            .map(HeaderValue::try_from)
            .transpose()
            .map_err(|_| SinkError::Config("tenant_id is not a header value".into()))?;
        let base = self.endpoint.trim_end_matches('/');
        let loki = Arc::new(Loki {
            push_url: format!("{base}/loki/api/v1/push"),
            client: self.http_client(MAX_RESPONSE_BYTES, false)?,
            encoding: self.encoding,
            authorization,
            tenant,
        });
        Ok(Box::new(LokiSink {
            config: self.clone(),
            ctx,
            loki,
        }))
    }
}

/// A configured Loki sink.
pub struct LokiSink {
    config: LokiConfig,
    ctx: SinkContext,
    loki: Arc<Loki>,
}

/// Where and how pushes go.
struct Loki {
    push_url: String,
    client: HttpClient,
    encoding: Encoding,
    authorization: Option<HeaderValue>,
    tenant: Option<HeaderValue>,
}

impl Loki {
    fn request(&self, body: Bytes, gzip: bool) -> http::Request<Bytes> {
        let content_type = match self.encoding {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        let mut request =
            http::Request::post(&self.push_url).header(http::header::CONTENT_TYPE, content_type);
        if gzip {
            request = request.header(http::header::CONTENT_ENCODING, "gzip");
        }
        if let Some(value) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, value.clone());
        }
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant.clone());
        }
        request
            .body(body)
            .expect("the URL and headers were checked")
    }

    fn body(&self, piece: &Piece) -> Bytes {
        match self.encoding {
            Encoding::Protobuf => push::protobuf_body(piece),
            Encoding::Json => push::json_body(piece),
        }
    }
}

impl Sink for LokiSink {
    fn name(&self) -> &str {
        &self.ctx.name
    }

    fn run(
        self: Box<Self>,
        input: mpsc::Receiver<SinkInput>,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(async move {
            let writer = EntryWriter::new(&self.config)?;
            let mut settings = self.config.request_settings();
            // Protobuf pushes are snappy-compressed already, as Loki expects them.
            settings.gzip &= self.config.encoding == Encoding::Json;
            let requests = Requests::new(
                &self.ctx.name,
                Push(Arc::clone(&self.loki)),
                self.loki.client.clone(),
                settings,
                self.ctx.metrics.clone(),
                Arc::clone(&self.ctx.dead_letters) as Arc<dyn DeadLetters>,
            );
            requests.run(writer, input).await
        })
    }

    /// Pushes no entry: a push of no stream, which Loki answers 204 when it takes the
    /// credentials and tenant.
    fn check(&self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(async move {
            let loki = &self.loki;
            let request = loki.request(loki.body(&Piece::default()), false);
            let response = loki
                .client
                .send(request)
                .await
                .map_err(|e| SinkError::Unreachable {
                    sink: self.ctx.name.clone(),
                    message: format!("{}: {e}", loki.push_url),
                })?;
            match response::verdict(&response, &Piece::default()) {
                Verdict::Delivered { .. } => Ok(format!(
                    "{}: an empty push accepted ({:?}, tenant {})",
                    loki.push_url,
                    self.config.encoding,
                    self.config.tenant_id.as_deref().unwrap_or("(none)")
                )),
                Verdict::Fatal { status, reason } => Err(SinkError::Rejected {
                    sink: self.ctx.name.clone(),
                    status,
                    message: reason,
                }),
                _ => Err(SinkError::Unreachable {
                    sink: self.ctx.name.clone(),
                    message: format!(
                        "{} answered {}: {}",
                        loki.push_url,
                        response.status,
                        String::from_utf8_lossy(&response.body).trim()
                    ),
                }),
            }
        })
    }
}

/// The push protocol on the shared request layer.
struct Push(Arc<Loki>);

impl Protocol for Push {
    fn frame(&self, piece: &Piece) -> Option<Bytes> {
        Some(self.0.body(piece))
    }

    /// The entry's line, without its labels and time.
    fn dead_letter_text<'a>(&self, event: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match push::Event::parse(event) {
            Some(event) => std::borrow::Cow::Borrowed(event.line),
            None => std::borrow::Cow::Borrowed(event),
        }
    }

    fn request(&self, body: Bytes, gzip: bool, _group: Option<&Bytes>) -> http::Request<Bytes> {
        self.0.request(body, gzip)
    }

    fn classify(&self, response: &Response, piece: &Piece) -> Verdict {
        response::verdict(response, piece)
    }
}
