//! On the real D1 engine (wrangler's local D1 behind `tests/engine/shim.js`): every query the
//! product sends is accepted or refused by D1's own SQLite build and limits.
//!
//! Each database is seeded into the engine through the import route (a local backup of the
//! source file, restored with `--to-database`), backed up from the engine over REST, restored
//! to a file and compared with the source value by value and type by type, and restored back
//! into the engine through the import route.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::engine::{self, Engine, engine_env, sqlite_files, wrangler_env};
use crate::support::{self, ACCOUNT, compare, fixture, hostile_db, run};

#[path = "../engine/corpus.rs"]
mod corpus;

/// A probe's answer from a server on 127.0.0.1:`port` (the engine shim or the fake), in
/// `probes.expected`'s form.
fn probe_answer(port: u16, uuid: &str, probe: &corpus::Probe) -> String {
    let mut body = serde_json::json!({ "sql": probe.sql });
    if let Some(params) = &probe.params {
        body["params"] = params.clone();
    }
    let (_, text) = engine::http(
        port,
        "POST",
        &format!("/client/v4/accounts/{ACCOUNT}/d1/database/{uuid}/raw"),
        Some(&body.to_string()),
    )
    .expect("an answer");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    if v["success"] == true {
        if !probe.rows {
            return "ok".into();
        }
        return format!("ok {}", corpus::rows_text(&text).expect("rows"));
    }
    format!(
        "err {}",
        corpus::normalize(v["errors"][0]["message"].as_str().unwrap_or_default())
    )
}

/// Every probe statement (limits, authorizer, value encoding) gets the same answer from the
/// fake and from the engine — accepted or refused, the same message — and the engine still
/// answers as recorded in `probes.expected` (which `fake-d1/tests/probes.rs` also checks).
#[test]
fn fake_and_engine_answer_every_probe_alike() {
    let Some(engine) = engine::engine() else {
        return;
    };
    let dir = engine::engine_dir();
    let probes = corpus::parse_probes(&corpus::read(&dir, "probes.txt"));
    let expected = corpus::parse_expected(&corpus::read(&dir, "probes.expected"));
    assert_eq!(probes.len(), expected.len(), "probes.expected is stale");
    let fake = support::fake_d1();
    let fake_uuid = fake.create_database("probes");
    let fake_port: u16 = fake
        .base_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("fake port");
    let engine_uuid = engine.create_database("probes");
    let mut differences = Vec::new();
    for (probe, (label, recorded)) in probes.iter().zip(&expected) {
        assert_eq!(&probe.label, label, "probes.expected is stale");
        let on_engine = probe_answer(engine.port, &engine_uuid, probe);
        let on_fake = probe_answer(fake_port, &fake_uuid, probe);
        if on_engine != on_fake || &on_engine != recorded {
            differences.push(format!(
                "{label}\n    engine:   {}\n    fake:     {}\n    recorded: {}",
                corpus::shorten(&on_engine),
                corpus::shorten(&on_fake),
                corpus::shorten(recorded)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} probes differ:\n{}",
        differences.len(),
        probes.len(),
        differences.join("\n")
    );
}

/// Back `source` up locally (plain SQL) under the name `name`; returns the key.
fn local_backup(source: &Path, name: &str, out: &Path) -> String {
    let mut env = BTreeMap::new();
    env.insert("D1_BACKUP_SQLITE_FILE".into(), source.display().to_string());
    env.insert("D1_BACKUP_OUTPUT_DIR".into(), out.display().to_string());
    env.insert("D1_DATABASE".into(), name.into());
    env.insert("D1_BACKUP_COMPRESSION_LEVEL".into(), "0".into());
    let r = run::run(&["backup"], &env);
    assert_eq!(
        r.code, 0,
        "local backup of {name}:\n{}\n{}",
        r.stdout, r.stderr
    );
    assert_eq!(r.report()["verified"], true, "{}", r.stdout);
    r.report()["key"].as_str().unwrap().to_string()
}

/// Restore `key` (a backup of `name` in `out`) into the engine database `target`.
fn restore_into_engine(engine: &Engine, name: &str, out: &Path, key: &str, target: &str) {
    let mut env = engine_env(engine, name, out);
    env.insert("D1_BACKUP_RESTORE_TO".into(), target.into());
    let r = run::run(&["restore", key, "--create"], &env);
    assert_eq!(
        r.code, 0,
        "restore of {key} into {target}:\n{}\n{}",
        r.stdout, r.stderr
    );
    assert_eq!(r.report()["created"], true);
}

/// Seed, back up from the engine, restore to a file, compare; restore into the engine again.
/// Returns the key of the backup taken from the engine and the directory holding it.
fn round_trip(engine: &Engine, name: &str, source: &Path, dir: &Path) -> (String, PathBuf) {
    let seeds = dir.join(format!("{name}-seed"));
    let seed_key = local_backup(source, name, &seeds);
    restore_into_engine(engine, name, &seeds, &seed_key, name);

    let out = dir.join(format!("{name}-backups"));
    let r = run::run(&["backup"], &engine_env(engine, name, &out));
    assert_eq!(
        r.code, 0,
        "backup of {name} from the engine:\n{}\n{}",
        r.stdout, r.stderr
    );
    let report = r.report();
    assert_eq!(report["verified"], true, "{}", r.stdout);
    let key = report["key"].as_str().unwrap().to_string();

    let restored = dir.join(format!("{name}-restored.sqlite"));
    let mut env = engine_env(engine, name, &out);
    env.insert(
        "D1_BACKUP_RESTORE_FILE".into(),
        restored.display().to_string(),
    );
    let r = run::run(&["restore", &key], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    compare::assert_same(source, &restored);

    // The dump taken from the engine imports back into the engine.
    restore_into_engine(engine, name, &out, &key, &format!("{name}-copy"));
    (key, out)
}

#[test]
fn fixture_round_trips_through_the_engine() {
    let Some(engine) = engine::engine() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "fixture");
    round_trip(engine, "fixture", &db, dir.path());
}

#[test]
fn hostile_names_round_trip_through_the_engine() {
    let Some(engine) = engine::engine() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hostile.sqlite");
    hostile_db::build(&db, &hostile_db::hostile_names());
    round_trip(engine, "hostile", &db, dir.path());
}

#[test]
fn wide_tables_round_trip_through_the_engine() {
    let Some(engine) = engine::engine() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wide.sqlite");
    fixture::build_wide(&db);
    let (key, out) = round_trip(engine, "wide", &db, dir.path());
    // The big values were split into statements D1 accepts.
    let sql = std::fs::read(out.join(&key)).unwrap();
    let sql = support::sql_of(&sql, &key);
    let stats = support::restore_d1_rules(&sql, &dir.path().join("wide-rules.sqlite"));
    assert!(stats.longest_statement <= 100_000, "{stats:?}");
}

#[test]
fn a_small_database_is_three_requests_and_then_unchanged_on_the_engine() {
    let Some(engine) = engine::engine() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = crate::fleet::tenant_db(dir.path(), 7);
    let (key, out) = round_trip(engine, "tenant", &db, dir.path());
    // Bookmark, schema (one batch), every row (one batch) — the engine answers batches.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join(d1_backup::keys::manifest_key(&key))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["requests"], 3, "{manifest}");
    assert_eq!(manifest["consistent"], true);
    // Nothing written since: the next run takes one request and writes nothing.
    let r = run::run(&["backup"], &engine_env(engine, "tenant", &out));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.report()["unchanged"], true, "{}", r.stdout);
    assert_eq!(r.report()["key"], key.as_str());
}

/// The REALs of `path`'s table `r` (id → bits), and a check that each is stored as REAL.
fn real_bits(path: &Path) -> BTreeMap<i64, u64> {
    let c = compare::open(path);
    let mut stmt = c
        .prepare("SELECT id, v, typeof(v) FROM r ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        let kind: String = r.get(2)?;
        assert_eq!(kind, "real", "row {} is {kind}", r.get::<_, i64>(0)?);
        Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?.to_bits()))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn assert_same_bits(what: &str, want: &BTreeMap<i64, u64>, got: &BTreeMap<i64, u64>) {
    assert_eq!(want.len(), got.len(), "{what}: row count");
    let wrong: Vec<String> = want
        .iter()
        .filter(|(id, bits)| got.get(id) != Some(bits))
        .take(10)
        .map(|(id, bits)| {
            format!(
                "id {id}: {:e} came back as {:?}",
                f64::from_bits(*bits),
                got.get(id).map(|b| f64::from_bits(*b))
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{what}: REALs changed: {wrong:#?}");
}

/// What the engine itself stores, read over REST: JSON numbers are JavaScript's shortest
/// round-trip text (exact); the sign of zero and the infinities are asked for separately.
fn engine_bits(engine: &Engine, name: &str) -> BTreeMap<i64, u64> {
    let uuid = engine.uuid(name).expect("seeded database");
    let mut out = BTreeMap::new();
    let mut after = i64::MIN;
    loop {
        let rows = engine.rows(
            &uuid,
            &format!(
                "SELECT id, typeof(v), CASE WHEN v=0.0 THEN atan2(v,-1.0) < 0 WHEN v IN (9e999,-9e999) THEN quote(v) ELSE v END \
                 FROM r WHERE id > {after} ORDER BY id LIMIT 2000"
            ),
        );
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let id = row[0].as_i64().unwrap();
            assert_eq!(row[1], "real", "engine row {id}");
            let v = match &row[2] {
                serde_json::Value::Number(n) if n.is_f64() || n.is_i64() || n.is_u64() => {
                    n.to_string().parse::<f64>().unwrap()
                }
                serde_json::Value::String(s) if s.starts_with('-') => f64::NEG_INFINITY,
                serde_json::Value::String(_) => f64::INFINITY,
                other => panic!("row {id}: {other}"),
            };
            out.insert(id, v.to_bits());
            after = id;
        }
    }
    // Zeros: the CASE above answered whether the sign is negative.
    let zeros = engine.rows(&uuid, "SELECT id, atan2(v,-1.0) < 0 FROM r WHERE v = 0.0");
    for row in zeros {
        let negative = row[1].as_i64() == Some(1);
        out.insert(
            row[0].as_i64().unwrap(),
            if negative {
                (-0.0f64).to_bits()
            } else {
                0.0f64.to_bits()
            },
        );
    }
    out
}

#[test]
fn reals_are_bit_exact_through_the_engine_and_sqlite3() {
    let Some(engine) = engine::engine() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reals.sqlite");
    let clock = std::time::Instant::now();
    let stage = |what: &str| eprintln!("{:>6.1}s {what}", clock.elapsed().as_secs_f64());
    let count = fixture::build_reals(&db);
    assert!(count >= 10_000, "{count} REALs");
    let want = real_bits(&db);

    // 1. The tool's dump of the file, loaded with the `sqlite3` shell.
    let seeds = dir.path().join("reals-seed");
    let key = local_backup(&db, "reals", &seeds);
    let sql_path = seeds.join(&key);
    let shell_db = dir.path().join("reals-sqlite3.sqlite");
    let script = format!("BEGIN;\n.read '{}'\nCOMMIT;\n", sql_path.display());
    let mut shell = Command::new("sqlite3")
        .arg("-bail")
        .arg(&shell_db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the sqlite3 shell (apt-get install sqlite3)");
    std::io::Write::write_all(&mut shell.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = shell.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_bits("sqlite3 shell", &want, &real_bits(&shell_db));
    stage("sqlite3 shell");

    // 2. Into D1 through the import route: what the engine stores...
    restore_into_engine(engine, "reals", &seeds, &key, "reals");
    assert_same_bits("engine after import", &want, &engine_bits(engine, "reals"));
    stage("imported into the engine");
    // ...and what a backup of it restores to.
    let out_dir = dir.path().join("reals-backups");
    let r = run::run(&["backup"], &engine_env(engine, "reals", &out_dir));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.report()["verified"], true, "{}", r.stdout);
    let from_engine = r.report()["key"].as_str().unwrap().to_string();
    let restored = dir.path().join("reals-restored.sqlite");
    let mut env = engine_env(engine, "reals", &out_dir);
    env.insert(
        "D1_BACKUP_RESTORE_FILE".into(),
        restored.display().to_string(),
    );
    let r = run::run(&["restore", &from_engine], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same_bits(
        "backup of the engine, restored",
        &want,
        &real_bits(&restored),
    );
    stage("backed up from the engine and restored");
    compare::assert_same(&db, &restored);
    // The engine's dump goes back into the engine exactly.
    restore_into_engine(engine, "reals", &out_dir, &from_engine, "reals-copy");
    assert_same_bits("engine copy", &want, &engine_bits(engine, "reals-copy"));
    stage("restored into the engine again");

    // 3. `wrangler d1 execute --local --file`, into a state directory of its own.
    let state = dir.path().join("execute-state");
    let home = dir.path().join("wrangler-home");
    std::fs::create_dir_all(&home).unwrap();
    let js = engine::wrangler_js().unwrap();
    let app = engine::app_copy(dir.path());
    let mut cmd = Command::new("node");
    cmd.arg(js)
        .args([
            "d1",
            "execute",
            "slot-15",
            "--local",
            "--yes",
            "--persist-to",
        ])
        .arg(&state)
        .arg("--file")
        .arg(&sql_path)
        .arg("--config")
        .arg(app.join("wrangler.toml"))
        .current_dir(&app);
    wrangler_env(&mut cmd, &home);
    let out = cmd.output().expect("wrangler d1 execute");
    assert!(
        out.status.success(),
        "wrangler d1 execute:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let files = sqlite_files(&state);
    let executed = files
        .iter()
        .find(|f| {
            compare::open(f)
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE name='r'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or(0)
                == 1
        })
        .unwrap_or_else(|| panic!("no database with table r in {files:?}"));
    assert_same_bits("wrangler d1 execute --local", &want, &real_bits(executed));
    stage("wrangler d1 execute --local");
}
