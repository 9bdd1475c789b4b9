//! The Splunk HTTP Event Collector sink.
//!
//! Records become events ([`events`]): the original flow-log line with sourcetype
//! `aws:cloudwatchlogs:vpcflow` (what the Splunk Add-on for AWS parses) and enrichment as
//! indexed fields, or ECS, OCSF or CIM documents; in `/event` envelopes (time, host,
//! source, sourcetype, index, the record's deterministic id as the indexed field
//! `flowlog_id`) or as lines for `/raw`. Events are gathered into requests of at most
//! `max_bytes` (1 MB by default, Splunk Cloud's limit) or `batch_timeout_secs`, gzipped,
//! and sent over keep-alive connections, `concurrency` at a time.
//!
//! Answers are handled as `protocols.md` says ([`response`]): 413 splits a request in
//! halves down to single events; `invalid-event-number` dead-letters that event and
//! re-sends only the rest; busy and throttled answers (and dropped connections) are
//! retried with backoff, honouring `Retry-After`; 401/403 stop the sink with a clear
//! error; capacity warnings are logged and counted. With indexer acknowledgement, a
//! request counts as delivered only when `/ack` says `true`; one not acknowledged within
//! `ack_timeout_secs` is sent again (a possible duplicate, which its `flowlog_id` shows).

mod acks;
mod encoder;
pub mod response;
pub mod settings;

use std::sync::Arc;

use bytes::Bytes;
use flowlog_sink::http::{warn_if_plaintext, Response};
use flowlog_sink::request::{Piece, Protocol, Requests, Verdict};
use flowlog_sink::{
    BoxFuture, ComponentMetrics, DeadLetters, HttpClient, Needs, Sink, SinkContext, SinkError,
    SinkInput, SinkKind,
};
use tokio::sync::mpsc;

pub use settings::{Compression, Endpoint, Format, HecConfig, TimeField};

use crate::acks::Acker;
use crate::encoder::EventWriter;
use crate::response::{classify, Outcome};
use flowlog_component::duration::duration as secs;

/// A configured HEC sink.
pub struct HecSink {
    name: String,
    config: HecConfig,
    metrics: ComponentMetrics,
    dead_letters: Arc<dyn DeadLetters>,
    collector: Arc<Collector>,
    /// Registered when the sink is built, so the series is there (at 0) from the start.
    capacity_warnings: prometheus_client::metrics::counter::Counter,
}

/// The collector's endpoints and how to speak to them.
pub(crate) struct Collector {
    name: String,
    client: HttpClient,
    authorization: http::HeaderValue,
    channel: String,
    send_url: String,
    ack_url: String,
    health_url: String,
    event_url: String,
}

impl SinkKind for HecConfig {
    fn validate(&self) -> Result<(), SinkError> {
        HecConfig::validate(self)
    }

    /// Findings are JSON events under a sourcetype of their own: the flow-log line
    /// format and its add-on sourcetype would have Splunk parse them as flow records.
    fn carries_documents(&self, _format: &str) -> Result<(), String> {
        if self.format == settings::Format::Line {
            return Err(
                "set format = \"ecs\" (or ocsf, cim): findings are JSON events, not lines".into(),
            );
        }
        if self.sourcetype.is_none() {
            return Err("set a sourcetype of their own (sourcetype = \"flowlog:finding\")".into());
        }
        Ok(())
    }

    fn needs(&self) -> Needs {
        Needs {
            lines: self.format == Format::Line,
        }
    }

    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(HecSink::new(
            &ctx.name,
            self.clone(),
            ctx.metrics,
            ctx.dead_letters,
        )?))
    }
}

impl HecSink {
    pub fn new(
        name: &str,
        config: HecConfig,
        metrics: ComponentMetrics,
        dead_letters: Arc<dyn DeadLetters>,
    ) -> Result<Self, SinkError> {
        config.validate()?;
        let name = name.to_string();
        let token = config.resolve_token()?;
        let mut authorization = http::HeaderValue::try_from(format!("Splunk {token}"))
            .map_err(|_| SinkError::Config("the HEC token is not a valid header value".into()))?;
        authorization.set_sensitive(true);
        warn_if_plaintext(&name, &config.endpoint);
        let client = config.http_client(MAX_RESPONSE_BYTES, false)?;
        let base = config.endpoint.trim_end_matches('/').to_string();
        let channel = uuid::Uuid::new_v4().to_string();
        let send_url = match config.endpoint_kind {
            Endpoint::Event => format!("{base}/services/collector/event"),
            Endpoint::Raw => {
                let mut url = format!("{base}/services/collector/raw?channel={channel}");
                let params = [
                    ("sourcetype", Some(config.sourcetype())),
                    ("index", config.index.as_deref()),
                    ("host", config.host.as_deref()),
                    ("source", config.source.as_deref()),
                ];
                for (key, value) in params {
                    if let Some(value) = value {
                        let value = percent_encoding::utf8_percent_encode(
                            value,
                            percent_encoding::NON_ALPHANUMERIC,
                        );
                        url.push_str(&format!("&{key}={value}"));
                    }
                }
                url
            }
        };
        let collector = Arc::new(Collector {
            name: name.clone(),
            client,
            authorization,
            ack_url: format!("{base}/services/collector/ack?channel={channel}"),
            health_url: format!("{base}/services/collector/health"),
            event_url: format!("{base}/services/collector/event"),
            channel,
            send_url,
        });
        let capacity_warnings = metrics.counter(
            "capacity_warnings",
            "Successes that carried a capacity warning (HEC codes 24 and 25)",
        );
        Ok(Self {
            name,
            config,
            metrics,
            dead_letters,
            collector,
            capacity_warnings,
        })
    }
}

/// The shortest deadline of an `/ack` poll (otherwise its interval).
const MIN_POLL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// HEC answers are a few dozen bytes; anything longer is not a collector speaking.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

impl Sink for HecSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(
        self: Box<Self>,
        input: mpsc::Receiver<SinkInput>,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(self.deliver_all(input))
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(self.check_receiver())
    }
}

/// The HEC protocol on the shared request layer.
struct Hec {
    collector: Arc<Collector>,
    acker: Option<Acker>,
    /// Successes that came with a capacity warning (codes 24 and 25): HEC's own series.
    capacity_warnings: prometheus_client::metrics::counter::Counter,
}

impl Protocol for Hec {
    fn request(&self, body: Bytes, gzip: bool, _group: Option<&Bytes>) -> http::Request<Bytes> {
        self.collector.request(&self.collector.send_url, body, gzip)
    }

    fn classify(&self, response: &Response, piece: &Piece) -> Verdict {
        let events = piece.len();
        // Without indexer acknowledgement an ack id means nothing to wait for.
        let verdict = response::verdict(response, events, self.acker.is_some());
        if let Verdict::Delivered {
            warning: Some(_), ..
        } = verdict
        {
            self.capacity_warnings.inc();
        }
        verdict
    }

    fn confirm(&self, receipt: u64) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            match &self.acker {
                Some(acker) => acker.wait(receipt).await,
                None => true,
            }
        })
    }
}

impl HecSink {
    async fn deliver_all(self, input: mpsc::Receiver<SinkInput>) -> Result<(), SinkError> {
        let config = &self.config;
        let acker = config.indexer_acknowledgement.then(|| {
            let interval = secs(config.ack_poll_interval_secs);
            // A poll is small and quick; one without an answer for this long is stuck.
            let poll_timeout = interval
                .max(MIN_POLL_TIMEOUT)
                .min(secs(config.request_timeout_secs));
            Acker::start(
                Arc::clone(&self.collector),
                interval,
                secs(config.ack_timeout_secs),
                poll_timeout,
                secs(config.request_timeout_secs),
            )
        });
        let protocol = Hec {
            collector: Arc::clone(&self.collector),
            acker,
            capacity_warnings: self.capacity_warnings.clone(),
        };
        let writer = EventWriter::new(config)?;
        let requests = Requests::new(
            &self.name,
            protocol,
            self.collector.client.clone(),
            config.request_settings(),
            self.metrics.clone(),
            Arc::clone(&self.dead_letters),
        );
        requests.run(writer, input).await
    }

    async fn check_receiver(&self) -> Result<String, SinkError> {
        let collector = &self.collector;
        let unreachable = |message: String| SinkError::Unreachable {
            sink: collector.name.clone(),
            message,
        };
        let health = http::Request::get(&collector.health_url)
            .body(Bytes::new())
            .expect("a valid URL was checked");
        let response = collector
            .client
            .send(health)
            .await
            .map_err(|e| unreachable(format!("{}: {e}", collector.health_url)))?;
        if response.status != 200 {
            return Err(unreachable(format!(
                "{} answered {}: {}",
                collector.health_url,
                response.status,
                String::from_utf8_lossy(&response.body).trim()
            )));
        }
        // An empty request: a good token gets "No data" (400, code 5), a bad one 401/403.
        let probe = collector.request(&collector.event_url, Bytes::new(), false);
        let response = collector
            .client
            .send(probe)
            .await
            .map_err(|e| unreachable(format!("{}: {e}", collector.event_url)))?;
        match classify(&response) {
            Outcome::Fatal { status, reason } => Err(SinkError::Rejected {
                sink: collector.name.clone(),
                status,
                message: reason,
            }),
            _ if response.status == 400 || response.status == 200 => Ok(format!(
                "{}: collector healthy, token accepted, channel {}",
                self.config.endpoint, collector.channel
            )),
            _ => Err(unreachable(format!(
                "{} answered {}: {}",
                collector.event_url,
                response.status,
                String::from_utf8_lossy(&response.body).trim()
            ))),
        }
    }
}

impl Collector {
    fn request(&self, url: &str, body: Bytes, gzip: bool) -> http::Request<Bytes> {
        let mut request = http::Request::post(url)
            .header(http::header::AUTHORIZATION, self.authorization.clone())
            .header("X-Splunk-Request-Channel", &self.channel)
            .header(http::header::CONTENT_TYPE, "application/json");
        if gzip {
            request = request.header(http::header::CONTENT_ENCODING, "gzip");
        }
        request.body(body).expect("headers are valid")
    }
}
