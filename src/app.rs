//! The program: parse the command line, gather inputs, run a command, report.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad input (nothing was written),
//! 130/143 interrupted by SIGINT/SIGTERM (any multipart upload is aborted first).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Arg, ArgAction, ArgMatches, Command};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::action::{self, Outputs};
use crate::backup::{self, BackupJob};
use crate::compress::Compression;
use crate::config::{ApiConfig, BackupConfig, InputError, R2Keys, SourceConfig, StoreConfig};
use crate::d1::{Budget, ClientOptions, D1Client};
use crate::dump::{DumpOptions, TableFilter};
use crate::inputs::{INPUTS, RawInputs};
use crate::source::Source;
use crate::source::d1::D1Source;
use crate::source::sqlite::SqliteSource;
use crate::store::ObjectStore;
use crate::store::local::LocalStore;
use crate::store::s3::S3Store;
use crate::{Cancelled, log, report, secrets};

/// Build the command-line interface. Every input is also a `--flag` of the same name.
pub fn cli() -> Command {
    let mut cmd = Command::new("d1-backup")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Back up Cloudflare D1 databases (or local SQLite files) to R2, any S3 store, or a directory, as exact zstd-compressed SQL")
        .after_help("Every option can also be given as an action input (INPUT_<NAME>) or as D1_BACKUP_<NAME> in the environment; see the README for the Cloudflare-style names (CLOUDFLARE_API_TOKEN, …).")
        .subcommand(Command::new("backup").about("Back up a database (the default)"))
        .arg(
            Arg::new("verbose")
                .long("verbose")
                .short('v')
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Print debug output (also on with RUNNER_DEBUG=1)"),
        )
        .arg(
            Arg::new("quiet")
                .long("quiet")
                .short('q')
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Print only warnings, errors and the final report"),
        );
    for spec in INPUTS.iter().filter(|s| s.name != "command") {
        cmd = cmd.arg(
            Arg::new(spec.name)
                .long(spec.name)
                .value_name("VALUE")
                .global(true)
                .help(spec.description),
        );
    }
    cmd
}

/// Keep glibc from hoarding freed buffers. Its default mmap threshold rises after large
/// blocks are freed, so later page-sized buffers come from the heap and fragment it; a fixed
/// threshold returns every large buffer to the system on free, keeping memory flat.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Entry point used by `main`.
pub fn main_entry() -> ExitCode {
    tune_allocator();
    let matches = match cli().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error(format!("cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(matches, std::env::vars().collect()));
    // Do not wait for stuck background work (e.g. a blocked upload) at exit.
    runtime.shutdown_timeout(Duration::from_secs(2));
    ExitCode::from(code)
}

/// Run with parsed arguments and an environment; returns the exit code.
pub async fn run(matches: ArgMatches, env: Vec<(String, String)>) -> u8 {
    let mut flags = BTreeMap::new();
    for spec in INPUTS.iter().filter(|s| s.name != "command") {
        if let Some(v) = matches.get_one::<String>(spec.name) {
            flags.insert(spec.name.to_string(), v.clone());
        }
    }
    let raw = RawInputs::collect(&flags, env.clone());
    for s in raw.secret_values() {
        secrets::register(s);
    }
    if action::is_actions() {
        secrets::set_announcer(action::add_mask);
    }
    let debug =
        matches.get_flag("verbose") || env.iter().any(|(k, v)| k == "RUNNER_DEBUG" && v == "1");
    log::set_debug(debug);
    log::set_quiet(matches.get_flag("quiet"));

    let command = match matches.subcommand_name() {
        Some(c) => c.to_string(),
        None => raw.get("command").unwrap_or("backup").to_ascii_lowercase(),
    };
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(cancel.clone()));
    let code = match command.as_str() {
        "backup" => run_backup(&raw, &cancel).await,
        other => fail(
            "Backup failed",
            &InputError::new(
                "command",
                format!("{other:?} is not a command; use `backup`"),
            )
            .into(),
        ),
    };
    signals.abort();
    code
}

/// Exit code of the signal that cancelled the run (130 SIGINT, 143 SIGTERM), 0 if none.
static SIGNAL_EXIT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Wait for SIGINT/SIGTERM: cancel the run, and exit hard if it does not stop in time.
/// The runner sends SIGINT, waits 7.5 s, sends SIGTERM, waits 2.5 s, then kills.
async fn watch_signals(cancel: CancellationToken) {
    let signal = wait_for_signal().await;
    let code = if signal == "SIGINT" { 130 } else { 143 };
    SIGNAL_EXIT.store(code, std::sync::atomic::Ordering::SeqCst);
    log::error(format!(
        "received {signal}: cancelling (aborting any upload)"
    ));
    action::error_annotation("Backup cancelled", &format!("received {signal}"));
    cancel.cancel();
    tokio::time::sleep(Duration::from_secs(6)).await;
    log::error("did not stop within 6 s of the signal; exiting");
    std::process::exit(code.into());
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        std::future::pending::<()>().await;
        return "signal";
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

/// Exit code for an error: 2 for bad input, 130 when cancelled, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<InputError>()) {
        2
    } else if err.chain().any(|e| e.is::<Cancelled>()) {
        match SIGNAL_EXIT.load(std::sync::atomic::Ordering::SeqCst) {
            0 => 130,
            code => code,
        }
    } else {
        1
    }
}

/// Report a failure (log, annotation, outputs, JSON line) and return its exit code.
fn fail(message: &str, err: &anyhow::Error) -> u8 {
    let text = format!("{err:#}");
    log::error(&text);
    action::error_annotation(message, &text);
    let json = report::failure_json(message, err);
    let mut outputs = Outputs::new();
    outputs.set("report", json.to_string());
    if let Err(e) = outputs.write() {
        log::error(format!("{e:#}"));
    }
    println!("{}", secrets::redact(&json.to_string()));
    exit_code(err)
}

async fn run_backup(raw: &RawInputs, cancel: &CancellationToken) -> u8 {
    let result = async {
        let cfg = BackupConfig::from_inputs(raw)?;
        warn_unread(raw, "backup");
        let connect = log::Group::new("Connect");
        let budget = Arc::new(Budget::cloudflare_default());
        let source = open_source(&cfg.source, &budget).await?;
        let (store, bucket) = open_store(&cfg.store, cfg.api.as_ref(), &budget).await?;
        store.check().await?;
        drop(connect);
        let _group = log::Group::new(format!("Back up {}", source.info().name));
        let job = BackupJob {
            prefix: cfg.prefix.clone(),
            compression: Compression::new(cfg.compression_level, cfg.compression_threads),
            dump: DumpOptions {
                filter: TableFilter {
                    include: cfg.selection.tables.clone(),
                    exclude: cfg.selection.exclude_tables.clone(),
                },
                no_data: cfg.selection.no_data,
                no_schema: cfg.selection.no_schema,
                ..DumpOptions::default()
            },
            method: cfg.method,
            export_timeout: cfg.export_timeout,
            consistency_retries: cfg.consistency_retries,
            progress_interval: cfg.progress_interval,
        };
        let manifest = backup::run(source, Arc::clone(&store), &job, cancel).await?;
        Ok::<_, anyhow::Error>((manifest, bucket))
    }
    .await;
    match result {
        Ok((manifest, bucket)) => {
            let json = report::backup_json(&manifest, &bucket);
            let mut outputs = Outputs::new();
            report::backup_outputs(&mut outputs, &manifest, &bucket, &json);
            if let Err(e) = outputs.write() {
                return fail("Backup failed", &e);
            }
            if let Err(e) = action::write_summary(&report::backup_summary(&manifest, &bucket)) {
                log::warn(format!("{e:#}"));
            }
            println!("{}", secrets::redact(&json.to_string()));
            0
        }
        Err(e) => fail("Backup failed", &e),
    }
}

/// Warn about inputs that were set but that `command` never read.
fn warn_unread(raw: &RawInputs, command: &str) {
    let unread = raw.unread();
    if !unread.is_empty() {
        log::warn(format!(
            "input{} {} {} set but not used by `{command}`",
            if unread.len() > 1 { "s" } else { "" },
            unread
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if unread.len() > 1 { "are" } else { "is" }
        ));
    }
}

/// Connect to the data source.
pub async fn open_source(cfg: &SourceConfig, budget: &Arc<Budget>) -> Result<Arc<dyn Source>> {
    match cfg {
        SourceConfig::Sqlite { path, name } => Ok(Arc::new(SqliteSource::open(path, name)?)),
        SourceConfig::D1 { api, database } => {
            let client = Arc::new(D1Client::new(
                api,
                Arc::clone(budget),
                ClientOptions::default(),
            )?);
            let db = client.resolve_database(database).await?;
            log::debug(format!("resolved database {:?} to {}", db.name, db.uuid));
            Ok(Arc::new(D1Source::new(client, &db)))
        }
    }
}

/// Connect to the destination; returns it and the label used in outputs (`bucket`).
pub async fn open_store(
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
pub async fn derive_r2_keys(api: &ApiConfig, budget: &Arc<Budget>) -> Result<(String, String)> {
    let client = D1Client::new(api, Arc::clone(budget), ClientOptions::default())?;
    let token = client
        .verify_token()
        .await
        .context("deriving R2 keys from `api-token` (set `r2-access-key-id` and `r2-secret-access-key` to skip this)")?;
    let secret = hex::encode(Sha256::digest(api.token.as_bytes()));
    secrets::register(&secret);
    Ok((token.id, secret))
}
