//! Missing or invalid input: a message naming the input, the failure JSON, a non-zero exit,
//! and nothing left behind.

use crate::support::{self, cli_env, run};

fn assert_failed(r: &run::Run, code: i32, input: &str) {
    assert_eq!(r.code, code, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let report = r.report();
    assert_eq!(report["success"], false);
    assert_eq!(report["message"], "Backup failed");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("`{input}`")),
        "error should name `{input}`: {error}"
    );
    assert!(
        r.stderr.contains(&format!("`{input}`")),
        "stderr should name `{input}`: {}",
        r.stderr
    );
}

#[test]
fn bad_inputs_fail_before_any_request() {
    let Some((endpoint, bucket)) = support::bucket("inputs") else {
        return;
    };
    let fake = support::fake_d1();
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("CLOUDFLARE_API_TOKEN", None, "api-token"),
        ("D1_DATABASE", None, "database"),
        ("D1_DATABASE", Some("bad name!"), "database"),
        ("R2_BUCKET", Some("Bad_Bucket"), "bucket"),
        ("R2_ENDPOINT", Some("not a url"), "r2-endpoint"),
        ("CLOUDFLARE_ACCOUNT_ID", Some("nope"), "account-id"),
    ];
    for (var, value, input) in cases {
        let mut env = cli_env(&fake, "db", &endpoint, &bucket);
        match value {
            Some(v) => env.insert(var.to_string(), v.to_string()),
            None => env.remove(*var),
        };
        let r = run::run(&[], &env);
        assert_failed(&r, 2, input);
    }
    let r = run::run(
        &["--compression-level", "99"],
        &cli_env(&fake, "db", &endpoint, &bucket),
    );
    assert_failed(&r, 2, "compression-level");
    assert!(
        fake.requests().is_empty(),
        "bad input made requests: {:?}",
        fake.requests()
    );
    let store = support::s3_store(&endpoint, &bucket);
    assert!(support::keys(&store, "").is_empty());
}

#[test]
fn unknown_database_and_unreachable_bucket() {
    let Some((endpoint, bucket)) = support::bucket("missing") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "real");
    let fake = support::fake_d1();
    fake.add_database("real", &db);

    let r = run::run(&[], &cli_env(&fake, "ghost", &endpoint, &bucket));
    assert_failed(&r, 2, "database");
    let r = run::run(
        &[],
        &cli_env(
            &fake,
            "00000000-0000-0000-0000-000000000000",
            &endpoint,
            &bucket,
        ),
    );
    assert_failed(&r, 2, "database");

    let r = run::run(
        &[],
        &cli_env(&fake, "real", &endpoint, "no-such-bucket-here"),
    );
    assert_failed(&r, 2, "bucket");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let r = run::run(
        &[],
        &cli_env(&fake, "real", &format!("http://127.0.0.1:{port}"), &bucket),
    );
    assert_failed(&r, 2, "r2-endpoint");

    let mut env = cli_env(&fake, "real", &endpoint, &bucket);
    env.insert(
        "R2_SECRET_ACCESS_KEY".into(),
        "wrong-secret-0123456789".into(),
    );
    let r = run::run(&[], &env);
    assert_failed(&r, 2, "r2-access-key-id");

    // No dump was attempted, nothing was written.
    assert!(fake.requests().iter().all(|q| q.kind != "raw"));
    let store = support::s3_store(&endpoint, &bucket);
    assert!(support::keys(&store, "").is_empty());
}

#[test]
fn wrong_token_names_the_input() {
    let Some((endpoint, bucket)) = support::bucket("token") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "t");
    let fake = support::fake_d1();
    fake.add_database("t", &db);
    let mut env = cli_env(&fake, "t", &endpoint, &bucket);
    env.insert(
        "CLOUDFLARE_API_TOKEN".into(),
        "wrong-token-abcdefghijklmnopqrstuvwxyz".into(),
    );
    let r = run::run(&[], &env);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let err = r.report()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("10000 Authentication error") && err.contains("`api-token`"),
        "{err}"
    );
}
