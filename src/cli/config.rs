//! Validated configuration, built from [`RawInputs`].
//!
//! All checks that need no network run here, before anything is read or written: a bad
//! value produces one [`InputError`] naming the input and what it accepts, and the process
//! exits with code 2. Secret values are never echoed in messages.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::inputs::{RawInputs, spec};
use crate::encrypt::{Identities, Recipients};

/// The default Cloudflare API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.cloudflare.com/client/v4";

/// Bad input: names the input and says what it accepts. Exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input `{input}`: {message}")]
pub struct InputError {
    pub input: String,
    pub message: String,
}

impl InputError {
    pub fn new(input: &str, message: impl Into<String>) -> Self {
        Self {
            input: input.to_string(),
            message: message.into(),
        }
    }
}

type Result<T, E = InputError> = std::result::Result<T, E>;

/// Cloudflare API access.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub token: String,
    pub account_id: String,
    pub base_url: String,
}

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

/// S3 request checksum behaviour (R2 recommends `WhenRequired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    WhenRequired,
    WhenSupported,
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

/// How the SQL is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Paged read queries: exact values, never blocks the database.
    Query,
    /// D1's export API: one snapshot, blocks the database while it runs.
    Export,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Query => "query",
            Method::Export => "export",
        }
    }
}

/// What goes into the dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub tables: Option<Vec<String>>,
    pub exclude_tables: Vec<String>,
    pub no_data: bool,
    pub no_schema: bool,
}

/// Settings of the backup command.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub source: SourceConfig,
    pub store: StoreConfig,
    /// Optional API access even for a local source (needed to derive R2 keys).
    pub api: Option<ApiConfig>,
    pub prefix: String,
    pub compression_level: i32,
    /// zstd worker threads; `None` = one per CPU (at most 4).
    pub compression_threads: Option<u32>,
    pub method: Method,
    pub export_timeout: std::time::Duration,
    pub consistency_retries: u32,
    pub selection: Selection,
    /// `None`: no progress lines.
    pub progress_interval: Option<std::time::Duration>,
    /// Verify the backup after writing it.
    pub verify: bool,
    /// Prune after a successful backup (empty: never).
    pub retention: crate::retention::Policy,
    pub dry_run: bool,
    /// How many databases a many-database run backs up at once.
    pub concurrency: usize,
    /// Encrypt for these age recipients (`encrypt-recipients`); `None`: no encryption.
    pub encryption: Option<Arc<Recipients>>,
    /// Decrypts the fresh backup for the full verification (`age-identity`); without it an
    /// encrypted backup is verified by size and SHA-256 only.
    pub identities: Option<Arc<Identities>>,
}

impl BackupConfig {
    /// Validate everything the backup command needs.
    pub fn from_inputs(raw: &RawInputs) -> Result<Self> {
        let api = api_config(raw)?;
        let source = source_config(raw, api.as_ref())?;
        let store = store_config(raw, api.as_ref())?;
        let method = method(raw)?;
        let concurrency = match &source {
            SourceConfig::D1Many { .. } => concurrency(raw)?,
            _ => 1,
        };
        if method == Method::Export && matches!(source, SourceConfig::Sqlite { .. }) {
            return Err(InputError::new(
                "method",
                "`export` uses D1's export API and needs a D1 database; a local SQLite file is read with `query`",
            ));
        }
        Ok(BackupConfig {
            source,
            store,
            api,
            prefix: prefix(raw)?,
            compression_level: compression_level(raw)?,
            compression_threads: compression_threads(raw)?,
            method,
            export_timeout: duration(raw, "export-timeout", 30 * 60)?,
            consistency_retries: count(raw, "consistency-retries", 2, 10)?,
            selection: selection(raw)?,
            progress_interval: match raw.get("progress-interval") {
                Some("0") => None,
                _ => Some(duration(raw, "progress-interval", 10)?),
            },
            verify: boolean(raw, "verify", true)?,
            retention: retention_policy(raw)?,
            dry_run: boolean(raw, "dry-run", false)?,
            encryption: recipients(raw)?,
            identities: identities(raw)?,
            concurrency,
        })
    }
}

/// The longest duration input accepted (a year).
const MAX_DURATION_SECS: u64 = 366 * 24 * 3600;

/// Whether `path` starts with SQLite's file header (an empty file is a valid, empty database).
fn is_sqlite_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    match std::fs::File::open(path) {
        Ok(mut f) => match f.read(&mut header) {
            Ok(0) => true,
            Ok(16) => &header == b"SQLite format 3\0",
            _ => false,
        },
        Err(_) => false,
    }
}

/// `concurrency`: 1 to 16 databases at a time (default 2).
fn concurrency(raw: &RawInputs) -> Result<usize> {
    match count(raw, "concurrency", 2, 16)? {
        0 => Err(InputError::new(
            "concurrency",
            "\"0\" is not accepted; use a whole number from 1 to 16",
        )),
        n => Ok(n as usize),
    }
}

/// The age recipients of `encrypt-recipients`, if set. A bad key is an input error, found
/// before anything touches the network.
pub fn recipients(raw: &RawInputs) -> Result<Option<Arc<Recipients>>> {
    let entries = list(raw, "encrypt-recipients");
    if entries.is_empty() {
        return Ok(None);
    }
    Recipients::parse(&entries)
        .map(|r| Some(Arc::new(r)))
        .map_err(|e| InputError::new("encrypt-recipients", e.0))
}

/// The age identity of `age-identity` (the key text) or `age-identity-file`, if set.
pub fn identities(raw: &RawInputs) -> Result<Option<Arc<Identities>>> {
    match (raw.get_raw("age-identity"), raw.get("age-identity-file")) {
        (Some(_), Some(_)) => Err(InputError::new(
            "age-identity-file",
            "set either `age-identity` (the key text) or `age-identity-file` (a path), not both",
        )),
        (Some(text), None) => Identities::parse(text, "age-identity")
            .map(|i| Some(Arc::new(i)))
            .map_err(|e| InputError::new("age-identity", e.0)),
        (None, Some(path)) => Identities::from_file(std::path::Path::new(path))
            .map(|i| Some(Arc::new(i)))
            .map_err(|e| InputError::new("age-identity-file", e.0)),
        (None, None) => Ok(None),
    }
}

/// The retention policy from the `keep-*` inputs.
pub fn retention_policy(raw: &RawInputs) -> Result<crate::retention::Policy> {
    let count = |name: &str| -> Result<Option<u32>> {
        match raw.get(name) {
            None => Ok(None),
            Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
                InputError::new(
                    name,
                    format!(
                        "{:?} is not a count; use a whole number (0 or more)",
                        truncate(v, 40)
                    ),
                )
            }),
        }
    };
    let within =
        match raw.get("keep-within") {
            None => None,
            Some(v) => Some(v.parse::<crate::retention::Within>().map_err(|e| {
                InputError::new("keep-within", format!("{:?}: {e}", truncate(v, 40)))
            })?),
        };
    Ok(crate::retention::Policy {
        keep_last: count("keep-last")?,
        keep_hourly: count("keep-hourly")?,
        keep_daily: count("keep-daily")?,
        keep_weekly: count("keep-weekly")?,
        keep_monthly: count("keep-monthly")?,
        keep_yearly: count("keep-yearly")?,
        keep_within: within,
    })
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
        })
    }
}

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
    pub fn from_inputs(raw: &RawInputs) -> Result<Self> {
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

pub fn method(raw: &RawInputs) -> Result<Method> {
    match raw.get("method").map(str::to_ascii_lowercase).as_deref() {
        None | Some("query") => Ok(Method::Query),
        Some("export") => Ok(Method::Export),
        Some(other) => Err(InputError::new(
            "method",
            format!(
                "{:?} is not a method; use `query` or `export`",
                truncate(other, 40)
            ),
        )),
    }
}

/// A list input: newline-separated when it has newlines, else comma-separated.
pub fn list(raw: &RawInputs, name: &str) -> Vec<String> {
    let Some(v) = raw.get_raw(name) else {
        return Vec::new();
    };
    let sep = if v.contains('\n') { '\n' } else { ',' };
    v.split(sep)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn selection(raw: &RawInputs) -> Result<Selection> {
    let tables = list(raw, "tables");
    let no_data = boolean(raw, "no-data", false)?;
    let no_schema = boolean(raw, "no-schema", false)?;
    if no_data && no_schema {
        return Err(InputError::new(
            "no-schema",
            "`no-data` and `no-schema` together leave nothing to back up; set at most one",
        ));
    }
    Ok(Selection {
        tables: (!tables.is_empty()).then_some(tables),
        exclude_tables: list(raw, "exclude-tables"),
        no_data,
        no_schema,
    })
}

/// A duration input: seconds (`90`) or a number with `s`, `m` or `h`.
pub fn duration(raw: &RawInputs, name: &str, default_secs: u64) -> Result<std::time::Duration> {
    let Some(v) = raw.get(name) else {
        return Ok(std::time::Duration::from_secs(default_secs));
    };
    let (num, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 && mult > 0 && n.saturating_mul(mult) <= MAX_DURATION_SECS => {
            Ok(std::time::Duration::from_secs(n * mult))
        }
        _ => Err(InputError::new(
            name,
            format!(
                "{:?} is not a duration; use seconds (`900`) or a number with s, m or h (`90s`, `30m`, `2h`)",
                truncate(v, 40)
            ),
        )),
    }
}

/// A small count input in `0..=max`.
pub fn count(raw: &RawInputs, name: &str, default: u32, max: u32) -> Result<u32> {
    match raw.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(InputError::new(
                name,
                format!(
                    "{:?} is not accepted; use a whole number from 0 to {max}",
                    truncate(v, 40)
                ),
            )),
        },
    }
}

/// The API settings, if a token is given; validates account id and base URL.
fn api_config(raw: &RawInputs) -> Result<Option<ApiConfig>> {
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

fn source_config(raw: &RawInputs, api: Option<&ApiConfig>) -> Result<SourceConfig> {
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

fn store_config(raw: &RawInputs, api: Option<&ApiConfig>) -> Result<StoreConfig> {
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

fn missing(input: &str, what: &str) -> InputError {
    let env = spec(input)
        .map(|s| {
            s.env
                .iter()
                .map(|e| format!("env {e}"))
                .chain(std::iter::once(format!(
                    "env D1_BACKUP_{}",
                    input.to_ascii_uppercase().replace('-', "_")
                )))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    InputError::new(
        input,
        format!("is required: {what} (flag --{input}, action input `{input}`, {env})"),
    )
}

pub fn validate_token(token: &str) -> Result<()> {
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InputError::new(
            "api-token",
            "contains whitespace or control characters; paste the token exactly as Cloudflare shows it",
        ));
    }
    if token.len() < 20 {
        return Err(InputError::new(
            "api-token",
            "is too short to be a Cloudflare API token (they are 40 characters)",
        ));
    }
    Ok(())
}

pub fn validate_account_id(id: &str) -> Result<()> {
    if id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(InputError::new(
            "account-id",
            format!(
                "{:?} is not a Cloudflare account id; expected 32 hexadecimal characters",
                truncate(id, 64)
            ),
        ))
    }
}

/// A D1 database reference: a UUID (8-4-4-4-12 hex) or a name.
pub fn validate_database_ref(db: &str) -> Result<()> {
    if looks_like_uuid_attempt(db) {
        if is_uuid(db) {
            return Ok(());
        }
        return Err(InputError::new(
            "database",
            format!(
                "{:?} looks like a UUID but is malformed; expected 8-4-4-4-12 hexadecimal digits, or a database name",
                truncate(db, 64)
            ),
        ));
    }
    validate_database_name(db)
}

fn validate_database_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(InputError::new(
            "database",
            format!(
                "{:?} is not a valid D1 database name or UUID; names use letters, digits, `-` and `_` (at most 64)",
                truncate(name, 64)
            ),
        ))
    }
}

/// True for a canonical 8-4-4-4-12 hexadecimal UUID.
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// 36 characters with hyphens at UUID positions: meant as a UUID.
fn looks_like_uuid_attempt(s: &str) -> bool {
    s.len() == 36 && s.matches('-').count() == 4
}

/// R2 bucket names: 3–63 characters, lower-case letters, digits and hyphens, starting and
/// ending with a letter or digit.
pub fn validate_bucket(bucket: &str) -> Result<()> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && bucket
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && bucket
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(InputError::new(
            "bucket",
            format!(
                "{:?} is not a valid R2 bucket name; use 3-63 lower-case letters, digits and hyphens, starting and ending with a letter or digit",
                truncate(bucket, 80)
            ),
        ))
    }
}

/// An http(s) URL. Plain `http://` only to this machine (loopback), unless
/// `allow_insecure_http`: a token or S3 secret must never cross a network in clear text.
pub fn validate_url(input: &str, url: &str, allow_insecure_http: bool) -> Result<()> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    let ok = host.is_some_and(|h| {
        !h.is_empty()
            && !h.contains('@')
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    }) && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        let host = host.unwrap_or_default();
        if url.starts_with("http://") && !allow_insecure_http && !is_loopback(host) {
            return Err(InputError::new(
                input,
                format!(
                    "{:?} is plain http:// to {host:?}, which is not this machine: credentials would cross the network unencrypted. Use https://, or set `allow-insecure-http: true` if the network is yours",
                    truncate(url, 100)
                ),
            ));
        }
        Ok(())
    } else {
        Err(InputError::new(
            input,
            format!(
                "{:?} is not an http(s) URL; expected e.g. `https://host[:port][/path]`",
                truncate(url, 100)
            ),
        ))
    }
}

/// Whether `host` (`name`, `name:port`, `[v6]:port`) names this machine.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A key prefix: no leading `/`, no `.`/`..` segments, no control characters.
pub fn prefix(raw: &RawInputs) -> Result<String> {
    let Some(p) = raw.get("prefix") else {
        return Ok(String::new());
    };
    let bad = |why: &str| {
        Err(InputError::new(
            "prefix",
            format!(
                "{:?} {why}; use something like `backups/` or `prod/d1/`",
                truncate(p, 80)
            ),
        ))
    };
    if p.starts_with('/') {
        return bad("must not start with `/`");
    }
    if p.split('/').any(|seg| seg == ".." || seg == ".") {
        return bad("must not contain `.` or `..` path segments");
    }
    if p.chars().any(|c| c.is_control() || c == '\\') {
        return bad("must not contain control characters or backslashes");
    }
    if p.contains("//") {
        return bad("must not contain empty path segments (`//`)");
    }
    if p.len() > 512 {
        return bad("is longer than 512 bytes");
    }
    Ok(p.to_string())
}

pub fn compression_level(raw: &RawInputs) -> Result<i32> {
    let Some(v) = raw.get("compression-level") else {
        return Ok(3);
    };
    match v.parse::<i32>() {
        Ok(n) if (0..=22).contains(&n) => Ok(n),
        _ => Err(InputError::new(
            "compression-level",
            format!(
                "{:?} is not accepted; use an integer from 1 (fast) to 22 (small), or 0 to store plain SQL",
                truncate(v, 40)
            ),
        )),
    }
}

pub fn compression_threads(raw: &RawInputs) -> Result<Option<u32>> {
    match raw.get("compression-threads") {
        None | Some("auto") => Ok(None),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n <= 64 => Ok(Some(n)),
            _ => Err(InputError::new(
                "compression-threads",
                format!(
                    "{:?} is not accepted; use `auto` or a number of threads from 0 to 64",
                    truncate(v, 40)
                ),
            )),
        },
    }
}

/// Parse a boolean input (`true`/`false`, also `1`/`0`, `yes`/`no`).
pub fn boolean(raw: &RawInputs, name: &str, default: bool) -> Result<bool> {
    match raw.get(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(InputError::new(
                name,
                format!(
                    "{:?} is not a boolean; use `true` or `false`",
                    truncate(&v, 40)
                ),
            )),
        },
    }
}

/// Make a string usable as a key segment: letters, digits, `.`, `_`, `-`.
pub fn sanitize_name(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let out = out.trim_matches('.').to_string();
    if out.is_empty() {
        "database".to_string()
    } else {
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCD";
    const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("api-token", TOKEN),
            ("account-id", ACCOUNT),
            ("database", "my-db"),
            ("bucket", "my-bucket"),
        ]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> RawInputs {
        let mut pairs = base();
        for (k, v) in extra {
            pairs.retain(|(kk, _)| kk != k);
            pairs.push((k, v));
        }
        RawInputs::from_pairs(pairs)
    }

    #[test]
    fn defaults() {
        let c = BackupConfig::from_inputs(&with(&[])).unwrap();
        assert_eq!(c.compression_level, 3);
        assert_eq!(c.prefix, "");
        match c.store {
            StoreConfig::R2 {
                endpoint,
                keys,
                checksums,
                ..
            } => {
                assert_eq!(
                    endpoint,
                    format!("https://{ACCOUNT}.r2.cloudflarestorage.com")
                );
                assert!(matches!(keys, R2Keys::FromApiToken));
                assert_eq!(checksums, ChecksumMode::WhenRequired);
            }
            other => panic!("{other:?}"),
        }
        match c.source {
            SourceConfig::D1 { api, database } => {
                assert_eq!(api.base_url, DEFAULT_API_BASE);
                assert_eq!(database, "my-db");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_name_their_input() {
        let cases: &[(&str, &str, &str)] = &[
            ("compression-level", "abc", "compression-level"),
            ("compression-level", "23", "compression-level"),
            ("compression-level", "-1", "compression-level"),
            ("compression-level", "3.5", "compression-level"),
            ("compression-threads", "many", "compression-threads"),
            ("compression-threads", "-2", "compression-threads"),
            ("method", "dump", "method"),
            ("export-timeout", "soon", "export-timeout"),
            ("export-timeout", "0", "export-timeout"),
            ("export-timeout", "5d", "export-timeout"),
            ("consistency-retries", "11", "consistency-retries"),
            ("consistency-retries", "-1", "consistency-retries"),
            ("no-data", "maybe", "no-data"),
            ("no-schema", "2", "no-schema"),
            ("keep-daily", "seven", "keep-daily"),
            ("keep-last", "-3", "keep-last"),
            ("keep-within", "30", "keep-within"),
            ("keep-within", "1d1y", "keep-within"),
            ("dry-run", "perhaps", "dry-run"),
            ("account-id", "xyz", "account-id"),
            (
                "account-id",
                "0123456789abcdef0123456789abcdeg",
                "account-id",
            ),
            (
                "database",
                "1234567-1234-1234-1234-1234567890123",
                "database",
            ),
            (
                "database",
                "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
                "database",
            ),
            ("database", "has space", "database"),
            ("database", "semi;colon", "database"),
            ("bucket", "Upper", "bucket"),
            ("bucket", "ab", "bucket"),
            ("bucket", "-leading", "bucket"),
            ("bucket", "under_score", "bucket"),
            ("r2-endpoint", "not a url", "r2-endpoint"),
            ("r2-endpoint", "ftp://x", "r2-endpoint"),
            ("r2-endpoint", "https://", "r2-endpoint"),
            ("api-base-url", "localhost:8787", "api-base-url"),
            (
                "api-base-url",
                "http://api.example.invalid/client/v4",
                "api-base-url",
            ),
            ("r2-endpoint", "http://r2.example.invalid", "r2-endpoint"),
            ("allow-insecure-http", "sometimes", "allow-insecure-http"),
            ("prefix", "/abs", "prefix"),
            ("prefix", "a/../b", "prefix"),
            ("prefix", "a//b", "prefix"),
            ("api-token", "short", "api-token"),
            ("api-token", "has a space in the middle of it", "api-token"),
            ("s3-checksums", "always", "s3-checksums"),
            ("r2-access-key-id", "AKIA", "r2-secret-access-key"),
            ("r2-secret-access-key", "s3cr3tvalue", "r2-access-key-id"),
        ];
        for (input, value, expected) in cases {
            let err = BackupConfig::from_inputs(&with(&[(input, value)]))
                .expect_err(&format!("{input}={value:?} should fail"));
            assert_eq!(&err.input, expected, "{input}={value:?}: {err}");
            assert!(err.to_string().contains(expected));
        }
    }

    /// Plain http:// only to this machine, unless explicitly allowed; nothing is resolved.
    #[test]
    fn plain_http_only_to_loopback() {
        let cases = [
            ("https://api.cloudflare.com/client/v4", false, true),
            ("http://127.0.0.1:8787/client/v4", false, true),
            ("http://127.9.9.9", false, true),
            ("http://localhost:9000", false, true),
            ("http://LOCALHOST", false, true),
            ("http://[::1]:9000/x", false, true),
            ("http://api.example.invalid/client/v4", false, false),
            ("http://10.0.0.1:9000", false, false),
            ("http://localhost.example.invalid", false, false),
            ("http://127.0.0.1.example.invalid", false, false),
            ("http://api.example.invalid/client/v4", true, true),
        ];
        for (url, allow, ok) in cases {
            assert_eq!(
                validate_url("api-base-url", url, allow).is_ok(),
                ok,
                "{url} (allow {allow})"
            );
        }
    }

    #[test]
    fn missing_inputs_name_their_input_and_env_names() {
        let err = BackupConfig::from_inputs(&RawInputs::from_pairs([
            ("account-id", ACCOUNT),
            ("database", "db"),
            ("bucket", "bkt"),
        ]))
        .unwrap_err();
        assert_eq!(err.input, "api-token");
        assert!(err.message.contains("CLOUDFLARE_API_TOKEN"));

        let err = BackupConfig::from_inputs(&RawInputs::from_pairs([
            ("api-token", TOKEN),
            ("account-id", ACCOUNT),
            ("database", "db"),
        ]))
        .unwrap_err();
        assert_eq!(err.input, "bucket");

        let err = BackupConfig::from_inputs(&RawInputs::from_pairs([
            ("api-token", TOKEN),
            ("bucket", "bkt"),
            ("database", "db"),
        ]))
        .unwrap_err();
        assert_eq!(err.input, "account-id");
    }

    #[test]
    fn secret_values_never_appear_in_messages() {
        let err = BackupConfig::from_inputs(&with(&[("api-token", "bad token with spaces 12345")]))
            .unwrap_err();
        assert!(!err.to_string().contains("bad token"));
    }

    #[test]
    fn uuid_detection() {
        assert!(is_uuid("0c7a3e3c-8f5c-4a5c-9d1e-2b3c4d5e6f70"));
        assert!(!is_uuid("0c7a3e3c-8f5c-4a5c-9d1e-2b3c4d5e6f7"));
        assert!(validate_database_ref("0c7a3e3c-8f5c-4a5c-9d1e-2b3c4d5e6f70").is_ok());
        assert!(validate_database_ref("prod-db_1").is_ok());
    }

    #[test]
    fn local_source_and_store() {
        let dir = std::env::temp_dir();
        let file = dir.join("d1-backup-config-test.sqlite");
        std::fs::write(&file, b"").unwrap();
        let raw = RawInputs::from_pairs([
            ("sqlite-file", file.to_str().unwrap()),
            ("output-dir", "/tmp/out"),
        ]);
        let c = BackupConfig::from_inputs(&raw).unwrap();
        match c.source {
            SourceConfig::Sqlite { name, .. } => assert_eq!(name, "d1-backup-config-test"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.store, StoreConfig::Local { .. }));
        let err = BackupConfig::from_inputs(&RawInputs::from_pairs([
            ("sqlite-file", "/nonexistent/x.sqlite"),
            ("output-dir", "/tmp/out"),
        ]))
        .unwrap_err();
        assert_eq!(err.input, "sqlite-file");
    }

    #[test]
    fn lists_durations_and_selection() {
        let c = BackupConfig::from_inputs(&with(&[
            ("tables", "a, b ,,c"),
            ("exclude-tables", "x,y\n z"),
            ("export-timeout", "90s"),
            ("method", "EXPORT"),
        ]))
        .unwrap();
        assert_eq!(
            c.selection.tables,
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        // Newline-separated lists keep commas inside names.
        assert_eq!(
            c.selection.exclude_tables,
            vec!["x,y".to_string(), "z".to_string()]
        );
        assert_eq!(c.export_timeout, std::time::Duration::from_secs(90));
        assert_eq!(c.method, Method::Export);
        assert_eq!(c.consistency_retries, 2);
        let err = BackupConfig::from_inputs(&with(&[("no-data", "true"), ("no-schema", "true")]))
            .unwrap_err();
        assert_eq!(err.input, "no-schema");
    }

    #[test]
    fn both_destinations_is_an_error() {
        let err = BackupConfig::from_inputs(&with(&[("output-dir", "/tmp/x")])).unwrap_err();
        assert_eq!(err.input, "output-dir");
    }

    #[test]
    fn names_are_sanitized_for_keys() {
        assert_eq!(sanitize_name("my db/..x"), "my-db-..x");
        assert_eq!(sanitize_name(".."), "database");
    }
}
