//! Restoring a backup: to a local SQLite file, or into a D1 database through D1's import API.
//!
//! To a file: the backup is loaded into a private (`0600`) temporary file beside the target,
//! checked (hashes, integrity, foreign keys, row counts — see [`crate::read::verify`]), synced and
//! renamed into place; an existing file is only replaced with `force`.
//!
//! To D1: by default only into an empty database (tables other than `_cf_*` and SQLite's own
//! → refused; `force` drops them), and into the database the backup came from only with
//! `overwrite-source` naming it. Nothing is dropped before the whole backup has been checked:
//! it is downloaded once into a private scratch file and its hash checked
//! ([`crate::read::stored`]), then its SQL is read in full — decrypted, decompressed, every
//! statement split and checked, its size and SHA-256 compared with the manifest, and the MD5
//! that D1's import needs computed — and only then are the target's objects dropped and the
//! same checked bytes uploaded. Afterwards the target's row counts are compared with the
//! manifest. Encrypted backups are decrypted in the stream and need the identity.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use md5::{Digest as _, Md5};
use tokio::sync::mpsc;

use crate::d1::import::ImportStart;
use crate::d1::{D1Client, DatabaseInfo, DatabaseNotFound};
use crate::dump::schema::{self, is_internal};
use crate::encrypt::Identities;
use crate::manifest::Manifest;
use crate::read::codec;
use crate::read::stored;
use crate::read::verify::{self, TableCheck, VerifyReport};
use crate::source::Source;
use crate::source::d1::D1Source;
use crate::sqltext::MAX_STATEMENT_BYTES;
use crate::sqltext::quote_ident;
use crate::sqltext::statement::DumpGrammar;
use crate::store::ObjectStore;
use crate::util::log;
use crate::util::scratch::Scratch;

/// A restore that is not allowed as asked: nothing was read, created or dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The target file exists and replacing it was not allowed.
    #[error("{0} already exists")]
    FileExists(String),
    /// A database can only be created by name.
    #[error("a database can only be created by name, not by UUID")]
    CreateNeedsName,
    /// The target database does not exist and creating it was not allowed.
    #[error("the target database {0:?} does not exist")]
    TargetMissing(String),
    /// The target is the database the backup was taken from, and that was not confirmed.
    #[error(
        "{0:?} is the database this backup was taken from: restoring replaces everything in it"
    )]
    IsSource(String),
    /// The target holds tables, and dropping them was not allowed.
    #[error("database {name:?} is not empty (tables {})", tables.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", "))]
    NotEmpty { name: String, tables: Vec<String> },
}

/// Restore to a new SQLite file at `path`.
pub async fn to_file(
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    path: &Path,
    force: bool,
    identities: Option<Arc<Identities>>,
) -> Result<VerifyReport> {
    if codec::is_encrypted(manifest) && identities.is_none() {
        return Err(codec::identity_needed(manifest).into());
    }
    if path.exists() && !force {
        return Err(Refused::FileExists(path.display().to_string()).into());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "restore".into());
    let (tmp, _) = Scratch::create_in(&dir, &format!("{name}.d1-backup"))
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let report = verify::load_backup(store, manifest, tmp.path(), identities).await?;
    if !report.verified {
        bail!(
            "the restored database failed its checks: {}",
            report.problems.join("; ")
        );
    }
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(report)
}

/// What a restore into D1 may do to its target.
#[derive(Debug, Clone, Default)]
pub struct D1Target {
    /// Name or UUID of the target database.
    pub database: String,
    /// Drop the target's objects when it is not empty.
    pub force: bool,
    /// Create the target when it does not exist.
    pub create: bool,
    /// The name or UUID of the backup's own database, given to confirm restoring over it.
    pub overwrite_source: Option<String>,
}

/// Where a D1 restore went.
#[derive(Debug, Clone)]
pub struct D1Restore {
    pub database: DatabaseInfo,
    pub created: bool,
    pub dropped: Vec<String>,
    pub final_bookmark: Option<String>,
    pub tables: Vec<TableCheck>,
    pub import_seconds: f64,
}

/// The row counts of the restored database against the manifest.
async fn count_rows(target: &D1Source, manifest: &Manifest) -> Vec<TableCheck> {
    let mut tables = Vec::with_capacity(manifest.tables.len());
    for t in &manifest.tables {
        let found = target
            .query(
                &format!("count rows of {:?}", t.name),
                &TableCheck::count_sql(&t.name),
            )
            .await
            .ok()
            .and_then(|r| {
                r.rows
                    .first()
                    .and_then(|row| row.first())
                    .and_then(|v| v.as_i64())
            })
            .map(|n| n as u64);
        tables.push(TableCheck::new(t, found));
    }
    tables
}

/// Restore into the D1 database `target.database`.
pub async fn to_d1(
    client: Arc<D1Client>,
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    target: &D1Target,
    identities: Option<Arc<Identities>>,
) -> Result<D1Restore> {
    if codec::is_encrypted(manifest) && identities.is_none() {
        return Err(codec::identity_needed(manifest).into());
    }
    let name = target.database.as_str();
    let found = match client.resolve_database(name).await {
        Ok(db) => Some(db),
        Err(e) if e.is::<DatabaseNotFound>() => {
            if !target.create {
                return Err(e.context(Refused::TargetMissing(name.to_string())));
            }
            if crate::d1::is_uuid(name) {
                return Err(Refused::CreateNeedsName.into());
            }
            None
        }
        Err(e) => return Err(e),
    };
    // Refusals first: nothing is read, created or dropped for a restore that is not allowed.
    let mut existing = None;
    if let Some(db) = &found {
        let is_source = db.uuid == manifest.database.id;
        let confirmed = target
            .overwrite_source
            .as_deref()
            .is_some_and(|c| c == db.name || c == db.uuid);
        if is_source && !confirmed {
            return Err(Refused::IsSource(db.name.clone()).into());
        }
        let objects = user_objects(&D1Source::new(Arc::clone(&client), db)).await?;
        if !objects.tables.is_empty() && !target.force && !is_source {
            return Err(Refused::NotEmpty {
                name: db.name.clone(),
                tables: objects.tables.clone(),
            }
            .into());
        }
        existing = Some(objects);
    }

    // The whole backup is checked before anything in D1 changes.
    let spooled = Arc::new(stored::fetch_intact(store.as_ref(), manifest).await?);
    let (md5_hex, sql_size, statements) = check_sql(&spooled, identities.clone()).await?;
    log::info(format!(
        "Checked {} ({} statements, {sql_size} bytes of SQL)",
        manifest.key, statements
    ));

    let (database, created) = match found {
        Some(db) => (db, false),
        None => {
            log::info(format!("Creating D1 database {name:?}"));
            (client.create_database(name).await?, true)
        }
    };
    let target_source = D1Source::new(Arc::clone(&client), &database);
    let mut dropped = Vec::new();
    if let Some(objects) = existing.filter(|o| !o.tables.is_empty()) {
        dropped = drop_objects(&target_source, &objects).await?;
    }

    log::info(format!(
        "Importing {} bytes of SQL into D1 database {:?}",
        sql_size, database.name
    ));
    let bookmark = match client.import_init(&database.uuid, &md5_hex).await? {
        ImportStart::Running { bookmark } => bookmark,
        ImportStart::Upload { url, filename } => {
            upload_sql(&client, &spooled, identities, &url, (sql_size, &md5_hex)).await?;
            client
                .import_ingest(&database.uuid, &md5_hex, &filename)
                .await?
        }
    };
    let done = client
        .import_wait(&database.uuid, &bookmark, Duration::from_secs(3600))
        .await?;

    let tables = count_rows(&target_source, manifest).await;
    let bad: Vec<String> = tables.iter().filter_map(TableCheck::problem).collect();
    if !bad.is_empty() {
        bail!(
            "the import finished, but the row counts differ from the manifest: {}",
            bad.join("; ")
        );
    }
    Ok(D1Restore {
        database,
        created,
        dropped,
        final_bookmark: done.final_bookmark,
        tables,
        import_seconds: done.duration.as_secs_f64(),
    })
}

/// User tables and other objects of a database.
struct Existing {
    tables: Vec<String>,
    views: Vec<String>,
}

async fn user_objects(source: &D1Source) -> Result<Existing> {
    let s = schema::read(source)
        .await
        .context("reading the target database's schema")?;
    Ok(Existing {
        tables: s
            .tables
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| !is_internal(n))
            .collect(),
        views: s
            .objects
            .iter()
            .filter(|o| o.kind == "view")
            .map(|o| o.name.clone())
            .collect(),
    })
}

/// Drop the user's views and tables (their indexes and triggers go with them), in one
/// request with foreign key checks deferred to its end.
async fn drop_objects(source: &D1Source, existing: &Existing) -> Result<Vec<String>> {
    let mut sql = String::from("PRAGMA defer_foreign_keys=TRUE;");
    for v in &existing.views {
        sql.push_str(&format!("DROP VIEW IF EXISTS {};", quote_ident(v)));
    }
    for t in &existing.tables {
        sql.push_str(&format!("DROP TABLE IF EXISTS {};", quote_ident(t)));
    }
    log::warn(format!(
        "dropping {} tables and {} views of {:?} before the restore, as asked",
        existing.tables.len(),
        existing.views.len(),
        source.info().name
    ));
    source
        .client()
        .raw(&source.info().id, "drop existing objects", &sql, &[])
        .await?;
    Ok(existing
        .tables
        .iter()
        .chain(&existing.views)
        .cloned()
        .collect())
}

/// The checked SQL of a spooled backup as a stream of chunks, produced by a blocking thread.
fn sql_stream(
    spooled: &Arc<stored::Spooled>,
    identities: Option<Arc<Identities>>,
) -> mpsc::Receiver<Result<Bytes>> {
    let (tx, rx) = mpsc::channel::<Result<Bytes>>(2);
    let spooled = Arc::clone(spooled);
    tokio::task::spawn_blocking(move || {
        let result = (|| -> Result<()> {
            use std::io::Read;
            let mut sql = spooled.sql(identities.as_deref())?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = sql.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    return Ok(());
                }
            }
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// Read the whole SQL once before D1 is touched: every statement split and checked as a
/// restore will run it, the SQL's size and SHA-256 against the manifest (a mismatch is a
/// read error), and the MD5 that D1's import is keyed by. Returns (MD5, size, statements).
async fn check_sql(
    spooled: &Arc<stored::Spooled>,
    identities: Option<Arc<Identities>>,
) -> Result<(String, u64, u64)> {
    let spooled = Arc::clone(spooled);
    tokio::task::spawn_blocking(move || {
        let sql = spooled.sql(identities.as_deref())?;
        let mut md5 = Md5Reader {
            inner: sql,
            md5: Md5::new(),
            size: 0,
        };
        let m = spooled.manifest();
        let grammar = if m.selection.no_schema {
            // A data-only backup writes into the tables the target already has.
            DumpGrammar::with_tables(m.tables.iter().map(|t| t.name.as_str()))
        } else {
            DumpGrammar::new()
        };
        let stats = crate::read::load::check_statements(&mut md5, MAX_STATEMENT_BYTES, grammar)
            .context("the backup's SQL would not load into D1; nothing was changed")?;
        Ok((hex::encode(md5.md5.finalize()), md5.size, stats.statements))
    })
    .await
    .context("checking the SQL failed")?
}

/// Computes the MD5 and size of what is read through it.
struct Md5Reader<R> {
    inner: R,
    md5: Md5,
    size: u64,
}

impl<R: std::io::Read> std::io::Read for Md5Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// PUT the checked SQL to D1's upload URL and check the ETag it returns.
async fn upload_sql(
    client: &D1Client,
    spooled: &Arc<stored::Spooled>,
    identities: Option<Arc<Identities>>,
    url: &str,
    (size, md5_hex): (u64, &str),
) -> Result<()> {
    let rx = sql_stream(spooled, identities);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|item| (item.map_err(std::io::Error::other), rx))
    });
    let resp = client
        .http()
        .put(url)
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(stream))
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "uploading the SQL to D1 failed: {}",
                crate::d1::error_chain(&e)
            )
        })?;
    if !resp.status().is_success() {
        bail!(
            "uploading the SQL to D1 failed: HTTP {}",
            resp.status().as_u16()
        );
    }
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    if etag != md5_hex {
        bail!("the SQL did not upload intact (ETag {etag:?}, expected {md5_hex})");
    }
    Ok(())
}
