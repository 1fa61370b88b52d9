//! The local store under hostile directory layouts: symbolic links planted beneath the root
//! are never followed, and nothing outside the root changes (same files, same contents, same
//! modification times).

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::Utc;
use d1_backup::store::local::LocalStore;
use d1_backup::store::{ObjectMeta, ObjectStore};
use tokio::io::AsyncReadExt;

/// What a tree looks like, without following links: path → (kind, contents or link target,
/// mtime, mode).
type Snapshot = BTreeMap<PathBuf, (&'static str, Vec<u8>, SystemTime, u32)>;

fn snapshot(dir: &Path) -> Snapshot {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Snapshot::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let (kind, body) = if ft.is_symlink() {
            (
                "link",
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
            ("dir", Vec::new())
        } else {
            ("file", std::fs::read(&p).unwrap())
        };
        out.insert(
            p.clone(),
            (kind, body, m.modified().unwrap(), m.permissions().mode()),
        );
    }
    out
}

/// A directory outside the store: files named like upload temp files and not, all old, and
/// a subdirectory.
fn outside(base: &Path) -> PathBuf {
    let dir = base.join("outside");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let old = SystemTime::now() - Duration::from_secs(30 * 86_400);
    for name in [
        "upload-0123456789abcdef",
        "upload-00000000000000ff",
        "precious.txt",
        "x",
        "x.json",
        "sub/upload-fedcba9876543210",
    ] {
        let p = dir.join(name);
        std::fs::write(&p, format!("outside {name}")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    dir
}

fn meta() -> ObjectMeta {
    ObjectMeta {
        content_type: "application/zstd".into(),
        metadata: BTreeMap::from([("timestamp".to_string(), "t".to_string())]),
    }
}

fn far_future() -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::days(365)
}

async fn read_all(store: &LocalStore, key: &str) -> anyhow::Result<Vec<u8>> {
    let mut body = store.get(key).await?;
    let mut out = Vec::new();
    body.read_to_end(&mut out).await?;
    Ok(out)
}

async fn upload(store: &LocalStore, key: &str, data: &'static [u8]) -> anyhow::Result<()> {
    let mut up = store.start_upload(key, &meta(), 5).await?;
    up.write_part(Bytes::from_static(data).into()).await?;
    up.complete().await.map(|_| ())
}

fn assert_link_error(what: &str, r: anyhow::Result<impl std::fmt::Debug>, key: &str) {
    let e = r.expect_err(what);
    let msg = format!("{e:#}");
    assert!(msg.contains("symbolic link"), "{what}: {msg}");
    assert!(
        msg.contains(&format!("{key:?}")),
        "{what} should name {key}: {msg}"
    );
}

#[tokio::test]
async fn a_linked_temp_directory_is_never_cleaned_up_or_written_through() {
    let base = tempfile::tempdir().unwrap();
    let out = outside(base.path());
    let root = base.path().join("store");
    std::fs::create_dir(&root).unwrap();
    symlink(&out, root.join(".d1-backup-tmp")).unwrap();
    let before = snapshot(&out);
    let store = LocalStore::new(&root);

    let e = store
        .abort_stale_uploads("", far_future())
        .await
        .expect_err("cleanup through a link");
    assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
    assert!(store.check().await.is_err());
    assert!(
        store
            .put("db/x", Bytes::from_static(b"new"), &meta())
            .await
            .is_err()
    );
    assert!(store.start_upload("db/y", &meta(), 5).await.is_err());

    assert_eq!(snapshot(&out), before);
    assert!(root.join(".d1-backup-tmp").is_symlink());
}

#[tokio::test]
async fn a_temp_directory_that_is_a_file_is_an_error() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("store");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join(".d1-backup-tmp"), b"not a directory").unwrap();
    let store = LocalStore::new(&root);
    assert!(store.abort_stale_uploads("", far_future()).await.is_err());
    assert_eq!(
        std::fs::read(root.join(".d1-backup-tmp")).unwrap(),
        b"not a directory"
    );
}

/// Metadata directories and files that are links: nothing is written (or read) through them,
/// and the object is not placed either.
#[tokio::test]
async fn linked_metadata_is_never_written_through() {
    // (what is a link to the outside directory or file, key)
    let cases = [
        (".d1-backup-meta", "db/x"),
        (".d1-backup-meta/db", "db/x"),
        (".d1-backup-meta/p/db", "p/db/x"),
        (".d1-backup-meta/db/x.json", "db/x"),
    ];
    for (link, key) in cases {
        let base = tempfile::tempdir().unwrap();
        let out = outside(base.path());
        let root = base.path().join("store");
        let store = LocalStore::new(&root);
        store.check().await.unwrap();
        let link_path = root.join(link);
        std::fs::create_dir_all(link_path.parent().unwrap()).unwrap();
        let target = if link.ends_with(".json") {
            out.join("x.json")
        } else {
            out.clone()
        };
        symlink(&target, &link_path).unwrap();
        let before = snapshot(&out);

        let r = store
            .put(key, Bytes::from_static(b"manifest"), &meta())
            .await;
        assert_link_error(&format!("put with {link} linked"), r, key);
        let r = upload(&store, key, b"backup").await;
        assert!(r.is_err(), "upload with {link} linked");
        let r = store.start_upload(key, &meta(), 5).await;
        assert!(r.is_err(), "start_upload with {link} linked");
        assert!(
            std::fs::symlink_metadata(root.join(key)).is_err(),
            "{link}: the object was placed although its metadata could not be written"
        );

        // An object placed by hand: reading its metadata through the link is an error, and
        // delete refuses (keeping the object, the link and its target).
        std::fs::create_dir_all(root.join(key).parent().unwrap()).unwrap();
        std::fs::write(root.join(key), b"by hand").unwrap();
        assert_link_error(
            &format!("head with {link} linked"),
            store.head(key).await,
            key,
        );
        let failures = store.delete(&[key.to_string()]).await.unwrap();
        assert_eq!(failures.len(), 1, "{link}: {failures:?}");
        assert_eq!(failures[0].key, key);
        assert!(
            failures[0].message.contains("symbolic link"),
            "{failures:?}"
        );
        assert_eq!(std::fs::read(root.join(key)).unwrap(), b"by hand");
        assert!(link_path.is_symlink(), "{link}");

        assert_eq!(snapshot(&out), before, "{link}");
    }
}

/// A key's directory (at any depth) is a link to the outside: every operation refuses.
#[tokio::test]
async fn a_linked_key_directory_is_never_followed() {
    // (directory that is a link, key beneath it)
    let cases = [("db", "db/x"), ("p/db", "p/db/x"), ("p", "p/db/x")];
    for (link, key) in cases {
        let base = tempfile::tempdir().unwrap();
        let out = outside(base.path());
        std::fs::create_dir_all(out.join("db")).unwrap();
        std::fs::write(out.join("db/x"), b"outside db/x").unwrap();
        let root = base.path().join("store");
        let store = LocalStore::new(&root);
        store.check().await.unwrap();
        let link_path = root.join(link);
        std::fs::create_dir_all(link_path.parent().unwrap()).unwrap();
        symlink(&out, &link_path).unwrap();
        let before = snapshot(&out);
        // What the key would reach through the link.
        assert!(root.join(key).exists(), "{link}");

        assert_link_error(&format!("get via {link}"), read_all(&store, key).await, key);
        assert_link_error(&format!("head via {link}"), store.head(key).await, key);
        let r = store.put(key, Bytes::from_static(b"new"), &meta()).await;
        assert_link_error(&format!("put via {link}"), r, key);
        assert_link_error(
            &format!("start_upload via {link}"),
            store.start_upload(key, &meta(), 5).await.map(|_| ()),
            key,
        );
        let failures = store
            .delete(&[key.to_string(), "elsewhere/y".to_string()])
            .await
            .unwrap();
        assert_eq!(failures.len(), 1, "{link}: {failures:?}");
        assert_eq!(failures[0].key, key);
        assert!(
            failures[0].message.contains("symbolic link"),
            "{failures:?}"
        );
        assert!(store.list("").await.unwrap().is_empty(), "{link}");
        assert_eq!(
            store.abort_stale_uploads("", far_future()).await.unwrap(),
            0
        );

        assert_eq!(snapshot(&out), before, "{link}");
        assert!(link_path.is_symlink(), "{link}");
        // No metadata was written for the key either.
        let meta_file = root.join(".d1-backup-meta").join(format!("{key}.json"));
        assert!(std::fs::symlink_metadata(meta_file).is_err(), "{link}");
    }
}

/// The object path itself is a link to a file outside.
#[tokio::test]
async fn a_linked_object_is_never_read_written_or_removed() {
    let base = tempfile::tempdir().unwrap();
    let out = outside(base.path());
    let root = base.path().join("store");
    let store = LocalStore::new(&root);
    store.check().await.unwrap();
    store
        .put("db/real", Bytes::from_static(b"real"), &meta())
        .await
        .unwrap();
    let link_path = root.join("db/x");
    symlink(out.join("precious.txt"), &link_path).unwrap();
    let before = snapshot(&out);

    assert_link_error("get", read_all(&store, "db/x").await, "db/x");
    assert_link_error("head", store.head("db/x").await, "db/x");
    let r = store.put("db/x", Bytes::from_static(b"new"), &meta()).await;
    assert_link_error("put", r, "db/x");
    assert_link_error(
        "start_upload",
        store.start_upload("db/x", &meta(), 5).await.map(|_| ()),
        "db/x",
    );
    let failures = store
        .delete(&["db/x".to_string(), "db/real".to_string()])
        .await
        .unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].key, "db/x");
    assert!(
        failures[0].message.contains("symbolic link"),
        "{failures:?}"
    );
    // The regular object beside it is deleted as usual.
    assert!(store.head("db/real").await.unwrap().is_none());
    assert!(
        std::fs::symlink_metadata(root.join(".d1-backup-meta/db/real.json")).is_err(),
        "metadata of a deleted object is removed"
    );
    let listed: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(listed.is_empty(), "{listed:?}");

    assert!(link_path.is_symlink());
    assert_eq!(snapshot(&out), before);
}

/// An upload started before a link was planted in its way still refuses to complete.
#[tokio::test]
async fn an_upload_does_not_complete_through_a_link_planted_meanwhile() {
    // (path that becomes a link to the outside directory, key)
    let cases = [("db", "db/x"), (".d1-backup-meta", "db/x")];
    for (link, key) in cases {
        let base = tempfile::tempdir().unwrap();
        let out = outside(base.path());
        let root = base.path().join("store");
        let store = LocalStore::new(&root);
        store.check().await.unwrap();
        let before = snapshot(&out);
        let mut up = store.start_upload(key, &meta(), 5).await.unwrap();
        up.write_part(Bytes::from_static(b"backup").into())
            .await
            .unwrap();
        symlink(&out, root.join(link)).unwrap();
        let e = up.complete().await.expect_err(link);
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        assert_eq!(snapshot(&out), before, "{link}");
        // The temp file is gone too.
        let left = std::fs::read_dir(root.join(".d1-backup-tmp"))
            .unwrap()
            .count();
        assert_eq!(left, 0, "{link}");
    }
}

/// Other things in odd places: a file where a key's directory should be.
#[tokio::test]
async fn a_file_where_a_directory_belongs_is_an_error() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("store");
    let store = LocalStore::new(&root);
    store.check().await.unwrap();
    std::fs::write(root.join("db"), b"a file").unwrap();
    let e = store
        .put("db/x", Bytes::from_static(b"x"), &meta())
        .await
        .expect_err("put under a file");
    assert!(format!("{e:#}").contains("not a directory"), "{e:#}");
    assert!(store.get("db/x").await.is_err());
    assert_eq!(std::fs::read(root.join("db")).unwrap(), b"a file");
}
