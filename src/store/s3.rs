//! [`ObjectStore`] on R2 (or any S3-compatible server) through aws-sdk-s3.
//!
//! Configured the way R2 wants it: region `auto`, path-style addressing at the given
//! endpoint, static credentials, request checksums only when required by default (R2's own
//! advice), bounded SDK retries. Nothing R2 does not implement is ever sent (no tagging,
//! ACLs, SSE-KMS, expected-bucket-owner).
//!
//! Uploads hold the first part back: a stream that ends within one part is stored with one
//! `PutObject` (with `If-None-Match: *`, so an existing backup is never overwritten);
//! otherwise a multipart upload starts and parts are uploaded two at a time while the dump
//! continues. Parts are in-memory `Bytes`, so the SDK can replay them on retry. Any failure
//! aborts the multipart upload, leaving nothing behind.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use super::{Body, DeleteFailure, ObjectInfo, ObjectMeta, ObjectStore, Part, Upload, Uploaded};
use super::{Error as StoreError, ErrorKind};

/// Concurrent part uploads per object (R2 handles few concurrent parts well).
const PART_CONCURRENCY: usize = 1;

/// An S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    endpoint: String,
}

impl S3Store {
    pub fn new(
        bucket: &str,
        endpoint: &str,
        access_key_id: &str,
        secret_access_key: &str,
        checksums: ChecksumMode,
    ) -> S3Store {
        let creds = Credentials::new(access_key_id, secret_access_key, None, None, "d1-backup");
        let (req, resp) = match checksums {
            ChecksumMode::WhenRequired => (
                RequestChecksumCalculation::WhenRequired,
                ResponseChecksumValidation::WhenRequired,
            ),
            ChecksumMode::WhenSupported => (
                RequestChecksumCalculation::WhenSupported,
                ResponseChecksumValidation::WhenSupported,
            ),
        };
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("auto"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(creds)
            .request_checksum_calculation(req)
            .response_checksum_validation(resp)
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(15))
                    .operation_attempt_timeout(std::time::Duration::from_secs(300))
                    .build(),
            )
            .build();
        S3Store {
            client: Client::from_conf(conf),
            bucket: bucket.to_string(),
            endpoint: endpoint.to_string(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// S3 request checksum behaviour (R2 recommends `WhenRequired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    WhenRequired,
    WhenSupported,
}

/// Render an SDK error with its code and status; credential and missing-bucket failures
/// become a typed [`StoreError`] (the command layer adds which setting to check).
pub fn describe_sdk_error<E, R>(op: &str, err: &SdkError<E, R>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = err.as_service_error().and_then(|e| e.code()).unwrap_or("");
    let text = format!("{op} failed: {}", DisplayErrorContext(err));
    match code {
        "NoSuchBucket" => StoreError::new(ErrorKind::NotFound, text).into(),
        "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Unauthorized" => {
            StoreError::new(ErrorKind::Denied, text).into()
        }
        _ => anyhow!("{text}"),
    }
}

fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<String> {
    err.as_service_error()
        .and_then(|e| e.code())
        .map(str::to_string)
}

fn status<E, R: HasStatus>(err: &SdkError<E, R>) -> Option<u16> {
    err.raw_response().map(|r| r.status_code())
}

trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn metadata_map(meta: &ObjectMeta) -> HashMap<String, String> {
    meta.metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        format!("s3://{} at {}", self.bucket, self.endpoint)
    }

    async fn check(&self) -> Result<()> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let st = status(&e);
                if st == Some(404) || error_code(&e).as_deref() == Some("NoSuchBucket") {
                    return Err(StoreError::setup(
                        ErrorKind::NotFound,
                        format!(
                            "bucket {:?} does not exist at {}",
                            self.bucket, self.endpoint
                        ),
                    )
                    .into());
                }
                if matches!(st, Some(401 | 403)) {
                    return Err(StoreError::setup(
                        ErrorKind::Denied,
                        format!(
                            "access to bucket {:?} was denied (HTTP {})",
                            self.bucket,
                            st.unwrap_or(403)
                        ),
                    )
                    .into());
                }
                if st.is_none() {
                    return Err(StoreError::setup(
                        ErrorKind::Unreachable,
                        format!(
                            "cannot reach {}: {}",
                            self.endpoint,
                            DisplayErrorContext(&e)
                        ),
                    )
                    .into());
                }
                Err(describe_sdk_error(
                    &format!("checking bucket {:?}", self.bucket),
                    &e,
                ))
            }
        }
    }

    async fn start_upload(
        &self,
        key: &str,
        meta: &ObjectMeta,
        part_size: u64,
    ) -> Result<Box<dyn Upload>> {
        super::validate_metadata(&meta.metadata)?;
        Ok(Box::new(S3Upload {
            store: self.clone(),
            key: key.to_string(),
            meta: meta.clone(),
            first: None,
            multipart: None,
            size: 0,
            part_size: part_size as usize,
        }))
    }

    async fn put(&self, key: &str, data: Bytes, meta: &ObjectMeta) -> Result<()> {
        super::validate_metadata(&meta.metadata)?;
        let len = data.len() as i64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(&meta.content_type)
            .set_metadata(Some(metadata_map(meta)))
            .content_length(len)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| describe_sdk_error(&format!("writing {key:?}"), &e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Body> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| describe_sdk_error(&format!("reading {key:?}"), &e))?;
        Ok(Box::pin(out.body.into_async_read()))
    }

    async fn head(&self, key: &str) -> Result<Option<(ObjectInfo, ObjectMeta)>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Ok(Some((
                ObjectInfo {
                    key: key.to_string(),
                    size: o.content_length().unwrap_or(0).max(0) as u64,
                    last_modified: o.last_modified().and_then(to_chrono),
                },
                ObjectMeta {
                    content_type: o.content_type().unwrap_or("").to_string(),
                    metadata: o
                        .metadata()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                },
            ))),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(describe_sdk_error(&format!("reading {key:?}"), &e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| describe_sdk_error(&format!("listing {prefix:?}"), &e))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push(ObjectInfo {
                        key: k.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        last_modified: o.last_modified().and_then(to_chrono),
                    });
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, keys: &[String]) -> Result<Vec<DeleteFailure>> {
        let mut failures = Vec::new();
        for batch in keys.chunks(1000) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()?;
            match self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
            {
                Ok(out) => {
                    for e in out.errors() {
                        failures.push(DeleteFailure {
                            key: e.key().unwrap_or("").to_string(),
                            message: format!(
                                "{} {}",
                                e.code().unwrap_or(""),
                                e.message().unwrap_or("")
                            )
                            .trim()
                            .to_string(),
                        });
                    }
                }
                Err(e) => {
                    let msg = format!("{:#}", describe_sdk_error("DeleteObjects", &e));
                    failures.extend(batch.iter().map(|k| DeleteFailure {
                        key: k.clone(),
                        message: msg.clone(),
                    }));
                }
            }
        }
        Ok(failures)
    }

    async fn abort_stale_uploads(&self, prefix: &str, older_than: DateTime<Utc>) -> Result<usize> {
        let mut n = 0;
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| describe_sdk_error("listing multipart uploads", &e))?;
            for u in page.uploads() {
                let old = u
                    .initiated()
                    .and_then(to_chrono)
                    .is_some_and(|t| t < older_than);
                if let (true, Some(k), Some(id)) = (old, u.key(), u.upload_id()) {
                    self.client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(k)
                        .upload_id(id)
                        .send()
                        .await
                        .map_err(|e| describe_sdk_error("aborting a stale multipart upload", &e))?;
                    n += 1;
                }
            }
            if page.is_truncated().unwrap_or(false) {
                key_marker = page.next_key_marker().map(str::to_string);
                id_marker = page.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(n)
    }
}

struct Multipart {
    upload_id: String,
    next_part: i32,
    tasks: JoinSet<Result<CompletedPart>>,
    done: Vec<CompletedPart>,
}

struct S3Upload {
    store: S3Store,
    key: String,
    meta: ObjectMeta,
    /// The first part, held back until we know whether a single PUT suffices.
    first: Option<Part>,
    multipart: Option<Multipart>,
    size: u64,
    /// Size of full parts (a shorter part is the last one).
    part_size: usize,
}

impl S3Upload {
    async fn begin_multipart(&mut self) -> Result<()> {
        // R2 does not document conditional completion: check for an existing object first.
        if self.store.head(&self.key).await?.is_some() {
            return Err(StoreError::already_exists(&self.key).into());
        }
        let out = self
            .store
            .client
            .create_multipart_upload()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .content_type(&self.meta.content_type)
            .set_metadata(Some(metadata_map(&self.meta)))
            .send()
            .await
            .map_err(|e| describe_sdk_error(&format!("starting upload of {:?}", self.key), &e))?;
        let upload_id = out
            .upload_id()
            .context("CreateMultipartUpload returned no upload id")?
            .to_string();
        self.multipart = Some(Multipart {
            upload_id,
            next_part: 1,
            tasks: JoinSet::new(),
            done: Vec::new(),
        });
        Ok(())
    }

    async fn send_part(&mut self, part: Part) -> Result<()> {
        let mp = self.multipart.as_mut().context("no multipart upload")?;
        while mp.tasks.len() >= PART_CONCURRENCY {
            let part = mp
                .tasks
                .join_next()
                .await
                .context("part task vanished")???;
            mp.done.push(part);
        }
        let n = mp.next_part;
        mp.next_part += 1;
        let client = self.store.client.clone();
        let bucket = self.store.bucket.clone();
        let key = self.key.clone();
        let upload_id = mp.upload_id.clone();
        mp.tasks.spawn(async move {
            // `part` lives until the part is stored: it holds a slot of the memory budget.
            let data = part.data.clone();
            let len = data.len() as i64;
            let out = client
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&upload_id)
                .part_number(n)
                .content_length(len)
                .body(ByteStream::from(data))
                .send()
                .await
                .map_err(|e| describe_sdk_error(&format!("uploading part {n} of {key:?}"), &e))?;
            drop(part);
            Ok(CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build())
        });
        Ok(())
    }

    async fn finish_multipart(&mut self) -> Result<usize> {
        let mp = self.multipart.as_mut().context("no multipart upload")?;
        while let Some(part) = mp.tasks.join_next().await {
            mp.done.push(part.context("part task vanished")??);
        }
        mp.done.sort_by_key(|p| p.part_number());
        let n = mp.done.len();
        self.store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(&mp.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(mp.done.clone()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| describe_sdk_error(&format!("completing upload of {:?}", self.key), &e))?;
        Ok(n)
    }

    async fn abort_multipart(&mut self) -> Result<()> {
        if let Some(mut mp) = self.multipart.take() {
            mp.tasks.abort_all();
            while mp.tasks.join_next().await.is_some() {}
            self.store
                .client
                .abort_multipart_upload()
                .bucket(&self.store.bucket)
                .key(&self.key)
                .upload_id(&mp.upload_id)
                .send()
                .await
                .map_err(|e| {
                    describe_sdk_error(&format!("aborting upload of {:?}", self.key), &e)
                })?;
        }
        Ok(())
    }
}

#[async_trait]
impl Upload for S3Upload {
    async fn write_part(&mut self, part: Part) -> Result<()> {
        self.size += part.len() as u64;
        if self.multipart.is_none() {
            match self.first.take() {
                // A short first part may be the whole object: hold it for a single PUT. A
                // full one means a multipart upload, which can start right away.
                None if part.len() < self.part_size => {
                    self.first = Some(part);
                    return Ok(());
                }
                None => {
                    self.begin_multipart().await?;
                }
                Some(first) => {
                    self.begin_multipart().await?;
                    self.send_part(first).await?;
                }
            }
        }
        self.send_part(part).await
    }

    async fn complete(mut self: Box<Self>) -> Result<Uploaded> {
        if self.multipart.is_none() {
            let data = self.first.take().map(|p| p.data).unwrap_or_default();
            let len = data.len() as i64;
            self.store
                .client
                .put_object()
                .bucket(&self.store.bucket)
                .key(&self.key)
                .content_type(&self.meta.content_type)
                .set_metadata(Some(metadata_map(&self.meta)))
                .if_none_match("*")
                .content_length(len)
                .body(ByteStream::from(data))
                .send()
                .await
                .map_err(|e| {
                    if status(&e) == Some(412) {
                        StoreError::already_exists(&self.key).into()
                    } else {
                        describe_sdk_error(&format!("uploading {:?}", self.key), &e)
                    }
                })?;
            return Ok(Uploaded {
                size: self.size,
                parts: 1,
            });
        }
        match self.finish_multipart().await {
            Ok(parts) => Ok(Uploaded {
                size: self.size,
                parts,
            }),
            Err(e) => {
                if let Err(abort_err) = self.abort_multipart().await {
                    crate::util::log::warn(format!("{abort_err:#}"));
                }
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.first = None;
        self.abort_multipart().await
    }
}
