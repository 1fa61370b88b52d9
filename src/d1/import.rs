//! D1's import API (the path `wrangler d1 execute --file --remote` takes), and database
//! creation.
//!
//! `init` with the MD5 of the SQL file → PUT the file to the returned upload URL (its ETag
//! must be that MD5) → `ingest` → `poll` until `complete` or `error`. If `init` returns no
//! upload URL, D1 already holds that file and starts the import at once. The upload URL is a
//! credential and is registered as a secret.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiErrorKind, D1Client, DatabaseInfo, Idempotency};
use crate::{util::log, util::secrets};

#[derive(Debug, Deserialize)]
struct ImportResponse {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    upload_url: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    at_bookmark: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
    #[serde(default)]
    messages: Vec<String>,
    #[serde(default)]
    result: Option<ImportResult>,
}

#[derive(Debug, Deserialize)]
struct ImportResult {
    #[serde(default)]
    final_bookmark: Option<String>,
    #[serde(default)]
    num_queries: Option<u64>,
}

/// The outcome of a finished import.
#[derive(Debug, Clone)]
pub struct ImportDone {
    pub final_bookmark: Option<String>,
    pub queries: Option<u64>,
    pub duration: Duration,
}

/// What `init` decided.
pub enum ImportStart {
    /// Upload the file here, then call [`D1Client::import_ingest`].
    Upload { url: String, filename: String },
    /// D1 already has this file: the import is running; poll it.
    Running { bookmark: String },
}

const POLL_INTERVAL: Duration = Duration::from_millis(1000);

impl D1Client {
    fn import_failure(op: &str, r: &ImportResponse) -> ApiError {
        let mut msg = r
            .error
            .clone()
            .unwrap_or_else(|| "the import failed".into());
        if !r.errors.is_empty() {
            msg = r.errors.join("; ");
        }
        ApiError::new(op, ApiErrorKind::Failure, msg)
    }

    async fn import_call(
        &self,
        database_id: &str,
        body: serde_json::Value,
        idem: Idempotency,
    ) -> Result<ImportResponse, ApiError> {
        let path = self.db_path(database_id, "/import");
        self.call::<ImportResponse>("import", Method::POST, &path, &[], Some(&body), idem)
            .await?
            .result
            .ok_or_else(|| {
                ApiError::new(
                    "import",
                    ApiErrorKind::Malformed,
                    "import answered without a result",
                )
            })
    }

    /// Start an import of a file whose MD5 is `etag`.
    pub async fn import_init(
        &self,
        database_id: &str,
        etag: &str,
    ) -> Result<ImportStart, ApiError> {
        let r = self
            .import_call(
                database_id,
                json!({ "action": "init", "etag": etag }),
                Idempotency::Safe,
            )
            .await?;
        if r.success == Some(false) || r.status.as_deref() == Some("error") {
            return Err(Self::import_failure("import init", &r));
        }
        match r.upload_url {
            Some(url) => {
                secrets::register_url(&url);
                Ok(ImportStart::Upload {
                    url,
                    filename: r.filename.unwrap_or_default(),
                })
            }
            None => Ok(ImportStart::Running {
                bookmark: r.at_bookmark.unwrap_or_default(),
            }),
        }
    }

    /// Tell D1 to import the uploaded file; returns the bookmark to poll with.
    pub async fn import_ingest(
        &self,
        database_id: &str,
        etag: &str,
        filename: &str,
    ) -> Result<String, ApiError> {
        let r = self
            .import_call(
                database_id,
                json!({ "action": "ingest", "etag": etag, "filename": filename }),
                Idempotency::Unsafe,
            )
            .await?;
        if r.success == Some(false) || r.status.as_deref() == Some("error") {
            return Err(Self::import_failure("import ingest", &r));
        }
        for m in &r.messages {
            log::info(format!("D1 import: {m}"));
        }
        Ok(r.at_bookmark.unwrap_or_default())
    }

    /// Poll an import until it completes (or fails, or `timeout` passes).
    pub async fn import_wait(
        &self,
        database_id: &str,
        bookmark: &str,
        timeout: Duration,
    ) -> Result<ImportDone, ApiError> {
        let started = Instant::now();
        let mut bookmark = bookmark.to_string();
        loop {
            let r = self
                .import_call(
                    database_id,
                    json!({ "action": "poll", "current_bookmark": bookmark }),
                    Idempotency::Safe,
                )
                .await?;
            for m in &r.messages {
                log::info(format!("D1 import: {m}"));
            }
            match r.status.as_deref() {
                Some("complete") => {
                    return Ok(ImportDone {
                        final_bookmark: r.result.as_ref().and_then(|x| x.final_bookmark.clone()),
                        queries: r.result.as_ref().and_then(|x| x.num_queries),
                        duration: started.elapsed(),
                    });
                }
                Some("error") => return Err(Self::import_failure("import", &r)),
                _ if r.success == Some(false) => return Err(Self::import_failure("import", &r)),
                _ => {}
            }
            if started.elapsed() > timeout {
                return Err(ApiError::new(
                    "import",
                    ApiErrorKind::Timeout,
                    format!("the import did not finish within {}s", timeout.as_secs()),
                ));
            }
            if let Some(b) = r.at_bookmark {
                bookmark = b;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Create a database.
    pub async fn create_database(&self, name: &str) -> Result<DatabaseInfo, ApiError> {
        let path = format!("/accounts/{}/d1/database", self.account_id());
        self.call::<DatabaseInfo>(
            "create D1 database",
            Method::POST,
            &path,
            &[],
            Some(&json!({ "name": name })),
            Idempotency::Unsafe,
        )
        .await?
        .result
        .ok_or_else(|| {
            ApiError::new(
                "create D1 database",
                ApiErrorKind::Malformed,
                "no database in the answer",
            )
        })
    }
}
