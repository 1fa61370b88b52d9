//! The `verify` command: download a backup, check the stored object's size and SHA-256,
//! restore it into a temporary SQLite database and compare it with its manifest.

use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use crate::cli::action::{Outputs, md_cell};
use crate::cli::config::CatalogConfig;
use crate::cli::finish::{self, Failure};
use crate::cli::inputs::RawInputs;
use crate::cli::open;
use crate::cli::report::{self, Status, Verified};
use crate::manifest::Manifest;
use crate::read::verify::{self, VerifyReport};
use crate::util::log;

/// The report of `verify`.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    #[serde(flatten)]
    pub status: Status,
    pub key: String,
    pub bucket: String,
    pub timestamp: String,
    #[serde(flatten)]
    pub verified: Verified,
}

/// Run the `verify` command; returns the exit code.
pub async fn run(raw: &RawInputs) -> u8 {
    let (manifest, bucket, v) = match check(raw).await {
        Ok(r) => r,
        Err(e) => return finish::fail("Verification failed", e),
    };
    for c in &v.checks {
        log::info(format!("verified: {c}"));
    }
    let mut outputs = Outputs::new();
    outputs.set("key", manifest.key.clone());
    outputs.set("bucket", bucket.clone());
    let mut summary = format!("### Verification of `{}`\n", md_cell(&manifest.key));
    let verified = report::verified(&mut outputs, &mut summary, &v);
    let mut report = CheckReport {
        status: Status::ok("Backup verified"),
        key: manifest.key.clone(),
        bucket,
        timestamp: manifest.timestamp.clone(),
        verified,
    };
    if !v.verified {
        let error = anyhow::anyhow!(
            "backup {} failed verification: {}",
            manifest.key,
            v.problems.join("; ")
        );
        // The report says what failed in `verification`; `error` repeats it in one line.
        report.status = Status::failed("Verification failed", &error);
        return finish::failed(Failure {
            message: "Verification failed",
            error,
            report,
            outputs,
            summary,
        });
    }
    finish::succeed(outputs, &report, &summary)
}

async fn check(raw: &RawInputs) -> Result<(Manifest, String, VerifyReport)> {
    let cfg = CatalogConfig::from_inputs(raw)?;
    raw.warn_unread("verify");
    let opened = open::store_checked(&cfg.store, cfg.api.as_ref()).await?;
    let manifest = open::select_backup(&cfg, opened.store.as_ref(), &opened.budget).await?;
    open::print_bookmark(&manifest);
    let _g = log::Group::new(format!("Verify {}", manifest.key));
    let v = verify::verify(Arc::clone(&opened.store), &manifest, cfg.identities.clone()).await?;
    Ok((manifest, opened.bucket, v))
}
