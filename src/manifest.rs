//! The per-backup manifest: what a backup records.
//!
//! After the object is complete, its manifest (key: [`crate::keys::manifest_key`]) records
//! everything known at the end (hashes, sizes, per-table rows, timings). A backup without its
//! manifest is incomplete: retention never counts it, verify refuses it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// RFC 3339 with milliseconds, UTC (`2026-11-28T09:15:26.123Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Size and SHA-256 of a byte stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Digest {
    pub size: u64,
    pub sha256: String,
}

/// Which database a backup is of.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseRef {
    pub id: String,
    pub name: String,
    /// `d1` or `sqlite`.
    pub source: String,
}

/// Timings of a run, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    pub started_at: String,
    pub finished_at: String,
    pub total_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_seconds: Option<f64>,
}

/// What goes into a dump (and what a manifest records of it): which tables, and whether the
/// rows or the schema are left out. Table names match case-insensitively.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Selection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_tables: Vec<String>,
    #[serde(default)]
    pub no_data: bool,
    #[serde(default)]
    pub no_schema: bool,
}

impl Selection {
    /// Whether a table filter is set.
    pub fn filters(&self) -> bool {
        self.tables.is_some() || !self.exclude_tables.is_empty()
    }

    /// Whether the table `name` is kept.
    pub fn keeps(&self, name: &str) -> bool {
        let hit = |list: &[String]| list.iter().any(|n| n.eq_ignore_ascii_case(name));
        self.tables.as_ref().is_none_or(|inc| hit(inc)) && !hit(&self.exclude_tables)
    }

    /// Names of `tables` and `exclude_tables` that are not among `known` (lower-case
    /// table names), each with whether it came from `tables` (true) or `exclude_tables`.
    pub fn unknown(&self, known: &std::collections::HashSet<String>) -> Vec<(String, bool)> {
        let included = self.tables.iter().flatten().map(|n| (n, true));
        let excluded = self.exclude_tables.iter().map(|n| (n, false));
        included
            .chain(excluded)
            .filter(|(n, _)| !known.contains(&n.to_ascii_lowercase()))
            .map(|(n, inc)| (n.clone(), inc))
            .collect()
    }
}

/// Per-table result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableStats {
    pub name: String,
    /// `table` or `virtual`.
    pub kind: String,
    pub rows: u64,
}

/// The manifest stored next to every complete backup.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub tool: String,
    pub tool_version: String,
    pub key: String,
    pub database: DatabaseRef,
    pub timestamp: String,
    pub method: String,
    pub compression: String,
    pub compression_level: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// The public keys an encrypted backup was encrypted for (never secret keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    pub object: Digest,
    pub sql: Digest,
    pub table_count: usize,
    pub row_count: u64,
    pub tables: Vec<TableStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bookmark: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent: Option<bool>,
    #[serde(default)]
    pub selection: Selection,
    pub timings: Timings,
    #[serde(default)]
    pub requests: u64,
    /// Rows D1 read (and billed) for this backup, over every request (D1 sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_read: Option<u64>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Set when the stored SQL is not in the order D1's export wrote it (see
    /// [`crate::dump::export`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reordered: Option<Reordered>,
}

/// How the stored SQL differs in order from what D1 served.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reordered {
    /// What was moved, in words.
    pub how: String,
    /// The tables whose `CREATE TABLE` statements were moved.
    pub tables: Vec<String>,
}

impl Manifest {
    pub const FORMAT: u32 = 1;

    /// The backup's timestamp.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.timestamp)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}
