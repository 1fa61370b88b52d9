//! The `export` method, consistency through Time Travel bookmarks, and table filters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::{self, cli_env, compare, restore_d1_rules, run};

/// A copy of the fixture without its virtual tables (D1's export refuses those).
fn without_virtual_tables(dir: &Path, name: &str) -> PathBuf {
    let db = support::copy_db(&support::fixture_db(), dir, name);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("DROP TABLE docs; DROP TABLE articles_fts;")
        .unwrap();
    db
}

fn env_with(
    fake: &fake_d1::FakeD1,
    db: &str,
    endpoint: &str,
    bucket: &str,
    extra: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut env = cli_env(fake, db, endpoint, bucket);
    for (k, v) in extra {
        env.insert(
            format!("D1_BACKUP_{}", k.to_ascii_uppercase().replace('-', "_")),
            v.to_string(),
        );
    }
    env
}

#[test]
fn export_stores_exactly_what_d1_served() {
    let Some((endpoint, bucket)) = support::bucket("export") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = without_virtual_tables(dir.path(), "exp");
    let fake = support::fake_d1();
    let uuid = fake.add_database("exp", &db);
    // D1's own dump of this database does not restore (`Infinity`, rows over 100 KB), so it
    // would fail verification: see `verification_catches_d1_export_flaws`.
    let mut env = env_with(
        &fake,
        "exp",
        &endpoint,
        &bucket,
        &[("method", "export"), ("verify", "false")],
    );
    env.insert(
        "GITHUB_OUTPUT".into(),
        dir.path().join("out").display().to_string(),
    );
    std::fs::write(dir.path().join("out"), "").unwrap();
    let r = run::run(&["-v"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report();
    assert_eq!(report["method"], "export");
    assert_eq!(report["consistent"], true);
    assert!(report["exportSeconds"].as_f64().unwrap() >= 0.0);
    let key = report["key"].as_str().unwrap();
    let store = support::s3_store(&endpoint, &bucket);
    let sql = support::sql_of(&support::get_bytes(&store, key), key);
    let dumps = fake.export_dumps();
    let (_, served) = dumps
        .iter()
        .find(|(u, _)| *u == uuid)
        .expect("the fake served an export");
    // Byte for byte, but for one move: the fixture creates `child` before `parent`, so the
    // parent's CREATE TABLE goes to the top (D1's import could not insert the child's rows).
    let served = String::from_utf8(std::fs::read(served).unwrap()).unwrap();
    let create_parent = "CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);\n";
    let (first, rest) = served.split_once('\n').unwrap();
    assert!(rest.contains(create_parent), "the export creates parent");
    let expected = format!(
        "{first}\n{create_parent}{}",
        rest.replacen(create_parent, "", 1)
    );
    assert!(
        sql == expected.as_bytes(),
        "stored SQL differs from the export"
    );
    // Outputs and manifest carry the bookmark and the blocked window.
    let outputs = support::gha::parse_outputs(r.outputs_file.as_deref().unwrap()).unwrap();
    assert_eq!(outputs["bookmark"], report["bookmark"].as_str().unwrap());
    assert!(outputs.contains_key("export-seconds"));
    let manifest: d1_backup::manifest::Manifest = serde_json::from_slice(&support::get_bytes(
        &store,
        &d1_backup::keys::manifest_key(key),
    ))
    .unwrap();
    assert_eq!(manifest.bookmark.as_deref(), report["bookmark"].as_str());
    let reordered = manifest
        .reordered
        .as_ref()
        .expect("the manifest says what moved");
    assert_eq!(reordered.tables, vec!["parent".to_string()]);
    assert!(reordered.how.contains("moved"), "{}", reordered.how);
    assert!(manifest.timings.export_seconds.is_some());
    assert_eq!(
        manifest
            .tables
            .iter()
            .find(|t| t.name == "many")
            .unwrap()
            .rows,
        200_000
    );
    let (_, meta) = support::block_on(d1_backup::store::ObjectStore::head(&store, key))
        .unwrap()
        .unwrap();
    assert_eq!(meta.metadata["method"], "export");
    assert_eq!(meta.metadata["bookmark"], manifest.bookmark.unwrap());
}

/// D1 exports tables in creation order, and its import cannot insert rows into a table whose
/// foreign-key parent does not exist yet. An export of a database whose children were
/// created before their parents verifies, and restores to a file and into D1, exactly.
#[test]
fn export_of_children_created_before_their_parents_restores() {
    let Some((endpoint, bucket)) = support::bucket("exportorder") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "PRAGMA foreign_keys=ON;
             CREATE TABLE order_items(id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id), sku TEXT REFERENCES \"products\"(sku));
             CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), note TEXT);
             CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE \"products\"(sku TEXT PRIMARY KEY, price REAL) WITHOUT ROWID;
             CREATE TABLE audit(id INTEGER PRIMARY KEY, msg TEXT);
             CREATE INDEX items_by_order ON order_items(order_id);
             INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace ''G'' Hopper');
             INSERT INTO \"products\" VALUES ('a-1', 2.5), ('b-2', 19.99);
             INSERT INTO orders VALUES (10, 1, 'first'), (11, 2, NULL), (12, 1, 'line
break');
             INSERT INTO order_items VALUES (100, 10, 'a-1'), (101, 10, 'b-2'), (102, 12, 'a-1');
             INSERT INTO audit VALUES (1, 'created');",
        )
        .unwrap();
    let fake = support::fake_d1();
    fake.add_database("shop", &db);
    let env = env_with(&fake, "shop", &endpoint, &bucket, &[("method", "export")]);
    let r = run::run(&["backup"], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = r.report();
    assert_eq!(report["verified"], true, "{}", r.stdout);
    let key = report["key"].as_str().unwrap().to_string();

    let store = support::s3_store(&endpoint, &bucket);
    let manifest: d1_backup::manifest::Manifest = serde_json::from_slice(&support::get_bytes(
        &store,
        &d1_backup::keys::manifest_key(&key),
    ))
    .unwrap();
    let reordered = manifest.reordered.expect("the manifest says what moved");
    assert_eq!(reordered.tables, ["orders", "customers", "products"]);
    let sql = String::from_utf8(support::sql_of(&support::get_bytes(&store, &key), &key)).unwrap();
    let lines: Vec<&str> = sql.lines().collect();
    assert_eq!(lines[0], "PRAGMA defer_foreign_keys=TRUE;");
    assert!(lines[1].starts_with("CREATE TABLE orders("), "{}", lines[1]);
    assert!(
        lines[3].starts_with("CREATE TABLE IF NOT EXISTS \"products\""),
        "{}",
        lines[3]
    );
    assert_eq!(sql.matches("CREATE TABLE orders(").count(), 1);

    // To a file, and into D1 through the import API.
    let restored = dir.path().join("restored.sqlite");
    let mut to_file = cli_env(&fake, "shop", &endpoint, &bucket);
    to_file.insert(
        "D1_BACKUP_RESTORE_FILE".into(),
        restored.display().to_string(),
    );
    let r = run::run(&["restore", &key], &to_file);
    assert_eq!(r.code, 0, "{}", r.stderr);
    compare::assert_same(&db, &restored);
    let mut to_d1 = cli_env(&fake, "shop", &endpoint, &bucket);
    to_d1.insert("D1_BACKUP_RESTORE_TO".into(), "shop-copy".into());
    let r = run::run(&["restore", &key, "--create"], &to_d1);
    assert_eq!(r.code, 0, "{}", r.stderr);
    compare::assert_same(&db, &fake.database_path("shop-copy").unwrap());
}

#[test]
fn export_refuses_virtual_tables_before_starting() {
    let Some((endpoint, bucket)) = support::bucket("exportfts") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "fts");
    let fake = support::fake_d1();
    fake.add_database("fts", &db);
    let r = run::run(
        &[],
        &env_with(&fake, "fts", &endpoint, &bucket, &[("method", "export")]),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    let error = r.report()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("\"docs\"") && error.contains("\"articles_fts\""),
        "{error}"
    );
    assert!(error.contains("method: query"), "{error}");
    assert!(
        fake.requests().iter().all(|q| q.kind != "export"),
        "an export was started"
    );
    assert!(support::keys(&support::s3_store(&endpoint, &bucket), "").is_empty());
    // Excluding them makes the export possible.
    let r = run::run(
        &[],
        &env_with(
            &fake,
            "fts",
            &endpoint,
            &bucket,
            &[
                ("method", "export"),
                ("exclude-tables", "docs,articles_fts"),
                ("verify", "false"),
            ],
        ),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn the_signed_url_never_leaks() {
    let Some((endpoint, bucket)) = support::bucket("signedurl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = without_virtual_tables(dir.path(), "sig");
    let fake = support::fake_d1();
    fake.add_database("sig", &db);
    let mut runs = Vec::new();
    let mut env = env_with(
        &fake,
        "sig",
        &endpoint,
        &bucket,
        &[("method", "export"), ("verify", "false")],
    );
    env.insert("RUNNER_DEBUG".into(), "1".into());
    env.insert("GITHUB_ACTIONS".into(), "true".into());
    runs.push(run::run(&["-v"], &env));
    assert_eq!(runs[0].code, 0, "{}", runs[0].stderr);
    // A signed URL that answers 403.
    fake.set_faults(fake_d1::Faults {
        signed_url_forbidden: true,
        ..Default::default()
    });
    runs.push(run::run(&["-v"], &env));
    assert_eq!(runs[1].code, 1);
    assert!(
        runs[1].report()["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 403")
    );
    let signed: Vec<(String, String)> = fake
        .requests()
        .into_iter()
        .filter(|q| q.kind == "signed-export")
        .map(|q| (q.path, q.query.unwrap_or_default()))
        .collect();
    assert_eq!(signed.len(), 2);
    for r in &runs {
        let text: String = r
            .all_text()
            .lines()
            .filter(|l| !l.starts_with("::add-mask::"))
            .collect::<Vec<_>>()
            .join("\n");
        for (path, query) in &signed {
            let sig = query
                .split('&')
                .find_map(|p| p.strip_prefix("X-Amz-Signature="))
                .unwrap();
            assert!(!text.contains(sig), "signature leaked:\n{text}");
            assert!(!text.contains(query.as_str()), "query leaked");
            assert!(!text.contains(path.as_str()), "signed path leaked:\n{text}");
        }
    }
    // Under Actions the URL was masked before use.
    assert!(
        runs[0].stdout.contains("::add-mask::http"),
        "{}",
        runs[0].stdout
    );
}

#[test]
fn query_dumps_report_consistency() {
    let Some((endpoint, bucket)) = support::bucket("consistency") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "busy");
    let fake = support::fake_d1();
    fake.add_database("busy", &db);

    // No writes: consistent, and the bookmark is the database's.
    let r = run::run(&[], &cli_env(&fake, "busy", &endpoint, &bucket));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["consistent"], true);
    assert_eq!(r.report()["bookmark"], fake.bookmark("busy"));

    // Another client writes while the dump runs: retried, then reported inconsistent (the
    // database did not change before the run, so it is dumped only without `skip-unchanged`).
    fake.clear_requests();
    fake.set_faults(fake_d1::Faults {
        write_during_reads: Some((
            4,
            "INSERT INTO events(name) VALUES('concurrent write')".into(),
        )),
        ..Default::default()
    });
    let r = run::run(
        &[],
        &env_with(
            &fake,
            "busy",
            &endpoint,
            &bucket,
            &[("consistency-retries", "1"), ("skip-unchanged", "false")],
        ),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report();
    assert_eq!(report["consistent"], false);
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not one point in time")
    );
    assert!(
        r.stderr.contains("retrying (1 of 1 retries)"),
        "{}",
        r.stderr
    );
    let bookmark_reads = fake
        .requests()
        .iter()
        .filter(|q| q.kind == "bookmark")
        .count();
    assert_eq!(
        bookmark_reads, 4,
        "two attempts, a bookmark before and after each"
    );
    // Only the kept backups exist (the retried attempt left nothing): object, manifest and
    // verification report of each of the two runs.
    let keys = support::keys(&support::s3_store(&endpoint, &bucket), "busy/");
    assert_eq!(keys.len(), 6, "{keys:?}");
}

/// A small database for the filter tests (no virtual tables, no triggers firing on load).
fn filter_db(dir: &Path) -> PathBuf {
    let path = dir.join("filters.sqlite");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE authors(id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE books(id INTEGER PRIMARY KEY AUTOINCREMENT, author_id INTEGER REFERENCES authors(id), title TEXT);
         CREATE TABLE logs(id INTEGER PRIMARY KEY, msg TEXT);
         CREATE INDEX books_title ON books(title);
         CREATE INDEX logs_msg ON logs(msg);
         CREATE VIEW book_titles AS SELECT b.title, a.name FROM books b JOIN authors a ON a.id = b.author_id;
         CREATE VIEW log_view AS SELECT msg FROM logs;
         CREATE TRIGGER books_log AFTER DELETE ON books BEGIN INSERT INTO logs(msg) VALUES('deleted ' || OLD.title); END;
         INSERT INTO authors VALUES(1, 'Le Guin'), (2, 'Lem');
         INSERT INTO books(author_id, title) VALUES(1, 'The Dispossessed'), (2, 'Solaris'), (1, 'Lathe');
         INSERT INTO logs VALUES(1, 'hello'), (2, 'world');
         DELETE FROM books WHERE id = 3;",
    )
    .unwrap();
    path
}

fn backup_sql(
    fake: &fake_d1::FakeD1,
    endpoint: &str,
    bucket: &str,
    extra: &[(&str, &str)],
) -> (run::Run, Vec<u8>) {
    let r = run::run(&[], &env_with(fake, "lib", endpoint, bucket, extra));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = r.report()["key"].as_str().unwrap().to_string();
    let store = support::s3_store(endpoint, bucket);
    let sql = support::sql_of(&support::get_bytes(&store, &key), &key);
    (r, sql)
}

fn names(c: &rusqlite::Connection) -> Vec<String> {
    compare::schema(c)
        .into_iter()
        .map(|(t, n, _, _)| format!("{t}:{n}"))
        .collect()
}

#[test]
fn table_filters_round_trip() {
    let Some((endpoint, bucket)) = support::bucket("filters") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = filter_db(dir.path());
    let fake = support::fake_d1();
    fake.add_database("lib", &db);
    let source = compare::open(&db);

    // tables: the included tables with their indexes, views and triggers.
    let (r, sql) = backup_sql(&fake, &endpoint, &bucket, &[("tables", "books,authors")]);
    assert_eq!(r.report()["tableCount"], 2);
    let out = dir.path().join("include.sqlite");
    restore_d1_rules(&sql, &out);
    let restored = compare::open(&out);
    let got = names(&restored);
    for want in [
        "table:authors",
        "table:books",
        "index:books_title",
        "view:book_titles",
        "trigger:books_log",
    ] {
        assert!(
            got.contains(&want.to_string()),
            "{want} missing from {got:?}"
        );
    }
    assert!(
        !got.iter()
            .any(|n| n.contains("logs") || n.contains("log_view")),
        "{got:?}"
    );
    for t in ["authors", "books"] {
        assert_eq!(
            compare::rows(&source, t, false),
            compare::rows(&restored, t, false),
            "{t}"
        );
    }

    // exclude-tables
    let (_, sql) = backup_sql(&fake, &endpoint, &bucket, &[("exclude-tables", "logs")]);
    let out = dir.path().join("exclude.sqlite");
    restore_d1_rules(&sql, &out);
    let restored = compare::open(&out);
    let got = names(&restored);
    assert!(
        !got.iter()
            .any(|n| n == "table:logs" || n == "index:logs_msg" || n == "view:log_view"),
        "{got:?}"
    );
    assert!(
        got.contains(&"trigger:books_log".to_string()),
        "the trigger of an included table stays"
    );
    assert_eq!(
        compare::rows(&source, "books", false),
        compare::rows(&restored, "books", false)
    );

    // no-data then no-schema: schema-only + data-only together restore everything.
    let (r, schema_sql) = backup_sql(&fake, &endpoint, &bucket, &[("no-data", "true")]);
    assert_eq!(r.report()["rowCount"], 0);
    let (_, data_sql) = backup_sql(&fake, &endpoint, &bucket, &[("no-schema", "true")]);
    assert!(
        !String::from_utf8_lossy(&data_sql).contains("CREATE "),
        "data-only dump has CREATE statements"
    );
    let out = dir.path().join("split.sqlite");
    restore_d1_rules(&schema_sql, &out);
    {
        let mut c = rusqlite::Connection::open(&out).unwrap();
        let rows: i64 = c
            .query_row(
                "SELECT (SELECT count(*) FROM books) + (SELECT count(*) FROM logs)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 0, "schema-only restore has rows");
        // Triggers would fire on the data load; a data-only restore goes into tables without them.
        c.execute_batch("DROP TRIGGER books_log;").unwrap();
        d1_backup::read::load::load(
            &mut c,
            std::io::BufReader::new(&data_sql[..]),
            d1_backup::read::load::LoadRules::d1(),
        )
        .unwrap();
        c.execute_batch("CREATE TRIGGER books_log AFTER DELETE ON books BEGIN INSERT INTO logs(msg) VALUES('deleted ' || OLD.title); END;").unwrap();
    }
    compare::assert_same(&db, &out);

    // Unknown names are errors that name them.
    let r = run::run(
        &[],
        &env_with(
            &fake,
            "lib",
            &endpoint,
            &bucket,
            &[("tables", "books,ghosts")],
        ),
    );
    assert_eq!(r.code, 2);
    let err = r.report()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("`tables`") && err.contains("\"ghosts\""),
        "{err}"
    );
    let r = run::run(
        &[],
        &env_with(
            &fake,
            "lib",
            &endpoint,
            &bucket,
            &[("exclude-tables", "nope")],
        ),
    );
    assert_eq!(r.code, 2);
    assert!(
        r.report()["error"]
            .as_str()
            .unwrap()
            .contains("`exclude-tables`")
    );
}

#[test]
fn export_filters_keep_indexes_and_triggers() {
    let Some((endpoint, bucket)) = support::bucket("exportfilter") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = filter_db(dir.path());
    let fake = support::fake_d1();
    fake.add_database("lib", &db);
    // `books` references `authors`, left out: the backup says it cannot be restored with
    // foreign keys enforced (its verification would fail for that reason).
    let (r, sql) = backup_sql(
        &fake,
        &endpoint,
        &bucket,
        &[
            ("method", "export"),
            ("tables", "books"),
            ("verify", "false"),
        ],
    );
    assert!(r.stderr.contains("references \"authors\""), "{}", r.stderr);
    let text = String::from_utf8(sql).unwrap();
    assert!(text.contains("CREATE INDEX books_title"), "{text}");
    assert!(text.contains("CREATE TRIGGER books_log"), "{text}");
    assert!(!text.contains("INSERT INTO \"authors\""), "{text}");
}

#[test]
fn verification_catches_d1_export_flaws() {
    let Some((endpoint, bucket)) = support::bucket("exportflaws") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flaws.sqlite");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         CREATE VIEW v AS SELECT * FROM t;
         CREATE TRIGGER v_ins INSTEAD OF INSERT ON v BEGIN INSERT INTO t(v) VALUES(NEW.v); END;
         INSERT INTO t VALUES(1, 'x');",
    )
    .unwrap();
    drop(c);
    let fake = support::fake_d1();
    fake.add_database("flaws", &path);
    // D1's export writes the INSTEAD OF trigger before its view: the dump does not restore.
    let r = run::run(
        &[],
        &env_with(&fake, "flaws", &endpoint, &bucket, &[("method", "export")]),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let err = r.report()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("failed verification") && err.contains("no such table: main.v"),
        "{err}"
    );
    // The query method orders views before triggers.
    let r = run::run(&[], &env_with(&fake, "flaws", &endpoint, &bucket, &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["verified"], true);
}
