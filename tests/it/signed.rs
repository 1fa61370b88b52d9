//! A backup in the bucket is untrusted input: forged backups (object and manifest replaced
//! together, hashes correct) never restore, signed manifests are checked against trusted keys
//! and verify with stock OpenSSH, and a server that answers non-literals fails the backup.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use d1_backup::keys::{manifest_key, signature_key};

use crate::hostile_store::{
    d1_backup_to_dir, d1_env, forge, local_env, rows_of, scene, small_db, walk_files,
};
use crate::support::{self, run};

/// An ed25519 key pair made by `ssh-keygen`: (private key text, public key line).
fn keypair(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(status.success());
    (
        std::fs::read_to_string(&path).unwrap(),
        std::fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string(),
    )
}

fn error_of(r: &run::Run) -> String {
    r.report()["error"].as_str().unwrap_or_default().to_string()
}

/// The genuine SQL of a stored backup.
fn stored_sql(out: &Path, key: &str) -> String {
    String::from_utf8(zstd::decode_all(&std::fs::read(out.join(key)).unwrap()[..]).unwrap())
        .unwrap()
}

#[test]
fn forged_backups_never_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, target_path, before, out) = scene(dir.path());
    let key = d1_backup_to_dir(&fake, "src", &out, &[]);
    let genuine = stored_sql(&out, &key);
    let marker = dir.path().join("attached.db");
    let at_end = |extra: &str| format!("{genuine}\n{extra}\n");
    let forgeries = [
        ("DROP TABLE", at_end("DROP TABLE \"t\";")),
        (
            "ATTACH",
            at_end(&format!("ATTACH '{}' AS x;", marker.display())),
        ),
        ("UPDATE of every row", at_end("UPDATE \"t\" SET v = 'pwned';")),
        (
            "a statement hidden after a quote",
            genuine.replacen(
                "VALUES(1,'one');",
                "VALUES(1,'one'); UPDATE \"t\" SET v = 'pwned'; --');",
                1,
            ),
        ),
        (
            "a trigger that fires during the restore",
            genuine.replacen(
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\nCREATE TRIGGER pwn AFTER INSERT ON t BEGIN UPDATE t SET v = 'pwned'; END;",
                1,
            ),
        ),
    ];
    for (what, sql) in &forgeries {
        assert_ne!(sql, &genuine, "{what}: the forgery changed nothing");
        forge(&out, &key, sql.as_bytes());

        let mut env = d1_env(&fake, "src", &out);
        let file = dir.path().join("restored.sqlite");
        env.insert("D1_BACKUP_RESTORE_FILE".into(), file.display().to_string());
        let r = run::run(&["restore", &key], &env);
        assert_eq!(r.code, 1, "{what}: {}\n{}", r.stdout, r.stderr);
        assert!(error_of(&r).contains("is refused"), "{what}: {}", r.stdout);
        assert!(!file.exists(), "{what}: the target file exists");

        let r = run::run(&["verify", &key], &d1_env(&fake, "src", &out));
        assert_eq!(r.code, 1, "{what}: {}\n{}", r.stdout, r.stderr);

        let mut env = d1_env(&fake, "src", &out);
        env.insert("D1_BACKUP_RESTORE_TO".into(), "target".into());
        let r = run::run(&["restore", &key, "--force"], &env);
        assert_eq!(r.code, 1, "{what}: {}\n{}", r.stdout, r.stderr);
        assert!(error_of(&r).contains("is refused"), "{what}: {}", r.stdout);
        assert_eq!(
            rows_of(&target_path),
            before,
            "{what}: the D1 target changed"
        );
        assert!(!marker.exists(), "{what}: ATTACH created a file");
    }
}

#[test]
fn signed_backups_restore_and_everything_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keypair(dir.path(), "ours");
    let (other_private, _) = keypair(dir.path(), "theirs");
    let db = small_db(dir.path(), "app");
    let out = dir.path().join("backups");
    let env = local_env(&db, &out);
    let with = |extra: &[(&str, &str)]| -> BTreeMap<String, String> {
        let mut e = env.clone();
        for (k, v) in extra {
            e.insert((*k).into(), (*v).into());
        }
        e
    };
    let backup = |extra: &[(&str, &str)]| -> String {
        let r = run::run(&["backup"], &with(extra));
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        std::thread::sleep(std::time::Duration::from_millis(5));
        r.report()["key"].as_str().unwrap().to_string()
    };
    let signed = backup(&[("D1_BACKUP_SIGNING_KEY", &private)]);
    let unsigned = backup(&[]);
    let foreign = backup(&[("D1_BACKUP_SIGNING_KEY", &other_private)]);
    let trusting = with(&[("D1_BACKUP_VERIFY_KEY", &public)]);

    // The stored signature verifies with stock OpenSSH.
    let allowed = dir.path().join("allowed_signers");
    std::fs::write(&allowed, format!("d1-backup {public}\n")).unwrap();
    let ssh = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(&allowed)
        .args(["-I", "d1-backup", "-n", "d1-backup", "-s"])
        .arg(out.join(signature_key(&signed)))
        .stdin(std::fs::File::open(out.join(manifest_key(&signed))).unwrap())
        .output()
        .unwrap();
    assert!(
        ssh.status.success(),
        "ssh-keygen -Y verify: {}{}",
        String::from_utf8_lossy(&ssh.stdout),
        String::from_utf8_lossy(&ssh.stderr)
    );

    // A correctly signed backup verifies and restores.
    let r = run::run(&["verify", &signed], &trusting);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let file = dir.path().join("restored.sqlite");
    let mut to_file = trusting.clone();
    to_file.insert("D1_BACKUP_RESTORE_FILE".into(), file.display().to_string());
    let r = run::run(&["restore", &signed], &to_file);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(rows_of(&file), rows_of(&db));
    std::fs::remove_file(&file).unwrap();

    // `names_key`: the message names the backup (signature problems do; a hash mismatch names
    // the hashes).
    let refused = |key: &str, why: &str, names_key: bool| {
        for command in ["verify", "restore"] {
            let r = run::run(&[command, key], &to_file);
            assert_eq!(r.code, 1, "{command} {key}: {}\n{}", r.stdout, r.stderr);
            let err = error_of(&r);
            assert!(err.contains(why), "{command}: {err}");
            assert!(!names_key || err.contains(key), "{command}: {err}");
            assert!(!file.exists(), "{command} {key}: a file was restored");
        }
    };
    refused(&unsigned, "it is not signed", true);
    refused(&foreign, "which is not a trusted key", true);

    // `list` shows each backup's signature and fails naming the untrusted ones.
    let r = run::run(&["list"], &trusting);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let err = error_of(&r);
    assert!(
        err.contains("2 of 3") && err.contains(&unsigned) && err.contains(&foreign),
        "{err}"
    );
    assert!(r.stderr.contains("signature: valid"), "{}", r.stderr);

    // The object swapped after signing (manifest and signature untouched).
    let object = out.join(&signed);
    let original = std::fs::read(&object).unwrap();
    std::fs::copy(out.join(&unsigned), &object).unwrap();
    refused(&signed, "not a byte of it was used", false);
    std::fs::write(&object, &original).unwrap();

    // The object and the manifest replaced together: the signature no longer matches.
    forge(
        &out,
        &signed,
        b"PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t(a);\n",
    );
    refused(&signed, "changed after it was signed", true);
}

#[test]
fn the_signing_key_never_leaves_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = keypair(dir.path(), "ours");
    let db = small_db(dir.path(), "app");
    let out = dir.path().join("backups");
    let action = run::ActionEnv::new(&[
        ("sqlite-file", &db.display().to_string()),
        ("output-dir", &out.display().to_string()),
        ("signing-key", &private),
    ]);
    let mut env = action.env.clone();
    env.insert("RUNNER_DEBUG".into(), "1".into());
    let r = run::run(&[], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // The runner learns the secret from `::add-mask::` lines; nothing else may hold it.
    let stdout: String = r
        .stdout
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut seen = vec![
        ("stdout", stdout.into_bytes()),
        ("stderr", r.stderr.clone().into_bytes()),
        (
            "outputs",
            r.outputs_file.clone().unwrap_or_default().into_bytes(),
        ),
        (
            "summary",
            r.summary_file.clone().unwrap_or_default().into_bytes(),
        ),
    ];
    for f in walk_files(&out) {
        seen.push(("stored object", std::fs::read(&f).unwrap()));
    }
    assert!(
        walk_files(&out)
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".manifest.json.sig")),
        "no signature was stored"
    );
    let lines: Vec<&str> = private
        .lines()
        .filter(|l| l.len() >= 20 && !l.starts_with("-----"))
        .collect();
    assert!(!lines.is_empty());
    for (place, bytes) in &seen {
        let text = String::from_utf8_lossy(bytes);
        for l in &lines {
            assert!(
                !text.contains(l),
                "a line of the signing key is in the {place}"
            );
        }
    }
    // Each line is masked for the runner.
    for l in &lines {
        assert!(
            r.stdout.contains(&format!("::add-mask::{l}")),
            "{l} is not masked"
        );
    }
}

#[test]
fn a_server_answering_non_literals_fails_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let fake = support::fake_d1();
    fake.add_database("src", &small_db(dir.path(), "src"));
    for cell in ["1); DROP TABLE t; --", "'unterminated", "X'0G'"] {
        fake.set_faults(fake_d1::Faults {
            hostile_cell: Some(cell.to_string()),
            ..Default::default()
        });
        let out = dir.path().join("backups");
        let env = d1_env(&fake, "src", &out);
        let r = run::run(&["backup"], &env);
        assert_eq!(r.code, 1, "{cell}: {}\n{}", r.stdout, r.stderr);
        let err = error_of(&r);
        assert!(
            err.contains("table \"t\", column \"v\"") && err.contains("nothing of it was written"),
            "{cell}: {err}"
        );
        assert_eq!(walk_files(&out), Vec::<std::path::PathBuf>::new(), "{cell}");
    }
}
