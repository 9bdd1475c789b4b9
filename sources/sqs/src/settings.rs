//! The source's settings, as they appear under `[sources.<name>]` with `type = "sqs"`.

use serde::Deserialize;

fn default_visibility() -> u32 {
    300
}
fn default_wait() -> u32 {
    20
}
fn default_max_receive_count() -> u32 {
    5
}
fn default_workers() -> usize {
    4
}
fn default_read_timeout() -> u64 {
    60
}

/// The longest SQS allows a message to stay invisible.
pub(crate) const MAX_VISIBILITY: u32 = 12 * 60 * 60;
/// `[sources.<name>]` of `type = "sqs"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsSource {
    /// The queue S3 (or SNS, or EventBridge) sends notifications to.
    pub queue_url: String,
    /// Otherwise the region in the queue's URL, or the AWS environment's.
    pub region: Option<String>,
    /// A profile of the shared AWS config files (otherwise `AWS_PROFILE` or the default).
    pub profile: Option<String>,
    /// Another endpoint for SQS and S3 (VPC endpoints, moto, LocalStack); `AWS_ENDPOINT_URL`
    /// works too.
    pub endpoint_url: Option<String>,
    /// Address buckets as `<endpoint>/<bucket>` (S3-compatible stores, moto).
    #[serde(default)]
    pub s3_force_path_style: bool,
    /// How long a received message stays invisible; extended every half of it while its
    /// objects are delivered.
    #[serde(default = "default_visibility")]
    pub visibility_timeout_secs: u32,
    /// Long polling: how long a ReceiveMessage waits for messages (at most 20).
    #[serde(default = "default_wait")]
    pub wait_time_secs: u32,
    /// A message received this many times and still not delivered is given up
    /// (dead-lettered with its body, and deleted); 0 never gives up. Ignored when the
    /// queue has a redrive policy: SQS moves the message to its dead-letter queue then.
    #[serde(default = "default_max_receive_count")]
    pub max_receive_count: u32,
    /// Messages processed at once.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Only objects whose key contains this (a prefix such as `AWSLogs/` or a part such as
    /// `vpcflowlogs/`); messages naming only other objects are deleted unread.
    pub key_filter: Option<String>,
    /// The format of lines in objects without a header line.
    pub format: Option<String>,
    /// An object whose body sends nothing for this long is abandoned (the message is read
    /// again later): a half-open connection must not hold a worker forever.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
}

impl SqsSource {
    /// The settings are usable (a queue URL, SQS's own limits).
    pub(crate) fn settings_hold(&self) -> Result<(), String> {
        let url = http::Uri::try_from(self.queue_url.as_str())
            .map_err(|e| format!("queue_url {:?}: {e}", self.queue_url))?;
        if !matches!(url.scheme_str(), Some("https" | "http")) || url.path().len() < 2 {
            return Err(format!(
                "queue_url {:?} is not a queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue>)",
                self.queue_url
            ));
        }
        if !(2..=MAX_VISIBILITY).contains(&self.visibility_timeout_secs) {
            return Err(format!(
                "visibility_timeout_secs must be from 2 to {MAX_VISIBILITY} (SQS's limit)"
            ));
        }
        if self.wait_time_secs > 20 {
            return Err("wait_time_secs must be at most 20 (SQS's limit)".into());
        }
        if !(1..=1000).contains(&self.workers) {
            return Err("workers must be from 1 to 1000".into());
        }
        if self.read_timeout_secs == 0 {
            return Err("read_timeout_secs must be at least 1".into());
        }
        Ok(())
    }
}
