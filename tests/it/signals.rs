//! SIGTERM (a cancelled workflow run) during an upload: the binary aborts the multipart
//! upload and exits non-zero quickly, leaving no object, no manifest, no open upload.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, cli_env};

/// Rows that compress poorly, so the backup needs several parts.
pub(crate) fn noisy_db(path: &std::path::Path, rows: u64) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE noise(id INTEGER PRIMARY KEY, a TEXT, b BLOB)")
        .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    let mut x = 0x2545F4914F6CDD1Du64;
    {
        let mut st = tx.prepare("INSERT INTO noise VALUES(?1, ?2, ?3)").unwrap();
        for id in 0..rows {
            let mut bytes = Vec::with_capacity(48);
            for _ in 0..6 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.extend_from_slice(&x.to_le_bytes());
            }
            st.execute(rusqlite::params![
                id as i64,
                hex::encode(&bytes[..24]),
                &bytes[24..]
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Start a backup and return once its multipart upload has begun (the moment to interrupt).
pub(crate) fn spawn_until_upload_opens(
    env: &std::collections::BTreeMap<String, String>,
    endpoint: &str,
    bucket: &str,
    output: fn() -> Stdio,
) -> std::process::Child {
    let mut child = Command::new(crate::support::run::bin())
        .env_clear()
        .envs(env)
        .stdout(output())
        .stderr(output())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while support::open_uploads(endpoint, bucket) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before a multipart upload began"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no multipart upload started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn sigterm_aborts_the_upload() {
    let Some((endpoint, bucket)) = support::bucket("sigterm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("noise.sqlite");
    noisy_db(&db, 300_000);
    // Slow requests keep the dump going long after the first part is uploaded.
    let fake = support::fake_d1_with(fake_d1::Options {
        latency: Duration::from_millis(400),
        ..Default::default()
    });
    fake.add_database("noise", &db);
    let mut env = cli_env(&fake, "noise", &endpoint, &bucket);
    env.insert("D1_BACKUP_COMPRESSION_LEVEL".into(), "1".into());
    let mut child = spawn_until_upload_opens(&env, &endpoint, &bucket, Stdio::piped);
    let store = support::s3_store(&endpoint, &bucket);
    let open_uploads = || support::open_uploads(&endpoint, &bucket);
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let sent = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "did not exit within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert_eq!(open_uploads(), 0, "a multipart upload was left open");
    assert!(
        support::keys(&store, "").is_empty(),
        "an object was left behind"
    );
}
