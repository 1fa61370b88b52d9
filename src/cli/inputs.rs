//! Where raw input values come from, and in which order they win.
//!
//! Every input has one name (the action input name, kebab-case) and is looked up in, from
//! strongest to weakest:
//! 1. a command-line flag of the same name (`--compression-level 5`);
//! 2. the action input variable exactly as the runner sets it (`INPUT_COMPRESSION-LEVEL`,
//!    upper-cased with its hyphens kept);
//! 3. `D1_BACKUP_<NAME>` (upper-case, `-` → `_`), the generic CLI form;
//! 4. the well-known aliases listed in [`INPUTS`] (`CLOUDFLARE_API_TOKEN`, the original
//!    Worker design's `CF_API_TOKEN`, …), in the order listed.
//!
//! Empty (or all-whitespace) values count as unset: the runner exports every declared input,
//! empty when the workflow did not set it. Environment variables are read with `envy`.
//! Values are kept as strings here; [`crate::cli::config`] turns them into typed configuration.

use std::collections::{BTreeMap, HashMap};

/// One declared input.
#[derive(Debug, Clone, Copy)]
pub struct InputSpec {
    pub name: &'static str,
    /// Environment variable aliases, strongest first.
    pub env: &'static [&'static str],
    /// Never echo the value; register it as a secret.
    pub secret: bool,
    /// Default shown in `action.yml` (empty when there is none).
    pub default: &'static str,
    pub description: &'static str,
}

const fn input(
    name: &'static str,
    env: &'static [&'static str],
    default: &'static str,
    description: &'static str,
) -> InputSpec {
    InputSpec {
        name,
        env,
        secret: false,
        default,
        description,
    }
}

const fn secret(
    name: &'static str,
    env: &'static [&'static str],
    description: &'static str,
) -> InputSpec {
    InputSpec {
        name,
        env,
        secret: true,
        default: "",
        description,
    }
}

/// Every input the tool understands. `action.yml` declares exactly these (a test checks it).
pub const INPUTS: &[InputSpec] = &[
    input(
        "command",
        &[],
        "backup",
        "What to do: `backup`, `list`, `prune`, `verify`, `restore` or `check`.",
    ),
    secret(
        "api-token",
        &["CLOUDFLARE_API_TOKEN", "CF_API_TOKEN"],
        "Cloudflare API token with D1 read (and R2 object write, if the R2 keys are derived from it).",
    ),
    input(
        "account-id",
        &["CLOUDFLARE_ACCOUNT_ID", "CF_ACCOUNT_ID"],
        "",
        "Cloudflare account id (32 hex characters).",
    ),
    input(
        "database",
        &["D1_DATABASE", "DATABASE_URL"],
        "",
        "D1 database name or UUID; several (comma- or newline-separated), or `*` for every database of the account, each under its own `<prefix><name>/`. With `sqlite-file`, the name used in keys (default: the file name).",
    ),
    input(
        "exclude-databases",
        &[],
        "",
        "With several databases or `*`: leave these out (names or UUIDs, comma- or newline-separated).",
    ),
    input(
        "concurrency",
        &[],
        "2",
        "With several databases: how many are backed up at once (1–16). All share the API rate budget.",
    ),
    input(
        "max-age",
        &[],
        "26h",
        "For `check`: a database whose newest complete backup is older than this is stale (`26h`, `2d`, `90m`, or seconds).",
    ),
    input(
        "max-shrink",
        &[],
        "",
        "For `check`: a database whose newest backup has this many percent fewer rows than the one before it is stale (0–100). Empty: not checked.",
    ),
    secret(
        "heartbeat-url",
        &[],
        "After every command, a POST of the JSON report to this URL on success, or to the URL with `/fail` appended on failure (healthchecks.io and similar dead-man's switches alert when the pings stop). A heartbeat that cannot be delivered is a warning, never a failure.",
    ),
    input(
        "shard",
        &[],
        "",
        "With several databases or `*`: back up only shard `I/N` of them (1 ≤ I ≤ N ≤ 256, by a stable hash of the UUID), so that N jobs of a matrix cover every database exactly once.",
    ),
    input(
        "skip-unchanged",
        &[],
        "true",
        "With a D1 database: when its Time Travel bookmark equals the one recorded by its newest complete, verified backup (same tables, same encryption), write nothing and report it `unchanged` (one API request). `false` always dumps.",
    ),
    input(
        "max-rows-read",
        &[],
        "",
        "Rows-read budget of the run (D1 bills rows read; the Free plan stops at 5,000,000 a day): a database whose estimated rows would pass it is not started, and the run fails as soon as the rows read pass it. Empty: no limit.",
    ),
    input(
        "bucket",
        &["R2_BUCKET", "BACKUP_BUCKET"],
        "",
        "R2 bucket the backup is written to.",
    ),
    input(
        "r2-access-key-id",
        &["R2_ACCESS_KEY_ID"],
        "",
        "R2 access key id. Leave both R2 keys empty to derive them from `api-token`.",
    ),
    secret(
        "r2-secret-access-key",
        &["R2_SECRET_ACCESS_KEY"],
        "R2 secret access key. Leave both R2 keys empty to derive them from `api-token`.",
    ),
    input(
        "r2-endpoint",
        &["R2_ENDPOINT"],
        "",
        "S3 endpoint (default `https://<account-id>.r2.cloudflarestorage.com`; EU buckets need `https://<account-id>.eu.r2.cloudflarestorage.com`). Any S3-compatible server works.",
    ),
    input(
        "prefix",
        &[],
        "",
        "Key prefix put before `<database>/backup-….sql.zst` (include a trailing `/` for a folder).",
    ),
    input(
        "compression-level",
        &[],
        "3",
        "zstd level 1–22; `0` stores plain SQL.",
    ),
    input(
        "compression-threads",
        &[],
        "auto",
        "zstd worker threads: `auto` (one per CPU, at most 4) or a number; `0` compresses on the dump thread.",
    ),
    input(
        "api-base-url",
        &["CLOUDFLARE_API_BASE_URL"],
        "https://api.cloudflare.com/client/v4",
        "Cloudflare API base URL.",
    ),
    input(
        "method",
        &[],
        "query",
        "How to dump: `query` (exact, non-blocking, consistency checked) or `export` (D1's export API: one consistent snapshot, but it blocks the database and rounds integers beyond 2^53).",
    ),
    input(
        "export-timeout",
        &[],
        "30m",
        "With `method: export`, give up waiting for D1's export after this long (`90s`, `30m`, `1h`, or seconds).",
    ),
    input(
        "consistency-retries",
        &[],
        "2",
        "With `method: query`, redo the dump up to this many times when the database changed while it was read (Time Travel bookmark moved).",
    ),
    input(
        "tables",
        &[],
        "",
        "Back up only these tables (comma- or newline-separated); their indexes, triggers and views come along.",
    ),
    input(
        "exclude-tables",
        &[],
        "",
        "Leave these tables out (comma- or newline-separated).",
    ),
    input(
        "no-data",
        &[],
        "false",
        "Schema only: `true` leaves the rows out.",
    ),
    input(
        "no-schema",
        &[],
        "false",
        "Data only: `true` leaves CREATE statements out.",
    ),
    input(
        "verify",
        &[],
        "true",
        "After a backup, download it again, restore it into a temporary SQLite database the way D1 would, and check hashes, integrity, foreign keys and row counts.",
    ),
    input(
        "encrypt-recipients",
        &[],
        "",
        "Encrypt every backup with age for these recipients (`age1…` X25519 or `ssh-ed25519`/`ssh-rsa` public keys; comma- or newline-separated). Keys end in `.age`; nothing is uploaded unencrypted.",
    ),
    secret(
        "age-identity",
        &["AGE_IDENTITY"],
        "The age identity (secret key text, `AGE-SECRET-KEY-1…` or an unencrypted OpenSSH private key) that decrypts encrypted backups for `verify`, `restore` and `list`.",
    ),
    input(
        "age-identity-file",
        &["AGE_IDENTITY_FILE"],
        "",
        "A file holding the age identity (flag `--identity-file`), instead of `age-identity`.",
    ),
    secret(
        "signing-key",
        &["D1_BACKUP_SIGNING_KEY"],
        "Sign every backup's manifest with this OpenSSH ed25519 private key (the unencrypted text `ssh-keygen -t ed25519 -N ''` writes). The signature is stored beside the manifest as `<key>.manifest.json.sig` and checks with `ssh-keygen -Y verify` (namespace `d1-backup`).",
    ),
    input(
        "verify-key",
        &["D1_BACKUP_VERIFY_KEY"],
        "",
        "For `verify`, `restore` and `list`: trust only backups whose manifest is signed by one of these `ssh-ed25519 …` public keys (one per line); an unsigned backup, one signed by another key, or one changed after signing is refused.",
    ),
    input(
        "backup-key",
        &[],
        "latest",
        "For `verify` and `restore`: the object key of the backup, or `latest` (the newest complete backup of `database`).",
    ),
    input(
        "before",
        &[],
        "",
        "For `verify` and `restore`: use the newest complete backup taken at or before this time (RFC 3339, or a date meaning the end of that day, UTC).",
    ),
    input(
        "restore-file",
        &[],
        "",
        "For `restore`: write the restored database to this SQLite file (flag `--to-file`).",
    ),
    input(
        "restore-to",
        &[],
        "",
        "For `restore`: import the backup into this D1 database (name or UUID; flag `--to-database`). It must be empty unless `force` is set.",
    ),
    input(
        "force",
        &[],
        "false",
        "For `restore`: replace an existing file, or drop the tables of a non-empty D1 database first (never the database the backup came from: see `overwrite-source`).",
    ),
    input(
        "overwrite-source",
        &[],
        "",
        "For `restore` into D1: the name (or UUID) of the database the backup was taken from, to confirm restoring over it (replacing everything in it). `force` alone never does.",
    ),
    input(
        "create",
        &[],
        "false",
        "For `restore` into D1: create the target database when it does not exist.",
    ),
    input(
        "keep-last",
        &[],
        "",
        "Retention: keep the N newest backups. With no keep-* input set nothing is ever deleted.",
    ),
    input(
        "keep-hourly",
        &[],
        "",
        "Retention: keep the newest backup of each of the N most recent hours (UTC) that have one.",
    ),
    input(
        "keep-daily",
        &[],
        "",
        "Retention: keep the newest backup of each of the N most recent days (UTC) that have one.",
    ),
    input(
        "keep-weekly",
        &[],
        "",
        "Retention: keep the newest backup of each of the N most recent ISO weeks that have one.",
    ),
    input(
        "keep-monthly",
        &[],
        "",
        "Retention: keep the newest backup of each of the N most recent months that have one.",
    ),
    input(
        "keep-yearly",
        &[],
        "",
        "Retention: keep the newest backup of each of the N most recent years that have one.",
    ),
    input(
        "keep-within",
        &[],
        "",
        "Retention: keep every backup taken within this long before the newest one (`30d`, `12h`, `1y2m`, `2w`).",
    ),
    input(
        "dry-run",
        &[],
        "false",
        "Retention: print what would be kept and deleted, and delete nothing.",
    ),
    input(
        "json",
        &[],
        "false",
        "For `list`: print JSON instead of a table.",
    ),
    input(
        "progress-interval",
        &[],
        "10s",
        "Print a progress line (rows, bytes, rate) this often during long work; `0` turns it off.",
    ),
    input(
        "sqlite-file",
        &[],
        "",
        "Back up a local SQLite file (e.g. the one `wrangler dev` keeps) instead of a D1 database.",
    ),
    input(
        "output-dir",
        &[],
        "",
        "Write backups to this local directory instead of R2.",
    ),
    input(
        "allow-insecure-http",
        &[],
        "false",
        "Allow plain `http://` for `api-base-url` and `r2-endpoint` on hosts other than this machine (credentials then travel unencrypted). Loopback addresses never need it.",
    ),
    input(
        "s3-checksums",
        &[],
        "when-required",
        "S3 request checksums: `when-required` (what R2 recommends) or `when-supported`.",
    ),
];

/// Look up an input's spec by name.
pub fn spec(name: &str) -> Option<&'static InputSpec> {
    INPUTS.iter().find(|s| s.name == name)
}

/// Raw input values by input name, already merged by precedence. Unset inputs are absent.
/// Which inputs were looked at is recorded, so a set input that the command never reads
/// can be reported (it is almost always a typo or a misunderstanding).
#[derive(Debug, Default)]
pub struct RawInputs {
    values: BTreeMap<String, String>,
    read: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Clone for RawInputs {
    fn clone(&self) -> Self {
        RawInputs {
            values: self.values.clone(),
            read: std::sync::Mutex::new(self.read.lock().map(|r| r.clone()).unwrap_or_default()),
        }
    }
}

impl PartialEq for RawInputs {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl RawInputs {
    /// Merge flags (strongest) with the given environment.
    pub fn collect<I>(flags: &BTreeMap<String, String>, env: I) -> RawInputs
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let action = read_env_map(env.iter().cloned(), "INPUT_", false);
        let generic = read_env_map(env.iter().cloned(), "D1_BACKUP_", true);
        let plain = read_env_map(env.iter().cloned(), "", false);

        let mut values = BTreeMap::new();
        for spec in INPUTS {
            let candidates = std::iter::once(flags.get(spec.name).cloned())
                .chain(std::iter::once(action.get(spec.name).cloned()))
                .chain(std::iter::once(generic.get(spec.name).cloned()))
                .chain(
                    spec.env
                        .iter()
                        .map(|alias| plain.get(&alias.to_ascii_lowercase()).cloned()),
                );
            if let Some(v) = candidates.flatten().find(|v| !v.trim().is_empty()) {
                values.insert(spec.name.to_string(), v);
            }
        }
        RawInputs {
            values,
            read: Default::default(),
        }
    }

    /// Build directly from name/value pairs (tests, programmatic use).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> RawInputs {
        let flags = pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RawInputs::collect(&flags, std::iter::empty())
    }

    /// The value of an input, trimmed; `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        debug_assert!(spec(name).is_some(), "undeclared input {name}");
        self.mark_read(name);
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value exactly as given (not trimmed): for multi-line inputs.
    pub fn get_raw(&self, name: &str) -> Option<&str> {
        self.mark_read(name);
        self.values.get(name).map(|v| v.as_str())
    }

    fn mark_read(&self, name: &str) {
        if let Ok(mut r) = self.read.lock() {
            r.insert(name.to_string());
        }
    }

    /// Inputs given a value other than their default that nothing has read.
    pub fn unread(&self) -> Vec<&'static str> {
        let read = self.read.lock().map(|r| r.clone()).unwrap_or_default();
        INPUTS
            .iter()
            .filter(|s| !read.contains(s.name))
            .filter(|s| {
                self.values
                    .get(s.name)
                    .is_some_and(|v| !v.trim().is_empty() && v.trim() != s.default)
            })
            .map(|s| s.name)
            .collect()
    }

    /// Warn about inputs that were set but that `command` never read.
    pub fn warn_unread(&self, command: &str) {
        let unread = self.unread();
        if !unread.is_empty() {
            crate::util::log::warn(format!(
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

    pub fn set(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_string(), value.to_string());
    }

    /// Values of secret inputs, for registration with the redactor.
    pub fn secret_values(&self) -> Vec<&str> {
        INPUTS
            .iter()
            .filter(|s| s.secret)
            .filter_map(|s| {
                self.values
                    .get(s.name)
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty())
            })
            .collect()
    }
}

/// Read environment variables with `envy` into a map keyed by lower-case names with the
/// prefix removed. With `dashes`, `_` in names becomes `-` (for `D1_BACKUP_*`).
fn read_env_map<I>(env: I, prefix: &str, dashes: bool) -> HashMap<String, String>
where
    I: IntoIterator<Item = (String, String)>,
{
    let map: HashMap<String, String> = if prefix.is_empty() {
        envy::from_iter(env).unwrap_or_default()
    } else {
        envy::prefixed(prefix).from_iter(env).unwrap_or_default()
    };
    map.into_iter()
        .map(|(k, v)| {
            let k = k.to_ascii_lowercase();
            let k = if dashes { k.replace('_', "-") } else { k };
            (k, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn precedence_flag_action_generic_alias() {
        let e = env(&[
            ("INPUT_API-TOKEN", "from-action"),
            ("D1_BACKUP_API_TOKEN", "from-generic"),
            ("CLOUDFLARE_API_TOKEN", "from-cloudflare"),
            ("CF_API_TOKEN", "from-legacy"),
        ]);
        let none = BTreeMap::new();
        assert_eq!(
            RawInputs::collect(&none, e.clone()).get("api-token"),
            Some("from-action")
        );
        let mut flags = BTreeMap::new();
        flags.insert("api-token".to_string(), "from-flag".to_string());
        assert_eq!(
            RawInputs::collect(&flags, e.clone()).get("api-token"),
            Some("from-flag")
        );
        assert_eq!(
            RawInputs::collect(&none, e[2..].to_vec()).get("api-token"),
            Some("from-cloudflare")
        );
        assert_eq!(
            RawInputs::collect(&none, e[3..].to_vec()).get("api-token"),
            Some("from-legacy")
        );
    }

    #[test]
    fn empty_action_inputs_fall_through_to_the_environment() {
        // The runner exports every declared input, empty when unset.
        let e = env(&[
            ("INPUT_API-TOKEN", ""),
            ("INPUT_BUCKET", "   "),
            ("CLOUDFLARE_API_TOKEN", "tok123456"),
            ("BACKUP_BUCKET", "legacy-bucket"),
        ]);
        let raw = RawInputs::collect(&BTreeMap::new(), e);
        assert_eq!(raw.get("api-token"), Some("tok123456"));
        assert_eq!(raw.get("bucket"), Some("legacy-bucket"));
    }

    #[test]
    fn worker_design_names_are_understood() {
        let e = env(&[
            ("CF_ACCOUNT_ID", "acc"),
            ("DATABASE_URL", "my-db"),
            ("BACKUP_BUCKET", "b"),
        ]);
        let raw = RawInputs::collect(&BTreeMap::new(), e);
        assert_eq!(raw.get("account-id"), Some("acc"));
        assert_eq!(raw.get("database"), Some("my-db"));
        assert_eq!(raw.get("bucket"), Some("b"));
    }

    #[test]
    fn hyphenated_multi_word_inputs_map() {
        let e = env(&[
            ("INPUT_COMPRESSION-LEVEL", "7"),
            ("D1_BACKUP_R2_ENDPOINT", "http://x"),
        ]);
        let raw = RawInputs::collect(&BTreeMap::new(), e);
        assert_eq!(raw.get("compression-level"), Some("7"));
        assert_eq!(raw.get("r2-endpoint"), Some("http://x"));
    }

    #[test]
    fn unread_inputs_are_reported() {
        let raw = RawInputs::from_pairs([
            ("bucket", "b"),
            ("prefix", "p/"),
            ("compression-level", "3"),
        ]);
        assert_eq!(raw.get("bucket"), Some("b"));
        // compression-level is at its default: not worth reporting.
        assert_eq!(raw.unread(), vec!["prefix"]);
    }

    #[test]
    fn secrets_are_listed() {
        let raw = RawInputs::from_pairs([("api-token", "tok-abcdef"), ("bucket", "b")]);
        assert_eq!(raw.secret_values(), vec!["tok-abcdef"]);
    }
}
