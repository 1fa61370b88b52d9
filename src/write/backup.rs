//! The backup command: dump → compress → store → manifest.
//!
//! Reads the schema first (failing early on unknown table filters, and on virtual tables
//! before any export is started), then streams the SQL through the pipeline into a new
//! object and writes the manifest that marks the backup complete. If the manifest cannot be
//! written the object is deleted again, so nothing is left looking complete when it is not.
//!
//! Consistency: an `export` is one snapshot at its `at_bookmark`. A `query` dump reads the
//! Time Travel bookmark first (or is handed the one the caller just read). When every row
//! came from one request (a transaction in D1) that saw the schema unchanged, the dump is one
//! point in time at or after that bookmark. Otherwise it spans many requests, and the
//! bookmark is read again at the end; if it moved, the database changed during the dump, the
//! upload is aborted and the dump redone, up to `consistency-retries` times; after that the
//! backup is kept and marked `consistent: false`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::d1::export::ExportDone;
use crate::dump::batch::SchemaChanged;
use crate::dump::schema::Schema;
use crate::dump::{self, DumpHeader, DumpOptions, Method};
use crate::encrypt::{self, Recipients};
use crate::keys;
use crate::manifest::{DatabaseRef, Digest, Manifest, Reordered, TableStats, Timings, rfc3339};
use crate::sign::SigningKey;
use crate::source::Source;
use crate::store::parts::plan_part_size;
use crate::store::{ObjectMeta, ObjectStore};
use crate::util::progress::{self, Progress};
use crate::write::compress::Compression;
use crate::write::pipeline::{self, Streamed, Target};
use crate::{dump::export, util::log};

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct BackupJob {
    pub prefix: String,
    pub compression: Compression,
    pub dump: DumpOptions,
    pub method: Method,
    pub export_timeout: Duration,
    pub consistency_retries: u32,
    pub progress_interval: Option<Duration>,
    /// Encrypt with age for these recipients after compressing.
    pub encryption: Option<Arc<Recipients>>,
    /// Sign each manifest (SSHSIG, stored beside it) with this key.
    pub signing: Option<Arc<SigningKey>>,
}

impl BackupJob {
    /// The key extension: `.sql.zst`, `.sql`, plus `.age` when encrypted.
    fn extension(&self) -> String {
        let base = self.compression.extension();
        match self.encryption {
            Some(_) => format!("{base}{}", encrypt::EXTENSION),
            None => base.to_string(),
        }
    }

    fn content_type(&self) -> &'static str {
        match self.encryption {
            Some(_) => encrypt::CONTENT_TYPE,
            None => self.compression.content_type(),
        }
    }

    fn encryption_scheme(&self) -> Option<&'static str> {
        self.encryption.as_ref().map(|_| encrypt::SCHEME)
    }
}

/// The database changed while a `query` dump was read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the database changed during the dump (bookmark {before} → {after})")]
struct Inconsistent {
    before: String,
    after: String,
}

/// What one dump attempt produced, whatever the method.
struct Produced {
    tables: Vec<TableStats>,
    row_count: u64,
    requests: u64,
    warnings: Vec<String>,
    bookmark: Option<String>,
    consistent: bool,
    export_seconds: Option<f64>,
    /// Export only: tables whose CREATE TABLE was moved up.
    moved: Vec<String>,
}

/// Back up `source` into `store`; returns the manifest that was written. `bookmark`: the
/// database's Time Travel bookmark when the caller read it just before (it is not read again).
pub async fn run(
    source: Arc<dyn Source>,
    store: Arc<dyn ObjectStore>,
    job: &BackupJob,
    bookmark: Option<String>,
    cancel: &CancellationToken,
) -> Result<Manifest> {
    let info = source.info().clone();
    log::info(format!(
        "Backing up {} database {:?} to {} (method {})",
        info.kind,
        info.name,
        store.describe(),
        job.method.as_str()
    ));
    // The bookmark is read before the schema: whatever is read after it is at least as new.
    let mut bookmark = match (job.method, bookmark) {
        (Method::Query, None) => Some(read_bookmark(source.as_ref()).await),
        (Method::Query, Some(b)) => Some(Some(b)),
        (Method::Export, _) => None,
    };
    let mut schema = dump::read_schema(source.as_ref(), &job.dump.selection).await?;
    if job.method == Method::Export {
        export::preflight(&schema)?;
    }
    let dangling = dangling_references(&schema);
    for w in &dangling {
        log::warn(w);
    }
    log::info(format!(
        "{} tables to back up{}",
        schema.tables.len(),
        if schema.objects.is_empty() {
            String::new()
        } else {
            format!(
                ", then {} indexes, views and triggers",
                schema.objects.len()
            )
        }
    ));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt > job.consistency_retries;
        let before = bookmark.take();
        match attempt_backup(&source, &store, job, &schema, before, last, cancel).await {
            Err(e) if !last && e.chain().any(|c| c.is::<Inconsistent>()) => {
                log::warn(format!(
                    "{e:#}; retrying ({attempt} of {} retries)",
                    job.consistency_retries
                ));
            }
            Err(e) if !last && e.chain().any(|c| c.is::<SchemaChanged>()) => {
                log::warn(format!(
                    "{e:#}; reading it again ({attempt} of {} retries)",
                    job.consistency_retries
                ));
                schema = dump::read_schema(source.as_ref(), &job.dump.selection).await?;
            }
            other => return other,
        }
    }
}

/// One dump attempt: what it reads and where it writes.
struct Attempt<'a> {
    source: &'a Arc<dyn Source>,
    job: &'a BackupJob,
    schema: &'a Schema,
    cancel: &'a CancellationToken,
}

async fn attempt_backup(
    source: &Arc<dyn Source>,
    store: &Arc<dyn ObjectStore>,
    job: &BackupJob,
    schema: &Schema,
    bookmark: Option<Option<String>>,
    last_attempt: bool,
    cancel: &CancellationToken,
) -> Result<Manifest> {
    let info = source.info().clone();
    let run = Attempt {
        source,
        job,
        schema,
        cancel,
    };
    let clock = Instant::now();
    let started = Utc::now();
    let timestamp = rfc3339(started);
    let key = keys::backup_key(
        &job.prefix,
        &keys::sanitize_name(&info.name),
        started,
        &job.extension(),
    );
    // What is known before the data flows goes into the object metadata.
    let (bookmark_before, export_done) = match job.method {
        Method::Query => {
            let b = match bookmark {
                Some(b) => b,
                None => read_bookmark(source.as_ref()).await,
            };
            (b, None)
        }
        Method::Export => {
            let done = export::start(
                run.d1_client()?,
                &info.id,
                schema,
                &job.dump,
                job.export_timeout,
                cancel,
            )
            .await?;
            (Some(done.bookmark.clone()), Some(done))
        }
    };
    let meta = ObjectMeta {
        content_type: job.content_type().to_string(),
        metadata: ObjectMetadata {
            timestamp: &timestamp,
            table_count: schema.tables.len(),
            database_id: &info.id,
            database_name: &info.name,
            method: job.method.as_str(),
            compression: job.compression.name(),
            bookmark: bookmark_before.as_deref(),
            encryption: job.encryption_scheme(),
        }
        .to_map(),
    };
    let progress = Progress::new(&info.name);
    let _ticker = progress::ticker(Arc::clone(&progress), job.progress_interval);
    let target = Target {
        store: Arc::clone(store),
        key: &key,
        meta: &meta,
        part_size: plan_part_size(info.file_size.map(|s| s.saturating_mul(3))),
        compression: job.compression,
        wrap: job
            .encryption
            .as_ref()
            .map(|r| crate::write::encrypt::wrap(Arc::clone(r))),
        progress: Arc::clone(&progress),
    };
    log::info(format!("Writing {key}"));
    let streamed = match &export_done {
        Some(done) => run.stream_export(target, done).await,
        None => {
            let header = DumpHeader {
                database_name: info.name.clone(),
                database_id: info.id.clone(),
                timestamp: timestamp.clone(),
                method: job.method.as_str().into(),
            };
            run.stream_query(target, &header, bookmark_before, last_attempt, &progress)
                .await
        }
    }
    .with_context(|| format!("backup of {:?} failed", info.name))?;
    for w in &streamed.produced.warnings {
        log::warn(w);
    }
    let manifest = run.manifest(key, timestamp, clock, &streamed);
    write_manifest(store.as_ref(), &manifest, job.signing.as_deref()).await?;
    log::info(format!(
        "Wrote {}: {} tables, {} rows, {} bytes of SQL stored as {} bytes in {} part(s); {} requests{}",
        manifest.key,
        manifest.table_count,
        manifest.row_count,
        manifest.sql.size,
        manifest.object.size,
        streamed.uploaded.parts,
        manifest.requests,
        manifest
            .rows_read
            .map(|n| format!(", {n} rows read"))
            .unwrap_or_default()
    ));
    Ok(manifest)
}

impl Attempt<'_> {
    fn d1_client(&self) -> Result<&Arc<crate::d1::D1Client>> {
        self.source
            .d1_client()
            .ok_or_else(|| anyhow!("the export method needs a D1 database as its source"))
    }

    /// Stream a finished D1 export into the object, byte for byte.
    async fn stream_export(
        &self,
        target: Target<'_>,
        done: &ExportDone,
    ) -> Result<Streamed<Produced>> {
        let client = self.d1_client()?;
        pipeline::stream_to_store(target, self.cancel, |tx| async move {
            let out = export::download(client, done, self.schema, &self.job.dump, &tx, self.cancel)
                .await?;
            Ok(Produced {
                tables: out.tables,
                row_count: out.row_count,
                requests: 0,
                warnings: Vec::new(),
                bookmark: Some(out.bookmark),
                consistent: true,
                export_seconds: Some(out.blocked_seconds),
                moved: out.moved,
            })
        })
        .await
    }

    /// Dump with read queries into the object; the bookmark is read again at the end to
    /// tell whether the database changed meanwhile ([`Inconsistent`] asks for a retry).
    async fn stream_query(
        &self,
        target: Target<'_>,
        header: &DumpHeader,
        before: Option<String>,
        last_attempt: bool,
        progress: &Arc<Progress>,
    ) -> Result<Streamed<Produced>> {
        let source = self.source;
        pipeline::stream_to_store(target, self.cancel, |tx| async move {
            let stats = dump::dump(
                Arc::clone(source),
                self.schema,
                header,
                &self.job.dump,
                &tx,
                self.cancel,
                progress,
            )
            .await?;
            // Rows read in one request (a transaction) that saw the schema unchanged are
            // one point in time, at or after `before`: nothing to check afterwards.
            let one_point =
                source.is_snapshot() || (stats.one_request && source.batch_is_snapshot());
            let after = if one_point {
                before.clone()
            } else {
                read_bookmark(source.as_ref()).await
            };
            let consistent = one_point || (before.is_some() && before == after);
            if !consistent && !last_attempt && before.is_some() && after.is_some() {
                return Err(anyhow!(Inconsistent {
                    before: before.clone().unwrap_or_default(),
                    after: after.unwrap_or_default(),
                }));
            }
            let mut warnings = stats.warnings.clone();
            if !consistent && !source.is_snapshot() {
                warnings.push(self.inconsistency_warning(before.as_deref(), after.as_deref()));
            }
            Ok(Produced {
                tables: stats.tables,
                row_count: stats.row_count,
                requests: stats.requests,
                warnings,
                bookmark: before,
                consistent,
                export_seconds: None,
                moved: Vec::new(),
            })
        })
        .await
    }

    fn inconsistency_warning(&self, before: Option<&str>, after: Option<&str>) -> String {
        match (before, after) {
            (Some(b), Some(a)) => format!(
                "the database changed while it was dumped (bookmark {b} → {a}) and kept changing through {} retries: this backup is not one point in time; back up with D1's export for a snapshot, or at a quieter time",
                self.job.consistency_retries
            ),
            _ => "the Time Travel bookmark could not be read, so this backup's consistency is unknown".to_string(),
        }
    }

    /// The manifest of a backup whose object was written.
    fn manifest(
        &self,
        key: String,
        timestamp: String,
        clock: Instant,
        streamed: &Streamed<Produced>,
    ) -> Manifest {
        let (job, info, produced) = (self.job, self.source.info(), &streamed.produced);
        Manifest {
            format: Manifest::FORMAT,
            tool: "d1-backup".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            key,
            database: DatabaseRef {
                id: info.id.clone(),
                name: info.name.clone(),
                source: info.kind.into(),
            },
            timestamp: timestamp.clone(),
            method: job.method.as_str().into(),
            compression: job.compression.name().into(),
            compression_level: job.compression.level,
            encryption: job.encryption_scheme().map(String::from),
            recipients: job
                .encryption
                .as_ref()
                .map(|r| r.text.clone())
                .unwrap_or_default(),
            object: Digest {
                size: streamed.stream.object_bytes,
                sha256: streamed.stream.object_sha256.clone(),
            },
            sql: Digest {
                size: streamed.stream.sql_bytes,
                sha256: streamed.stream.sql_sha256.clone(),
            },
            table_count: self.schema.tables.len(),
            row_count: produced.row_count,
            tables: produced.tables.clone(),
            bookmark: produced.bookmark.clone(),
            consistent: Some(produced.consistent),
            selection: job.dump.selection.clone(),
            timings: Timings {
                started_at: timestamp,
                finished_at: rfc3339(Utc::now()),
                total_ms: clock.elapsed().as_millis() as u64,
                export_seconds: produced.export_seconds,
            },
            requests: self.source.requests().unwrap_or(produced.requests),
            rows_read: self.source.d1_client().map(|_| self.source.rows_read()),
            warnings: produced.warnings.clone(),
            reordered: (!produced.moved.is_empty()).then(|| Reordered {
                how: export::REORDER_HOW.to_string(),
                tables: produced.moved.clone(),
            }),
        }
    }
}

/// Warnings for kept tables whose foreign keys point at tables left out of the backup: such a
/// backup cannot be restored into D1 (foreign keys are enforced there) on its own.
fn dangling_references(schema: &Schema) -> Vec<String> {
    let kept: std::collections::HashSet<String> = schema
        .tables
        .iter()
        .map(|t| t.name.to_ascii_lowercase())
        .collect();
    schema
        .tables
        .iter()
        .flat_map(|t| {
            t.parents
                .iter()
                .filter(|p| !kept.contains(&p.to_ascii_lowercase()))
                .map(move |p| {
                    format!(
                        "table {:?} references {p:?}, which is not in this backup: it cannot be restored with foreign keys enforced (as D1 does) unless {p:?} already exists",
                        t.name
                    )
                })
        })
        .collect()
}

/// The Time Travel bookmark, or `None` (with a warning) when it cannot be read.
async fn read_bookmark(source: &dyn Source) -> Option<String> {
    match source.bookmark().await {
        Ok(b) => b,
        Err(e) => {
            log::warn(format!(
                "could not read the Time Travel bookmark ({e:#}); the backup's consistency cannot be checked"
            ));
            None
        }
    }
}

/// Store the manifest (after its signature, when signing, so that a complete backup is always a
/// signed one); if that fails, remove what was written so nothing is left half-done.
pub async fn write_manifest(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    signing: Option<&SigningKey>,
) -> Result<()> {
    let body = serde_json::to_vec_pretty(manifest)?;
    let mkey = keys::manifest_key(&manifest.key);
    let mut written = vec![manifest.key.clone()];
    let result = async {
        if let Some(key) = signing {
            let skey = keys::signature_key(&manifest.key);
            let sig = key.sign(&body)?;
            let meta = ObjectMeta {
                content_type: "text/plain".into(),
                metadata: Default::default(),
            };
            written.push(skey.clone());
            store
                .put(&skey, sig.into_bytes().into(), &meta)
                .await
                .with_context(|| format!("writing signature {skey}"))?;
        }
        let meta = ObjectMeta {
            content_type: "application/json".into(),
            metadata: Default::default(),
        };
        store
            .put(&mkey, body.into(), &meta)
            .await
            .with_context(|| format!("writing manifest {mkey}"))
    }
    .await;
    if result.is_err()
        && let Err(del) = store.delete(&written).await
    {
        log::warn(format!("could not remove {}: {del:#}", written.join(", ")));
    }
    result
}

/// Object metadata written with a backup (ASCII-safe values).
pub struct ObjectMetadata<'a> {
    pub timestamp: &'a str,
    pub table_count: usize,
    pub database_id: &'a str,
    pub database_name: &'a str,
    pub method: &'a str,
    pub compression: &'a str,
    pub bookmark: Option<&'a str>,
    pub encryption: Option<&'a str>,
}

impl ObjectMetadata<'_> {
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            m.insert(k.to_string(), crate::store::metadata_value(v));
        };
        put("timestamp", self.timestamp);
        put("table-count", &self.table_count.to_string());
        put("database-id", self.database_id);
        put("database-name", self.database_name);
        put("method", self.method);
        put("compression", self.compression);
        put("tool-version", env!("CARGO_PKG_VERSION"));
        if let Some(b) = self.bookmark {
            put("bookmark", b);
        }
        if let Some(e) = self.encryption {
            put("encryption", e);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_ascii_and_small() {
        let m = ObjectMetadata {
            timestamp: "2026-11-28T09:15:26.123Z",
            table_count: 3,
            database_id: "id",
            database_name: "naïve\ndb",
            method: "query",
            compression: "zstd",
            bookmark: None,
            encryption: None,
        }
        .to_map();
        assert_eq!(m["database-name"], "na%C3%AFve%0Adb");
        assert_eq!(m["table-count"], "3");
        crate::store::validate_metadata(&m).unwrap();
    }
}
