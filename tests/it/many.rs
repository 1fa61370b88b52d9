//! Many databases in one run: `*` over an account with an FTS5 database, an empty one and
//! one that always fails; bounded concurrency proven by the fake's request log.

use std::collections::BTreeMap;
use std::time::Duration;

use fake_d1::{Faults, Options};

use crate::support::{self, ACCOUNT, TOKEN, compare, gha, restore_d1_rules, run, weed};

fn small_db(path: &std::path::Path, sql: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn star_backs_up_every_healthy_database_and_names_the_failing_one() {
    let Some((endpoint, bucket)) = support::bucket("many") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let big = support::copy_db(&support::fixture_db(), dir.path(), "app");
    let fts = dir.path().join("search.sqlite");
    small_db(
        &fts,
        "CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO docs(body) VALUES ('hello world'), ('d1 backups'), ('full text');
         CREATE VIRTUAL TABLE docs_fts USING fts5(body);
         INSERT INTO docs_fts(body) SELECT body FROM docs;",
    );
    let empty = dir.path().join("empty.sqlite");
    small_db(&empty, "PRAGMA user_version = 1;");
    let users = dir.path().join("users.sqlite");
    small_db(
        &users,
        "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE, big INTEGER);
         INSERT INTO users VALUES (1, 'a@example.com', 9223372036854775807), (2, 'b@example.com', -9007199254740993);",
    );
    let broken = dir.path().join("broken.sqlite");
    small_db(&broken, "CREATE TABLE t(a); INSERT INTO t VALUES (1);");

    // Some latency, so that backups overlap in time and the bound is actually exercised.
    let fake = support::fake_d1_with(Options {
        latency: Duration::from_millis(15),
        ..Options::default()
    });
    let sources = [
        ("app", big.clone()),
        ("search", fts.clone()),
        ("empty", empty.clone()),
        ("users", users.clone()),
        ("broken", broken.clone()),
    ];
    for (name, path) in &sources {
        fake.add_database(name, path);
    }
    fake.set_faults(Faults {
        failing_databases: vec!["broken".into()],
        ..Faults::default()
    });
    fake.clear_requests();

    let action = run::ActionEnv::new(&[
        ("api-token", TOKEN),
        ("account-id", ACCOUNT),
        ("api-base-url", &fake.base_url()),
        ("database", "*"),
        ("bucket", &bucket),
        ("r2-endpoint", &endpoint),
        ("r2-access-key-id", weed::ACCESS_KEY),
        ("r2-secret-access-key", weed::SECRET_KEY),
    ]);
    let r = action.run();
    assert_eq!(r.code, 1, "{}", r.stderr);

    // The report: one object per database, in name order.
    let outputs = gha::parse_outputs(r.outputs_file.as_deref().unwrap()).unwrap();
    let report: serde_json::Value = serde_json::from_str(&outputs["report"]).unwrap();
    let last_line = r.stdout.lines().last().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(last_line).unwrap(),
        report
    );
    let by_name: BTreeMap<String, serde_json::Value> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["database"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    assert_eq!(
        by_name.keys().cloned().collect::<Vec<_>>(),
        ["app", "broken", "empty", "search", "users"]
    );
    assert_eq!(outputs["succeeded"], "4");
    assert_eq!(outputs["failed"], "1");

    // The failing database is named in its report, the error and the summary.
    let broken_report = &by_name["broken"];
    assert_eq!(broken_report["success"], false);
    assert!(
        broken_report["error"].as_str().unwrap().contains("500"),
        "{broken_report}"
    );
    assert!(
        r.stderr.contains("1 of 5 databases failed: broken"),
        "{}",
        r.stderr
    );
    let summary = r.summary_file.as_deref().unwrap();
    assert!(summary.contains("| broken | ❌ failed |"), "{summary}");
    assert!(
        summary.contains("| **Total: 5** | 4 ok (0 unchanged), 1 failed |"),
        "{summary}"
    );

    // Every healthy database: its own prefix, manifest and verification; restores exactly.
    let store = support::s3_store(&endpoint, &bucket);
    for (name, path) in &sources {
        if *name == "broken" {
            assert!(support::keys(&store, "broken/").is_empty());
            continue;
        }
        let rep = &by_name[*name];
        assert_eq!(rep["success"], true, "{name}: {rep}");
        assert_eq!(rep["verified"], true, "{name}: {rep}");
        let key = rep["key"].as_str().unwrap();
        assert!(key.starts_with(&format!("{name}/backup-")), "{key}");
        let keys = support::keys(&store, &format!("{name}/"));
        assert!(keys.contains(&format!("{key}.manifest.json")), "{keys:?}");
        let sql = support::sql_of(&support::get_bytes(&store, key), key);
        let restored = dir.path().join(format!("{name}-restored.sqlite"));
        restore_d1_rules(&sql, &restored);
        compare::assert_same(path, &restored);
    }
    assert_eq!(by_name["empty"]["tableCount"], 0);
    assert_eq!(by_name["search"]["tableCount"], 2);
    assert!(summary.contains("| empty | ✅ ok |"), "{summary}");

    // Concurrency: at no moment were more than 2 databases being worked on. Each
    // database's requests span [first start, last finish]; count overlapping spans.
    let requests = fake.requests();
    let mut spans: BTreeMap<String, (std::time::Instant, std::time::Instant)> = BTreeMap::new();
    for q in requests.iter().filter(|q| q.database.is_some()) {
        let e = spans
            .entry(q.database.clone().unwrap())
            .or_insert((q.started, q.finished));
        e.0 = e.0.min(q.started);
        e.1 = e.1.max(q.finished);
    }
    assert_eq!(spans.len(), 5, "every database was contacted");
    let mut peak = 0;
    for (a, _) in spans.values() {
        let overlapping = spans.values().filter(|(s, f)| s <= a && a < f).count();
        peak = peak.max(overlapping);
    }
    assert_eq!(
        peak, 2,
        "at most `concurrency` (2) databases at once, and it ran in parallel"
    );
    let in_flight = requests
        .iter()
        .map(|q| q.in_flight_databases)
        .max()
        .unwrap();
    assert!(
        in_flight <= 2,
        "{in_flight} databases had requests in flight at once"
    );
}

#[test]
fn named_lists_exclusions_and_bad_lists() {
    let Some((endpoint, bucket)) = support::bucket("named") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fake = support::fake_d1();
    for name in ["one", "two", "three"] {
        let p = dir.path().join(format!("{name}.sqlite"));
        small_db(
            &p,
            &format!("CREATE TABLE t(a); INSERT INTO t VALUES ('{name}');"),
        );
        fake.add_database(name, &p);
    }
    let mut env = support::cli_env(&fake, "one\ntwo\nthree\nmissing-db", &endpoint, &bucket);
    env.insert("D1_BACKUP_EXCLUDE_DATABASES".into(), "two".into());
    env.insert("D1_BACKUP_CONCURRENCY".into(), "1".into());
    let r = run::run(&["backup"], &env);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    let names: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["database"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["one", "three", "missing-db"]);
    assert_eq!(report[0]["success"], true);
    assert_eq!(report[1]["success"], true);
    assert_eq!(report[2]["success"], false);
    assert!(r.stderr.contains("failed: missing-db"), "{}", r.stderr);
    // Log lines of each database carry its name.
    assert!(r.stderr.contains("[one] "), "{}", r.stderr);
    let store = support::s3_store(&endpoint, &bucket);
    assert!(support::keys(&store, "two/").is_empty());

    // Bad lists are input errors: exit 2 before any request.
    for (database, extra, input) in [
        ("*,one", None, "database"),
        ("one,bad name", None, "database"),
        ("*", Some(("D1_BACKUP_CONCURRENCY", "0")), "concurrency"),
        ("*", Some(("D1_BACKUP_CONCURRENCY", "many")), "concurrency"),
        (
            "one,two",
            Some(("D1_BACKUP_EXCLUDE_DATABASES", "not/valid")),
            "exclude-databases",
        ),
    ] {
        fake.clear_requests();
        let mut env = support::cli_env(&fake, database, &endpoint, &bucket);
        if let Some((k, v)) = extra {
            env.insert(k.into(), v.into());
        }
        let r = run::run(&["backup"], &env);
        assert_eq!(r.code, 2, "{database} {extra:?}: {}", r.stderr);
        let err = r.report()["error"].as_str().unwrap().to_string();
        assert!(err.contains(input), "{err}");
        assert!(fake.requests().is_empty());
    }
    // Everything excluded.
    let mut env = support::cli_env(&fake, "*", &endpoint, &bucket);
    env.insert("D1_BACKUP_EXCLUDE_DATABASES".into(), "one,two,three".into());
    let r = run::run(&["backup"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.report()["error"]
            .as_str()
            .unwrap()
            .contains("exclude-databases")
    );
    // Commands on existing backups take one database.
    let r = run::run(
        &["list"],
        &support::cli_env(&fake, "one,three", &endpoint, &bucket),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.report()["error"]
            .as_str()
            .unwrap()
            .contains("one database at a time")
    );
}
