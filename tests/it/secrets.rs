//! Secrets never appear in any output: stdout, stderr, outputs, summary, objects, metadata.

use crate::support::{self, cli_env, run, run::ActionEnv};

fn assert_clean(text: &str, secrets: &[&str], context: &str) {
    for s in secrets {
        assert!(!text.contains(s), "{context}: a secret leaked:\n{text}");
    }
}

/// Everything a run printed or wrote, except the `::add-mask::` lines (the runner needs the
/// secret there, once, to mask it everywhere else).
fn unmasked_text(r: &run::Run) -> String {
    r.all_text()
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn token_and_s3_secrets_never_leak() {
    let Some((endpoint, bucket)) = support::bucket("secrets") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "s");
    let fake = support::fake_d1();
    fake.add_database("s", &db);
    let derived = support::derived_secret(support::TOKEN);
    let secrets = [support::TOKEN, support::weed::SECRET_KEY, derived.as_str()];

    // Success with explicit keys, as an action with debug logging.
    let mut base = vec![
        ("api-token", support::TOKEN),
        ("account-id", support::ACCOUNT),
        ("database", "s"),
        ("bucket", bucket.as_str()),
        ("r2-endpoint", endpoint.as_str()),
        ("r2-access-key-id", support::weed::ACCESS_KEY),
        ("r2-secret-access-key", support::weed::SECRET_KEY),
    ];
    let api = fake.base_url();
    base.push(("api-base-url", api.as_str()));
    let mut env = ActionEnv::new(&base);
    env.env.insert("RUNNER_DEBUG".into(), "1".into());
    let r = env.run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    // add-mask lines are the only place a secret may be named (the runner needs them).
    let unmasked = unmasked_text(&r);
    assert_clean(&unmasked, &secrets, "action run");
    assert!(
        r.stdout
            .contains(&format!("::add-mask::{}", support::TOKEN))
    );

    // Success with keys derived from the token (the derived secret is masked too).
    let derived_inputs: Vec<(&str, &str)> = base
        .iter()
        .copied()
        .filter(|(k, _)| !k.starts_with("r2-access") && !k.starts_with("r2-secret"))
        .collect();
    let mut env = ActionEnv::new(&derived_inputs);
    env.env.insert("RUNNER_DEBUG".into(), "1".into());
    let r = env.run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let unmasked = unmasked_text(&r);
    assert_clean(&unmasked, &secrets, "derived keys");
    assert!(
        r.stdout.contains(&format!("::add-mask::{derived}")),
        "derived secret not masked"
    );

    // Failures in each phase: bad S3 secret, D1 failing, bucket missing.
    let mut failing = Vec::new();
    let mut env = cli_env(&fake, "s", &endpoint, &bucket);
    env.insert("RUNNER_DEBUG".into(), "1".into());
    env.insert(
        "R2_SECRET_ACCESS_KEY".into(),
        format!("{}-wrong", support::weed::SECRET_KEY),
    );
    failing.push(run::run(&["-v"], &env));
    let env2 = cli_env(&fake, "s", &endpoint, "missing-bucket-x");
    failing.push(run::run(&["-v"], &env2));
    fake.set_faults(fake_d1::Faults {
        failing_databases: vec!["s".into()],
        ..Default::default()
    });
    failing.push(run::run(&["-v"], &cli_env(&fake, "s", &endpoint, &bucket)));
    for r in &failing {
        assert_ne!(r.code, 0);
        let wrong = format!("{}-wrong", support::weed::SECRET_KEY);
        assert_clean(
            &r.all_text(),
            &[
                support::TOKEN,
                support::weed::SECRET_KEY,
                wrong.as_str(),
                derived.as_str(),
            ],
            "failed run",
        );
    }

    // Nothing stored carries a secret either.
    let store = support::s3_store(&endpoint, &bucket);
    for key in support::keys(&store, "") {
        let bytes = support::get_bytes(&store, &key);
        let text = if key.ends_with(".zst") {
            support::sql_of(&bytes, &key)
        } else {
            bytes
        };
        assert_clean(&String::from_utf8_lossy(&text), &secrets, &key);
        let (_, meta) = support::block_on(d1_backup::store::ObjectStore::head(&store, &key))
            .unwrap()
            .unwrap();
        assert_clean(&format!("{meta:?}"), &secrets, &key);
    }
}

/// Every command, in success and in failure, with debug logging: no secret (token, S3
/// secret, derived secret, signed URL, age identity) in any output, stored object or metadata.
#[test]
fn every_command_and_phase_keeps_secrets() {
    let Some((endpoint, bucket)) = support::bucket("allsecrets") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "app");
    // Export refuses virtual tables: a second database without them.
    let plain = dir.path().join("plain.sqlite");
    {
        let c = rusqlite::Connection::open(&plain).unwrap();
        c.execute_batch("CREATE TABLE t(a, b); INSERT INTO t VALUES (1, 'x'), (2, zeroblob(9));")
            .unwrap();
    }
    let fake = support::fake_d1();
    fake.add_database("app", &db);
    fake.add_database("plain", &plain);
    let identity = age::x25519::Identity::generate();
    let age_secret = {
        use age::secrecy::ExposeSecret;
        identity.to_string().expose_secret().to_string()
    };
    let recipient = identity.to_public().to_string();
    let derived = support::derived_secret(support::TOKEN);
    let mut secrets: Vec<String> = vec![
        support::TOKEN.into(),
        support::weed::SECRET_KEY.into(),
        derived.clone(),
        age_secret.clone(),
        // The identity's payload without its prefix, in case something prints a fragment.
        age_secret["AGE-SECRET-KEY-1".len()..].to_string(),
        "wrong-secret-for-listing".into(),
    ];

    let env_for = |database: &str, extra: &[(&str, &str)]| {
        let mut env = cli_env(&fake, database, &endpoint, &bucket);
        env.insert("RUNNER_DEBUG".into(), "1".into());
        // Every run does its whole work (a repeated backup is otherwise `unchanged`).
        env.insert("D1_BACKUP_SKIP_UNCHANGED".into(), "false".into());
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        env
    };
    let with_identity = [("AGE_IDENTITY", age_secret.as_str())];
    let restored = dir.path().join("restored.sqlite");
    let restored_s = restored.display().to_string();
    let mut runs: Vec<(String, run::Run)> = Vec::new();
    let mut go = |label: &str, args: &[&str], env: &std::collections::BTreeMap<String, String>| {
        runs.push((label.to_string(), run::run(args, env)));
    };
    // Success paths.
    go("backup (query)", &["backup", "-v"], &env_for("app", &[]));
    go(
        "backup (encrypted, identity given)",
        &["backup"],
        &env_for(
            "app",
            &[
                ("D1_BACKUP_ENCRYPT_RECIPIENTS", recipient.as_str()),
                ("AGE_IDENTITY", age_secret.as_str()),
            ],
        ),
    );
    go(
        "backup (export)",
        &["backup"],
        &env_for("plain", &[("D1_BACKUP_METHOD", "export")]),
    );
    go(
        "verify",
        &["verify", "latest"],
        &env_for("app", &with_identity),
    );
    go("list", &["list"], &env_for("app", &with_identity));
    go(
        "list --json",
        &["list", "--json"],
        &env_for("app", &with_identity),
    );
    go(
        "restore to a file",
        &["restore", "--to-file", &restored_s],
        &env_for("app", &with_identity),
    );
    go(
        "restore into D1",
        &["restore", "--to-database", "copy", "--create"],
        &env_for("app", &with_identity),
    );
    go(
        "prune (dry run)",
        &["prune", "--keep-last", "1", "--dry-run"],
        &env_for("app", &[]),
    );
    go(
        "prune",
        &["prune", "--keep-last", "1"],
        &env_for("app", &[]),
    );
    // Failures in each phase.
    go(
        "restore over an existing file",
        &["restore", "--to-file", &restored_s],
        &env_for("app", &with_identity),
    );
    go(
        "restore into a non-empty database",
        &["restore", "--to-database", "copy"],
        &env_for("app", &with_identity),
    );
    go(
        "verify a missing key",
        &["verify", "app/backup-2020-01-01T00-00-00-000Z.sql.zst"],
        &env_for("app", &[]),
    );
    go(
        "verify with the wrong identity",
        &["verify", "latest"],
        &env_for(
            "app",
            &[(
                "AGE_IDENTITY",
                "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
            )],
        ),
    );
    go(
        "list with a wrong S3 secret",
        &["list"],
        &env_for(
            "app",
            &[("R2_SECRET_ACCESS_KEY", "wrong-secret-for-listing")],
        ),
    );
    go("export that D1 fails", &["backup"], &{
        fake.set_faults(fake_d1::Faults {
            export_error: Some("export failed: internal error".into()),
            ..Default::default()
        });
        env_for("plain", &[("D1_BACKUP_METHOD", "export")])
    });
    fake.set_faults(fake_d1::Faults {
        signed_url_forbidden: true,
        ..Default::default()
    });
    go(
        "export whose signed URL is refused",
        &["backup"],
        &env_for("plain", &[("D1_BACKUP_METHOD", "export")]),
    );
    fake.set_faults(fake_d1::Faults::default());

    // The signed URLs the fake handed out (their query strings are the credential).
    for q in fake.requests() {
        if q.kind.starts_with("signed-")
            && let Some(query) = &q.query
            && let Some(sig) = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("X-Amz-Signature="))
        {
            secrets.push(sig.to_string());
        }
    }
    assert!(
        secrets.len() > 5,
        "the export requests should have used signed URLs"
    );
    let successes = runs.iter().take(10).filter(|(_, r)| r.code == 0).count();
    assert_eq!(
        successes,
        10,
        "{:#?}",
        runs.iter()
            .map(|(l, r)| (l, r.code, &r.stderr))
            .collect::<Vec<_>>()
    );
    assert!(runs.iter().skip(10).all(|(_, r)| r.code != 0));
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    for (label, r) in &runs {
        let unmasked = unmasked_text(r);
        assert_clean(&unmasked, &secret_refs, label);
    }
    let store = support::s3_store(&endpoint, &bucket);
    for key in support::keys(&store, "") {
        let bytes = support::get_bytes(&store, &key);
        assert_clean(&String::from_utf8_lossy(&bytes), &secret_refs, &key);
        let (_, meta) = support::block_on(d1_backup::store::ObjectStore::head(&store, &key))
            .unwrap()
            .unwrap();
        assert_clean(&format!("{meta:?}"), &secret_refs, &key);
    }
}
