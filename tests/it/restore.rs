//! Verify and restore: corrupted backups are caught, restores reproduce the source exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use d1_backup::keys::manifest_key;
use d1_backup::manifest::Manifest;

use crate::support::{self, cli_env, compare, run};

/// CLI environment for a local SQLite file backed up into a directory.
fn local_env(db: &Path, out: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("D1_BACKUP_SQLITE_FILE".into(), db.display().to_string());
    env.insert("D1_BACKUP_OUTPUT_DIR".into(), out.display().to_string());
    env
}

fn backup_local(db: &Path, out: &Path) -> String {
    let r = run::run(&[], &local_env(db, out));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["verified"], true, "{}", r.stdout);
    r.report()["key"].as_str().unwrap().to_string()
}

fn verify_key(db: &Path, out: &Path, key: &str) -> run::Run {
    run::run(&["verify", key], &local_env(db, out))
}

#[test]
fn corrupted_backups_fail_verification() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "corrupt");
    let out = dir.path().join("backups");
    let key = backup_local(&db, &out);
    let object = out.join(&key);
    let original = std::fs::read(&object).unwrap();
    let manifest_path = out.join(manifest_key(&key));
    let manifest_text = std::fs::read_to_string(&manifest_path).unwrap();

    // Intact: verifies, and the report is stored next to the backup.
    let r = verify_key(&db, &out, &key);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["verified"], true);
    assert!(out.join(format!("{key}.verify.json")).exists());

    // One flipped byte.
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&object, &flipped).unwrap();
    let r = verify_key(&db, &out, &key);
    assert_eq!(r.code, 1);
    let err = r.report()["error"].as_str().unwrap().to_string();
    assert!(err.contains("SHA-256") && err.contains("manifest"), "{err}");

    // Truncated.
    std::fs::write(&object, &original[..original.len() - 1000]).unwrap();
    let r = verify_key(&db, &out, &key);
    assert_eq!(r.code, 1);
    let err = r.report()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains(&format!("{} bytes", original.len() - 1000)) && err.contains("truncated"),
        "{err}"
    );

    // A manifest row count off by one.
    std::fs::write(&object, &original).unwrap();
    let mut m: Manifest = serde_json::from_str(&manifest_text).unwrap();
    let t = m.tables.iter_mut().find(|t| t.name == "many").unwrap();
    t.rows += 1;
    std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
    let r = verify_key(&db, &out, &key);
    assert_eq!(r.code, 1);
    let err = r.report()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("table \"many\": 200000 rows restored, the manifest says 200001"),
        "{err}"
    );

    // No manifest: refused as incomplete.
    std::fs::remove_file(&manifest_path).unwrap();
    let r = verify_key(&db, &out, &key);
    assert_eq!(r.code, 1);
    assert!(r.report()["error"].as_str().unwrap().contains("incomplete"));
}

#[test]
fn restore_to_a_file_reproduces_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "src");
    let out = dir.path().join("backups");
    backup_local(&db, &out);
    let target = dir.path().join("restored.sqlite");
    let mut env = local_env(&db, &out);
    env.insert(
        "D1_BACKUP_RESTORE_FILE".into(),
        target.display().to_string(),
    );
    let r = run::run(&["restore"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    compare::assert_same(&db, &target);
    // An existing file is not replaced without force.
    let before = std::fs::read(&target).unwrap();
    let r = run::run(&["restore", "latest"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.report()["error"]
            .as_str()
            .unwrap()
            .contains("`restore-file`")
    );
    assert_eq!(std::fs::read(&target).unwrap(), before);
    let r = run::run(&["restore", "--force"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    compare::assert_same(&db, &target);
    // No temp file is left beside it.
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .contains(".d1-backup-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn restore_into_d1_through_the_import_api() {
    let Some((endpoint, bucket)) = support::bucket("restored1") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "prod");
    let fake = support::fake_d1();
    fake.add_database("prod", &db);
    let r = run::run(&["backup"], &cli_env(&fake, "prod", &endpoint, &bucket));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = r.report()["key"].as_str().unwrap().to_string();

    // Into a new database created on the way.
    let mut env = cli_env(&fake, "prod", &endpoint, &bucket);
    env.insert("D1_BACKUP_RESTORE_TO".into(), "prod-copy".into());
    let r = run::run(&["restore", &key, "--create"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["created"], true);
    let copy = fake.database_path("prod-copy").unwrap();
    compare::assert_same(&db, &copy);
    assert!(
        fake.requests().iter().any(|q| q.kind == "signed-import"),
        "the SQL was uploaded"
    );

    // A non-empty database is refused, and nothing changes.
    let other = fake.create_database("other");
    fake.execute(&other, "CREATE TABLE keep(a); INSERT INTO keep VALUES(1);");
    let mut env = cli_env(&fake, "prod", &endpoint, &bucket);
    env.insert("D1_BACKUP_RESTORE_TO".into(), "other".into());
    let imports_before = fake
        .requests()
        .iter()
        .filter(|q| q.kind == "import")
        .count();
    let r = run::run(&["restore"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let err = r.report()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("not empty") && err.contains("\"keep\""),
        "{err}"
    );
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|q| q.kind == "import")
            .count(),
        imports_before
    );
    let c = rusqlite::Connection::open(fake.database_path("other").unwrap()).unwrap();
    assert_eq!(
        c.query_row("SELECT count(*) FROM keep", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        1
    );
    drop(c);

    // With force, its tables are dropped and the backup restored.
    let r = run::run(&["restore", "--force"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    compare::assert_same(&db, &fake.database_path("other").unwrap());

    // Never into the source database without `overwrite-source` naming it — not with force.
    let mut env = cli_env(&fake, "prod", &endpoint, &bucket);
    env.insert("D1_BACKUP_RESTORE_TO".into(), "prod".into());
    for args in [&["restore"][..], &["restore", "--force"][..]] {
        let r = run::run(args, &env);
        assert_eq!(r.code, 2, "{args:?}");
        let err = r.report()["error"].as_str().unwrap().to_string();
        assert!(
            err.contains("taken from") && err.contains("overwrite-source"),
            "{err}"
        );
    }
}

#[test]
fn before_picks_the_newest_backup_at_or_before_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("small.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES(1);")
        .unwrap();
    let out = dir.path().join("backups");
    let key = backup_local(&db, &out);
    // Copies of that backup as if taken at fixed times (manifests rewritten to match).
    let stamps = [
        "2026-01-01T00-00-00-000Z",
        "2026-02-01T12-00-00-000Z",
        "2026-03-01T00-00-00-000Z",
    ];
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(out.join(manifest_key(&key))).unwrap()).unwrap();
    for s in stamps {
        let k = format!("small/backup-{s}.sql.zst");
        std::fs::copy(out.join(&key), out.join(&k)).unwrap();
        let mut m = manifest.clone();
        m.key = k.clone();
        m.timestamp = d1_backup::manifest::rfc3339(
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H-%M-%S-%3fZ")
                .unwrap()
                .and_utc(),
        );
        std::fs::write(out.join(manifest_key(&k)), serde_json::to_vec(&m).unwrap()).unwrap();
    }
    // An incomplete one (no manifest) is never picked.
    std::fs::copy(
        out.join(&key),
        out.join("small/backup-2026-02-10T00-00-00-000Z.sql.zst"),
    )
    .unwrap();
    let cases = [
        (
            "2026-02-15",
            "small/backup-2026-02-01T12-00-00-000Z.sql.zst",
        ),
        (
            "2026-02-01T12:00:00Z",
            "small/backup-2026-02-01T12-00-00-000Z.sql.zst",
        ),
        (
            "2026-02-01T11:59:59Z",
            "small/backup-2026-01-01T00-00-00-000Z.sql.zst",
        ),
        (
            "2026-03-05T00:00:00+05:00",
            "small/backup-2026-03-01T00-00-00-000Z.sql.zst",
        ),
    ];
    for (before, want) in cases {
        let mut env = local_env(&db, &out);
        env.insert("D1_BACKUP_BEFORE".into(), before.into());
        env.insert(
            "D1_BACKUP_RESTORE_FILE".into(),
            dir.path()
                .join(format!("r-{before}.sqlite"))
                .display()
                .to_string(),
        );
        let r = run::run(&["restore"], &env);
        assert_eq!(r.code, 0, "{before}: {}", r.stderr);
        assert_eq!(r.report()["key"], want, "{before}");
    }
    let mut env = local_env(&db, &out);
    env.insert("D1_BACKUP_BEFORE".into(), "2025-12-31".into());
    env.insert(
        "D1_BACKUP_RESTORE_FILE".into(),
        dir.path().join("none.sqlite").display().to_string(),
    );
    let r = run::run(&["restore"], &env);
    assert_eq!(r.code, 2);
    assert!(r.report()["error"].as_str().unwrap().contains("`before`"));
}
