//! The program: parse the command line, gather inputs, run a command, report.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad input (nothing was written),
//! 130/143 interrupted by SIGINT/SIGTERM (any multipart upload is aborted first).

pub mod action;
pub mod config;
pub mod contract;
pub mod inputs;
pub mod many;
pub mod report;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Arg, ArgAction, ArgMatches, Command};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::catalog::prune;
use crate::catalog::{self, Selector};
use crate::d1::{Budget, ClientOptions, D1Client};
use crate::dump::{DumpOptions, TableFilter};
use crate::manifest::Manifest;
use crate::read::{restore, verify};
use crate::source::Source;
use crate::source::d1::D1Source;
use crate::source::sqlite::SqliteSource;
use crate::store::ObjectStore;
use crate::store::local::LocalStore;
use crate::store::s3::S3Store;
use crate::util::{Cancelled, log, secrets};
use crate::write::backup::{self, BackupJob};
use crate::write::compress::Compression;
use action::Outputs;
use config::{
    ApiConfig, BackupConfig, CatalogConfig, InputError, R2Keys, RestoreConfig, RestoreTarget,
    SourceConfig, StoreConfig,
};
use inputs::{INPUTS, RawInputs};

/// Build the command-line interface. Every input is also a `--flag` of the same name.
pub fn cli() -> Command {
    let mut cmd = Command::new("d1-backup")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Back up Cloudflare D1 databases (or local SQLite files) to R2, any S3 store, or a directory, as exact zstd-compressed SQL")
        .after_help("Every option can also be given as an action input (INPUT_<NAME>) or as D1_BACKUP_<NAME> in the environment; see the README for the Cloudflare-style names (CLOUDFLARE_API_TOKEN, …).")
        .subcommand(Command::new("backup").about("Back up a database (the default)"))
        .subcommand(
            Command::new("verify")
                .about("Download a backup, restore it into a temporary SQLite database and check it")
                .arg(Arg::new("key").value_name("KEY|latest").help("Backup key, or `latest` (default)")),
        )
        .subcommand(Command::new("list").about("List the backups of a database, newest first (--json for scripts)"))
        .subcommand(Command::new("prune").about("Apply the keep-* retention policy (--dry-run shows what would happen)"))
        .subcommand(
            Command::new("restore")
                .about("Restore a backup to a SQLite file (--to-file) or into a D1 database (--to-database)")
                .arg(Arg::new("key").value_name("KEY|latest").help("Backup key, or `latest` (default); see also --before")),
        )
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
        let mut arg = Arg::new(spec.name)
            .long(spec.name)
            .value_name("VALUE")
            .global(true)
            .help(spec.description);
        if let Some(alias) = flag_alias(spec.name) {
            arg = arg.visible_alias(alias);
        }
        // Booleans work as plain flags too: `--force` means `--force true`.
        if spec.default == "false" || spec.default == "true" {
            arg = arg.num_args(0..=1).default_missing_value("true");
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Shorter flag names for some inputs.
fn flag_alias(input: &str) -> Option<&'static str> {
    match input {
        "restore-file" => Some("to-file"),
        "restore-to" => Some("to-database"),
        "age-identity-file" => Some("identity-file"),
        _ => None,
    }
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
            if !e.use_stderr() {
                return ExitCode::from(0); // --help, --version
            }
            // Bad command-line syntax is bad input like any other: the JSON report too.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let mut message = first.trim_start_matches("error: ").to_string();
            if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
                message.push_str(
                    "; input `command` accepts `backup`, `list`, `prune`, `verify` or `restore`",
                );
            }
            let json = report::failure_json("Backup failed", &anyhow::anyhow!(message));
            println!("{}", report::json_line(&json));
            return ExitCode::from(2);
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
    // A flag's value is readable by every user of the machine (`ps`, /proc/<pid>/cmdline).
    for spec in INPUTS
        .iter()
        .filter(|s| s.secret && flags.contains_key(s.name))
    {
        let env = spec.env.first().map(|e| e.to_string()).unwrap_or_else(|| {
            format!(
                "D1_BACKUP_{}",
                spec.name.to_ascii_uppercase().replace('-', "_")
            )
        });
        log::warn(format!(
            "`--{}` was given on the command line, where other users of this machine can read it in the process list; set {env} in the environment instead",
            spec.name
        ));
    }

    let command = match matches.subcommand_name() {
        Some(c) => c.to_string(),
        None => raw.get("command").unwrap_or("backup").to_ascii_lowercase(),
    };
    let mut raw = raw;
    if let Some((_, sub)) = matches.subcommand()
        && let Ok(Some(key)) = sub.try_get_one::<String>("key")
    {
        raw.set("backup-key", key);
    }
    let cancel = CancellationToken::new();
    // Only a backup stops gracefully on a signal (it aborts its upload); the other commands
    // remove their scratch files and exit at once.
    let signals = tokio::spawn(watch_signals(cancel.clone(), command == "backup"));
    let code = match command.as_str() {
        "backup" => {
            let code = run_backup(&raw, &cancel).await;
            // Later steps of the job (a separate `prune`) see whether this backup worked.
            let result = if code == 0 { "success" } else { "failure" };
            if let Err(e) = action::export_env("D1_BACKUP_LAST_RESULT", result) {
                log::warn(format!("{e:#}"));
            }
            code
        }
        "verify" => run_verify(&raw).await,
        "restore" => run_restore(&raw).await,
        "list" => run_list(&raw).await,
        "prune" => run_prune(
            &raw,
            env.iter()
                .any(|(k, v)| k == "D1_BACKUP_LAST_RESULT" && v == "failure"),
        )
        .await,
        other => fail(
            "Backup failed",
            &InputError::new(
                "command",
                format!(
                    "{other:?} is not a command; use `backup`, `list`, `prune`, `verify` or `restore`"
                ),
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
async fn watch_signals(cancel: CancellationToken, graceful: bool) {
    let signal = wait_for_signal().await;
    let code = if signal == "SIGINT" { 130 } else { 143 };
    SIGNAL_EXIT.store(code, std::sync::atomic::Ordering::SeqCst);
    if !graceful {
        log::error(format!("received {signal}: stopping"));
        crate::util::scratch::remove_all();
        std::process::exit(code.into());
    }
    log::error(format!(
        "received {signal}: cancelling (aborting any upload)"
    ));
    action::error_annotation("Backup cancelled", &format!("received {signal}"));
    cancel.cancel();
    tokio::time::sleep(Duration::from_secs(6)).await;
    log::error("did not stop within 6 s of the signal; exiting");
    crate::util::scratch::remove_all();
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
    fail_with(message, err, Outputs::new(), None)
}

/// [`fail`], keeping outputs and summary already gathered (e.g. a backup that was written but
/// failed its verification).
fn fail_with(
    message: &str,
    err: &anyhow::Error,
    mut outputs: Outputs,
    summary: Option<String>,
) -> u8 {
    let text = format!("{err:#}");
    log::error(&text);
    action::error_annotation(message, &text);
    let json = report::failure_json(message, err);
    outputs.set("report", json.to_string());
    if let Err(e) = outputs.write() {
        log::error(format!("{e:#}"));
    }
    let summary = format!(
        "{}\n**{}:** {}\n",
        summary.unwrap_or_default(),
        action::md_cell(message),
        action::md_cell(&text)
    );
    if let Err(e) = action::write_summary(&summary) {
        log::warn(format!("{e:#}"));
    }
    println!("{}", report::json_line(&json));
    exit_code(err)
}

/// Print the final report: outputs, summary, JSON line.
fn succeed(mut outputs: Outputs, json: &serde_json::Value, summary: &str) -> u8 {
    outputs.set("report", json.to_string());
    if let Err(e) = outputs.write() {
        return fail("Writing the outputs failed", &e);
    }
    if let Err(e) = action::write_summary(summary) {
        log::warn(format!("{e:#}"));
    }
    println!("{}", report::json_line(json));
    0
}

async fn run_backup(raw: &RawInputs, cancel: &CancellationToken) -> u8 {
    let prepared = async {
        let cfg = BackupConfig::from_inputs(raw)?;
        warn_unread(raw, "backup");
        let connect = log::Group::new("Connect");
        let budget = Arc::new(Budget::cloudflare_default());
        let (store, bucket) = open_store(&cfg.store, cfg.api.as_ref(), &budget).await?;
        store.check().await?;
        let targets = match &cfg.source {
            SourceConfig::D1Many {
                api,
                databases,
                exclude,
            } => {
                let client = Arc::new(D1Client::new(
                    api,
                    Arc::clone(&budget),
                    ClientOptions::default(),
                )?);
                Targets::Many(many::resolve(client, databases, exclude).await?)
            }
            single => Targets::One(open_source(single, &budget).await?),
        };
        drop(connect);
        Ok::<_, anyhow::Error>((cfg, store, bucket, targets))
    }
    .await;
    let (cfg, store, bucket, targets) = match prepared {
        Ok(r) => r,
        Err(e) => return fail("Backup failed", &e),
    };
    match targets {
        Targets::One(source) => {
            let _group = log::Group::new(format!("Back up {}", source.info().name));
            let one = backup_one(&cfg, source, &store, &bucket, cancel).await;
            match one.failure {
                Some((message, err)) => fail_with(message, &err, one.outputs, Some(one.summary)),
                None => succeed(one.outputs, &one.json, &one.summary),
            }
        }
        Targets::Many(targets) => {
            log::info(format!(
                "Backing up {} databases, {} at a time",
                targets.len(),
                cfg.concurrency
            ));
            let outcomes = many::run_bounded(targets, cfg.concurrency, |t| {
                let (cfg, store, bucket) = (&cfg, &store, &bucket);
                async move {
                    let label = t.label.clone();
                    log::scoped(&label, async move {
                        match t.resolved {
                            Err(err) => {
                                log::error(format!("{err:#}"));
                                many::Outcome::failed(t.label, "Backup failed", err)
                            }
                            Ok((client, db)) => {
                                log::info(format!("Back up {}", db.name));
                                let source: Arc<dyn Source> = Arc::new(D1Source::new(client, &db));
                                let one = backup_one(cfg, source, store, bucket, cancel).await;
                                match one.failure {
                                    Some((message, err)) => {
                                        log::error(format!("{err:#}"));
                                        many::Outcome::failed_with(db.name, message, err, one.json)
                                    }
                                    None => many::Outcome::succeeded(db.name, one.json),
                                }
                            }
                        }
                    })
                    .await
                }
            })
            .await;
            finish_many(outcomes, &bucket, cancel)
        }
    }
}

/// What a backup run covers: one source, or many D1 databases.
enum Targets {
    One(Arc<dyn Source>),
    Many(Vec<many::Target>),
}

/// The result of backing up one database: its report, outputs and summary, and the failure
/// (with its headline) if any step failed.
struct OneBackup {
    json: serde_json::Value,
    outputs: Outputs,
    summary: String,
    failure: Option<(&'static str, anyhow::Error)>,
}

impl OneBackup {
    /// A failure after the backup was written: the report so far, marked failed.
    fn failed_after(
        mut json: serde_json::Value,
        outputs: Outputs,
        summary: String,
        message: &'static str,
        err: anyhow::Error,
    ) -> OneBackup {
        report::mark_failed(&mut json, message, &err);
        OneBackup {
            json,
            outputs,
            summary,
            failure: Some((message, err)),
        }
    }
}

/// Back up one source: dump and upload, verify, apply retention.
async fn backup_one(
    cfg: &BackupConfig,
    source: Arc<dyn Source>,
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    cancel: &CancellationToken,
) -> OneBackup {
    let failed = |message: &'static str, err: anyhow::Error| OneBackup {
        json: report::failure_json(message, &err),
        outputs: Outputs::new(),
        summary: String::new(),
        failure: Some((message, err)),
    };
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
        encryption: cfg.encryption.clone(),
    };
    let manifest = match backup::run(source, Arc::clone(store), &job, cancel).await {
        Ok(m) => m,
        Err(e) => return failed("Backup failed", e),
    };
    let verification = if cfg.verify {
        let _g = log::Group::new(format!("Verify {}", manifest.key));
        match verify::verify(Arc::clone(store), &manifest, cfg.identities.clone()).await {
            Ok(v) => Some(v),
            Err(e) => return failed("Backup failed", e),
        }
    } else {
        None
    };

    let mut json = report::backup_json(&manifest, bucket);
    let mut outputs = Outputs::new();
    report::backup_outputs(&mut outputs, &manifest, bucket, &json);
    let mut summary = report::backup_summary(&manifest, bucket);
    if let Some(v) = &verification {
        report::add_verification(&mut json, &mut outputs, &mut summary, v);
        for c in &v.checks {
            log::info(format!("verified: {c}"));
        }
        if !v.verified {
            let err = anyhow::anyhow!(
                "backup {} was written but failed verification: {}",
                manifest.key,
                v.problems.join("; ")
            );
            return OneBackup::failed_after(
                json,
                outputs,
                summary,
                "Backup failed verification",
                err,
            );
        }
    }
    // Retention runs only after a backup that was written and verified.
    if !cfg.retention.is_empty() {
        let _g = log::Group::new("Retention");
        let database = crate::cli::config::sanitize_name(&manifest.database.name);
        match prune::prune(
            store.as_ref(),
            &cfg.prefix,
            &database,
            &cfg.retention,
            chrono::Utc::now(),
            false,
            cfg.dry_run,
            Some(&manifest.key),
        )
        .await
        {
            Ok(p) => report::add_prune(&mut json, &mut outputs, &mut summary, &p),
            Err(e) => {
                let err = e.context(format!(
                    "backup {} succeeded, but pruning failed",
                    manifest.key
                ));
                return OneBackup::failed_after(json, outputs, summary, "Retention failed", err);
            }
        }
    }
    OneBackup {
        json,
        outputs,
        summary,
        failure: None,
    }
}

/// Finish a many-database run: the report array, counts, one summary row per database.
fn finish_many(outcomes: Vec<many::Outcome>, bucket: &str, cancel: &CancellationToken) -> u8 {
    let json = many::report(&outcomes);
    let mut outputs = Outputs::new();
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| o.database.as_str())
        .collect();
    outputs.set("succeeded", (outcomes.len() - failed.len()).to_string());
    outputs.set("failed", failed.len().to_string());
    outputs.set("bucket", bucket);
    outputs.set("report", json.to_string());
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
        action::error_annotation("Backup failed", &text);
        if cancel.is_cancelled() {
            exit_code(&anyhow::Error::new(Cancelled))
        } else {
            1
        }
    };
    if let Err(e) = outputs.write() {
        log::error(format!("{e:#}"));
        return 1;
    }
    println!("{}", report::json_line(&json));
    code
}

async fn run_list(raw: &RawInputs) -> u8 {
    let result = async {
        let cfg = CatalogConfig::from_inputs(raw)?;
        let as_json = crate::cli::config::boolean(raw, "json", false)?;
        warn_unread(raw, "list");
        let budget = Arc::new(Budget::cloudflare_default());
        let (store, bucket) = open_store(&cfg.store, cfg.api.as_ref(), &budget).await?;
        store.check().await?;
        let name = database_dir_name(&cfg, &budget).await?;
        let items = prune::list(
            store.as_ref(),
            &cfg.prefix,
            &name,
            cfg.identities.as_deref(),
        )
        .await?;
        Ok::<_, anyhow::Error>((items, bucket, as_json, name))
    }
    .await;
    let (items, bucket, as_json, name) = match result {
        Ok(r) => r,
        Err(e) => return fail("List failed", &e),
    };
    if !as_json {
        // The human table goes to stderr with the logs; stdout keeps the JSON line.
        // Manifest fields in the table are untrusted text: one sanitized line per row.
        for line in prune::table(&items).lines() {
            eprintln!("{}", log::sanitize(line));
        }
    }
    let json = serde_json::json!({
        "success": true,
        "message": format!("{} backups of {name}", items.len()),
        "bucket": bucket,
        "database": name,
        "backups": items,
    });
    let mut outputs = Outputs::new();
    outputs.set("bucket", bucket.clone());
    let summary = format!(
        "### Backups of `{}` in `{}`\n\n{} backups, {} complete.\n",
        action::md_cell(&name),
        action::md_cell(&bucket),
        items.len(),
        items.iter().filter(|i| i.entry.complete).count()
    );
    succeed(outputs, &json, &summary)
}

async fn run_prune(raw: &RawInputs, last_run_failed: bool) -> u8 {
    let result = async {
        let cfg = CatalogConfig::from_inputs(raw)?;
        let policy = crate::cli::config::retention_policy(raw)?;
        let dry_run = crate::cli::config::boolean(raw, "dry-run", false)?;
        warn_unread(raw, "prune");
        if policy.is_empty() {
            log::warn("no keep-* input is set: nothing is ever deleted without a retention policy");
        }
        if last_run_failed {
            log::warn("the backup earlier in this job failed (D1_BACKUP_LAST_RESULT=failure): deleting nothing");
        }
        let budget = Arc::new(Budget::cloudflare_default());
        let (store, bucket) = open_store(&cfg.store, cfg.api.as_ref(), &budget).await?;
        store.check().await?;
        let name = database_dir_name(&cfg, &budget).await?;
        let _g = log::Group::new(format!("Retention for {name}"));
        let p = prune::prune(
            store.as_ref(),
            &cfg.prefix,
            &name,
            &policy,
            chrono::Utc::now(),
            last_run_failed,
            dry_run,
            None,
        )
        .await?;
        Ok::<_, anyhow::Error>((p, bucket, name))
    }
    .await;
    let (p, bucket, name) = match result {
        Ok(r) => r,
        Err(e) => return fail("Prune failed", &e),
    };
    let mut json = serde_json::json!({
        "success": true,
        "message": if p.dry_run { "Prune dry run completed" } else { "Prune completed" },
        "bucket": bucket,
        "database": name,
    });
    let mut outputs = Outputs::new();
    outputs.set("bucket", bucket);
    let mut summary = format!("### Retention for `{}`\n", action::md_cell(&name));
    report::add_prune(&mut json, &mut outputs, &mut summary, &p);
    succeed(outputs, &json, &summary)
}

/// Find the manifest a `verify` or `restore` works on.
async fn select_backup(
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
                            crate::manifest::database_dir(&cfg.prefix, &name),
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
    catalog::read_manifest(store, &key).await
}

/// The key segment of the configured database: its name (resolved when a UUID was given).
async fn database_dir_name(cfg: &CatalogConfig, budget: &Arc<Budget>) -> Result<String> {
    let db = cfg
        .database
        .as_deref()
        .ok_or_else(|| InputError::new("database", "is required to find the latest backup"))?;
    if !crate::cli::config::is_uuid(db) {
        return Ok(crate::cli::config::sanitize_name(db));
    }
    let api = cfg.api.as_ref().ok_or_else(|| {
        InputError::new(
            "database",
            "is a UUID: give the database name, or `api-token` so the name can be looked up",
        )
    })?;
    let client = D1Client::new(api, Arc::clone(budget), ClientOptions::default())?;
    Ok(crate::cli::config::sanitize_name(
        &client.resolve_database(db).await?.name,
    ))
}

/// Print the Time Travel bookmark of a backup and the command that restores D1 to it.
fn print_bookmark(m: &Manifest) {
    if let Some(b) = &m.bookmark {
        log::info(format!(
            "Time Travel bookmark of this backup: {b}. Within D1's Time Travel window you can bring the database back to exactly this moment in place: wrangler d1 time-travel restore {} --bookmark={b}",
            m.database.name
        ));
    }
}

async fn run_verify(raw: &RawInputs) -> u8 {
    let result = async {
        let cfg = CatalogConfig::from_inputs(raw)?;
        warn_unread(raw, "verify");
        let budget = Arc::new(Budget::cloudflare_default());
        let (store, bucket) = open_store(&cfg.store, cfg.api.as_ref(), &budget).await?;
        store.check().await?;
        let manifest = select_backup(&cfg, store.as_ref(), &budget).await?;
        print_bookmark(&manifest);
        let _g = log::Group::new(format!("Verify {}", manifest.key));
        let v = verify::verify(Arc::clone(&store), &manifest, cfg.identities.clone()).await?;
        Ok::<_, anyhow::Error>((manifest, bucket, v))
    }
    .await;
    let (manifest, bucket, v) = match result {
        Ok(r) => r,
        Err(e) => return fail("Verification failed", &e),
    };
    for c in &v.checks {
        log::info(format!("verified: {c}"));
    }
    let mut json = serde_json::json!({
        "success": v.verified,
        "message": if v.verified { "Backup verified" } else { "Verification failed" },
        "key": manifest.key,
        "bucket": bucket,
        "timestamp": manifest.timestamp,
    });
    let mut outputs = Outputs::new();
    outputs.set("key", manifest.key.clone());
    outputs.set("bucket", bucket.clone());
    let mut summary = format!("### Verification of `{}`\n", action::md_cell(&manifest.key));
    report::add_verification(&mut json, &mut outputs, &mut summary, &v);
    if !v.verified {
        let err = anyhow::anyhow!(
            "backup {} failed verification: {}",
            manifest.key,
            v.problems.join("; ")
        );
        return fail_with("Verification failed", &err, outputs, Some(summary));
    }
    succeed(outputs, &json, &summary)
}

async fn run_restore(raw: &RawInputs) -> u8 {
    let result = async {
        let cfg = RestoreConfig::from_inputs(raw)?;
        warn_unread(raw, "restore");
        let budget = Arc::new(Budget::cloudflare_default());
        let (store, _bucket) = open_store(&cfg.catalog.store, cfg.catalog.api.as_ref(), &budget).await?;
        store.check().await?;
        let manifest = select_backup(&cfg.catalog, store.as_ref(), &budget).await?;
        log::info(format!("Restoring {} (taken {})", manifest.key, manifest.timestamp));
        print_bookmark(&manifest);
        let mut json = serde_json::json!({
            "success": true,
            "message": "Restore completed",
            "key": manifest.key,
            "timestamp": manifest.timestamp,
            "bookmark": manifest.bookmark,
        });
        let mut outputs = Outputs::new();
        outputs.set("key", manifest.key.clone());
        outputs.set("timestamp", manifest.timestamp.clone());
        if let Some(b) = &manifest.bookmark {
            outputs.set("bookmark", b.clone());
        }
        let mut summary = format!("### Restore of `{}`\n\n", action::md_cell(&manifest.key));
        match &cfg.target {
            RestoreTarget::File(path) => {
                let _g = log::Group::new(format!("Restore to {}", path.display()));
                let v = restore::to_file(
                    Arc::clone(&store),
                    &manifest,
                    path,
                    cfg.force,
                    cfg.catalog.identities.clone(),
                )
                .await?;
                json["restoredTo"] = serde_json::json!(path.display().to_string());
                json["rowCount"] = serde_json::json!(manifest.row_count);
                outputs.set("restored-to", path.display().to_string());
                summary.push_str(&format!("Restored into `{}`: {} tables, {} rows; {}\n", action::md_cell(&path.display().to_string()), v.tables.len(), manifest.row_count, v.checks.join("; ")));
            }
            RestoreTarget::D1(target) => {
                let api = cfg.catalog.api.as_ref().ok_or_else(|| InputError::new("api-token", "is required to restore into D1"))?;
                let client = Arc::new(D1Client::new(api, Arc::clone(&budget), ClientOptions::default())?);
                let _g = log::Group::new(format!("Restore into D1 database {target}"));
                let r = restore::to_d1(
                    client,
                    Arc::clone(&store),
                    &manifest,
                    &restore::D1Target {
                        database: target.clone(),
                        force: cfg.force,
                        create: cfg.create,
                        overwrite_source: cfg.overwrite_source.clone(),
                    },
                    cfg.catalog.identities.clone(),
                )
                .await?;
                json["restoredTo"] = serde_json::json!(r.database.name);
                json["databaseId"] = serde_json::json!(r.database.uuid);
                json["created"] = serde_json::json!(r.created);
                json["dropped"] = serde_json::json!(r.dropped);
                json["finalBookmark"] = serde_json::json!(r.final_bookmark);
                json["importSeconds"] = serde_json::json!(r.import_seconds);
                outputs.set("restored-to", r.database.name.clone());
                summary.push_str(&format!(
                    "Imported into D1 database `{}`{} in {:.1} s; row counts of {} tables match the manifest.\n",
                    action::md_cell(&r.database.name),
                    if r.created { " (created)" } else { "" },
                    r.import_seconds,
                    r.tables.len()
                ));
            }
        }
        Ok::<_, anyhow::Error>((json, outputs, summary))
    }
    .await;
    match result {
        Ok((json, outputs, summary)) => succeed(outputs, &json, &summary),
        Err(e) => fail("Restore failed", &e),
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
        SourceConfig::D1Many { .. } => Err(anyhow::anyhow!(
            "several databases are opened one by one (many::resolve), not as one source"
        )),
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
