//! The one place where errors meet the user: which input to fix, and which exit code.
//!
//! The engine returns typed errors (`store::Error`, `d1::DatabaseNotFound`,
//! `dump::UnknownTables`, `read::restore::Refused`, …) and never names an input. [`explain`]
//! turns the first such error of a chain into what the user reads: an [`InputError`] naming
//! the input (exit code 2) or a hint appended to the message (exit code 1). Every failure the
//! commands report passes through it, so a message is worded once.

use crate::cli::inputs::spec;
use crate::d1::{ApiError, ApiErrorKind, DatabaseNotFound, Refused as Credential};
use crate::dump::UnknownTables;
use crate::dump::export::VirtualTables;
use crate::read::codec::IdentityNeeded;
use crate::read::restore::Refused;
use crate::source::meter::OverBudget;
use crate::store::{Error as StoreError, ErrorKind};
use crate::util::Cancelled;

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

/// A required input that is not set: says what it is and every way to give it.
pub fn missing(input: &str, what: &str) -> InputError {
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

/// What the command layer adds to an engine error.
#[derive(Debug, PartialEq, Eq)]
struct Advice {
    /// The input to fix (the error becomes an [`InputError`], exit code 2).
    input: Option<&'static str>,
    /// Appended to the message.
    hint: String,
}

impl Advice {
    fn input(input: &'static str, hint: impl Into<String>) -> Option<Advice> {
        Some(Advice {
            input: Some(input),
            hint: hint.into(),
        })
    }

    fn hint(hint: impl Into<String>) -> Option<Advice> {
        Some(Advice {
            input: None,
            hint: hint.into(),
        })
    }
}

/// The error as the user should read it: the first typed engine error in the chain decides
/// the input to name and the hint to add. Errors that already name an input, and errors the
/// command layer has nothing to add to, pass through unchanged.
pub fn explain(err: anyhow::Error) -> anyhow::Error {
    if err.chain().any(|e| e.is::<InputError>()) {
        return err;
    }
    let Some(advice) = advise(&err) else {
        return err;
    };
    let text = format!("{err:#}{}", advice.hint);
    match advice.input {
        Some(input) => InputError::new(input, text).into(),
        None => anyhow::Error::msg(text),
    }
}

/// The first `T` in the error: a context layer (`.context(Refused::…)`, which only
/// `anyhow::Error::downcast_ref` sees) or a link of its source chain.
fn find<T: std::error::Error + Send + Sync + 'static>(err: &anyhow::Error) -> Option<&T> {
    err.downcast_ref::<T>()
        .or_else(|| err.chain().find_map(|e| e.downcast_ref::<T>()))
}

/// Advice for the engine error the user can act on, if there is one. A refusal of the
/// command outranks the error it wraps (a missing target database is about `restore-to`).
fn advise(err: &anyhow::Error) -> Option<Advice> {
    if let Some(r) = find::<Refused>(err) {
        return Some(refused(r));
    }
    if let Some(u) = find::<UnknownTables>(err) {
        let from_include = u.names.iter().any(|(_, include)| *include);
        return Advice::input(
            if from_include {
                "tables"
            } else {
                "exclude-tables"
            },
            "",
        );
    }
    if find::<OverBudget>(err).is_some() {
        return Advice::hint(
            " (`max-rows-read`); raise it, or split the databases across jobs or days with `shard`",
        );
    }
    if find::<VirtualTables>(err).is_some() {
        return Advice::input(
            "method",
            ". Use `method: query` (which backs them up), or leave them out with `exclude-tables`",
        );
    }
    if let Some(n) = find::<DatabaseNotFound>(err) {
        return Advice::input(
            "database",
            if n.by_uuid {
                "; check the UUID and `account-id`"
            } else {
                "; check the name (`wrangler d1 list`) or pass its UUID"
            },
        );
    }
    if find::<IdentityNeeded>(err).is_some() {
        return Advice::input(
            "age-identity",
            " (`age-identity` / AGE_IDENTITY, or `--identity-file`)",
        );
    }
    if let Some(s) = find::<StoreError>(err) {
        return store(s);
    }
    find::<ApiError>(err).and_then(api)
}

fn refused(r: &Refused) -> Advice {
    let (input, hint) = match r {
        Refused::FileExists(_) => (
            "restore-file",
            "; choose another path, or set `force` to replace it".to_string(),
        ),
        Refused::CreateNeedsName => (
            "restore-to",
            "; `create` needs a database name, not a UUID".to_string(),
        ),
        Refused::TargetMissing(_) => ("restore-to", " (set `create` to create it)".to_string()),
        Refused::IsSource(name) => (
            "overwrite-source",
            format!(
                ". Set `overwrite-source: {name}` to confirm (`force` is not enough), or restore into another database, or use Time Travel (wrangler d1 time-travel restore)"
            ),
        ),
        Refused::NotEmpty { .. } => (
            "restore-to",
            "; restore into an empty database, or set `force` to drop its tables first".to_string(),
        ),
    };
    Advice {
        input: Some(input),
        hint,
    }
}

fn store(s: &StoreError) -> Option<Advice> {
    match (s.kind, s.setup) {
        (ErrorKind::NotFound, true) => Advice::input(
            "bucket",
            " (for an EU bucket use `https://<account-id>.eu.r2.cloudflarestorage.com` as `r2-endpoint`)",
        ),
        (ErrorKind::Denied, true) => Advice::input(
            "r2-access-key-id",
            "; check `r2-access-key-id` and `r2-secret-access-key`, or the R2 permission of `api-token` when the keys are derived from it",
        ),
        (ErrorKind::Unreachable, true) => Advice::input("r2-endpoint", ""),
        (ErrorKind::Unwritable, true) => Advice::input("output-dir", ""),
        (ErrorKind::NotFound, false) => Advice::hint(
            "; check `bucket` (and that `r2-endpoint` is the bucket's jurisdiction endpoint)",
        ),
        (ErrorKind::Denied, false) => Advice::hint(
            "; check `r2-access-key-id` and `r2-secret-access-key` (or that `api-token` has R2 write permission when the keys are derived from it)",
        ),
        _ => None,
    }
}

fn api(a: &ApiError) -> Option<Advice> {
    match a.refused() {
        Some(Credential::Token) => {
            return Advice::hint(
                "; check `api-token`: it must be a valid Cloudflare API token with D1 read permission (D1 edit for export/import)",
            );
        }
        Some(Credential::Account) => {
            return Advice::hint(
                "; check `account-id`: the token has no access to that account, or the id is wrong",
            );
        }
        None => {}
    }
    if a.kind == ApiErrorKind::Timeout && a.operation == "export" {
        return Advice::hint(
            " (raise `export-timeout` to wait longer, or use `method: query`, which never blocks the database)",
        );
    }
    None
}

/// Exit code for an error: 2 for bad input, the signal's code (130/143) when cancelled,
/// 1 otherwise. `signal`: the code of the signal that stopped the run, 0 if none.
pub fn exit_code(err: &anyhow::Error, signal: u8) -> u8 {
    if err.chain().any(|e| e.is::<InputError>()) {
        2
    } else if err.chain().any(|e| e.is::<Cancelled>()) {
        if signal == 0 { 130 } else { signal }
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(err: anyhow::Error) -> (String, u8) {
        let e = explain(err);
        (format!("{e:#}"), exit_code(&e, 0))
    }

    /// Every typed engine error the user can act on: the input it names, its exit code, and
    /// words of the hint.
    #[test]
    fn engine_errors_name_the_input_to_fix() {
        let not_found = |by_uuid| DatabaseNotFound {
            reference: "x".into(),
            account: "acc".into(),
            by_uuid,
        };
        let api = |status, code| {
            let mut e = ApiError::new("list databases", ApiErrorKind::Http, "refused");
            e.status = Some(status);
            e.code = code;
            e
        };
        let export_timeout = ApiError::new("export", ApiErrorKind::Timeout, "did not finish");
        let cases: Vec<(anyhow::Error, &str, u8)> = vec![
            (not_found(true).into(), "input `database`", 2),
            (not_found(false).into(), "wrangler d1 list", 2),
            (
                UnknownTables {
                    database: "db".into(),
                    names: vec![("a".into(), false), ("b".into(), true)],
                }
                .into(),
                "input `tables`",
                2,
            ),
            (
                UnknownTables {
                    database: "db".into(),
                    names: vec![("a".into(), false)],
                }
                .into(),
                "input `exclude-tables`",
                2,
            ),
            (
                VirtualTables(vec!["fts".into()]).into(),
                "`method: query`",
                2,
            ),
            (
                IdentityNeeded { key: "k".into() }.into(),
                "input `age-identity`",
                2,
            ),
            (Refused::FileExists("/f".into()).into(), "set `force`", 2),
            (Refused::CreateNeedsName.into(), "input `restore-to`", 2),
            (
                anyhow::Error::new(not_found(false)).context(Refused::TargetMissing("db".into())),
                "set `create`",
                2,
            ),
            (
                Refused::IsSource("prod".into()).into(),
                "`overwrite-source: prod`",
                2,
            ),
            (
                Refused::NotEmpty {
                    name: "db".into(),
                    tables: vec!["t".into()],
                }
                .into(),
                "restore into an empty database",
                2,
            ),
            (
                StoreError::setup(ErrorKind::NotFound, "no bucket").into(),
                "input `bucket`",
                2,
            ),
            (
                StoreError::setup(ErrorKind::Denied, "denied").into(),
                "input `r2-access-key-id`",
                2,
            ),
            (
                StoreError::setup(ErrorKind::Unreachable, "down").into(),
                "input `r2-endpoint`",
                2,
            ),
            (
                StoreError::setup(ErrorKind::Unwritable, "ro").into(),
                "input `output-dir`",
                2,
            ),
            (
                StoreError::new(ErrorKind::Denied, "put failed").into(),
                "check `r2-access-key-id`",
                1,
            ),
            (
                StoreError::new(ErrorKind::NotFound, "put failed").into(),
                "check `bucket`",
                1,
            ),
            (api(403, Some(10000)).into(), "check `api-token`", 1),
            (api(401, None).into(), "check `api-token`", 1),
            (api(403, Some(7403)).into(), "check `account-id`", 1),
            (export_timeout.into(), "`export-timeout`", 1),
        ];
        for (err, want, code) in cases {
            let (text, got) = shown(err.context("doing it"));
            assert!(text.contains(want), "{text:?} lacks {want:?}");
            assert!(text.contains("doing it"), "{text:?} lost its context");
            assert_eq!(got, code, "{text}");
        }
    }

    #[test]
    fn other_errors_pass_through() {
        let (text, code) = shown(anyhow::anyhow!("boom").context("ctx"));
        assert_eq!(text, "ctx: boom");
        assert_eq!(code, 1);
        let e = StoreError::already_exists("k");
        let (text, code) = shown(e.into());
        assert!(text.contains("never overwritten"), "{text}");
        assert_eq!(code, 1);
        let input = anyhow::Error::new(InputError::new("bucket", "bad"));
        assert_eq!(shown(input).0, "input `bucket`: bad");
    }

    #[test]
    fn cancellation_exits_with_the_signal() {
        let e = anyhow::Error::new(Cancelled).context("backup");
        assert_eq!(exit_code(&e, 0), 130);
        assert_eq!(exit_code(&e, 143), 143);
    }
}
