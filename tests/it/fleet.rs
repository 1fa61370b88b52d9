//! Fleet scale: hundreds of small databases on one token. A small database takes at most 3
//! requests; an unchanged one takes 1 and writes nothing; only the databases written since
//! are dumped again; `rows-read` is what the fake counted; `max-rows-read` stops a database
//! before any page of it is read; shards split a fleet exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::hostile_store::{d1_env, snapshot, walk_files};
use crate::support::{self, compare, run};

const FLEET: usize = 200;

fn name(i: usize) -> String {
    format!("tenant-{i:03}")
}

/// A tenant database: two small tables (one AUTOINCREMENT), 4 rows.
pub(crate) fn tenant_db(dir: &Path, i: usize) -> std::path::PathBuf {
    let path = dir.join(format!("{}.sqlite", name(i)));
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE users(id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL, big INTEGER);
         CREATE TABLE notes(user_id INTEGER REFERENCES users(id), body TEXT, score REAL);
         CREATE INDEX notes_user ON notes(user_id);
         INSERT INTO users(email, big) VALUES ('a{i}@example.com', 9223372036854775807), ('b{i}@example.com', -9007199254740993);
         INSERT INTO notes VALUES (1, 'hello {i}', 0.1), (2, 'x''y', -2.5e-300);"
    ))
    .unwrap();
    path
}

/// The fleet env: `database: *` into `out`, many at a time.
fn fleet_env(
    fake: &fake_d1::FakeD1,
    out: &Path,
    extra: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut env = d1_env(fake, "*", out);
    env.insert("D1_BACKUP_CONCURRENCY".into(), "16".into());
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    env
}

/// Each database's report, by name.
fn reports(r: &run::Run) -> BTreeMap<String, serde_json::Value> {
    let line = r
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no report array:\n{}\n{}", r.stdout, r.stderr));
    serde_json::from_str::<serde_json::Value>(line)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["database"].as_str().unwrap().to_string(), v.clone()))
        .collect()
}

/// API requests per database uuid in the fake's log, and requests for no database.
fn requests_by_database(fake: &fake_d1::FakeD1) -> (BTreeMap<String, usize>, usize) {
    let mut per = BTreeMap::new();
    let mut account = 0;
    for r in fake.requests() {
        match r.database {
            Some(db) => *per.entry(db).or_insert(0) += 1,
            None => account += 1,
        }
    }
    (per, account)
}

#[test]
fn a_fleet_costs_three_requests_a_database_and_one_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let fake = support::fake_d1();
    let mut uuids = BTreeMap::new();
    for i in 0..FLEET {
        let path = tenant_db(dir.path(), i);
        uuids.insert(name(i), fake.add_database(&name(i), &path));
    }
    let out = dir.path().join("backups");

    // First run: every database dumped, at most 3 requests each (bookmark, schema, rows).
    fake.clear_requests();
    let r = run::run(&["backup"], &fleet_env(&fake, &out, &[]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let first = reports(&r);
    assert_eq!(first.len(), FLEET);
    let (per, account) = requests_by_database(&fake);
    assert_eq!(per.len(), FLEET);
    let most = per.values().max().copied().unwrap();
    assert!(most <= 3, "a small database took {most} requests: {per:?}");
    assert!(account <= 3, "{account} account-level requests");
    for (db, rep) in &first {
        assert_eq!(rep["success"], true, "{rep}");
        assert_eq!(rep.get("unchanged"), None, "{rep}");
        assert_eq!(rep["verified"], true, "{rep}");
        // rows-read is what the fake counted for that database.
        assert_eq!(
            rep["rowsRead"].as_u64().unwrap(),
            fake.rows_read(&uuids[db]),
            "{db}"
        );
    }
    let after_first = snapshot(&out);

    // Second run, no writes: 1 request per database, nothing written, all unchanged.
    fake.clear_requests();
    let runner = tempfile::tempdir().unwrap();
    let (summary, outputs) = (runner.path().join("summary.md"), runner.path().join("out"));
    let r = run::run(
        &["backup"],
        &fleet_env(
            &fake,
            &out,
            &[
                ("GITHUB_STEP_SUMMARY", &summary.display().to_string()),
                ("GITHUB_OUTPUT", &outputs.display().to_string()),
            ],
        ),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(
        summary.contains(&format!("{FLEET} ok ({FLEET} unchanged)")),
        "{summary}"
    );
    let outputs =
        crate::support::gha::parse_outputs(&std::fs::read_to_string(&outputs).unwrap()).unwrap();
    assert_eq!(outputs["unchanged"], FLEET.to_string());
    assert_eq!(outputs["rows-read"], "0");
    let second = reports(&r);
    let (per, _) = requests_by_database(&fake);
    assert!(
        per.values().all(|&n| n <= 1),
        "an idle database took more than one request: {per:?}"
    );
    for (db, rep) in &second {
        assert_eq!(rep["unchanged"], true, "{db}: {rep}");
        assert_eq!(rep["key"], first[db]["key"], "{db}");
    }
    assert_eq!(
        snapshot(&out),
        after_first,
        "an idle run wrote to the store"
    );

    // Shards of the idle fleet: disjoint, and together every database.
    let mut seen = BTreeSet::new();
    for shard in ["1/3", "2/3", "3/3"] {
        let r = run::run(
            &["backup"],
            &fleet_env(&fake, &out, &[("D1_BACKUP_SHARD", shard)]),
        );
        assert_eq!(r.code, 0, "{shard}: {}", r.stderr);
        for db in reports(&r).keys() {
            assert!(seen.insert(db.clone()), "{db} is in two shards");
        }
    }
    assert_eq!(seen.len(), FLEET);

    // Writes to 5 databases: a third run dumps exactly those, and they restore exactly.
    let written: Vec<String> = [3, 50, 99, 150, 199].iter().map(|&i| name(i)).collect();
    for db in &written {
        fake.execute(
            db,
            "INSERT INTO users(email, big) VALUES ('new@example.com', 42);",
        );
    }
    let r = run::run(&["backup"], &fleet_env(&fake, &out, &[]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let third = reports(&r);
    let dumped: Vec<String> = third
        .iter()
        .filter(|(_, rep)| rep.get("unchanged").is_none())
        .map(|(db, _)| db.clone())
        .collect();
    assert_eq!(dumped, written);
    for db in &written {
        let key = third[db]["key"].as_str().unwrap();
        assert_ne!(third[db]["key"], first[db]["key"]);
        let file = dir.path().join(format!("{db}-restored.sqlite"));
        let mut env = d1_env(&fake, db, &out);
        env.insert("D1_BACKUP_RESTORE_FILE".into(), file.display().to_string());
        let r = run::run(&["restore", key], &env);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        compare::assert_same(&fake.database_path(db).unwrap(), &file);
    }
}

/// The newest backup of `db` in `out`, and its files.
fn newest(out: &Path, db: &str) -> String {
    let mut keys: Vec<String> = walk_files(&out.join(db))
        .into_iter()
        .map(|p| p.strip_prefix(out).unwrap().display().to_string())
        .filter(|k| k.ends_with(".sql.zst"))
        .collect();
    keys.sort();
    keys.pop().unwrap()
}

#[test]
fn an_equal_bookmark_without_a_sound_backup_is_not_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let fake = support::fake_d1();
    for i in 0..3 {
        fake.add_database(&name(i), &tenant_db(dir.path(), i));
    }
    let out = dir.path().join("backups");
    for i in 0..3 {
        crate::hostile_store::d1_backup_to_dir(&fake, &name(i), &out, &[]);
    }
    // tenant-000: its verification report is gone; tenant-001: it failed verification;
    // tenant-002: its object is gone. The bookmarks still match.
    let unverified = newest(&out, &name(0));
    std::fs::remove_file(out.join(d1_backup::keys::verify_key(&unverified))).unwrap();
    let failed = newest(&out, &name(1));
    let vpath = out.join(d1_backup::keys::verify_key(&failed));
    let mut report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&vpath).unwrap()).unwrap();
    assert_eq!(report["verified"], true);
    report["verified"] = false.into();
    std::fs::write(&vpath, serde_json::to_vec(&report).unwrap()).unwrap();
    let missing = newest(&out, &name(2));
    std::fs::remove_file(out.join(&missing)).unwrap();

    for i in 0..3 {
        let r = run::run(&["backup"], &d1_env(&fake, &name(i), &out));
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let rep = r.report();
        assert_eq!(rep.get("unchanged"), None, "{}: {rep}", name(i));
        assert_eq!(rep["verified"], true);
    }
    // With `skip-unchanged: false` even a sound, unchanged backup is made again.
    let before = newest(&out, &name(0));
    let r = run::run(&["backup"], &{
        let mut env = d1_env(&fake, &name(0), &out);
        env.insert("D1_BACKUP_SKIP_UNCHANGED".into(), "false".into());
        env
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_ne!(r.report()["key"].as_str().unwrap(), before);
    // And without it, the same database is now unchanged.
    let r = run::run(&["backup"], &d1_env(&fake, &name(0), &out));
    assert_eq!(r.report()["unchanged"], true, "{}", r.stdout);
}

#[test]
fn the_rows_read_budget_stops_before_a_page_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let fake = support::fake_d1();
    let path = dir.path().join("big.sqlite");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000)
         INSERT INTO t SELECT i, 'row ' || i FROM n;",
    )
    .unwrap();
    drop(c);
    let uuid = fake.add_database("big", &path);
    let out = dir.path().join("backups");
    fake.clear_requests();
    let mut env = d1_env(&fake, "big", &out);
    env.insert("D1_BACKUP_MAX_ROWS_READ".into(), "1000".into());
    let r = run::run(&["backup"], &env);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let error = r.report()["error"].as_str().unwrap().to_string();
    assert!(error.contains("budget of 1000 rows"), "{error}");
    assert!(error.contains("max-rows-read"), "{error}");
    assert!(error.contains("about 5000 rows"), "{error}");
    // No page was read: nothing selected from `t` but its largest rowid.
    for req in fake.requests() {
        assert!(
            !req.body_head.contains("LIMIT"),
            "a page was read: {}",
            req.body_head
        );
    }
    assert!(fake.rows_read(&uuid) < 100, "{}", fake.rows_read(&uuid));
    assert!(walk_files(&out).is_empty(), "{:?}", walk_files(&out));

    // A budget the database fits in: it backs up and reports what it read.
    let mut env = d1_env(&fake, "big", &out);
    env.insert("D1_BACKUP_MAX_ROWS_READ".into(), "1000000".into());
    fake.clear_requests();
    let r = run::run(&["backup"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let read = r.report()["rowsRead"].as_u64().unwrap();
    assert_eq!(read, fake.rows_read(&uuid));
    assert!(read >= 5000, "{read}");
}

#[test]
fn a_write_between_the_bookmark_and_the_read_is_never_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let fake = support::fake_d1();
    fake.add_database(&name(0), &tenant_db(dir.path(), 0));
    let out = dir.path().join("backups");
    // Another client writes just before the one request that reads every row.
    fake.set_faults(fake_d1::Faults {
        write_during_reads: Some((
            2,
            "INSERT INTO users(email) VALUES ('racing@example.com')".into(),
        )),
        ..Default::default()
    });
    let r = run::run(&["backup"], &d1_env(&fake, &name(0), &out));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = r.report();
    // The rows are one point in time (one transaction), taken after the recorded bookmark.
    assert_eq!(first["consistent"], true);
    assert_eq!(first["rowCount"], 5, "{first}");
    assert_ne!(first["bookmark"], fake.bookmark(&name(0)));
    fake.set_faults(fake_d1::Faults::default());
    // So the next run does not take it for unchanged: it backs the database up again.
    let r = run::run(&["backup"], &d1_env(&fake, &name(0), &out));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let second = r.report();
    assert_eq!(second.get("unchanged"), None, "{second}");
    assert_eq!(second["bookmark"], fake.bookmark(&name(0)));
    // And from then on it is unchanged.
    let r = run::run(&["backup"], &d1_env(&fake, &name(0), &out));
    assert_eq!(r.report()["unchanged"], true);
}

#[test]
fn a_fleet_over_the_token_budget_waits_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    // Cloudflare's per-token limit, scaled down: 20 requests in any second.
    let fake = support::fake_d1_with(fake_d1::Options {
        rate_limit: Some(fake_d1::RateLimit {
            requests: 20,
            window: std::time::Duration::from_secs(1),
        }),
        ..fake_d1::Options::default()
    });
    for i in 0..12 {
        fake.add_database(&name(i), &tenant_db(dir.path(), i));
    }
    let out = dir.path().join("backups");
    fake.clear_requests();
    let r = run::run(&["backup"], &fleet_env(&fake, &out, &[]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let done = reports(&r);
    assert_eq!(done.len(), 12);
    assert!(done.values().all(|rep| rep["verified"] == true));
    let limited = fake.requests().iter().filter(|q| q.status == 429).count();
    assert!(limited > 0, "the limit was never reached");
}
