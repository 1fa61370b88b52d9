//! Input values: each parser reads one input (or a small group) from [`RawInputs`] and
//! checks it, without touching the network. A bad value is an [`InputError`] naming the
//! input and what it accepts; secret values are never echoed.

use std::sync::Arc;

use crate::cli::errors::InputError;
use crate::cli::inputs::RawInputs;
use crate::d1::is_uuid;
use crate::dump::Method;
use crate::encrypt::{Identities, Recipients};
use crate::manifest::Selection;
use crate::shard::Shard;
use crate::sign::{SigningKey, VerifyKeys};

type Result<T, E = InputError> = std::result::Result<T, E>;

/// The longest duration input accepted (a year).
const MAX_DURATION_SECS: u64 = 366 * 24 * 3600;

/// Whether `path` starts with SQLite's file header (an empty file is a valid, empty database).
pub(crate) fn is_sqlite_file(path: &std::path::Path) -> bool {
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
pub(crate) fn concurrency(raw: &RawInputs) -> Result<usize> {
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

/// A whole number that may be left empty (`None`).
pub fn optional_count(raw: &RawInputs, name: &str) -> Result<Option<u64>> {
    match raw.get(name) {
        None => Ok(None),
        Some(v) => v.replace('_', "").parse::<u64>().map(Some).map_err(|_| {
            InputError::new(
                name,
                format!(
                    "{:?} is not accepted; use a whole number (like 5000000), or leave it empty for no limit",
                    truncate(v, 40)
                ),
            )
        }),
    }
}

/// The shard of `shard` (`I/N`), if set.
pub fn shard(raw: &RawInputs) -> Result<Option<Shard>> {
    raw.get("shard")
        .map(|v| Shard::parse(v).map_err(|e| InputError::new("shard", e)))
        .transpose()
}

/// The manifest signing key of `signing-key`, if set.
pub fn signing_key(raw: &RawInputs) -> Result<Option<Arc<SigningKey>>> {
    key_input(raw, "signing-key", |t| {
        SigningKey::parse(t).map_err(|e| e.0)
    })
}

/// The public keys of `verify-key`, if set.
pub fn verify_keys(raw: &RawInputs) -> Result<Option<Arc<VerifyKeys>>> {
    key_input(raw, "verify-key", |t| VerifyKeys::parse(t).map_err(|e| e.0))
}

/// A key input: unset or blank is `None`, otherwise parsed (errors name the input).
fn key_input<T>(
    raw: &RawInputs,
    name: &'static str,
    parse: impl FnOnce(&str) -> std::result::Result<T, String>,
) -> Result<Option<Arc<T>>> {
    match raw.get_raw(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(text) => parse(text)
            .map(|k| Some(Arc::new(k)))
            .map_err(|e| InputError::new(name, e)),
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

pub(crate) fn selection(raw: &RawInputs) -> Result<Selection> {
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
        "d" => 86_400,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 && mult > 0 && n.saturating_mul(mult) <= MAX_DURATION_SECS => {
            Ok(std::time::Duration::from_secs(n * mult))
        }
        _ => Err(InputError::new(
            name,
            format!(
                "{:?} is not a duration; use seconds (`900`) or a number with s, m, h or d (`90s`, `30m`, `26h`, `2d`)",
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

pub(crate) fn validate_database_name(name: &str) -> Result<()> {
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

/// 36 characters with hyphens at UUID positions: meant as a UUID.
pub(crate) fn looks_like_uuid_attempt(s: &str) -> bool {
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

pub(crate) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::sanitize_name;

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
    fn uuid_detection() {
        assert!(is_uuid("0c7a3e3c-8f5c-4a5c-9d1e-2b3c4d5e6f70"));
        assert!(!is_uuid("0c7a3e3c-8f5c-4a5c-9d1e-2b3c4d5e6f7"));
        assert!(validate_database_ref("0c7a3e3c-8f5c-4a5c-9d1e-2b3c4d5e6f70").is_ok());
        assert!(validate_database_ref("prod-db_1").is_ok());
    }

    #[test]
    fn names_are_sanitized_for_keys() {
        assert_eq!(sanitize_name("my db/..x"), "my-db-..x");
        assert_eq!(sanitize_name(".."), "database");
    }
}
