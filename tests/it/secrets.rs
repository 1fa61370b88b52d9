//! Secrets never appear in any output: stdout, stderr, outputs, summary, objects, metadata.

use crate::support::{self, cli_env, run, run::ActionEnv};

fn assert_clean(text: &str, secrets: &[&str], context: &str) {
    for s in secrets {
        assert!(!text.contains(s), "{context}: a secret leaked:\n{text}");
    }
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
    let unmasked: String = r
        .all_text()
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect::<Vec<_>>()
        .join("\n");
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
    let unmasked: String = r
        .all_text()
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect::<Vec<_>>()
        .join("\n");
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
