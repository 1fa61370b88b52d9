//! What a run tells its caller: the final JSON line, action outputs and the job summary.
//!
//! The JSON keeps the original Worker's response shape (`success`, `message`, `filename`,
//! `timestamp`, `tableCount`) and adds the rest. The same JSON is the `report` output.

use serde_json::{Value, json};

use crate::action::{Outputs, md_cell};
use crate::manifest::Manifest;
use crate::secrets::redact;
use crate::store::basename;

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
        "### D1 backup of `{}`\n\n| | |\n|---|---|\n| Object | `{}` in `{}` |\n| Time | {} |\n| Method | {} |\n| Tables / rows | {} / {} |\n| SQL / stored | {} / {} bytes ({ratio}, {}) |\n| SHA-256 | `{}` |\n| Duration | {:.1} s |\n",
        md_cell(&m.database.name),
        md_cell(&m.key),
        md_cell(bucket),
        m.timestamp,
        md_cell(&m.method),
        m.table_count,
        m.row_count,
        m.sql.size,
        m.object.size,
        md_cell(&m.compression),
        m.object.sha256,
        m.timings.total_ms as f64 / 1000.0,
    );
    if let Some(b) = &m.bookmark {
        s.push_str(&format!("| Time Travel bookmark | `{}` |\n", md_cell(b)));
    }
    if let Some(c) = m.consistent {
        s.push_str(&format!(
            "| Consistent | {} |\n",
            if c { "yes" } else { "**no**" }
        ));
    }
    for w in &m.warnings {
        s.push_str(&format!("\n> ⚠️ {}\n", md_cell(w)));
    }
    s
}
