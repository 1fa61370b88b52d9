//! The key layout: where a backup, its manifest and its verification report live in a store.
//!
//! Key: `<prefix><database>/backup-YYYY-MM-DDTHH-mm-ss-sssZ.sql[.zst][.age]` (the original
//! Worker design's timestamp form, UTC); beside it `<key>.manifest.json` and
//! `<key>.verify.json`, and with signing `<key>.manifest.json.sig`. Every key the tool writes or recognises is built or parsed here.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Suffix of manifest objects.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Suffix of a manifest's signature, after the manifest's own key.
pub const SIGNATURE_SUFFIX: &str = ".sig";

/// Suffix of the verification report written next to a backup.
pub const VERIFY_SUFFIX: &str = ".verify.json";

/// The timestamp as it appears in keys: `2026-11-28T09-15-26-123Z`.
pub fn key_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H-%M-%S-%3fZ").to_string()
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

/// The key of the manifest of the backup `object_key`.
pub fn manifest_key(object_key: &str) -> String {
    format!("{object_key}{MANIFEST_SUFFIX}")
}

/// The key of the signature of the manifest of the backup `object_key`
/// (`<key>.manifest.json.sig`).
pub fn signature_key(object_key: &str) -> String {
    format!("{}{SIGNATURE_SUFFIX}", manifest_key(object_key))
}

/// The key of the verification report of the backup `object_key`.
pub fn verify_key(object_key: &str) -> String {
    format!("{object_key}{VERIFY_SUFFIX}")
}

/// Make a string usable as a key segment: letters, digits, `.`, `_`, `-`.
pub fn sanitize_name(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let out = out.trim_matches('.').to_string();
    if out.is_empty() {
        "database".to_string()
    } else {
        out
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

    #[test]
    fn companions_sit_beside_the_backup() {
        let key = "p/db/backup-2026-11-28T09-15-26-123Z.sql.zst";
        assert_eq!(manifest_key(key), format!("{key}.manifest.json"));
        assert_eq!(verify_key(key), format!("{key}.verify.json"));
        assert_eq!(signature_key(key), format!("{key}.manifest.json.sig"));
        assert_eq!(parse_backup_key("p/db/", &signature_key(key)), None);
        assert_eq!(parse_backup_key("p/db/", &manifest_key(key)), None);
        assert_eq!(parse_backup_key("p/db/", &verify_key(key)), None);
    }
}
