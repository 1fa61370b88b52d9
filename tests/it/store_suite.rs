//! One conformance suite for every object store: the local directory always, and the real
//! S3 server (in both checksum modes).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use d1_backup::store::local::LocalStore;
use d1_backup::store::parts::MIB;
use d1_backup::store::s3::ChecksumMode;
use d1_backup::store::s3::S3Store;
use d1_backup::store::{Error as StoreError, ErrorKind, ObjectMeta, ObjectStore};

use crate::support::{self, block_on};

fn meta() -> ObjectMeta {
    ObjectMeta {
        content_type: "application/zstd".into(),
        metadata: BTreeMap::from([(
            "timestamp".to_string(),
            "2026-01-01T00:00:00.000Z".to_string(),
        )]),
    }
}

fn data(n: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

async fn read_all(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    let mut body = store.get(key).await.unwrap();
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut body, &mut out)
        .await
        .unwrap();
    out
}

async fn conformance(store: Arc<dyn ObjectStore>) {
    store.check().await.unwrap();
    // Multipart: two full parts and a short last one.
    let parts = [
        data(5 * MIB as usize, 1),
        data(5 * MIB as usize, 2),
        data(123_456, 3),
    ];
    let mut up = store
        .start_upload("db/backup-a.sql.zst", &meta(), 5 * MIB)
        .await
        .unwrap();
    for p in &parts {
        up.write_part(p.clone().into()).await.unwrap();
    }
    let done = up.complete().await.unwrap();
    assert_eq!(done.parts, 3);
    let expected: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
    assert_eq!(done.size, expected.len() as u64);
    assert_eq!(
        read_all(store.as_ref(), "db/backup-a.sql.zst").await,
        expected
    );
    let (info, m) = store.head("db/backup-a.sql.zst").await.unwrap().unwrap();
    assert_eq!(info.size, expected.len() as u64);
    assert_eq!(m, meta());

    // Single part.
    let mut up = store
        .start_upload("db/backup-b.sql.zst", &meta(), 5 * MIB)
        .await
        .unwrap();
    up.write_part(data(1000, 9).into()).await.unwrap();
    assert_eq!(up.complete().await.unwrap().parts, 1);

    // Uploads never overwrite.
    let attempt = async {
        let mut u = store
            .start_upload("db/backup-b.sql.zst", &meta(), 5 * MIB)
            .await?;
        u.write_part(data(10, 1).into()).await?;
        u.complete().await
    }
    .await;
    let err = attempt.expect_err("overwrote an existing backup");
    assert_eq!(
        err.downcast_ref::<StoreError>().map(|e| e.kind),
        Some(ErrorKind::AlreadyExists),
        "{err:#}"
    );
    assert_eq!(
        read_all(store.as_ref(), "db/backup-b.sql.zst").await,
        data(1000, 9).to_vec()
    );

    // Aborted uploads leave nothing (single-part and multipart).
    for n in [1usize, 3] {
        let mut up = store
            .start_upload("db/backup-c.sql.zst", &meta(), 5 * MIB)
            .await
            .unwrap();
        for i in 0..n {
            up.write_part(data(5 * MIB as usize, i as u8).into())
                .await
                .unwrap();
        }
        up.abort().await.unwrap();
        assert!(store.head("db/backup-c.sql.zst").await.unwrap().is_none());
    }

    // put replaces; list is sorted and scoped by prefix; get of a missing key fails.
    store
        .put("db/x.manifest.json", Bytes::from_static(b"{1}"), &meta())
        .await
        .unwrap();
    store
        .put("db/x.manifest.json", Bytes::from_static(b"{2}"), &meta())
        .await
        .unwrap();
    assert_eq!(read_all(store.as_ref(), "db/x.manifest.json").await, b"{2}");
    store
        .put("other/y", Bytes::from_static(b"y"), &meta())
        .await
        .unwrap();
    let listed: Vec<String> = store
        .list("db/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        listed,
        vec![
            "db/backup-a.sql.zst",
            "db/backup-b.sql.zst",
            "db/x.manifest.json"
        ]
    );
    assert!(store.get("db/missing").await.is_err());
    assert!(store.head("db/missing").await.unwrap().is_none());

    // delete removes, reports nothing for missing keys.
    let failures = store
        .delete(&[
            "db/backup-a.sql.zst".to_string(),
            "db/never-existed".to_string(),
        ])
        .await
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(store.head("db/backup-a.sql.zst").await.unwrap().is_none());
}

#[test]
fn local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    block_on(conformance(Arc::new(LocalStore::new(
        dir.path().join("store"),
    ))));
}

#[test]
fn s3_store_conforms_in_both_checksum_modes() {
    for mode in [ChecksumMode::WhenRequired, ChecksumMode::WhenSupported] {
        let Some((endpoint, bucket)) = support::bucket("suite") else {
            return;
        };
        let store = S3Store::new(
            &bucket,
            &endpoint,
            support::weed::ACCESS_KEY,
            support::weed::SECRET_KEY,
            mode,
        );
        block_on(conformance(Arc::new(store)));
    }
}
