//! Retention against a real S3 server: exactly the expected backups go, nothing else is
//! touched, dry runs change nothing, a failed backup holds all deletions.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use d1_backup::keys::{backup_key, manifest_key};
use d1_backup::manifest::Manifest;
use d1_backup::store::{ObjectMeta, ObjectStore};

use crate::support::{self, block_on, run};

const PREFIX: &str = "ret/";
const DB: &str = "shop";

fn env(endpoint: &str, bucket: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("D1_DATABASE".into(), DB.into());
    env.insert("R2_BUCKET".into(), bucket.into());
    env.insert("R2_ENDPOINT".into(), endpoint.into());
    env.insert("R2_ACCESS_KEY_ID".into(), support::weed::ACCESS_KEY.into());
    env.insert(
        "R2_SECRET_ACCESS_KEY".into(),
        support::weed::SECRET_KEY.into(),
    );
    env.insert("D1_BACKUP_PREFIX".into(), PREFIX.into());
    for (k, v) in extra {
        env.insert(
            format!("D1_BACKUP_{}", k.to_ascii_uppercase().replace('-', "_")),
            v.to_string(),
        );
    }
    env
}

/// 400 backup times over 13 months (one every 23.7 h), newest last.
fn times() -> Vec<DateTime<Utc>> {
    let start = Utc.with_ymd_and_hms(2025, 10, 3, 1, 17, 0).unwrap();
    (0..400)
        .map(|i| start + Duration::seconds(i * 85_320))
        .collect()
}

/// Independent oracle for keep-daily 7, keep-weekly 4, keep-monthly 12: the newest backup
/// of each of the N most recent periods that have one.
fn expected_kept(times: &[DateTime<Utc>]) -> BTreeSet<DateTime<Utc>> {
    let mut newest_first = times.to_vec();
    newest_first.sort_by(|a, b| b.cmp(a));
    let mut kept = BTreeSet::new();
    type Period = fn(&DateTime<Utc>) -> String;
    let rules: [(usize, Period); 3] = [
        (7, |t| t.format("%Y-%m-%d").to_string()),
        (4, |t| {
            format!("{}-W{}", t.iso_week().year(), t.iso_week().week())
        }),
        (12, |t| t.format("%Y-%m").to_string()),
    ];
    for (n, period) in rules {
        let mut seen: Vec<String> = Vec::new();
        for t in &newest_first {
            let p = period(t);
            if !seen.contains(&p) {
                if seen.len() == n {
                    break;
                }
                seen.push(p);
                kept.insert(*t);
            }
        }
    }
    kept
}

fn put_all(store: &dyn ObjectStore, objects: Vec<(String, Vec<u8>)>) {
    let meta = ObjectMeta::default();
    block_on(async {
        for chunk in objects.chunks(32) {
            let puts = chunk
                .iter()
                .map(|(k, v)| store.put(k, Bytes::from(v.clone()), &meta));
            for r in futures::future::join_all(puts).await {
                r.unwrap();
            }
        }
    });
}

fn seed(store: &dyn ObjectStore) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut objects = Vec::new();
    let mut backups = Vec::new();
    for t in times() {
        let key = backup_key(PREFIX, DB, t, ".sql.zst");
        // A manifest that vouches for this backup: its key, its database, its time.
        let manifest = Manifest {
            key: key.clone(),
            timestamp: d1_backup::manifest::rfc3339(t),
            database: d1_backup::manifest::DatabaseRef {
                id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
                name: DB.into(),
                source: "d1".into(),
            },
            ..Manifest::default()
        };
        objects.push((key.clone(), b"zstd bytes".to_vec()));
        objects.push((manifest_key(&key), serde_json::to_vec(&manifest).unwrap()));
        backups.push(key);
    }
    let foreign: Vec<String> = vec![
        format!("{PREFIX}{DB}/notes.txt"),
        format!("{PREFIX}other-db/backup-2025-10-01T00-00-00-000Z.sql.zst"),
        format!("{PREFIX}{DB}/backup-not-a-time.sql.zst"),
        format!("{PREFIX}{DB}/sub/backup-2025-10-01T00-00-00-000Z.sql.zst"),
        "unrelated/backup-2025-10-01T00-00-00-000Z.sql.zst".to_string(),
    ];
    for k in &foreign {
        objects.push((k.clone(), b"not ours".to_vec()));
    }
    // Interrupted uploads: objects without manifests, days old.
    let incomplete: Vec<String> = [3, 50, 200]
        .iter()
        .map(|d| backup_key(PREFIX, DB, times()[*d] + Duration::minutes(7), ".sql.zst"))
        .collect();
    for k in &incomplete {
        objects.push((k.clone(), b"half".to_vec()));
    }
    put_all(store, objects);
    (backups, foreign, incomplete)
}

fn all_keys(store: &dyn ObjectStore) -> BTreeSet<String> {
    support::keys(store, "").into_iter().collect()
}

#[test]
fn gfs_pruning_deletes_exactly_the_expected_backups() {
    let Some((endpoint, bucket)) = support::bucket("retention") else {
        return;
    };
    let store = support::s3_store(&endpoint, &bucket);
    let (backups, foreign, incomplete) = seed(&store);
    let policy: &[(&str, &str)] = &[
        ("keep-daily", "7"),
        ("keep-weekly", "4"),
        ("keep-monthly", "12"),
    ];

    // A dry run changes nothing, and says what it would delete.
    let before = all_keys(&store);
    let mut dry = policy.to_vec();
    dry.push(("dry-run", "true"));
    let r = run::run(&["prune"], &env(&endpoint, &bucket, &dry));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(all_keys(&store), before, "a dry run changed the bucket");
    let would = r.report()["retention"]["deleted"].as_u64().unwrap();

    // The real run.
    let r = run::run(&["prune"], &env(&endpoint, &bucket, policy));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report();
    let kept_times = expected_kept(&times());
    let expected: BTreeSet<String> = backups
        .iter()
        .zip(times())
        .filter(|(_, t)| kept_times.contains(t))
        .flat_map(|(k, _)| [k.clone(), manifest_key(k)])
        .chain(foreign.iter().cloned())
        .collect();
    let after = all_keys(&store);
    assert_eq!(
        after, expected,
        "remaining objects differ from the expected set"
    );
    assert!(
        foreign.iter().all(|k| after.contains(k)),
        "a foreign object was deleted"
    );
    assert!(
        incomplete.iter().all(|k| !after.contains(k)),
        "incomplete uploads stay"
    );
    assert_eq!(
        report["retention"]["kept"].as_u64().unwrap() as usize,
        kept_times.len()
    );
    assert_eq!(report["retention"]["deleted"].as_u64().unwrap(), would);
    assert_eq!(
        would as usize,
        backups.len() - kept_times.len() + incomplete.len()
    );
    let deleted_keys: Vec<String> =
        serde_json::from_value(report["retention"]["deletedKeys"].clone()).unwrap();
    assert_eq!(deleted_keys.len() as u64, would);

    // A second run finds nothing more to delete.
    let r = run::run(&["prune"], &env(&endpoint, &bucket, policy));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["retention"]["deleted"], 0);
    assert_eq!(all_keys(&store), expected);

    // list: newest first, with what the manifests say.
    let r = run::run(&["list", "--json"], &env(&endpoint, &bucket, &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let listed: Vec<serde_json::Value> =
        serde_json::from_value(r.report()["backups"].clone()).unwrap();
    assert_eq!(listed.len(), kept_times.len());
    let listed_times: Vec<&str> = listed.iter().map(|b| b["time"].as_str().unwrap()).collect();
    let mut sorted = listed_times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(listed_times, sorted);
}

#[test]
fn a_failed_backup_holds_the_prune_step() {
    let Some((endpoint, bucket)) = support::bucket("retentionhold") else {
        return;
    };
    let store = support::s3_store(&endpoint, &bucket);
    seed(&store);
    let before = all_keys(&store);
    // The backup step fails (its database answers 500s); under Actions it records that.
    let fake = support::fake_d1();
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), DB);
    fake.add_database(DB, &db);
    fake.set_faults(fake_d1::Faults {
        failing_databases: vec![DB.into()],
        ..Default::default()
    });
    let gh_env = dir.path().join("github_env");
    std::fs::write(&gh_env, "").unwrap();
    let mut backup_env = support::cli_env(&fake, DB, &endpoint, &bucket);
    backup_env.insert("D1_BACKUP_PREFIX".into(), PREFIX.into());
    backup_env.insert("D1_BACKUP_KEEP_DAILY".into(), "1".into());
    backup_env.insert("GITHUB_ENV".into(), gh_env.display().to_string());
    let r = run::run(&["backup"], &backup_env);
    assert_ne!(r.code, 0);
    assert_eq!(
        all_keys(&store),
        before,
        "a failed backup with a policy deleted something"
    );
    // The next step (`prune`) gets the job's environment, including what the backup recorded.
    let recorded = support::gha::parse_outputs(&std::fs::read_to_string(&gh_env).unwrap()).unwrap();
    assert_eq!(recorded["D1_BACKUP_LAST_RESULT"], "failure");
    let mut prune_env = env(&endpoint, &bucket, &[("keep-daily", "1")]);
    prune_env.extend(recorded);
    let r = run::run(&["prune"], &prune_env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report()["retention"]["deleted"], 0);
    assert!(
        r.report()["retention"]["hold"]
            .as_str()
            .unwrap()
            .contains("failed")
    );
    assert_eq!(all_keys(&store), before);
}

#[test]
fn a_backup_with_a_policy_prunes_after_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES(1);")
        .unwrap();
    let out = dir.path().join("out");
    let mut e = BTreeMap::new();
    e.insert(
        "D1_BACKUP_SQLITE_FILE".to_string(),
        db.display().to_string(),
    );
    e.insert(
        "D1_BACKUP_OUTPUT_DIR".to_string(),
        out.display().to_string(),
    );
    e.insert("D1_BACKUP_KEEP_LAST".to_string(), "2".to_string());
    let mut keys = Vec::new();
    for _ in 0..4 {
        let r = run::run(&[], &e);
        assert_eq!(r.code, 0, "{}", r.stderr);
        keys.push(r.report()["key"].as_str().unwrap().to_string());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let store = d1_backup::store::local::LocalStore::new(&out);
    let left: Vec<String> = support::keys(&store, "")
        .into_iter()
        .filter(|k| k.ends_with(".sql.zst"))
        .collect();
    assert_eq!(left, keys[2..].to_vec());
}
