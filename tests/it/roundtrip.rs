//! The core acceptance test: fixture → fake D1 → d1-backup → SeaweedFS → restore → equal.

use std::io::BufReader;

use d1_backup::keys::manifest_key;
use d1_backup::manifest::Manifest;
use d1_backup::read::load::{LoadRules, load};

use crate::support::{self, cli_env, compare, restore_d1_rules, run};

#[test]
fn query_backup_restores_exactly() {
    let Some((endpoint, bucket)) = support::bucket("roundtrip") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "prod");
    let fake = support::fake_d1();
    let uuid = fake.add_database("prod-db", &db);

    let r = run::run(&["backup"], &cli_env(&fake, "prod-db", &endpoint, &bucket));
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let report = r.report();
    assert_eq!(report["success"], true);
    assert_eq!(report["message"], "Backup completed successfully");
    // The backup was downloaded again, restored and checked before the run reported success.
    assert_eq!(report["verified"], true, "{}", r.stdout);
    let key = report["key"].as_str().unwrap().to_string();
    assert!(
        key.starts_with("prod-db/backup-") && key.ends_with(".sql.zst"),
        "{key}"
    );
    assert_eq!(report["databaseId"], uuid);

    let store = support::s3_store(&endpoint, &bucket);
    let object = support::get_bytes(&store, &key);
    let manifest: Manifest =
        serde_json::from_slice(&support::get_bytes(&store, &manifest_key(&key))).unwrap();
    assert_eq!(manifest.object.size, object.len() as u64);
    let sql = support::sql_of(&object, &key);
    assert_eq!(manifest.sql.size, sql.len() as u64);
    assert_eq!(
        manifest.sql.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sql))
    );

    // Under D1's rules: every statement ≤ 100,000 bytes, FKs on, deferred to the end.
    let restored = dir.path().join("restored.sqlite");
    let stats = restore_d1_rules(&sql, &restored);
    assert!(stats.longest_statement <= 100_000);
    compare::assert_same(&db, &restored);

    // Table count: user tables, virtual tables once, no shadow or internal tables.
    let tables = compare::user_tables(&compare::open(&db));
    assert_eq!(report["tableCount"], tables.len());
    assert_eq!(manifest.table_count, tables.len());
    let many = manifest.tables.iter().find(|t| t.name == "many").unwrap();
    assert_eq!(many.rows, 200_000);
    assert_eq!(report["rowCount"], manifest.row_count);

    // Object metadata.
    let (_, meta) = support::block_on(d1_backup::store::ObjectStore::head(&store, &key))
        .unwrap()
        .unwrap();
    assert_eq!(meta.content_type, "application/zstd");
    for k in [
        "timestamp",
        "table-count",
        "database-id",
        "database-name",
        "method",
        "compression",
        "tool-version",
    ] {
        assert!(
            meta.metadata.contains_key(k),
            "metadata {k} missing: {:?}",
            meta.metadata
        );
    }
    assert_eq!(meta.metadata["database-id"], uuid);

    // The same dump restores with plain SQLite semantics (autocommit, foreign keys off),
    // statement by statement as `sqlite3 new.db < dump.sql` runs it.
    let plain = dir.path().join("plain.sqlite");
    let mut conn = rusqlite::Connection::open(&plain).unwrap();
    conn.execute_batch("PRAGMA synchronous=OFF; PRAGMA journal_mode=MEMORY;")
        .unwrap();
    let rules = LoadRules {
        max_statement_bytes: None,
        d1_semantics: false,
        max_db_bytes: None,
        dump_statements_only: true,
    };
    load(&mut conn, BufReader::new(&sql[..]), rules).unwrap();
    drop(conn);
    compare::assert_same(&db, &plain);

    // And with the sqlite3 shell, when installed.
    if let Ok(status) = std::process::Command::new("sqlite3")
        .arg("--version")
        .output()
        && status.status.success()
    {
        let shell_db = dir.path().join("shell.sqlite");
        let sql_file = dir.path().join("dump.sql");
        std::fs::write(&sql_file, &sql).unwrap();
        let out = std::process::Command::new("sqlite3")
            .args([
                "-bail",
                "-cmd",
                "PRAGMA synchronous=OFF",
                "-cmd",
                "PRAGMA journal_mode=MEMORY",
            ])
            .arg(&shell_db)
            .stdin(std::fs::File::open(&sql_file).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "sqlite3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        compare::assert_same(&db, &shell_db);
    }
}

#[test]
fn large_rows_are_split_and_pages_follow_bytes() {
    let Some((endpoint, bucket)) = support::bucket("pages") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "pages");
    // A tight response limit forces page shrinking on the wide rows.
    let fake = support::fake_d1_with(fake_d1::Options {
        max_response_bytes: Some(2 << 20),
        ..Default::default()
    });
    fake.add_database("pages", &db);
    let r = run::run(
        &["backup", "--verbose"],
        &cli_env(&fake, "pages", &endpoint, &bucket),
    );
    assert_eq!(r.code, 0, "stderr:\n{}", r.stderr);
    let key = r.report()["key"].as_str().unwrap().to_string();
    let store = support::s3_store(&endpoint, &bucket);
    let sql = support::sql_of(&support::get_bytes(&store, &key), &key);
    let restored = dir.path().join("r.sqlite");
    restore_d1_rules(&sql, &restored);
    compare::assert_same(&db, &restored);
    // Pages were sized by bytes: far fewer requests than rows, none over the limit.
    let reads: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|q| q.kind == "raw")
        .collect();
    assert!(reads.len() < 400, "{} requests", reads.len());
    assert!(reads.iter().all(|q| q.status == 200 || q.status == 500));
}
