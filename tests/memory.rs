//! Memory stays flat: a table 10× larger backs up with the same peak RSS (±20%).
//!
//! A test binary of its own, so no other test competes for the CPU while it measures.

#[path = "it/support/mod.rs"]
mod support;

use age::secrecy::ExposeSecret;
use support::{cli_env, fixture, run};

#[test]
fn peak_memory_does_not_grow_with_the_database() {
    let Some((endpoint, bucket)) = support::bucket("memory") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let small = support::copy_db(&support::fixture_db(), dir.path(), "small");
    let large = dir.path().join("large.sqlite");
    fixture::build(&large, 2_000_000);
    let fake = support::fake_d1();
    fake.add_database("small", &small);
    fake.add_database("large", &large);

    // Backups (without their own verification, which is measured separately below).
    let measure_with = |db: &str, extra: &[(&str, &str)]| {
        let mut env = cli_env(&fake, db, &endpoint, &bucket);
        env.insert("D1_BACKUP_VERIFY".into(), "false".into());
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let r = run::run(&["backup"], &env);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let report = r.report();
        (
            r.max_rss_kib,
            report["sizeBytes"].as_u64().unwrap(),
            report["rowCount"].as_u64().unwrap(),
            report["key"].as_str().unwrap().to_string(),
        )
    };
    let measure = |db: &str| measure_with(db, &[]);
    let (rss_small, sql_small, rows_small, key_small) = measure("small");
    let (rss_large, sql_large, rows_large, key_large) = measure("large");
    eprintln!(
        "peak RSS: {rows_small} rows / {sql_small} bytes of SQL -> {rss_small} KiB; {rows_large} rows / {sql_large} bytes -> {rss_large} KiB"
    );
    assert!(
        sql_large > 5 * sql_small,
        "the large dump should be much larger"
    );
    let ratio = rss_large as f64 / rss_small as f64;
    assert!(
        (0.8..=1.2).contains(&ratio),
        "peak RSS grew from {rss_small} KiB to {rss_large} KiB ({ratio:.2}x)"
    );

    // Encrypted with age: the same flat memory, for the backup and for its verification.
    let identity = age::x25519::Identity::generate();
    let secret = identity.to_string().expose_secret().to_string();
    let public = identity.to_public().to_string();
    let encrypted = [("D1_BACKUP_ENCRYPT_RECIPIENTS", public.as_str())];
    let (erss_small, _, _, ekey_small) = measure_with("small", &encrypted);
    let (erss_large, _, _, ekey_large) = measure_with("large", &encrypted);
    eprintln!("encrypted backup peak RSS: {erss_small} KiB (fixture) -> {erss_large} KiB (10x)");
    let ratio = erss_large as f64 / erss_small as f64;
    assert!(
        (0.8..=1.2).contains(&ratio),
        "encrypted backup peak RSS grew from {erss_small} KiB to {erss_large} KiB ({ratio:.2}x)"
    );

    // Verifying them: the 10× backup is restored with the same peak memory.
    let verify_with = |db: &str, key: &str, identity: Option<&str>| {
        let mut env = cli_env(&fake, db, &endpoint, &bucket);
        if let Some(secret) = identity {
            env.insert("AGE_IDENTITY".into(), secret.to_string());
        }
        let r = run::run(&["verify", key], &env);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.report()["verified"], true);
        r.max_rss_kib
    };
    let verify = |db: &str, key: &str| verify_with(db, key, None);
    let vrss_small = verify("small", &key_small);
    let vrss_large = verify("large", &key_large);
    eprintln!("verify peak RSS: {vrss_small} KiB (fixture) -> {vrss_large} KiB (10x)");
    let ratio = vrss_large as f64 / vrss_small as f64;
    assert!(
        (0.8..=1.2).contains(&ratio),
        "verification peak RSS grew from {vrss_small} KiB to {vrss_large} KiB ({ratio:.2}x)"
    );

    let evrss_small = verify_with("small", &ekey_small, Some(&secret));
    let evrss_large = verify_with("large", &ekey_large, Some(&secret));
    eprintln!("encrypted verify peak RSS: {evrss_small} KiB (fixture) -> {evrss_large} KiB (10x)");
    let ratio = evrss_large as f64 / evrss_small as f64;
    assert!(
        (0.8..=1.2).contains(&ratio),
        "encrypted verification peak RSS grew from {evrss_small} KiB to {evrss_large} KiB ({ratio:.2}x)"
    );

    // Tables at D1's column limit (read as column groups, with 1.9 MB values fetched in
    // pieces): ten times the rows, the same peak memory.
    let wide_small = dir.path().join("wide-small.sqlite");
    fixture::build_wide_with(&wide_small, 2_000);
    let wide_large = dir.path().join("wide-large.sqlite");
    fixture::build_wide_with(&wide_large, 20_000);
    fake.add_database("wide-small", &wide_small);
    fake.add_database("wide-large", &wide_large);
    let (wrss_small, wsql_small, _, wkey_small) = measure("wide-small");
    let (wrss_large, wsql_large, _, wkey_large) = measure("wide-large");
    eprintln!(
        "wide tables peak RSS: {wsql_small} bytes of SQL -> {wrss_small} KiB; {wsql_large} bytes -> {wrss_large} KiB"
    );
    assert!(
        wsql_large > 5 * wsql_small,
        "the large wide dump should be much larger"
    );
    let ratio = wrss_large as f64 / wrss_small as f64;
    assert!(
        (0.8..=1.2).contains(&ratio),
        "wide tables: peak RSS grew from {wrss_small} KiB to {wrss_large} KiB ({ratio:.2}x)"
    );
    let wvrss_small = verify("wide-small", &wkey_small);
    let wvrss_large = verify("wide-large", &wkey_large);
    eprintln!("wide tables verify peak RSS: {wvrss_small} KiB -> {wvrss_large} KiB");
    let ratio = wvrss_large as f64 / wvrss_small as f64;
    assert!(
        (0.8..=1.2).contains(&ratio),
        "wide tables: verification peak RSS grew from {wvrss_small} KiB to {wvrss_large} KiB ({ratio:.2}x)"
    );
}
