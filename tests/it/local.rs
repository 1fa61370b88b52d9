//! No Cloudflare at all: a local SQLite file backed up to a local directory (the quickstart).

use std::collections::BTreeMap;

use d1_backup::store::local::LocalStore;

use crate::support::{self, compare, restore_d1_rules, run};

#[test]
fn local_file_to_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "local-app");
    let out = dir.path().join("backups");
    let r = run::run(
        &[
            "--sqlite-file",
            db.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
        ],
        &BTreeMap::new(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report();
    let key = report["key"].as_str().unwrap();
    assert!(key.starts_with("local-app/backup-"), "{key}");
    assert_eq!(report["consistent"], true);
    let store = LocalStore::new(&out);
    let keys = support::keys(&store, "");
    assert_eq!(
        keys,
        vec![
            key.to_string(),
            format!("{key}.manifest.json"),
            format!("{key}.verify.json")
        ]
    );
    let sql = support::sql_of(&std::fs::read(out.join(key)).unwrap(), key);
    let restored = dir.path().join("restored.sqlite");
    restore_d1_rules(&sql, &restored);
    compare::assert_same(&db, &restored);
    // No temp files are left behind.
    let tmp = out.join(".d1-backup-tmp");
    assert!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) == 0);
}

#[test]
fn level_zero_stores_plain_sql() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tiny.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES(1),('x');")
        .unwrap();
    drop(c);
    let out = dir.path().join("o");
    let mut env = BTreeMap::new();
    env.insert(
        "D1_BACKUP_SQLITE_FILE".to_string(),
        db.display().to_string(),
    );
    env.insert(
        "D1_BACKUP_OUTPUT_DIR".to_string(),
        out.display().to_string(),
    );
    env.insert("D1_BACKUP_COMPRESSION_LEVEL".to_string(), "0".to_string());
    let r = run::run(&[], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = r.report()["key"].as_str().unwrap().to_string();
    assert!(key.ends_with(".sql"), "{key}");
    let text = std::fs::read_to_string(out.join(&key)).unwrap();
    assert!(
        text.contains("INSERT INTO \"t\"(rowid,\"a\") VALUES(2,'x');"),
        "{text}"
    );
}
