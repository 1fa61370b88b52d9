//! Opening what a command works on: the store (checked before use), the source, the database
//! directory of a catalog command, and the backup a `verify` or `restore` picks. Written
//! once here; every command calls it.

use std::sync::Arc;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::catalog::{self, Selector};
use crate::cli::config::{ApiConfig, CatalogConfig, R2Keys, SourceConfig, StoreConfig};
use crate::cli::errors::InputError;
use crate::d1::{Budget, ClientOptions, D1Client};
use crate::manifest::Manifest;
use crate::source::Source;
use crate::source::d1::D1Source;
use crate::source::meter::RowBudget;
use crate::source::sqlite::SqliteSource;
use crate::store::ObjectStore;
use crate::store::local::LocalStore;
use crate::store::s3::S3Store;
use crate::util::{log, secrets};

/// An opened, checked store and the label used in outputs (`bucket`).
pub struct Opened {
    pub store: Arc<dyn ObjectStore>,
    pub bucket: String,
    /// The API request budget shared by every client of this run.
    pub budget: Arc<Budget>,
    /// The rows-read budget shared by every database of this run (unlimited unless set).
    pub rows: Arc<RowBudget>,
}

/// Open the store of `cfg` and check that it can be used (exists, credentials work).
pub async fn store_checked(cfg: &StoreConfig, api: Option<&ApiConfig>) -> Result<Opened> {
    let budget = Arc::new(Budget::cloudflare_default());
    let (store, bucket) = open_store(cfg, api, &budget).await?;
    store.check().await?;
    Ok(Opened {
        store,
        bucket,
        budget,
        rows: Arc::new(RowBudget::default()),
    })
}

/// A D1 client for `api`, sharing `budget`.
pub fn d1_client(api: &ApiConfig, budget: &Arc<Budget>) -> Result<Arc<D1Client>> {
    Ok(Arc::new(D1Client::new(
        api,
        Arc::clone(budget),
        ClientOptions::default(),
    )?))
}

/// Find the manifest a `verify` or `restore` works on.
pub async fn select_backup(
    cfg: &CatalogConfig,
    store: &dyn ObjectStore,
    budget: &Arc<Budget>,
) -> Result<Manifest> {
    let key = match &cfg.selector {
        Selector::Key(k) => k.clone(),
        selector => {
            let name = database_dir_name(cfg, budget).await?;
            let entries = catalog::list_backups(store, &cfg.prefix, &name).await?;
            let picked =
                catalog::pick(&entries, selector, chrono::Utc::now()).ok_or_else(|| {
                    InputError::new(
                        if matches!(selector, Selector::Before(_)) {
                            "before"
                        } else {
                            "backup-key"
                        },
                        format!(
                            "no complete backup of {name:?} under {:?}{} ({} objects found there)",
                            crate::keys::database_dir(&cfg.prefix, &name),
                            match selector {
                                Selector::Before(t) =>
                                    format!(" taken at or before {}", crate::manifest::rfc3339(*t)),
                                _ => String::new(),
                            },
                            entries.len()
                        ),
                    )
                })?;
            picked.key.clone()
        }
    };
    catalog::read_manifest_checked(store, &key, cfg.verify_keys.as_deref()).await
}

/// Print the Time Travel bookmark of a backup and the command that restores D1 to it.
pub fn print_bookmark(m: &Manifest) {
    if let Some(b) = &m.bookmark {
        log::info(format!(
            "Time Travel bookmark of this backup: {b}. Within D1's Time Travel window you can bring the database back to exactly this moment in place: wrangler d1 time-travel restore {} --bookmark={b}",
            m.database.name
        ));
    }
}

/// The key segment of the configured database: its name (resolved when a UUID was given).
pub async fn database_dir_name(cfg: &CatalogConfig, budget: &Arc<Budget>) -> Result<String> {
    let db = cfg
        .database
        .as_deref()
        .ok_or_else(|| InputError::new("database", "is required to find the latest backup"))?;
    if !crate::d1::is_uuid(db) {
        return Ok(crate::keys::sanitize_name(db));
    }
    let api = cfg.api.as_ref().ok_or_else(|| {
        InputError::new(
            "database",
            "is a UUID: give the database name, or `api-token` so the name can be looked up",
        )
    })?;
    let client = d1_client(api, budget)?;
    Ok(crate::keys::sanitize_name(
        &client.resolve_database(db).await?.name,
    ))
}

/// Connect to the data source.
pub async fn open_source(cfg: &SourceConfig, opened: &Opened) -> Result<Arc<dyn Source>> {
    match cfg {
        SourceConfig::Sqlite { path, name } => Ok(Arc::new(SqliteSource::open(path, name)?)),
        SourceConfig::D1 { api, database } => {
            let client = d1_client(api, &opened.budget)?;
            let db = client.resolve_database(database).await?;
            log::debug(format!("resolved database {:?} to {}", db.name, db.uuid));
            Ok(Arc::new(D1Source::metered(
                client,
                &db,
                Arc::clone(&opened.rows),
            )))
        }
        SourceConfig::D1Many { .. } => Err(anyhow::anyhow!(
            "several databases are opened one by one (many::resolve), not as one source"
        )),
    }
}

/// Connect to the destination; returns it and the label used in outputs (`bucket`).
async fn open_store(
    cfg: &StoreConfig,
    api: Option<&ApiConfig>,
    budget: &Arc<Budget>,
) -> Result<(Arc<dyn ObjectStore>, String)> {
    match cfg {
        StoreConfig::Local { dir } => Ok((
            Arc::new(LocalStore::new(dir.clone())),
            dir.display().to_string(),
        )),
        StoreConfig::R2 {
            bucket,
            endpoint,
            keys,
            checksums,
        } => {
            let (id, secret) = match keys {
                R2Keys::Explicit {
                    access_key_id,
                    secret_access_key,
                } => (access_key_id.clone(), secret_access_key.clone()),
                R2Keys::FromApiToken => {
                    let api = api.context("deriving R2 keys needs `api-token`")?;
                    derive_r2_keys(api, budget).await?
                }
            };
            Ok((
                Arc::new(S3Store::new(bucket, endpoint, &id, &secret, *checksums)),
                bucket.clone(),
            ))
        }
    }
}

/// R2 credentials from a Cloudflare API token: id = the token's id, secret = hex SHA-256
/// of the token value (Cloudflare's documented derivation).
async fn derive_r2_keys(api: &ApiConfig, budget: &Arc<Budget>) -> Result<(String, String)> {
    let client = d1_client(api, budget)?;
    let token = client
        .verify_token()
        .await
        .context("deriving R2 keys from `api-token` (set `r2-access-key-id` and `r2-secret-access-key` to skip this)")?;
    let secret = hex::encode(Sha256::digest(api.token.as_bytes()));
    secrets::register(&secret);
    Ok((token.id, secret))
}
