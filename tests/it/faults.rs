//! Bad days: a rate-limited, flaky D1 API, and an S3 server that fails a part, fails the
//! completion, or loses the process mid-upload. Nothing half-written may look complete.

use std::process::Stdio;
use std::time::Duration;

use fake_d1::Faults;

use crate::support::s3proxy::{Fault, S3Proxy};
use crate::support::{self, cli_env, run};

#[test]
fn rate_limits_and_server_errors_are_retried_and_the_backup_is_exact() {
    let Some((endpoint, bucket)) = support::bucket("flaky") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "flaky");
    let fake = support::fake_d1();
    fake.add_database("flaky", &db);
    fake.set_faults(Faults {
        rate_limit_every: Some(5),
        retry_after_secs: 1,
        server_error_every: Some(7),
        ..Faults::default()
    });
    fake.clear_requests();
    let r = run::run(&["backup"], &cli_env(&fake, "flaky", &endpoint, &bucket));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["verified"], true);

    let requests = fake.requests();
    let limited: Vec<_> = requests.iter().filter(|q| q.status == 429).collect();
    let failed = requests.iter().filter(|q| q.status == 500).count();
    assert!(
        limited.len() >= 2 && failed >= 2,
        "faults were injected: {} 429s, {failed} 500s",
        limited.len()
    );
    // After a 429, no request at all starts before its retry-after has passed (the limit is
    // per token, so the whole client waits, not only the request that was refused).
    for q in &limited {
        let wait = Duration::from_secs(u64::from(q.retry_after.expect("429 carries retry-after")));
        for later in requests.iter().filter(|l| l.started > q.finished) {
            let gap = later.started - q.finished;
            assert!(
                gap >= wait,
                "request #{} started {gap:?} after the 429 of #{}, which asked for {wait:?}",
                later.seq,
                q.seq
            );
        }
    }

    support::assert_stored_backup_restores(&r, &endpoint, &bucket, &db, dir.path());
}

#[test]
fn every_kind_of_api_fault_is_survived() {
    let Some((endpoint, bucket)) = support::bucket("faultmix") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "mix");
    let fake = support::fake_d1();
    fake.add_database("mix", &db);
    fake.set_faults(Faults {
        bad_gateway_html_every: Some(5),
        service_unavailable_every: Some(7),
        truncated_body_every: Some(11),
        non_json_every: Some(13),
        success_false_every: Some(17),
        // Pages above 1 MB hit D1's "isolate exceeded its memory limit": pages must shrink.
        memory_limit_bytes: Some(1_000_000),
        ..Faults::default()
    });
    fake.clear_requests();
    let r = run::run(&["backup"], &cli_env(&fake, "mix", &endpoint, &bucket));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let faults: std::collections::BTreeSet<&str> =
        fake.requests().iter().filter_map(|q| q.fault).collect();
    assert!(faults.len() >= 5, "faults injected: {faults:?}");
    support::assert_stored_backup_restores(&r, &endpoint, &bucket, &db, dir.path());
}

/// A local database whose dump compresses poorly: several 5 MiB parts.
fn noisy(dir: &std::path::Path) -> std::path::PathBuf {
    let db = dir.join("noise.sqlite");
    crate::signals::noisy_db(&db, 300_000);
    db
}

#[test]
fn a_failing_part_or_completion_leaves_nothing_behind() {
    for fault in [Fault::Part(2), Fault::Complete] {
        let Some((endpoint, bucket)) = support::bucket("s3fault") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let db = noisy(dir.path());
        let proxy = S3Proxy::start(&endpoint, fault);
        let fake = support::fake_d1();
        fake.add_database("noise", &db);
        let mut env = cli_env(&fake, "noise", &proxy.endpoint, &bucket);
        env.insert("D1_BACKUP_COMPRESSION_LEVEL".into(), "1".into());
        let r = run::run(&["backup"], &env);
        assert_eq!(r.code, 1, "{fault:?}: {}", r.stderr);
        assert!(
            proxy.faulted.load(std::sync::atomic::Ordering::SeqCst) > 0,
            "{fault:?} never hit"
        );
        let err = r.report()["error"].as_str().unwrap().to_string();
        assert!(
            err.contains("InternalError") || err.contains("500"),
            "{fault:?}: {err}"
        );
        let store = support::s3_store(&endpoint, &bucket);
        assert!(
            support::keys(&store, "").is_empty(),
            "{fault:?}: an object or manifest was left"
        );
        assert_eq!(
            support::open_uploads(&endpoint, &bucket),
            0,
            "{fault:?}: the multipart upload was left open"
        );
    }
}

#[test]
fn a_part_that_fails_once_is_replayed_from_memory() {
    let Some((endpoint, bucket)) = support::bucket("replay") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = noisy(dir.path());
    let proxy = S3Proxy::start(&endpoint, Fault::PartOnce(2));
    let fake = support::fake_d1();
    fake.add_database("noise", &db);
    let mut env = cli_env(&fake, "noise", &proxy.endpoint, &bucket);
    env.insert("D1_BACKUP_COMPRESSION_LEVEL".into(), "1".into());
    let r = run::run(&["backup"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(proxy.faulted.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The part was sent again (the dump is not re-read), and the object is exact.
    assert_eq!(r.report()["verified"], true);
    support::assert_stored_backup_restores(&r, &endpoint, &bucket, &db, dir.path());
}

#[test]
fn sigkill_mid_upload_leaves_no_object_and_no_manifest() {
    let Some((endpoint, bucket)) = support::bucket("sigkill") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = noisy(dir.path());
    let fake = support::fake_d1_with(fake_d1::Options {
        latency: Duration::from_millis(300),
        ..Default::default()
    });
    fake.add_database("noise", &db);
    let mut env = cli_env(&fake, "noise", &endpoint, &bucket);
    env.insert("D1_BACKUP_COMPRESSION_LEVEL".into(), "1".into());
    let mut child = crate::signals::spawn_until_upload_opens(&env, &endpoint, &bucket, Stdio::null);
    child.kill().unwrap(); // SIGKILL: no handler runs.
    let status = child.wait().unwrap();
    assert!(!status.success());
    let store = support::s3_store(&endpoint, &bucket);
    // The open upload is invisible to readers (R2 expires it after 7 days; `prune` aborts
    // uploads older than a day); no object and no manifest exist.
    assert!(
        support::keys(&store, "").is_empty(),
        "a visible object was left"
    );

    // The orphaned upload does not get in the way of the next run.
    let r = run::run(&["backup"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
}
