//! What a run tells its caller: the final JSON line, action outputs and the job summary.
//!
//! The JSON keeps the original Worker's response shape (`success`, `message`, `filename`,
//! `timestamp`, `tableCount`) and adds the rest. The same JSON is the `report` output.

use serde::Serialize;

use crate::cli::action::{Outputs, md_cell};
use crate::manifest::Manifest;
use crate::store::basename;
use crate::util::progress::human_bytes;
use crate::util::secrets::redact;

/// Every output the action writes, with its description (`action.yml` declares exactly
/// these; a test checks it).
pub const OUTPUTS: &[(&str, &str)] = &[
    ("filename", "Base name of the backup object."),
    ("timestamp", "Time of the backup (RFC 3339, UTC)."),
    (
        "table-count",
        "User tables in the dump (a virtual table counts once, its shadow tables not).",
    ),
    ("key", "Full object key of the backup."),
    ("bucket", "Bucket (or directory) written to."),
    ("size-bytes", "Size of the SQL, in bytes."),
    ("compressed-bytes", "Size of the stored object, in bytes."),
    ("sha256", "SHA-256 of the stored object."),
    ("sql-sha256", "SHA-256 of the SQL."),
    ("row-count", "Rows in the dump."),
    ("method", "Dump method used: `query` or `export`."),
    ("database", "Database name."),
    (
        "database-id",
        "Database UUID (or the path of a local file).",
    ),
    ("duration-ms", "Duration of the backup, in milliseconds."),
    (
        "bookmark",
        "Time Travel bookmark the backup corresponds to (D1 only).",
    ),
    ("consistent", "`true` when the backup is one point in time."),
    (
        "unchanged",
        "`true` when the database had not changed since the backup in `key` (nothing was written); with several databases, how many were unchanged.",
    ),
    (
        "rows-read",
        "Rows D1 read (and bills) for the backup; with several databases, the total.",
    ),
    (
        "export-seconds",
        "With `method: export`: seconds the database was blocked by the export.",
    ),
    ("kept", "Retention: number of backups kept."),
    (
        "deleted",
        "Retention: number of backups deleted (or that a dry run would delete).",
    ),
    (
        "deleted-keys",
        "Retention: JSON array of the keys of the deleted backups.",
    ),
    (
        "verified",
        "`true` when the backup was restored into a temporary database and every check passed; `false` when a check failed.",
    ),
    (
        "restored-to",
        "For `restore`: the file or D1 database restored into.",
    ),
    (
        "newest-key",
        "For `check`: key of the newest complete backup (with several databases, of the one whose newest backup is oldest).",
    ),
    (
        "age-seconds",
        "For `check`: age of the newest complete backup, in seconds (with several databases, the largest).",
    ),
    (
        "stale",
        "For `check`: how many databases are stale (too old, unverified, or shrunk).",
    ),
    (
        "succeeded",
        "With several databases: how many were backed up (and verified).",
    ),
    (
        "failed",
        "With several databases: how many failed (the run then fails, naming them).",
    ),
    (
        "report",
        "The whole report as JSON (also the last line on stdout); with several databases, an array with one report per database.",
    ),
];

/// How a command ended: the first fields of every report.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub success: bool,
    pub message: String,
    /// The error, in full (secrets redacted), when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Status {
    pub fn ok(message: &str) -> Status {
        Status {
            success: true,
            message: message.to_string(),
            error: None,
        }
    }

    pub fn failed(message: &str, error: &anyhow::Error) -> Status {
        Status {
            success: false,
            message: message.to_string(),
            error: Some(redact(&format!("{error:#}")).into_owned()),
        }
    }
}

/// The report of one backup (also one element of a many-database report). Keeps the
/// original Worker's fields (`success`, `message`, `filename`, `timestamp`, `tableCount`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    #[serde(flatten)]
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// What was written; absent when the backup failed before it was.
    #[serde(flatten)]
    pub written: Option<Written>,
    #[serde(flatten)]
    pub verified: Option<Verified>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// The backup object that was written.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub filename: String,
    pub timestamp: String,
    pub table_count: usize,
    pub key: String,
    pub bucket: String,
    pub database_id: String,
    pub method: String,
    pub compression: String,
    pub size_bytes: u64,
    pub compressed_bytes: u64,
    pub sha256: String,
    pub sql_sha256: String,
    pub row_count: u64,
    pub duration_ms: u64,
    pub tables: Vec<TableRows>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bookmark: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// Rows D1 read (and bills) for this backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_read: Option<u64>,
    /// The database had not changed: nothing was written, and this is the backup that still
    /// holds it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

/// Rows of one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableRows {
    pub name: String,
    pub rows: u64,
}

/// A verification: `verified` and what was checked.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub verified: bool,
    pub verification: Verification,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub checks: Vec<String>,
    pub problems: Vec<String>,
    pub duration_ms: u64,
    pub object_only: bool,
}

/// What retention did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    pub dry_run: bool,
    pub kept: usize,
    pub deleted: usize,
    pub deleted_keys: Vec<String>,
    /// Why nothing was deleted, when retention held back.
    pub hold: Option<String>,
    pub failures: Vec<crate::store::DeleteFailure>,
    pub aborted_uploads: usize,
    pub decisions: Vec<crate::retention::Decision>,
}

impl BackupReport {
    /// A backup that failed before anything was written.
    pub fn failed(database: Option<String>, message: &str, error: &anyhow::Error) -> BackupReport {
        BackupReport {
            status: Status::failed(message, error),
            database,
            written: None,
            verified: None,
            retention: None,
        }
    }

    /// The report of a written backup.
    pub fn written(m: &Manifest, bucket: &str) -> BackupReport {
        BackupReport {
            status: Status::ok("Backup completed successfully"),
            database: Some(m.database.name.clone()),
            written: Some(Written {
                filename: basename(&m.key).to_string(),
                timestamp: m.timestamp.clone(),
                table_count: m.table_count,
                key: m.key.clone(),
                bucket: bucket.to_string(),
                database_id: m.database.id.clone(),
                method: m.method.clone(),
                compression: m.compression.clone(),
                size_bytes: m.sql.size,
                compressed_bytes: m.object.size,
                sha256: m.object.sha256.clone(),
                sql_sha256: m.sql.sha256.clone(),
                row_count: m.row_count,
                duration_ms: m.timings.total_ms,
                tables: m
                    .tables
                    .iter()
                    .map(|t| TableRows {
                        name: t.name.clone(),
                        rows: t.rows,
                    })
                    .collect(),
                warnings: m.warnings.clone(),
                bookmark: m.bookmark.clone(),
                consistent: m.consistent,
                export_seconds: m.timings.export_seconds,
                encryption: m.encryption.clone(),
                rows_read: m.rows_read,
                unchanged: false,
            }),
            verified: None,
            retention: None,
        }
    }
}

/// A report as JSON text (for the `report` output).
pub fn to_json<R: Serialize>(report: &R) -> String {
    serde_json::to_string(report).unwrap_or_else(|e| {
        format!(r#"{{"success":false,"message":"the report could not be written: {e}"}}"#)
    })
}

/// The report as the final stdout line: secrets redacted, and no legacy `##[command]`
/// text (the runner parses it anywhere in a line; `\u005b` is the same JSON string).
pub fn json_line<R: Serialize>(report: &R) -> String {
    redact(&to_json(report)).replace("##[", "##\\u005b")
}

/// Action outputs of one backup.
pub fn backup_outputs(out: &mut Outputs, m: &Manifest, bucket: &str) {
    out.set("filename", basename(&m.key));
    out.set("timestamp", m.timestamp.clone());
    out.set("table-count", m.table_count.to_string());
    out.set("key", m.key.clone());
    out.set("bucket", bucket);
    out.set("size-bytes", m.sql.size.to_string());
    out.set("compressed-bytes", m.object.size.to_string());
    out.set("sha256", m.object.sha256.clone());
    out.set("sql-sha256", m.sql.sha256.clone());
    out.set("row-count", m.row_count.to_string());
    out.set("method", m.method.clone());
    out.set("database", m.database.name.clone());
    out.set("database-id", m.database.id.clone());
    out.set("duration-ms", m.timings.total_ms.to_string());
    if let Some(b) = &m.bookmark {
        out.set("bookmark", b.clone());
    }
    if let Some(c) = m.consistent {
        out.set("consistent", c.to_string());
    }
    if let Some(s) = m.timings.export_seconds {
        out.set("export-seconds", format!("{s:.3}"));
    }
    if let Some(n) = m.rows_read {
        out.set("rows-read", n.to_string());
    }
    out.set("unchanged", "false");
}

/// Markdown for the job summary of a database that had not changed.
pub fn unchanged_summary(m: &Manifest, bucket: &str) -> String {
    format!(
        "### D1 backup of `{}`: unchanged

The database has not been written since its backup `{}` in `{}` ({}, {} tables, {} rows, verified): its Time Travel bookmark is still `{}`. Nothing was written.
",
        md_cell(&m.database.name),
        md_cell(&m.key),
        md_cell(bucket),
        m.timestamp,
        m.table_count,
        m.row_count,
        md_cell(m.bookmark.as_deref().unwrap_or_default()),
    )
}

/// Markdown for the job summary of one backup.
pub fn backup_summary(m: &Manifest, bucket: &str) -> String {
    let ratio = if m.object.size > 0 {
        format!("{:.1}×", m.sql.size as f64 / m.object.size as f64)
    } else {
        "–".into()
    };
    let mut s = format!(
        "### D1 backup of `{}`\n\n| | |\n|---|---|\n| Object | `{}` in `{}` |\n| Time | {} |\n| Method | {} |\n| Tables / rows | {} / {} |\n| SQL / stored | {} / {} ({ratio}, {}) |\n| SHA-256 | `{}` |\n| Duration | {:.1} s |\n",
        md_cell(&m.database.name),
        md_cell(&m.key),
        md_cell(bucket),
        m.timestamp,
        md_cell(&m.method),
        m.table_count,
        m.row_count,
        human_bytes(m.sql.size),
        human_bytes(m.object.size),
        md_cell(&m.compression),
        m.object.sha256,
        m.timings.total_ms as f64 / 1000.0,
    );
    if let Some(e) = &m.encryption {
        s.push_str(&format!(
            "| Encryption | {} for {} recipient(s) |\n",
            md_cell(e),
            m.recipients.len()
        ));
    }
    if let Some(b) = &m.bookmark {
        s.push_str(&format!("| Time Travel bookmark | `{}` |\n", md_cell(b)));
    }
    if let Some(c) = m.consistent {
        s.push_str(&format!(
            "| Consistent | {} |\n",
            if c { "yes" } else { "**no**" }
        ));
    }
    if let Some(secs) = m.timings.export_seconds {
        s.push_str(&format!("| Database blocked by export | {secs:.1} s |\n"));
    }
    if let Some(n) = m.rows_read {
        s.push_str(&format!(
            "| API requests / rows read (billed by D1) | {} / {n} |\n",
            m.requests
        ));
    }
    s.push_str(&tables_markdown(&m.tables, m.row_count));
    for w in &m.warnings {
        s.push_str(&format!("\n> ⚠️ {}\n", md_cell(w)));
    }
    s
}

/// The largest tables (at most 50) and the total.
pub fn tables_markdown(tables: &[crate::manifest::TableStats], total_rows: u64) -> String {
    const TOP: usize = 50;
    if tables.is_empty() {
        return String::new();
    }
    let mut sorted: Vec<&crate::manifest::TableStats> = tables.iter().collect();
    sorted.sort_by(|a, b| b.rows.cmp(&a.rows).then(a.name.cmp(&b.name)));
    let mut s = String::from("\n| Table | Rows |\n|---|---:|\n");
    for t in sorted.iter().take(TOP) {
        let kind = if t.kind == "virtual" {
            " (virtual)"
        } else {
            ""
        };
        s.push_str(&format!("| `{}`{kind} | {} |\n", md_cell(&t.name), t.rows));
    }
    if sorted.len() > TOP {
        let rest: u64 = sorted[TOP..].iter().map(|t| t.rows).sum();
        s.push_str(&format!(
            "| … {} more tables | {rest} |\n",
            sorted.len() - TOP
        ));
    }
    s.push_str(&format!(
        "| **Total** ({} tables) | **{total_rows}** |\n",
        tables.len()
    ));
    s
}

/// A verification result for a report; its outputs and summary lines are added.
pub fn verified(
    outputs: &mut Outputs,
    summary: &mut String,
    v: &crate::read::verify::VerifyReport,
) -> Verified {
    outputs.set("verified", v.verified.to_string());
    summary.push_str(&format!(
        "\n**Verification:** {}\n\n",
        if v.verified && v.object_only {
            "✅ stored object intact (encrypted; not restore-tested without the identity)"
        } else if v.verified {
            "✅ passed"
        } else {
            "❌ failed"
        }
    ));
    for c in &v.checks {
        summary.push_str(&format!("- {}\n", md_cell(c)));
    }
    for p in &v.problems {
        summary.push_str(&format!("- ❌ {}\n", md_cell(p)));
    }
    Verified {
        verified: v.verified,
        verification: Verification {
            checks: v.checks.clone(),
            problems: v.problems.clone(),
            duration_ms: v.duration_ms,
            object_only: v.object_only,
        },
    }
}

/// A retention outcome for a report; its outputs and summary table are added.
pub fn retention(
    outputs: &mut Outputs,
    summary: &mut String,
    p: &crate::catalog::prune::PruneOutcome,
) -> Retention {
    use crate::retention::Action;
    let deleted: Vec<String> = if p.dry_run {
        p.plan
            .decisions
            .iter()
            .filter(|d| d.action == Action::Delete)
            .map(|d| d.key.clone())
            .collect()
    } else {
        p.deleted.clone()
    };
    outputs.set("kept", p.kept().to_string());
    outputs.set("deleted", deleted.len().to_string());
    outputs.set("deleted-keys", to_json(&deleted));
    summary.push_str(&retention_summary(p, deleted.len()));
    Retention {
        dry_run: p.dry_run,
        kept: p.kept(),
        deleted: deleted.len(),
        deleted_keys: deleted,
        hold: p.plan.hold.as_ref().map(|h| h.to_string()),
        failures: p.failures.clone(),
        aborted_uploads: p.aborted_uploads,
        decisions: p.plan.decisions.clone(),
    }
}

/// The retention table of the job summary.
fn retention_summary(p: &crate::catalog::prune::PruneOutcome, deleted: usize) -> String {
    use crate::retention::Action;
    let mut summary = format!(
        "\n**Retention{}:** {} kept, {} {}{}\n\n| Backup | Decision | Why |\n|---|---|---|\n",
        if p.dry_run { " (dry run)" } else { "" },
        p.kept(),
        deleted,
        if p.dry_run {
            "would be deleted"
        } else {
            "deleted"
        },
        p.plan
            .hold
            .as_ref()
            .map(|h| format!(" — nothing deleted: {h}"))
            .unwrap_or_default()
    );
    const ROWS: usize = 200;
    for d in p.plan.decisions.iter().take(ROWS) {
        let decision = match d.action {
            Action::Keep => "keep",
            Action::Delete if p.dry_run => "would delete",
            Action::Delete => "delete",
            Action::Ignore => "leave",
        };
        summary.push_str(&format!(
            "| `{}` | {decision} | {} |\n",
            md_cell(crate::store::basename(&d.key)),
            md_cell(&d.reasons.join(", "))
        ));
    }
    if p.plan.decisions.len() > ROWS {
        summary.push_str(&format!(
            "| … {} more | | |\n",
            p.plan.decisions.len() - ROWS
        ));
    }
    for f in &p.failures {
        summary.push_str(&format!(
            "\n> ⚠️ could not delete `{}`: {}\n",
            md_cell(&f.key),
            md_cell(&f.message)
        ));
    }
    summary
}
