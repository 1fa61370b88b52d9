//! The backups of a database, as found in a store.
//!
//! Only objects this tool wrote count: keys `<prefix><database>/backup-<timestamp>.sql…`
//! (see [`crate::keys::parse_backup_key`]). The store is untrusted: a backup is complete
//! only when its manifest is there, parses (read with a size cap), and names this very key,
//! this database and the key's timestamp — a file that merely has the right name proves
//! nothing. A manifest that exists but does not check out holds its backup (never counted,
//! never deleted), and so does a backup dated more than a day in the future (a planted or
//! clock-skewed entry must not become `latest` or push real backups out of retention).
//! Listing, `latest`, `--before` and retention all start from here; choosing a backup is a
//! pure function ([`pick`]).

pub(crate) mod current;
pub(crate) mod fresh;
pub(crate) mod prune;

use std::collections::HashSet;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::keys::{self, MANIFEST_SUFFIX};
use crate::manifest::Manifest;
use crate::sign::{SignatureProblem, VerifyKeys};
use crate::store::ObjectStore;

/// One backup object found in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupEntry {
    pub key: String,
    pub time: DateTime<Utc>,
    pub size: u64,
    /// Its manifest exists, parses and names this key, database and time.
    pub complete: bool,
    /// Why the backup is held (neither used nor deleted): its manifest exists but does not
    /// check out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// Manifests and reports are small; anything larger is not one of ours.
pub const MAX_SMALL_OBJECT: u64 = 1 << 20;

/// The backups under `<prefix><database>/`, newest first, each manifest checked (read
/// eight at a time).
pub async fn list_backups(
    store: &dyn ObjectStore,
    prefix: &str,
    database: &str,
) -> Result<Vec<BackupEntry>> {
    use futures::StreamExt;
    let dir = keys::database_dir(prefix, database);
    let objects = store
        .list(&dir)
        .await
        .with_context(|| format!("listing backups under {dir:?}"))?;
    let manifests: HashSet<&str> = objects
        .iter()
        .filter_map(|o| o.key.strip_suffix(MANIFEST_SUFFIX))
        .collect();
    let candidates: Vec<(String, DateTime<Utc>, u64, bool)> = objects
        .iter()
        .filter_map(|o| {
            let parsed = keys::parse_backup_key(&dir, &o.key)?;
            Some((
                o.key.clone(),
                parsed.timestamp,
                o.size,
                manifests.contains(o.key.as_str()),
            ))
        })
        .collect();
    let mut out: Vec<BackupEntry> = futures::stream::iter(candidates)
        .map(|(key, time, size, has_manifest)| async move {
            let checked = if has_manifest {
                Some(
                    read_manifest(store, &key)
                        .await
                        .and_then(|m| check_manifest(&m, &key, database, time)),
                )
            } else {
                None
            };
            let (complete, held) = match checked {
                None => (false, None),
                Some(Ok(())) => (true, None),
                Some(Err(e)) => (
                    false,
                    Some(format!("its manifest does not check out: {e:#}")),
                ),
            };
            BackupEntry {
                key,
                time,
                size,
                complete,
                held,
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    out.sort_by(|a, b| b.time.cmp(&a.time).then(b.key.cmp(&a.key)));
    Ok(out)
}

/// A manifest vouches for a backup only when it names that key, its database and its time.
pub fn check_manifest(m: &Manifest, key: &str, database: &str, time: DateTime<Utc>) -> Result<()> {
    if m.key != key {
        bail!("it names another backup ({:?})", m.key);
    }
    if keys::sanitize_name(&m.database.name) != database {
        bail!("it names another database ({:?})", m.database.name);
    }
    if m.time() != Some(time) {
        bail!(
            "its time ({:?}) is not the time in the key ({})",
            m.timestamp,
            crate::manifest::rfc3339(time)
        );
    }
    Ok(())
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

/// Choose a complete backup from entries sorted newest first. Backups dated more than a day
/// after `now` are never `latest` nor picked by `--before`.
pub fn pick<'a>(
    entries: &'a [BackupEntry],
    selector: &Selector,
    now: DateTime<Utc>,
) -> Option<&'a BackupEntry> {
    let limit = crate::retention::future_limit(now);
    let complete = entries.iter().filter(|e| e.complete && e.time <= limit);
    match selector {
        Selector::Latest => complete.max_by_key(|e| e.time),
        Selector::Key(k) => entries.iter().find(|e| &e.key == k),
        Selector::Before(t) => complete.filter(|e| e.time <= *t).max_by_key(|e| e.time),
    }
}

/// Read a backup's manifest; it must name this very key.
pub async fn read_manifest(store: &dyn ObjectStore, key: &str) -> Result<Manifest> {
    Ok(read_manifest_bytes(store, key).await?.0)
}

/// Read a backup's manifest and, with `trusted` keys, check its signature first: a backup
/// whose manifest is unsigned, signed by another key or changed after signing is refused.
pub async fn read_manifest_checked(
    store: &dyn ObjectStore,
    key: &str,
    trusted: Option<&VerifyKeys>,
) -> Result<Manifest> {
    let (m, bytes) = read_manifest_bytes(store, key).await?;
    if let Some(trusted) = trusted {
        check_signature(store, key, &bytes, trusted)
            .await
            .map_err(|problem| Untrusted {
                key: key.to_string(),
                problem,
            })?;
    }
    Ok(m)
}

/// A backup whose manifest's signature is not accepted.
#[derive(Debug, thiserror::Error)]
#[error("backup {key:?} is refused: {problem}; only backups signed by a trusted key are read")]
pub struct Untrusted {
    pub key: String,
    pub problem: SignatureProblem,
}

/// Checks the stored signature of the manifest `bytes` of backup `key` against `trusted`.
pub async fn check_signature(
    store: &dyn ObjectStore,
    key: &str,
    bytes: &[u8],
    trusted: &VerifyKeys,
) -> Result<(), SignatureProblem> {
    let skey = keys::signature_key(key);
    let sig = match store.head(&skey).await {
        Ok(None) => None,
        Ok(Some(_)) => Some(
            read_small(store, &skey)
                .await
                .map_err(|e| SignatureProblem::Invalid(format!("reading {skey} failed: {e:#}")))?,
        ),
        Err(e) => {
            return Err(SignatureProblem::Invalid(format!(
                "looking for {skey} failed: {e:#}"
            )));
        }
    };
    trusted.verify(bytes, sig.as_deref())
}

/// The manifest of `key` and its exact stored bytes (what a signature covers).
async fn read_manifest_bytes(store: &dyn ObjectStore, key: &str) -> Result<(Manifest, Vec<u8>)> {
    let mkey = keys::manifest_key(key);
    if store.head(&mkey).await?.is_none() {
        bail!(
            "backup {key:?} has no manifest ({mkey}): it is incomplete (an interrupted upload) and cannot be trusted"
        );
    }
    let text = read_small(store, &mkey).await?;
    let m: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{mkey} is not a d1-backup manifest"))?;
    if m.key != key {
        bail!(
            "{mkey} names another backup ({:?}); it is not this backup's manifest and is not trusted",
            m.key
        );
    }
    Ok((m, text))
}

/// Read a small object (a manifest, a report) whole, refusing one over
/// [`MAX_SMALL_OBJECT`] bytes.
pub async fn read_small(store: &dyn ObjectStore, key: &str) -> Result<Vec<u8>> {
    let body = store.get(key).await?;
    let mut out = Vec::new();
    body.take(MAX_SMALL_OBJECT + 1)
        .read_to_end(&mut out)
        .await
        .with_context(|| format!("reading {key}"))?;
    if out.len() as u64 > MAX_SMALL_OBJECT {
        bail!("{key} is over {MAX_SMALL_OBJECT} bytes; it is not one of d1-backup's small files");
    }
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
            held: None,
        }
    }

    const NOW: &str = "2026-11-28T13:00:00Z";

    #[test]
    fn picking_backups() {
        let entries = vec![
            entry("2099-01-01T00:00:00Z", true),
            entry("2026-11-29T14:00:00Z", true),
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
            // Never a future-dated backup, whatever `before` says.
            (
                Selector::Before(t("2100-01-01T00:00:00Z")),
                Some("2026-11-28T06:00:00+00:00"),
            ),
            (
                Selector::Key(entries[5].key.clone()),
                Some("2026-11-26T06:00:00+00:00"),
            ),
            (Selector::Key("db/other".into()), None),
        ];
        for (sel, want) in cases {
            assert_eq!(
                key(pick(&entries, &sel, t(NOW))).as_deref(),
                want,
                "{sel:?}"
            );
        }
        assert_eq!(
            pick(
                &[entry("2026-11-28T12:00:00Z", false)],
                &Selector::Latest,
                t(NOW)
            ),
            None
        );
        // Less than a day ahead (a slightly fast clock) still counts.
        assert_eq!(
            key(pick(
                &[entry("2026-11-29T12:00:00Z", true)],
                &Selector::Latest,
                t(NOW)
            ))
            .as_deref(),
            Some("2026-11-29T12:00:00+00:00")
        );
    }

    fn manifest(key: &str, name: &str, time: &str) -> Manifest {
        Manifest {
            key: key.into(),
            database: crate::manifest::DatabaseRef {
                id: "id".into(),
                name: name.into(),
                source: "d1".into(),
            },
            timestamp: time.into(),
            ..Manifest::default()
        }
    }

    #[test]
    fn manifests_vouch_only_for_their_own_backup() {
        let key = "p/app-db/backup-2026-11-28T06-00-00-000Z.sql.zst";
        let time = t("2026-11-28T06:00:00Z");
        let cases = [
            (manifest(key, "app db", "2026-11-28T06:00:00.000Z"), true),
            (
                manifest(
                    "p/app-db/backup-2026-11-27T06-00-00-000Z.sql.zst",
                    "app db",
                    "2026-11-28T06:00:00.000Z",
                ),
                false,
            ),
            (manifest(key, "other", "2026-11-28T06:00:00.000Z"), false),
            (manifest(key, "app db", "2099-01-01T00:00:00.000Z"), false),
            (manifest(key, "app db", "not a time"), false),
        ];
        for (m, ok) in cases {
            assert_eq!(check_manifest(&m, key, "app-db", time).is_ok(), ok, "{m:?}");
        }
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
