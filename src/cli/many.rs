//! Many databases in one run: which ones (a list of names and UUIDs, or `*` for every
//! database of the account, minus `exclude-databases`), backed up a bounded number at a time,
//! and the combined report. One failing database never stops the others; the run reports
//! every database and fails at the end if any did.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use futures::StreamExt;

use crate::cli::action::md_cell;
use crate::cli::config::DatabaseSet;
use crate::cli::errors::InputError;
use crate::cli::report::{BackupReport, Written};
use crate::d1::D1Client;
use crate::d1::types::DatabaseInfo;
use crate::shard::Shard;
use crate::util::log;
use crate::util::progress::human_bytes;
use crate::util::secrets::redact;

/// One database to back up: its label (as given, or its name) and either the resolved
/// database or why it could not be resolved (reported as that database's failure).
pub struct Target {
    pub label: String,
    pub resolved: Result<(Arc<D1Client>, DatabaseInfo)>,
}

/// Whether `db` is named (by name, or UUID in any case) in `exclude`.
pub fn is_excluded(db: &DatabaseInfo, exclude: &[String]) -> bool {
    exclude
        .iter()
        .any(|e| *e == db.name || e.eq_ignore_ascii_case(&db.uuid))
}

/// The databases of the account that `exclude` leaves, sorted by name.
pub fn select_all(mut all: Vec<DatabaseInfo>, exclude: &[String]) -> Vec<DatabaseInfo> {
    all.retain(|db| !is_excluded(db, exclude));
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all.dedup_by(|a, b| a.uuid == b.uuid);
    all
}

/// Resolve the database set through the API. `*` lists the account (all pages); named
/// databases are resolved one by one, and one that cannot be resolved becomes a failed target
/// instead of stopping the run.
pub async fn resolve(
    client: Arc<D1Client>,
    set: &DatabaseSet,
    exclude: &[String],
    shard: Option<Shard>,
) -> Result<Vec<Target>> {
    let targets: Vec<Target> = match set {
        DatabaseSet::All => {
            let all = client.list_databases(None).await?;
            if all.is_empty() {
                return Err(anyhow!(
                    "`database: *` found no D1 databases in this account: check `account-id` and that the token may read D1"
                ));
            }
            let total = all.len();
            let selected = select_all(all, exclude);
            log::info(format!(
                "`*`: {total} databases in the account, {} after `exclude-databases`",
                selected.len()
            ));
            selected
                .into_iter()
                .map(|db| Target {
                    label: db.name.clone(),
                    resolved: Ok((Arc::clone(&client), db)),
                })
                .collect()
        }
        DatabaseSet::Named(names) => {
            let mut targets = Vec::with_capacity(names.len());
            for name in names {
                if exclude.iter().any(|e| e.eq_ignore_ascii_case(name)) {
                    log::info(format!("{name}: skipped (in `exclude-databases`)"));
                    continue;
                }
                let resolved = match client.resolve_database(name).await {
                    Ok(db) if is_excluded(&db, exclude) => {
                        log::info(format!("{name}: skipped (in `exclude-databases`)"));
                        continue;
                    }
                    Ok(db) => Ok((Arc::clone(&client), db)),
                    Err(e) => Err(e),
                };
                targets.push(Target {
                    label: name.clone(),
                    resolved,
                });
            }
            targets
        }
    };
    let targets = match shard {
        None => targets,
        Some(shard) => {
            let total = targets.len();
            let mine = in_shard(targets, shard);
            log::info(format!(
                "shard {shard}: {} of {total} databases",
                mine.len()
            ));
            if mine.is_empty() {
                log::warn(format!(
                    "shard {shard} holds none of the {total} databases; nothing to back up in this job"
                ));
            }
            return Ok(mine);
        }
    };
    if targets.is_empty() {
        return Err(InputError::new(
            "exclude-databases",
            "leaves no database to back up; remove entries from it or change `database`",
        )
        .into());
    }
    Ok(targets)
}

/// The targets in `shard` (by database UUID); one that could not be resolved has no UUID and
/// stays (it fails in every shard's report, so it cannot go unnoticed).
pub fn in_shard(targets: Vec<Target>, shard: Shard) -> Vec<Target> {
    targets
        .into_iter()
        .filter(|t| match &t.resolved {
            Ok((_, db)) => shard.contains(&db.uuid),
            Err(_) => true,
        })
        .collect()
}

/// Run `f` over `items`, at most `limit` at a time, returning the results in input order.
pub async fn run_bounded<T, O, F, Fut>(items: Vec<T>, limit: usize, f: F) -> Vec<O>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = O>,
{
    futures::stream::iter(items)
        .map(f)
        .buffered(limit.max(1))
        .collect()
        .await
}

/// How one database's backup ended.
pub struct Outcome {
    pub database: String,
    /// Its report (success or failure), naming the database.
    pub report: BackupReport,
    pub error: Option<anyhow::Error>,
}

impl Outcome {
    /// `report` as the single-database run made it (marked failed when `error` is set).
    pub fn new(
        database: String,
        mut report: BackupReport,
        error: Option<anyhow::Error>,
    ) -> Outcome {
        report.database.get_or_insert_with(|| database.clone());
        Outcome {
            database,
            report,
            error,
        }
    }

    /// A failure before any report existed (the database could not be resolved).
    pub fn failed(database: String, message: &str, error: anyhow::Error) -> Outcome {
        let report = BackupReport::failed(Some(database.clone()), message, &error);
        Outcome::new(database, report, Some(error))
    }
}

/// The `report` of a many-database run: one report per database.
pub fn report(outcomes: &[Outcome]) -> Vec<&BackupReport> {
    outcomes.iter().map(|o| &o.report).collect()
}

/// The job summary: one row per database and a total, then each failure in full.
pub fn summary(outcomes: &[Outcome], bucket: &str) -> String {
    let mut s = format!(
        "### D1 backups into `{}`\n\n| Database | Result | Key | Tables | Rows | SQL | Stored | Verified | Duration |\n|---|---|---|--:|--:|--:|--:|---|--:|\n",
        md_cell(bucket)
    );
    let (mut tables, mut rows, mut sql, mut stored, mut ms) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for o in outcomes {
        let w = o.report.written.as_ref();
        tables += w.map_or(0, |w| w.table_count as u64);
        rows += w.map_or(0, |w| w.row_count);
        sql += w.map_or(0, |w| w.size_bytes);
        stored += w.map_or(0, |w| w.compressed_bytes);
        ms += w.map_or(0, |w| w.duration_ms);
        let cell = |f: &dyn Fn(&Written) -> String| w.map(f).unwrap_or_else(|| "–".to_string());
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            md_cell(&o.database),
            match (&o.error, w.is_some_and(|w| w.unchanged)) {
                (Some(_), _) => "❌ failed",
                (None, true) => "✅ unchanged",
                (None, false) => "✅ ok",
            },
            cell(&|w| format!("`{}`", md_cell(&w.key))),
            cell(&|w| w.table_count.to_string()),
            cell(&|w| w.row_count.to_string()),
            cell(&|w| human_bytes(w.size_bytes)),
            cell(&|w| human_bytes(w.compressed_bytes)),
            match o.report.verified.as_ref().map(|v| v.verified) {
                Some(true) => "yes".to_string(),
                Some(false) => "**no**".to_string(),
                None => "–".to_string(),
            },
            cell(&|w| format!("{:.1} s", w.duration_ms as f64 / 1000.0)),
        ));
    }
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    let unchanged = outcomes
        .iter()
        .filter(|o| o.report.written.as_ref().is_some_and(|w| w.unchanged))
        .count();
    s.push_str(&format!(
        "| **Total: {}** | {} ok ({unchanged} unchanged), {} failed | | {tables} | {rows} | {} | {} | | {:.1} s |\n",
        outcomes.len(),
        outcomes.len() - failed,
        failed,
        human_bytes(sql),
        human_bytes(stored),
        ms as f64 / 1000.0
    ));
    for o in outcomes {
        if let Some(e) = &o.error {
            s.push_str(&format!(
                "\n**{} failed:** {}\n",
                md_cell(&o.database),
                md_cell(&redact(&format!("{e:#}")))
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn db(name: &str, uuid: &str) -> DatabaseInfo {
        serde_json::from_value(json!({"uuid": uuid, "name": name})).unwrap()
    }

    #[test]
    fn exclusion_by_name_or_uuid() {
        let all = vec![
            db("prod", "AAAAAAAA-0000-0000-0000-000000000001"),
            db("analytics", "aaaaaaaa-0000-0000-0000-000000000002"),
            db("staging", "aaaaaaaa-0000-0000-0000-000000000003"),
            db("prod", "AAAAAAAA-0000-0000-0000-000000000001"),
        ];
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &["analytics", "prod", "staging"]),
            (&["staging"], &["analytics", "prod"]),
            (
                &["aaaaaaaa-0000-0000-0000-000000000001"],
                &["analytics", "staging"],
            ),
            (&["STAGING"], &["analytics", "prod", "staging"]),
            (&["prod", "analytics", "staging"], &[]),
        ];
        for (exclude, want) in cases {
            let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
            let got: Vec<String> = select_all(all.clone(), &exclude)
                .into_iter()
                .map(|d| d.name)
                .collect();
            assert_eq!(got, *want, "exclude {exclude:?}");
        }
    }

    #[tokio::test]
    async fn bounded_runs_never_exceed_the_limit_and_keep_order() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for limit in [1usize, 2, 3, 8] {
            let running = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let out = run_bounded((0..10).collect(), limit, |i: u32| {
                let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(u64::from(10 - i))).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    i * 2
                }
            })
            .await;
            assert_eq!(out, (0..10).map(|i| i * 2).collect::<Vec<_>>());
            assert_eq!(peak.load(Ordering::SeqCst), limit.min(10), "limit {limit}");
        }
    }

    fn ok(key: &str, tables: usize, rows: u64, sql: u64, stored: u64, ms: u64) -> BackupReport {
        use crate::cli::report::{Status, Verification, Verified};
        BackupReport {
            status: Status::ok("Backup completed successfully"),
            database: None,
            written: Some(Written {
                filename: key.rsplit('/').next().unwrap().into(),
                timestamp: "2026-01-01T00:00:00Z".into(),
                table_count: tables,
                key: key.into(),
                bucket: "bkt".into(),
                database_id: "id".into(),
                method: "query".into(),
                compression: "zstd".into(),
                size_bytes: sql,
                compressed_bytes: stored,
                sha256: String::new(),
                sql_sha256: String::new(),
                row_count: rows,
                duration_ms: ms,
                tables: Vec::new(),
                warnings: Vec::new(),
                bookmark: None,
                consistent: None,
                export_seconds: None,
                encryption: None,
                rows_read: None,
                unchanged: false,
            }),
            verified: Some(Verified {
                verified: true,
                verification: Verification {
                    checks: Vec::new(),
                    problems: Vec::new(),
                    duration_ms: 1,
                    object_only: false,
                },
            }),
            retention: None,
        }
    }

    #[test]
    fn summary_has_a_row_per_database_and_a_total() {
        let outcomes = vec![
            Outcome::new(
                "a|b".into(),
                ok("a/backup-1.sql.zst", 2, 10, 2048, 512, 1500),
                None,
            ),
            Outcome::new(
                "empty".into(),
                ok("empty/backup-1.sql.zst", 0, 0, 100, 50, 500),
                None,
            ),
            Outcome::failed("broken".into(), "Backup failed", anyhow!("HTTP 500")),
        ];
        let s = summary(&outcomes, "bkt");
        assert!(
            s.contains("| a\\|b | ✅ ok | `a/backup-1.sql.zst` | 2 | 10 | 2.0 KiB |"),
            "{s}"
        );
        assert!(s.contains("| broken | ❌ failed | – |"), "{s}");
        assert!(
            s.contains("| **Total: 3** | 2 ok (0 unchanged), 1 failed | | 2 | 10 |"),
            "{s}"
        );
        assert!(s.contains("**broken failed:** HTTP 500"), "{s}");
        let r = serde_json::to_value(report(&outcomes)).unwrap();
        assert_eq!(r.as_array().unwrap().len(), 3);
        assert_eq!(r[0]["database"], "a|b");
        assert_eq!(r[0]["tableCount"], 2);
        assert_eq!(r[0]["verified"], true);
        assert_eq!(r[2]["database"], "broken");
        assert_eq!(r[2]["success"], false);
        assert_eq!(r[2]["error"], "HTTP 500");
        assert!(r[2].get("key").is_none());
    }
}
