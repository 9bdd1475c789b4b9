//! The AWS Security Hub sink: detection findings imported as ASFF findings.
//!
//! It takes findings only (it must be on `[detect] findings`, as OCSF): each becomes an
//! ASFF finding of the account's default product ([`asff`]), with the finding's
//! deterministic id as its `Id`, so a finding sent again updates the one Security Hub has.
//! Findings are gathered for `batch_timeout_secs` and imported `max_findings` (at most 100)
//! a call with `BatchImportFindings`. Each finding the answer lists in `FailedFindings` is
//! dead-lettered with its error; the others are delivered. Throttling, server errors and
//! no answer are retried with backoff; a refusal (`AccessDenied`, naming
//! `securityhub:BatchImportFindings`) or a hub that is not enabled stops the sink. A batch
//! is acknowledged once every finding in it is imported or dead-lettered.

pub mod asff;
pub mod settings;

use std::collections::HashMap;

use aws_sdk_securityhub::config::retry::RetryConfig;
use aws_sdk_securityhub::config::timeout::TimeoutConfig;
use aws_sdk_securityhub::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_securityhub::types::AwsSecurityFinding;
use aws_sdk_securityhub::Client;
use flowlog_aws::{explain, sdk_config, Connection};
use flowlog_component::duration::duration as secs;
use flowlog_model::{DeadLetter, SourceId};
use flowlog_sink::{
    Ack, Backoff, BoxFuture, RetryPolicy, Sink, SinkContext, SinkError, SinkInput, SinkKind,
};
use tokio::sync::mpsc;

pub use asff::Product;
pub use settings::SecurityHubConfig;

/// The permission every call of this sink needs.
const IMPORT: &str = "securityhub:BatchImportFindings";

/// What a failed `BatchImportFindings` call calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No answer, no connection, throttling or a server error: the same call again later.
    Transient,
    /// The caller may not import (`AccessDenied...`).
    Refused,
    /// The account has no hub in the region (`InvalidAccessException`).
    NotEnabled,
    /// The request's content was refused (`InvalidInputException`).
    Invalid,
    /// Any other refusal, with its status: sending it again would be refused again.
    Other(u16),
}

/// Sorts a failure by what the answer says, following the API's documented errors
/// (`InternalException` 500, `InvalidAccessException` 401, `InvalidInputException` 400,
/// `LimitExceededException` 429, plus the throttling every AWS API may answer).
fn failure<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_securityhub::config::http::HttpResponse>,
) -> Failure {
    let status = e.raw_response().map(|r| r.status().as_u16());
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return Failure::Transient
        }
        _ if flowlog_aws::refused(e) => return Failure::Refused,
        _ => {}
    }
    match (e.code(), status) {
        (Some("InvalidAccessException"), _) => Failure::NotEnabled,
        (Some("InvalidInputException"), _) => Failure::Invalid,
        (
            Some(
                "LimitExceededException"
                | "ThrottlingException"
                | "TooManyRequestsException"
                | "InternalException",
            ),
            _,
        ) => Failure::Transient,
        (_, Some(429 | 500..)) => Failure::Transient,
        (_, Some(status)) => Failure::Other(status),
        // Built but never sent (a configuration the SDK cannot use).
        (_, None) => Failure::Other(0),
    }
}

impl SinkKind for SecurityHubConfig {
    fn validate(&self) -> Result<(), SinkError> {
        SecurityHubConfig::validate(self)
    }

    fn carries_documents(&self, format: &str) -> Result<(), String> {
        if format != "ocsf" {
            return Err("Security Hub findings are made from OCSF findings: set \
                 findings_format = \"ocsf\" (the default)"
                .into());
        }
        Ok(())
    }

    fn findings_only(&self) -> bool {
        true
    }

    fn build(&self, ctx: SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        self.validate()?;
        Ok(Box::new(HubSink {
            config: self.clone(),
            ctx,
        }))
    }
}

/// A configured Security Hub sink.
pub struct HubSink {
    config: SecurityHubConfig,
    ctx: SinkContext,
}

/// A finding waiting for its call, and where it came from.
struct Pending {
    finding: AwsSecurityFinding,
    source: SourceId,
    line: u64,
    text: String,
}

impl Sink for HubSink {
    fn name(&self) -> &str {
        &self.ctx.name
    }

    fn run(
        self: Box<Self>,
        input: mpsc::Receiver<SinkInput>,
    ) -> BoxFuture<'static, Result<(), SinkError>> {
        Box::pin(self.deliver_all(input))
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(async move {
            let (client, product) = self.connect().await?;
            // An import of no finding: refused when the permission is missing (permissions
            // are evaluated first), answered `InvalidAccessException` when the account has
            // no hub in the region, otherwise taken or refused as empty. Nothing is
            // imported.
            let probe = client
                .batch_import_findings()
                .set_findings(Some(Vec::new()))
                .send()
                .await;
            if let Err(e) = &probe {
                let said = explain(e, "Security Hub", IMPORT);
                match failure(e) {
                    // Refused as input: the service answered, but the permission is not
                    // proven by it.
                    Failure::Invalid => {
                        return Ok(format!(
                            "findings as {}; Security Hub answered, refusing an empty import as \
                             input ({said}): {IMPORT} is not proven",
                            product.arn
                        ))
                    }
                    Failure::NotEnabled => {
                        return Err(self.unreachable(format!(
                            "{said} (enable Security Hub in {} for account {})",
                            product.region, product.account_id
                        )))
                    }
                    // Refused, unreachable, no answer in time, throttled or failing:
                    // nothing here says a finding would be imported.
                    _ => return Err(self.unreachable(said)),
                }
            }
            Ok(format!("findings as {}; {IMPORT}: allowed", product.arn))
        })
    }
}

impl HubSink {
    fn unreachable(&self, message: String) -> SinkError {
        SinkError::Unreachable {
            sink: self.ctx.name.clone(),
            message,
        }
    }

    /// The client, and the product findings are imported as (the caller's account unless
    /// the settings name one).
    async fn connect(&self) -> Result<(Client, Product), SinkError> {
        let config = &self.config;
        let sdk = sdk_config(&Connection {
            region: config.region.as_deref(),
            profile: config.profile.as_deref(),
            endpoint_url: config.endpoint_url.as_deref(),
        })
        .await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| SinkError::Config("no region: set `region` or AWS_REGION".into()))?;
        // Every call is bounded (an endpoint that never answers is given up on) and made
        // once: retries are this sink's, with its backoff and its metrics.
        let sdk = sdk
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(secs(config.request_timeout_secs))
                    .build(),
            )
            .build();
        let account = match &config.aws_account_id {
            Some(account) => account.clone(),
            None => aws_sdk_sts::Client::new(&sdk)
                .get_caller_identity()
                .send()
                .await
                .map_err(|e| self.unreachable(explain(&e, "STS", "sts:GetCallerIdentity")))?
                .account()
                .map(str::to_string)
                .ok_or_else(|| self.unreachable("STS named no account".into()))?,
        };
        let client = Client::new(&sdk);
        Ok((client, Product::default_for(&account, &region)))
    }

    async fn deliver_all(self, mut input: mpsc::Receiver<SinkInput>) -> Result<(), SinkError> {
        let (client, product) = self.connect().await?;
        let batch_timeout = secs(self.config.batch_timeout_secs);
        let mut pending: Vec<Pending> = Vec::new();
        let mut acks: Vec<Ack> = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let message = tokio::select! {
                biased;
                _ = timer => None,
                message = input.recv() => match message {
                    Some(message) => Some(message),
                    None => break,
                },
            };
            if let Some(SinkInput { batch, ack }) = message {
                self.ctx.metrics.records_in.inc_by(batch.num_rows() as u64);
                self.take(&batch, &product, &mut pending)?;
                acks.push(ack);
                if pending.len() < self.config.max_findings {
                    deadline.get_or_insert(tokio::time::Instant::now() + batch_timeout);
                    continue;
                }
            }
            deadline = None;
            self.import(&client, std::mem::take(&mut pending)).await?;
            acks.drain(..).for_each(Ack::confirm);
        }
        self.import(&client, pending).await?;
        acks.into_iter().for_each(Ack::confirm);
        Ok(())
    }

    /// The findings of `batch`, as ASFF; a row that cannot be one is dead-lettered.
    fn take(
        &self,
        batch: &flowlog_model::FlowBatch,
        product: &Product,
        pending: &mut Vec<Pending>,
    ) -> Result<(), SinkError> {
        for row in 0..batch.num_rows() {
            let line = batch.line_numbers[row];
            let Some(documents) = batch.document_column() else {
                self.dead_letter(&batch.source, line, "a flow record, not a finding", "")?;
                continue;
            };
            let text = documents.value(row);
            let finding = serde_json::from_str(text)
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|doc| asff::finding(&doc, product));
            match finding {
                Ok(finding) => pending.push(Pending {
                    finding,
                    source: batch.source.clone(),
                    line,
                    text: text.to_string(),
                }),
                Err(reason) => self.dead_letter(&batch.source, line, &reason, text)?,
            }
        }
        Ok(())
    }

    fn dead_letter(
        &self,
        source: &SourceId,
        line: u64,
        reason: &str,
        text: &str,
    ) -> Result<(), SinkError> {
        let reason = format!("sink {}: {reason}", self.ctx.name);
        self.ctx
            .dead_letters
            .write(DeadLetter::new(source, line, reason, text.as_bytes()))
            .map_err(|e| SinkError::Io {
                sink: self.ctx.name.clone(),
                message: e.to_string(),
            })?;
        self.ctx.metrics.dead_letters.inc();
        Ok(())
    }

    /// Imports `pending`, `max_findings` a call: every finding imported or dead-lettered,
    /// or an error that stops the sink.
    async fn import(&self, client: &Client, pending: Vec<Pending>) -> Result<(), SinkError> {
        let policy = RetryPolicy {
            initial: secs(self.config.retry_initial_backoff_secs),
            max: secs(self.config.retry_max_backoff_secs),
        };
        let metrics = &self.ctx.metrics;
        // Calls to make, last first; a call refused as a whole is made again in halves.
        let mut calls: Vec<&[Pending]> = pending.chunks(self.config.max_findings).rev().collect();
        while let Some(chunk) = calls.pop() {
            let findings: Vec<AwsSecurityFinding> =
                chunk.iter().map(|p| p.finding.clone()).collect();
            let mut backoff = Backoff::new(policy);
            let started = std::time::Instant::now();
            metrics.in_flight.inc();
            let answer = loop {
                let call = client
                    .batch_import_findings()
                    .set_findings(Some(findings.clone()))
                    .send()
                    .await;
                match call {
                    Ok(answer) => break Ok(Some(answer)),
                    Err(e) => {
                        let said = explain(&e, "Security Hub", IMPORT);
                        match failure(&e) {
                            Failure::Refused => break Err((403, said)),
                            Failure::NotEnabled => {
                                break Err((
                                    401,
                                    format!(
                                        "{said} (enable Security Hub in this account and region)"
                                    ),
                                ))
                            }
                            // Refused as a whole for what it holds (too large, a finding
                            // the service cannot read): halved down to the finding at
                            // fault, which is dead-lettered.
                            Failure::Invalid | Failure::Other(413) if chunk.len() > 1 => {
                                let (first, second) = chunk.split_at(chunk.len() / 2);
                                calls.extend([second, first]);
                                break Ok(None);
                            }
                            Failure::Invalid | Failure::Other(413) => {
                                for p in chunk {
                                    self.dead_letter(&p.source, p.line, &said, &p.text)?;
                                }
                                break Ok(None);
                            }
                            Failure::Other(status) => break Err((status, said)),
                            Failure::Transient => {
                                metrics.retries.inc();
                                metrics.error("request", &said);
                                tracing::warn!(sink = %self.ctx.name, "BatchImportFindings failed, retrying: {said}");
                                backoff.wait(None).await;
                            }
                        }
                    }
                }
            };
            metrics.in_flight.dec();
            let answer = answer.map_err(|(status, message)| SinkError::Rejected {
                sink: self.ctx.name.clone(),
                status,
                message,
            })?;
            metrics.recovered();
            let Some(answer) = answer else { continue };
            let mut failed: HashMap<&str, String> = HashMap::new();
            for f in answer.failed_findings() {
                failed.insert(
                    f.id().unwrap_or_default(),
                    format!(
                        "Security Hub refused the finding: {} {}",
                        f.error_code().unwrap_or("(no code)"),
                        f.error_message().unwrap_or_default()
                    ),
                );
            }
            let mut imported = 0;
            for p in chunk {
                match p.finding.id().and_then(|id| failed.get(id)) {
                    Some(reason) => self.dead_letter(&p.source, p.line, reason, &p.text)?,
                    None => imported += 1,
                }
            }
            if !failed.is_empty() {
                tracing::warn!(sink = %self.ctx.name, "{} finding(s) refused, dead-lettered", failed.len());
            }
            metrics.records_out.inc_by(imported);
            metrics
                .batch_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}
