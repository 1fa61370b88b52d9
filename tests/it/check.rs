//! `check` against SeaweedFS with fabricated histories (fresh, old, unverified, shrunk,
//! idle-but-unchanged), and the heartbeat against a local HTTP server.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use d1_backup::keys::{backup_key, manifest_key, verify_key};
use d1_backup::manifest::{DatabaseRef, Digest, Manifest};

use crate::support::{self, ACCOUNT, TOKEN, gha, run, weed};

/// Put one backup of `db` taken at `time` into the bucket: object, manifest and (unless
/// `verified` is `None`) its verification report.
fn fabricate(
    endpoint: &str,
    bucket: &str,
    db: &str,
    time: DateTime<Utc>,
    rows: u64,
    verified: Option<bool>,
    bookmark: Option<&str>,
) {
    let store = support::s3_store(endpoint, bucket);
    let key = backup_key("", db, time, ".sql.zst");
    let object = vec![7u8; 1000 + rows as usize];
    let manifest = Manifest {
        format: Manifest::FORMAT,
        tool: "d1-backup".into(),
        key: key.clone(),
        database: DatabaseRef {
            id: format!("id-{db}"),
            name: db.into(),
            source: "d1".into(),
        },
        timestamp: d1_backup::manifest::rfc3339(time),
        method: "query".into(),
        compression: "zstd".into(),
        object: Digest {
            size: object.len() as u64,
            sha256: String::new(),
        },
        table_count: 1,
        row_count: rows,
        bookmark: bookmark.map(String::from),
        consistent: Some(true),
        ..Manifest::default()
    };
    let mut put = vec![
        (key.clone(), object),
        (manifest_key(&key), serde_json::to_vec(&manifest).unwrap()),
    ];
    if let Some(v) = verified {
        put.push((
            verify_key(&key),
            serde_json::to_vec(&serde_json::json!({ "verified": v })).unwrap(),
        ));
    }
    support::block_on(async {
        for (k, body) in put {
            store
                .client()
                .put_object()
                .bucket(bucket)
                .key(&k)
                .body(body.into())
                .send()
                .await
                .unwrap();
        }
    });
}

fn check_env(
    endpoint: &str,
    bucket: &str,
    database: &str,
    extra: &[(&str, &str)],
) -> run::ActionEnv {
    let mut inputs = vec![
        ("command", "check"),
        ("database", database),
        ("bucket", bucket),
        ("r2-endpoint", endpoint),
        ("r2-access-key-id", weed::ACCESS_KEY),
        ("r2-secret-access-key", weed::SECRET_KEY),
        ("account-id", ACCOUNT),
    ];
    inputs.extend_from_slice(extra);
    run::ActionEnv::new(&inputs)
}

#[test]
fn check_fails_on_old_unverified_and_shrunk_backups() {
    let Some((endpoint, bucket)) = support::bucket("check") else {
        return;
    };
    let now = Utc::now();
    let h = |hours: i64| now - Duration::hours(hours);
    let put = |db, hours, rows, verified| {
        fabricate(&endpoint, &bucket, db, h(hours), rows, verified, None)
    };
    put("fresh", 30, 100, Some(true));
    put("fresh", 2, 100, Some(true));
    put("old", 100, 100, Some(true));
    put("old", 72, 100, Some(true));
    put("unverified", 30, 100, Some(true));
    put("unverified", 1, 100, None);
    put("shrunk", 30, 100, Some(true));
    put("shrunk", 1, 10, Some(true));

    let go = |database: &str, extra: &[(&str, &str)]| {
        let env = check_env(&endpoint, &bucket, database, extra);
        let r = env.run();
        let outputs = gha::parse_outputs(r.outputs_file.as_deref().unwrap_or("")).unwrap();
        (r, outputs)
    };
    let (r, o) = go("fresh", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(o["stale"], "0");
    assert!(o["newest-key"].starts_with("fresh/backup-"));
    let age: i64 = o["age-seconds"].parse().unwrap();
    assert!((7200..7300).contains(&age), "{age}");
    let summary = r.summary_file.unwrap();
    assert!(summary.contains("| fresh | ✅ fresh |"), "{summary}");
    assert!(summary.contains("```mermaid\nxychart-beta"), "{summary}");

    let (r, o) = go("old", &[("max-age", "26h")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(o["stale"], "1");
    assert!(
        r.stdout
            .contains("::error title=Stale backup::database \"old\": its newest backup is 3d old"),
        "{}",
        r.stdout
    );
    // A larger max-age accepts it.
    assert_eq!(go("old", &[("max-age", "4d")]).0.code, 0);

    let (r, _) = go("unverified", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("no passing verification"), "{}", r.stdout);

    let (r, _) = go("shrunk", &[("max-shrink", "50")]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("90% fewer than the 100"), "{}", r.stdout);
    assert_eq!(go("shrunk", &[]).0.code, 0);

    // Several databases: one line each, the right count, the largest age.
    let (r, o) = go("fresh, old, unverified, shrunk", &[("max-shrink", "50")]);
    assert_eq!(r.code, 1);
    assert_eq!(o["stale"], "3");
    assert_eq!(
        r.stdout.matches("::error title=Stale backup::").count(),
        3,
        "{}",
        r.stdout
    );
    assert!(o["newest-key"].starts_with("old/backup-"), "{o:?}");
    let report: serde_json::Value = serde_json::from_str(&o["report"]).unwrap();
    assert_eq!(report["databases"].as_array().unwrap().len(), 4);
    // `*` without API access: every database folder in the bucket.
    let env = {
        let mut e = check_env(&endpoint, &bucket, "*", &[("max-shrink", "50")]);
        e.env.remove("INPUT_ACCOUNT-ID");
        e
    };
    let r = env.run();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.report()["databases"].as_array().unwrap().len(),
        4,
        "{}",
        r.stdout
    );
}

#[test]
fn an_old_backup_of_an_idle_database_is_fresh() {
    let Some((endpoint, bucket)) = support::bucket("check-idle") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fake = support::fake_d1();
    let db = dir.path().join("idle.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1);")
        .unwrap();
    fake.add_database("idle", &db);
    let three_days = Utc::now() - Duration::days(3);
    fabricate(
        &endpoint,
        &bucket,
        "idle",
        three_days,
        1,
        Some(true),
        Some(&fake.bookmark("idle")),
    );
    let with_api = |e: &mut run::ActionEnv| {
        e.env.insert("INPUT_API-TOKEN".into(), TOKEN.into());
        e.env.insert("INPUT_API-BASE-URL".into(), fake.base_url());
    };
    let mut env = check_env(&endpoint, &bucket, "idle", &[]);
    with_api(&mut env);
    let r = env.run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.report()["databases"][0]["unchanged"], true);
    // Once the database is written, the same backup is stale.
    fake.execute("idle", "INSERT INTO t VALUES (2);");
    let r = env.run();
    assert_eq!(r.code, 1, "{}", r.stdout);
    // Without API access the age alone decides.
    let r = check_env(&endpoint, &bucket, "idle", &[]).run();
    assert_eq!(r.code, 1);
}

/// `(path, body)` of each request the heartbeat server received.
type Pings = Arc<Mutex<Vec<(String, String)>>>;

/// A one-thread HTTP server that records each request and answers 200.
fn heartbeat_server() -> (String, Pings) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ping/abc", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let mut length = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            log.lock()
                .unwrap()
                .push((path, String::from_utf8_lossy(&body).into_owned()));
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK");
        }
    });
    (url, seen)
}

#[test]
fn heartbeats_ping_on_success_and_fail_and_never_show_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app.sqlite");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1);")
        .unwrap();
    let (url, seen) = heartbeat_server();
    let env = |extra: &[(&str, &str)]| {
        let mut e = BTreeMap::new();
        e.insert(
            "D1_BACKUP_SQLITE_FILE".to_string(),
            src.display().to_string(),
        );
        e.insert(
            "D1_BACKUP_OUTPUT_DIR".to_string(),
            dir.path().join("out").display().to_string(),
        );
        e.insert("D1_BACKUP_HEARTBEAT_URL".to_string(), url.clone());
        for (k, v) in extra {
            e.insert(k.to_string(), v.to_string());
        }
        e
    };
    let secret_path = url.split_once("/ping").unwrap().1.to_string();
    let no_url = |r: &run::Run| {
        let text = r.all_text();
        assert!(
            !text.contains(&url) && !text.contains(&secret_path),
            "{text}"
        );
    };

    // Success: the URL, with the report as the body.
    let r = run::run(&["backup"], &env(&[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    no_url(&r);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "/ping/abc");
        let body: serde_json::Value = serde_json::from_str(&seen[0].1).unwrap();
        assert_eq!(body, r.report());
    }
    // Failure: `/fail`, with the failure's report.
    let r = run::run(
        &["restore", "app/backup-2020-01-01T00-00-00-000Z.sql.zst"],
        &env(&[(
            "D1_BACKUP_RESTORE_FILE",
            &dir.path().join("r.sqlite").display().to_string(),
        )]),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    no_url(&r);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].0, "/ping/abc/fail");
        let body: serde_json::Value = serde_json::from_str(&seen[1].1).unwrap();
        assert_eq!(body["success"], false);
    }
    // An unreachable heartbeat server: a warning, and the backup's exit code stands.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/ping/zzz", l.local_addr().unwrap())
    };
    let r = run::run(&["backup"], &env(&[("D1_BACKUP_HEARTBEAT_URL", &closed)]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("the heartbeat could not be delivered"),
        "{}",
        r.stderr
    );
    assert!(!r.all_text().contains(&closed), "{}", r.all_text());
    assert!(!r.all_text().contains("/ping/zzz"), "{}", r.all_text());
}
