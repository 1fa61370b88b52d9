//! Shared test support: the S3 server, the fake D1, fixtures, comparisons, and running the
//! binary the way the Actions runner does.

#![allow(dead_code)]

pub mod compare;
pub mod engine;
pub mod fixture;
pub mod gha;
pub mod hostile_db;
pub mod run;
pub mod s3proxy;
pub mod weed;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use d1_backup::read::load::{LoadRules, load};

use d1_backup::store::ObjectStore;
use d1_backup::store::s3::ChecksumMode;
use d1_backup::store::s3::S3Store;
use fake_d1::{FakeD1, Options, Token};
use sha2::{Digest, Sha256};

/// A distinctive API token (40 characters, like Cloudflare's) and its id.
pub const TOKEN: &str = "d1bTOKEN-9f8e7d6c5b4a3210-ZYXWVUTSRQPO9";
pub const TOKEN_ID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
pub const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

/// The R2 secret Cloudflare derives from a token: hex SHA-256 of its value.
pub fn derived_secret(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fake D1 that accepts [`TOKEN`].
pub fn fake_d1() -> FakeD1 {
    fake_d1_with(Options::default())
}

pub fn fake_d1_with(mut options: Options) -> FakeD1 {
    options.account_id = ACCOUNT.to_string();
    options.tokens = vec![Token {
        value: TOKEN.to_string(),
        id: TOKEN_ID.to_string(),
    }];
    FakeD1::start(options)
}

/// A fresh bucket on the shared S3 server; `None` when S3 tests are skipped.
pub fn bucket(label: &str) -> Option<(String, String)> {
    let weed = weed::weed()?;
    let name = format!(
        "{}-{:08x}",
        label.to_ascii_lowercase().replace('_', "-"),
        rand::random::<u32>()
    );
    let store = s3_store(&weed.endpoint(), &name);
    block_on(async {
        store
            .client()
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket");
    });
    Some((weed.endpoint(), name))
}

/// The product's own S3 store pointed at the test server (used to inspect buckets).
pub fn s3_store(endpoint: &str, bucket: &str) -> S3Store {
    S3Store::new(
        bucket,
        endpoint,
        weed::ACCESS_KEY,
        weed::SECRET_KEY,
        ChecksumMode::WhenRequired,
    )
}

/// Run a future to completion on a fresh runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Every key in a store under a prefix.
pub fn keys(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    block_on(store.list(prefix))
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// The bytes of an object.
pub fn get_bytes(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    block_on(async {
        let mut body = store.get(key).await.expect("get");
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut body, &mut out)
            .await
            .expect("read");
        out
    })
}

/// Decompress a stored backup (zstd or plain).
pub fn sql_of(object: &[u8], key: &str) -> Vec<u8> {
    if key.ends_with(".zst") {
        zstd::decode_all(object).expect("zstd")
    } else {
        object.to_vec()
    }
}

/// Store handle as a trait object.
pub fn arc_store(s: S3Store) -> Arc<dyn ObjectStore> {
    Arc::new(s)
}

/// A temp directory holding a copy of `src` (the fake opens files read-write).
pub fn copy_db(src: &Path, dir: &Path, name: &str) -> std::path::PathBuf {
    let dest = dir.join(format!("{name}.sqlite"));
    std::fs::copy(src, &dest).expect("copy db");
    dest
}

/// The fixture database, built once per test binary (200,000 rows in `many`).
pub fn fixture_db() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        fixture::build(&d.path().join("fixture.sqlite"), 200_000);
        d
    });
    dir.path().join("fixture.sqlite")
}

/// Environment of a CLI run against the fake D1 and the test S3 server.
pub fn cli_env(
    fake: &fake_d1::FakeD1,
    database: &str,
    endpoint: &str,
    bucket: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("CLOUDFLARE_API_TOKEN".into(), TOKEN.into());
    env.insert("CLOUDFLARE_ACCOUNT_ID".into(), ACCOUNT.into());
    env.insert("CLOUDFLARE_API_BASE_URL".into(), fake.base_url());
    env.insert("D1_DATABASE".into(), database.into());
    env.insert("R2_BUCKET".into(), bucket.into());
    env.insert("R2_ENDPOINT".into(), endpoint.into());
    env.insert("R2_ACCESS_KEY_ID".into(), weed::ACCESS_KEY.into());
    env.insert("R2_SECRET_ACCESS_KEY".into(), weed::SECRET_KEY.into());
    env
}

/// Multipart uploads still open in `bucket`.
pub fn open_uploads(endpoint: &str, bucket: &str) -> usize {
    let store = s3_store(endpoint, bucket);
    block_on(async {
        store
            .client()
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap()
            .uploads()
            .len()
    })
}

/// The backup a run reported (`key`) restores, under D1's rules, to exactly `source`.
pub fn assert_stored_backup_restores(
    run: &run::Run,
    endpoint: &str,
    bucket: &str,
    source: &Path,
    scratch: &Path,
) {
    let key = run.report()["key"].as_str().unwrap().to_string();
    let store = s3_store(endpoint, bucket);
    let sql = sql_of(&get_bytes(&store, &key), &key);
    let restored = scratch.join("restored-from-store.sqlite");
    restore_d1_rules(&sql, &restored);
    compare::assert_same(source, &restored);
}

/// Restore SQL into a new SQLite file under D1's rules (statement limit, FKs, one transaction).
pub fn restore_d1_rules(sql: &[u8], path: &Path) -> d1_backup::read::load::LoadStats {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    load(&mut conn, BufReader::new(sql), LoadRules::d1()).expect("load under D1 rules")
}
