//! The Elasticsearch and OpenSearch sink.
//!
//! Records become `_bulk` items ([`bulk`]): a `create` action naming the target (the
//! data stream `logs-aws.vpcflow-default` by default, where Elastic's AWS integration
//! writes, or a dated index) and the record's deterministic id as `_id`, then its ECS
//! (or OCSF, or raw) document. Because the id is the record's, a request sent again (a
//! lost answer, a restart) is answered 409 for what is already there, which counts as
//! delivered: the cluster never holds a record twice.
//!
//! Answers are handled as `protocols.md` says ([`response`]): per item, 429 and 5xx are
//! sent again after a backoff, other refusals (mapping and parsing errors) are
//! dead-lettered with the cluster's `type` and `reason`; a whole request's 413 halves
//! it, 429/5xx are retried, 401/403 stop the sink. Requests go to the `endpoints` in
//! turn; a node that fails is skipped for `node_retry_secs`.
//!
//! `check` asks `GET /` (product, version), whether the credentials are accepted and
//! may write to the target, and compares the installed template with flowlog's.

mod encoder;
pub mod response;
pub mod settings;
#[cfg(feature = "aws")]
mod sigv4;
pub mod template;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowlog_sink::http::{warn_if_plaintext, Response};
use flowlog_sink::request::{Piece, Protocol, Requests, Verdict};
use flowlog_sink::{
    BoxFuture, ComponentMetrics, DeadLetters, HttpClient, Sink, SinkContext, SinkError, SinkInput,
    SinkKind,
};
use serde_json::Value;
use tokio::sync::mpsc;

pub use settings::{Auth, Compression, DataStream, Destination, EsConfig, Flavor, Format, SigV4};

use crate::encoder::BulkWriter;
#[cfg(feature = "aws")]
use crate::sigv4::Signer;
use flowlog_component::duration::duration as secs;

/// Without the `aws` feature there is no signer: `validate` refuses `aws_sigv4`, and this
/// type has no values, so the paths that would sign are never taken.
#[cfg(not(feature = "aws"))]
enum Signer {}

#[cfg(not(feature = "aws"))]
impl Signer {
    async fn sign(&self, _: &mut http::Request<Bytes>) -> Result<(), String> {
        match *self {}
    }

    async fn describe(&self) -> Result<String, String> {
        match *self {}
    }
}

/// A configured Elasticsearch sink.
pub struct EsSink {
    name: String,
    config: EsConfig,
    metrics: ComponentMetrics,
    dead_letters: Arc<dyn DeadLetters>,
    cluster: Arc<Cluster>,
}

/// One node of the cluster.
struct Node {
    base: String,
    bulk_url: String,
    /// Left out of the rotation until then, after a failure.
    down_until: Mutex<Option<Instant>>,
}

/// The cluster's nodes and how to speak to them.
pub(crate) struct Cluster {
    name: String,
    client: HttpClient,
    authorization: Option<http::HeaderValue>,
    /// For `auth = { aws_sigv4 }`: every request is signed.
    signer: Option<Signer>,
    nodes: Vec<Node>,
    next: AtomicUsize,
    node_retry: Duration,
}

impl SinkKind for EsConfig {
    fn validate(&self) -> Result<(), SinkError> {
        EsConfig::validate(self)
    }

    /// ECS alerts only: OCSF findings have no `@timestamp`, which data streams require.
    fn carries_documents(&self, format: &str) -> Result<(), String> {
        match format {
            "ecs" => Ok(()),
            _ => Err("Elasticsearch takes findings as ECS alerts: set findings_format = \"ecs\" in [detect]".into()),
        }
    }

    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(EsSink::new(
            &ctx.name,
            self.clone(),
            ctx.metrics,
            ctx.dead_letters,
        )?))
    }
}

/// Bulk answers list every item: a few MB for the largest requests.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

impl EsSink {
    pub fn new(
        name: &str,
        config: EsConfig,
        metrics: ComponentMetrics,
        dead_letters: Arc<dyn DeadLetters>,
    ) -> Result<Self, SinkError> {
        config.validate()?;
        let name = name.to_string();
        let client = config.http_client(MAX_RESPONSE_BYTES, false)?;
        let nodes = config
            .endpoints
            .iter()
            .map(|endpoint| {
                if config.auth.is_some() {
                    warn_if_plaintext(&name, endpoint);
                }
                let base = endpoint.trim_end_matches('/').to_string();
                Node {
                    // Only what the verdict reads: a full answer repeats index, id, version
                    // and shard counts for every document.
                    bulk_url: format!(
                        "{base}/_bulk?filter_path=errors,items.*.status,items.*.error"
                    ),
                    base,
                    down_until: Mutex::new(None),
                }
            })
            .collect();
        let cluster = Arc::new(Cluster {
            name: name.clone(),
            client,
            authorization: config.authorization()?,
            signer: match &config.auth {
                #[cfg(feature = "aws")]
                Some(Auth::AwsSigV4 { aws_sigv4 }) => Some(Signer::new(aws_sigv4.clone())),
                _ => None,
            },
            nodes,
            next: AtomicUsize::new(0),
            node_retry: secs(config.node_retry_secs),
        });
        Ok(Self {
            name,
            config,
            metrics,
            dead_letters,
            cluster,
        })
    }
}

impl Sink for EsSink {
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
        Box::pin(self.check_cluster())
    }
}

/// `_bulk` on the shared request layer.
struct Bulk {
    cluster: Arc<Cluster>,
}

impl Protocol for Bulk {
    fn request(&self, body: Bytes, gzip: bool, _group: Option<&Bytes>) -> http::Request<Bytes> {
        let node = self.cluster.pick();
        let mut request = self
            .cluster
            .request(http::Method::POST, &node.bulk_url)
            .header(http::header::CONTENT_TYPE, "application/x-ndjson");
        if gzip {
            request = request.header(http::header::CONTENT_ENCODING, "gzip");
        }
        request.body(body).expect("headers are valid")
    }

    fn authorize<'a>(
        &'a self,
        request: &'a mut http::Request<Bytes>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.cluster.sign(request))
    }

    fn classify(&self, response: &Response, piece: &Piece) -> Verdict {
        let events = piece.len();
        response::verdict(response, events)
    }

    fn attempted(&self, uri: &http::Uri, healthy: bool) {
        self.cluster.attempted(uri, healthy);
    }
}

impl Cluster {
    /// The next node in turn that is not resting after a failure; when all are, the
    /// one that rests least long.
    fn pick(&self) -> &Node {
        let n = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut soonest: Option<(Instant, &Node)> = None;
        for i in 0..n {
            let node = &self.nodes[(start + i) % n];
            match *node.down_until.lock().unwrap() {
                Some(until) if until > now => {
                    if soonest.is_none_or(|(s, _)| until < s) {
                        soonest = Some((until, node));
                    }
                }
                _ => return node,
            }
        }
        soonest.map(|(_, node)| node).unwrap_or(&self.nodes[0])
    }

    fn attempted(&self, uri: &http::Uri, healthy: bool) {
        let uri = uri.to_string();
        let Some(node) = self.nodes.iter().find(|n| n.bulk_url == uri) else {
            return;
        };
        let mut down = node.down_until.lock().unwrap();
        if healthy {
            *down = None;
        } else if self.nodes.len() > 1 {
            if down.is_none() {
                tracing::warn!(sink = %self.name, node = %node.base,
                    "node failed; leaving it out for {:?}", self.node_retry);
            }
            *down = Some(Instant::now() + self.node_retry);
        }
    }

    fn request(&self, method: http::Method, url: &str) -> http::request::Builder {
        let mut request = http::Request::builder().method(method).uri(url);
        if let Some(authorization) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, authorization.clone());
        }
        request
    }

    async fn sign(&self, request: &mut http::Request<Bytes>) -> Result<(), String> {
        match &self.signer {
            Some(signer) => signer.sign(request).await,
            None => Ok(()),
        }
    }

    /// Sends a small JSON request to the first node and reads the answer.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, SinkError> {
        let node = &self.nodes[0];
        let url = format!("{}{path}", node.base);
        let mut request = self.request(method, &url);
        let body = match body {
            Some(value) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let mut request = request.body(body).expect("headers are valid");
        self.sign(&mut request)
            .await
            .map_err(|message| SinkError::Config(format!("{}: {message}", self.name)))?;
        self.client
            .send(request)
            .await
            .map_err(|e| SinkError::Unreachable {
                sink: self.name.clone(),
                message: format!("{url}: {e}"),
            })
    }
}

impl EsSink {
    async fn deliver_all(self, input: mpsc::Receiver<SinkInput>) -> Result<(), SinkError> {
        if self.config.install_template {
            let flavor = self.flavor().await?;
            template::install(&self.cluster, &self.config, flavor).await?;
        }
        let protocol = Bulk {
            cluster: Arc::clone(&self.cluster),
        };
        let writer = BulkWriter::new(&self.config)?;
        let requests = Requests::new(
            &self.name,
            protocol,
            self.cluster.client.clone(),
            self.config.request_settings(),
            self.metrics.clone(),
            Arc::clone(&self.dead_letters),
        );
        requests.run(writer, input).await
    }

    /// The product, as configured or as `GET /` says.
    async fn flavor(&self) -> Result<Flavor, SinkError> {
        match self.config.flavor {
            Flavor::Auto => Ok(self.cluster_info().await?.flavor),
            flavor => Ok(flavor),
        }
    }

    async fn cluster_info(&self) -> Result<ClusterInfo, SinkError> {
        let response = self.cluster.call(http::Method::GET, "/", None).await?;
        let cluster = &self.cluster;
        match response.status {
            200 => {}
            401 | 403 => {
                let mut message = response_text(&response);
                if matches!(self.config.auth, Some(Auth::ApiKey { .. })) {
                    message.push_str(
                        " (if the cluster is OpenSearch: it takes no API keys; use auth = { user, password })",
                    );
                }
                return Err(SinkError::Rejected {
                    sink: cluster.name.clone(),
                    status: response.status,
                    message,
                });
            }
            status => {
                return Err(SinkError::Unreachable {
                    sink: cluster.name.clone(),
                    message: format!("GET / answered {status}: {}", response_text(&response)),
                })
            }
        }
        let info: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        let product = response
            .headers
            .get("x-elastic-product")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Amazon OpenSearch Service also runs Elasticsearch 7.10 ("legacy" domains),
        // older than the product header; it speaks OpenSearch's subset.
        let signed = self.cluster.signer.is_some();
        let opensearch =
            info["version"]["distribution"] == "opensearch" || (signed && product.is_none());
        if product.is_none() && !opensearch {
            return Err(SinkError::Unreachable {
                sink: cluster.name.clone(),
                message: format!(
                    "{} is neither Elasticsearch (no X-Elastic-Product header) nor OpenSearch",
                    cluster.nodes[0].base
                ),
            });
        }
        Ok(ClusterInfo {
            flavor: if opensearch {
                Flavor::OpenSearch
            } else {
                Flavor::Elasticsearch
            },
            version: info["version"]["number"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            cluster_name: info["cluster_name"].as_str().unwrap_or("").to_string(),
        })
    }

    async fn check_cluster(&self) -> Result<String, SinkError> {
        let base = &self.cluster.nodes[0].base;
        // The refusal of `GET /`, taken back only if the privileges API then confirms
        // that these credentials may write.
        let mut unproven = None;
        let (flavor, first) = match self.cluster_info().await {
            Ok(info) => {
                let product = match info.flavor {
                    Flavor::OpenSearch => "OpenSearch",
                    _ => "Elasticsearch",
                };
                let line = format!(
                    "{base}: {product} {} (cluster `{}`)",
                    info.version, info.cluster_name
                );
                (info.flavor, line)
            }
            // A least-privilege writer on Elasticsearch holds no cluster privilege, and
            // `run` needs none unless it installs templates without a `flavor`: the product
            // goes unchecked, and the right to write must then be proven below (OpenSearch
            // has no API for that, so there the refusal stands).
            Err(SinkError::Rejected {
                status: 403,
                message,
                sink,
            }) if lacks_cluster_privilege(&message)
                && self.cluster.signer.is_none()
                && !(self.config.install_template && self.config.flavor == Flavor::Auto) =>
            {
                let line = format!(
                    "{base}: product and version not checked: the credentials may not read \
                     them (GET / takes the `monitor` cluster privilege, which writing does not)"
                );
                unproven = Some(SinkError::Rejected {
                    status: 403,
                    message,
                    sink,
                });
                (Flavor::Elasticsearch, line)
            }
            Err(SinkError::Rejected {
                status: 403,
                message,
                sink,
            }) if lacks_cluster_privilege(&message) && self.config.install_template => {
                return Err(SinkError::Rejected {
                    status: 403,
                    message: format!(
                        "{message} (install_template = true asks GET / which product the \
                         cluster is: grant the `monitor` cluster privilege, or set `flavor`)"
                    ),
                    sink,
                })
            }
            Err(e) => return Err(e),
        };
        let mut report = vec![first];
        if let Some(signer) = &self.cluster.signer {
            report.push(signer.describe().await.map_err(SinkError::Config)?);
        }
        if flavor == Flavor::OpenSearch && matches!(self.config.auth, Some(Auth::ApiKey { .. })) {
            return Err(SinkError::Config(
                "the cluster is OpenSearch, which takes no API keys: use auth = { user, password }"
                    .into(),
            ));
        }
        let (privileges, confirmed) = self.check_privileges(flavor).await?;
        if let (Some(refusal), false) = (unproven, confirmed) {
            return Err(refusal);
        }
        report.push(privileges);
        report.push(template::compare(&self.cluster, &self.config, flavor).await?);
        Ok(report.join("\n  "))
    }

    /// Whether the credentials may write to the target (Elasticsearch's privileges API;
    /// elsewhere said to be unchecked): what to report, and whether it was confirmed.
    async fn check_privileges(&self, flavor: Flavor) -> Result<(String, bool), SinkError> {
        let target = match self.config.destination() {
            Destination::DataStream(name) => name,
            Destination::Index(pattern) => pattern
                .replace("%Y", "*")
                .replace("%m", "*")
                .replace("%d", "*"),
        };
        if flavor == Flavor::OpenSearch {
            return Ok((
                format!(
                    "write privileges on `{target}`: not checked (OpenSearch has no privileges API for this)"
                ),
                false,
            ));
        }
        let ask = serde_json::json!({"index": [{"names": [target], "privileges": ["create_doc"]}]});
        let response = self
            .cluster
            .call(
                http::Method::POST,
                "/_security/user/_has_privileges",
                Some(&ask),
            )
            .await?;
        match response.status {
            200 => {
                let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
                if answer["has_all_requested"] == true {
                    Ok((
                        format!("credentials accepted; may create documents in `{target}`"),
                        true,
                    ))
                } else {
                    Err(SinkError::Rejected {
                        sink: self.cluster.name.clone(),
                        status: 403,
                        message: format!(
                            "the credentials may not create documents in `{target}` (create_doc privilege)"
                        ),
                    })
                }
            }
            401 => Err(SinkError::Rejected {
                sink: self.cluster.name.clone(),
                status: 401,
                message: response_text(&response),
            }),
            status => Ok((
                format!(
                    "write privileges on `{target}`: not checked (the privileges API answered {status}: {})",
                    response_text(&response)
                ),
                false,
            )),
        }
    }
}

/// Whether a 403 from `GET /` says the (authenticated) caller lacks a cluster privilege,
/// as Elasticsearch words it ("action [cluster:monitor/main] is unauthorized for user"),
/// rather than refusing the credentials. OpenSearch's "no permissions for [...]" is left
/// a refusal: with no privileges API, nothing there could prove the right to write.
fn lacks_cluster_privilege(message: &str) -> bool {
    message.starts_with("security_exception")
        && message.contains("action [cluster:monitor/main] is unauthorized")
}

struct ClusterInfo {
    flavor: Flavor,
    version: String,
    cluster_name: String,
}

/// An error answer's `type: reason` (Elasticsearch, OpenSearch) or `message` (AWS's
/// own answers: signatures, access policies), else the start of its body.
fn response_text(response: &Response) -> String {
    let value: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    match (&value["error"]["type"], &value["error"]["reason"]) {
        (Value::String(kind), Value::String(reason)) => format!("{kind}: {reason}"),
        _ if value["message"].is_string() || value["Message"].is_string() => {
            let message = value["message"].as_str().or(value["Message"].as_str());
            let message = message.unwrap_or_default();
            // AWS appends the canonical request it expected: the first sentence says it.
            let first = message.lines().next().unwrap_or_default();
            first
                .chars()
                .take(300)
                .collect::<String>()
                .trim()
                .to_string()
        }
        _ => {
            let body = &response.body[..response.body.len().min(200)];
            String::from_utf8_lossy(body).trim().to_string()
        }
    }
}
