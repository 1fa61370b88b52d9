//! Object storage: the small trait every destination implements, and its contract.
//!
//! Implementations: [`s3::S3Store`] (R2 or any S3 API through aws-sdk-s3) and
//! [`local::LocalStore`] (a directory). The contract, which the conformance tests check
//! against both:
//!
//! * **Uploads are all-or-nothing.** [`ObjectStore::start_upload`] returns an [`Upload`];
//!   nothing is visible under the key until [`Upload::complete`] succeeds. On any failure
//!   the caller calls [`Upload::abort`], which removes every trace (an aborted multipart
//!   upload, a deleted temp file). Parts are passed in order; every part but the last has
//!   the same size (R2's rule).
//! * **Uploads never overwrite.** Completing onto an existing key fails.
//! * [`ObjectStore::put`] writes a small object whole (manifests), replacing any old one.
//! * [`ObjectStore::list`] returns every object under a prefix (all pages), in key order.
//! * [`ObjectStore::get`] of a missing key is an error naming the key; [`ObjectStore::head`]
//!   returns `None`.
//! * [`ObjectStore::delete`] removes keys in batches and reports per-key failures instead
//!   of stopping at the first.

pub mod local;
pub mod parts;
pub mod s3;

use std::collections::BTreeMap;
use std::pin::Pin;

use anyhow::Result;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncRead;

/// What went wrong with a store, where the caller must decide (which setting to blame, which
/// exit code): the bucket or directory is missing, access was denied, the endpoint cannot be
/// reached, a directory cannot be written, an object is already there. `setup` marks a failure of [`ObjectStore::check`]
/// (the store as configured cannot work at all), as opposed to one operation failing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub setup: bool,
}

/// The kinds of [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The bucket (or object) does not exist.
    NotFound,
    /// An object is already stored under the key (backups are never overwritten).
    AlreadyExists,
    /// Credentials were refused.
    Denied,
    /// The endpoint did not answer.
    Unreachable,
    /// The local directory cannot be created or written.
    Unwritable,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            setup: false,
        }
    }

    /// An upload to `key` refused because an object is stored there.
    pub fn already_exists(key: &str) -> Error {
        Error::new(
            ErrorKind::AlreadyExists,
            format!("object {key:?} already exists; backups are never overwritten"),
        )
    }

    /// A failure of the store as configured ([`ObjectStore::check`]).
    pub fn setup(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            setup: true,
        }
    }
}

/// Content type and user metadata of an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectMeta {
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
}

/// An object as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

/// A completed upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Uploaded {
    pub size: u64,
    pub parts: usize,
}

/// A key that could not be deleted.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeleteFailure {
    pub key: String,
    pub message: String,
}

/// One part of an upload. It may hold a slot of the pipeline's part budget (which bounds
/// how many parts are in memory at once); an upload keeps the part until it is stored.
#[derive(Debug)]
pub struct Part {
    pub data: Bytes,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Part {
    pub fn new(data: Bytes) -> Part {
        Part { data, _slot: None }
    }

    pub fn with_slot(data: Bytes, slot: Option<tokio::sync::OwnedSemaphorePermit>) -> Part {
        Part { data, _slot: slot }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl From<Bytes> for Part {
    fn from(data: Bytes) -> Part {
        Part::new(data)
    }
}

/// A readable object body.
pub type Body = Pin<Box<dyn AsyncRead + Send>>;

/// A destination for backups.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Human-readable location, e.g. `s3://bucket` or `/backups` (never a credential).
    fn describe(&self) -> String;

    /// Cheap pre-flight: the destination exists and is reachable with these credentials.
    async fn check(&self) -> Result<()>;

    /// `part_size`: every part but the last has exactly this size.
    async fn start_upload(
        &self,
        key: &str,
        meta: &ObjectMeta,
        part_size: u64,
    ) -> Result<Box<dyn Upload>>;

    async fn put(&self, key: &str, data: Bytes, meta: &ObjectMeta) -> Result<()>;

    async fn get(&self, key: &str) -> Result<Body>;

    async fn head(&self, key: &str) -> Result<Option<(ObjectInfo, ObjectMeta)>>;

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;

    async fn delete(&self, keys: &[String]) -> Result<Vec<DeleteFailure>>;

    /// Abort multipart uploads under `prefix` started before `older_than` (R2 keeps them
    /// for 7 days otherwise). Returns how many were aborted.
    async fn abort_stale_uploads(&self, prefix: &str, older_than: DateTime<Utc>) -> Result<usize>;
}

/// An upload in progress.
#[async_trait]
pub trait Upload: Send {
    /// Add the next part. May return before the part is stored (uploads run concurrently).
    async fn write_part(&mut self, part: Part) -> Result<()>;

    /// Make the object visible. On error the upload has been aborted.
    async fn complete(self: Box<Self>) -> Result<Uploaded>;

    /// Discard everything written so far.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// R2 limits user metadata to 8 KiB (keys plus values).
pub const METADATA_LIMIT: usize = 8 * 1024;

/// Make a metadata value header-safe: printable ASCII kept, everything else percent-encoded.
pub fn metadata_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Check metadata against R2's rules: ASCII header-safe keys and values, 8 KiB in total.
pub fn validate_metadata(meta: &BTreeMap<String, String>) -> Result<()> {
    let mut total = 0;
    for (k, v) in meta {
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            anyhow::bail!("metadata key {k:?} must be lower-case letters, digits and '-'");
        }
        if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            anyhow::bail!("metadata value of {k:?} is not printable ASCII");
        }
        total += k.len() + v.len();
    }
    if total > METADATA_LIMIT {
        anyhow::bail!("object metadata is {total} bytes; R2 allows at most {METADATA_LIMIT}");
    }
    Ok(())
}

/// The last path segment of a key.
pub fn basename(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_values_are_ascii_safe() {
        assert_eq!(metadata_value("plain-1"), "plain-1");
        assert_eq!(metadata_value("é\n%"), "%C3%A9%0A%25");
    }

    #[test]
    fn metadata_limit_table() {
        let make = |n: usize, v: &str| -> BTreeMap<String, String> {
            (0..n).map(|i| (format!("k{i}"), v.to_string())).collect()
        };
        // (metadata, ok)
        let big = "x".repeat(8000);
        let cases: Vec<(BTreeMap<String, String>, bool)> = vec![
            (make(3, "v"), true),
            (BTreeMap::from([("k".to_string(), "x".repeat(8191))]), true),
            (BTreeMap::from([("k".to_string(), "x".repeat(8192))]), false),
            (
                BTreeMap::from([
                    ("a".to_string(), big.clone()),
                    ("b".to_string(), "y".repeat(300)),
                ]),
                false,
            ),
            (
                BTreeMap::from([("Upper".to_string(), "v".to_string())]),
                false,
            ),
            (BTreeMap::from([("k".to_string(), "é".to_string())]), false),
            (
                BTreeMap::from([("k".to_string(), "a\nb".to_string())]),
                false,
            ),
        ];
        for (meta, ok) in cases {
            assert_eq!(
                validate_metadata(&meta).is_ok(),
                ok,
                "{:?}",
                meta.keys().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn basenames() {
        assert_eq!(basename("a/b/c.sql.zst"), "c.sql.zst");
        assert_eq!(basename("c"), "c");
    }
}
