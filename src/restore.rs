//! Restoring a backup: to a local SQLite file, or into a D1 database through D1's import API.
//!
//! To a file: the backup is loaded into a temporary file beside the target, checked (hashes,
//! integrity, foreign keys, row counts — see [`crate::verify`]), synced and renamed into
//! place; an existing file is only replaced with `force`.
//!
//! To D1: by default only into an empty database (tables other than `_cf_*` and SQLite's own
//! → refused), never into the database the backup came from without `force`; with `force`
//! the existing user objects are dropped first. The SQL is streamed twice from the store —
//! once to check the object and compute the MD5 that D1's import needs, once to upload it —
//! so memory and disk stay flat. Afterwards the target's row counts are compared with the
//! manifest. Encrypted backups are decrypted in the stream and need the identity.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use md5::{Digest as _, Md5};
use tokio::sync::mpsc;

use crate::codec;
use crate::config::InputError;
use crate::d1::import::ImportStart;
use crate::d1::{D1Client, DatabaseInfo};
use crate::dump::schema::{self, is_internal};
use crate::dump::sql::quote_ident;
use crate::encrypt::Identities;
use crate::log;
use crate::manifest::Manifest;
use crate::source::Source;
use crate::source::d1::D1Source;
use crate::store::ObjectStore;
use crate::verify::{self, Hashing, TableCheck, VerifyReport};

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
        return Err(InputError::new(
            "restore-file",
            format!(
                "{} already exists; choose another path, or set `force` to replace it",
                path.display()
            ),
        )
        .into());
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
    let tmp = dir.join(format!(
        ".{name}.d1-backup-{:08x}.tmp",
        rand::random::<u32>()
    ));
    let result = verify::load_backup(store, manifest, &tmp, identities).await;
    let report = match result {
        Ok(r) if r.verified => r,
        Ok(r) => {
            let _ = std::fs::remove_file(&tmp);
            bail!(
                "the restored database failed its checks: {}",
                r.problems.join("; ")
            );
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(report)
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

/// Restore into the D1 database `target` (name or UUID).
pub async fn to_d1(
    client: Arc<D1Client>,
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    target: &str,
    force: bool,
    create: bool,
    identities: Option<Arc<Identities>>,
) -> Result<D1Restore> {
    if codec::is_encrypted(manifest) && identities.is_none() {
        return Err(codec::identity_needed(manifest).into());
    }
    let (database, created) = match client.resolve_database(target).await {
        Ok(db) => (db, false),
        Err(e) if create && e.chain().any(|c| c.is::<InputError>()) => {
            if crate::config::is_uuid(target) {
                return Err(InputError::new(
                    "restore-to",
                    "`create` needs a database name, not a UUID",
                )
                .into());
            }
            log::info(format!("Creating D1 database {target:?}"));
            (client.create_database(target).await?, true)
        }
        Err(e) => {
            return Err(
                e.context("input `restore-to`: the target database (set `create` to create it)")
            );
        }
    };
    if database.uuid == manifest.database.id && !force {
        return Err(InputError::new(
            "restore-to",
            format!(
                "{:?} is the database this backup was taken from; restoring over it needs `force` (or use Time Travel: wrangler d1 time-travel restore)",
                database.name
            ),
        )
        .into());
    }
    let target_source = D1Source::new(Arc::clone(&client), &database);
    let existing = user_objects(&target_source).await?;
    let mut dropped = Vec::new();
    if !existing.tables.is_empty() {
        if !force {
            return Err(InputError::new(
                "restore-to",
                format!(
                    "database {:?} is not empty (tables {}); restore into an empty database, or set `force` to drop its tables first",
                    database.name,
                    existing.tables.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ")
                ),
            )
            .into());
        }
        dropped = drop_objects(&target_source, &existing).await?;
    }

    // Pass 1: check the object and compute the SQL's MD5 (D1's import key) and size.
    let (md5_hex, sql_size) = sql_md5(Arc::clone(&store), manifest, identities.clone()).await?;
    log::info(format!(
        "Importing {} bytes of SQL into D1 database {:?}",
        sql_size, database.name
    ));
    let bookmark = match client.import_init(&database.uuid, &md5_hex).await? {
        ImportStart::Running { bookmark } => bookmark,
        ImportStart::Upload { url, filename } => {
            // Pass 2: stream the SQL to the upload URL.
            upload_sql(
                &client,
                Arc::clone(&store),
                manifest,
                identities,
                &url,
                (sql_size, &md5_hex),
            )
            .await?;
            client
                .import_ingest(&database.uuid, &md5_hex, &filename)
                .await?
        }
    };
    let done = client
        .import_wait(&database.uuid, &bookmark, Duration::from_secs(3600))
        .await?;

    // Compare the target's row counts with the manifest.
    let mut tables = Vec::new();
    for t in &manifest.tables {
        let found = target_source
            .query(
                &format!("count rows of {:?}", t.name),
                &format!("SELECT count(*) FROM {}", quote_ident(&t.name)),
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
        tables.push(TableCheck {
            name: t.name.clone(),
            expected: t.rows,
            found,
        });
    }
    let bad: Vec<String> = tables
        .iter()
        .filter(|t| !t.ok())
        .map(|t| match t.found {
            Some(n) => format!("{:?}: {n} rows, the manifest says {}", t.name, t.expected),
            None => format!("{:?}: missing", t.name),
        })
        .collect();
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
        "`force`: dropping {} tables and {} views of {:?} before the restore",
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

/// The decompressed SQL as a stream of chunks, produced by a blocking thread; the object's
/// size and SHA-256 are checked against the manifest at the end.
fn sql_stream(
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
) -> mpsc::Receiver<Result<Bytes>> {
    let (tx, rx) = mpsc::channel::<Result<Bytes>>(2);
    let m = manifest.clone();
    tokio::spawn(async move {
        let body = match store.get(&m.key).await {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let tx2 = tx.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<()> {
            use std::io::Read;
            let reader = tokio_util::io::SyncIoBridge::new(body);
            let mut hashing = Hashing::new(reader);
            {
                let mut sql = crate::codec::sql_reader(&mut hashing, &m, identities.as_deref())?;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = sql.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    if tx2.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return Ok(());
                    }
                }
            }
            std::io::copy(&mut hashing, &mut std::io::sink())?;
            let (size, sha) = hashing.finish();
            if size != m.object.size || sha != m.object.sha256 {
                anyhow::bail!(
                    "the stored object ({size} bytes, SHA-256 {sha}) does not match its manifest ({} bytes, {}); not restoring it",
                    m.object.size,
                    m.object.sha256
                );
            }
            Ok(())
        })
        .await
        .map_err(|e| anyhow!("reading the backup failed: {e}"))
        .and_then(|r| r);
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

/// Pass 1: MD5 and size of the SQL (and the object checked against the manifest).
async fn sql_md5(
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
) -> Result<(String, u64)> {
    let mut rx = sql_stream(store, manifest, identities);
    let mut md5 = Md5::new();
    let mut size = 0u64;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk?;
        md5.update(&chunk);
        size += chunk.len() as u64;
    }
    if size != manifest.sql.size {
        bail!(
            "the SQL is {size} bytes, its manifest says {}",
            manifest.sql.size
        );
    }
    Ok((hex::encode(md5.finalize()), size))
}

/// Pass 2: PUT the SQL to D1's upload URL and check the ETag it returns.
async fn upload_sql(
    client: &D1Client,
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
    url: &str,
    (size, md5_hex): (u64, &str),
) -> Result<()> {
    let rx = sql_stream(store, manifest, identities);
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
