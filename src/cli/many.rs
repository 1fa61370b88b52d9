//! Many databases in one run: which ones (a list of names and UUIDs, or `*` for every
//! database of the account, minus `exclude-databases`), backed up a bounded number at a time,
//! and the combined report. One failing database never stops the others; the run reports
//! every database and fails at the end if any did.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::cli::action::md_cell;
use crate::cli::config::{DatabaseSet, InputError};
use crate::d1::D1Client;
use crate::d1::types::DatabaseInfo;
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
    if targets.is_empty() {
        return Err(InputError::new(
            "exclude-databases",
            "leaves no database to back up; remove entries from it or change `database`",
        )
        .into());
    }
    Ok(targets)
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
    /// Its report: the single-database report (success or failure).
    pub json: Value,
    pub error: Option<anyhow::Error>,
}

impl Outcome {
    pub fn succeeded(database: String, json: Value) -> Outcome {
        Outcome {
            database,
            json,
            error: None,
        }
    }

    /// A failure before any report existed (the database could not be resolved).
    pub fn failed(database: String, message: &str, error: anyhow::Error) -> Outcome {
        let json = crate::cli::report::failure_json(message, &error);
        Outcome::failed_with(database, message, error, json)
    }

    /// A failure with the report gathered so far (e.g. written but not verified).
    pub fn failed_with(
        database: String,
        message: &str,
        error: anyhow::Error,
        mut json: Value,
    ) -> Outcome {
        crate::cli::report::mark_failed(&mut json, message, &error);
        Outcome {
            database,
            json,
            error: Some(error),
        }
    }
}

/// The `report` of a many-database run: one object per database, each with `database`.
pub fn report(outcomes: &[Outcome]) -> Value {
    Value::Array(
        outcomes
            .iter()
            .map(|o| {
                let mut v = o.json.clone();
                if v.get("database").is_none() {
                    v["database"] = json!(o.database);
                }
                v
            })
            .collect(),
    )
}

/// The job summary: one row per database and a total, then each failure in full.
pub fn summary(outcomes: &[Outcome], bucket: &str) -> String {
    let mut s = format!(
        "### D1 backups into `{}`\n\n| Database | Result | Key | Tables | Rows | SQL | Stored | Verified | Duration |\n|---|---|---|--:|--:|--:|--:|---|--:|\n",
        md_cell(bucket)
    );
    let (mut tables, mut rows, mut sql, mut stored, mut ms) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for o in outcomes {
        let j = &o.json;
        let n = |field: &str| j[field].as_u64();
        tables += n("tableCount").unwrap_or(0);
        rows += n("rowCount").unwrap_or(0);
        sql += n("sizeBytes").unwrap_or(0);
        stored += n("compressedBytes").unwrap_or(0);
        ms += n("durationMs").unwrap_or(0);
        let dash = || "–".to_string();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            md_cell(&o.database),
            if o.error.is_none() {
                "✅ ok"
            } else {
                "❌ failed"
            },
            j["key"]
                .as_str()
                .map(|k| format!("`{}`", md_cell(k)))
                .unwrap_or_else(dash),
            n("tableCount").map(|v| v.to_string()).unwrap_or_else(dash),
            n("rowCount").map(|v| v.to_string()).unwrap_or_else(dash),
            n("sizeBytes").map(human_bytes).unwrap_or_else(dash),
            n("compressedBytes").map(human_bytes).unwrap_or_else(dash),
            match j["verified"].as_bool() {
                Some(true) => "yes".to_string(),
                Some(false) => "**no**".to_string(),
                None => dash(),
            },
            n("durationMs")
                .map(|v| format!("{:.1} s", v as f64 / 1000.0))
                .unwrap_or_else(dash),
        ));
    }
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    s.push_str(&format!(
        "| **Total: {}** | {} ok, {} failed | | {tables} | {rows} | {} | {} | | {:.1} s |\n",
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

    #[test]
    fn summary_has_a_row_per_database_and_a_total() {
        let outcomes = vec![
            Outcome::succeeded(
                "a|b".into(),
                json!({"key": "a/backup-1.sql.zst", "tableCount": 2, "rowCount": 10, "sizeBytes": 2048, "compressedBytes": 512, "verified": true, "durationMs": 1500}),
            ),
            Outcome::succeeded(
                "empty".into(),
                json!({"key": "empty/backup-1.sql.zst", "tableCount": 0, "rowCount": 0, "sizeBytes": 100, "compressedBytes": 50, "verified": true, "durationMs": 500}),
            ),
            Outcome::failed("broken".into(), "Backup failed", anyhow!("HTTP 500")),
        ];
        let s = summary(&outcomes, "bkt");
        assert!(s.contains("| a\\|b | ✅ ok |"), "{s}");
        assert!(s.contains("| broken | ❌ failed | – |"), "{s}");
        assert!(
            s.contains("| **Total: 3** | 2 ok, 1 failed | | 2 | 10 |"),
            "{s}"
        );
        assert!(s.contains("**broken failed:** HTTP 500"), "{s}");
        let r = report(&outcomes);
        assert_eq!(r.as_array().unwrap().len(), 3);
        assert_eq!(r[2]["database"], "broken");
        assert_eq!(r[2]["success"], false);
    }
}
