//! D1's export API: start an export, poll it to completion, get the signed URL.
//!
//! `POST …/export` with `output_format: "polling"` starts the export (HTTP 202, `active`);
//! the same request with `current_bookmark` polls it. D1 cancels an export that is not
//! polled, so polling is continuous (a short pause between polls) and bounded by an overall
//! time limit. The signed URL in the final answer is a bearer credential to the whole
//! database: it is registered as a secret before anything else touches it.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiErrorKind, D1Client, Idempotency};
use crate::{util::log, util::secrets};

/// `dump_options` of an export request.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub no_data: bool,
    pub no_schema: bool,
    /// Objects to export (empty = all).
    pub tables: Vec<String>,
}

/// What a finished export gives.
#[derive(Debug, Clone)]
pub struct ExportDone {
    pub bookmark: String,
    pub signed_url: String,
    pub filename: String,
    /// How long the database was blocked (first request to completion).
    pub blocked: Duration,
}

#[derive(Debug, Deserialize)]
struct Poll {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    at_bookmark: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    messages: Vec<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    result: Option<PollResult>,
}

#[derive(Debug, Deserialize)]
struct PollResult {
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    signed_url: Option<String>,
}

/// Pause before poll `n` (1-based): 100 ms, doubling up to 500 ms — a small export is seen
/// finished within ~100 ms, a long one costs no more requests than polling every 500 ms.
pub fn poll_delay(n: u32) -> Duration {
    Duration::from_millis((100u64 << n.saturating_sub(1).min(3)).min(500))
}

impl D1Client {
    /// Run an export of `database_id` to completion (or fail within `timeout`).
    pub async fn export(
        &self,
        database_id: &str,
        options: &ExportOptions,
        timeout: Duration,
    ) -> Result<ExportDone, ApiError> {
        let path = self.db_path(database_id, "/export");
        let started = Instant::now();
        let dump_options = json!({
            "no_data": options.no_data,
            "no_schema": options.no_schema,
            "tables": options.tables,
        });
        // Starting is not idempotent (a second start is refused while one runs).
        let first = json!({ "output_format": "polling", "dump_options": dump_options });
        let mut sent = Instant::now();
        let mut poll = self
            .post_export(&path, &first, Idempotency::Unsafe, "export")
            .await?;
        let mut polls = 0;
        loop {
            if let Some(done) = finished(&poll, started)? {
                return Ok(done);
            }
            polls += 1;
            let pause = poll_delay(polls);
            if started.elapsed() + pause > timeout {
                return Err(ApiError::new(
                    EXPORT,
                    ApiErrorKind::Timeout,
                    format!(
                        "the export did not finish within {}s; D1 cannot cancel an export, so the database may stay blocked until it ends",
                        timeout.as_secs()
                    ),
                ));
            }
            // The pause runs from when the last poll was sent: its round trip is part of it.
            tokio::time::sleep(pause.saturating_sub(sent.elapsed())).await;
            let Some(bookmark) = poll.at_bookmark.clone() else {
                return Err(ApiError::new(
                    EXPORT,
                    ApiErrorKind::Malformed,
                    "an active export has no at_bookmark to poll with",
                ));
            };
            let body = json!({
                "output_format": "polling",
                "current_bookmark": bookmark,
                "dump_options": dump_options,
            });
            sent = Instant::now();
            poll = self
                .post_export(&path, &body, Idempotency::Safe, "export poll")
                .await?;
        }
    }

    /// One POST to the export route; `what` names it when the answer has no result.
    async fn post_export(
        &self,
        path: &str,
        body: &serde_json::Value,
        idempotency: Idempotency,
        what: &str,
    ) -> Result<Poll, ApiError> {
        self.call::<Poll>(EXPORT, Method::POST, path, &[], Some(body), idempotency)
            .await?
            .result
            .ok_or_else(|| {
                ApiError::new(
                    EXPORT,
                    ApiErrorKind::Malformed,
                    format!("{what} answered without a result"),
                )
            })
    }
}

/// The operation name in errors.
const EXPORT: &str = "export";

/// What one poll says: the finished export, an error, or `None` while it runs.
fn finished(poll: &Poll, started: Instant) -> Result<Option<ExportDone>, ApiError> {
    for m in &poll.messages {
        log::debug(format!("D1 export: {m}"));
    }
    let failure = |fallback: &str| {
        ApiError::new(
            EXPORT,
            ApiErrorKind::Failure,
            poll.error.clone().unwrap_or_else(|| fallback.into()),
        )
    };
    if poll.success == Some(false) {
        return Err(failure("the export failed"));
    }
    match poll.status.as_deref() {
        Some("complete") => {
            let result = poll.result.as_ref();
            let url = result.and_then(|r| r.signed_url.clone()).ok_or_else(|| {
                ApiError::new(
                    EXPORT,
                    ApiErrorKind::Malformed,
                    "the finished export has no signed URL",
                )
            })?;
            secrets::register_url(&url);
            Ok(Some(ExportDone {
                bookmark: poll.at_bookmark.clone().unwrap_or_default(),
                signed_url: url,
                filename: result.and_then(|r| r.filename.clone()).unwrap_or_default(),
                blocked: started.elapsed(),
            }))
        }
        Some("error") => Err(failure("the export ended in an error")),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_back_off_from_100_ms_to_500_ms() {
        let got: Vec<u64> = (1..=7).map(|n| poll_delay(n).as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 500, 500, 500, 500]);
        assert_eq!(poll_delay(0).as_millis(), 100);
        assert_eq!(poll_delay(u32::MAX).as_millis(), 500);
    }
}
