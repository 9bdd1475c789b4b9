//! The OpenTelemetry sink: flow records as OTLP log records, over gRPC
//! (`LogsService/Export`) or HTTP (`/v1/logs`, protobuf or JSON).
//!
//! Records look as the Collector's own VPC flow decoding writes them
//! (`flowlog_normalize::otel`), plus what only flowlog adds (enrichment, community id, the
//! record's deterministic id as `flowlog.id`), each encoded once by the official
//! `opentelemetry-proto` types ([`records`]). A request puts consecutive records of one
//! resource under one `ResourceLogs` ([`export`]).
//!
//! gRPC goes over the HTTP client every sink shares (HTTP/2, TLS, proxies, timeouts):
//! a unary call is one length-prefixed message in a POST and a `grpc-status` trailer in
//! the answer, so the shared request layer's batching, gzip, retries and halving serve
//! both transports. Answers are read as the OTLP specification says ([`response`]).
//!
//! `check` sends an empty export, which the specification makes valid, to prove the
//! endpoint, the transport and the headers.

pub mod encoder;
pub mod export;
pub mod response;
pub mod settings;

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use flowlog_sink::http::{warn_if_plaintext, Response};
use flowlog_sink::request::{Piece, Protocol as RequestProtocol, Requests, Verdict};
use flowlog_sink::{
    BoxFuture, ComponentMetrics, DeadLetters, HttpClient, Needs, Sink, SinkContext, SinkError,
    SinkInput, SinkKind,
};
use tokio::sync::mpsc;

pub use settings::{Attributes, Body, Compression, OtlpConfig, Protocol};

use crate::encoder::{Encoding, RecordWriter};
use crate::export::Exporter;

/// A configured OTLP sink.
pub struct OtlpSink {
    name: String,
    config: OtlpConfig,
    metrics: ComponentMetrics,
    dead_letters: Arc<dyn DeadLetters>,
    client: HttpClient,
    export: Export,
}

impl SinkKind for OtlpConfig {
    fn validate(&self) -> Result<(), SinkError> {
        OtlpConfig::validate(self)
    }

    fn needs(&self) -> Needs {
        Needs {
            lines: self.body == Body::Line,
        }
    }

    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(OtlpSink::new(
            &ctx.name,
            self.clone(),
            ctx.metrics,
            ctx.dead_letters,
        )?))
    }
}

/// Export answers are small; a partial success carries one message.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

impl OtlpSink {
    pub fn new(
        name: &str,
        config: OtlpConfig,
        metrics: ComponentMetrics,
        dead_letters: Arc<dyn DeadLetters>,
    ) -> Result<Self, SinkError> {
        config.validate()?;
        if !config.headers.is_empty() {
            warn_if_plaintext(name, &config.endpoint);
        }
        let client = config.http_client(
            MAX_RESPONSE_BYTES,
            config.protocol == settings::Protocol::Grpc,
        )?;
        let export = Export::new(&config)?;
        Ok(Self {
            name: name.to_string(),
            config,
            metrics,
            dead_letters,
            client,
            export,
        })
    }
}

impl Sink for OtlpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(
        self: Box<Self>,
        input: mpsc::Receiver<SinkInput>,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        let this = *self;
        Box::pin(async move {
            let writer = RecordWriter::new(
                this.config.naming(),
                this.export.encoding,
                this.config.body == Body::Line,
            );
            let requests = Requests::new(
                &this.name,
                this.export,
                this.client,
                this.config.request_settings(),
                this.metrics,
                this.dead_letters,
            );
            requests.run(writer, input).await
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(self.check_endpoint())
    }
}

/// How requests are made and answers read, for one configuration.
struct Export {
    url: String,
    headers: http::HeaderMap,
    grpc: bool,
    encoding: Encoding,
    exporter: Exporter,
    /// `grpc-timeout`, so the server gives up when the client does.
    grpc_timeout: String,
}

impl Export {
    fn new(config: &OtlpConfig) -> Result<Self, SinkError> {
        let encoding = match config.protocol {
            settings::Protocol::HttpJson => Encoding::Json,
            _ => Encoding::Protobuf,
        };
        Ok(Self {
            url: config.url(),
            headers: config.header_map()?,
            grpc: config.protocol == settings::Protocol::Grpc,
            encoding,
            exporter: Exporter::new(encoding),
            grpc_timeout: format!("{}m", (config.request_timeout_secs * 1000.0).ceil() as u64),
        })
    }
}

/// [`Export`] on the shared request layer.
impl RequestProtocol for Export {
    fn frame(&self, piece: &Piece) -> Option<Bytes> {
        let events = (0..piece.len()).map(|i| piece.event(i));
        Some(Bytes::from(self.exporter.body(events, piece.data.len())))
    }

    fn request(&self, body: Bytes, gzip: bool, _group: Option<&Bytes>) -> http::Request<Bytes> {
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(&self.url);
        for (name, value) in &self.headers {
            request = request.header(name, value.clone());
        }
        let body = if self.grpc {
            request = request
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers")
                .header("grpc-timeout", &self.grpc_timeout);
            if gzip {
                request = request.header("grpc-encoding", "gzip");
            }
            // One message: compressed flag, length (big-endian), the message.
            let mut framed = Vec::with_capacity(body.len() + 5);
            framed.push(u8::from(gzip));
            framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
            framed.extend_from_slice(&body);
            Bytes::from(framed)
        } else {
            let content_type = match self.encoding {
                Encoding::Protobuf => "application/x-protobuf",
                Encoding::Json => "application/json",
            };
            request = request.header(http::header::CONTENT_TYPE, content_type);
            if gzip {
                request = request.header(http::header::CONTENT_ENCODING, "gzip");
            }
            body
        };
        request.body(body).expect("headers are valid")
    }

    fn classify(&self, response: &Response, piece: &Piece) -> Verdict {
        let events = piece.len();
        if self.grpc {
            response::grpc_verdict(response, events)
        } else {
            response::http_verdict(response, self.encoding, events)
        }
    }

    fn dead_letter_text<'a>(&self, event: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Owned(encoder::event_text(event, self.encoding))
    }
}

impl OtlpSink {
    /// Sends an empty export request.
    async fn check_endpoint(&self) -> Result<String, SinkError> {
        let body = Bytes::from(self.export.exporter.body(std::iter::empty(), 0));
        let request = self.export.request(body, false, None);
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| SinkError::Unreachable {
                sink: self.name.clone(),
                message: format!("{}: {e}", self.export.url),
            })?;
        let transport = match self.config.protocol {
            settings::Protocol::Grpc => "gRPC",
            settings::Protocol::HttpProtobuf => "HTTP/protobuf",
            settings::Protocol::HttpJson => "HTTP/JSON",
        };
        match self.export.classify(&response, &Piece::default()) {
            Verdict::Delivered { .. } | Verdict::Partial { .. } => {
                let attributes = match self.config.attributes {
                    Attributes::Collector => "collector",
                    Attributes::Semconv => "semconv",
                };
                let compression = match self.config.compression {
                    Compression::Gzip => "gzip",
                    Compression::None => "none",
                };
                Ok(format!(
                    "{}: an empty {transport} export accepted (attributes = \"{attributes}\", compression = \"{compression}\")",
                    self.export.url
                ))
            }
            Verdict::Fatal { status, reason } => Err(SinkError::Rejected {
                sink: self.name.clone(),
                status,
                message: reason,
            }),
            Verdict::TooLarge => Err(SinkError::Unreachable {
                sink: self.name.clone(),
                message: "an empty export was refused as too large".into(),
            }),
            Verdict::Retry { reason, .. }
            | Verdict::Refused { reason }
            | Verdict::Isolate { reason }
            | Verdict::Invalid { reason } => Err(SinkError::Unreachable {
                sink: self.name.clone(),
                message: format!("{}: {reason}", self.export.url),
            }),
            Verdict::Events(_) => unreachable!("OTLP answers are per request"),
        }
    }
}
