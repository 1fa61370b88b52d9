//! The store is untrusted input. Each attack of issue "Hostile store contents", reproduced
//! against the binary, now fails safe: planted and future-dated backups never drive retention
//! or `latest`; nothing in D1 is dropped before the whole backup is checked; verification
//! checks the hash before running any SQL and never attaches files; hostile objects cost
//! bounded memory and CPU; the local store never follows symlinks; files are private; plain
//! http:// never leaves the machine.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use d1_backup::keys::manifest_key;
use d1_backup::manifest::Manifest;
use fake_d1::FakeD1;
use sha2::{Digest, Sha256};

use crate::support::{self, cli_env, run};

pub(crate) fn local_env(db: &Path, out: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("D1_BACKUP_SQLITE_FILE".into(), db.display().to_string());
    env.insert("D1_BACKUP_OUTPUT_DIR".into(), out.display().to_string());
    env
}

pub(crate) fn small_db(dir: &Path, name: &str) -> PathBuf {
    let db = dir.join(format!("{name}.sqlite"));
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three');",
        )
        .unwrap();
    db
}

pub(crate) fn backup(env: &BTreeMap<String, String>, extra: &[&str]) -> String {
    let mut args = vec!["backup"];
    args.extend_from_slice(extra);
    let r = run::run(&args, env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.report()["key"].as_str().unwrap().to_string()
}

/// Every file under `dir` with its bytes (a snapshot to compare against later).
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn backup_keys(out: &Path, db: &str) -> Vec<String> {
    let mut keys: Vec<String> = std::fs::read_dir(out.join(db))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql.zst"))
        .collect();
    keys.sort();
    keys
}

#[test]
fn planted_and_future_dated_backups_never_drive_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path(), "app");
    let out = dir.path().join("backups");
    let env = local_env(&db, &out);
    let first = backup(&env, &[]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = backup(&env, &[]);

    // Two empty files, dated 2099, and an empty "manifest" beside an old fake object.
    let plant = out.join("app/backup-2099-01-01T00-00-00-000Z.sql.zst");
    std::fs::write(&plant, b"").unwrap();
    std::fs::write(
        out.join("app/backup-2099-01-01T00-00-00-000Z.sql.zst.manifest.json"),
        b"",
    )
    .unwrap();
    // A well-formed manifest copied from a real backup onto a planted key names another key.
    let copied = out.join("app/backup-2020-01-01T00-00-00-000Z.sql.zst");
    std::fs::copy(out.join(&first), &copied).unwrap();
    std::fs::copy(
        out.join(manifest_key(&first)),
        out.join("app/backup-2020-01-01T00-00-00-000Z.sql.zst.manifest.json"),
    )
    .unwrap();

    let r = run::run(&["prune", "--keep-last", "2"], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let left = backup_keys(&out, "app");
    for genuine in [&first, &second] {
        let name = genuine.rsplit('/').next().unwrap();
        assert!(
            left.iter().any(|k| k == name),
            "{genuine} deleted: {left:?}\n{}",
            r.stderr
        );
    }
    assert!(plant.exists(), "the planted pair is held, not deleted");
    assert!(
        copied.exists(),
        "a backup whose manifest does not check out is held, not deleted"
    );
    assert!(
        r.stderr.contains("in the future"),
        "held and reported:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("names another backup"), "{}", r.stderr);

    // `latest` is a genuine backup, never the planted one.
    let r = run::run(&["verify", "latest"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["key"], second.as_str());

    // A backup with keep-last 1 keeps what it has just written.
    let third = {
        let mut env = env.clone();
        env.insert("D1_BACKUP_KEEP_LAST".into(), "1".into());
        backup(&env, &[])
    };
    assert!(
        out.join(&third).exists(),
        "the run deleted the backup it had just written"
    );
    assert!(out.join(manifest_key(&third)).exists());
    assert!(plant.exists());
}

/// A backup of the fake database `source` into a local directory; returns its key.
pub(crate) fn d1_backup_to_dir(
    fake: &fake_d1::FakeD1,
    source: &str,
    out: &Path,
    extra: &[(&str, &str)],
) -> String {
    let mut env = d1_env(fake, source, out);
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    backup(&env, &[])
}

pub(crate) fn d1_env(
    fake: &fake_d1::FakeD1,
    database: &str,
    out: &Path,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("CLOUDFLARE_API_TOKEN".into(), support::TOKEN.into());
    env.insert("CLOUDFLARE_ACCOUNT_ID".into(), support::ACCOUNT.into());
    env.insert("CLOUDFLARE_API_BASE_URL".into(), fake.base_url());
    env.insert("D1_DATABASE".into(), database.into());
    env.insert("D1_BACKUP_OUTPUT_DIR".into(), out.display().to_string());
    env
}

pub(crate) fn rows_of(path: &Path) -> Vec<(String, i64)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let n = c
                .query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))
                .unwrap();
            (t, n)
        })
        .collect()
}

/// A fake D1 with a small source `src` and a target `target` holding two rows: the fake, the
/// target's file, its rows, and where backups go.
pub(crate) fn scene(dir: &Path) -> (FakeD1, PathBuf, Vec<(String, i64)>, PathBuf) {
    let fake = support::fake_d1();
    fake.add_database("src", &small_db(dir, "src"));
    let target = fake.create_database("target");
    fake.execute(
        &target,
        "CREATE TABLE keep(a); INSERT INTO keep VALUES (1), (2);",
    );
    let target_path = fake.database_path("target").unwrap();
    let before = rows_of(&target_path);
    (fake, target_path, before, dir.join("backups"))
}

#[test]
fn nothing_in_d1_is_dropped_before_the_backup_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, target_path, before, out) = scene(dir.path());
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let plain = d1_backup_to_dir(&fake, "src", &out, &[]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let encrypted = d1_backup_to_dir(
        &fake,
        "src",
        &out,
        &[("D1_BACKUP_ENCRYPT_RECIPIENTS", public.as_str())],
    );

    let restore = |key: &str, extra: &[(&str, &str)]| {
        let mut env = d1_env(&fake, "src", &out);
        env.insert("D1_BACKUP_RESTORE_TO".into(), "target".into());
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        run::run(&["restore", key, "--force"], &env)
    };

    // One flipped byte in the stored object (manifest unchanged).
    let object = out.join(&plain);
    let original = std::fs::read(&object).unwrap();
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    std::fs::write(&object, &flipped).unwrap();
    let r = restore(&plain, &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.report()["error"].as_str().unwrap().contains("SHA-256"),
        "{}",
        r.stdout
    );
    assert_eq!(rows_of(&target_path), before, "the target changed");
    std::fs::write(&object, &original).unwrap();

    // A wrong identity.
    let other = age::x25519::Identity::generate();
    let secret = age::secrecy::ExposeSecret::expose_secret(&other.to_string()).to_string();
    let r = restore(&encrypted, &[("AGE_IDENTITY", secret.as_str())]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.report()["error"]
            .as_str()
            .unwrap()
            .contains("none of the given identities"),
        "{}",
        r.stdout
    );
    assert_eq!(rows_of(&target_path), before, "the target changed");

    // SQL that would not load into D1 (a statement the restore refuses), with a manifest
    // rewritten to match it: refused before anything is dropped.
    let evil_sql = b"PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t(a);\nSELECT 1; COMMIT; ATTACH 'x' AS y;\n";
    forge(&out, &plain, evil_sql);
    let r = restore(&plain, &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.report()["error"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{}",
        r.stdout
    );
    assert_eq!(rows_of(&target_path), before, "the target changed");

    // The source database: `force` is not enough; `overwrite-source` naming it is.
    let source_path = fake.database_path("src").unwrap();
    let source_before = rows_of(&source_path);
    let mut env = d1_env(&fake, "src", &out);
    env.insert("D1_BACKUP_RESTORE_TO".into(), "src".into());
    env.insert(
        "AGE_IDENTITY".into(),
        age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string(),
    );
    let r = run::run(&["restore", &encrypted, "--force"], &env);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("overwrite-source"), "{}", r.stdout);
    assert_eq!(rows_of(&source_path), source_before);
    env.insert("D1_BACKUP_OVERWRITE_SOURCE".into(), "src".into());
    let r = run::run(&["restore", &encrypted], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(rows_of(&source_path), source_before);
}

/// Replace a stored backup's object with `sql` (zstd) and rewrite its manifest to match.
pub(crate) fn forge(out: &Path, key: &str, sql: &[u8]) {
    let object = zstd::encode_all(sql, 3).unwrap();
    forge_object(
        out,
        key,
        &object,
        sql.len() as u64,
        &hex::encode(Sha256::digest(sql)),
    );
}

pub(crate) fn forge_object(out: &Path, key: &str, object: &[u8], sql_size: u64, sql_sha: &str) {
    std::fs::write(out.join(key), object).unwrap();
    let mpath = out.join(manifest_key(key));
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m.object.size = object.len() as u64;
    m.object.sha256 = hex::encode(Sha256::digest(object));
    m.sql.size = sql_size;
    m.sql.sha256 = sql_sha.to_string();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
}

#[test]
fn verification_checks_the_hash_first_and_never_attaches() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path(), "app");
    let out = dir.path().join("backups");
    let env = local_env(&db, &out);
    let key = backup(&env, &[]);

    // A replaced object behind the genuine manifest: nothing of it runs.
    let manifest_before = std::fs::read(out.join(manifest_key(&key))).unwrap();
    let marker = dir.path().join("ran.db");
    let evil = format!("CREATE TABLE t(a);\nATTACH '{}' AS x;\n", marker.display());
    std::fs::write(
        out.join(&key),
        zstd::encode_all(evil.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    let r = run::run(&["verify", &key], &env);
    assert_eq!(r.code, 1);
    let err = r.report()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("manifest") && err.contains("not a byte of it was used"),
        "{err}"
    );
    assert!(!marker.exists());
    assert_eq!(
        std::fs::read(out.join(manifest_key(&key))).unwrap(),
        manifest_before
    );

    // The same with a manifest forged to match: the ATTACH rides behind a harmless statement
    // on one line, and is refused; no file appears outside the temporary database.
    let sneaky = format!(
        "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t(a);\nSELECT 1; COMMIT; ATTACH '{}' AS x; CREATE TABLE x.owned(a);\n",
        marker.display()
    );
    forge(&out, &key, sneaky.as_bytes());
    let r = run::run(&["verify", &key], &env);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        !marker.exists(),
        "ATTACH created a file outside the temporary database"
    );
}

#[test]
fn hostile_objects_cost_bounded_memory_and_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path(), "app");
    let out = dir.path().join("backups");
    let env = local_env(&db, &out);
    let key = backup(&env, &[]);

    // 1 GiB of one line, compressed to a few kilobytes, with a manifest that matches it.
    let line = std::io::Read::take(std::io::repeat(b'x'), 1 << 30);
    let mut sha = Sha256::new();
    let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
    let mut reader = line;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut reader, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        std::io::Write::write_all(&mut enc, &buf[..n]).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 200_000, "{} bytes", bomb.len());
    forge_object(&out, &key, &bomb, 1 << 30, &hex::encode(sha.finalize()));
    let r = run::run(&["verify", &key], &env);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("longer than"), "{}", r.stdout);
    assert!(r.max_rss_kib < 128 * 1024, "peak RSS {} KiB", r.max_rss_kib);
    eprintln!(
        "1 GiB line: refused with peak RSS {} KiB, {:.2} s CPU",
        r.max_rss_kib, r.cpu_seconds
    );

    // A few hundred bytes: an unbalanced quote, then millions of `;` lines.
    let mut rescans = b"PRAGMA defer_foreign_keys=TRUE;\nINSERT INTO t VALUES('".to_vec();
    rescans.extend(std::iter::repeat_n(&b";\n"[..], 4_000_000).flatten());
    let object = zstd::encode_all(&rescans[..], 19).unwrap();
    assert!(object.len() < 1000, "{} bytes", object.len());
    forge(&out, &key, &rescans);
    let r = run::run(&["verify", &key], &env);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.cpu_seconds < 1.0, "{:.2} s of CPU", r.cpu_seconds);
    eprintln!(
        "{}-byte object: refused after {:.2} s CPU",
        object.len(),
        r.cpu_seconds
    );

    // A 400 KB age header.
    let id = age::x25519::Identity::generate();
    let secret = age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string();
    let mut header = b"age-encryption.org/v1\n".to_vec();
    while header.len() < 400_000 {
        header.extend_from_slice(b"-> X25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
    }
    header.extend_from_slice(b"--- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
    header.extend_from_slice(&[0u8; 100]);
    let mpath = out.join(manifest_key(&key));
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m.encryption = Some("age".into());
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    forge_object(&out, &key, &header, m.sql.size, &m.sql.sha256);
    let mut with_id = env.clone();
    with_id.insert("AGE_IDENTITY".into(), secret);
    let r = run::run(&["verify", &key], &with_id);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("age header"), "{}", r.stdout);
    assert!(r.cpu_seconds < 1.0, "{:.2} s of CPU", r.cpu_seconds);
    eprintln!(
        "400 KB age header: refused after {:.2} s CPU",
        r.cpu_seconds
    );
}

#[test]
fn the_local_store_never_follows_symlinks_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path(), "app");
    let out = dir.path().join("backups");
    let env = local_env(&db, &out);
    let key = backup(&env, &[]);

    // New files are 0600, directories 0700; so is a restored database.
    for f in [
        key.clone(),
        manifest_key(&key),
        format!("{key}.verify.json"),
    ] {
        let mode = std::fs::metadata(out.join(&f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}: {mode:o}");
    }
    let mode = std::fs::metadata(out.join("app"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "app/: {mode:o}");
    let restored = dir.path().join("restored.db");
    let mut env_restore = env.clone();
    env_restore.insert(
        "D1_BACKUP_RESTORE_FILE".into(),
        restored.display().to_string(),
    );
    let r = run::run(&["restore", &key], &env_restore);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mode = std::fs::metadata(&restored).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "restored database: {mode:o}");

    // A symlinked temp directory pointing at files that look like stale uploads.
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("upload-0123456789abcdef"), b"precious").unwrap();
    std::fs::write(outside.join("notes.txt"), b"precious").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 86400);
    for f in ["upload-0123456789abcdef", "notes.txt"] {
        std::fs::File::options()
            .write(true)
            .open(outside.join(f))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let tmp = out.join(".d1-backup-tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::os::unix::fs::symlink(&outside, &tmp).unwrap();
    let before = snapshot(&outside);
    let r = run::run(&["prune", "--keep-last", "5"], &env);
    assert_eq!(
        snapshot(&outside),
        before,
        "prune touched files outside the store:\n{}",
        r.stderr
    );
    std::fs::remove_file(&tmp).unwrap();

    // A manifest whose key names another file: refused, nothing of that file is printed.
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, "TOP-SECRET-LINE\n").unwrap();
    let mpath = out.join(manifest_key(&key));
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m.key = "../secret.txt".into();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let r = run::run(&["verify", &key], &env);
    assert_ne!(r.code, 0);
    assert!(r.stdout.contains("names another backup"), "{}", r.stdout);
    assert!(!r.all_text().contains("TOP-SECRET-LINE"));
    for entry in walk_files(&out) {
        assert!(
            !std::fs::read_to_string(&entry)
                .unwrap_or_default()
                .contains("TOP-SECRET-LINE"),
            "{}",
            entry.display()
        );
    }
}

pub(crate) fn walk_files(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir).into_keys().collect()
}

#[test]
fn plain_http_never_leaves_the_machine_and_flag_secrets_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let fake = support::fake_d1();
    let out = dir.path().join("backups");
    for (input, value) in [
        (
            "CLOUDFLARE_API_BASE_URL",
            "http://api.example.invalid/client/v4",
        ),
        ("R2_ENDPOINT", "http://r2.example.invalid"),
    ] {
        let mut env = cli_env(&fake, "db", "http://127.0.0.1:9", "bucket");
        env.insert(input.into(), value.into());
        let r = run::run(&["backup"], &env);
        assert_eq!(r.code, 2, "{input}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("not this machine"), "{}", r.stdout);
        assert!(fake.requests().is_empty(), "a request was made");
    }
    // Loopback is fine; and a secret given as a flag is flagged.
    fake.add_database("db", &small_db(dir.path(), "db"));
    let mut env = d1_env(&fake, "db", &out);
    env.remove("CLOUDFLARE_API_TOKEN");
    let r = run::run(&["backup", "--api-token", support::TOKEN], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("`--api-token` was given on the command line"),
        "{}",
        r.stderr
    );
    assert!(!r.all_text().contains(support::TOKEN), "the token leaked");
}
