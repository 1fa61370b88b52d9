//! The `restore` command: pick a backup, then restore it into a new SQLite file or into a
//! D1 database (created on request; an existing one only when empty, or with `force`, and
//! the backup's own database only when named in `overwrite-source`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use crate::cli::action::{Outputs, md_cell};
use crate::cli::config::CatalogConfig;
use crate::cli::errors::{InputError, missing};
use crate::cli::finish;
use crate::cli::inputs::RawInputs;
use crate::cli::open::{self, Opened};
use crate::cli::report::Status;
use crate::cli::values::{boolean, validate_database_ref};
use crate::manifest::Manifest;
use crate::read::restore;
use crate::util::log;

/// Where a restore goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    File(PathBuf),
    D1(String),
}

/// Settings of the restore command.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    pub catalog: CatalogConfig,
    pub target: RestoreTarget,
    pub force: bool,
    pub create: bool,
    /// The backup's own database, named to confirm restoring over it.
    pub overwrite_source: Option<String>,
}

impl RestoreConfig {
    pub fn from_inputs(raw: &RawInputs) -> Result<Self, InputError> {
        let catalog = CatalogConfig::from_inputs(raw)?;
        let target = match (raw.get("restore-file"), raw.get("restore-to")) {
            (Some(_), Some(_)) => {
                return Err(InputError::new(
                    "restore-to",
                    "set either `restore-file` (a SQLite file) or `restore-to` (a D1 database), not both",
                ));
            }
            (Some(f), None) => {
                let path = PathBuf::from(f);
                if path.exists() && !boolean(raw, "force", false)? {
                    return Err(InputError::new(
                        "restore-file",
                        format!(
                            "{f:?} already exists; choose a new path, or set `force` (--force) to replace it"
                        ),
                    ));
                }
                RestoreTarget::File(path)
            }
            (None, Some(d)) => {
                validate_database_ref(d).map_err(|e| InputError::new("restore-to", e.message))?;
                if catalog.api.is_none() {
                    return Err(missing(
                        "api-token",
                        "a Cloudflare API token with D1 edit permission, to import into D1",
                    ));
                }
                RestoreTarget::D1(d.to_string())
            }
            (None, None) => {
                return Err(missing(
                    "restore-file",
                    "where to restore: a SQLite file path (`restore-file`, flag --to-file) or a D1 database (`restore-to`, flag --to-database)",
                ));
            }
        };
        Ok(RestoreConfig {
            catalog,
            target,
            force: boolean(raw, "force", false)?,
            create: boolean(raw, "create", false)?,
            overwrite_source: match raw.get("overwrite-source") {
                Some(d) => {
                    validate_database_ref(d)
                        .map_err(|e| InputError::new("overwrite-source", e.message))?;
                    Some(d.to_string())
                }
                None => None,
            },
        })
    }
}

/// The report of `restore`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    #[serde(flatten)]
    pub status: Status,
    pub key: String,
    pub timestamp: String,
    pub bookmark: Option<String>,
    #[serde(flatten)]
    pub restored: Restored,
}

/// Where the backup went.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Restored {
    File(RestoredFile),
    D1(RestoredD1),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoredFile {
    pub restored_to: String,
    pub row_count: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoredD1 {
    pub restored_to: String,
    pub database_id: String,
    pub created: bool,
    pub dropped: Vec<String>,
    pub final_bookmark: Option<String>,
    pub import_seconds: f64,
}

/// Run the `restore` command; returns the exit code.
pub async fn run(raw: &RawInputs) -> u8 {
    match restore(raw).await {
        Ok((report, outputs, summary)) => finish::succeed(outputs, &report, &summary),
        Err(e) => finish::fail("Restore failed", e),
    }
}

async fn restore(raw: &RawInputs) -> Result<(RestoreReport, Outputs, String)> {
    let cfg = RestoreConfig::from_inputs(raw)?;
    raw.warn_unread("restore");
    let opened = open::store_checked(&cfg.catalog.store, cfg.catalog.api.as_ref()).await?;
    let manifest = open::select_backup(&cfg.catalog, opened.store.as_ref(), &opened.budget).await?;
    log::info(format!(
        "Restoring {} (taken {})",
        manifest.key, manifest.timestamp
    ));
    open::print_bookmark(&manifest);
    let mut outputs = Outputs::new();
    outputs.set("key", manifest.key.clone());
    outputs.set("timestamp", manifest.timestamp.clone());
    if let Some(b) = &manifest.bookmark {
        outputs.set("bookmark", b.clone());
    }
    let mut summary = format!("### Restore of `{}`\n\n", md_cell(&manifest.key));
    let restored = match &cfg.target {
        RestoreTarget::File(path) => to_file(&cfg, &opened, &manifest, path, &mut summary).await?,
        RestoreTarget::D1(target) => to_d1(&cfg, &opened, &manifest, target, &mut summary).await?,
    };
    let (Restored::File(RestoredFile { restored_to, .. })
    | Restored::D1(RestoredD1 { restored_to, .. })) = &restored;
    outputs.set("restored-to", restored_to.clone());
    let report = RestoreReport {
        status: Status::ok("Restore completed"),
        key: manifest.key.clone(),
        timestamp: manifest.timestamp.clone(),
        bookmark: manifest.bookmark.clone(),
        restored,
    };
    Ok((report, outputs, summary))
}

async fn to_file(
    cfg: &RestoreConfig,
    opened: &Opened,
    manifest: &Manifest,
    path: &Path,
    summary: &mut String,
) -> Result<Restored> {
    let _g = log::Group::new(format!("Restore to {}", path.display()));
    let v = restore::to_file(
        Arc::clone(&opened.store),
        manifest,
        path,
        cfg.force,
        cfg.catalog.identities.clone(),
    )
    .await?;
    let shown = path.display().to_string();
    summary.push_str(&format!(
        "Restored into `{}`: {} tables, {} rows; {}\n",
        md_cell(&shown),
        v.tables.len(),
        manifest.row_count,
        v.checks.join("; ")
    ));
    Ok(Restored::File(RestoredFile {
        restored_to: shown,
        row_count: manifest.row_count,
    }))
}

async fn to_d1(
    cfg: &RestoreConfig,
    opened: &Opened,
    manifest: &Manifest,
    target: &str,
    summary: &mut String,
) -> Result<Restored> {
    let api = cfg
        .catalog
        .api
        .as_ref()
        .ok_or_else(|| InputError::new("api-token", "is required to restore into D1"))?;
    let client = open::d1_client(api, &opened.budget)?;
    let _g = log::Group::new(format!("Restore into D1 database {target}"));
    let r = restore::to_d1(
        client,
        Arc::clone(&opened.store),
        manifest,
        &restore::D1Target {
            database: target.to_string(),
            force: cfg.force,
            create: cfg.create,
            overwrite_source: cfg.overwrite_source.clone(),
        },
        cfg.catalog.identities.clone(),
    )
    .await?;
    summary.push_str(&format!(
        "Imported into D1 database `{}`{} in {:.1} s; row counts of {} tables match the manifest.\n",
        md_cell(&r.database.name),
        if r.created { " (created)" } else { "" },
        r.import_seconds,
        r.tables.len()
    ));
    Ok(Restored::D1(RestoredD1 {
        restored_to: r.database.name,
        database_id: r.database.uuid,
        created: r.created,
        dropped: r.dropped,
        final_bookmark: r.final_bookmark,
        import_seconds: r.import_seconds,
    }))
}
