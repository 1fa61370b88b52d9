//! The command layer: the only code that knows input names, exit codes and the runner.
//!
//! Which file does what:
//! - `args.rs` — the command line (subcommands, one flag per input); `inputs.rs` — every
//!   input's name, default, env names and secrecy, gathered into [`inputs::RawInputs`];
//!   `values.rs` — parsing one input value; `config.rs` — the settings several commands share.
//! - One file per command, each with its own settings and typed report: `backup.rs` (with
//!   `many.rs` for many databases), `list.rs`, `prune.rs`, `verify.rs`, `restore.rs`.
//! - `open.rs` — opening the store, the source, and the backup a command works on.
//! - `errors.rs` — engine errors worded for the user (which input to fix) and exit codes.
//! - `report.rs`, `finish.rs`, `action.rs` — reports, outputs, job summary, the last stdout
//!   line; `signals.rs` — SIGINT/SIGTERM; `contract.rs` — the generated `action.yml` parts.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad input (nothing was written),
//! 130/143 interrupted by SIGINT/SIGTERM (any multipart upload is aborted first).

pub(crate) mod action;
pub(crate) mod args;
pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod config;
pub mod contract;
pub(crate) mod errors;
pub(crate) mod finish;
pub(crate) mod heartbeat;
pub mod inputs;
pub(crate) mod list;
pub(crate) mod many;
pub(crate) mod open;
pub(crate) mod prune;
pub mod report;
pub(crate) mod restore;
pub(crate) mod signals;
pub(crate) mod unchanged;
pub(crate) mod values;
pub(crate) mod verify;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::ArgMatches;
use tokio_util::sync::CancellationToken;

use crate::util::{log, secrets, workflow};
use args::cli;
use errors::InputError;
use inputs::{INPUTS, RawInputs};

/// Keep glibc from hoarding freed buffers. Its default mmap threshold rises after large
/// blocks are freed, so later page-sized buffers come from the heap and fragment it; a fixed
/// threshold returns every large buffer to the system on free, keeping memory flat. The
/// hot, short-lived buffers (page text blocks, SQL chunks) are sized below it, so the heap
/// recycles them instead of mapping, faulting in and unmapping one per block.
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
                    "; input `command` accepts `backup`, `list`, `prune`, `verify`, `restore` or `check`",
                );
            }
            let status = report::Status::failed("Backup failed", &anyhow::anyhow!(message));
            println!("{}", report::json_line(&status));
            return ExitCode::from(2);
        }
    };
    // The release's action.yml, rendered by the code that renders the repository's own.
    if let Some(("action-yml", sub)) = matches.subcommand() {
        let image = sub.get_one::<String>("image").cloned().unwrap_or_default();
        if !(image == "Dockerfile" || valid_release_image(&image)) {
            eprintln!(
                "action-yml: --image {image:?} is neither `Dockerfile` nor `docker://<registry>/<name>@sha256:<64 hex>`"
            );
            return ExitCode::from(2);
        }
        print!("{}", contract::action_yml(&image));
        return ExitCode::from(0);
    }
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

/// `docker://<registry>/<name>@sha256:<64 lower-case hex>`: an image pinned by digest.
fn valid_release_image(image: &str) -> bool {
    let Some((name, digest)) = image
        .strip_prefix("docker://")
        .and_then(|r| r.split_once("@sha256:"))
    else {
        return false;
    };
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "./-_:".contains(c))
        && digest.len() == 64
        && digest
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
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
    if workflow::is_actions() {
        secrets::set_announcer(workflow::add_mask);
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
    let heartbeat = match heartbeat::Heartbeat::from_inputs(&raw) {
        Ok(h) => h,
        Err(e) => return finish::fail("Backup failed", e.into()),
    };
    let cancel = CancellationToken::new();
    // Only a backup stops gracefully on a signal (it aborts its upload); the other commands
    // remove their scratch files and exit at once.
    let signals = tokio::spawn(signals::watch_signals(cancel.clone(), command == "backup"));
    let code = match command.as_str() {
        "backup" => {
            let code = backup::run(&raw, &cancel).await;
            // Later steps of the job (a separate `prune`) see whether this backup worked.
            let result = if code == 0 { "success" } else { "failure" };
            if let Err(e) = action::export_env("D1_BACKUP_LAST_RESULT", result) {
                log::warn(format!("{e:#}"));
            }
            code
        }
        "verify" => verify::run(&raw).await,
        "restore" => restore::run(&raw).await,
        "list" => list::run(&raw).await,
        "check" => check::run(&raw).await,
        "prune" => prune::run(
            &raw,
            env.iter()
                .any(|(k, v)| k == "D1_BACKUP_LAST_RESULT" && v == "failure"),
        )
        .await,
        other => finish::fail(
            "Backup failed",
            InputError::new(
                "command",
                format!(
                    "{other:?} is not a command; use `backup`, `list`, `prune`, `verify`, `restore` or `check`"
                ),
            )
            .into(),
        ),
    };
    signals.abort();
    if let Some(h) = heartbeat {
        h.ping(code == 0, finish::last_report().as_deref()).await;
    }
    code
}
