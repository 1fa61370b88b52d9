//! Object keys, object metadata and the per-backup manifest.
//!
//! Key: `<prefix><database>/backup-YYYY-MM-DDTHH-mm-ss-sssZ.sql[.zst]` (the original Worker
//! design's timestamp form, UTC). After the object is complete, `<key>.manifest.json`
//! records everything known at the end (hashes, sizes, per-table rows, timings). A backup
//! without its manifest is incomplete: retention never counts it, verify refuses it.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Suffix of manifest objects.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// The timestamp as it appears in keys: `2026-11-28T09-15-26-123Z`.
pub fn key_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H-%M-%S-%3fZ").to_string()
}

/// RFC 3339 with milliseconds, UTC (`2026-11-28T09:15:26.123Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The directory of a database's backups: `<prefix><name>/`.
pub fn database_dir(prefix: &str, database: &str) -> String {
    format!("{prefix}{database}/")
}

/// The key of a backup taken at `t`.
pub fn backup_key(prefix: &str, database: &str, t: DateTime<Utc>, extension: &str) -> String {
    format!(
        "{}backup-{}{extension}",
        database_dir(prefix, database),
        key_timestamp(t)
    )
}

/// A backup object recognised from its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupKey {
    pub key: String,
    pub timestamp: DateTime<Utc>,
    /// `.sql`, `.sql.zst`, `.sql.zst.age`, …
    pub extension: String,
}

const EXTENSIONS: &[&str] = &[".sql.zst.age", ".sql.age", ".sql.zst", ".sql"];

/// Parse a key written by this tool for the database directory `dir` (`<prefix><name>/`).
/// Anything else — other files, other databases' keys, manifests — gives `None`.
pub fn parse_backup_key(dir: &str, key: &str) -> Option<BackupKey> {
    let name = key.strip_prefix(dir)?;
    let rest = name.strip_prefix("backup-")?;
    let ext = EXTENSIONS.iter().find(|e| rest.ends_with(*e))?;
    let stamp = &rest[..rest.len() - ext.len()];
    if stamp.len() != 24 {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H-%M-%S-%3fZ").ok()?;
    Some(BackupKey {
        key: key.to_string(),
        timestamp: naive.and_utc(),
        extension: ext.to_string(),
    })
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

/// What was selected for the dump.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DumpSelection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_tables: Vec<String>,
    #[serde(default)]
    pub no_data: bool,
    #[serde(default)]
    pub no_schema: bool,
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
    pub selection: DumpSelection,
    pub timings: Timings,
    #[serde(default)]
    pub requests: u64,
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

    /// The manifest's own key.
    pub fn key_for(object_key: &str) -> String {
        format!("{object_key}{MANIFEST_SUFFIX}")
    }

    /// The backup's timestamp.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.timestamp)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn key_naming_table() {
        let cases = [
            (
                "",
                "db",
                "2026-11-28T09:15:26.123Z",
                ".sql.zst",
                "db/backup-2026-11-28T09-15-26-123Z.sql.zst",
            ),
            (
                "backups/",
                "prod",
                "2026-01-02T03:04:05Z",
                ".sql",
                "backups/prod/backup-2026-01-02T03-04-05-000Z.sql",
            ),
            (
                "x-",
                "a_b",
                "1999-12-31T23:59:59.999Z",
                ".sql.zst.age",
                "x-a_b/backup-1999-12-31T23-59-59-999Z.sql.zst.age",
            ),
        ];
        for (prefix, db, time, ext, want) in cases {
            let key = backup_key(prefix, db, t(time), ext);
            assert_eq!(key, want);
            let parsed = parse_backup_key(&database_dir(prefix, db), &key).unwrap();
            assert_eq!(parsed.timestamp, t(time));
            assert_eq!(parsed.extension, ext);
        }
    }

    #[test]
    fn foreign_keys_are_not_backups() {
        let dir = "p/db/";
        for key in [
            "p/db/backup-2026-11-28T09-15-26-123Z.sql.zst.manifest.json",
            "p/db/notes.txt",
            "p/db/backup-2026-13-28T09-15-26-123Z.sql.zst",
            "p/db/backup-2026-11-28T09-15-26Z.sql.zst",
            "p/db/backup-2026-11-28T09-15-26-123Z.tar",
            "p/db2/backup-2026-11-28T09-15-26-123Z.sql.zst",
            "p/db/sub/backup-2026-11-28T09-15-26-123Z.sql.zst",
            "p/dbbackup-2026-11-28T09-15-26-123Z.sql.zst",
        ] {
            assert_eq!(parse_backup_key(dir, key), None, "{key}");
        }
    }
}
