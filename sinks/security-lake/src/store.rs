//! Where finished objects go: an S3 bucket, or a local directory (written in a staging
//! folder and renamed into place after fsync). An object is either whole where readers
//! look or absent.
//!
//! In a bucket, an object up to [`PART_BYTES`] is one `PutObject` (whole or nothing, and
//! nothing left behind when it fails); a larger one a multipart upload, complete only when
//! `CompleteMultipartUpload` succeeds. Security Lake's provider role may not abort uploads
//! (its permissions boundary has no `s3:AbortMultipartUpload`): the parts of a failed one
//! stay until the bucket's lifecycle rule removes them (docs/security-lake.md).

use std::path::{Path, PathBuf};

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use flowlog_source_s3::aws::explain;

/// Parts of a multipart upload (S3's least is 5 MiB, but for the last), and the largest
/// object sent in one `PutObject`.
const PART_BYTES: usize = 16 << 20;

/// What writing needs, for error messages.
const NEEDS: &str = "s3:PutObject on the source's prefix";

/// A write that failed: `transient` ones are retried, the others stop the sink.
#[derive(Debug)]
pub struct StoreError {
    pub transient: bool,
    pub message: String,
}

pub enum Store {
    Bucket {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
    Directory(PathBuf),
}

impl Store {
    /// Writes `body` as the object `key`, whole or not at all.
    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        match self {
            Store::Bucket { client, bucket } if body.len() <= PART_BYTES => {
                put_object(client, bucket, key, body).await
            }
            Store::Bucket { client, bucket } => upload(client, bucket, key, body).await,
            Store::Directory(dir) => {
                let path = dir.join(key);
                let staging = dir.join(STAGING);
                tokio::task::spawn_blocking(move || write_file(&staging, &path, &body))
                    .await
                    .map_err(|e| StoreError {
                        transient: false,
                        message: e.to_string(),
                    })?
                    .map_err(|e| {
                        use std::io::ErrorKind::*;
                        StoreError {
                            // A full disk may empty; a permission or a file where a folder
                            // should be will not change by itself.
                            transient: !matches!(
                                e.kind(),
                                PermissionDenied | NotADirectory | ReadOnlyFilesystem
                            ),
                            message: format!("{}: {e}", dir.join(key).display()),
                        }
                    })
            }
        }
    }

    /// Removes what a crash left half-written in a directory's staging folder (objects
    /// never complete, whose events are still in the spool).
    pub fn clear_staging(&self) -> std::io::Result<()> {
        if let Store::Directory(dir) = self {
            match std::fs::remove_dir_all(dir.join(STAGING)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// What `flowlog check` says: the bucket answers and a multipart upload under `prefix`
    /// may be started (it is aborted at once: nothing is written), or the directory is
    /// writable.
    pub async fn check(&self, prefix: &str) -> Result<String, String> {
        match self {
            Store::Bucket { client, bucket } => {
                // Security Lake's provider role may write under its prefix and do little
                // else: starting an upload (which stores nothing until a part is sent) is
                // what proves both the bucket and the permission.
                let key = format!("{prefix}/flowlog-check-{}.parquet", uuid::Uuid::new_v4());
                let started = client
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| format!("s3://{bucket}/{key}: {}", explain(&e, "S3", NEEDS)))?;
                let aborted = client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(&key)
                    .upload_id(started.upload_id().unwrap_or_default())
                    .send()
                    .await;
                let cleanup = match aborted {
                    Ok(_) => "started and aborted".to_string(),
                    Err(e) => format!(
                        "started; aborting it was refused ({}), so an empty upload is left \
                         for the bucket's lifecycle rule",
                        explain(&e, "S3", "s3:AbortMultipartUpload")
                    ),
                };
                Ok(format!(
                    "bucket {bucket} reachable, writable under {prefix}/ (a multipart upload \
                     holding nothing was {cleanup})"
                ))
            }
            Store::Directory(dir) => flowlog_component::writable::directory(&dir.join(prefix)),
        }
    }
}

async fn put_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Bytes,
) -> Result<(), StoreError> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(CONTENT_TYPE)
        .body(ByteStream::from(body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| StoreError {
            transient: transient(&e),
            message: format!("s3://{bucket}/{key}: {}", explain(&e, "S3", NEEDS)),
        })
}

const CONTENT_TYPE: &str = "application/vnd.apache.parquet";

async fn upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Bytes,
) -> Result<(), StoreError> {
    let failed = |e: &dyn std::fmt::Display, transient: bool| StoreError {
        transient,
        message: format!("s3://{bucket}/{key}: {e}"),
    };
    let started = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type(CONTENT_TYPE)
        .send()
        .await
        .map_err(|e| failed(&explain(&e, "S3", NEEDS), transient(&e)))?;
    let id = started.upload_id().unwrap_or_default().to_string();
    let parts = async {
        let mut parts = Vec::new();
        let mut offset = 0;
        // At least one part, even for an empty body.
        while parts.is_empty() || offset < body.len() {
            let end = (offset + PART_BYTES).min(body.len());
            let number = parts.len() as i32 + 1;
            let answer = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .part_number(number)
                .body(ByteStream::from(body.slice(offset..end)))
                .send()
                .await
                .map_err(|e| failed(&explain(&e, "S3", NEEDS), transient(&e)))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(answer.e_tag().map(str::to_string))
                    .build(),
            );
            offset = end;
        }
        client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| failed(&explain(&e, "S3", NEEDS), transient(&e)))?;
        Ok(())
    }
    .await;
    if parts.is_err() {
        // Parts of an upload never completed are billed until aborted (or until a
        // lifecycle rule does it: see docs/security-lake.md).
        let aborted = client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .send()
            .await;
        if let Err(e) = aborted {
            tracing::warn!(
                "s3://{bucket}/{key}: could not abort the failed upload {id}: {}",
                explain(&e, "S3", NEEDS)
            );
        }
    }
    parts
}

/// Whether a failed call may succeed when tried again: anything but a 4xx answer (a
/// refusal, a missing bucket) other than a timeout or throttling.
fn transient<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    match e.raw_response().map(|r| r.status().as_u16()) {
        Some(status) => !(400..500).contains(&status) || status == 408 || status == 429,
        None => true,
    }
}

/// Where a directory's objects are written before they are renamed into the tree: out
/// of the partitions, so that no reader globbing them meets a half-written file.
pub const STAGING: &str = ".flowlog-staging";

/// The file written in the staging folder and renamed to its place once on disk.
fn write_file(staging: &Path, path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("object keys have folders");
    std::fs::create_dir_all(dir)?;
    std::fs::create_dir_all(staging)?;
    let name = path.file_name().expect("object keys name a file");
    let partial = staging.join(name);
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(body)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    std::fs::File::open(dir)?.sync_all()
}
