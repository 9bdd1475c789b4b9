//! The AWS plumbing the sources that read S3 share: an S3 client and a queue's region.
//! The configuration and the way a failure is said come from `flowlog-aws`, re-exported
//! here for the callers that already name them through this module.

use aws_config::SdkConfig;
pub use flowlog_aws::{explain, one_line, refused, sdk_config, Connection};

/// An S3 client; `force_path_style` addresses buckets as `<endpoint>/<bucket>`
/// (S3-compatible stores, moto).
pub fn s3_client(config: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// The region in an AWS queue URL (`https://sqs.<region>.amazonaws.com/...`).
pub fn region_of_queue(queue_url: &str) -> Option<String> {
    let rest = queue_url.split_once("://")?.1;
    let host = rest.split(['/', ':']).next()?;
    let mut parts = host.split('.');
    match (parts.next(), parts.next()) {
        (Some("sqs"), Some(region)) if host.contains(".amazonaws.com") => Some(region.into()),
        _ => None,
    }
}
