//! The `prune` command: apply the `keep-*` retention policy to one database's backups
//! (`dry-run` shows what would happen). Nothing is deleted without a policy, or after a
//! failed backup earlier in the same job.

use anyhow::Result;
use serde::Serialize;

use crate::catalog::prune::{self, PruneOutcome};
use crate::cli::action::{Outputs, md_cell};
use crate::cli::config::CatalogConfig;
use crate::cli::errors::InputError;
use crate::cli::finish;
use crate::cli::inputs::RawInputs;
use crate::cli::open;
use crate::cli::report::{self, Retention, Status};
use crate::cli::values::{boolean, retention_policy};
use crate::retention::Policy;
use crate::util::log;

/// Settings of the `prune` command.
#[derive(Debug, Clone)]
pub struct PruneConfig {
    pub catalog: CatalogConfig,
    pub policy: Policy,
    pub dry_run: bool,
}

impl PruneConfig {
    pub fn from_inputs(raw: &RawInputs) -> Result<Self, InputError> {
        Ok(PruneConfig {
            catalog: CatalogConfig::from_inputs(raw)?,
            policy: retention_policy(raw)?,
            dry_run: boolean(raw, "dry-run", false)?,
        })
    }
}

/// The report of `prune`.
#[derive(Debug, Serialize)]
pub struct PruneReport {
    #[serde(flatten)]
    pub status: Status,
    pub bucket: String,
    pub database: String,
    pub retention: Retention,
}

/// Run the `prune` command; `last_run_failed`: a backup earlier in this job failed.
pub async fn run(raw: &RawInputs, last_run_failed: bool) -> u8 {
    let (p, bucket, name) = match prune(raw, last_run_failed).await {
        Ok(r) => r,
        Err(e) => return finish::fail("Prune failed", e),
    };
    let mut outputs = Outputs::new();
    outputs.set("bucket", bucket.clone());
    let mut summary = format!("### Retention for `{}`\n", md_cell(&name));
    let retention = report::retention(&mut outputs, &mut summary, &p);
    let report = PruneReport {
        status: Status::ok(if p.dry_run {
            "Prune dry run completed"
        } else {
            "Prune completed"
        }),
        bucket,
        database: name,
        retention,
    };
    finish::succeed(outputs, &report, &summary)
}

async fn prune(raw: &RawInputs, last_run_failed: bool) -> Result<(PruneOutcome, String, String)> {
    let cfg = PruneConfig::from_inputs(raw)?;
    raw.warn_unread("prune");
    if cfg.policy.is_empty() {
        log::warn("no keep-* input is set: nothing is ever deleted without a retention policy");
    }
    if last_run_failed {
        log::warn(
            "the backup earlier in this job failed (D1_BACKUP_LAST_RESULT=failure): deleting nothing",
        );
    }
    let opened = open::store_checked(&cfg.catalog.store, cfg.catalog.api.as_ref()).await?;
    let name = open::database_dir_name(&cfg.catalog, &opened.budget).await?;
    let _g = log::Group::new(format!("Retention for {name}"));
    let p = prune::prune(
        opened.store.as_ref(),
        &cfg.catalog.prefix,
        &name,
        &cfg.policy,
        chrono::Utc::now(),
        last_run_failed,
        cfg.dry_run,
        None,
    )
    .await?;
    Ok((p, opened.bucket, name))
}
