//! The queue source itself: receiving, reading the objects, deleting once delivered.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use flowlog_component::{BatchStatus, BoxFuture, LabelledCounter};
use flowlog_model::{error_chain, DeadLetter, SourceId};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::notification::{self, ObjectRef};
use crate::object;
use crate::settings::SqsSource;
use flowlog_source_s3::aws;

use flowlog_source::dead_letter::DeadLetterFile;
use flowlog_source::{CheckOptions, Findings, Source, SourceContext, SourceError, SourceKind};

/// The most messages one ReceiveMessage returns, and entries one DeleteMessageBatch takes.
const SQS_BATCH: usize = 10;

impl SourceKind for SqsSource {
    fn format(&self) -> Option<&str> {
        self.format.as_deref()
    }

    fn validate(&self) -> Result<(), SourceError> {
        self.settings_hold().map_err(SourceError::Config)
    }

    fn build(&self, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(Queue {
            settings: self.clone(),
            ctx,
        }))
    }

    fn check<'a>(&'a self, options: CheckOptions<'a>) -> BoxFuture<'a, Findings> {
        Box::pin(check(self, options.sample))
    }
}

/// The SQS and S3 clients, from the AWS default chain and the settings.
pub(crate) struct Clients {
    sqs: aws_sdk_sqs::Client,
    pub(crate) s3: aws_sdk_s3::Client,
}

impl Clients {
    async fn load(settings: &SqsSource) -> Self {
        let region = settings
            .region
            .clone()
            .or_else(|| aws::region_of_queue(&settings.queue_url));
        let config = aws::sdk_config(&aws::Connection {
            region: region.as_deref(),
            profile: settings.profile.as_deref(),
            endpoint_url: settings.endpoint_url.as_deref(),
        })
        .await;
        Self {
            sqs: aws_sdk_sqs::Client::new(&config),
            s3: aws::s3_client(&config, settings.s3_force_path_style),
        }
    }
}

/// The queue's name, the last part of its URL.
fn queue_name(queue_url: &str) -> &str {
    queue_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(queue_url)
}

struct Queue {
    settings: SqsSource,
    ctx: SourceContext,
}

impl Source for Queue {
    fn run(self: Box<Self>) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            run(*self).await;
            Ok(())
        })
    }
}

/// What every message's worker shares.
pub(crate) struct Shared {
    pub(crate) settings: SqsSource,
    pub(crate) ctx: SourceContext,
    pub(crate) clients: Clients,
    /// A message received this many times and still failing is given up; `None` when the
    /// queue's redrive policy moves it, or when configured never to give up.
    give_up_after: Option<u32>,
    /// Receipt handles of messages to delete.
    deletes: mpsc::UnboundedSender<String>,
    /// Messages settled, by outcome: this kind's own series.
    messages: LabelledCounter,
}

impl Shared {
    fn visibility(&self) -> Duration {
        Duration::from_secs(self.settings.visibility_timeout_secs.into())
    }
}

async fn run(queue: Queue) {
    let Queue { settings, ctx } = queue;
    let clients = Clients::load(&settings).await;
    let redrive = queue_attributes(&clients.sqs, &settings.queue_url)
        .await
        .map(|a| a.redrive_policy);
    let give_up_after = match redrive {
        Ok(Some(policy)) => {
            tracing::info!(source = %ctx.name, "the queue has a redrive policy ({policy}): messages that keep failing are left to it");
            None
        }
        Ok(None) => Some(settings.max_receive_count).filter(|&n| n > 0),
        Err(e) => {
            tracing::warn!(source = %ctx.name, "cannot read the queue's attributes ({e}); assuming no redrive policy");
            Some(settings.max_receive_count).filter(|&n| n > 0)
        }
    };
    let (deletes, to_delete) = mpsc::unbounded_channel();
    let deleter = tokio::spawn(delete_messages(
        clients.sqs.clone(),
        settings.queue_url.clone(),
        delete_timeout(settings.visibility_timeout_secs),
        ctx.name.clone(),
        Arc::clone(&ctx.dead_letters),
        to_delete,
    ));
    tracing::info!(source = %ctx.name, queue = %settings.queue_url, "reading S3 notifications");
    let messages = ctx.metrics.counter_by(
        "messages",
        "Queue messages a source settled, by outcome",
        "outcome",
    );
    let shared = Arc::new(Shared {
        settings,
        ctx,
        clients,
        give_up_after,
        deletes,
        messages,
    });
    receive(Arc::clone(&shared)).await;
    // Every worker is done; the last deletions go out before the source ends.
    drop(shared);
    let _ = deleter.await;
}

/// Receives messages while workers are free, until the stop.
async fn receive(shared: Arc<Shared>) {
    let settings = &shared.settings;
    let stop = Arc::clone(&shared.ctx.stop);
    let workers = Arc::new(Semaphore::new(settings.workers));
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::from_secs(1);
    // A long poll that is not answered well after its wait is a dead connection.
    let answer_within = Duration::from_secs(u64::from(settings.wait_time_secs) + 15);
    loop {
        let first = tokio::select! {
            permit = Arc::clone(&workers).acquire_owned() => permit.expect("never closed"),
            _ = stop.wait() => break,
        };
        let mut permits = vec![first];
        while permits.len() < SQS_BATCH {
            match Arc::clone(&workers).try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let request = shared
            .clients
            .sqs
            .receive_message()
            .queue_url(&settings.queue_url)
            .max_number_of_messages(permits.len() as i32)
            .wait_time_seconds(settings.wait_time_secs as i32)
            .visibility_timeout(settings.visibility_timeout_secs as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send();
        let received = tokio::select! {
            received = tokio::time::timeout(answer_within, request) => received,
            _ = stop.wait() => break,
        };
        while tasks.try_join_next().is_some() {}
        let error = match received {
            Ok(Ok(output)) => {
                backoff = Duration::from_secs(1);
                shared.ctx.metrics.recovered();
                let messages = output.messages.unwrap_or_default();
                if messages.is_empty() && shared.ctx.once {
                    // A finite run ends once a receive finds the queue empty.
                    tracing::info!(source = %shared.ctx.name, "the queue is empty: finishing");
                    break;
                }
                if messages.is_empty() && settings.wait_time_secs == 0 {
                    // Short polling an empty queue: not in a tight loop.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.wait() => break,
                    }
                }
                for message in messages {
                    let permit = permits.pop().expect("no more messages than permits");
                    tasks.spawn(settle(Arc::clone(&shared), message, permit));
                }
                continue;
            }
            Ok(Err(e)) => error_chain(&e),
            Err(_) => format!("no answer in {} s", answer_within.as_secs()),
        };
        tracing::warn!(source = %shared.ctx.name, "receiving from {}: {error}; retrying in {} s", settings.queue_url, backoff.as_secs());
        shared.ctx.metrics.error("receive", &error);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
    // Workers notice the stop between blocks and settle what they sent.
    while tasks.join_next().await.is_some() {}
}

/// How reading a message's objects ended.
enum Outcome {
    /// Every record delivered or dead-lettered.
    Delivered,
    /// Not (yet): the message is read again later.
    Failed(String),
    /// The process is stopping before the message was done.
    Stopped,
}

/// Reads one message's objects, and deletes the message or leaves it to reappear.
async fn settle(shared: Arc<Shared>, message: Message, _worker: OwnedSemaphorePermit) {
    let name = &shared.ctx.name;
    let metrics = &shared.messages;
    let Some(receipt) = message.receipt_handle.clone() else {
        return;
    };
    let id = message.message_id.clone().unwrap_or_default();
    let body = message.body.as_deref().unwrap_or_default();
    let notice = match notification::parse(body) {
        Ok(notice) => notice,
        Err(reason) => {
            tracing::warn!(source = %name, message = %id, "{reason}: dead-lettered and deleted");
            discard(&shared, &id, receipt, body, &reason, "not_a_notification");
            return;
        }
    };
    if notice.test {
        tracing::debug!(source = %name, message = %id, "S3 test event deleted");
        metrics.inc("test_event");
        let _ = shared.deletes.send(receipt);
        return;
    }
    for kind in &notice.ignored {
        tracing::debug!(source = %name, message = %id, "{kind}: nothing to read");
    }
    let filter = shared.settings.key_filter.as_deref();
    let objects: Vec<ObjectRef> = notice
        .objects
        .into_iter()
        .filter(|o| filter.is_none_or(|f| o.key.contains(f)))
        .collect();
    if objects.is_empty() {
        metrics.inc("nothing_to_read");
        let _ = shared.deletes.send(receipt);
        return;
    }
    // Received more often than allowed: the earlier attempts ended without an outcome (a
    // crash, a kill), which reading it once more may repeat.
    let receives = receive_count(&message);
    if let Some(max) = shared.give_up_after.filter(|&max| receives > max) {
        give_up(
            &shared,
            &id,
            receipt,
            body,
            format!("received {receives} times (more than {max}) without being delivered"),
        );
        return;
    }
    let work = deliver(&shared, &objects);
    match heartbeat(&shared, &receipt, work).await {
        Outcome::Delivered => {
            metrics.inc("delivered");
            let _ = shared.deletes.send(receipt);
        }
        Outcome::Stopped => {
            // Handed back at once, so the next process need not wait out the timeout.
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                change_visibility(&shared, &receipt, 0),
            )
            .await;
        }
        Outcome::Failed(reason) => match shared.give_up_after {
            Some(max) if receives >= max => {
                give_up(
                    &shared,
                    &id,
                    receipt,
                    body,
                    format!("given up after {receives} receives: {reason}"),
                );
            }
            _ => {
                tracing::warn!(source = %name, message = %id, "{reason}; the message will be read again after its visibility timeout (receive {receives})");
                metrics.inc("failed");
            }
        },
    }
}

/// A message that keeps failing, without a redrive policy to move it: dead-lettered with
/// its body and why, then deleted.
fn give_up(shared: &Shared, id: &str, receipt: String, body: &str, reason: String) {
    tracing::error!(source = %shared.ctx.name, message = %id, "{reason}; the message is dead-lettered and deleted");
    discard(shared, id, receipt, body, &reason, "given_up");
}

fn receive_count(message: &Message) -> u32 {
    message
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Reads each object and waits until every record is delivered.
async fn deliver(shared: &Arc<Shared>, objects: &[ObjectRef]) -> Outcome {
    let mut waits = Vec::new();
    for object in objects {
        match object::read(shared, object).await {
            Ok(sent) => waits.extend(sent),
            Err(object::Unread::Stopped) => return Outcome::Stopped,
            Err(object::Unread::Failed(reason)) => return Outcome::Failed(reason),
        }
    }
    for wait in waits {
        if wait.wait().await != BatchStatus::Delivered {
            if shared.ctx.stopping() {
                return Outcome::Stopped;
            }
            return Outcome::Failed("a sink did not deliver the records".into());
        }
    }
    Outcome::Delivered
}

/// Runs `work` while keeping the message invisible: its visibility is extended every half
/// timeout, before it expires.
async fn heartbeat<T>(
    shared: &Shared,
    receipt: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let period = shared.visibility() / 2;
    let mut next = tokio::time::Instant::now() + period;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tokio::time::sleep_until(next) => {}
        }
        let timeout = shared.settings.visibility_timeout_secs;
        match tokio::time::timeout(period / 2, change_visibility(shared, receipt, timeout)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(source = %shared.ctx.name, "extending a message's visibility: {e}; it may be delivered again")
            }
            Err(_) => {
                tracing::warn!(source = %shared.ctx.name, "extending a message's visibility: no answer; it may be delivered again")
            }
        }
        next += period;
    }
}

async fn change_visibility(shared: &Shared, receipt: &str, secs: u32) -> Result<(), String> {
    shared
        .clients
        .sqs
        .change_message_visibility()
        .queue_url(&shared.settings.queue_url)
        .receipt_handle(receipt)
        .visibility_timeout(secs as i32)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| error_chain(&e))
}

/// A message not read (further): its body goes to the dead letter with why, it is counted
/// under `outcome`, and deleted (left on the queue if the dead letter cannot keep it).
fn discard(
    shared: &Shared,
    id: &str,
    receipt: String,
    body: &str,
    reason: &str,
    outcome: &'static str,
) {
    let source = SourceId::new(format!(
        "sqs://{}/{id}",
        queue_name(&shared.settings.queue_url)
    ));
    let letter = DeadLetter::new(&source, 0, reason, body.as_bytes());
    if let Err(e) = shared.ctx.dead_letter(letter) {
        // Not kept, so not deleted: the message comes back once its visibility ends.
        tracing::error!(source = %shared.ctx.name, message = id, "{e}");
        return;
    }
    shared.messages.inc(outcome);
    let _ = shared.deletes.send(receipt);
}

/// Deletes the messages whose receipt handles arrive, up to ten per request: those that
/// arrive within a moment of each other go together. A deletion is a message's
/// checkpoint: what was dead-lettered on its way (by the source or a sink) is made durable
/// first, and if that fails the messages are left to come back.
async fn delete_messages(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    timeout: Duration,
    name: String,
    dead_letters: Arc<DeadLetterFile>,
    mut receipts: mpsc::UnboundedReceiver<String>,
) {
    while let Some(first) = receipts.recv().await {
        let mut batch = vec![first];
        let linger = tokio::time::sleep(Duration::from_millis(50));
        tokio::pin!(linger);
        while batch.len() < SQS_BATCH {
            tokio::select! {
                receipt = receipts.recv() => match receipt {
                    Some(receipt) => batch.push(receipt),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        let letters = Arc::clone(&dead_letters);
        match tokio::task::spawn_blocking(move || letters.sync()).await {
            Ok(Ok(())) => delete_batch(&sqs, &queue_url, timeout, &name, batch).await,
            Ok(Err(e)) => {
                tracing::error!(source = %name, "the dead-letter file cannot be synced ({e}): {} messages are not deleted and will be read again", batch.len())
            }
            Err(e) => tracing::error!(source = %name, "syncing the dead-letter file: {e}"),
        }
    }
}

/// How long a DeleteMessageBatch may go unanswered: at most 30 s, and no longer than the
/// visibility timeout, past which the receipt handles have expired anyway (the messages
/// come back and are read again, with the same event ids).
fn delete_timeout(visibility_timeout_secs: u32) -> Duration {
    Duration::from_secs(u64::from(visibility_timeout_secs).min(30))
}

/// One DeleteMessageBatch, with each entry's result checked; entries that failed for a
/// reason that may pass (or got no answer within `timeout`) are tried again, twice.
async fn delete_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    timeout: Duration,
    name: &str,
    batch: Vec<String>,
) {
    let mut left: Vec<(String, String)> = batch
        .into_iter()
        .enumerate()
        .map(|(i, receipt)| (i.to_string(), receipt))
        .collect();
    let mut last_error = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        let entries = left
            .iter()
            .map(|(id, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(receipt)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let sent = sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send();
        match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(output)) => {
                let mut retry = Vec::new();
                for failed in output.failed {
                    last_error = format!("{}: {}", failed.code, failed.message.unwrap_or_default());
                    if failed.sender_fault {
                        // E.g. an expired receipt handle: the message was received again
                        // (its records will come again, with the same ids).
                        tracing::warn!(source = %name, "a message could not be deleted ({last_error}); it will be read again");
                    } else {
                        retry.push(failed.id);
                    }
                }
                left.retain(|(id, _)| retry.contains(id));
                if left.is_empty() {
                    return;
                }
            }
            Ok(Err(e)) => last_error = error_chain(&e),
            Err(_) => {
                last_error = format!("no answer in {} s", timeout.as_secs());
                tracing::warn!(source = %name, "deleting {} messages: {last_error}; trying again", left.len());
            }
        }
    }
    tracing::error!(source = %name, "{} messages could not be deleted ({last_error}); they will be read again, with the same event ids", left.len());
}

/// What GetQueueAttributes says that matters here.
struct QueueAttributes {
    visibility_timeout: Option<String>,
    redrive_policy: Option<String>,
    waiting: Option<String>,
    in_flight: Option<String>,
}

/// [`aws::explain`] for SQS.
fn explain<E>(
    e: &aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
    needs: &str,
) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    aws::explain(e, "SQS", needs)
}

async fn queue_attributes(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<QueueAttributes, String> {
    let request = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::All)
        .send();
    let output = tokio::time::timeout(Duration::from_secs(30), request)
        .await
        .map_err(|_| "no answer in 30 s".to_string())?
        .map_err(|e| explain(&e, "sqs:GetQueueAttributes"))?;
    let mut attributes = output.attributes.unwrap_or_default();
    let mut take = |name| attributes.remove(&name);
    Ok(QueueAttributes {
        visibility_timeout: take(QueueAttributeName::VisibilityTimeout),
        redrive_policy: take(QueueAttributeName::RedrivePolicy),
        waiting: take(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: take(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    })
}

/// `flowlog check`: the queue can be read and each permission `run` uses on it is held,
/// asked without touching a message; with `sample`, the objects waiting messages name can
/// be read (receiving them counts as a receive: SQS has no peek).
async fn check(settings: &SqsSource, sample: bool) -> Findings {
    let clients = Clients::load(settings).await;
    let url = &settings.queue_url;
    let mut findings = Vec::new();
    match queue_attributes(&clients.sqs, url).await {
        Ok(a) => {
            let unknown = || "?".to_string();
            let redrive = match &a.redrive_policy {
                Some(policy) => {
                    format!("redrive policy {policy} (messages that keep failing go there)")
                }
                None if settings.max_receive_count > 0 => format!(
                    "no redrive policy (flowlog gives up on a message after {} receives)",
                    settings.max_receive_count
                ),
                None => "no redrive policy (flowlog never gives up on a message)".into(),
            };
            findings.push(Ok(format!(
                    "{url}: about {} messages waiting, {} in flight; the queue's visibility timeout is {} s, flowlog's {} s (extended every {} s); {redrive}",
                    a.waiting.unwrap_or_else(unknown),
                    a.in_flight.unwrap_or_else(unknown),
                    a.visibility_timeout.unwrap_or_else(unknown),
                    settings.visibility_timeout_secs,
                    settings.visibility_timeout_secs / 2,
                ),
            ));
        }
        Err(e) => {
            findings.push(Err(SourceError::Unavailable(format!(
                "{url}: sqs:GetQueueAttributes: {e}"
            ))));
            return findings;
        }
    }
    findings.push(permissions(&clients.sqs, url).await);
    match sample {
        true => findings.extend(sample_objects(settings, &clients).await),
        false => findings.push(Ok(
            "s3:GetObject not tried: `flowlog check --sample` reads the \
            first byte of announced objects (receiving a message, even left visible, counts \
            towards its receive count)"
                .into(),
        )),
    }
    findings
}

/// The receipt handle the permission probes name: no message has it, so a caller allowed
/// to act is told the handle is invalid, and one that is not is refused (permissions are
/// evaluated first). Nothing is changed either way.
const PROBE_RECEIPT: &str = "flowlog-check-permission-probe";

/// Whether `run` may receive, extend a message's visibility and delete it, asked without
/// touching a message: a receive of more messages than SQS allows at once (11), and calls
/// naming a receipt handle that cannot exist.
async fn permissions(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, SourceError> {
    let receive = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(SQS_BATCH as i32 + 1)
        // Were a lenient service to answer with messages, they stay visible.
        .visibility_timeout(0)
        .wait_time_seconds(0)
        .send();
    let extend = sqs
        .change_message_visibility()
        .queue_url(url)
        .receipt_handle(PROBE_RECEIPT)
        .visibility_timeout(0)
        .send();
    let entry = DeleteMessageBatchRequestEntry::builder()
        .id("probe")
        .receipt_handle(PROBE_RECEIPT)
        .build()
        .expect("id and receipt handle are set");
    let delete = sqs
        .delete_message_batch()
        .queue_url(url)
        .entries(entry)
        .send();
    let problems: Vec<String> = [
        probe("sqs:ReceiveMessage", receive).await,
        probe("sqs:ChangeMessageVisibility", extend).await,
        // AWS authorizes DeleteMessageBatch as sqs:DeleteMessage.
        probe("sqs:DeleteMessage", delete).await,
    ]
    .into_iter()
    .flatten()
    .collect();
    match problems.is_empty() {
        true => Ok(
            "sqs:ReceiveMessage, sqs:ChangeMessageVisibility and sqs:DeleteMessage: allowed \
             (asked so that no message was touched)"
                .into(),
        ),
        false => Err(SourceError::Unavailable(problems.join("; "))),
    }
}

/// What a permission probe's answer says about `action`: nothing wrong (`None`) when the
/// call succeeded or was turned down for its arguments, which SQS checks only once the
/// caller is authorized; otherwise the refusal, or that it could not be told (no answer,
/// throttling, a server error).
async fn probe<T, E>(
    action: &str,
    call: impl std::future::Future<
        Output = Result<
            T,
            aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
        >,
    >,
) -> Option<String>
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    let e = match tokio::time::timeout(Duration::from_secs(30), call).await {
        Ok(Ok(_)) => return None,
        Ok(Err(e)) => e,
        Err(_) => return Some(format!("{action}: could not tell (no answer in 30 s)")),
    };
    if aws::refused(&e) {
        return Some(format!("{action}: {}", explain(&e, action)));
    }
    let status = e.raw_response().map(|r| r.status().as_u16());
    let throttled = e.code().is_some_and(|c| c.contains("Throttl"));
    match status {
        Some(400 | 404) if !throttled => None,
        _ => Some(format!("{action}: could not tell: {}", explain(&e, action))),
    }
}

/// Looks at up to ten waiting messages (without hiding them) and reads the first byte of
/// the first object they name, and of the first named with a version: s3:GetObject, and
/// s3:GetObjectVersion where notifications carry versions (a versioned bucket).
async fn sample_objects(settings: &SqsSource, clients: &Clients) -> Findings {
    let peek = clients
        .sqs
        .receive_message()
        .queue_url(&settings.queue_url)
        .max_number_of_messages(SQS_BATCH as i32)
        .visibility_timeout(0)
        .wait_time_seconds(0)
        .send();
    let messages = match tokio::time::timeout(Duration::from_secs(30), peek).await {
        Ok(Ok(output)) => output.messages.unwrap_or_default(),
        Ok(Err(e)) => {
            return vec![Err(SourceError::Unavailable(format!(
                "sqs:ReceiveMessage: {}",
                explain(&e, "sqs:ReceiveMessage")
            )))]
        }
        Err(_) => {
            return vec![Err(SourceError::Unavailable(
                "sqs:ReceiveMessage: no answer in 30 s".into(),
            ))]
        }
    };
    if messages.is_empty() {
        return vec![Ok(
            "sqs:ReceiveMessage: allowed; no message visible now, so s3:GetObject was not tried"
                .into(),
        )];
    }
    let mut objects = Vec::new();
    for body in messages.iter().filter_map(|m| m.body.as_deref()) {
        match notification::parse(body) {
            Ok(notice) => objects.extend(notice.objects),
            Err(e) => {
                return vec![Err(SourceError::Unavailable(format!(
                "a message on the queue is not an S3 notification ({e}); it would be dead-lettered"
            )))]
            }
        }
    }
    let plain = objects.iter().find(|o| o.version_id.is_none());
    let versioned = objects.iter().find(|o| o.version_id.is_some());
    if plain.is_none() && versioned.is_none() {
        return vec![Ok(
            "the messages visible name no object to read; s3:GetObject was not tried".into(),
        )];
    }
    let mut findings = Vec::new();
    for object in [plain, versioned].into_iter().flatten() {
        findings.push(read_first_byte(clients, object).await);
    }
    findings
}

/// Reads an object's first byte, as `run` would read it (with its version, if any).
async fn read_first_byte(clients: &Clients, object: &ObjectRef) -> Result<String, SourceError> {
    let uri = format!("s3://{}/{}", object.bucket, object.key);
    let (action, needs) = match &object.version_id {
        Some(_) => (
            "s3:GetObjectVersion",
            "s3:GetObjectVersion (and kms:Decrypt for SSE-KMS objects)",
        ),
        None => (
            "s3:GetObject",
            "s3:GetObject (and kms:Decrypt for SSE-KMS objects)",
        ),
    };
    let read = clients
        .s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_version_id(object.version_id.clone())
        .range("bytes=0-0")
        .send();
    match tokio::time::timeout(Duration::from_secs(30), read).await {
        Ok(Ok(_)) => Ok(format!("{action} on {uri}: readable")),
        Ok(Err(e)) => Err(SourceError::Unavailable(format!(
            "{action} on {uri}: {}",
            aws::explain(&e, "S3", needs)
        ))),
        Err(_) => Err(SourceError::Unavailable(format!(
            "{action} on {uri}: no answer in 30 s"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> SqsSource {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let url = "queue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/flows\"";
        let ok = settings(url);
        ok.validate().unwrap();
        assert_eq!(
            (ok.visibility_timeout_secs, ok.max_receive_count, ok.workers),
            (300, 5, 4)
        );
        for (extra, needle) in [
            ("visibility_timeout_secs = 1", "visibility_timeout_secs"),
            ("visibility_timeout_secs = 50000", "visibility_timeout_secs"),
            ("wait_time_secs = 21", "wait_time_secs"),
            ("workers = 0", "workers"),
        ] {
            let err = settings(&format!("{url}\n{extra}"))
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
        let err = settings("queue_url = \"flows\"")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a queue URL"), "{err}");
    }

    #[test]
    fn the_region_and_name_come_from_the_queue_url() {
        let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/flows";
        assert_eq!(aws::region_of_queue(url).as_deref(), Some("eu-west-1"));
        assert_eq!(queue_name(url), "flows");
        assert_eq!(
            aws::region_of_queue("http://127.0.0.1:5000/123456789012/flows"),
            None
        );
    }
}
