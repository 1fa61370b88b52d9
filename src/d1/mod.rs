//! Cloudflare D1 REST API client.
//!
//! Bearer auth, the Cloudflare envelope, typed errors ([`ApiError`]) that keep the server's
//! code and message, bounded retries with jittered backoff that honour `retry-after`
//! ([`retry`]), a per-token request budget shared by all callers, and timeouts. Only
//! requests marked idempotent are retried after a transport error or a 5xx.
//!
//! The client never puts a URL or a header in an error message: export and import hand out
//! signed URLs that are credentials, and the token travels in a header.

pub(crate) mod error;
pub(crate) mod export;
pub(crate) mod import;
pub mod retry;
pub mod stream;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

pub use error::{ApiError, ApiErrorKind, Refused};
pub use retry::{Budget, RetryPolicy};
pub use types::{DatabaseInfo, Envelope, RawResult, TokenInfo};

use crate::util::log;

/// How to reach the API: the token, the account, and the base URL.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub token: String,
    pub account_id: String,
    pub base_url: String,
}

/// Whether `s` has the shape of a D1 database UUID.
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// No database of the account has that name or UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no D1 database {} in account {account}", if *by_uuid { format!("with UUID {reference}") } else { format!("named {reference:?}") })]
pub struct DatabaseNotFound {
    pub reference: String,
    pub account: String,
    pub by_uuid: bool,
}

/// Client tuning.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Per-request timeout (D1 caps a query at 30 s; the API adds its own overhead).
    pub timeout: Duration,
    pub policy: RetryPolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(60),
            policy: RetryPolicy::default(),
        }
    }
}

/// A Cloudflare API client for one token and account.
#[derive(Debug, Clone)]
pub struct D1Client {
    http: reqwest::Client,
    /// For writes: never reuses a pooled connection, so a keep-alive connection the server
    /// closes at the moment a write goes out cannot lose it (reads are simply retried).
    fresh: reqwest::Client,
    base: String,
    token: String,
    account: String,
    budget: Arc<Budget>,
    options: ClientOptions,
}

/// How a request may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads and polls: safe to repeat after any transient failure.
    Safe,
    /// Writes: repeated only when the server certainly did not act (429, connection refused).
    Unsafe,
}

impl D1Client {
    pub fn new(
        api: &Credentials,
        budget: Arc<Budget>,
        options: ClientOptions,
    ) -> anyhow::Result<Self> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("d1-backup/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(15))
                .timeout(options.timeout)
        };
        let http = builder().build()?;
        let fresh = builder().pool_max_idle_per_host(0).build()?;
        Ok(D1Client {
            http,
            fresh,
            base: api.base_url.trim_end_matches('/').to_string(),
            token: api.token.clone(),
            account: api.account_id.clone(),
            budget,
            options,
        })
    }

    pub fn account_id(&self) -> &str {
        &self.account
    }

    /// The HTTP client (for plain downloads such as export signed URLs).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Path of a database endpoint: `/accounts/{a}/d1/database/{id}{suffix}`.
    pub fn db_path(&self, database_id: &str, suffix: &str) -> String {
        format!(
            "/accounts/{}/d1/database/{}{}",
            self.account,
            urlencode(database_id),
            suffix
        )
    }

    /// Send a request with retries; returns the whole envelope of a successful answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        idempotency: Idempotency,
    ) -> Result<Envelope<T>, ApiError> {
        self.execute(operation, method, path, query, body, idempotency, |resp| {
            decode_envelope::<T>(operation, resp)
        })
        .await
    }

    /// Send a request with retries, turning each response into a result with `handle`
    /// (which reports failures as [`ApiError`]s, so they are retried like any other).
    #[allow(clippy::too_many_arguments)]
    pub async fn execute<T, F, Fut>(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        idempotency: Idempotency,
        handle: F,
    ) -> Result<T, ApiError>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            self.budget.acquire().await;
            let url = format!("{}{}", self.base, path);
            let client = match idempotency {
                Idempotency::Safe => &self.http,
                Idempotency::Unsafe => &self.fresh,
            };
            let mut req = client
                .request(method.clone(), &url)
                .bearer_auth(&self.token)
                .header("accept", "application/json");
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let result = match req.send().await {
                Ok(resp) => handle(resp).await,
                Err(e) => Err(transport_error(operation, &e)),
            };
            let mut err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            err.attempts = attempts;
            if let Some(ra) = err.retry_after
                && ra <= self.options.policy.max_elapsed
            {
                // The limit is per token: hold every caller, not just this one. (A wait
                // longer than the whole retry allowance fails this request instead of
                // freezing the run.)
                self.budget.pause_for(ra).await;
            }
            let may_repeat = match idempotency {
                Idempotency::Safe => err.is_transient(),
                Idempotency::Unsafe => err.status == Some(429),
            };
            let delay = self
                .options
                .policy
                .delay(attempts, err.retry_after, &mut rand::rng());
            if !may_repeat
                || !self
                    .options
                    .policy
                    .allows(attempts, started.elapsed(), delay)
            {
                return Err(err);
            }
            log::debug(format!("{err}; retrying in {:.1}s", delay.as_secs_f64()));
            tokio::time::sleep(delay).await;
        }
    }

    /// `GET /user/tokens/verify` (user tokens), falling back to the account-token endpoint.
    pub async fn verify_token(&self) -> Result<TokenInfo, ApiError> {
        let user = self
            .call::<TokenInfo>(
                "verify API token",
                Method::GET,
                "/user/tokens/verify",
                &[],
                None,
                Idempotency::Safe,
            )
            .await;
        match user {
            Ok(env) => env.result.ok_or_else(|| missing_result("verify API token")),
            Err(e) if matches!(e.status, Some(400..=404)) => {
                let path = format!("/accounts/{}/tokens/verify", self.account);
                self.call::<TokenInfo>(
                    "verify API token",
                    Method::GET,
                    &path,
                    &[],
                    None,
                    Idempotency::Safe,
                )
                .await?
                .result
                .ok_or_else(|| missing_result("verify API token"))
            }
            Err(e) => Err(e),
        }
    }

    /// Every database of the account (follows pagination), optionally filtered by name.
    pub async fn list_databases(&self, name: Option<&str>) -> Result<Vec<DatabaseInfo>, ApiError> {
        let path = format!("/accounts/{}/d1/database", self.account);
        let per_page = 100u64;
        let mut out = Vec::new();
        for page in 1u64.. {
            let mut query = vec![
                ("page", page.to_string()),
                ("per_page", per_page.to_string()),
            ];
            if let Some(n) = name {
                query.push(("name", n.to_string()));
            }
            let env = self
                .call::<Vec<DatabaseInfo>>(
                    "list D1 databases",
                    Method::GET,
                    &path,
                    &query,
                    None,
                    Idempotency::Safe,
                )
                .await?;
            let items = env.result.unwrap_or_default();
            let n = items.len() as u64;
            out.extend(items);
            let info = env.result_info.unwrap_or_default();
            let last_page = match info.total_pages {
                Some(total) => page >= total,
                None => match info.total_count {
                    Some(total) => out.len() as u64 >= total,
                    None => n < per_page,
                },
            };
            if last_page || n == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// One database by UUID.
    pub async fn get_database(&self, id: &str) -> Result<DatabaseInfo, ApiError> {
        let path = self.db_path(id, "");
        self.call::<DatabaseInfo>(
            "get D1 database",
            Method::GET,
            &path,
            &[],
            None,
            Idempotency::Safe,
        )
        .await?
        .result
        .ok_or_else(|| missing_result("get D1 database"))
    }

    /// Resolve a name or UUID to the database; an unknown one is a [`DatabaseNotFound`].
    pub async fn resolve_database(&self, name_or_uuid: &str) -> anyhow::Result<DatabaseInfo> {
        let missing = || DatabaseNotFound {
            reference: name_or_uuid.to_string(),
            account: self.account.clone(),
            by_uuid: is_uuid(name_or_uuid),
        };
        if is_uuid(name_or_uuid) {
            return match self.get_database(name_or_uuid).await {
                Ok(db) => Ok(db),
                Err(e) if e.status == Some(404) => Err(missing().into()),
                Err(e) => Err(e.into()),
            };
        }
        let found = self.list_databases(Some(name_or_uuid)).await?;
        match found.into_iter().find(|d| d.name == name_or_uuid) {
            Some(db) => Ok(db),
            None => Err(missing().into()),
        }
    }

    /// Run SQL through `/raw`; returns one result per statement.
    pub async fn raw(
        &self,
        database_id: &str,
        operation: &str,
        sql: &str,
        params: &[serde_json::Value],
    ) -> Result<Vec<RawResult>, ApiError> {
        let body = serde_json::json!({ "sql": sql, "params": params });
        self.post_raw(database_id, operation, &body).await
    }

    /// POST `body` to `/raw`; the results, one per statement.
    async fn post_raw(
        &self,
        database_id: &str,
        operation: &str,
        body: &serde_json::Value,
    ) -> Result<Vec<RawResult>, ApiError> {
        let path = self.db_path(database_id, "/raw");
        self.call::<Vec<RawResult>>(
            operation,
            Method::POST,
            &path,
            &[],
            Some(body),
            Idempotency::Safe,
        )
        .await?
        .result
        .ok_or_else(|| missing_result(operation))
    }

    /// Run statements through one `/raw` request (several as a `batch`, each statement
    /// prepared on its own, so D1's statement limit applies to each), into one compact page
    /// per statement. The body is decoded as it arrives (see [`crate::d1::stream`]).
    pub async fn raw_pages(
        &self,
        database_id: &str,
        operation: &str,
        statements: &[String],
        cells_hint: usize,
    ) -> Result<Paged, ApiError> {
        let path = self.db_path(database_id, "/raw");
        let body = batch_body(statements);
        let paged = self
            .execute(
                operation,
                Method::POST,
                &path,
                &[],
                Some(&body),
                Idempotency::Safe,
                |resp| decode_page(operation, resp, cells_hint),
            )
            .await?;
        check_answers(operation, paged.pages.len(), statements.len())?;
        Ok(paged)
    }

    /// Run statements through one `/raw` request (a `batch` when there are several); returns
    /// one result per statement.
    pub async fn raw_batch(
        &self,
        database_id: &str,
        operation: &str,
        statements: &[String],
    ) -> Result<Vec<RawResult>, ApiError> {
        let results = self
            .post_raw(database_id, operation, &batch_body(statements))
            .await?;
        check_answers(operation, results.len(), statements.len())?;
        Ok(results)
    }

    /// The database's current Time Travel bookmark.
    pub async fn bookmark(&self, database_id: &str) -> Result<String, ApiError> {
        let path = self.db_path(database_id, "/time_travel/bookmark");
        Ok(self
            .call::<types::BookmarkResult>(
                "read Time Travel bookmark",
                Method::GET,
                &path,
                &[],
                None,
                Idempotency::Safe,
            )
            .await?
            .result
            .ok_or_else(|| missing_result("read Time Travel bookmark"))?
            .bookmark)
    }
}

/// Pages of a `/raw` request and the rows D1 read to answer it.
#[derive(Debug, Default)]
pub struct Paged {
    /// One page per statement, in order.
    pub pages: Vec<crate::rows::Page>,
    /// Rows D1 read (and bills), over every statement.
    pub rows_read: u64,
}

/// The body of a `/raw` request: one statement as `sql`, several as a `batch`.
fn batch_body(statements: &[String]) -> serde_json::Value {
    match statements {
        [one] => serde_json::json!({ "sql": one, "params": [] }),
        many => serde_json::json!({
            "batch": many
                .iter()
                .map(|sql| serde_json::json!({ "sql": sql, "params": [] }))
                .collect::<Vec<_>>()
        }),
    }
}

/// One result per statement, or the answer is malformed.
fn check_answers(operation: &str, answers: usize, statements: usize) -> Result<(), ApiError> {
    if answers == statements {
        return Ok(());
    }
    Err(ApiError::new(
        operation,
        ApiErrorKind::Malformed,
        format!("the API answered {answers} results to {statements} statements"),
    ))
}

/// Status, headers of interest, of a response.
struct Head {
    status: u16,
    retry_after: Option<Duration>,
    challenged: bool,
    content_type: String,
}

fn head(resp: &reqwest::Response) -> Head {
    let h = resp.headers();
    Head {
        status: resp.status().as_u16(),
        retry_after: h
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, chrono::Utc::now())),
        challenged: h
            .get("cf-mitigated")
            .is_some_and(|v| v.as_bytes() == b"challenge"),
        content_type: h
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    }
}

/// Read a response as a Cloudflare envelope.
async fn decode_envelope<T: DeserializeOwned>(
    operation: &str,
    resp: reqwest::Response,
) -> Result<Envelope<T>, ApiError> {
    let h = head(&resp);
    let bytes = read_body(resp)
        .await
        .map_err(|e| transport_error(operation, &e))?;
    decode_response(
        operation,
        h.status,
        &h.content_type,
        h.challenged,
        h.retry_after,
        &bytes,
    )
}

/// Read a successful `/raw` response as a page, streaming; anything else as an error.
async fn decode_page(
    operation: &str,
    mut resp: reqwest::Response,
    cells_hint: usize,
) -> Result<Paged, ApiError> {
    let h = head(&resp);
    if h.status != 200 || h.challenged {
        // Error bodies are small: decode them with the envelope rules.
        let env = decode_envelope::<serde_json::Value>(operation, resp).await?;
        return Err(ApiError {
            status: Some(h.status),
            ..ApiError::new(
                operation,
                ApiErrorKind::Malformed,
                format!(
                    "unexpected HTTP {} answer to a query (success: {})",
                    h.status, env.success
                ),
            )
        });
    }
    let malformed = |why: String| ApiError {
        status: Some(h.status),
        ..ApiError::new(
            operation,
            ApiErrorKind::Malformed,
            format!(
                "malformed response from the API ({}): {why}",
                h.content_type
            ),
        )
    };
    let mut decoder = crate::d1::stream::PageDecoder::with_capacity(cells_hint);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport_error(operation, &e))?
    {
        decoder.feed(&chunk).map_err(&malformed)?;
    }
    let decoded = decoder.finish().map_err(&malformed)?;
    match decoded.success {
        Some(true) => Ok(Paged {
            pages: decoded.pages,
            rows_read: decoded.rows_read,
        }),
        Some(false) => {
            let first = decoded.errors.first();
            let message = if decoded.errors.is_empty() {
                "the API reported failure without a message".to_string()
            } else {
                decoded
                    .errors
                    .iter()
                    .map(|e| e.1.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            Err(ApiError {
                status: Some(h.status),
                code: first.and_then(|e| e.0),
                ..ApiError::new(operation, ApiErrorKind::Failure, message)
            })
        }
        None => Err(malformed("no `success` field".into())),
    }
}

/// Read a whole body into one buffer sized from `content-length` up front (no doubling
/// reallocations: pages are megabytes and memory must stay flat).
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let hint = resp.content_length().unwrap_or(0).min(64 << 20) as usize;
    let mut buf = Vec::with_capacity(hint);
    while let Some(chunk) = resp.chunk().await? {
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Turn a response into an envelope or an [`ApiError`].
fn decode_response<T: DeserializeOwned>(
    operation: &str,
    status: u16,
    content_type: &str,
    challenged: bool,
    retry_after: Option<Duration>,
    bytes: &[u8],
) -> Result<Envelope<T>, ApiError> {
    let malformed = |why: String| ApiError {
        status: Some(status),
        retry_after,
        ..ApiError::new(operation, ApiErrorKind::Malformed, why)
    };
    if challenged {
        return Err(malformed(
            "blocked by a Cloudflare challenge page (cf-mitigated: challenge)".into(),
        ));
    }
    if (status == 204 || status == 205) && bytes.is_empty() {
        return Ok(Envelope {
            success: true,
            errors: vec![],
            messages: vec![],
            result: None,
            result_info: None,
        });
    }
    let (2..=5) = status / 100 else {
        return Err(malformed(format!("unexpected HTTP status {status}")));
    };
    let env: Envelope<T> = match serde_json::from_slice(bytes) {
        Ok(env) => env,
        Err(parse_err) => {
            // An error status with a non-envelope body: report the status, a short excerpt.
            let excerpt = excerpt(bytes);
            let ct = if content_type.is_empty() {
                "no content-type".to_string()
            } else {
                content_type.to_string()
            };
            return Err(if status >= 400 {
                ApiError {
                    status: Some(status),
                    retry_after,
                    ..ApiError::new(
                        operation,
                        ApiErrorKind::Http,
                        format!("malformed response from the API ({ct}): {excerpt}"),
                    )
                }
            } else {
                malformed(format!(
                    "malformed response from the API ({ct}, {} bytes: {parse_err}): {excerpt}",
                    bytes.len()
                ))
            });
        }
    };
    if status >= 400 || !env.success {
        let first = env.errors.first();
        let message = if env.errors.is_empty() {
            "the API reported failure without a message".to_string()
        } else {
            env.errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let kind = if status >= 400 {
            ApiErrorKind::Http
        } else {
            ApiErrorKind::Failure
        };
        return Err(ApiError {
            status: Some(status),
            code: first.and_then(|e| e.code),
            retry_after,
            ..ApiError::new(operation, kind, message)
        });
    }
    Ok(env)
}

fn transport_error(operation: &str, e: &reqwest::Error) -> ApiError {
    let kind = if e.is_timeout() {
        ApiErrorKind::Timeout
    } else {
        ApiErrorKind::Transport
    };
    ApiError::new(operation, kind, error_chain(e))
}

/// The message chain of an HTTP error, without the URL.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = match err.downcast_ref::<reqwest::Error>() {
            Some(re) => {
                let mut copy = format!("{re}");
                if let Some(url) = re.url() {
                    copy = copy.replace(&format!(" for url ({url})"), "");
                    copy = copy.replace(url.as_str(), "<url>");
                }
                copy
            }
            None => err.to_string(),
        };
        if !parts.last().is_some_and(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]);
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if bytes.len() > 160 {
        format!("{flat}…")
    } else {
        flat
    }
}

fn missing_result(operation: &str) -> ApiError {
    ApiError::new(
        operation,
        ApiErrorKind::Malformed,
        "the API answered success without a result",
    )
}

/// Percent-encode a path segment.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(status: u16, ct: &str, body: &str) -> Result<Envelope<serde_json::Value>, ApiError> {
        decode_response("op", status, ct, false, None, body.as_bytes())
    }

    #[test]
    fn success_envelope() {
        let env = decode(
            200,
            "application/json",
            r#"{"result":[1],"success":true,"errors":[],"messages":[]}"#,
        )
        .unwrap();
        assert_eq!(env.result.unwrap(), serde_json::json!([1]));
    }

    #[test]
    fn http_errors_keep_code_and_message() {
        let e = decode(
            400,
            "application/json",
            r#"{"result":null,"success":false,"errors":[{"code":7500,"message":"no such table: x: SQLITE_ERROR"}],"messages":[]}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::Http);
        assert_eq!(e.code, Some(7500));
        assert_eq!(
            e.to_string(),
            "op failed: 7500 no such table: x: SQLITE_ERROR (HTTP 400)"
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn html_502_is_transient_and_short() {
        let page = format!("<html><body>{}</body></html>", "Bad gateway ".repeat(100));
        let e = decode(502, "text/html", &page).unwrap_err();
        assert!(e.is_transient());
        assert!(e.message.contains("text/html"));
        assert!(e.message.len() < 400);
    }

    #[test]
    fn truncated_and_non_json_200_are_malformed() {
        let e = decode(200, "application/json", r#"{"result":[{"res"#).unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::Malformed);
        assert!(e.is_transient());
        let e = decode(200, "text/plain", "upstream connect error").unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::Malformed);
    }

    #[test]
    fn success_false_with_200() {
        let e = decode(
            200,
            "application/json",
            r#"{"result":null,"success":false,"errors":[{"code":7500,"message":"D1 DB reset because its code was updated."}],"messages":[]}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::Failure);
        assert!(e.is_transient());
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
        assert_eq!(urlencode("prod-db_1"), "prod-db_1");
    }
}
