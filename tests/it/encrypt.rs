//! Client-side encryption with age: round trips, fail-closed behaviour, and reading encrypted
//! backups back with and without the identity.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use age::secrecy::ExposeSecret;
use d1_backup::keys::manifest_key;
use d1_backup::manifest::Manifest;
use d1_backup::store::ObjectStore;
use d1_backup::store::local::LocalStore;

use crate::support::{self, block_on, cli_env, compare, restore_d1_rules, run};

const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// A fresh X25519 identity: (secret key text, public recipient).
fn x25519() -> (String, String) {
    let id = age::x25519::Identity::generate();
    (
        id.to_string().expose_secret().to_string(),
        id.to_public().to_string(),
    )
}

/// Decrypt an age file with `secret`, then zstd-decode it.
fn decrypt_sql(object: &[u8], secret: &str) -> Vec<u8> {
    let id: age::x25519::Identity = secret.parse().unwrap();
    let plain = age::decrypt(&id, object).expect("decrypts with the identity");
    zstd::decode_all(&plain[..]).expect("the plaintext is zstd")
}

#[test]
fn x25519_round_trip_through_r2_restores_exactly() {
    let Some((endpoint, bucket)) = support::bucket("encrypted") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "secretdb");
    let fake = support::fake_d1();
    fake.add_database("secretdb", &db);
    let (secret, public) = x25519();
    let (_, other_public) = x25519();

    // Backup: the runner holds only public keys (two recipients, newline-separated).
    let mut env = cli_env(&fake, "secretdb", &endpoint, &bucket);
    env.insert(
        "INPUT_ENCRYPT-RECIPIENTS".into(),
        format!("{public}\n# the break-glass key\n{other_public}\n"),
    );
    let r = run::run(&["backup"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report();
    let key = report["key"].as_str().unwrap().to_string();
    assert!(key.ends_with(".sql.zst.age"), "{key}");
    assert_eq!(report["encryption"], "age");
    // Without the identity the run can only check the stored bytes, and says so.
    assert_eq!(report["verified"], true);
    assert_eq!(report["verification"]["objectOnly"], true);
    assert!(
        report["verification"]["checks"]
            .to_string()
            .contains("SHA-256 only"),
        "{report}"
    );

    // The stored bytes are an age file, not zstd, and hold no plaintext.
    let store = support::s3_store(&endpoint, &bucket);
    let object = support::get_bytes(&store, &key);
    assert!(object.starts_with(AGE_MAGIC));
    assert!(zstd::decode_all(&object[..]).is_err());
    assert!(
        !object.windows(12).any(|w| w == b"CREATE TABLE"),
        "plaintext SQL in the stored object"
    );
    let sql = decrypt_sql(&object, &secret);
    assert!(sql.starts_with(b"-- "), "SQL after decryption");
    let restored = dir.path().join("from-object.sqlite");
    restore_d1_rules(&sql, &restored);
    compare::assert_same(&db, &restored);

    // Metadata and manifest say so; the manifest names the public keys only.
    let (_, meta) = block_on(store.head(&key)).unwrap().unwrap();
    assert_eq!(meta.metadata["encryption"], "age");
    assert_eq!(meta.content_type, "application/octet-stream");
    let manifest: Manifest =
        serde_json::from_slice(&support::get_bytes(&store, &manifest_key(&key))).unwrap();
    assert_eq!(manifest.encryption.as_deref(), Some("age"));
    assert_eq!(manifest.recipients, vec![public.clone(), other_public]);

    // verify with the identity restores it in full.
    let mut with_id = cli_env(&fake, "secretdb", &endpoint, &bucket);
    with_id.insert("AGE_IDENTITY".into(), secret.clone());
    let r = run::run(&["verify", "latest"], &with_id);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["verification"]["objectOnly"], false);
    assert!(
        r.stderr.contains("integrity_check"),
        "full verification: {}",
        r.stderr
    );
    assert!(!r.all_text().contains(&secret), "identity leaked");

    // restore to a file with the identity.
    let out = dir.path().join("restored.sqlite");
    let r = run::run(&["restore", "--to-file", out.to_str().unwrap()], &with_id);
    assert_eq!(r.code, 0, "{}", r.stderr);
    compare::assert_same(&db, &out);
    assert!(!r.all_text().contains(&secret), "identity leaked");

    // list: encrypted, and this identity opens it.
    let r = run::run(&["list", "--json"], &with_id);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let listed = &r.report()["backups"][0];
    assert_eq!(listed["encryption"], "age");
    assert_eq!(listed["decryptable"], true);

    // Without an identity, restore is refused up front (bad input, exit 2, nothing written).
    let env = cli_env(&fake, "secretdb", &endpoint, &bucket);
    let refused = dir.path().join("refused.sqlite");
    let r = run::run(&["restore", "--to-file", refused.to_str().unwrap()], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.report()["error"]
            .as_str()
            .unwrap()
            .contains("age-identity")
    );
    assert!(!refused.exists());

    // A wrong identity fails clearly, in verify, restore and list.
    let (wrong, _) = x25519();
    let mut wrong_env = cli_env(&fake, "secretdb", &endpoint, &bucket);
    wrong_env.insert("AGE_IDENTITY".into(), wrong.clone());
    let r = run::run(&["verify"], &wrong_env);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let err = r.report()["error"].as_str().unwrap().to_string();
    assert!(err.contains("none of the given identities"), "{err}");
    let r = run::run(
        &["restore", "--to-file", refused.to_str().unwrap()],
        &wrong_env,
    );
    assert_ne!(r.code, 0);
    assert!(!refused.exists());
    let r = run::run(&["list", "--json"], &wrong_env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["backups"][0]["decryptable"], false);
    assert!(!r.all_text().contains(&wrong), "identity leaked");
}

#[test]
fn invalid_recipients_fail_before_any_request_or_upload() {
    let Some((endpoint, bucket)) = support::bucket("badrecipient") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "app");
    let fake = support::fake_d1();
    fake.add_database("app", &db);
    let (secret, public) = x25519();
    let cases = [
        (format!("{public},age1notakey"), "age1notakey"),
        ("ssh-ed25519 AAAA".to_string(), "SSH"),
        ("ssh-dss AAAAB3NzaC1kc3M= a@b".to_string(), "ssh"),
        ("hunter2".to_string(), "not an age recipient"),
        // The secret key by mistake: refused, and never echoed.
        (secret.clone(), "secret key"),
    ];
    for (value, expect) in cases {
        fake.clear_requests();
        let mut env = cli_env(&fake, "app", &endpoint, &bucket);
        env.insert("D1_BACKUP_ENCRYPT_RECIPIENTS".into(), value.clone());
        let r = run::run(&["backup"], &env);
        assert_eq!(r.code, 2, "{value}: {}", r.stderr);
        let err = r.report()["error"].as_str().unwrap().to_string();
        assert!(err.contains("encrypt-recipients"), "{err}");
        assert!(err.contains(expect), "{value}: {err}");
        assert!(!r.all_text().contains(&secret), "secret key echoed");
        assert!(
            fake.requests().is_empty(),
            "no request before the key check"
        );
        let store = support::s3_store(&endpoint, &bucket);
        assert!(support::keys(&store, "").is_empty(), "nothing uploaded");
    }
}

/// ssh-keygen, when the machine has it (CI installs openssh-client).
fn ssh_keygen(dir: &Path, kind: &str) -> (std::path::PathBuf, String) {
    let key = dir.join(format!("id_{kind}"));
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", "backup@test", "-f"])
        .arg(&key);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    let status = cmd
        .status()
        .expect("ssh-keygen is needed (apt-get install openssh-client)");
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

#[test]
fn ssh_recipients_round_trip_from_an_identity_file() {
    for kind in ["ed25519", "rsa"] {
        let dir = tempfile::tempdir().unwrap();
        let db = support::copy_db(&support::fixture_db(), dir.path(), "local-app");
        let out = dir.path().join("backups");
        let (identity_file, public) = ssh_keygen(dir.path(), kind);
        let mut env = BTreeMap::new();
        env.insert("D1_BACKUP_SQLITE_FILE".into(), db.display().to_string());
        env.insert("D1_BACKUP_OUTPUT_DIR".into(), out.display().to_string());
        env.insert("D1_BACKUP_ENCRYPT_RECIPIENTS".into(), public);
        // The backup itself is verified in full when the identity is at hand.
        env.insert(
            "AGE_IDENTITY_FILE".into(),
            identity_file.display().to_string(),
        );
        let r = run::run(&[], &env);
        assert_eq!(r.code, 0, "{kind}: {}", r.stderr);
        let key = r.report()["key"].as_str().unwrap().to_string();
        assert!(key.ends_with(".sql.zst.age"));
        assert_eq!(r.report()["verification"]["objectOnly"], false);
        let object = std::fs::read(out.join(&key)).unwrap();
        assert!(object.starts_with(AGE_MAGIC));

        env.remove("AGE_IDENTITY_FILE");
        let restored = dir.path().join("restored.sqlite");
        let r = run::run(
            &[
                "restore",
                "--identity-file",
                identity_file.to_str().unwrap(),
                "--to-file",
                restored.to_str().unwrap(),
            ],
            &env,
        );
        assert_eq!(r.code, 0, "{kind}: {}", r.stderr);
        compare::assert_same(&db, &restored);
        let private = std::fs::read_to_string(&identity_file).unwrap();
        let body = private.lines().nth(1).unwrap();
        assert!(!r.all_text().contains(body), "identity leaked");
    }
}

#[test]
fn identity_inputs_are_checked_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backups");
    std::fs::create_dir_all(&out).unwrap();
    let mut env = BTreeMap::new();
    env.insert("D1_BACKUP_OUTPUT_DIR".into(), out.display().to_string());
    env.insert("D1_DATABASE".into(), "app".into());
    let missing = dir.path().join("nope.key");
    let garbage = "AGE-SECRET-KEY-1GARBAGEGARBAGE";
    let cases: [(&str, String, &str); 3] = [
        ("AGE_IDENTITY", garbage.into(), "age-identity"),
        (
            "AGE_IDENTITY_FILE",
            missing.display().to_string(),
            "age-identity-file",
        ),
        (
            "AGE_IDENTITY",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN"
                .into(),
            "age-identity",
        ),
    ];
    for (var, value, input) in cases {
        let mut env = env.clone();
        env.insert(var.into(), value.clone());
        let r = run::run(&["verify"], &env);
        assert_eq!(r.code, 2, "{var}={value}: {}", r.stderr);
        let err = r.report()["error"].as_str().unwrap().to_string();
        assert!(err.contains(input), "{err}");
        assert!(!r.all_text().contains(garbage), "identity text echoed");
    }
}

#[test]
fn list_marks_encrypted_backups_among_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "mixed");
    let out = dir.path().join("backups");
    let mut env = BTreeMap::new();
    env.insert("D1_BACKUP_SQLITE_FILE".into(), db.display().to_string());
    env.insert("D1_BACKUP_OUTPUT_DIR".into(), out.display().to_string());
    env.insert("D1_BACKUP_VERIFY".into(), "false".into());
    let r = run::run(&[], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (secret, public) = x25519();
    let mut enc = env.clone();
    enc.insert("D1_BACKUP_ENCRYPT_RECIPIENTS".into(), public);
    let r = run::run(&[], &enc);
    assert_eq!(r.code, 0, "{}", r.stderr);

    env.insert("AGE_IDENTITY".into(), secret);
    let r = run::run(&["list"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let backups = r.report()["backups"].as_array().unwrap().clone();
    assert_eq!(backups.len(), 2);
    // Newest first: the encrypted one.
    assert_eq!(backups[0]["encryption"], "age");
    assert_eq!(backups[0]["decryptable"], true);
    assert!(backups[1].get("encryption").is_none());
    assert!(r.stderr.contains("age (identity opens it)"), "{}", r.stderr);

    // The stored object of the plain backup is plain zstd; the encrypted one is not.
    let store = LocalStore::new(&out);
    let keys = support::keys(&store, "");
    let plain: Vec<_> = keys.iter().filter(|k| k.ends_with(".sql.zst")).collect();
    assert_eq!(plain.len(), 1);
    let mut bytes = Vec::new();
    std::fs::File::open(out.join(plain[0]))
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    assert!(zstd::decode_all(&bytes[..]).is_ok());
}
