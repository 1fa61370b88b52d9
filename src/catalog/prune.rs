//! Carrying out a retention plan on a store, and listing a database's backups.
//!
//! The policy itself is pure ([`crate::retention`]); this module lists what the tool wrote
//! for one database (nothing else in the bucket is ever considered), applies the plan, and
//! deletes in batches — each deleted backup's manifest before its object (a crash leaves an
//! incomplete backup that a later run removes, never a manifest without data), plus its
//! verification report. Per-key failures (an R2 bucket lock, for instance) are reported and
//! the rest continues. Multipart uploads of the database that were abandoned more than a day
//! ago are aborted.

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::catalog::{self, BackupEntry};
use crate::encrypt::{self, Identities};
use crate::keys;
use crate::retention::{self, Action, Entry, Plan, Policy};
use crate::sign::VerifyKeys;
use crate::store::{DeleteFailure, ObjectStore};
use crate::util::log;

/// What a prune did (or, on a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct PruneOutcome {
    pub plan: Plan,
    pub dry_run: bool,
    /// Backup objects removed (their manifests and reports went with them).
    pub deleted: Vec<String>,
    pub failures: Vec<DeleteFailure>,
    pub aborted_uploads: usize,
}

impl PruneOutcome {
    pub fn kept(&self) -> usize {
        self.plan.kept()
    }
}

/// Apply `policy` to the backups of `database` under `prefix`. `written`: the backup this
/// run has just written, which it never deletes.
#[allow(clippy::too_many_arguments)]
pub async fn prune(
    store: &dyn ObjectStore,
    prefix: &str,
    database: &str,
    policy: &Policy,
    now: DateTime<Utc>,
    current_run_failed: bool,
    dry_run: bool,
    written: Option<&str>,
) -> Result<PruneOutcome> {
    let entries = catalog::list_backups(store, prefix, database).await?;
    let plan = retention::plan(
        policy,
        &entries
            .iter()
            .map(|e| Entry {
                key: e.key.clone(),
                time: e.time,
                complete: e.complete,
                held: e.held.clone(),
            })
            .collect::<Vec<_>>(),
        now,
        current_run_failed,
        written,
    );
    if let Some(hold) = &plan.hold {
        log::info(format!("Retention: deleting nothing ({hold})"));
    }
    let mut outcome = PruneOutcome {
        plan,
        dry_run,
        deleted: Vec::new(),
        failures: Vec::new(),
        aborted_uploads: 0,
    };
    let doomed: Vec<&retention::Decision> = outcome
        .plan
        .decisions
        .iter()
        .filter(|d| d.action == Action::Delete)
        .collect();
    for d in &outcome.plan.decisions {
        let verb = match (d.action, dry_run) {
            (Action::Keep, _) => "keep",
            (Action::Delete, true) => "would delete",
            (Action::Delete, false) => "delete",
            (Action::Ignore, _) => "leave",
        };
        log::info(format!("{verb:>12} {} ({})", d.key, d.reasons.join(", ")));
    }
    if dry_run || doomed.is_empty() {
        return Ok(outcome);
    }
    let keys = outcome.plan.delete_keys();
    let failures = store.delete(&keys).await?;
    for f in &failures {
        log::warn(format!(
            "could not delete {}: {} (an R2 bucket lock rule may protect it; it is kept)",
            f.key, f.message
        ));
    }
    outcome.deleted = doomed
        .iter()
        .map(|d| d.key.clone())
        .filter(|k| !failures.iter().any(|f| &f.key == k))
        .collect();
    outcome.failures = failures;
    let dir = keys::database_dir(prefix, database);
    match store
        .abort_stale_uploads(&dir, now - Duration::days(1))
        .await
    {
        Ok(n) => outcome.aborted_uploads = n,
        Err(e) => log::warn(format!("could not clean up abandoned uploads: {e:#}")),
    }
    Ok(outcome)
}

/// A backup as `list` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    #[serde(flatten)]
    pub entry: BackupEntry,
    pub sql_bytes: Option<u64>,
    pub tables: Option<usize>,
    pub rows: Option<u64>,
    pub method: Option<String>,
    pub verified: Option<bool>,
    /// The Time Travel bookmark the backup corresponds to (D1 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bookmark: Option<String>,
    /// `age` for an encrypted backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// For an encrypted backup listed with an identity: whether the identity opens it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decryptable: Option<bool>,
    /// Listed with trusted keys: `valid`, or why the manifest's signature is not accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Listed {
    /// Listed with trusted keys, and its signature is not accepted.
    pub fn untrusted(&self) -> bool {
        self.signature
            .as_deref()
            .is_some_and(|s| s != SIGNATURE_VALID)
    }
}

/// [`Listed::signature`] of a backup whose signature is accepted.
pub const SIGNATURE_VALID: &str = "valid";

/// The backups of `database` with what their manifests and reports say, newest first.
/// With `identities`, each encrypted backup is checked to open with them; with `trusted`,
/// each complete backup's signature is checked.
pub async fn list(
    store: &dyn ObjectStore,
    prefix: &str,
    database: &str,
    identities: Option<&Identities>,
    trusted: Option<&VerifyKeys>,
) -> Result<Vec<Listed>> {
    let entries = catalog::list_backups(store, prefix, database).await?;
    let all_keys: std::collections::HashSet<String> = store
        .list(&keys::database_dir(prefix, database))
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let (m, signature) = if e.complete {
            match catalog::read_manifest_checked(store, &e.key, trusted).await {
                Ok(m) => (Some(m), trusted.map(|_| SIGNATURE_VALID.to_string())),
                Err(err) => match err.downcast_ref::<catalog::Untrusted>() {
                    Some(u) => (None, Some(u.problem.to_string())),
                    None => (None, None),
                },
            }
        } else {
            (None, None)
        };
        let verified = if all_keys.contains(&keys::verify_key(&e.key)) {
            read_verified(store, &e.key).await
        } else {
            None
        };
        let encryption = m.as_ref().and_then(|m| m.encryption.clone());
        let decryptable = match (&encryption, identities) {
            (Some(_), Some(ids)) => Some(opens(store, &e.key, ids).await),
            _ => None,
        };
        out.push(Listed {
            encryption,
            decryptable,
            sql_bytes: m.as_ref().map(|m| m.sql.size),
            tables: m.as_ref().map(|m| m.table_count),
            rows: m.as_ref().map(|m| m.row_count),
            bookmark: m.as_ref().and_then(|m| m.bookmark.clone()),
            method: m.map(|m| m.method),
            verified,
            signature,
            entry: e,
        });
    }
    Ok(out)
}

/// Whether `ids` decrypt the stored object `key` (reads only its first bytes).
async fn opens(store: &dyn ObjectStore, key: &str, ids: &Identities) -> bool {
    use tokio::io::AsyncReadExt;
    let head = async {
        let mut head = Vec::with_capacity(encrypt::HEAD_BYTES);
        store
            .get(key)
            .await?
            .take(encrypt::HEAD_BYTES as u64)
            .read_to_end(&mut head)
            .await?;
        anyhow::Ok(head)
    };
    match head.await {
        Ok(head) => match ids.check_head(&head) {
            Ok(()) => true,
            Err(err) => {
                log::warn(format!("{key}: {err:#}"));
                false
            }
        },
        Err(err) => {
            log::warn(format!("{key}: reading it failed: {err:#}"));
            false
        }
    }
}

async fn read_verified(store: &dyn ObjectStore, key: &str) -> Option<bool> {
    let bytes = catalog::read_small(store, &keys::verify_key(key))
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["verified"].as_bool()
}

/// The human table of `list`.
pub fn table(items: &[Listed]) -> String {
    let mut s = format!(
        "{:<62} {:>12} {:>12} {:>7} {:>11} {:<9} {:<9} {}\n",
        "KEY", "STORED", "SQL", "TABLES", "ROWS", "COMPLETE", "VERIFIED", "ENCRYPTED"
    );
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for i in items {
        s.push_str(&format!(
            "{:<62} {:>12} {:>12} {:>7} {:>11} {:<9} {:<9} {}\n",
            i.entry.key,
            crate::util::progress::human_bytes(i.entry.size),
            opt(i.sql_bytes.map(crate::util::progress::human_bytes)),
            opt(i.tables.map(|t| t.to_string())),
            opt(i.rows.map(|r| r.to_string())),
            if i.entry.complete { "yes" } else { "NO" },
            opt(i
                .verified
                .map(|v| if v { "yes".into() } else { "FAILED".into() })),
            match (&i.encryption, i.decryptable) {
                (None, _) => "no".to_string(),
                (Some(e), None) => e.clone(),
                (Some(e), Some(true)) => format!("{e} (identity opens it)"),
                (Some(e), Some(false)) => format!("{e} (NOT with this identity)"),
            }
        ));
        if let Some(sig) = &i.signature {
            s.pop();
            s.push_str(&format!("  signature: {sig}\n"));
        }
    }
    s
}
