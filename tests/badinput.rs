//! Bad input, tried systematically: every input of `d1_backup::cli::inputs::INPUTS` has a row in
//! [`table`] — bad values that must be refused up front, or an explicit statement (with the
//! reason) that the input accepts any value. A row missing for a declared input fails the test.
//!
//! Every bad value is run three ways — as a `--flag`, as `D1_BACKUP_<NAME>` in the
//! environment, and exactly as the Actions runner starts the action (`INPUT_<NAME>`) — and
//! must: exit with code 2; say what is wrong in one line of the JSON report's `error`, naming
//! the input in backticks; make no request (the fake D1's log stays empty, and in
//! [`no_connection_is_ever_opened`] a tripwire listener standing in for the D1 API and the S3
//! endpoint sees no connection at all); write nothing (the bucket stays empty, no output
//! directory and no restore target appear); and never echo a secret.

#[path = "it/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use age::secrecy::ExposeSecret;
use support::{gha, run, run::ActionEnv};

/// Where the base configuration of a case reads from and writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    /// A D1 database (`db`) through the API into an S3 bucket, with explicit S3 keys.
    R2,
    /// A local SQLite file into a local directory (no Cloudflare at all).
    Local,
}

/// One bad value of an input.
#[derive(Clone, Debug)]
struct Case {
    /// The input given the bad value.
    input: &'static str,
    value: String,
    /// `backup`, `list`, `verify`, `restore` or `prune`.
    command: &'static str,
    base: Base,
    /// The input the error must name (usually `input`; combinations name the other side).
    names: &'static str,
    /// Other inputs set for this case (override the base).
    with: Vec<(&'static str, String)>,
    /// Base inputs removed for this case.
    without: Vec<&'static str>,
    /// Text that must never appear outside `::add-mask::` lines (secret values).
    secret: Option<String>,
}

/// What an input accepts.
enum Rule {
    /// Values that must be refused.
    Bad(Vec<Case>),
    /// Every value is accepted (checked later against the database or store, or free text);
    /// the reason says why.
    AnyValue(&'static str),
}

struct Row {
    input: &'static str,
    rule: Rule,
}

/// Files the cases point at.
struct Paths {
    _dir: tempfile::TempDir,
    /// A valid SQLite database file.
    sqlite: PathBuf,
    /// A regular file that is not a SQLite database (nor an age identity).
    garbage: PathBuf,
    /// A directory.
    dir: PathBuf,
    /// A path that does not exist.
    missing: PathBuf,
    /// Must never be created: the output directory of local runs.
    out: PathBuf,
    /// Must never be created: the restore target.
    restored: PathBuf,
    /// An existing file used as a restore target without `force`.
    existing: PathBuf,
    /// A valid age identity file.
    identity_file: PathBuf,
    /// A valid age identity (secret key text) and its recipient.
    identity: String,
    recipient: String,
}

impl Paths {
    fn new() -> Paths {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let sqlite = p.join("app.sqlite");
        let c = rusqlite::Connection::open(&sqlite).unwrap();
        c.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES(1);")
            .unwrap();
        drop(c);
        let garbage = p.join("garbage.sqlite");
        std::fs::write(&garbage, "this is not a database\n").unwrap();
        let sub = p.join("a-directory");
        std::fs::create_dir(&sub).unwrap();
        let existing = p.join("existing.sqlite");
        std::fs::write(&existing, "").unwrap();
        let id = age::x25519::Identity::generate();
        let identity = id.to_string().expose_secret().to_string();
        let recipient = id.to_public().to_string();
        let identity_file = p.join("identity.txt");
        std::fs::write(&identity_file, format!("{identity}\n")).unwrap();
        Paths {
            sqlite,
            garbage,
            dir: sub,
            missing: p.join("no-such-file.sqlite"),
            out: p.join("out-must-not-exist"),
            restored: p.join("restored-must-not-exist.sqlite"),
            existing,
            identity_file,
            identity,
            recipient,
            _dir: dir,
        }
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Builder for cases of one input.
struct Cases {
    input: &'static str,
    list: Vec<Case>,
}

impl Cases {
    fn of(input: &'static str) -> Cases {
        Cases {
            input,
            list: Vec::new(),
        }
    }

    /// A bad value under `backup` on the R2 base.
    fn bad(self, value: impl Into<String>) -> Cases {
        self.bad_in("backup", value)
    }

    fn bad_in(mut self, command: &'static str, value: impl Into<String>) -> Cases {
        self.list.push(Case {
            input: self.input,
            value: value.into(),
            command,
            base: Base::R2,
            names: self.input,
            with: Vec::new(),
            without: Vec::new(),
            secret: None,
        });
        self
    }

    fn many(mut self, values: &[&str]) -> Cases {
        for v in values {
            self = self.bad(*v);
        }
        self
    }

    fn many_in(mut self, command: &'static str, values: &[&str]) -> Cases {
        for v in values {
            self = self.bad_in(command, *v);
        }
        self
    }

    fn last(&mut self) -> &mut Case {
        self.list.last_mut().expect("a case first")
    }

    /// The last case names another input.
    fn names(mut self, input: &'static str) -> Cases {
        self.last().names = input;
        self
    }

    fn with(mut self, input: &'static str, value: impl Into<String>) -> Cases {
        self.last().with.push((input, value.into()));
        self
    }

    fn without(mut self, inputs: &[&'static str]) -> Cases {
        self.last().without.extend_from_slice(inputs);
        self
    }

    fn local(mut self) -> Cases {
        self.last().base = Base::Local;
        self
    }

    /// The last case's value must never be echoed.
    fn secret(mut self) -> Cases {
        let v = self.last().value.clone();
        self.last().secret = Some(v);
        self
    }

    fn row(self) -> Row {
        Row {
            input: self.input,
            rule: Rule::Bad(self.list),
        }
    }
}

fn any(input: &'static str, reason: &'static str) -> Row {
    Row {
        input,
        rule: Rule::AnyValue(reason),
    }
}

/// The table: every declared input, with its bad values or the reason it has none.
fn table(p: &Paths) -> Vec<Row> {
    let bad_uuids = [
        "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
        "1234567-1234-1234-1234-1234567890123",
        "0c7a3e3c-8f5c-4a5c-9d1e-2b3c4d5e6f7g",
    ];
    let long_name = "d".repeat(65);
    let secret_key = p.identity.clone();
    vec![
        Cases::of("command")
            .many(&["dump", "backups", "verify;rm -rf /", "--help", "list prune"])
            .row(),
        Cases::of("api-token")
            .bad("shorttok42")
            .secret()
            .bad("has a space in the middle of it 0123456789")
            .secret()
            .bad("tok\u{1}en-with-a-control-character-0123")
            .secret()
            .bad("line1-0123456789abcdef\nline2-0123456789abcdef")
            .secret()
            // Required for a D1 source.
            .bad(" ")
            .bad("")
            // Required to import into D1.
            .bad_in("restore", " ")
            .with("restore-to", "target-db")
            .row(),
        Cases::of("account-id")
            .many(&[
                "nope",
                "0123456789abcdef0123456789abcdeg",
                "0123456789abcdef0123456789abcde",
                "0123456789abcdef0123456789abcdef0",
                "01234567-89ab-cdef-0123-456789abcdef",
                " ",
            ])
            // Without a token, the default R2 endpoint is built from it.
            .bad_in("list", "nope")
            .without(&["api-token", "r2-endpoint"])
            .row(),
        Cases::of("database")
            .bad(" ")
            .bad("bad name!")
            .bad("semi;colon")
            .bad("../etc")
            .bad("データ")
            .bad(long_name.clone())
            .many(&bad_uuids)
            .bad("*,db")
            .bad("db,*")
            .bad("db\n*")
            .bad("db,bad name")
            .bad("db,zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz")
            // Commands that work on one database.
            .bad_in("list", "a,b")
            .bad_in("verify", "*")
            .bad_in("restore", "a\nb")
            .bad_in("prune", "bad name!")
            .bad_in("list", " ")
            // With a local file, `database` is the one name used in keys.
            .bad("a,b")
            .local()
            .bad("*")
            .local()
            .bad("bad name!")
            .local()
            .row(),
        Cases::of("exclude-databases")
            .bad("bad name!")
            .with("database", "*")
            .bad(bad_uuids[0])
            .with("database", "*")
            .bad("a;b")
            .with("database", "a,b")
            // Leaves nothing to back up: known without asking anyone.
            .bad("a,b")
            .with("database", "a,b")
            .row(),
        Cases::of("concurrency")
            .bad("0")
            .with("database", "a,b")
            .bad("17")
            .with("database", "a,b")
            .bad("-1")
            .with("database", "a,b")
            .bad("two")
            .with("database", "*")
            .bad("1.5")
            .with("database", "*")
            .bad("99999999999")
            .with("database", "*")
            .row(),
        Cases::of("shard")
            .bad("0/4")
            .with("database", "*")
            .bad("5/4")
            .with("database", "*")
            .bad("1/257")
            .with("database", "a,b")
            .bad("half")
            .with("database", "*")
            .bad("1/0")
            .with("database", "*")
            // One database is not split.
            .bad("1/2")
            .row(),
        Cases::of("max-rows-read")
            .bad("-1")
            .bad("lots")
            .bad("1e6")
            .bad("99999999999999999999999")
            .row(),
        Cases::of("skip-unchanged").bad("sometimes").row(),
        Cases::of("max-age")
            .bad_in("check", "soon")
            .bad_in("check", "0")
            .bad_in("check", "3w")
            .bad_in("check", "-1h")
            .row(),
        Cases::of("max-shrink")
            .bad_in("check", "101")
            .bad_in("check", "-5")
            .bad_in("check", "half")
            .row(),
        Cases::of("heartbeat-url")
            .bad("not a url")
            .bad("ftp://example.com/ping")
            .bad("http://hc.example.com/ping")
            .row(),
        Cases::of("bucket")
            .many(&[
                " ",
                "Bad_Bucket",
                "ab",
                "-leading",
                "trailing-",
                "under_score",
                "has space",
                "UPPER",
                "bucket.with.dots",
                "s3://bucket",
                &"b".repeat(64),
            ])
            .bad_in("list", "Bad_Bucket")
            .bad_in("restore", "x")
            .row(),
        Cases::of("r2-access-key-id")
            // One key without the other.
            .bad("D1BTESTKEYAKIA0001")
            .without(&["r2-secret-access-key"])
            .names("r2-secret-access-key")
            .bad(" ")
            // Never valid in an S3 access key id (it goes into the Authorization header).
            .bad("key id with spaces")
            .bad("key\nid")
            .row(),
        Cases::of("r2-secret-access-key")
            .bad("S3cr3t-d1backup-5b7e9f0c2a81d4")
            .without(&["r2-access-key-id"])
            .names("r2-access-key-id")
            .secret()
            .bad(" ")
            .bad_in("verify", "S3cr3t-d1backup-5b7e9f0c2a81d4")
            .without(&["r2-access-key-id"])
            .names("r2-access-key-id")
            .secret()
            .row(),
        Cases::of("r2-endpoint")
            .many(&[
                "not a url",
                "ftp://x",
                "https://",
                "localhost:9000",
                "http://user:pw@127.0.0.1:9000",
                "https://r2 .example.com",
                "https://host/\u{7}",
                "//127.0.0.1:9000",
            ])
            // Without a token there is no account id to build the default endpoint from.
            .bad_in("list", " ")
            .without(&["api-token", "account-id"])
            .row(),
        Cases::of("prefix")
            .many(&[
                "/abs",
                "/",
                "a/../b",
                "..",
                "../",
                "./x",
                "x/./y",
                "a//b",
                "back\\slash",
                "bell\u{7}",
                "new\nline/",
                &"p".repeat(513),
            ])
            .bad_in("list", "../other/")
            .bad_in("prune", "/abs/")
            .row(),
        Cases::of("compression-level")
            .many(&["99", "23", "-1", "abc", "3.5", "1e3", "0x10", "--3"])
            .bad("99")
            .local()
            .row(),
        Cases::of("compression-threads")
            .many(&["many", "-2", "65", "1.5", "auto4", "4 threads"])
            .row(),
        Cases::of("api-base-url")
            .many(&[
                "localhost:8787",
                "not a url",
                "ftp://api.example.com",
                "https://user@api.example.com/client/v4",
                "https://",
                "http://exa mple.com",
            ])
            .bad_in("verify", "localhost:8787")
            .row(),
        Cases::of("method")
            .many(&["dump", "exports", "query;", "snapshot", "quer y"])
            // D1's export API cannot read a local file.
            .bad("export")
            .local()
            .row(),
        Cases::of("export-timeout")
            .many(&[
                "soon",
                "0",
                "0s",
                "5w",
                "-5",
                "1.5h",
                "30 m",
                "m",
                "99999999999999999999",
                // Seconds overflow: 10^16 hours.
                "9999999999999999h",
            ])
            .bad("soon")
            .with("method", "export")
            .row(),
        Cases::of("consistency-retries")
            .many(&["11", "-1", "many", "2.0", "4294967296"])
            .row(),
        any(
            "tables",
            "free text: any comma- or newline-separated list of names is accepted up front; whether each names a table of the database can only be known by reading its schema (an unknown name then fails with exit 2, naming `tables`)",
        ),
        any(
            "exclude-tables",
            "free text: like `tables`, names are checked against the database's schema, which takes a request",
        ),
        Cases::of("no-data")
            .many(&["maybe", "2", "tru", "yes please"])
            .row(),
        Cases::of("no-schema")
            .many(&["perhaps", "-1"])
            // Both leave nothing to back up.
            .bad("true")
            .with("no-data", "true")
            .row(),
        Cases::of("verify").many(&["sometimes", "2", "yes please"]).row(),
        Cases::of("encrypt-recipients")
            .bad("age1notakey")
            .bad(secret_key.clone())
            .secret()
            .bad("ssh-rsa AAAA")
            .bad("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGarbage")
            .bad("# only a comment")
            .bad("not-a-key-at-all")
            .bad(format!("{},age1zzz", p.recipient))
            .bad(format!("{}\ngarbage", p.recipient))
            .row(),
        Cases::of("age-identity")
            .bad_in("verify", "garbage")
            .bad_in("verify", "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQ")
            .secret()
            // A public key given by mistake.
            .bad_in("verify", p.recipient.clone())
            .bad_in(
                "verify",
                "-----BEGIN OPENSSH PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END OPENSSH PRIVATE KEY-----\n",
            )
            .bad_in("restore", "garbage")
            .bad_in("list", "garbage")
            .bad("garbage")
            .row(),
        Cases::of("age-identity-file")
            .bad_in("verify", s(&p.missing))
            .bad_in("verify", s(&p.dir))
            .bad_in("verify", s(&p.garbage))
            .bad_in("restore", s(&p.missing))
            // Both the key text and a file.
            .bad_in("verify", s(&p.identity_file))
            .with("age-identity", p.identity.clone())
            .row(),
        Cases::of("signing-key")
            .bad("garbage")
            .bad("-----BEGIN OPENSSH PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END OPENSSH PRIVATE KEY-----\n")
            .secret()
            // Protected by a passphrase (no job can type it).
            .bad(PASSPHRASE_KEY)
            .secret()
            // Not ed25519.
            .bad(ECDSA_KEY)
            .secret()
            // A public key given by mistake.
            .bad(ECDSA_PUBLIC)
            .row(),
        Cases::of("verify-key")
            .bad_in("verify", "garbage")
            .bad_in("restore", "ssh-ed25519 notbase64")
            .bad_in("list", ECDSA_PUBLIC)
            .bad_in("verify", "# only a comment")
            // A private key given by mistake: refused, and never echoed.
            .bad_in("verify", ECDSA_KEY)
            .secret()
            .row(),
        any(
            "backup-key",
            "free text: any object key (or `latest`) is accepted; whether it exists can only be known by asking the store",
        ),
        Cases::of("before")
            .many_in(
                "verify",
                &[
                    "yesterday",
                    "2026-13-01",
                    "2026-02-30",
                    "28/11/2026",
                    "1700000000",
                    "2026-11-28T25:00:00Z",
                    "now",
                ],
            )
            .bad_in("restore", "yesterday")
            .bad_in("list", "2026-13-01")
            .row(),
        Cases::of("restore-file")
            // Neither target.
            .bad_in("restore", " ")
            // Both targets.
            .bad_in("restore", s(&p.restored))
            .with("restore-to", "target-db")
            .names("restore-to")
            // An existing file without `force`: known without asking anyone.
            .bad_in("restore", s(&p.existing))
            .row(),
        Cases::of("restore-to")
            .many_in(
                "restore",
                &[
                    "bad name!",
                    "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
                    "a,b",
                    "*",
                ],
            )
            .bad_in("restore", "target-db")
            .with("restore-file", s(&p.restored))
            .row(),
        Cases::of("force")
            .many_in("restore", &["maybe", "2", "forced"])
            .row(),
        Cases::of("overwrite-source")
            .bad_in("restore", "bad name!")
            .with("restore-to", "target-db")
            .bad_in("restore", "a,b")
            .with("restore-to", "target-db")
            .bad_in("restore", "*")
            .with("restore-to", "target-db")
            .row(),
        Cases::of("create")
            .many_in("restore", &["maybe", "yes please"])
            .bad_in("restore", "maybe")
            .with("restore-to", "target-db")
            .row(),
        counts("keep-last"),
        counts("keep-hourly"),
        counts("keep-daily"),
        counts("keep-weekly"),
        counts("keep-monthly"),
        counts("keep-yearly"),
        Cases::of("keep-within")
            .many_in(
                "prune",
                &["30", "1d1y", "0d", "d", "30x", "-1d", "1.5d", "30 d", "4294967296d"],
            )
            .bad("30")
            .row(),
        Cases::of("dry-run")
            .many_in("prune", &["perhaps", "2"])
            .bad("perhaps")
            .row(),
        Cases::of("json").many_in("list", &["maybe", "2"]).row(),
        Cases::of("progress-interval")
            .many(&["fast", "-1", "1.5s", "10w", "9999999999999999h"])
            .bad("fast")
            .local()
            .row(),
        Cases::of("sqlite-file")
            .bad(s(&p.missing))
            .local()
            .bad(s(&p.dir))
            .local()
            // Exists, but is not a SQLite database.
            .bad(s(&p.garbage))
            .local()
            .row(),
        Cases::of("output-dir")
            // Both destinations.
            .bad(s(&p.out))
            // A regular file where the directory should be.
            .bad(s(&p.garbage))
            .local()
            .row(),
        Cases::of("allow-insecure-http")
            .many(&["sometimes", "2", "insecure"])
            .row(),
        Cases::of("s3-checksums")
            .many(&["always", "never", "when_required", "required", "when-required,when-supported"])
            .bad_in("list", "always")
            .row(),
    ]
}

fn counts(input: &'static str) -> Row {
    Cases::of(input)
        .many_in("prune", &["-3", "seven", "1.5", "99999999999", "1e2"])
        .bad("-3")
        .row()
}

/// Every input of INPUTS has exactly one row, and every row is a declared input.
fn check_coverage(rows: &[Row]) {
    let declared: BTreeSet<&str> = d1_backup::cli::inputs::INPUTS
        .iter()
        .map(|s| s.name)
        .collect();
    let mut seen = BTreeSet::new();
    for r in rows {
        assert!(seen.insert(r.input), "two rows for `{}`", r.input);
        match &r.rule {
            Rule::Bad(cases) => {
                assert!(!cases.is_empty(), "row `{}` has no case", r.input);
                for c in cases {
                    assert_eq!(c.input, r.input);
                }
            }
            Rule::AnyValue(reason) => {
                assert!(reason.len() > 20, "row `{}` needs a reason", r.input)
            }
        }
    }
    let missing: Vec<_> = declared.difference(&seen).collect();
    let extra: Vec<_> = seen.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "inputs without a row in the bad-input table: {missing:?}"
    );
    assert!(extra.is_empty(), "rows for undeclared inputs: {extra:?}");
}

#[test]
fn every_declared_input_has_a_row() {
    let p = Paths::new();
    check_coverage(&table(&p));
}

/// How a case is given to the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `--name=value` (the `command` input has no flag: `D1_BACKUP_COMMAND`).
    Flag,
    /// `D1_BACKUP_<NAME>=value`.
    Env,
    /// As the Actions runner starts the action: every input as `INPUT_<NAME>`.
    Action,
}

/// Where the runs point.
struct Target {
    api_base: String,
    endpoint: String,
    bucket: String,
}

fn generic_var(input: &str) -> String {
    format!("D1_BACKUP_{}", input.to_ascii_uppercase().replace('-', "_"))
}

/// The inputs of the base configuration, by input name.
fn base_inputs(case: &Case, p: &Paths, t: &Target) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    match case.base {
        Base::R2 => {
            m.insert("api-token", support::TOKEN.to_string());
            m.insert("account-id", support::ACCOUNT.to_string());
            m.insert("api-base-url", t.api_base.clone());
            m.insert("database", "db".to_string());
            m.insert("bucket", t.bucket.clone());
            m.insert("r2-endpoint", t.endpoint.clone());
            m.insert("r2-access-key-id", support::weed::ACCESS_KEY.to_string());
            m.insert(
                "r2-secret-access-key",
                support::weed::SECRET_KEY.to_string(),
            );
        }
        Base::Local => {
            m.insert("sqlite-file", s(&p.sqlite));
            m.insert("output-dir", s(&p.out));
        }
    }
    let touches = |name: &str| {
        case.input == name
            || case.with.iter().any(|(k, _)| *k == name)
            || case.without.contains(&name)
    };
    if case.command == "restore" && !touches("restore-file") && !touches("restore-to") {
        m.insert("restore-file", s(&p.restored));
    }
    for w in &case.without {
        m.remove(w);
    }
    for (k, v) in &case.with {
        m.insert(k, v.clone());
    }
    m.remove(case.input);
    m
}

/// The CLI environment: base and `with` inputs under their usual environment names (the
/// Cloudflare-style aliases where the input has one, else `D1_BACKUP_<NAME>`).
fn cli_run(case: &Case, mode: Mode, p: &Paths, t: &Target) -> run::Run {
    let mut env = BTreeMap::new();
    for (name, value) in base_inputs(case, p, t) {
        let spec = d1_backup::cli::inputs::spec(name).unwrap();
        let var = spec
            .env
            .first()
            .map(|v| v.to_string())
            .unwrap_or_else(|| generic_var(name));
        env.insert(var, value);
    }
    let mut args: Vec<String> = Vec::new();
    if case.input != "command" {
        args.push(case.command.to_string());
    }
    match mode {
        Mode::Flag if case.input != "command" => {
            args.push(format!("--{}={}", case.input, case.value));
        }
        _ => {
            env.insert(generic_var(case.input), case.value.clone());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run::run(&args, &env)
}

fn action_run(case: &Case, p: &Paths, t: &Target) -> (run::Run, ActionEnv) {
    let base = base_inputs(case, p, t);
    let mut pairs: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if case.input != "command" {
        pairs.push(("command", case.command));
    }
    pairs.push((case.input, case.value.as_str()));
    let env = ActionEnv::new(&pairs);
    (env.run(), env)
}

/// What must hold after a bad-input run; returns the problems found.
fn check(case: &Case, mode: Mode, r: &run::Run, p: &Paths) -> Vec<String> {
    let mut problems = Vec::new();
    if r.code != 2 {
        problems.push(format!("exit code {} (expected 2)", r.code));
    }
    let named = format!("`{}`", case.names);
    let report = r
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{') || l.starts_with('['))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    match report {
        None => problems.push("no JSON report on stdout".into()),
        Some(report) => {
            if report["success"] != false {
                problems.push(format!("report does not say success=false: {report}"));
            }
            match report["error"].as_str() {
                None => problems.push(format!("report has no `error`: {report}")),
                Some(error) => {
                    if !error.contains(&named) {
                        problems.push(format!("error does not name {named}: {error:?}"));
                    }
                    if error.contains('\n') || error.len() > 1000 {
                        problems.push(format!("error is not one short line: {error:?}"));
                    }
                }
            }
        }
    }
    if !r.stderr.contains(&named) {
        problems.push(format!("stderr does not name {named}"));
    }
    if let Some(secret) = &case.secret {
        let leaked = r
            .all_text()
            .lines()
            .filter(|l| !l.starts_with("::add-mask::"))
            .any(|l| l.contains(secret.as_str()));
        if leaked {
            problems.push("the secret value was echoed".into());
        }
    }
    if mode == Mode::Action {
        let annotated = r
            .stdout
            .lines()
            .any(|l| l.starts_with("::error ") && l.contains(&named));
        if !annotated {
            problems.push(format!("no `::error` annotation naming {named}"));
        }
        match gha::parse_outputs(r.outputs_file.as_deref().unwrap_or("")) {
            Err(e) => problems.push(format!("outputs do not parse: {e}")),
            Ok(outputs) => {
                let names: Vec<&String> = outputs.keys().collect();
                if names != ["report"] {
                    problems.push(format!("outputs other than `report`: {names:?}"));
                }
            }
        }
    }
    if p.out.exists() {
        problems.push(format!("created the output directory {}", p.out.display()));
        let _ = std::fs::remove_dir_all(&p.out);
    }
    if p.restored.exists() {
        problems.push(format!(
            "created the restore target {}",
            p.restored.display()
        ));
        let _ = std::fs::remove_file(&p.restored);
    }
    problems
}

fn describe(case: &Case, mode: Mode) -> String {
    format!(
        "{} `{}`={:?} ({:?} base{}{}, {mode:?})",
        case.command,
        case.input,
        case.value,
        case.base,
        if case.with.is_empty() {
            String::new()
        } else {
            format!(", with {:?}", case.with)
        },
        if case.without.is_empty() {
            String::new()
        } else {
            format!(", without {:?}", case.without)
        },
    )
}

fn all_cases(rows: Vec<Row>) -> Vec<Case> {
    rows.into_iter()
        .flat_map(|r| match r.rule {
            Rule::Bad(cases) => cases,
            Rule::AnyValue(_) => Vec::new(),
        })
        .collect()
}

#[test]
fn bad_values_fail_up_front_naming_their_input() {
    let Some((endpoint, bucket)) = support::bucket("badinput") else {
        return;
    };
    let p = Paths::new();
    let rows = table(&p);
    check_coverage(&rows);
    let fake = support::fake_d1();
    let t = Target {
        api_base: fake.base_url(),
        endpoint: endpoint.clone(),
        bucket: bucket.clone(),
    };
    let store = support::s3_store(&endpoint, &bucket);
    let cases = all_cases(rows);
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in &cases {
        for mode in [Mode::Flag, Mode::Env, Mode::Action] {
            let (r, _env) = match mode {
                Mode::Action => {
                    let (r, env) = action_run(case, &p, &t);
                    (r, Some(env))
                }
                _ => (cli_run(case, mode, &p, &t), None),
            };
            runs += 1;
            let mut problems = check(case, mode, &r, &p);
            let requests = fake.requests();
            if !requests.is_empty() {
                problems.push(format!(
                    "{} request(s) to the D1 API: {:?}",
                    requests.len(),
                    requests.iter().map(|q| q.kind).collect::<Vec<_>>()
                ));
                fake.clear_requests();
            }
            if case.base == Base::R2 {
                let keys = support::keys(&store, "");
                if !keys.is_empty() {
                    problems.push(format!("wrote to the bucket: {keys:?}"));
                    support::block_on(d1_backup::store::ObjectStore::delete(&store, &keys))
                        .unwrap();
                }
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{}:\n    {}\n    stdout: {}\n    stderr: {}",
                    describe(case, mode),
                    problems.join("\n    "),
                    r.stdout.trim_end().replace('\n', "\n            "),
                    r.stderr.trim_end().replace('\n', "\n            "),
                ));
            }
        }
    }
    eprintln!("{runs} bad-input runs ({} cases)", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {runs} bad-input runs misbehaved:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A listener that counts the connections made to it (and closes them at once).
struct Tripwire {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Tripwire {
    fn start() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = Arc::clone(&hits);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                h.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Tripwire { port, hits }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The same cases with the D1 API and the S3 endpoint both pointing at a tripwire: a bad
/// value must be refused before any connection is opened (also to S3, which the fake's
/// request log cannot see). Needs no S3 server.
#[test]
fn no_connection_is_ever_opened() {
    let p = Paths::new();
    let wire = Tripwire::start();
    let t = Target {
        api_base: format!("{}/client/v4", wire.url()),
        endpoint: wire.url(),
        bucket: "tripwire-bucket".into(),
    };
    let mut failures = Vec::new();
    let cases = all_cases(table(&p));
    for case in &cases {
        let before = wire.hits();
        let r = cli_run(case, Mode::Flag, &p, &t);
        let mut problems = Vec::new();
        if r.code != 2 {
            problems.push(format!("exit code {}", r.code));
        }
        // Give a late connection a moment to be counted.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let hits = wire.hits() - before;
        if hits > 0 {
            problems.push(format!("opened {hits} connection(s)"));
        }
        if p.out.exists() {
            problems.push("created the output directory".into());
            let _ = std::fs::remove_dir_all(&p.out);
        }
        if p.restored.exists() {
            problems.push("created the restore target".into());
            let _ = std::fs::remove_file(&p.restored);
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {}",
                describe(case, Mode::Flag),
                problems.join("; "),
                r.stderr.trim_end().replace('\n', "\n            ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad values reached the network or exited otherwise:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Command-line syntax errors are bad input too: the same exit code 2, no request, and —
/// as for every run — the failure JSON as the last line on stdout (scripts parse it).
#[test]
fn command_line_syntax_errors_are_reported_like_bad_input() {
    let wire = Tripwire::start();
    let mut env = BTreeMap::new();
    env.insert(
        "CLOUDFLARE_API_TOKEN".to_string(),
        support::TOKEN.to_string(),
    );
    env.insert(
        "CLOUDFLARE_ACCOUNT_ID".to_string(),
        support::ACCOUNT.to_string(),
    );
    env.insert(
        "CLOUDFLARE_API_BASE_URL".to_string(),
        format!("{}/client/v4", wire.url()),
    );
    env.insert("D1_DATABASE".to_string(), "db".to_string());
    env.insert("R2_BUCKET".to_string(), "tripwire-bucket".to_string());
    env.insert("R2_ENDPOINT".to_string(), wire.url());
    // (arguments, what stderr mentions, what the report's error mentions)
    let cases: &[(&[&str], &str, &str)] = &[
        // The `command` input given as an unknown subcommand.
        (&["dump"], "dump", "`command`"),
        (
            &["backup", "extra-argument"],
            "extra-argument",
            "extra-argument",
        ),
        (
            &["--compresion-level", "3"],
            "--compresion-level",
            "--compresion-level",
        ),
        (
            &["--compression-level"],
            "--compression-level",
            "compression-level",
        ),
    ];
    let mut failures = Vec::new();
    for (args, mentioned, in_report) in cases {
        let r = run::run(args, &env);
        let mut problems = Vec::new();
        if r.code != 2 {
            problems.push(format!("exit code {}", r.code));
        }
        if !r.stderr.contains(mentioned) {
            problems.push(format!("stderr does not mention {mentioned}"));
        }
        let report = r
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        match report {
            None => problems.push("no JSON report on stdout".into()),
            Some(j) => {
                if j["success"] != false
                    || !j["error"].as_str().is_some_and(|e| e.contains(in_report))
                {
                    problems.push(format!("report does not name {in_report}: {j}"));
                }
            }
        }
        if wire.hits() > 0 {
            problems.push("opened a connection".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "d1-backup {}: {}\n    stdout: {:?}\n    stderr: {:?}",
                args.join(" "),
                problems.join("; "),
                r.stdout,
                r.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Test keys for the `signing-key`/`verify-key` rows (`ssh-keygen`, never used elsewhere).
const PASSPHRASE_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABDOf4J5m6
tTWY7iXhfZyDfiAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAICGkKhghluC/yCX7
f/VloM/7Ud0m8l1ymGR11NNFCOUNAAAAkFXP0ylGUYFpiC4KYxmEG6v6muyEpfTFNY3M+W
p+KN6Rk/YHt4uxAUPS3J6uGcF8UFEaAbiGtpqS+C0SGP4fvRhVZpVcVfZxQjC5zKlIW6q5
yeTwr+UNiBrvfBBAiSVMnRMd2yUEuP6juzHrvjO4iJEE7m44qZufkKGHjxKiLQyIIfrdrK
ieOAP/fq9N7tvftg==
-----END OPENSSH PRIVATE KEY-----
";
const ECDSA_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQRxStUqY+Geod+lz5H/ts4APY257rhC
EWh8klsilal5u8ASkXUkA5/MR54F1E/iu94t3GcieyAorrGkHjsh+eq/AAAAoKpwt3mqcL
d5AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHFK1Spj4Z6h36XP
kf+2zgA9jbnuuEIRaHySWyKVqXm7wBKRdSQDn8xHngXUT+K73i3cZyJ7ICiusaQeOyH56r
8AAAAgVgYESwGqa0VNb6H1VHk6vB4MS57wFZEKJxP8SXKum94AAAACZWMBAgMEBQY=
-----END OPENSSH PRIVATE KEY-----
";
const ECDSA_PUBLIC: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHFK1Spj4Z6h36XPkf+2zgA9jbnuuEIRaHySWyKVqXm7wBKRdSQDn8xHngXUT+K73i3cZyJ7ICiusaQeOyH56r8= ec";
