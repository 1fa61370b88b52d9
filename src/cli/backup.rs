//! The `backup` command: its settings, one database or many, and what it reports.
//!
//! One database: dump and upload, verify, apply retention; the report, outputs and summary
//! tell what happened at each step. Many databases: the same for each, a bounded number at
//! a time, and the run fails at the end if any failed.

use std::sync::Arc;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use crate::catalog::prune;
use crate::cli::action::{self, Outputs};
use crate::cli::config::{
    ApiConfig, SourceConfig, StoreConfig, api_config, source_config, store_config,
};
use crate::cli::errors::{InputError, explain};
use crate::cli::finish::{self, Failure};
use crate::cli::inputs::RawInputs;
use crate::cli::many;
use crate::cli::open::{self, Opened};
use crate::cli::report::{self, BackupReport, Status};
use crate::cli::unchanged::{self, Check};
use crate::cli::values::{
    boolean, compression_level, compression_threads, concurrency, count, duration, identities,
    method, optional_count, prefix, recipients, retention_policy, selection, shard, signing_key,
    verify_keys,
};
use crate::dump::{DumpOptions, Method};
use crate::encrypt::{Identities, Recipients};
use crate::manifest::{Manifest, Selection};
use crate::read::verify;
use crate::shard::Shard;
use crate::sign::{SigningKey, VerifyKeys};
use crate::source::Source;
use crate::source::d1::D1Source;
use crate::source::meter::RowBudget;
use crate::util::{Cancelled, log, workflow};
use crate::write::backup::{self, BackupJob};
use crate::write::compress::Compression;

type ConfigResult<T> = std::result::Result<T, InputError>;

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
    /// Signs each manifest (`signing-key`).
    pub signing: Option<Arc<SigningKey>>,
    /// Write nothing for a D1 database whose newest verified backup still holds its state.
    pub skip_unchanged: bool,
    /// Only backups signed by these keys stand for a database's state (`verify-key`).
    pub trusted: Option<Arc<VerifyKeys>>,
    /// Rows-read budget of the run (`max-rows-read`).
    pub max_rows_read: Option<u64>,
    /// Back up only this shard of a many-database run (`shard`).
    pub shard: Option<Shard>,
}

impl BackupConfig {
    /// Validate everything the backup command needs.
    pub fn from_inputs(raw: &RawInputs) -> ConfigResult<Self> {
        let api = api_config(raw)?;
        let source = source_config(raw, api.as_ref())?;
        let store = store_config(raw, api.as_ref())?;
        let method = method(raw)?;
        let concurrency = match &source {
            SourceConfig::D1Many { .. } => concurrency(raw)?,
            _ => 1,
        };
        let shard = shard(raw)?;
        if shard.is_some() && !matches!(source, SourceConfig::D1Many { .. }) {
            return Err(InputError::new(
                "shard",
                "splits several databases (a list, or `*`) across jobs; with one database, leave it empty",
            ));
        }
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
            signing: signing_key(raw)?,
            skip_unchanged: boolean(raw, "skip-unchanged", true)?,
            trusted: verify_keys(raw)?,
            max_rows_read: optional_count(raw, "max-rows-read")?,
            shard,
            concurrency,
        })
    }

    /// The engine's job description.
    fn job(&self) -> BackupJob {
        BackupJob {
            prefix: self.prefix.clone(),
            compression: Compression::new(self.compression_level, self.compression_threads),
            dump: DumpOptions {
                selection: self.selection.clone(),
                ..DumpOptions::default()
            },
            method: self.method,
            export_timeout: self.export_timeout,
            consistency_retries: self.consistency_retries,
            progress_interval: self.progress_interval,
            encryption: self.encryption.clone(),
            signing: self.signing.clone(),
        }
    }
}

/// What a backup run covers: one source, or many D1 databases.
enum Targets {
    One(Arc<dyn Source>),
    Many(Vec<many::Target>),
}

/// Run the `backup` command; returns the exit code.
pub async fn run(raw: &RawInputs, cancel: &CancellationToken) -> u8 {
    let (cfg, opened, targets) = match prepare(raw).await {
        Ok(r) => r,
        Err(e) => return finish::fail("Backup failed", e),
    };
    match targets {
        Targets::One(source) => {
            let _group = log::Group::new(format!("Back up {}", source.info().name));
            let one = backup_one(&cfg, source, &opened, cancel).await;
            match one.failure {
                Some((message, error)) => finish::failed(Failure {
                    message,
                    error,
                    report: one.report,
                    outputs: one.outputs,
                    summary: one.summary,
                }),
                None => finish::succeed(one.outputs, &one.report, &one.summary),
            }
        }
        Targets::Many(targets) => run_many(&cfg, &opened, targets, cancel).await,
    }
}

/// Validate the inputs, open and check the store, open the source (or resolve the many).
async fn prepare(raw: &RawInputs) -> Result<(BackupConfig, Opened, Targets)> {
    let cfg = BackupConfig::from_inputs(raw)?;
    raw.warn_unread("backup");
    let _connect = log::Group::new("Connect");
    let mut opened = open::store_checked(&cfg.store, cfg.api.as_ref()).await?;
    opened.rows = Arc::new(RowBudget::new(cfg.max_rows_read));
    let targets = match &cfg.source {
        SourceConfig::D1Many {
            api,
            databases,
            exclude,
        } => {
            let client = open::d1_client(api, &opened.budget)?;
            Targets::Many(many::resolve(client, databases, exclude, cfg.shard).await?)
        }
        single => Targets::One(open::open_source(single, &opened).await?),
    };
    Ok((cfg, opened, targets))
}

/// The result of backing up one database: its report, outputs and summary, and the failure
/// (with its headline) if any step failed.
struct OneBackup {
    report: BackupReport,
    outputs: Outputs,
    summary: String,
    failure: Option<(&'static str, anyhow::Error)>,
}

impl OneBackup {
    /// A backup that failed before it was written.
    fn failed(message: &'static str, error: anyhow::Error) -> OneBackup {
        let error = explain(error);
        OneBackup {
            report: BackupReport::failed(None, message, &error),
            outputs: Outputs::new(),
            summary: String::new(),
            failure: Some((message, error)),
        }
    }

    /// A backup that was written.
    fn written(m: &Manifest, bucket: &str) -> OneBackup {
        let mut outputs = Outputs::new();
        report::backup_outputs(&mut outputs, m, bucket);
        OneBackup {
            report: BackupReport::written(m, bucket),
            outputs,
            summary: report::backup_summary(m, bucket),
            failure: None,
        }
    }

    /// A database that did not change since the backup `m`, which still holds it.
    fn unchanged(m: &Manifest, bucket: &str) -> OneBackup {
        let mut outputs = Outputs::new();
        report::backup_outputs(&mut outputs, m, bucket);
        outputs.set("unchanged", "true");
        outputs.set("rows-read", "0");
        let mut report = BackupReport::written(m, bucket);
        report.status = Status::ok("Unchanged since the last verified backup; nothing was written");
        if let Some(w) = report.written.as_mut() {
            w.unchanged = true;
            w.rows_read = Some(0);
        }
        OneBackup {
            report,
            outputs,
            summary: report::unchanged_summary(m, bucket),
            failure: None,
        }
    }

    /// A later step failed: the report so far, marked failed.
    fn fail(mut self, message: &'static str, error: anyhow::Error) -> OneBackup {
        let error = explain(error);
        self.report.status = Status::failed(message, &error);
        self.failure = Some((message, error));
        self
    }
}

/// Back up one source: dump and upload, verify, apply retention.
async fn backup_one(
    cfg: &BackupConfig,
    source: Arc<dyn Source>,
    opened: &Opened,
    cancel: &CancellationToken,
) -> OneBackup {
    let store = &opened.store;
    let settings = unchanged::Settings {
        enabled: cfg.skip_unchanged,
        prefix: &cfg.prefix,
        selection: &cfg.selection,
        recipients: cfg.encryption.as_ref().map(|r| r.text.as_slice()),
        trusted: cfg.trusted.as_deref(),
    };
    let bookmark = match unchanged::check(&settings, source.as_ref(), opened).await {
        Check::Unchanged(m) => {
            log::info(format!(
                "{}: unchanged since {} (Time Travel bookmark {}); nothing written",
                m.database.name,
                m.key,
                m.bookmark.as_deref().unwrap_or_default()
            ));
            let one = OneBackup::unchanged(&m, &opened.bucket);
            return apply_retention(cfg, opened, &m, one).await;
        }
        Check::Changed(bookmark) => bookmark,
    };
    let manifest = match backup::run(source, Arc::clone(store), &cfg.job(), bookmark, cancel).await
    {
        Ok(m) => m,
        Err(e) => return OneBackup::failed("Backup failed", e),
    };
    let mut one = OneBackup::written(&manifest, &opened.bucket);
    if cfg.verify {
        crate::util::heap::release_free_memory();
        let checked = {
            let _g = log::Group::new(format!("Verify {}", manifest.key));
            verify::verify(Arc::clone(store), &manifest, cfg.identities.clone()).await
        };
        let v = match checked {
            Ok(v) => v,
            Err(e) => return OneBackup::failed("Backup failed", e),
        };
        one.report.verified = Some(report::verified(&mut one.outputs, &mut one.summary, &v));
        for c in &v.checks {
            log::info(format!("verified: {c}"));
        }
        if !v.verified {
            let err = anyhow::anyhow!(
                "backup {} was written but failed verification: {}",
                manifest.key,
                v.problems.join("; ")
            );
            return one.fail("Backup failed verification", err);
        }
    }
    // Retention runs only after a backup that was written and verified.
    apply_retention(cfg, opened, &manifest, one).await
}

/// Retention after a backup that was written and verified, or that still holds the
/// database's state (`manifest` is never deleted).
async fn apply_retention(
    cfg: &BackupConfig,
    opened: &Opened,
    manifest: &Manifest,
    mut one: OneBackup,
) -> OneBackup {
    let store = &opened.store;
    if !cfg.retention.is_empty() {
        let _g = log::Group::new("Retention");
        let database = crate::keys::sanitize_name(&manifest.database.name);
        let pruned = prune::prune(
            store.as_ref(),
            &cfg.prefix,
            &database,
            &cfg.retention,
            chrono::Utc::now(),
            false,
            cfg.dry_run,
            Some(&manifest.key),
        )
        .await;
        match pruned {
            Ok(p) => {
                one.report.retention =
                    Some(report::retention(&mut one.outputs, &mut one.summary, &p));
            }
            Err(e) => {
                let err = e.context(format!(
                    "backup {} succeeded, but pruning failed",
                    manifest.key
                ));
                return one.fail("Retention failed", err);
            }
        }
    }
    one
}

/// Back up many databases, a bounded number at a time; one failure never stops the others.
async fn run_many(
    cfg: &BackupConfig,
    opened: &Opened,
    targets: Vec<many::Target>,
    cancel: &CancellationToken,
) -> u8 {
    log::info(format!(
        "Backing up {} databases, {} at a time",
        targets.len(),
        cfg.concurrency
    ));
    let outcomes = many::run_bounded(targets, cfg.concurrency, |t| async move {
        let label = t.label.clone();
        log::scoped(&label, async move {
            match t.resolved {
                Err(err) => {
                    let err = explain(err);
                    log::error(format!("{err:#}"));
                    many::Outcome::failed(t.label, "Backup failed", err)
                }
                Ok((client, db)) => {
                    log::info(format!("Back up {}", db.name));
                    let source: Arc<dyn Source> =
                        Arc::new(D1Source::metered(client, &db, Arc::clone(&opened.rows)));
                    let one = backup_one(cfg, source, opened, cancel).await;
                    if let Some((_, err)) = &one.failure {
                        log::error(format!("{err:#}"));
                    }
                    many::Outcome::new(db.name, one.report, one.failure.map(|(_, e)| e))
                }
            }
        })
        .await
    })
    .await;
    finish_many(outcomes, &opened.bucket, cancel)
}

/// Finish a many-database run: the report array, counts, one summary row per database.
fn finish_many(outcomes: Vec<many::Outcome>, bucket: &str, cancel: &CancellationToken) -> u8 {
    let reports = many::report(&outcomes);
    let mut outputs = Outputs::new();
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| o.database.as_str())
        .collect();
    outputs.set("succeeded", (outcomes.len() - failed.len()).to_string());
    outputs.set("failed", failed.len().to_string());
    let written = || outcomes.iter().filter_map(|o| o.report.written.as_ref());
    outputs.set(
        "unchanged",
        written().filter(|w| w.unchanged).count().to_string(),
    );
    outputs.set(
        "rows-read",
        written()
            .filter_map(|w| w.rows_read)
            .sum::<u64>()
            .to_string(),
    );
    outputs.set("bucket", bucket);
    outputs.set("report", report::to_json(&reports));
    let summary = many::summary(&outcomes, bucket);
    if let Err(e) = action::write_summary(&summary) {
        log::warn(format!("{e:#}"));
    }
    let code = if failed.is_empty() {
        0
    } else {
        let text = format!(
            "{} of {} databases failed: {}",
            failed.len(),
            outcomes.len(),
            failed.join(", ")
        );
        log::error(&text);
        workflow::error_annotation("Backup failed", &text);
        if cancel.is_cancelled() {
            finish::exit_code(&anyhow::Error::new(Cancelled))
        } else {
            1
        }
    };
    if let Err(e) = outputs.write() {
        log::error(format!("{e:#}"));
        return 1;
    }
    finish::print_report(&reports);
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::config::{DEFAULT_API_BASE, R2Keys, SourceConfig, StoreConfig};
    use crate::store::s3::ChecksumMode;

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
            ("export-timeout", "5w", "export-timeout"),
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
}
