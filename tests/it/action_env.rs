//! Running the binary exactly as the Actions runner starts the Docker action described by
//! `action.yml`: every declared input as `INPUT_<NAME>` (hyphens kept), defaults applied,
//! the rest empty, and the file-command files present.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::{self, compare, gha, run};

/// Inputs (name → default) and output names declared in `action.yml`.
fn declared() -> (BTreeMap<String, String>, BTreeSet<String>) {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("action.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(doc["runs"]["using"], "docker");
    let inputs = doc["inputs"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let default = v["default"].as_str().unwrap_or("").to_string();
            (k.as_str().unwrap().to_string(), default)
        })
        .collect();
    let outputs = doc["outputs"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    (inputs, outputs)
}

/// The environment the runner gives the container for these `with:` values.
fn runner_env(dir: &Path, with: &[(&str, &str)]) -> BTreeMap<String, String> {
    let (inputs, _) = declared();
    let mut env = BTreeMap::new();
    for (name, default) in &inputs {
        let v = with
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| default.clone());
        env.insert(format!("INPUT_{}", name.to_ascii_uppercase()), v);
    }
    for (k, _) in with {
        assert!(
            inputs.contains_key(*k),
            "`{k}` is not declared in action.yml"
        );
    }
    for (var, file) in [
        ("GITHUB_OUTPUT", "set_output"),
        ("GITHUB_STEP_SUMMARY", "step_summary"),
        ("GITHUB_ENV", "set_env"),
        ("GITHUB_STATE", "save_state"),
    ] {
        let p = dir.join(file);
        std::fs::write(&p, "").unwrap();
        env.insert(var.to_string(), p.display().to_string());
    }
    for (k, v) in [
        ("GITHUB_ACTIONS", "true"),
        ("CI", "true"),
        ("RUNNER_DEBUG", "1"),
    ] {
        env.insert(k.into(), v.into());
    }
    env.insert("RUNNER_TEMP".into(), dir.display().to_string());
    env.insert("HOME".into(), dir.display().to_string());
    env
}

fn check_run(r: &run::Run, secrets: &[&str]) -> BTreeMap<String, String> {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    // Secrets are masked before anything else is printed, and never appear otherwise.
    if !secrets.is_empty() {
        let first = r.stdout.lines().next().unwrap();
        assert!(first.starts_with("::add-mask::"), "{first}");
    }
    let all = r.all_text();
    let unmasked: Vec<&str> = all
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect();
    for s in secrets {
        assert!(!unmasked.iter().any(|l| l.contains(s)), "a secret leaked");
    }
    // Every input was read: nothing was set that the binary ignored.
    assert!(!r.stderr.contains("not used by"), "{}", r.stderr);
    // Untrusted text never forms a workflow command.
    for line in r.stderr.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("::") {
            let cmd = rest.split([':', ' ']).next().unwrap();
            assert!(
                ["group", "endgroup", "warning", "error", "debug"].contains(&cmd),
                "unexpected command line: {line}"
            );
        }
    }
    let summary = r.summary_file.clone().unwrap();
    assert!(summary.len() < 1024 * 1024);
    assert!(summary.starts_with("### "), "{summary}");
    for line in summary.lines().filter(|l| l.starts_with('|')) {
        assert!(line.ends_with('|'), "broken table row: {line}");
    }
    gha::parse_outputs(r.outputs_file.as_deref().unwrap()).expect("the runner parses the outputs")
}

#[test]
fn the_action_runs_as_the_runner_starts_it() {
    let Some((endpoint, bucket)) = support::bucket("action") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "app");
    let fake = support::fake_d1();
    fake.add_database("app", &db);
    let api = fake.base_url();
    let common: Vec<(&str, &str)> = vec![
        ("api-token", support::TOKEN),
        ("account-id", support::ACCOUNT),
        ("database", "app"),
        ("bucket", &bucket),
        ("r2-endpoint", &endpoint),
        ("r2-access-key-id", support::weed::ACCESS_KEY),
        ("r2-secret-access-key", support::weed::SECRET_KEY),
        ("api-base-url", &api),
    ];
    let secrets = [support::TOKEN, support::weed::SECRET_KEY];
    let (_, declared_outputs) = declared();
    let mut seen: BTreeSet<String> = BTreeSet::new();

    // 1. query, with every other input away from its default.
    let mut with = common.clone();
    with.extend([
        ("command", "backup"),
        ("prefix", "nightly/"),
        ("compression-level", "5"),
        ("compression-threads", "1"),
        ("method", "query"),
        ("export-timeout", "10m"),
        ("consistency-retries", "1"),
        ("exclude-tables", "wide"),
        ("progress-interval", "1s"),
        ("s3-checksums", "when-supported"),
        ("keep-last", "5"),
        ("keep-hourly", "5"),
        ("keep-daily", "7"),
        ("keep-weekly", "4"),
        ("keep-monthly", "12"),
        ("keep-yearly", "2"),
        ("keep-within", "30d"),
        ("dry-run", "true"),
    ]);
    std::fs::create_dir_all(dir.path().join("one")).unwrap();
    let r = run::run(&[], &runner_env(&dir.path().join("one"), &with));
    let outputs = check_run(&r, &secrets);
    assert!(outputs["key"].starts_with("nightly/app/backup-"));
    assert_eq!(outputs["bucket"], bucket);
    assert_eq!(outputs["method"], "query");
    assert!(outputs["filename"].ends_with(".sql.zst") && !outputs["filename"].contains('/'));
    chrono::DateTime::parse_from_rfc3339(&outputs["timestamp"]).expect("RFC 3339 timestamp");
    let report: serde_json::Value = serde_json::from_str(&outputs["report"]).unwrap();
    assert_eq!(report, r.report());
    assert_eq!(report["tableCount"].to_string(), outputs["table-count"]);
    assert_eq!(outputs["sha256"].len(), 64);
    assert!(r.stderr.contains("::group::Connect") && r.stderr.contains("::endgroup::"));
    seen.extend(outputs.keys().cloned());

    // 2. export of the same database without its virtual tables (and the schema only).
    let mut with = common.clone();
    with.extend([
        ("method", "export"),
        ("exclude-tables", "docs,articles_fts"),
        ("no-data", "true"),
        // D1's own dump puts INSTEAD OF triggers before their views: it does not verify.
        ("verify", "false"),
    ]);
    std::fs::create_dir_all(dir.path().join("two")).unwrap();
    let r = run::run(&[], &runner_env(&dir.path().join("two"), &with));
    let outputs = check_run(&r, &secrets);
    assert_eq!(outputs["method"], "export");
    seen.extend(outputs.keys().cloned());

    // 3. A local file into a directory: the last two inputs.
    let out = dir.path().join("backups");
    let (file, out) = (db.display().to_string(), out.display().to_string());
    std::fs::create_dir_all(dir.path().join("three")).unwrap();
    let r = run::run(
        &[],
        &runner_env(
            &dir.path().join("three"),
            &[
                ("sqlite-file", &file),
                ("output-dir", &out),
                ("no-schema", "true"),
            ],
        ),
    );
    let outputs = check_run(&r, &[]);
    seen.extend(outputs.keys().cloned());

    // 4. Verify the backup of run 1, then restore it to a file and into a new D1 database.
    let restored = dir.path().join("restored.sqlite").display().to_string();
    let runs: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("command", "verify"),
            ("prefix", "nightly/"),
            ("backup-key", "latest"),
        ],
        vec![
            ("command", "list"),
            ("prefix", "nightly/"),
            ("json", "true"),
        ],
        vec![
            ("command", "check"),
            ("prefix", "nightly/"),
            ("max-age", "2d"),
            ("max-shrink", "90"),
        ],
        vec![
            ("command", "restore"),
            ("prefix", "nightly/"),
            ("before", "2099-01-01"),
            ("restore-file", &restored),
            ("force", "true"),
        ],
        vec![
            ("command", "restore"),
            ("prefix", "nightly/"),
            ("restore-to", "app-copy"),
            ("create", "true"),
        ],
    ];
    for (i, extra) in runs.into_iter().enumerate() {
        let mut with = common.clone();
        with.extend(extra);
        let d = dir.path().join(format!("cmd{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let r = run::run(&[], &runner_env(&d, &with));
        let outputs = check_run(&r, &secrets);
        if let Some(key) = outputs.get("key") {
            assert!(key.starts_with("nightly/app/backup-"), "{key}");
        }
        seen.extend(outputs.keys().cloned());
    }
    // 5. Several databases at once, encrypted: `report` is an array, with the counts.
    let second = dir.path().join("second.sqlite");
    rusqlite::Connection::open(&second)
        .unwrap()
        .execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1);")
        .unwrap();
    fake.add_database("second", &second);
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let mut with: Vec<(&str, &str)> = common
        .iter()
        .copied()
        .filter(|(k, _)| *k != "database")
        .collect();
    with.extend([
        ("database", "*"),
        ("exclude-databases", "app-copy"),
        ("concurrency", "2"),
        ("prefix", "many/"),
        ("encrypt-recipients", recipient.as_str()),
    ]);
    std::fs::create_dir_all(dir.path().join("five")).unwrap();
    let r = run::run(&[], &runner_env(&dir.path().join("five"), &with));
    let outputs = check_run(&r, &secrets);
    assert_eq!(
        (outputs["succeeded"].as_str(), outputs["failed"].as_str()),
        ("2", "0")
    );
    let report: serde_json::Value = serde_json::from_str(&outputs["report"]).unwrap();
    assert_eq!(report.as_array().unwrap().len(), 2);
    assert!(report[0]["key"].as_str().unwrap().ends_with(".sql.zst.age"));
    seen.extend(outputs.keys().cloned());

    // Run 1 left `wide` out; everything else came back.
    let c = compare::open(std::path::Path::new(&restored));
    assert_eq!(compare::rows(&c, "many", false).len(), 200_000);
    assert!(!compare::user_tables(&c).iter().any(|(n, _, _)| n == "wide"));

    let missing: Vec<&String> = declared_outputs.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "declared outputs never written: {missing:?}"
    );
    let undeclared: Vec<&String> = seen.difference(&declared_outputs).collect();
    assert!(
        undeclared.is_empty(),
        "outputs written but not declared: {undeclared:?}"
    );
}

#[test]
fn an_ignored_input_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(a)")
        .unwrap();
    let (file, out) = (
        db.display().to_string(),
        dir.path().join("o").display().to_string(),
    );
    // With a local file, `api-base-url` has no use: the binary says so.
    let r = run::run(
        &[],
        &runner_env(
            dir.path(),
            &[
                ("sqlite-file", &file),
                ("output-dir", &out),
                ("api-base-url", "http://127.0.0.1:9"),
            ],
        ),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("`api-base-url` is set but not used by `backup`"),
        "{}",
        r.stderr
    );
}

#[test]
fn parser_follows_the_runner() {
    let ok = "a=1\nb<<EOF\nx\ny\nEOF\nc=\n";
    let m = gha::parse_outputs(ok).unwrap();
    assert_eq!(m["a"], "1");
    assert_eq!(m["b"], "x\ny");
    assert_eq!(m["c"], "");
    assert!(gha::parse_outputs("b<<EOF\nx\n").is_err());
}
