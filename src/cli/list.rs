//! The `list` command: the backups of one database, newest first (a table on stderr, the
//! report with every backup on stdout).

use anyhow::Result;
use serde::Serialize;

use crate::catalog::prune::{self, Listed};
use crate::cli::action::{Outputs, md_cell};
use crate::cli::config::CatalogConfig;
use crate::cli::errors::InputError;
use crate::cli::finish;
use crate::cli::inputs::RawInputs;
use crate::cli::open;
use crate::cli::report::Status;
use crate::cli::values::boolean;
use crate::util::log;

/// Settings of the `list` command.
#[derive(Debug, Clone)]
pub struct ListConfig {
    pub catalog: CatalogConfig,
    /// Print only the JSON report (no table on stderr).
    pub json: bool,
}

impl ListConfig {
    pub fn from_inputs(raw: &RawInputs) -> Result<Self, InputError> {
        Ok(ListConfig {
            catalog: CatalogConfig::from_inputs(raw)?,
            json: boolean(raw, "json", false)?,
        })
    }
}

/// The report of `list`.
#[derive(Debug, Serialize)]
pub struct ListReport {
    #[serde(flatten)]
    pub status: Status,
    pub bucket: String,
    pub database: String,
    pub backups: Vec<Listed>,
}

/// Run the `list` command; returns the exit code.
pub async fn run(raw: &RawInputs) -> u8 {
    let (report, json) = match list(raw).await {
        Ok(r) => r,
        Err(e) => return finish::fail("List failed", e),
    };
    if !json {
        // The human table goes to stderr with the logs; stdout keeps the JSON line.
        // Manifest fields in the table are untrusted text: one sanitized line per row.
        for line in prune::table(&report.backups).lines() {
            eprintln!("{}", log::sanitize(line));
        }
    }
    let untrusted: Vec<String> = report
        .backups
        .iter()
        .filter(|b| b.untrusted())
        .map(|b| {
            format!(
                "{} ({})",
                b.entry.key,
                b.signature.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if !untrusted.is_empty() {
        return finish::fail(
            "List failed",
            anyhow::anyhow!(
                "{} of {} backups are not signed by a trusted key: {}",
                untrusted.len(),
                report.backups.len(),
                untrusted.join(", ")
            ),
        );
    }
    let mut outputs = Outputs::new();
    outputs.set("bucket", report.bucket.clone());
    let summary = format!(
        "### Backups of `{}` in `{}`\n\n{} backups, {} complete.\n",
        md_cell(&report.database),
        md_cell(&report.bucket),
        report.backups.len(),
        report.backups.iter().filter(|i| i.entry.complete).count()
    );
    finish::succeed(outputs, &report, &summary)
}

async fn list(raw: &RawInputs) -> Result<(ListReport, bool)> {
    let cfg = ListConfig::from_inputs(raw)?;
    raw.warn_unread("list");
    let opened = open::store_checked(&cfg.catalog.store, cfg.catalog.api.as_ref()).await?;
    let name = open::database_dir_name(&cfg.catalog, &opened.budget).await?;
    let backups = prune::list(
        opened.store.as_ref(),
        &cfg.catalog.prefix,
        &name,
        cfg.catalog.identities.as_deref(),
        cfg.catalog.verify_keys.as_deref(),
    )
    .await?;
    let report = ListReport {
        status: Status::ok(&format!("{} backups of {name}", backups.len())),
        bucket: opened.bucket,
        database: name,
        backups,
    };
    Ok((report, cfg.json))
}
