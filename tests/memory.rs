//! Memory stays flat: a table 10× larger backs up with the same peak RSS (±20%).
//!
//! A test binary of its own, so no other test competes for the CPU while it measures.

#[path = "it/support/mod.rs"]
mod support;

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

    let measure = |db: &str| {
        let r = run::run(&["backup"], &cli_env(&fake, db, &endpoint, &bucket));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let report = r.report();
        (
            r.max_rss_kib,
            report["sizeBytes"].as_u64().unwrap(),
            report["rowCount"].as_u64().unwrap(),
        )
    };
    let (rss_small, sql_small, rows_small) = measure("small");
    let (rss_large, sql_large, rows_large) = measure("large");
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
}
