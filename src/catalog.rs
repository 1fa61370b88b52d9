//! The backups of a database, as found in a store.
//!
//! Only objects this tool wrote count: keys `<prefix><database>/backup-<timestamp>.sql…`
//! (see [`crate::manifest::parse_backup_key`]). A backup is complete when its manifest
//! exists. Listing, `latest`, `--before` and retention all start from here; choosing a backup
//! is a pure function ([`pick`]).

use std::collections::HashSet;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::manifest::{self, MANIFEST_SUFFIX, Manifest};
use crate::store::ObjectStore;

/// Suffix of the verification report written next to a backup.
pub const VERIFY_SUFFIX: &str = ".verify.json";

/// One backup object found in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupEntry {
    pub key: String,
    pub time: DateTime<Utc>,
    pub size: u64,
    /// Its manifest exists.
    pub complete: bool,
}

/// The backups under `<prefix><database>/`, newest first.
pub async fn list_backups(
    store: &dyn ObjectStore,
    prefix: &str,
    database: &str,
) -> Result<Vec<BackupEntry>> {
    let dir = manifest::database_dir(prefix, database);
    let objects = store
        .list(&dir)
        .await
        .with_context(|| format!("listing backups under {dir:?}"))?;
    let manifests: HashSet<&str> = objects
        .iter()
        .filter_map(|o| o.key.strip_suffix(MANIFEST_SUFFIX))
        .collect();
    let mut out: Vec<BackupEntry> = objects
        .iter()
        .filter_map(|o| {
            let parsed = manifest::parse_backup_key(&dir, &o.key)?;
            Some(BackupEntry {
                key: o.key.clone(),
                time: parsed.timestamp,
                size: o.size,
                complete: manifests.contains(o.key.as_str()),
            })
        })
        .collect();
    out.sort_by(|a, b| b.time.cmp(&a.time).then(b.key.cmp(&a.key)));
    Ok(out)
}

/// Which backup a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Key(String),
    /// The newest complete backup at or before this time.
    Before(DateTime<Utc>),
}

impl Selector {
    /// From a `backup-key` value (`latest` or a key) and an optional `before` time.
    pub fn new(key: Option<&str>, before: Option<DateTime<Utc>>) -> Selector {
        match (key, before) {
            (_, Some(t)) => Selector::Before(t),
            (None | Some("latest"), None) => Selector::Latest,
            (Some(k), None) => Selector::Key(k.to_string()),
        }
    }
}

/// Choose a complete backup from entries sorted newest first.
pub fn pick<'a>(entries: &'a [BackupEntry], selector: &Selector) -> Option<&'a BackupEntry> {
    let complete = entries.iter().filter(|e| e.complete);
    match selector {
        Selector::Latest => complete.max_by_key(|e| e.time),
        Selector::Key(k) => entries.iter().find(|e| &e.key == k),
        Selector::Before(t) => complete.filter(|e| e.time <= *t).max_by_key(|e| e.time),
    }
}

/// Read a backup's manifest.
pub async fn read_manifest(store: &dyn ObjectStore, key: &str) -> Result<Manifest> {
    let mkey = Manifest::key_for(key);
    if store.head(&mkey).await?.is_none() {
        bail!(
            "backup {key:?} has no manifest ({mkey}): it is incomplete (an interrupted upload) and cannot be trusted"
        );
    }
    let text = read_small(store, &mkey).await?;
    serde_json::from_slice(&text).with_context(|| format!("{mkey} is not a d1-backup manifest"))
}

/// Read a small object (a manifest, a report) whole.
pub async fn read_small(store: &dyn ObjectStore, key: &str) -> Result<Vec<u8>> {
    let mut body = store.get(key).await?;
    let mut out = Vec::new();
    body.read_to_end(&mut out)
        .await
        .with_context(|| format!("reading {key}"))?;
    Ok(out)
}

/// Parse a `before` time: RFC 3339, or a date (`2026-11-28`, meaning the end of that day).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Some(t.with_timezone(&Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    d.and_hms_milli_opt(23, 59, 59, 999).map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn entry(time: &str, complete: bool) -> BackupEntry {
        BackupEntry {
            key: format!("db/backup-{time}.sql.zst"),
            time: t(time),
            size: 1,
            complete,
        }
    }

    #[test]
    fn picking_backups() {
        let entries = vec![
            entry("2026-11-28T12:00:00Z", false),
            entry("2026-11-28T06:00:00Z", true),
            entry("2026-11-27T06:00:00Z", true),
            entry("2026-11-26T06:00:00Z", true),
        ];
        let key = |e: Option<&BackupEntry>| e.map(|e| e.time.to_rfc3339());
        let cases = [
            (Selector::Latest, Some("2026-11-28T06:00:00+00:00")),
            (
                Selector::Before(t("2026-11-28T05:59:59Z")),
                Some("2026-11-27T06:00:00+00:00"),
            ),
            (
                Selector::Before(t("2026-11-27T06:00:00Z")),
                Some("2026-11-27T06:00:00+00:00"),
            ),
            (
                Selector::Before(t("2026-11-28T13:00:00Z")),
                Some("2026-11-28T06:00:00+00:00"),
            ),
            (Selector::Before(t("2026-11-01T00:00:00Z")), None),
            (
                Selector::Key(entries[3].key.clone()),
                Some("2026-11-26T06:00:00+00:00"),
            ),
            (Selector::Key("db/other".into()), None),
        ];
        for (sel, want) in cases {
            assert_eq!(key(pick(&entries, &sel)).as_deref(), want, "{sel:?}");
        }
        assert_eq!(
            pick(&[entry("2026-11-28T12:00:00Z", false)], &Selector::Latest),
            None
        );
    }

    #[test]
    fn selectors_and_times() {
        assert_eq!(Selector::new(None, None), Selector::Latest);
        assert_eq!(Selector::new(Some("latest"), None), Selector::Latest);
        assert_eq!(Selector::new(Some("k"), None), Selector::Key("k".into()));
        assert_eq!(
            parse_time("2026-11-28"),
            Some(t("2026-11-28T23:59:59.999Z"))
        );
        assert_eq!(
            parse_time("2026-11-28T10:00:00+02:00"),
            Some(t("2026-11-28T08:00:00Z"))
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
