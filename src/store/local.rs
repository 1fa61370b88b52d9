//! [`ObjectStore`] on a local directory.
//!
//! Keys map to paths under the root. Uploads are written to a temp file in
//! `<root>/.d1-backup-tmp/`, fsynced, and renamed into place on completion (the same
//! filesystem, so the rename is atomic); abort removes the temp file. Object metadata lives
//! beside the data in `<root>/.d1-backup-meta/<key>.json`. Hidden directories are never
//! listed.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncWriteExt;

use super::{Body, DeleteFailure, ObjectInfo, ObjectMeta, ObjectStore, Part, Upload, Uploaded};

const TMP_DIR: &str = ".d1-backup-tmp";
const META_DIR: &str = ".d1-backup-meta";

/// A directory used as an object store.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a key; rejects keys that would leave the root.
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        if key.is_empty()
            || key.ends_with('/')
            || rel.components().any(|c| !matches!(c, Component::Normal(_)))
            || key.split('/').any(|seg| {
                seg.is_empty() || seg == "." || seg == ".." || seg.starts_with(".d1-backup-")
            })
        {
            bail!("invalid object key {key:?} for a local store");
        }
        Ok(self.root.join(rel))
    }

    fn meta_path(&self, key: &str) -> Result<PathBuf> {
        self.path_of(key)?;
        Ok(self.root.join(META_DIR).join(format!("{key}.json")))
    }

    async fn write_meta(&self, key: &str, meta: &ObjectMeta) -> Result<()> {
        let path = self.meta_path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let doc = serde_json::json!({
            "content_type": meta.content_type,
            "metadata": meta.metadata,
        });
        tokio::fs::write(&path, serde_json::to_vec_pretty(&doc)?).await?;
        Ok(())
    }

    async fn read_meta(&self, key: &str) -> ObjectMeta {
        let Ok(path) = self.meta_path(key) else {
            return ObjectMeta::default();
        };
        let Ok(text) = tokio::fs::read(&path).await else {
            return ObjectMeta::default();
        };
        let doc: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        ObjectMeta {
            content_type: doc["content_type"].as_str().unwrap_or("").to_string(),
            metadata: serde_json::from_value::<BTreeMap<String, String>>(doc["metadata"].clone())
                .unwrap_or_default(),
        }
    }

    async fn temp_file(&self) -> Result<(PathBuf, tokio::fs::File)> {
        let dir = self.root.join(TMP_DIR);
        tokio::fs::create_dir_all(&dir)
            .await
            .with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("upload-{:016x}", rand::random::<u64>()));
        let file = tokio::fs::File::create(&path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        Ok((path, file))
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn check(&self) -> Result<()> {
        tokio::fs::create_dir_all(&self.root)
            .await
            .with_context(|| {
                format!("input `output-dir`: cannot create {}", self.root.display())
            })?;
        let (path, file) = self.temp_file().await.with_context(|| {
            format!(
                "input `output-dir`: {} is not writable",
                self.root.display()
            )
        })?;
        drop(file);
        tokio::fs::remove_file(&path).await?;
        Ok(())
    }

    async fn start_upload(
        &self,
        key: &str,
        meta: &ObjectMeta,
        _part_size: u64,
    ) -> Result<Box<dyn Upload>> {
        let dest = self.path_of(key)?;
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            bail!("object {key:?} already exists; backups are never overwritten");
        }
        let (tmp, file) = self.temp_file().await?;
        Ok(Box::new(LocalUpload {
            store: self.clone(),
            key: key.to_string(),
            meta: meta.clone(),
            dest,
            tmp,
            file: Some(file),
            size: 0,
            parts: 0,
        }))
    }

    async fn put(&self, key: &str, data: Bytes, meta: &ObjectMeta) -> Result<()> {
        let dest = self.path_of(key)?;
        let (tmp, mut file) = self.temp_file().await?;
        let result: Result<()> = async {
            file.write_all(&data).await?;
            file.sync_all().await?;
            drop(file);
            if let Some(dir) = dest.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::rename(&tmp, &dest).await?;
            self.write_meta(key, meta).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.with_context(|| format!("writing {}", dest.display()))
    }

    async fn get(&self, key: &str) -> Result<Body> {
        let path = self.path_of(key)?;
        let file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("object {key:?} not found in {}", self.root.display()))?;
        Ok(Box::pin(file))
    }

    async fn head(&self, key: &str) -> Result<Option<(ObjectInfo, ObjectMeta)>> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some((
                ObjectInfo {
                    key: key.to_string(),
                    size: m.len(),
                    last_modified: m.modified().ok().map(DateTime::<Utc>::from),
                },
                self.read_meta(key).await,
            ))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root, &prefix, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await?
    }

    async fn delete(&self, keys: &[String]) -> Result<Vec<DeleteFailure>> {
        let mut failures = Vec::new();
        for key in keys {
            let result = async {
                let path = self.path_of(key)?;
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
                let _ = tokio::fs::remove_file(self.meta_path(key)?).await;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                failures.push(DeleteFailure {
                    key: key.clone(),
                    message: format!("{e:#}"),
                });
            }
        }
        Ok(failures)
    }

    async fn abort_stale_uploads(&self, _prefix: &str, older_than: DateTime<Utc>) -> Result<usize> {
        let dir = self.root.join(TMP_DIR);
        let mut n = 0;
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            return Ok(0);
        };
        while let Some(e) = entries.next_entry().await? {
            let stale = e
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .is_some_and(|t| DateTime::<Utc>::from(t) < older_than);
            if stale && tokio::fs::remove_file(e.path()).await.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<ObjectInfo>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".d1-backup-") {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(root, &path, prefix, out)?;
        } else if ft.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if rel.starts_with(prefix) {
                let m = entry.metadata()?;
                out.push(ObjectInfo {
                    key: rel,
                    size: m.len(),
                    last_modified: m.modified().ok().map(DateTime::<Utc>::from),
                });
            }
        }
    }
    Ok(())
}

struct LocalUpload {
    store: LocalStore,
    key: String,
    meta: ObjectMeta,
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<tokio::fs::File>,
    size: u64,
    parts: usize,
}

#[async_trait]
impl Upload for LocalUpload {
    async fn write_part(&mut self, part: Part) -> Result<()> {
        let data = part.data;
        let file = self.file.as_mut().context("upload already finished")?;
        file.write_all(&data)
            .await
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        self.size += data.len() as u64;
        self.parts += 1;
        Ok(())
    }

    async fn complete(mut self: Box<Self>) -> Result<Uploaded> {
        let result: Result<()> = async {
            let mut file = self.file.take().context("upload already finished")?;
            file.flush().await?;
            file.sync_all().await?;
            drop(file);
            if let Some(dir) = self.dest.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            if tokio::fs::try_exists(&self.dest).await.unwrap_or(false) {
                bail!(
                    "object {:?} already exists; backups are never overwritten",
                    self.key
                );
            }
            tokio::fs::rename(&self.tmp, &self.dest).await?;
            if let Some(dir) = self.dest.parent()
                && let Ok(d) = std::fs::File::open(dir)
            {
                let _ = d.sync_all();
            }
            self.store.write_meta(&self.key, &self.meta).await
        }
        .await;
        match result {
            Ok(()) => Ok(Uploaded {
                size: self.size,
                parts: self.parts,
            }),
            Err(e) => {
                let _ = tokio::fs::remove_file(&self.tmp).await;
                Err(e.context(format!("completing {}", self.dest.display())))
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        drop(self.file.take());
        match tokio::fs::remove_file(&self.tmp).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", self.tmp.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        let s = LocalStore::new("/tmp/x");
        for bad in [
            "",
            "/abs",
            "../up",
            "a/../../b",
            "a/",
            ".d1-backup-tmp/x",
            "a/./b",
        ] {
            assert!(s.path_of(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            s.path_of("a/b.sql").unwrap(),
            PathBuf::from("/tmp/x/a/b.sql")
        );
    }
}
