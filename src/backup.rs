//! The backup command: dump → compress → store → manifest.
//!
//! Reads the schema (failing early on unknown table filters), streams the dump through the
//! pipeline into a new object, then writes the manifest that marks the backup complete. If
//! the manifest cannot be written the object is deleted again, so no backup is ever left
//! looking complete when it is not.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::compress::Compression;
use crate::dump::{self, DumpHeader, DumpOptions};
use crate::manifest::{
    self, DatabaseRef, Digest, DumpSelection, Manifest, ObjectMetadata, Timings, rfc3339,
};
use crate::pipeline::{self, Target};
use crate::source::Source;
use crate::store::parts::plan_part_size;
use crate::store::{ObjectMeta, ObjectStore};
use crate::{config, log};

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct BackupJob {
    pub prefix: String,
    pub compression: Compression,
    pub dump: DumpOptions,
}

/// Back up `source` into `store`; returns the manifest that was written.
pub async fn run(
    source: Arc<dyn Source>,
    store: Arc<dyn ObjectStore>,
    job: &BackupJob,
    cancel: &CancellationToken,
) -> Result<Manifest> {
    let started = Utc::now();
    let clock = Instant::now();
    let info = source.info().clone();
    let db_name = config::sanitize_name(&info.name);
    let key = manifest::backup_key(&job.prefix, &db_name, started, job.compression.extension());
    let timestamp = rfc3339(started);
    log::info(format!(
        "Backing up {} database {:?} to {} as {key}",
        info.kind,
        info.name,
        store.describe()
    ));

    let schema = dump::read_schema(source.as_ref(), &job.dump.filter).await?;
    let table_count = schema.tables.len();
    let meta = ObjectMeta {
        content_type: job.compression.content_type().to_string(),
        metadata: ObjectMetadata {
            timestamp: &timestamp,
            table_count,
            database_id: &info.id,
            database_name: &info.name,
            method: "query",
            compression: job.compression.name(),
            bookmark: None,
            encryption: None,
        }
        .to_map(),
    };
    let header = DumpHeader {
        database_name: info.name.clone(),
        database_id: info.id.clone(),
        timestamp: timestamp.clone(),
        method: "query".into(),
    };
    let target = Target {
        store: Arc::clone(&store),
        key: &key,
        meta: &meta,
        part_size: plan_part_size(info.file_size.map(|s| s.saturating_mul(3))),
        compression: job.compression,
        wrap: None,
    };
    let streamed = pipeline::stream_to_store(target, cancel, |tx| {
        let source = Arc::clone(&source);
        let schema = &schema;
        let header = &header;
        let opts = &job.dump;
        async move { dump::dump(source, schema, header, opts, &tx, cancel).await }
    })
    .await
    .with_context(|| format!("backup of {:?} failed", info.name))?;
    let stats = streamed.produced;
    for w in &stats.warnings {
        log::warn(w);
    }

    let finished = Utc::now();
    let manifest = Manifest {
        format: Manifest::FORMAT,
        tool: "d1-backup".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        key: key.clone(),
        database: DatabaseRef {
            id: info.id.clone(),
            name: info.name.clone(),
            source: info.kind.into(),
        },
        timestamp: timestamp.clone(),
        method: "query".into(),
        compression: job.compression.name().into(),
        compression_level: job.compression.level,
        encryption: None,
        object: Digest {
            size: streamed.stream.object_bytes,
            sha256: streamed.stream.object_sha256.clone(),
        },
        sql: Digest {
            size: streamed.stream.sql_bytes,
            sha256: streamed.stream.sql_sha256.clone(),
        },
        table_count: stats.table_count,
        row_count: stats.row_count,
        tables: stats.tables.clone(),
        bookmark: None,
        consistent: source.is_snapshot().then_some(true),
        selection: DumpSelection {
            tables: job.dump.filter.include.clone(),
            exclude_tables: job.dump.filter.exclude.clone(),
            no_data: job.dump.no_data,
            no_schema: job.dump.no_schema,
        },
        timings: Timings {
            started_at: timestamp,
            finished_at: rfc3339(finished),
            total_ms: clock.elapsed().as_millis() as u64,
            export_seconds: None,
        },
        requests: stats.requests,
        warnings: stats.warnings.clone(),
    };
    write_manifest(store.as_ref(), &manifest).await?;
    log::info(format!(
        "Wrote {key}: {} tables, {} rows, {} bytes of SQL stored as {} bytes in {} part(s)",
        manifest.table_count,
        manifest.row_count,
        manifest.sql.size,
        manifest.object.size,
        streamed.uploaded.parts
    ));
    Ok(manifest)
}

/// Store the manifest; if that fails, remove the object so it is not left half-done.
pub async fn write_manifest(store: &dyn ObjectStore, manifest: &Manifest) -> Result<()> {
    let body = serde_json::to_vec_pretty(manifest)?;
    let mkey = Manifest::key_for(&manifest.key);
    let meta = ObjectMeta {
        content_type: "application/json".into(),
        metadata: Default::default(),
    };
    if let Err(e) = store.put(&mkey, body.into(), &meta).await {
        if let Err(del) = store.delete(std::slice::from_ref(&manifest.key)).await {
            log::warn(format!("could not remove {}: {del:#}", manifest.key));
        }
        return Err(e.context(format!("writing manifest {mkey}")));
    }
    Ok(())
}
