//! Spreading a backfill over machines through SQS: the planned objects sent as S3 event
//! notifications, one object per message, for any number of `flowlog run` sidecars with an
//! `sqs` source to read (each message is received by one of them at a time, deleted once
//! delivered); and how far the queue has got.
//!
//! The messages are shaped as S3's own (`eventVersion` 2.1, `ObjectCreated:Put`, the key
//! form-encoded, size and ETag), so the sidecars read them as they read live
//! notifications, and the records get the same event ids as a backfill or a live
//! notification of the same object gives them.

use std::time::Duration;

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::aws;
use crate::listing::ObjectInfo;

/// What S3 leaves unescaped in a notification's key, besides letters and digits (a space
/// becomes `+`).
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/')
    .remove(b'*');

/// The most entries a SendMessageBatch takes.
const BATCH: usize = 10;

/// Attempts at entries SQS could not take for a reason that may pass.
const ATTEMPTS: u32 = 5;

/// What sending the notifications needs.
const SEND_NEEDS: &str =
    "sqs:SendMessage on the queue (and kms:GenerateDataKey for an SSE-KMS queue)";

/// The S3 event notification of one object.
pub fn notification(bucket: &str, region: &str, object: &ObjectInfo, now: &str) -> String {
    let key = utf8_percent_encode(&object.key, KEY_SET)
        .to_string()
        .replace("%20", "+");
    let mut s3_object = serde_json::json!({
        "key": key,
        "size": object.size,
    });
    if let Some(etag) = &object.etag {
        s3_object["eTag"] = etag.clone().into();
    }
    serde_json::json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": region,
            "eventTime": now,
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "flowlog-backfill"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "flowlog-backfill",
                "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
                "object": s3_object,
            }
        }]
    })
    .to_string()
}

/// Sends a notification for each of `objects` to `queue_url`, ten per call; `sent` is
/// told how many have been taken by SQS after each call. An entry SQS refuses for the
/// sender's fault (a message too large, a refused permission) ends the sending; one it
/// could not take for now is sent again.
pub async fn enqueue(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    bucket: &str,
    region: &str,
    objects: &[ObjectInfo],
    mut sent: impl FnMut(u64) -> Result<(), String>,
) -> Result<(), String> {
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    for chunk in objects.chunks(BATCH) {
        let mut pending: Vec<(String, String)> = chunk
            .iter()
            .enumerate()
            .map(|(i, o)| (i.to_string(), notification(bucket, region, o, &now)))
            .collect();
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            let entries = pending
                .iter()
                .map(|(id, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body)
                        .build()
                        .expect("id and body are set")
                })
                .collect::<Vec<_>>();
            let call = sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send();
            let answer = match tokio::time::timeout(Duration::from_secs(30), call).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) if aws::refused(&e) || attempt == ATTEMPTS => {
                    return Err(aws::explain(&e, "SQS", SEND_NEEDS))
                }
                Ok(Err(_)) | Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
            };
            if let Some(refused) = answer.failed().iter().find(|f| f.sender_fault()) {
                return Err(format!(
                    "SQS refused a message: {} ({})",
                    refused.message().unwrap_or_default(),
                    refused.code()
                ));
            }
            let failed: Vec<&str> = answer.failed().iter().map(|f| f.id()).collect();
            pending.retain(|(id, _)| failed.contains(&id.as_str()));
            if pending.is_empty() {
                break;
            }
            if attempt == ATTEMPTS {
                return Err(format!(
                    "SQS did not take {} message(s) after {ATTEMPTS} attempts",
                    pending.len()
                ));
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        sent(chunk.len() as u64)?;
    }
    Ok(())
}

/// How many messages a queue holds, and its dead-letter queue's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    pub waiting: u64,
    /// Received by a reader and not yet deleted (being read).
    pub in_flight: u64,
    pub delayed: u64,
    /// The dead-letter queue's name and how many messages it holds.
    pub dead_letter_queue: Option<(String, u64)>,
}

/// What reading the queue's depth needs.
const STATUS_NEEDS: &str = "sqs:GetQueueAttributes (and sqs:GetQueueUrl for its dead-letter queue)";

/// The queue's approximate counts (SQS's own, up to a minute old).
pub async fn status(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<QueueStatus, String> {
    let counts = |url: String| async move {
        let answer = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| aws::explain(&e, "SQS", STATUS_NEEDS))?;
        let attributes = answer.attributes().cloned().unwrap_or_default();
        let number = |name: QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok::<_, String>((
            number(QueueAttributeName::ApproximateNumberOfMessages),
            number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            number(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            attributes.get(&QueueAttributeName::RedrivePolicy).cloned(),
        ))
    };
    let (waiting, in_flight, delayed, redrive) = counts(queue_url.to_string()).await?;
    let dead_letter_queue = match redrive.as_deref().and_then(dead_letter_target) {
        Some(name) => {
            let url = sqs
                .get_queue_url()
                .queue_name(&name)
                .send()
                .await
                .map_err(|e| aws::explain(&e, "SQS", STATUS_NEEDS))?;
            let url = url.queue_url().unwrap_or_default().to_string();
            let (held, ..) = counts(url).await?;
            Some((name, held))
        }
        None => None,
    };
    Ok(QueueStatus {
        waiting,
        in_flight,
        delayed,
        dead_letter_queue,
    })
}

/// The dead-letter queue's name from a redrive policy (`deadLetterTargetArn`).
fn dead_letter_target(policy: &str) -> Option<String> {
    let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
    let arn = policy["deadLetterTargetArn"].as_str()?;
    arn.rsplit(':').next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_is_shaped_as_s3_writes_them() {
        let object = ObjectInfo {
            key: "AWSLogs/aws-account-id=1/x y+z.log.gz".into(),
            size: 42,
            etag: Some("abc".into()),
        };
        let body = notification("logs", "us-east-1", &object, "2026-12-06T00:00:00.000Z");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        let record = &value["Records"][0];
        assert_eq!(record["eventName"], "ObjectCreated:Put");
        assert_eq!(record["s3"]["bucket"]["name"], "logs");
        assert_eq!(
            record["s3"]["object"]["key"],
            "AWSLogs/aws-account-id%3D1/x+y%2Bz.log.gz"
        );
        assert_eq!(record["s3"]["object"]["size"], 42);
        assert_eq!(record["s3"]["object"]["eTag"], "abc");
    }

    #[test]
    fn the_dead_letter_queue_is_named_by_the_redrive_policy() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:flows-dlq","maxReceiveCount":"5"}"#;
        assert_eq!(dead_letter_target(policy).as_deref(), Some("flows-dlq"));
        assert_eq!(dead_letter_target("{}"), None);
    }
}
