//! The configuration several commands share: the Cloudflare API, the source, the store, and
//! the catalog settings of the commands that work on existing backups. Each command's own
//! settings live in its file (`backup.rs`, `restore.rs`, …).
//!
//! All checks that need no network run here, before anything is read or written: a bad
//! value produces one [`InputError`] naming the input and what it accepts, and the process
//! exits with code 2. Secret values are never echoed in messages.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::errors::{InputError, missing};
use crate::cli::inputs::RawInputs;
use crate::cli::values::{
    boolean, identities, is_sqlite_file, list, prefix, truncate, validate_account_id,
    validate_bucket, validate_database_name, validate_database_ref, validate_token, validate_url,
    verify_keys,
};
use crate::encrypt::Identities;
use crate::keys::sanitize_name;
use crate::sign::VerifyKeys;
use crate::store::s3::ChecksumMode;

type Result<T, E = InputError> = std::result::Result<T, E>;

/// The default Cloudflare API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.cloudflare.com/client/v4";

/// Cloudflare API access.
pub type ApiConfig = crate::d1::Credentials;

/// Where the data comes from.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// A D1 database, by name or UUID, over the REST API.
    D1 { api: ApiConfig, database: String },
    /// A local SQLite file; `name` is used in keys and reports.
    Sqlite { path: PathBuf, name: String },
    /// Several D1 databases (a list, or `*` for the whole account), minus `exclude`.
    D1Many {
        api: ApiConfig,
        databases: DatabaseSet,
        exclude: Vec<String>,
    },
}

/// Which databases a many-database run backs up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSet {
    /// `*`: every database of the account.
    All,
    /// Names or UUIDs, in the order given, without repeats.
    Named(Vec<String>),
}

/// How the S3 client authenticates.
#[derive(Debug, Clone)]
pub enum R2Keys {
    Explicit {
        access_key_id: String,
        secret_access_key: String,
    },
    /// Derive from the API token: id from `/user/tokens/verify`, secret = hex SHA-256(token).
    FromApiToken,
}

/// Where backups go.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    R2 {
        bucket: String,
        endpoint: String,
        keys: R2Keys,
        checksums: ChecksumMode,
    },
    Local {
        dir: PathBuf,
    },
}

/// Settings of the commands that work on existing backups (`list`, `verify`, `restore`,
/// `prune`).
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    pub store: StoreConfig,
    pub api: Option<ApiConfig>,
    pub prefix: String,
    /// The database whose backups to look at: a name or UUID (`database`), or the file name
    /// of `sqlite-file`. `None` when only an explicit `backup-key` is used.
    pub database: Option<String>,
    pub selector: crate::catalog::Selector,
    /// Decrypts encrypted backups (`age-identity` / `age-identity-file`).
    pub identities: Option<Arc<Identities>>,
    /// Only backups signed by one of these keys are trusted (`verify-key`).
    pub verify_keys: Option<Arc<VerifyKeys>>,
}

impl CatalogConfig {
    pub fn from_inputs(raw: &RawInputs) -> Result<Self> {
        let api = api_config(raw)?;
        let store = store_config(raw, api.as_ref())?;
        let database = match (raw.get("database"), raw.get("sqlite-file")) {
            (Some(d), _) => {
                if d == "*" || list(raw, "database").len() > 1 {
                    return Err(InputError::new(
                        "database",
                        "this command works on one database at a time; give one name or UUID (run it once per database)",
                    ));
                }
                validate_database_ref(d)?;
                Some(d.to_string())
            }
            (None, Some(file)) => Some(sanitize_name(
                &PathBuf::from(file)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )),
            (None, None) => None,
        };
        let before = match raw.get("before") {
            None => None,
            Some(v) => Some(crate::catalog::parse_time(v).ok_or_else(|| {
                InputError::new(
                    "before",
                    format!(
                        "{:?} is not a time; use RFC 3339 (`2026-11-28T09:15:00Z`) or a date (`2026-11-28`)",
                        truncate(v, 60)
                    ),
                )
            })?),
        };
        let selector = crate::catalog::Selector::new(raw.get("backup-key"), before);
        if database.is_none() && !matches!(selector, crate::catalog::Selector::Key(_)) {
            return Err(missing(
                "database",
                "the database whose backups to use (or an explicit `backup-key`)",
            ));
        }
        Ok(CatalogConfig {
            store,
            api,
            prefix: prefix(raw)?,
            database,
            selector,
            identities: identities(raw)?,
            verify_keys: verify_keys(raw)?,
        })
    }
}

/// The `database` input of a backup: one name or UUID, a list (comma or newline separated),
/// or `*` for every database of the account.
pub fn database_set(raw: &RawInputs) -> Result<DatabaseSet> {
    let names = list(raw, "database");
    if names.is_empty() {
        return Err(missing(
            "database",
            "the D1 database name or UUID, a list of them, or `*` for all (or set `sqlite-file` to back up a local SQLite file)",
        ));
    }
    if names.iter().any(|n| n == "*") {
        if names.len() > 1 {
            return Err(InputError::new(
                "database",
                "`*` means every database of the account; give it alone (leave some out with `exclude-databases`)",
            ));
        }
        return Ok(DatabaseSet::All);
    }
    let mut unique: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        validate_database_ref(&n)?;
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    Ok(DatabaseSet::Named(unique))
}

/// The API settings, if a token is given; validates account id and base URL.
pub(crate) fn api_config(raw: &RawInputs) -> Result<Option<ApiConfig>> {
    let Some(token) = raw.get("api-token") else {
        return Ok(None);
    };
    validate_token(token)?;
    let account_id = raw
        .get("account-id")
        .ok_or_else(|| missing("account-id", "your Cloudflare account id (32 hex characters, shown in the dashboard's URL and sidebar)"))?;
    validate_account_id(account_id)?;
    let base_url = raw.get("api-base-url").unwrap_or(DEFAULT_API_BASE);
    validate_url(
        "api-base-url",
        base_url,
        boolean(raw, "allow-insecure-http", false)?,
    )?;
    Ok(Some(ApiConfig {
        token: token.to_string(),
        account_id: account_id.to_string(),
        base_url: base_url.trim_end_matches('/').to_string(),
    }))
}

pub(crate) fn source_config(raw: &RawInputs, api: Option<&ApiConfig>) -> Result<SourceConfig> {
    if let Some(file) = raw.get("sqlite-file") {
        let path = PathBuf::from(file);
        if !path.is_file() {
            return Err(InputError::new(
                "sqlite-file",
                format!("{file:?} is not a readable file; give the path of a SQLite database file"),
            ));
        }
        if !is_sqlite_file(&path) {
            return Err(InputError::new(
                "sqlite-file",
                format!(
                    "{file:?} is not a SQLite database (it does not start with the SQLite header); give the path of a SQLite database file"
                ),
            ));
        }
        let name = match raw.get("database") {
            Some(name) => {
                if list(raw, "database").len() > 1 || name == "*" {
                    return Err(InputError::new(
                        "database",
                        "with `sqlite-file`, `database` is the one name used in keys; back up several files in separate runs",
                    ));
                }
                validate_database_name(name)?;
                name.to_string()
            }
            None => sanitize_name(
                &path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "database".to_string()),
            ),
        };
        return Ok(SourceConfig::Sqlite { path, name });
    }
    let databases = database_set(raw)?;
    let api = api.ok_or_else(|| {
        missing(
            "api-token",
            "a Cloudflare API token with D1 read permission (env CLOUDFLARE_API_TOKEN)",
        )
    })?;
    match databases {
        DatabaseSet::Named(mut one) if one.len() == 1 => Ok(SourceConfig::D1 {
            api: api.clone(),
            database: one.remove(0),
        }),
        databases => {
            let exclude = list(raw, "exclude-databases");
            for e in &exclude {
                validate_database_ref(e)
                    .map_err(|e| InputError::new("exclude-databases", e.message))?;
            }
            if let DatabaseSet::Named(names) = &databases
                && names
                    .iter()
                    .all(|n| exclude.iter().any(|e| e.eq_ignore_ascii_case(n)))
            {
                return Err(InputError::new(
                    "exclude-databases",
                    "leaves none of the databases in `database`; remove entries from it or change `database`",
                ));
            }
            Ok(SourceConfig::D1Many {
                api: api.clone(),
                databases,
                exclude,
            })
        }
    }
}

pub(crate) fn store_config(raw: &RawInputs, api: Option<&ApiConfig>) -> Result<StoreConfig> {
    let bucket = raw.get("bucket");
    let dir = raw.get("output-dir");
    match (bucket, dir) {
        (Some(_), Some(_)) => Err(InputError::new(
            "output-dir",
            "set either `bucket` (R2) or `output-dir` (local directory), not both",
        )),
        (None, None) => Err(missing(
            "bucket",
            "the R2 bucket to write to (or `output-dir` for a local directory)",
        )),
        (None, Some(dir)) => {
            let path = PathBuf::from(dir);
            if path.exists() && !path.is_dir() {
                return Err(InputError::new(
                    "output-dir",
                    format!(
                        "{dir:?} exists and is not a directory; give a directory (it is created when missing)"
                    ),
                ));
            }
            Ok(StoreConfig::Local { dir: path })
        }
        (Some(bucket), None) => {
            validate_bucket(bucket)?;
            let endpoint = match raw.get("r2-endpoint") {
                Some(e) => {
                    validate_url(
                        "r2-endpoint",
                        e,
                        boolean(raw, "allow-insecure-http", false)?,
                    )?;
                    e.trim_end_matches('/').to_string()
                }
                None => {
                    let account = raw.get("account-id").ok_or_else(|| {
                        missing(
                            "r2-endpoint",
                            "an S3 endpoint, or `account-id` so the default `https://<account-id>.r2.cloudflarestorage.com` can be used",
                        )
                    })?;
                    validate_account_id(account)?;
                    format!("https://{account}.r2.cloudflarestorage.com")
                }
            };
            let keys = match (raw.get("r2-access-key-id"), raw.get("r2-secret-access-key")) {
                (Some(id), Some(secret)) => {
                    for (input, value) in
                        [("r2-access-key-id", id), ("r2-secret-access-key", secret)]
                    {
                        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                            return Err(InputError::new(
                                input,
                                "contains whitespace or control characters; paste the key exactly as R2 shows it",
                            ));
                        }
                    }
                    R2Keys::Explicit {
                        access_key_id: id.to_string(),
                        secret_access_key: secret.to_string(),
                    }
                }
                (None, None) => {
                    if api.is_none() {
                        return Err(missing(
                            "r2-access-key-id",
                            "R2 credentials: set `r2-access-key-id` and `r2-secret-access-key`, or `api-token` (with R2 write permission) to derive them",
                        ));
                    }
                    R2Keys::FromApiToken
                }
                (Some(_), None) => {
                    return Err(missing(
                        "r2-secret-access-key",
                        "the secret that belongs to `r2-access-key-id` (or leave both empty to derive them from `api-token`)",
                    ));
                }
                (None, Some(_)) => {
                    return Err(missing(
                        "r2-access-key-id",
                        "the key id that belongs to `r2-secret-access-key` (or leave both empty to derive them from `api-token`)",
                    ));
                }
            };
            let checksums = match raw.get("s3-checksums").unwrap_or("when-required") {
                "when-required" => ChecksumMode::WhenRequired,
                "when-supported" => ChecksumMode::WhenSupported,
                other => {
                    return Err(InputError::new(
                        "s3-checksums",
                        format!(
                            "{other:?} is not accepted; use `when-required` or `when-supported`"
                        ),
                    ));
                }
            };
            Ok(StoreConfig::R2 {
                bucket: bucket.to_string(),
                endpoint,
                keys,
                checksums,
            })
        }
    }
}
