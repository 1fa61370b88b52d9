//! What a run tells its caller: the final JSON line, action outputs and the job summary.
//!
//! The JSON keeps the original Worker's response shape (`success`, `message`, `filename`,
//! `timestamp`, `tableCount`) and adds the rest. The same JSON is the `report` output.

use serde_json::{Value, json};

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

/// The success report of one backup.
pub fn backup_json(m: &Manifest, bucket: &str) -> Value {
    let mut v = json!({
        "success": true,
        "message": "Backup completed successfully",
        "filename": basename(&m.key),
        "timestamp": m.timestamp,
        "tableCount": m.table_count,
        "key": m.key,
        "bucket": bucket,
        "database": m.database.name,
        "databaseId": m.database.id,
        "method": m.method,
        "compression": m.compression,
        "sizeBytes": m.sql.size,
        "compressedBytes": m.object.size,
        "sha256": m.object.sha256,
        "sqlSha256": m.sql.sha256,
        "rowCount": m.row_count,
        "durationMs": m.timings.total_ms,
        "tables": m.tables.iter().map(|t| json!({"name": t.name, "rows": t.rows})).collect::<Vec<_>>(),
        "warnings": m.warnings,
    });
    if let Some(b) = &m.bookmark {
        v["bookmark"] = json!(b);
    }
    if let Some(c) = m.consistent {
        v["consistent"] = json!(c);
    }
    if let Some(s) = m.timings.export_seconds {
        v["exportSeconds"] = json!(s);
    }
    if let Some(e) = &m.encryption {
        v["encryption"] = json!(e);
    }
    v
}

/// The report as the final stdout line: secrets redacted, and no legacy `##[command]`
/// text (the runner parses it anywhere in a line; `\u005b` is the same JSON string).
pub fn json_line(v: &Value) -> String {
    redact(&v.to_string()).replace("##[", "##\\u005b")
}

/// Turn a report gathered so far into a failure report (keeping what it already says).
pub fn mark_failed(json: &mut Value, message: &str, error: &anyhow::Error) {
    json["success"] = json!(false);
    json["message"] = json!(message);
    json["error"] = json!(redact(&format!("{error:#}")));
}

/// The failure report.
pub fn failure_json(message: &str, error: &anyhow::Error) -> Value {
    json!({
        "success": false,
        "message": message,
        "error": redact(&format!("{error:#}")),
    })
}

/// Action outputs of one backup.
pub fn backup_outputs(out: &mut Outputs, m: &Manifest, bucket: &str, report: &Value) {
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
    out.set("report", report.to_string());
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

/// Add a verification result to the JSON report, the outputs and the summary.
pub fn add_verification(
    json: &mut Value,
    outputs: &mut Outputs,
    summary: &mut String,
    v: &crate::read::verify::VerifyReport,
) {
    json["verified"] = json!(v.verified);
    json["verification"] = json!({ "checks": v.checks, "problems": v.problems, "durationMs": v.duration_ms, "objectOnly": v.object_only });
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
}

/// Add a retention outcome to the JSON report, the outputs and the summary.
pub fn add_prune(
    json: &mut Value,
    outputs: &mut Outputs,
    summary: &mut String,
    p: &crate::catalog::prune::PruneOutcome,
) {
    use crate::retention::Action;
    let would: Vec<&str> = p
        .plan
        .decisions
        .iter()
        .filter(|d| d.action == Action::Delete)
        .map(|d| d.key.as_str())
        .collect();
    let deleted: Vec<&str> = if p.dry_run {
        would.clone()
    } else {
        p.deleted.iter().map(String::as_str).collect()
    };
    json["retention"] = json!({
        "dryRun": p.dry_run,
        "kept": p.kept(),
        "deleted": deleted.len(),
        "deletedKeys": deleted,
        "hold": p.plan.hold.as_ref().map(|h| h.to_string()),
        "failures": p.failures,
        "abortedUploads": p.aborted_uploads,
        "decisions": p.plan.decisions,
    });
    outputs.set("kept", p.kept().to_string());
    outputs.set("deleted", deleted.len().to_string());
    outputs.set("deleted-keys", json!(deleted).to_string());
    summary.push_str(&format!(
        "\n**Retention{}:** {} kept, {} {}{}\n\n| Backup | Decision | Why |\n|---|---|---|\n",
        if p.dry_run { " (dry run)" } else { "" },
        p.kept(),
        deleted.len(),
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
    ));
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
}
