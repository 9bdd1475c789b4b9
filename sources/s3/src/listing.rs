//! Listing keys under a prefix, as S3's ListObjectsV2 does: the folders right under it
//! (with `/` as the delimiter) or every key beneath it.

use std::future::Future;
use std::path::{Path, PathBuf};

/// A listing that failed, naming where.
#[derive(Debug, thiserror::Error)]
#[error("cannot list {place}: {message}")]
pub struct ListError {
    pub place: String,
    pub message: String,
}

/// An object found: its key (relative to the listing's root), size in bytes and, in S3,
/// its ETag (unquoted), which with the key identifies what was written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// What one listing found, each part sorted by key.
#[derive(Debug, Default)]
pub struct Listed {
    /// The folders right under the prefix, as prefixes ending in `/` (empty when the
    /// listing was recursive).
    pub folders: Vec<String>,
    /// The objects right under the prefix, or, recursively, every object beneath it.
    pub objects: Vec<ObjectInfo>,
}

/// Where keys are listed from. A prefix is `""` or ends with `/`.
pub trait Listing {
    /// Lists `prefix`: its folders and objects, or every object beneath it when
    /// `recursive`. A prefix nothing is under lists as empty, as in S3.
    fn list(
        &self,
        prefix: &str,
        recursive: bool,
    ) -> impl Future<Output = Result<Listed, ListError>> + Send;

    /// How this listing names `prefix` in messages (`s3://bucket/prefix`, a path).
    fn describe(&self, prefix: &str) -> String;
}

/// A directory tree standing for a bucket (what `aws s3 sync` leaves): keys are paths
/// relative to the root, with `/` between their parts. Symbolic links to files count as
/// the files; links to directories are not followed (a link cycle cannot trap a listing).
#[derive(Clone, Debug)]
pub struct DirectoryListing {
    root: PathBuf,
}

impl DirectoryListing {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn list_now(&self, prefix: &str, recursive: bool) -> Result<Listed, ListError> {
        let mut listed = Listed::default();
        let mut pending = vec![prefix.to_string()];
        while let Some(prefix) = pending.pop() {
            let dir = self.root.join(&prefix);
            let failed = |e: std::io::Error| ListError {
                place: dir.display().to_string(),
                message: e.to_string(),
            };
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(e)),
            };
            for entry in entries {
                let entry = entry.map_err(failed)?;
                let Ok(name) = entry.file_name().into_string() else {
                    // S3 keys are UTF-8; a name that is not cannot be a copied key.
                    continue;
                };
                let kind = entry.file_type().map_err(failed)?;
                let key = format!("{prefix}{name}");
                if kind.is_dir() {
                    if recursive {
                        pending.push(format!("{key}/"));
                    } else {
                        listed.folders.push(format!("{key}/"));
                    }
                } else {
                    let metadata = std::fs::metadata(entry.path()).map_err(failed)?;
                    if metadata.is_file() {
                        listed.objects.push(ObjectInfo {
                            key,
                            size: metadata.len(),
                            etag: None,
                        });
                    }
                }
            }
        }
        listed.folders.sort();
        listed.objects.sort();
        Ok(listed)
    }
}

impl Listing for DirectoryListing {
    fn list(
        &self,
        prefix: &str,
        recursive: bool,
    ) -> impl Future<Output = Result<Listed, ListError>> + Send {
        // Local listings are quick; they run where they are awaited.
        let listed = self.list_now(prefix, recursive);
        async move { listed }
    }

    fn describe(&self, prefix: &str) -> String {
        self.root.join(prefix).display().to_string()
    }
}

/// A bucket, listed with ListObjectsV2 (`s3:ListBucket`), a page of up to 1000 keys at
/// a time.
#[cfg(feature = "client")]
#[derive(Clone, Debug)]
pub struct S3Listing {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
}

#[cfg(feature = "client")]
impl S3Listing {
    async fn list_now(&self, prefix: &str, recursive: bool) -> Result<Listed, ListError> {
        let mut listed = Listed::default();
        let mut token: Option<String> = None;
        loop {
            let request = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_delimiter((!recursive).then(|| "/".to_string()))
                .set_continuation_token(token.take())
                .send();
            let page = tokio::time::timeout(std::time::Duration::from_secs(60), request)
                .await
                .map_err(|_| ListError {
                    place: self.describe(prefix),
                    message: "no answer in 60 s".into(),
                })?
                .map_err(|e| ListError {
                    place: self.describe(prefix),
                    message: crate::aws::explain(
                        &e,
                        "S3",
                        "s3:ListBucket on the bucket (for this prefix)",
                    ),
                })?;
            listed.folders.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                // A folder placeholder (`aws s3api put-object --key dir/`) holds nothing.
                if key.ends_with('/') {
                    continue;
                }
                listed.objects.push(ObjectInfo {
                    key: key.to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    etag: object.e_tag().map(crate::object::unquoted),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        listed.folders.sort();
        listed.objects.sort();
        Ok(listed)
    }
}

#[cfg(feature = "client")]
impl Listing for S3Listing {
    fn list(
        &self,
        prefix: &str,
        recursive: bool,
    ) -> impl Future<Output = Result<Listed, ListError>> + Send {
        self.list_now(prefix, recursive)
    }

    fn describe(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tree_lists_like_a_bucket() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        std::fs::write(dir.path().join("a/one.gz"), b"1").unwrap();
        std::fs::write(dir.path().join("a/b/two.gz"), b"22").unwrap();
        std::fs::write(dir.path().join("a/b/c/three.gz"), b"333").unwrap();
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("a/b/loop")).unwrap();
        let listing = DirectoryListing::new(dir.path());

        let listed = listing.list("a/", false).await.unwrap();
        assert_eq!(listed.folders, ["a/b/"]);
        assert_eq!(
            listed.objects,
            [ObjectInfo {
                key: "a/one.gz".into(),
                size: 1,
                etag: None,
            }]
        );
        let all = listing.list("", true).await.unwrap();
        let keys: Vec<&str> = all.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a/b/c/three.gz", "a/b/two.gz", "a/one.gz"]);
        assert!(all.folders.is_empty());
        let none = listing.list("missing/", true).await.unwrap();
        assert!(none.objects.is_empty());
    }
}
