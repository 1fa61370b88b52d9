//! The error type of the Cloudflare API client.
//!
//! It keeps what the server said (`7500 no such table: x: SQLITE_ERROR`), the HTTP status,
//! which operation failed and how many attempts were made, classifies whether a retry is
//! safe, and adds a one-line hint where the fix is known. Messages never contain the
//! request URL (signed URLs are credentials) or any header.

use std::fmt;
use std::time::Duration;

/// What kind of failure this was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// The server answered with an error status and (usually) a Cloudflare envelope.
    Http,
    /// HTTP 200 with `success: false`.
    Failure,
    /// The body was not the JSON we expected (HTML error page, truncated body).
    Malformed,
    /// The request did not complete (connection refused, reset, DNS).
    Transport,
    /// No answer within the client timeout.
    Timeout,
}

/// A credential the API refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The token is invalid or lacks the permission.
    Token,
    /// The token has no access to the account, or the account id is wrong.
    Account,
}

/// A failed Cloudflare API call.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// What we were doing, e.g. `query on database "prod"`.
    pub operation: String,
    pub kind: ApiErrorKind,
    pub status: Option<u16>,
    pub code: Option<i64>,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub attempts: u32,
}

impl ApiError {
    pub fn new(operation: &str, kind: ApiErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            operation: operation.to_string(),
            kind,
            status: None,
            code: None,
            message: message.into(),
            retry_after: None,
            attempts: 1,
        }
    }

    /// D1 reports results too large to serialize this way; the caller should ask for less.
    pub fn is_memory_limit(&self) -> bool {
        self.message.contains("exceeded its memory limit")
    }

    /// The database is busy with an export or import.
    pub fn is_long_running_operation(&self) -> bool {
        self.message.contains("Currently processing a long-running")
    }

    /// Whether repeating an idempotent request may succeed.
    pub fn is_transient(&self) -> bool {
        if self.is_memory_limit() {
            return false;
        }
        match self.kind {
            ApiErrorKind::Transport | ApiErrorKind::Timeout | ApiErrorKind::Malformed => true,
            ApiErrorKind::Http => matches!(self.status, Some(408 | 429 | 500 | 502 | 503 | 504)),
            ApiErrorKind::Failure => transient_message(&self.message),
        }
    }

    /// Which credential the server refused, if that is what happened (the command layer
    /// says which setting to check).
    pub fn refused(&self) -> Option<Refused> {
        match (self.status, self.code) {
            (_, Some(10000)) | (Some(401), _) => Some(Refused::Token),
            (_, Some(7403)) => Some(Refused::Account),
            _ => None,
        }
    }

    /// A sentence on how to fix it, where known (credentials aside: see [`Self::refused`]).
    pub fn hint(&self) -> Option<&'static str> {
        match (self.status, self.code) {
            (_, Some(971)) | (Some(429), _) => Some(
                "the Cloudflare API rate limit (1,200 requests per 5 minutes per token) was hit; other jobs may share this token",
            ),
            _ if self.message.contains("free tier daily row read limit") => Some(
                "D1's free-tier daily read limit is used up; wait until 00:00 UTC or upgrade the plan",
            ),
            _ if self.is_long_running_operation() => Some(
                "an export or import is running on this database; wait for it to finish (D1 cannot cancel it)",
            ),
            _ => None,
        }
    }
}

fn transient_message(m: &str) -> bool {
    const PATTERNS: &[&str] = &[
        "reset because its code was updated",
        "Network connection lost",
        "transient issue",
        "overloaded",
        "internal error",
        "exceeded its CPU time limit",
        "try again",
        "Currently processing a long-running",
    ];
    PATTERNS.iter().any(|p| m.contains(p))
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: ", self.operation)?;
        match self.code {
            Some(code) => write!(f, "{code} {}", self.message)?,
            None => write!(f, "{}", self.message)?,
        }
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        if let Some(hint) = self.hint() {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: Option<i64>, msg: &str) -> ApiError {
        ApiError {
            status: Some(status),
            code,
            ..ApiError::new("query", ApiErrorKind::Http, msg)
        }
    }

    #[test]
    fn display_keeps_code_and_message() {
        let e = http(400, Some(7500), "no such table: x: SQLITE_ERROR");
        assert_eq!(
            e.to_string(),
            "query failed: 7500 no such table: x: SQLITE_ERROR (HTTP 400)"
        );
    }

    #[test]
    fn classification() {
        let cases = [
            (http(429, Some(971), "Please wait"), true),
            (http(500, Some(7500), "internal error; reference = x"), true),
            (http(502, None, "bad gateway"), true),
            (http(503, None, "unavailable"), true),
            (
                http(400, Some(7500), "no such table: x: SQLITE_ERROR"),
                false,
            ),
            (http(403, Some(10000), "Authentication error"), false),
            (http(404, Some(7404), "Not Found"), false),
            (
                http(
                    500,
                    Some(7500),
                    "D1 DB's isolate exceeded its memory limit and was reset.",
                ),
                false,
            ),
            (
                ApiError::new(
                    "q",
                    ApiErrorKind::Failure,
                    "D1 DB reset because its code was updated.",
                ),
                true,
            ),
            (
                ApiError::new("q", ApiErrorKind::Failure, "UNIQUE constraint failed"),
                false,
            ),
            (
                ApiError::new("q", ApiErrorKind::Transport, "connection reset"),
                true,
            ),
            (ApiError::new("q", ApiErrorKind::Timeout, "timed out"), true),
            (ApiError::new("q", ApiErrorKind::Malformed, "html"), true),
        ];
        for (e, transient) in cases {
            assert_eq!(e.is_transient(), transient, "{e}");
        }
    }

    #[test]
    fn refused_credentials_are_told_apart() {
        let cases = [
            (
                http(403, Some(10000), "Authentication error"),
                Some(Refused::Token),
            ),
            (http(401, None, "Unauthorized"), Some(Refused::Token)),
            (
                http(403, Some(7403), "The given account is not valid"),
                Some(Refused::Account),
            ),
            (http(400, Some(7500), "no such table"), None),
        ];
        for (e, want) in cases {
            assert_eq!(e.refused(), want, "{e}");
        }
    }
}
