//! Wire types of the Cloudflare API: the envelope, D1 results, and SQLite values as D1
//! encodes them in JSON.
//!
//! D1 sends every number through a JavaScript double (so `9223372036854775807` arrives as
//! `9223372036854776000` and `1.0` as `1`) and BLOBs as arrays of byte numbers.
//! [`crate::rows::Value`]
//! decodes whatever arrives without failing; exact data never depends on it, because the
//! dumper selects SQL literals (`quote()`), which arrive as strings.

use serde::{Deserialize, Serialize};

use crate::rows::Value;

/// The Cloudflare response envelope.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub errors: Vec<ApiMessage>,
    #[serde(default)]
    pub messages: Vec<serde_json::Value>,
    pub result: Option<T>,
    #[serde(default)]
    pub result_info: Option<ResultInfo>,
}

/// One entry of `errors` / `messages`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ApiMessage {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: String,
}

/// Pagination of collection endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResultInfo {
    #[serde(default)]
    pub page: Option<u64>,
    #[serde(default)]
    pub per_page: Option<u64>,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub total_count: Option<u64>,
    #[serde(default)]
    pub total_pages: Option<u64>,
}

/// `GET /user/tokens/verify`.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
}

/// A D1 database as listed or described.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct DatabaseInfo {
    pub uuid: String,
    pub name: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub num_tables: Option<u64>,
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// One statement's result from `/raw`.
#[derive(Debug, Deserialize)]
pub struct RawResult {
    #[serde(default)]
    pub results: Option<RawResults>,
    #[serde(default)]
    pub success: Option<bool>,
    #[serde(default)]
    pub meta: Option<RawMeta>,
}

impl RawResult {
    /// Rows D1 read (scanned, and billed) for this statement.
    pub fn rows_read(&self) -> u64 {
        self.meta
            .as_ref()
            .and_then(|m| m.rows_read)
            .map_or(0, |n| n.max(0.0) as u64)
    }
}

/// The part of a statement's `meta` that is used: what D1 bills.
#[derive(Debug, Default, Deserialize)]
pub struct RawMeta {
    #[serde(default)]
    pub rows_read: Option<f64>,
}

/// Columns and rows of a `/raw` result. Both may be missing on an empty result.
#[derive(Debug, Default, Deserialize)]
pub struct RawResults {
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub rows: Vec<Vec<Value>>,
}

/// `GET …/time_travel/bookmark`.
#[derive(Debug, Deserialize)]
pub struct BookmarkResult {
    pub bookmark: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_results_tolerate_missing_fields() {
        let r: RawResult = serde_json::from_str(r#"{"success":true,"meta":{}}"#).unwrap();
        assert!(r.results.is_none());
        let r: RawResult =
            serde_json::from_str(r#"{"results":{"columns":["a"]},"success":true}"#).unwrap();
        assert_eq!(r.results.unwrap().rows.len(), 0);
    }
}
