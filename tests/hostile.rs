//! Hostile content: table, column, index, view and trigger names (and values) full of quotes,
//! comment markers, newlines, control characters, Unicode, very long names, SQL and GitHub
//! workflow-command text — and a server whose error messages and database names carry the
//! same. The dump must restore exactly, verification must pass, and nothing may hijack the
//! Actions log, the outputs or the job summary:
//!
//! * no line of stdout or stderr is a workflow command (`::cmd::`, after leading whitespace,
//!   or the legacy `##[cmd]` anywhere in a line — see `ActionCommand.TryParseV2`/`TryParse`
//!   in actions/runner) except the ones the tool itself emits (`::add-mask::<a known
//!   secret>`, `::group::`, `::endgroup::`, `::warning`/`::error` annotations), and those
//!   carry payloads escaped by the toolkit's rules;
//! * `$GITHUB_OUTPUT` parses with the runner's rules and holds only declared outputs
//!   (`$GITHUB_ENV` only `D1_BACKUP_LAST_RESULT`, `$GITHUB_STATE` nothing);
//! * the job summary's tables keep their shape and no name injects Markdown or HTML.
//!
//! Lines are split the way the runner reads them (.NET `ReadLine`: `\n`, `\r` or `\r\n`).

#[path = "it/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;

use d1_backup::sqltext::quote_ident as qi;
use support::hostile_db::{build, hostile_names};
use support::{cli_env, compare, gha, run, run::ActionEnv};

/// Commands the runner registers (command extensions plus `stop-commands`).
const RUNNER_COMMANDS: &[&str] = &[
    "set-env",
    "set-output",
    "save-state",
    "add-mask",
    "add-path",
    "add-matcher",
    "remove-matcher",
    "debug",
    "warning",
    "error",
    "notice",
    "group",
    "endgroup",
    "echo",
    "stop-commands",
];

/// Lines as the runner reads a stream.
fn runner_lines(text: &str) -> Vec<&str> {
    text.split(['\n', '\r']).filter(|l| !l.is_empty()).collect()
}

/// `%` only as the start of one of `escapes` (`25`, `0D`, `0A`, …).
fn escaped_percent(s: &str, escapes: &[&str]) -> bool {
    s.match_indices('%')
        .all(|(i, _)| escapes.iter().any(|e| s[i + 1..].starts_with(e)))
}

const DATA_ESCAPES: &[&str] = &["25", "0D", "0A"];
const PROPERTY_ESCAPES: &[&str] = &["25", "0D", "0A", "3A", "2C"];

/// The escapes of a workflow command's message (`escapeData`).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Workflow commands a run's stdout and stderr would give the runner that the tool did not
/// legitimately emit; and badly escaped legitimate ones. `secrets` are the values the tool
/// may announce with `::add-mask::`.
fn log_problems(r: &run::Run, secrets: &[&str]) -> Vec<String> {
    let masks: BTreeSet<String> = secrets.iter().map(|s| escape_data(s)).collect();
    let mut problems = Vec::new();
    for (stream, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        for line in runner_lines(text) {
            // `::command …::data` after leading whitespace (the runner tries this form first).
            let t = line.trim_start();
            let v2 = t.strip_prefix("::").and_then(|rest| {
                let end = rest.find("::")?;
                let info = &rest[..end];
                let (cmd, props) = info.split_once(' ').unwrap_or((info, ""));
                RUNNER_COMMANDS
                    .contains(&cmd)
                    .then_some((cmd, props, &rest[end + 2..]))
            });
            let Some((cmd, props, data)) = v2 else {
                // Legacy `##[command …]data`: parsed anywhere in a line.
                let mut from = 0;
                while let Some(i) = line[from..].find("##[") {
                    let start = from + i + 3;
                    if let Some(end) = line[start..].find(']') {
                        let info = &line[start..start + end];
                        let cmd = info.split(' ').next().unwrap_or("");
                        if RUNNER_COMMANDS.contains(&cmd) {
                            problems.push(format!(
                                "{stream}: the runner would run the legacy command `##[{info}]`: {line:?}"
                            ));
                            break;
                        }
                    }
                    from = start;
                }
                continue;
            };
            let ok = match cmd {
                "add-mask" => t == line && props.is_empty() && masks.contains(data),
                "group" => t == line && props.is_empty() && escaped_percent(data, DATA_ESCAPES),
                "endgroup" => t == line && props.is_empty() && data.is_empty(),
                "warning" | "error" => {
                    let props_ok = props.split(',').filter(|p| !p.is_empty()).all(|p| {
                        p.split_once('=').is_some_and(|(k, v)| {
                            ["title", "file", "line", "col", "endLine", "endColumn"].contains(&k)
                                && !v.contains(':')
                                && escaped_percent(v, PROPERTY_ESCAPES)
                        })
                    });
                    // The tool's annotations always carry a title.
                    t == line
                        && stream == "stdout"
                        && props.starts_with("title=")
                        && props_ok
                        && escaped_percent(data, DATA_ESCAPES)
                }
                _ => false,
            };
            if !ok {
                problems.push(format!(
                    "{stream}: workflow command the tool did not mean: {line:?}"
                ));
            }
        }
    }
    problems
}

/// `$GITHUB_OUTPUT` parses and holds declared outputs only; `$GITHUB_ENV` only
/// `D1_BACKUP_LAST_RESULT`; `$GITHUB_STATE` nothing.
fn file_problems(r: &run::Run, env: &ActionEnv) -> Vec<String> {
    let mut problems = Vec::new();
    let declared: BTreeSet<&str> = d1_backup::cli::report::OUTPUTS
        .iter()
        .map(|(n, _)| *n)
        .collect();
    match gha::parse_outputs(r.outputs_file.as_deref().unwrap_or("")) {
        Err(e) => problems.push(format!("$GITHUB_OUTPUT does not parse: {e}")),
        Ok(outputs) => {
            for k in outputs.keys() {
                if !declared.contains(k.as_str()) {
                    problems.push(format!("undeclared output {k:?} in $GITHUB_OUTPUT"));
                }
            }
            if !outputs.contains_key("report") {
                problems.push("no `report` output".into());
            }
        }
    }
    let genv = std::fs::read_to_string(env.dir.path().join("set_env")).unwrap();
    match gha::parse_outputs(&genv) {
        Err(e) => problems.push(format!("$GITHUB_ENV does not parse: {e}")),
        Ok(vars) => {
            for k in vars.keys() {
                if k != "D1_BACKUP_LAST_RESULT" {
                    problems.push(format!("unexpected variable {k:?} in $GITHUB_ENV"));
                }
            }
        }
    }
    let state = std::fs::read_to_string(env.dir.path().join("save_state")).unwrap();
    if !state.is_empty() {
        problems.push(format!("$GITHUB_STATE written: {state:?}"));
    }
    problems
}

/// Unescaped `|` in a Markdown table row.
fn cells(line: &str) -> usize {
    let b = line.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] == b'|' && (i == 0 || b[i - 1] != b'\\'))
        .count()
}

/// The job summary keeps its shape: tables have rows of one width, no line starts with
/// injected Markdown, no raw HTML or control characters.
fn summary_problems(summary: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if summary.contains('\r') {
        problems.push("summary holds a carriage return".into());
    }
    if let Some(c) = summary.chars().find(|c| c.is_control() && *c != '\n') {
        problems.push(format!("summary holds control character {c:?}"));
    }
    for bad in ["<script", "</script", "<b>"] {
        if summary.contains(bad) {
            problems.push(format!("summary holds raw HTML {bad:?}"));
        }
    }
    let mut width: Option<usize> = None;
    for line in summary.split('\n') {
        let t = line.trim_start();
        if t.starts_with("# Injected") || t.starts_with("::") || t.starts_with("<") {
            problems.push(format!("summary line injected by a name: {line:?}"));
        }
        if t.starts_with('|') {
            let n = cells(t);
            if !t.ends_with('|') {
                problems.push(format!("broken table row: {line:?}"));
            }
            match width {
                None => width = Some(n),
                Some(w) if w != n => problems.push(format!(
                    "table row with {n} cell separators, not {w}: {line:?}"
                )),
                _ => {}
            }
        } else {
            width = None;
        }
    }
    problems
}

fn assert_no_problems(what: &str, r: &run::Run, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}:\n  {}\n--- stdout:\n{}\n--- stderr:\n{}\n--- summary:\n{}",
        problems.join("\n  "),
        r.stdout,
        r.stderr,
        r.summary_file.as_deref().unwrap_or("")
    );
}

/// Inputs of an action run against the fake and the test bucket.
fn action_inputs<'a>(
    fake: &'a str,
    database: &'a str,
    endpoint: &'a str,
    bucket: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("api-token", support::TOKEN),
        ("account-id", support::ACCOUNT),
        ("api-base-url", fake),
        ("database", database),
        ("bucket", bucket),
        ("r2-endpoint", endpoint),
        ("r2-access-key-id", support::weed::ACCESS_KEY),
        ("r2-secret-access-key", support::weed::SECRET_KEY),
    ]
}

fn action(inputs: &[(&str, &str)]) -> (run::Run, ActionEnv) {
    let mut env = ActionEnv::new(inputs);
    env.env.insert("RUNNER_DEBUG".into(), "1".into());
    (env.run(), env)
}

const SECRETS: &[&str] = &[support::TOKEN, support::weed::SECRET_KEY];

/// Every table name of a database (what the report must carry exactly).
fn table_names(path: &Path) -> BTreeSet<String> {
    compare::user_tables(&compare::open(path))
        .into_iter()
        .map(|(n, _, _)| n)
        .collect()
}

fn restore_and_compare(store: &dyn d1_backup::store::ObjectStore, key: &str, source: &Path) {
    let sql = support::sql_of(&support::get_bytes(store, key), key);
    let dir = tempfile::tempdir().unwrap();
    let restored = dir.path().join("restored.sqlite");
    support::restore_d1_rules(&sql, &restored);
    compare::assert_same(source, &restored);
}

#[test]
fn hostile_names_round_trip_and_never_hijack_the_log() {
    let Some((endpoint, bucket)) = support::bucket("hostile") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let names = hostile_names();
    let pristine = dir.path().join("pristine.sqlite");
    build(&pristine, &names);
    let served = support::copy_db(&pristine, dir.path(), "served");
    let fake = support::fake_d1();
    fake.add_database("hostile", &served);
    let store = support::s3_store(&endpoint, &bucket);
    let tables = table_names(&pristine);

    // As a CLI, with debug lines.
    let mut env = cli_env(&fake, "hostile", &endpoint, &bucket);
    env.insert("RUNNER_DEBUG".into(), "1".into());
    let r = run::run(&["backup", "-v"], &env);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_no_problems("CLI backup", &r, log_problems(&r, SECRETS));
    let report = r.report();
    assert_eq!(report["verified"], true, "{report}");
    let reported: BTreeSet<String> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reported, tables, "the report names every table exactly");
    let cli_key = report["key"].as_str().unwrap().to_string();
    restore_and_compare(&store, &cli_key, &pristine);

    // As the action, with RUNNER_DEBUG=1.
    let api = fake.base_url();
    let mut inputs = action_inputs(&api, "hostile", &endpoint, &bucket);
    // The database did not change since the CLI run: dump it again anyway.
    inputs.push(("skip-unchanged", "false"));
    let (r, env) = action(&inputs);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let mut problems = log_problems(&r, SECRETS);
    problems.extend(file_problems(&r, &env));
    problems.extend(summary_problems(r.summary_file.as_deref().unwrap()));
    assert_no_problems("action backup", &r, problems);
    let outputs = gha::parse_outputs(r.outputs_file.as_deref().unwrap()).unwrap();
    assert_eq!(outputs["verified"], "true");
    let report: serde_json::Value = serde_json::from_str(&outputs["report"]).unwrap();
    assert_eq!(report, r.report(), "the `report` output is the JSON line");
    let action_key = outputs["key"].clone();
    assert_ne!(action_key, cli_key);
    restore_and_compare(&store, &action_key, &pristine);

    // `verify` and `restore --to-file`, as a CLI and as the action.
    let env = cli_env(&fake, "hostile", &endpoint, &bucket);
    let r = run::run(&["verify", &cli_key, "-v"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["verified"], true);
    assert_no_problems("CLI verify", &r, log_problems(&r, SECRETS));

    let to = dir.path().join("restored-cli.sqlite");
    let r = run::run(
        &[
            "restore",
            &action_key,
            "--to-file",
            to.to_str().unwrap(),
            "-v",
        ],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_no_problems("CLI restore", &r, log_problems(&r, SECRETS));
    compare::assert_same(&pristine, &to);

    let r = run::run(&["list", "-v"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_no_problems("CLI list", &r, log_problems(&r, SECRETS));

    for (command, extra) in [
        ("verify", vec![("backup-key", cli_key.clone())]),
        (
            "restore",
            vec![
                ("backup-key", "latest".to_string()),
                (
                    "restore-file",
                    dir.path()
                        .join("restored-action.sqlite")
                        .display()
                        .to_string(),
                ),
            ],
        ),
        ("list", vec![]),
    ] {
        let mut inputs = inputs.clone();
        inputs.push(("command", command));
        for (k, v) in &extra {
            inputs.push((k, v.as_str()));
        }
        let (r, env) = action(&inputs);
        assert_eq!(r.code, 0, "{command}: {}", r.stderr);
        let mut problems = log_problems(&r, SECRETS);
        problems.extend(file_problems(&r, &env));
        problems.extend(summary_problems(r.summary_file.as_deref().unwrap()));
        assert_no_problems(&format!("action {command}"), &r, problems);
    }
    compare::assert_same(&pristine, &dir.path().join("restored-action.sqlite"));

    // Warnings (annotations) that quote hostile names: a contentless FTS5 table, and a
    // table whose foreign-key parent is left out with `exclude-tables`.
    let warned = support::copy_db(&pristine, dir.path(), "warned");
    let contentless = "contentless %zz, colon: \n::error::x";
    rusqlite::Connection::open(&warned)
        .unwrap()
        .execute_batch(&format!(
            "CREATE VIRTUAL TABLE {} USING fts5(a, content='');",
            qi(contentless)
        ))
        .unwrap();
    fake.add_database("warned", &warned);
    let mut inputs = action_inputs(&api, "warned", &endpoint, &bucket);
    let parent = format!("{}\n", names.last().unwrap());
    inputs.push(("exclude-tables", &parent));
    // The dangling foreign key cannot restore under D1's rules (the warning says so).
    inputs.push(("verify", "false"));
    let (r, env) = action(&inputs);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let warnings: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("::warning "))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("contentless %25zz, colon")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("references \"comma, colon: percent%25\"")),
        "{warnings:?}"
    );
    let mut problems = log_problems(&r, SECRETS);
    problems.extend(file_problems(&r, &env));
    problems.extend(summary_problems(r.summary_file.as_deref().unwrap()));
    assert_no_problems("action backup with warnings", &r, problems);
}

/// Names that use the runner's legacy `##[command]` syntax, which it accepts anywhere in a
/// line (the report's JSON line and log lines carry table names mid-line).
#[test]
fn legacy_workflow_commands_in_names_are_neutralised() {
    let Some((endpoint, bucket)) = support::bucket("legacy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = vec![
        "##[set-output name=legacy;]1".into(),
        "x ##[add-mask]hostile-legacy-mask".into(),
        "##[error]legacy pwned".into(),
        "##[stop-commands]legacy-token".into(),
    ];
    let pristine = dir.path().join("legacy.sqlite");
    build(&pristine, &names);
    let served = support::copy_db(&pristine, dir.path(), "served");
    let fake = support::fake_d1();
    fake.add_database("legacy", &served);
    let api = fake.base_url();
    let mut problems = Vec::new();
    let mut check = |what: &str, r: &run::Run, env: &ActionEnv| {
        let mut p = log_problems(r, SECRETS);
        p.extend(file_problems(r, env));
        p.extend(summary_problems(r.summary_file.as_deref().unwrap()));
        problems.extend(p.into_iter().map(|p| format!("{what}: {p}")));
    };

    // A backup whose tables carry the names (report line, log lines).
    let (r, env) = action(&action_inputs(&api, "legacy", &endpoint, &bucket));
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    check("backup", &r, &env);
    let store = support::s3_store(&endpoint, &bucket);
    restore_and_compare(&store, r.report()["key"].as_str().unwrap(), &pristine);

    // An unknown table name echoed in the error.
    let mut inputs = action_inputs(&api, "legacy", &endpoint, &bucket);
    inputs.push(("tables", "##[set-output name=tbl;]1"));
    let (r, env) = action(&inputs);
    assert_eq!(r.code, 2, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    check("unknown table", &r, &env);

    // A server error message.
    fake.set_faults(fake_d1::Faults {
        export_error: Some("export failed ##[set-output name=srv;]1".into()),
        ..Default::default()
    });
    let plain = plain_db(dir.path());
    fake.add_database("plain", &plain);
    let mut inputs = action_inputs(&api, "plain", &endpoint, &bucket);
    inputs.push(("method", "export"));
    let (r, env) = action(&inputs);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    check("export error", &r, &env);

    assert!(
        problems.is_empty(),
        "legacy `##[…]` commands reach the runner:\n  {}",
        problems.join("\n  ")
    );
}

/// A one-table database without virtual tables (D1's export accepts it).
fn plain_db(dir: &std::path::Path) -> std::path::PathBuf {
    let plain = dir.join("plain.sqlite");
    rusqlite::Connection::open(&plain)
        .unwrap()
        .execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES(1, 'a');",
        )
        .unwrap();
    plain
}

/// Text chosen by the server — an export's error message, database names in the account,
/// and table names echoed in errors — reaches the log only neutralised.
#[test]
fn hostile_server_text_is_neutralised() {
    let Some((endpoint, bucket)) = support::bucket("server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let plain = plain_db(dir.path());
    let hostile = dir.path().join("hostile.sqlite");
    build(&hostile, &hostile_names());
    let fake = support::fake_d1();
    fake.add_database(
        "plain",
        &support::copy_db(&plain, dir.path(), "plain-served"),
    );
    fake.add_database(
        "hostile",
        &support::copy_db(&hostile, dir.path(), "hostile-served"),
    );
    let api = fake.base_url();

    // 1. The export fails with a message full of workflow commands.
    let message = "export failed\n::set-output name=pwned::1\r\n::add-mask::server-mask-text\n\
                   pct%zz%0A::error::pct";
    fake.set_faults(fake_d1::Faults {
        export_error: Some(message.into()),
        ..Default::default()
    });
    let mut inputs = action_inputs(&api, "plain", &endpoint, &bucket);
    inputs.push(("method", "export"));
    let (r, env) = action(&inputs);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let mut problems = log_problems(&r, SECRETS);
    problems.extend(file_problems(&r, &env));
    problems.extend(summary_problems(r.summary_file.as_deref().unwrap()));
    // The message is still there for the reader, on one annotation line.
    let annotation = r
        .stdout
        .lines()
        .find(|l| l.starts_with("::error "))
        .unwrap_or("");
    if !annotation.contains("%0A::set-output name=pwned::1%0D%0A::add-mask::server-mask-text") {
        problems.push(format!(
            "the server's message is not in the annotation, escaped: {annotation:?}"
        ));
    }
    assert_no_problems("export error", &r, problems);
    assert!(
        r.report()["error"]
            .as_str()
            .unwrap()
            .contains("::set-output name=pwned::1")
    );
    fake.set_faults(fake_d1::Faults::default());

    // 2. The export preflight and an unknown table echo hostile table names in the error.
    for extra in [
        vec![("method", "export")],
        vec![("tables", "\n::set-output name=tbl::1\n::add-mask::tbl\n")],
    ] {
        let mut inputs = action_inputs(&api, "hostile", &endpoint, &bucket);
        inputs.extend(extra.iter().copied());
        let (r, env) = action(&inputs);
        assert_eq!(
            r.code, 2,
            "{extra:?}: stdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        let mut problems = log_problems(&r, SECRETS);
        problems.extend(file_problems(&r, &env));
        problems.extend(summary_problems(r.summary_file.as_deref().unwrap()));
        assert_no_problems(&format!("{extra:?}"), &r, problems);
    }

    // 3. `database: *` in an account whose database names are hostile; two fail (they have
    //    no table `t`), one of them with a hostile name quoted raw in the run's error.
    let other = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE u(id INTEGER PRIMARY KEY);")
        .unwrap();
    let db_names = [
        "::set-output name=dbpwned::1",
        "db\n::add-mask::db-mask-text",
        "db\r\n::error::db pwned",
        "pct%zz%0A::warning::db",
        "|db|<script>x</script>",
    ];
    for (i, n) in db_names.iter().enumerate() {
        let source = if i == 2 { &other } else { &plain };
        fake.add_database(
            n,
            &support::copy_db(source, dir.path(), &format!("many-{i}")),
        );
    }
    let mut inputs = action_inputs(&api, "*", &endpoint, &bucket);
    inputs.push(("concurrency", "3"));
    inputs.push(("tables", "t"));
    let (r, env) = action(&inputs);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let mut problems = log_problems(&r, SECRETS);
    problems.extend(file_problems(&r, &env));
    problems.extend(summary_problems(r.summary_file.as_deref().unwrap()));
    assert_no_problems("database: *", &r, problems);
    let annotation = r
        .stdout
        .lines()
        .find(|l| l.starts_with("::error "))
        .unwrap_or("");
    assert!(
        annotation.contains("db%0D%0A::error::db pwned"),
        "the failed database is named, escaped: {annotation:?}"
    );
    let outputs = gha::parse_outputs(r.outputs_file.as_deref().unwrap()).unwrap();
    assert_eq!(outputs["failed"], "2", "{}", r.stderr);
    assert_eq!(outputs["succeeded"], db_names.len().to_string());
    let store = support::s3_store(&endpoint, &bucket);
    // Every database's objects stay under a prefix of its own.
    for key in support::keys(&store, "") {
        assert!(
            !key.contains(['\n', '\r', ':', '|', '<', '%', '#', '[']) && !key.starts_with('/'),
            "unsafe key {key:?}"
        );
    }
}

/// A manifest in the bucket carrying hostile text (anyone who can write to the bucket can
/// put one there): `list` prints its fields in a table on stderr.
#[test]
fn hostile_manifest_fields_are_neutralised_in_list() {
    let Some((endpoint, bucket)) = support::bucket("manifest") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let plain = plain_db(dir.path());
    let fake = support::fake_d1();
    fake.add_database("plain", &plain);
    let api = fake.base_url();
    let r = run::run(&["backup"], &cli_env(&fake, "plain", &endpoint, &bucket));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = r.report()["key"].as_str().unwrap().to_string();
    let store = support::s3_store(&endpoint, &bucket);
    let mkey = format!("{key}.manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&support::get_bytes(&store, &mkey)).unwrap();
    manifest["encryption"] =
        serde_json::json!("age\n::set-output name=listpwned::1\r::add-mask::list-mask");
    support::block_on(d1_backup::store::ObjectStore::put(
        &store,
        &mkey,
        serde_json::to_vec(&manifest).unwrap().into(),
        &d1_backup::store::ObjectMeta {
            content_type: "application/json".into(),
            metadata: Default::default(),
        },
    ))
    .unwrap();
    let mut inputs = action_inputs(&api, "plain", &endpoint, &bucket);
    inputs.push(("command", "list"));
    let (r, env) = action(&inputs);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("set-output name=listpwned"),
        "{}",
        r.stderr
    );
    let mut problems = log_problems(&r, SECRETS);
    problems.extend(file_problems(&r, &env));
    problems.extend(summary_problems(r.summary_file.as_deref().unwrap()));
    assert_no_problems("list of a hostile manifest", &r, problems);
}

fn synthetic(stdout: &str, stderr: &str) -> run::Run {
    run::Run {
        code: 0,
        stdout: stdout.into(),
        stderr: stderr.into(),
        max_rss_kib: 0,
        cpu_seconds: 0.0,
        outputs_file: None,
        summary_file: None,
    }
}

/// The checks above catch what they are meant to catch.
#[test]
fn the_checks_catch_hijacks() {
    let hijacks = [
        ("::set-output name=x::y", ""),
        ("", "  ::add-mask::not-a-secret"),
        ("::add-mask::not-a-secret", ""),
        ("ok\r::error::pwned", ""),
        ("::error title=a:b::msg", ""),
        ("::error title=a,b=c::msg", ""),
        ("::warning title=x::50%zz", ""),
        ("::group::50%", ""),
        ("::endgroup::x", ""),
        ("", "::error title=x::on stderr"),
        ("{\"name\":\"##[add-mask]x\"}", ""),
        ("", "debug: table \"##[stop-commands]t\""),
        ("::stop-commands::tok", ""),
        ("\u{3000}::notice::wide space", ""),
    ];
    for (out, err) in hijacks {
        assert!(
            !log_problems(&synthetic(out, err), SECRETS).is_empty(),
            "not caught: {out:?} {err:?}"
        );
    }
    let fine = synthetic(
        &format!(
            "::add-mask::{}\n::error title=Backup failed::a%0Ab %25 ##[add-mask]x\n{{\"a\":\"::x::\"}}",
            support::TOKEN
        ),
        "::group::Back up x%0A\n| ::set-output name=x::y\n::endgroup::\nwarning: ##x[y]",
    );
    assert_eq!(log_problems(&fine, SECRETS), Vec::<String>::new());

    for bad in [
        "| a | b |\n|---|---|\n| x|y | 1 |\n",
        "| a | b |\n| x\n# Injected | 1 |\n",
        "x <script>alert(1)</script>\n",
        "x\u{1b}[31m\n",
        "| a | b |\n| x | 1\n",
    ] {
        assert!(!summary_problems(bad).is_empty(), "not caught: {bad:?}");
    }
    assert_eq!(
        summary_problems("### T\n\n| a | b |\n|---|---:|\n| x\\|y &lt;b&gt; | 1 |\n\n- note\n"),
        Vec::<String>::new()
    );
}
