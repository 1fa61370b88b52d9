//! Verifying a backup by restoring it, and the restore to a file that both commands share.
//!
//! The object is downloaded into a private scratch file and its size and SHA-256 checked
//! against the manifest before anything else happens ([`crate::read::stored`]); then it is
//! decrypted when it is encrypted (see [`crate::read::codec`]; without the identity only the stored
//! bytes can be checked, and the report says so), decompressed with the SQL capped at the
//! manifest's size and hashed again, and loaded into a SQLite file the way D1 imports it
//! (foreign keys enforced, deferred to the end; statements of at most 100,000 bytes; no
//! ATTACH; the database capped at a few times the SQL's size — see [`crate::read::load`]). Then
//! `PRAGMA integrity_check` and a row count per table against the manifest. (No
//! `PRAGMA foreign_key_check`: the load enforces foreign keys and its `COMMIT` fails on any
//! violation, so after a load that committed the check can only find none.) Memory stays flat: every stage streams, and the database lives on disk.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::encrypt::Identities;
use crate::keys;
use crate::manifest::{Manifest, TableStats, rfc3339};
use crate::read::codec;
use crate::read::load::{LoadRules, load};
use crate::read::stored;
use crate::sqltext::quote_ident;
use crate::store::{ObjectMeta, ObjectStore};

/// A table's row count, restored against recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCheck {
    pub name: String,
    pub expected: u64,
    pub found: Option<u64>,
}

impl TableCheck {
    /// Compare the rows `found` in a restored database (`None`: the table is missing) with
    /// what the manifest recorded. Verify and the D1 restore both judge a table this way.
    pub fn new(recorded: &TableStats, found: Option<u64>) -> TableCheck {
        TableCheck {
            name: recorded.name.clone(),
            expected: recorded.rows,
            found,
        }
    }

    pub fn ok(&self) -> bool {
        self.found == Some(self.expected)
    }

    /// What is wrong with the table, if anything.
    pub fn problem(&self) -> Option<String> {
        match self.found {
            _ if self.ok() => None,
            Some(n) => Some(format!(
                "table {:?}: {n} rows restored, the manifest says {}",
                self.name, self.expected
            )),
            None => Some(format!(
                "table {:?}: missing from the restored database",
                self.name
            )),
        }
    }

    /// The statement that counts a table's rows.
    pub fn count_sql(table: &str) -> String {
        format!("SELECT count(*) FROM {}", quote_ident(table))
    }
}

/// The outcome of loading a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub key: String,
    pub verified: bool,
    pub checked_at: String,
    /// What was checked, in words (for the summary and the log).
    pub checks: Vec<String>,
    /// Everything that did not match; empty when verified.
    pub problems: Vec<String>,
    pub tables: Vec<TableCheck>,
    pub statements: u64,
    pub duration_ms: u64,
    /// Only the stored bytes were checked (an encrypted backup verified without its identity).
    #[serde(default)]
    pub object_only: bool,
}

/// The database a backup loads into may not grow past this many times its SQL (indexes
/// make a database larger than its dump), nor past [`MIN_DB_BOUND`] for small dumps.
const DB_BOUND_FACTOR: u64 = 4;
const MIN_DB_BOUND: u64 = 64 << 20;

/// Load `manifest`'s backup into a new SQLite database at `db_path` and check it. The object
/// is downloaded and its size and SHA-256 checked before a single statement runs
/// ([`stored::fetch`]). Returns the report (with `verified: false` and the problems when
/// anything differs).
pub async fn load_backup(
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    db_path: &Path,
    identities: Option<Arc<Identities>>,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let mut report = VerifyReport {
        key: manifest.key.clone(),
        checked_at: rfc3339(chrono::Utc::now()),
        ..VerifyReport::default()
    };
    let spooled = match stored::fetch(store.as_ref(), manifest).await? {
        stored::Fetched::Mismatch(problem) => {
            report.problems.push(problem);
            report.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        stored::Fetched::Intact(s) => s,
    };
    report.checks.push(format!(
        "object: {} bytes, SHA-256 matches the manifest (checked before anything was loaded)",
        manifest.object.size
    ));
    let path = db_path.to_path_buf();
    let mut report = tokio::task::spawn_blocking(move || {
        load_blocking(&spooled, &path, identities.as_deref(), report)
    })
    .await
    .context("verification thread failed")??;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

fn load_blocking(
    spooled: &stored::Spooled,
    path: &Path,
    identities: Option<&Identities>,
    mut report: VerifyReport,
) -> Result<VerifyReport> {
    let m = spooled.manifest();
    // Data-only backups need a schema to load into, and an encrypted backup needs its
    // identity: without them only the stored bytes can be checked.
    let object_only = codec::is_encrypted(m) && identities.is_none();
    if object_only {
        report.object_only = true;
        report.checks.push(
            "encrypted backup and no identity given: checked the stored object's size and SHA-256 only (verify with the identity to restore-test it)".into(),
        );
    } else if m.selection.no_schema {
        report
            .checks
            .push("data-only backup: checked its bytes, not loaded (it needs the schema of a restored database)".into());
    } else {
        let mut conn = rusqlite::Connection::open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")?;
        let rules = LoadRules {
            max_db_bytes: Some(m.sql.size.saturating_mul(DB_BOUND_FACTOR).max(MIN_DB_BOUND)),
            ..LoadRules::d1()
        };
        let loaded = spooled
            .sql(identities)
            .and_then(|sql| load(&mut conn, BufReader::with_capacity(256 * 1024, sql), rules));
        match loaded {
            Err(e) => report
                .problems
                .push(format!("restoring the SQL failed: {e:#}")),
            Ok(stats) => {
                report.statements = stats.statements;
                report.checks.push(format!(
                    "SQL: {} bytes, SHA-256 matches; {} statements loaded the way `restore` loads them (D1's import rules: one transaction, foreign keys on and deferred to the end, statements of at most 100,000 bytes)",
                    m.sql.size, stats.statements
                ));
                if let Some(r) = &m.reordered {
                    report.checks.push(format!(
                        "loaded in the stored order: D1's export with the CREATE TABLE of {} moved to the top",
                        r.tables.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ")
                    ));
                }
                check_database(&conn, m, &mut report)?;
            }
        }
    }
    report.verified = report.problems.is_empty();
    Ok(report)
}

/// Integrity and row counts of a database loaded under D1's rules. Its foreign keys were
/// checked by the load: it ran with foreign keys on in one transaction, so the commit it got
/// to proves there is no violation (`PRAGMA foreign_key_check` would scan every child table
/// to find none).
fn check_database(
    conn: &rusqlite::Connection,
    m: &Manifest,
    report: &mut VerifyReport,
) -> Result<()> {
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if integrity == ["ok"] {
        report.checks.push("PRAGMA integrity_check: ok".into());
    } else {
        report.problems.push(format!(
            "PRAGMA integrity_check: {}",
            integrity
                .into_iter()
                .take(10)
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    report
        .checks
        .push("foreign keys: enforced during the load, no violation at its COMMIT".into());
    for t in &m.tables {
        let found = conn
            .query_row(&TableCheck::count_sql(&t.name), [], |r| r.get::<_, i64>(0))
            .ok()
            .map(|n| n as u64);
        let check = TableCheck::new(t, found);
        report.problems.extend(check.problem());
        report.tables.push(check);
    }
    if report.tables.iter().all(TableCheck::ok) {
        report.checks.push(format!(
            "row counts of all {} tables match the manifest",
            report.tables.len()
        ));
    }
    Ok(())
}

/// Verify a backup in a temporary database (removed afterwards) and store the report next to
/// it as `<key>.verify.json`.
pub async fn verify(
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
) -> Result<VerifyReport> {
    let (db, _) = crate::util::scratch::Scratch::create("d1-backup-verify")
        .context("creating a temporary database for verification")?;
    let report = load_backup(Arc::clone(&store), manifest, db.path(), identities).await?;
    drop(db);
    let body = serde_json::to_vec_pretty(&report)?;
    let meta = ObjectMeta {
        content_type: "application/json".into(),
        metadata: Default::default(),
    };
    let rkey = keys::verify_key(&manifest.key);
    if let Err(e) = store.put(&rkey, body.into(), &meta).await {
        crate::util::log::warn(format!(
            "could not store the verification report {rkey}: {e:#}"
        ));
    }
    Ok(report)
}
