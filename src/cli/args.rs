//! The command line: subcommands, and one `--flag` for every input (`src/cli/inputs.rs`).

use clap::{Arg, ArgAction, Command};

use crate::cli::inputs::INPUTS;

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
        .subcommand(
            Command::new("action-yml")
                .hide(true)
                .about("Print action.yml for a release (used by scripts/release.sh)")
                .arg(Arg::new("image").long("image").value_name("REF").required(true).help("runs.image: `Dockerfile` or `docker://ghcr.io/<owner>/<repo>@sha256:<digest>`")),
        )
        .subcommand(Command::new("check").about("Fail when a database's newest backup is too old, unverified or shrunk (--max-age, --max-shrink; one database, a list or *)"))
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
