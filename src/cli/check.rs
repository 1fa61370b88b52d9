//! The `check` command: is every database's newest backup fresh, verified and not suspiciously
//! smaller? For one database, a list, or `*`; one `::error::` per stale database, naming it
//! and the age; outputs for later steps; a job summary with each database's recent history
//! and a chart of stored size. Exit 1 when any database is stale.

use std::sync::Arc;

use anyhow::Result;
use chrono::Utc;
use serde::Serialize;

use crate::catalog::fresh::{self, Freshness, Verdict};
use crate::catalog::prune::{self, Listed};
use crate::cli::action::{Outputs, md_cell};
use crate::cli::config::{
    ApiConfig, DatabaseSet, StoreConfig, api_config, database_set, store_config,
};
use crate::cli::errors::InputError;
use crate::cli::finish::{self, Failure};
use crate::cli::inputs::RawInputs;
use crate::cli::open::{self, Opened};
use crate::cli::report::Status;
use crate::cli::values::{count, duration, prefix, verify_keys};
use crate::keys::{parse_backup_key, sanitize_name};
use crate::sign::VerifyKeys;
use crate::util::progress::human_bytes;
use crate::util::{log, workflow};

/// Backups shown in a database's history table.
const HISTORY_ROWS: usize = 10;
/// Backups in a database's chart of stored size.
const CHART_POINTS: usize = 30;

/// Settings of the `check` command.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub store: StoreConfig,
    pub api: Option<ApiConfig>,
    pub prefix: String,
    pub databases: DatabaseSet,
    pub verify_keys: Option<Arc<VerifyKeys>>,
    pub rule: Freshness,
}

impl CheckConfig {
    pub fn from_inputs(raw: &RawInputs) -> Result<Self, InputError> {
        let api = api_config(raw)?;
        Ok(CheckConfig {
            store: store_config(raw, api.as_ref())?,
            prefix: prefix(raw)?,
            databases: database_set(raw)?,
            verify_keys: verify_keys(raw)?,
            rule: Freshness {
                max_age: duration(raw, "max-age", 26 * 3600)?,
                max_shrink_percent: match raw.get("max-shrink") {
                    None => None,
                    Some(_) => Some(count(raw, "max-shrink", 0, 100)?),
                },
            },
            api,
        })
    }
}

/// One database as `check` saw it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseCheck {
    pub database: String,
    pub fresh: bool,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Its complete backups, newest first (at most [`CHART_POINTS`]).
    pub history: Vec<HistoryEntry>,
}

/// One complete backup in a database's history.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub key: String,
    pub time: String,
    pub rows: Option<u64>,
    pub stored_bytes: u64,
    pub verified: Option<bool>,
}

/// The report of `check`.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    #[serde(flatten)]
    pub status: Status,
    pub bucket: String,
    pub stale: usize,
    pub databases: Vec<DatabaseCheck>,
}

/// Run the `check` command; returns the exit code.
pub async fn run(raw: &RawInputs) -> u8 {
    let report = match check(raw).await {
        Ok(r) => r,
        Err(e) => return finish::fail("Check failed", e),
    };
    let mut outputs = Outputs::new();
    let oldest = report
        .databases
        .iter()
        .max_by_key(|d| d.verdict.age_seconds.unwrap_or(i64::MAX));
    if let Some(d) = oldest {
        if let Some(k) = &d.verdict.newest_key {
            outputs.set("newest-key", k.clone());
        }
        if let Some(a) = d.verdict.age_seconds {
            outputs.set("age-seconds", a.to_string());
        }
    }
    outputs.set("stale", report.stale.to_string());
    outputs.set("bucket", report.bucket.clone());
    let summary = summary(&report);
    for d in report.databases.iter().filter(|d| !d.fresh) {
        workflow::error_annotation(
            "Stale backup",
            &format!(
                "database {:?}: {}",
                d.database,
                d.verdict.problems.join("; ")
            ),
        );
    }
    if report.stale == 0 {
        return finish::succeed(outputs, &report, &summary);
    }
    let stale: Vec<String> = report
        .databases
        .iter()
        .filter(|d| !d.fresh)
        .map(|d| format!("{} ({})", d.database, d.verdict.problems.join("; ")))
        .collect();
    let error = anyhow::anyhow!(
        "{} of {} databases are stale: {}",
        stale.len(),
        report.databases.len(),
        stale.join(", ")
    );
    let mut report = report;
    report.status = Status::failed("Check failed", &error);
    finish::failed(Failure {
        message: "Check failed",
        error,
        report,
        outputs,
        summary,
    })
}

async fn check(raw: &RawInputs) -> Result<CheckReport> {
    let cfg = CheckConfig::from_inputs(raw)?;
    raw.warn_unread("check");
    let opened = open::store_checked(&cfg.store, cfg.api.as_ref()).await?;
    let client = match &cfg.api {
        Some(api) => Some(open::d1_client(api, &opened.budget)?),
        None => None,
    };
    let names = database_names(&cfg, &opened, client.as_deref()).await?;
    let now = Utc::now();
    let mut databases = Vec::with_capacity(names.len());
    for (name, uuid) in names {
        let backups = prune::list(
            opened.store.as_ref(),
            &cfg.prefix,
            &name,
            None,
            cfg.verify_keys.as_deref(),
        )
        .await?;
        let mut verdict = fresh::judge(&backups, now, &cfg.rule, None);
        if verdict.too_old
            && let Some(client) = &client
        {
            // Old, but an idle database is not backed up again (`skip-unchanged`): ask D1
            // whether anything was written since.
            match current_bookmark(client, &name, uuid.as_deref()).await {
                Ok(b) => verdict = fresh::judge(&backups, now, &cfg.rule, Some(&b)),
                Err(e) => log::warn(format!(
                    "{name}: could not read its Time Travel bookmark ({e:#})"
                )),
            }
        }
        let fresh = verdict.is_fresh();
        if verdict.unchanged {
            log::info(format!(
                "{name}: fresh (newest backup {} old, and the database has not been written since)",
                fresh::human_age(verdict.age_seconds.unwrap_or_default())
            ));
        } else if fresh {
            log::info(format!(
                "{name}: fresh (newest backup {} old)",
                fresh::human_age(verdict.age_seconds.unwrap_or_default())
            ));
        } else {
            log::warn(format!("{name}: {}", verdict.problems.join("; ")));
        }
        databases.push(DatabaseCheck {
            database: name,
            fresh,
            verdict,
            history: history(&backups),
        });
    }
    let stale = databases.iter().filter(|d| !d.fresh).count();
    Ok(CheckReport {
        status: Status::ok(&format!(
            "{} of {} databases fresh",
            databases.len() - stale,
            databases.len()
        )),
        bucket: opened.bucket,
        stale,
        databases,
    })
}

/// The current bookmark of the database `name` (or `uuid`, when known).
async fn current_bookmark(
    client: &crate::d1::D1Client,
    name: &str,
    uuid: Option<&str>,
) -> Result<String> {
    let uuid = match uuid {
        Some(u) => u.to_string(),
        None => client.resolve_database(name).await?.uuid,
    };
    Ok(client.bookmark(&uuid).await?)
}

/// The database folders to check, with the database's UUID when the listing gave it: the
/// names given (a UUID looked up through the API), or with `*` every database of the
/// account — or, without API access, every database folder in the store.
async fn database_names(
    cfg: &CheckConfig,
    opened: &Opened,
    client: Option<&crate::d1::D1Client>,
) -> Result<Vec<(String, Option<String>)>> {
    let mut names = Vec::new();
    match (&cfg.databases, client) {
        (DatabaseSet::All, Some(client)) => {
            for db in client.list_databases(None).await? {
                names.push((sanitize_name(&db.name), Some(db.uuid)));
            }
        }
        (DatabaseSet::All, None) => {
            for o in opened.store.list(&cfg.prefix).await? {
                let rest = o.key.strip_prefix(cfg.prefix.as_str()).unwrap_or(&o.key);
                if let Some((dir, _)) = rest.split_once('/')
                    && parse_backup_key(&format!("{}{dir}/", cfg.prefix), &o.key).is_some()
                {
                    names.push((dir.to_string(), None));
                }
            }
        }
        (DatabaseSet::Named(list), client) => {
            for n in list {
                match (&client, crate::d1::is_uuid(n)) {
                    (Some(c), true) => {
                        let db = c.resolve_database(n).await?;
                        names.push((sanitize_name(&db.name), Some(db.uuid)));
                    }
                    (None, true) => {
                        return Err(InputError::new(
                            "database",
                            format!("{n:?} is a UUID: give the database name, or `api-token` so the name can be looked up"),
                        )
                        .into());
                    }
                    (_, false) => names.push((sanitize_name(n), None)),
                }
            }
        }
    }
    names.sort();
    names.dedup_by(|a, b| a.0 == b.0);
    if names.is_empty() {
        return Err(InputError::new(
            "database",
            "`*` found no databases to check (none in the account, or no backups under `prefix`)",
        )
        .into());
    }
    Ok(names)
}

/// The complete backups, newest first, at most [`CHART_POINTS`].
fn history(backups: &[Listed]) -> Vec<HistoryEntry> {
    backups
        .iter()
        .filter(|b| b.entry.complete)
        .take(CHART_POINTS)
        .map(|b| HistoryEntry {
            key: b.entry.key.clone(),
            time: crate::manifest::rfc3339(b.entry.time),
            rows: b.rows,
            stored_bytes: b.entry.size,
            verified: b.verified,
        })
        .collect()
}

/// The job summary: one line per database, then each database's recent history and a chart.
fn summary(report: &CheckReport) -> String {
    let mut s = format!(
        "### Backup freshness in `{}`\n\n| Database | Result | Newest backup | Age |\n|---|---|---|--:|\n",
        md_cell(&report.bucket)
    );
    for d in &report.databases {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            md_cell(&d.database),
            if d.fresh {
                "✅ fresh".to_string()
            } else {
                format!("❌ {}", md_cell(&d.verdict.problems.join("; ")))
            },
            d.verdict
                .newest_key
                .as_deref()
                .map(|k| format!("`{}`", md_cell(k)))
                .unwrap_or_else(|| "–".into()),
            d.verdict
                .age_seconds
                .map(fresh::human_age)
                .unwrap_or_else(|| "–".into()),
        ));
    }
    for d in &report.databases {
        if d.history.is_empty() {
            continue;
        }
        s.push_str(&format!(
            "\n#### {}\n\n| Date | Rows | Stored | Verified |\n|---|--:|--:|---|\n",
            md_cell(&d.database)
        ));
        for h in d.history.iter().take(HISTORY_ROWS) {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                h.time,
                h.rows.map_or("–".to_string(), |r| r.to_string()),
                human_bytes(h.stored_bytes),
                match h.verified {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "–",
                }
            ));
        }
        s.push_str(&chart(&d.database, &d.history));
    }
    s
}

/// A Mermaid chart of stored size (KiB) over the backups in `history`, oldest first.
fn chart(database: &str, history: &[HistoryEntry]) -> String {
    let points: Vec<&HistoryEntry> = history.iter().rev().collect();
    let labels: Vec<String> = points
        .iter()
        .map(|h| format!("\"{}\"", h.time.get(5..10).unwrap_or("?")))
        .collect();
    let values: Vec<String> = points
        .iter()
        .map(|h| format!("{:.1}", h.stored_bytes as f64 / 1024.0))
        .collect();
    let title: String = database
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
        .collect();
    format!(
        "\n```mermaid\nxychart-beta\n    title \"Stored size of {title} (KiB), last {} backups\"\n    x-axis [{}]\n    y-axis \"KiB\"\n    line [{}]\n```\n",
        points.len(),
        labels.join(", "),
        values.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_oldest_first_and_safe() {
        let h = |time: &str, bytes| HistoryEntry {
            key: String::new(),
            time: time.into(),
            rows: Some(1),
            stored_bytes: bytes,
            verified: Some(true),
        };
        let c = chart(
            "app\"]\n```<b>",
            &[
                h("2026-12-02T06:00:00Z", 2048),
                h("2026-12-01T06:00:00Z", 1024),
            ],
        );
        assert!(c.contains("x-axis [\"12-01\", \"12-02\"]"), "{c}");
        assert!(c.contains("line [1.0, 2.0]"), "{c}");
        assert!(
            c.contains("title \"Stored size of appb (KiB), last 2 backups\""),
            "{c}"
        );
        assert_eq!(c.matches("```").count(), 2, "{c}");
    }
}
