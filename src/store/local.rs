//! [`ObjectStore`] on a local directory.
//!
//! Keys map to paths under the root. Uploads are written to a temp file in
//! `<root>/.d1-backup-tmp/`, fsynced, and renamed into place on completion (the same
//! filesystem, so the rename is atomic); abort removes the temp file. Object metadata lives
//! beside the data in `<root>/.d1-backup-meta/<key>.json`, written to a temp file in the same
//! directory and renamed over the old one. Hidden directories are never listed.
//!
//! **Symbolic links and permissions.** The root is the user's choice and may itself be a
//! symbolic link; nothing beneath it is ever followed. Every path the store touches (objects,
//! metadata, temp files and each directory between the root and them) is resolved one
//! component at a time with `lstat`: a symbolic link, or anything but a directory where a
//! directory is expected, is an error naming the key and the path. Files are opened for
//! reading with `O_NOFOLLOW` and created with `O_CREAT | O_EXCL`, so a link where an object
//! or its metadata should be is never read or written through; `delete` removes only regular
//! files, and `abort_stale_uploads` removes only regular files whose names the store itself
//! gives its temp files, and only from a real `.d1-backup-tmp` directory. Backups are private
//! by default: files are created `0600` and directories `0700` (less the umask); a rename
//! keeps the mode, and an existing root is never `chmod`ed. (The checks are made path by
//! path before each use: they stop links planted beforehand, not one swapped in while an
//! operation runs.)

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncWriteExt;

use super::{
    Body, DeleteFailure, Error as StoreError, ErrorKind as StoreErrorKind, ObjectInfo, ObjectMeta,
    ObjectStore, Part, Upload, Uploaded,
};

/// Upload temp files, directly beneath the root.
const TMP_DIR: &str = ".d1-backup-tmp";
/// Object metadata, mirroring the key's directories beneath the root.
const META_DIR: &str = ".d1-backup-meta";
/// Names in [`TMP_DIR`]: this prefix and 16 lower-case hex digits (see [`upload_name`]).
const UPLOAD_PREFIX: &str = "upload-";
/// Temp files in a metadata directory. No key segment may start with `.d1-backup-`, so these
/// never collide with a metadata file or directory.
const META_TMP_PREFIX: &str = ".d1-backup-tmp-";
/// Mode of every directory the store creates (the umask may remove more).
const DIR_MODE: u32 = 0o700;
/// Mode of every file the store creates (the umask may remove more).
const FILE_MODE: u32 = 0o600;
/// How many random names to try before giving up on creating a temp file.
const TEMP_ATTEMPTS: usize = 8;

/// The name of an upload temp file: the only names `abort_stale_uploads` removes.
fn upload_name(n: u64) -> String {
    format!("{UPLOAD_PREFIX}{n:016x}")
}

/// Whether `name` is one [`upload_name`] gives.
fn is_upload_name(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|s| s.strip_prefix(UPLOAD_PREFIX))
        .is_some_and(|hex| {
            hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// What is at a path, without following a symbolic link there.
enum Found {
    Missing,
    File(Metadata),
    Dir,
    Link,
    Other,
}

fn lstat(path: &Path) -> Result<Found> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Ok(Found::Link),
        Ok(m) if m.is_file() => Ok(Found::File(m)),
        Ok(m) if m.is_dir() => Ok(Found::Dir),
        Ok(_) => Ok(Found::Other),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Found::Missing),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", path.display())),
    }
}

fn link_error(path: &Path) -> anyhow::Error {
    anyhow!(
        "{} is a symbolic link; the local store never follows symbolic links beneath its root",
        path.display()
    )
}

/// A regular file at `path`, or nothing there; a link or anything else is an error.
fn file_or_missing(path: &Path) -> Result<Option<Metadata>> {
    match lstat(path)? {
        Found::Missing => Ok(None),
        Found::File(m) => Ok(Some(m)),
        Found::Link => Err(link_error(path)),
        Found::Dir | Found::Other => bail!("{} is not a regular file", path.display()),
    }
}

/// Open a regular file for reading, never through a symbolic link. `O_NONBLOCK` keeps a FIFO
/// swapped in after the `lstat` from blocking the open; it has no effect on regular files.
fn open_for_reading(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let m = file
        .metadata()
        .with_context(|| format!("inspecting {}", path.display()))?;
    if !m.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    Ok(file)
}

/// Create a new private file in `dir` named by `name` (retrying a few random names).
fn create_temp(dir: &Path, name: impl Fn(u64) -> String) -> Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let path = dir.join(name(rand::random::<u64>()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(path),
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    bail!(
        "creating a temp file in {}: names keep colliding (last {})",
        dir.display(),
        last.as_deref().unwrap_or(dir).display()
    )
}

/// Remove a file the store created itself; a missing file is fine.
fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Make a rename in `dir` durable (best effort, as before).
fn sync_dir(dir: &Path) {
    if let Ok(d) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Run blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("local store task failed")?
}

/// Reject keys that would leave the root or reach the store's own directories.
fn validate_key(key: &str) -> Result<()> {
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
    Ok(())
}

/// A valid key's directories and file name.
fn split_key(key: &str) -> Result<(Vec<&str>, &str)> {
    validate_key(key)?;
    let mut segs: Vec<&str> = key.split('/').collect();
    let name = segs.pop().context("empty key")?;
    Ok((segs, name))
}

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

    /// The path of a key; rejects keys that would leave the root. (The store itself never
    /// uses this path directly: it walks it, see the module documentation.)
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// Create the root (`0700`) if it is missing. The root may be a symbolic link to a
    /// directory; an existing root's mode is left alone.
    fn ensure_root(&self) -> Result<()> {
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => bail!("{} is not a directory", self.root.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&self.root)
                .with_context(|| format!("creating {}", self.root.display())),
            Err(e) => Err(e).with_context(|| format!("inspecting {}", self.root.display())),
        }
    }

    /// Walk `dirs` down from the root without following symbolic links. A missing directory
    /// is created (`0700`) when `create`, else the walk returns `None`.
    fn walk_dirs(&self, dirs: &[&str], create: bool) -> Result<Option<PathBuf>> {
        if create {
            self.ensure_root()?;
        }
        let mut dir = self.root.clone();
        for seg in dirs {
            dir.push(seg);
            let mut found = lstat(&dir)?;
            if matches!(found, Found::Missing) {
                if !create {
                    return Ok(None);
                }
                match DirBuilder::new().mode(DIR_MODE).create(&dir) {
                    Ok(()) => found = Found::Dir,
                    // Created concurrently: look at what is there now.
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => found = lstat(&dir)?,
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("creating directory {}", dir.display()));
                    }
                }
            }
            match found {
                Found::Dir => {}
                Found::Link => return Err(link_error(&dir)),
                Found::Missing => bail!("{} vanished while it was being created", dir.display()),
                Found::File(_) | Found::Other => bail!("{} is not a directory", dir.display()),
            }
        }
        Ok(Some(dir))
    }

    /// [`walk_dirs`](Self::walk_dirs), creating what is missing.
    fn make_dirs(&self, dirs: &[&str]) -> Result<PathBuf> {
        self.walk_dirs(dirs, true)?
            .with_context(|| format!("creating directories beneath {}", self.root.display()))
    }

    /// The directories of a key's metadata file, and its name.
    fn meta_location(key: &str) -> Result<(Vec<&str>, String)> {
        let (dirs, name) = split_key(key)?;
        let mut meta_dirs = Vec::with_capacity(dirs.len() + 1);
        meta_dirs.push(META_DIR);
        meta_dirs.extend(dirs);
        Ok((meta_dirs, format!("{name}.json")))
    }

    /// The path of a key's metadata file with its directories created, checked to hold a
    /// regular file or nothing.
    fn meta_target(&self, key: &str) -> Result<PathBuf> {
        let (dirs, name) = Self::meta_location(key)?;
        let path = self.make_dirs(&dirs)?.join(name);
        file_or_missing(&path)?;
        Ok(path)
    }

    /// The path of a key's metadata file if it holds a regular file.
    fn existing_meta(&self, key: &str) -> Result<Option<PathBuf>> {
        let (dirs, name) = Self::meta_location(key)?;
        let Some(dir) = self.walk_dirs(&dirs, false)? else {
            return Ok(None);
        };
        let path = dir.join(name);
        Ok(file_or_missing(&path)?.map(|_| path))
    }

    /// The path of a key's object if it holds a regular file.
    fn existing_object(&self, key: &str) -> Result<Option<(PathBuf, Metadata)>> {
        let (dirs, name) = split_key(key)?;
        let Some(dir) = self.walk_dirs(&dirs, false)? else {
            return Ok(None);
        };
        let path = dir.join(name);
        Ok(file_or_missing(&path)?.map(|m| (path, m)))
    }

    /// Write a key's metadata: a private temp file in the metadata directory, renamed over the
    /// old file (a rename replaces a link itself, never its target).
    fn write_meta(&self, key: &str, meta: &ObjectMeta) -> Result<()> {
        let result: Result<()> = (|| {
            let path = self.meta_target(key)?;
            let dir = path.parent().context("metadata path has no directory")?;
            let doc = serde_json::json!({
                "content_type": meta.content_type,
                "metadata": meta.metadata,
            });
            let text = serde_json::to_vec_pretty(&doc)?;
            let (tmp, mut file) = create_temp(dir, |n| format!("{META_TMP_PREFIX}{n:016x}"))?;
            let written: Result<()> = (|| {
                file.write_all(&text)
                    .with_context(|| format!("writing {}", tmp.display()))?;
                file.sync_all()
                    .with_context(|| format!("writing {}", tmp.display()))?;
                drop(file);
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
                sync_dir(dir);
                Ok(())
            })();
            if written.is_err() {
                let _ = remove_if_present(&tmp);
            }
            written
        })();
        result.with_context(|| format!("writing the metadata of object {key:?}"))
    }

    /// A key's metadata; missing or unreadable JSON reads as empty, a link is an error.
    fn read_meta(&self, key: &str) -> Result<ObjectMeta> {
        let read: Result<Option<Vec<u8>>> = (|| {
            let Some(path) = self.existing_meta(key)? else {
                return Ok(None);
            };
            let mut text = Vec::new();
            open_for_reading(&path)?
                .read_to_end(&mut text)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(Some(text))
        })();
        let Some(text) = read.with_context(|| format!("reading the metadata of object {key:?}"))?
        else {
            return Ok(ObjectMeta::default());
        };
        let doc: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        Ok(ObjectMeta {
            content_type: doc["content_type"].as_str().unwrap_or("").to_string(),
            metadata: serde_json::from_value::<BTreeMap<String, String>>(doc["metadata"].clone())
                .unwrap_or_default(),
        })
    }

    /// A new private upload temp file in `<root>/.d1-backup-tmp/`.
    fn temp_file(&self) -> Result<(PathBuf, File)> {
        let dir = self.make_dirs(&[TMP_DIR])?;
        create_temp(&dir, upload_name)
    }

    /// Remove an upload temp file made by [`temp_file`](Self::temp_file), only while
    /// `<root>/.d1-backup-tmp` is still a real directory.
    fn remove_temp(&self, tmp: &Path) -> Result<()> {
        match self.walk_dirs(&[TMP_DIR], false)? {
            Some(_) => remove_if_present(tmp),
            None => Ok(()),
        }
    }

    /// Refuse an upload to `key` before any data is written: the object exists (or a link or
    /// something else is in its place), or its directories or metadata are not ours to use.
    fn check_new_object(&self, key: &str) -> Result<()> {
        let (dirs, name) = split_key(key)?;
        if let Some(dir) = self.walk_dirs(&dirs, false)? {
            let path = dir.join(name);
            match lstat(&path)? {
                Found::Missing => {}
                Found::Link => return Err(link_error(&path)),
                _ => return Err(StoreError::already_exists(key).into()),
            }
        }
        self.existing_meta(key)?;
        Ok(())
    }

    /// Move a finished temp file to `key` and write its metadata. Every directory and the
    /// metadata file are checked before the object becomes visible.
    fn place_object(
        &self,
        key: &str,
        tmp: &Path,
        overwrite: bool,
        meta: &ObjectMeta,
    ) -> Result<()> {
        let (dirs, name) = split_key(key)?;
        let dir = self.make_dirs(&dirs)?;
        let dest = dir.join(name);
        match lstat(&dest)? {
            Found::Missing => {}
            Found::File(_) => {
                if !overwrite {
                    return Err(StoreError::already_exists(key).into());
                }
            }
            Found::Link => return Err(link_error(&dest)),
            Found::Dir | Found::Other => bail!("{} is not a regular file", dest.display()),
        }
        self.meta_target(key)?;
        std::fs::rename(tmp, &dest)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
        sync_dir(&dir);
        self.write_meta(key, meta)
    }

    /// Delete one key: only regular files, and nothing unless both paths check out.
    fn delete_one(&self, key: &str) -> Result<()> {
        let object = self.existing_object(key)?;
        let meta = self.existing_meta(key)?;
        if let Some((path, _)) = object {
            remove_if_present(&path)?;
        }
        if let Some(path) = meta {
            remove_if_present(&path)?;
        }
        Ok(())
    }

    /// Remove regular files named like upload temp files and modified before `older_than`
    /// from a real `<root>/.d1-backup-tmp` directory.
    fn remove_stale_uploads(&self, older_than: DateTime<Utc>) -> Result<usize> {
        let dir = self.root.join(TMP_DIR);
        match lstat(&dir)? {
            Found::Missing => return Ok(0),
            Found::Dir => {}
            Found::Link => {
                return Err(link_error(&dir)).context("not cleaning up abandoned uploads");
            }
            Found::File(_) | Found::Other => bail!(
                "{} is not a directory; not cleaning up abandoned uploads",
                dir.display()
            ),
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut n = 0;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            if !is_upload_name(&entry.file_name()) {
                continue;
            }
            // `DirEntry::metadata` does not follow a link.
            let stale = entry.metadata().ok().is_some_and(|m| {
                m.file_type().is_file()
                    && m.modified()
                        .is_ok_and(|t| DateTime::<Utc>::from(t) < older_than)
            });
            if stale && std::fs::remove_file(entry.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn check(&self) -> Result<()> {
        let store = self.clone();
        blocking(move || {
            let root = store.root.display().to_string();
            store.ensure_root().map_err(|e| {
                StoreError::setup(
                    StoreErrorKind::Unwritable,
                    format!("cannot create {root}: {e:#}"),
                )
            })?;
            let (path, file) = store.temp_file().map_err(|e| {
                StoreError::setup(
                    StoreErrorKind::Unwritable,
                    format!("{root} is not writable: {e:#}"),
                )
            })?;
            drop(file);
            store.remove_temp(&path)
        })
        .await
    }

    async fn start_upload(
        &self,
        key: &str,
        meta: &ObjectMeta,
        _part_size: u64,
    ) -> Result<Box<dyn Upload>> {
        let store = self.clone();
        let k = key.to_string();
        let (tmp, file) = blocking(move || {
            store
                .check_new_object(&k)
                .with_context(|| format!("starting an upload of object {k:?}"))?;
            store.temp_file()
        })
        .await?;
        Ok(Box::new(LocalUpload {
            store: self.clone(),
            key: key.to_string(),
            meta: meta.clone(),
            tmp,
            file: Some(tokio::fs::File::from_std(file)),
            size: 0,
            parts: 0,
        }))
    }

    async fn put(&self, key: &str, data: Bytes, meta: &ObjectMeta) -> Result<()> {
        let store = self.clone();
        let key = key.to_string();
        let meta = meta.clone();
        blocking(move || {
            let result: Result<()> = (|| {
                let (tmp, mut file) = store.temp_file()?;
                let placed: Result<()> = (|| {
                    file.write_all(&data)
                        .with_context(|| format!("writing {}", tmp.display()))?;
                    file.sync_all()
                        .with_context(|| format!("writing {}", tmp.display()))?;
                    drop(file);
                    store.place_object(&key, &tmp, true, &meta)
                })();
                if placed.is_err() {
                    let _ = store.remove_temp(&tmp);
                }
                placed
            })();
            result.with_context(|| format!("writing object {key:?}"))
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Body> {
        let store = self.clone();
        let key = key.to_string();
        let file = blocking(move || {
            let Some((path, _)) = store
                .existing_object(&key)
                .with_context(|| format!("reading object {key:?}"))?
            else {
                bail!("object {key:?} not found in {}", store.root.display());
            };
            open_for_reading(&path).with_context(|| format!("reading object {key:?}"))
        })
        .await?;
        Ok(Box::pin(tokio::fs::File::from_std(file)))
    }

    async fn head(&self, key: &str) -> Result<Option<(ObjectInfo, ObjectMeta)>> {
        let store = self.clone();
        let key = key.to_string();
        blocking(move || {
            let (dirs, name) = split_key(&key)?;
            let found = match store.walk_dirs(&dirs, false) {
                Ok(Some(dir)) => {
                    let path = dir.join(name);
                    lstat(&path).map(|f| (path, f))
                }
                Ok(None) => return Ok(None),
                Err(e) => Err(e),
            };
            let (path, found) = found.with_context(|| format!("reading object {key:?}"))?;
            let m = match found {
                Found::File(m) => m,
                // A "directory" is a prefix, not an object.
                Found::Missing | Found::Dir => return Ok(None),
                Found::Link => {
                    return Err(link_error(&path)).context(format!("reading object {key:?}"));
                }
                Found::Other => bail!(
                    "reading object {key:?}: {} is not a regular file",
                    path.display()
                ),
            };
            Ok(Some((
                ObjectInfo {
                    key: key.clone(),
                    size: m.len(),
                    last_modified: m.modified().ok().map(DateTime::<Utc>::from),
                },
                store.read_meta(&key)?,
            )))
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root, &prefix, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, keys: &[String]) -> Result<Vec<DeleteFailure>> {
        let store = self.clone();
        let keys = keys.to_vec();
        blocking(move || {
            Ok(keys
                .into_iter()
                .filter_map(|key| {
                    store.delete_one(&key).err().map(|e| DeleteFailure {
                        message: format!("{e:#}"),
                        key,
                    })
                })
                .collect())
        })
        .await
    }

    async fn abort_stale_uploads(&self, _prefix: &str, older_than: DateTime<Utc>) -> Result<usize> {
        let store = self.clone();
        blocking(move || store.remove_stale_uploads(older_than)).await
    }
}

/// List regular files beneath `dir`; never lists or descends into a symbolic link
/// (`DirEntry::file_type` and `DirEntry::metadata` do not follow one).
fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<ObjectInfo>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".d1-backup-") {
            continue;
        }
        let path = entry.path();
        let ft = entry
            .file_type()
            .with_context(|| format!("inspecting {}", path.display()))?;
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
                let m = entry
                    .metadata()
                    .with_context(|| format!("inspecting {}", path.display()))?;
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
            file.flush()
                .await
                .with_context(|| format!("writing {}", self.tmp.display()))?;
            file.sync_all()
                .await
                .with_context(|| format!("writing {}", self.tmp.display()))?;
            drop(file);
            let store = self.store.clone();
            let (key, tmp, meta) = (self.key.clone(), self.tmp.clone(), self.meta.clone());
            blocking(move || store.place_object(&key, &tmp, false, &meta)).await
        }
        .await;
        match result {
            Ok(()) => Ok(Uploaded {
                size: self.size,
                parts: self.parts,
            }),
            Err(e) => {
                let (store, tmp) = (self.store.clone(), self.tmp.clone());
                let _ = blocking(move || store.remove_temp(&tmp)).await;
                Err(e.context(format!("completing the upload of object {:?}", self.key)))
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        drop(self.file.take());
        let (store, tmp) = (self.store.clone(), self.tmp.clone());
        blocking(move || store.remove_temp(&tmp))
            .await
            .with_context(|| format!("aborting the upload of object {:?}", self.key))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    fn meta() -> ObjectMeta {
        ObjectMeta {
            content_type: "application/json".into(),
            metadata: BTreeMap::from([("k".to_string(), "v".to_string())]),
        }
    }

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
            "a/.d1-backup-meta",
            "a//b",
            "a/./b",
        ] {
            assert!(s.path_of(bad).is_err(), "{bad:?}");
            assert!(split_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            s.path_of("a/b.sql").unwrap(),
            PathBuf::from("/tmp/x/a/b.sql")
        );
        // (key, directories, name)
        let cases: [(&str, &[&str], &str); 3] = [
            ("x", &[], "x"),
            ("db/x.sql", &["db"], "x.sql"),
            ("p/db/x", &["p", "db"], "x"),
        ];
        for (key, dirs, name) in cases {
            let (d, n) = split_key(key).unwrap();
            assert_eq!((d.as_slice(), n), (dirs, name), "{key:?}");
        }
    }

    #[test]
    fn upload_names_are_recognised_exactly() {
        for n in [0u64, 1, 0xdead_beef, u64::MAX] {
            let name = upload_name(n);
            assert!(is_upload_name(OsStr::new(&name)), "{name}");
        }
        // (name, is an upload temp file)
        let cases = [
            ("upload-0123456789abcdef", true),
            ("upload-0000000000000000", true),
            ("upload-0123456789ABCDEF", false),
            ("upload-0123456789abcde", false),
            ("upload-0123456789abcdef0", false),
            ("upload-0123456789abcdeg", false),
            ("upload-", false),
            ("Upload-0123456789abcdef", false),
            ("xupload-0123456789abcdef", false),
            ("upload-0123456789abcdef.bak", false),
            ("backup.sql.zst", false),
            ("", false),
        ];
        for (name, ok) in cases {
            assert_eq!(is_upload_name(OsStr::new(name)), ok, "{name:?}");
        }
    }

    #[tokio::test]
    async fn new_files_are_0600_and_new_directories_0700() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/store");
        let store = LocalStore::new(&root);
        store.check().await.unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join(TMP_DIR)), 0o700);

        let (tmp, file) = store.temp_file().unwrap();
        drop(file);
        assert_eq!(mode(&tmp), 0o600);
        assert!(is_upload_name(tmp.file_name().unwrap()));
        std::fs::remove_file(&tmp).unwrap();

        store
            .put("p/db/x.manifest.json", Bytes::from_static(b"{}"), &meta())
            .await
            .unwrap();
        let mut up = store
            .start_upload("p/db/x.sql.zst", &meta(), 5)
            .await
            .unwrap();
        up.write_part(Bytes::from_static(b"12345").into())
            .await
            .unwrap();
        up.write_part(Bytes::from_static(b"67").into())
            .await
            .unwrap();
        assert_eq!(up.complete().await.unwrap().size, 7);

        for d in [
            "p",
            "p/db",
            META_DIR,
            ".d1-backup-meta/p",
            ".d1-backup-meta/p/db",
        ] {
            assert_eq!(mode(&root.join(d)), 0o700, "{d}");
        }
        for f in [
            "p/db/x.manifest.json",
            "p/db/x.sql.zst",
            ".d1-backup-meta/p/db/x.manifest.json.json",
            ".d1-backup-meta/p/db/x.sql.zst.json",
        ] {
            assert_eq!(mode(&root.join(f)), 0o600, "{f}");
        }
        // Replacing keeps the file private, and leaves no metadata temp files behind.
        store
            .put("p/db/x.manifest.json", Bytes::from_static(b"{2}"), &meta())
            .await
            .unwrap();
        assert_eq!(mode(&root.join("p/db/x.manifest.json")), 0o600);
        let names: Vec<String> = std::fs::read_dir(root.join(".d1-backup-meta/p/db"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let (_, m) = store.head("p/db/x.manifest.json").await.unwrap().unwrap();
        assert_eq!(m, meta());
    }

    #[tokio::test]
    async fn check_leaves_an_existing_roots_mode_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o750)).unwrap();
        LocalStore::new(&root).check().await.unwrap();
        assert_eq!(mode(&root), 0o750);
        // A root that is a symbolic link to a directory is fine.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let store = LocalStore::new(&link);
        store.check().await.unwrap();
        store
            .put("db/x", Bytes::from_static(b"x"), &ObjectMeta::default())
            .await
            .unwrap();
        assert_eq!(std::fs::read(root.join("db/x")).unwrap(), b"x");
    }

    #[tokio::test]
    async fn stale_upload_cleanup_removes_only_its_own_old_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.check().await.unwrap();
        let tmp = dir.path().join(TMP_DIR);
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, b"keep").unwrap();
        // (name, what to create, removed)
        let cases: [(&str, &str, bool); 5] = [
            ("upload-00000000000000aa", "file", true),
            ("upload-00000000000000bb", "link", false),
            ("upload-00000000000000cc", "dir", false),
            ("notes.txt", "file", false),
            ("upload-00000000000000dd.partial", "file", false),
        ];
        for (name, kind, _) in cases {
            let p = tmp.join(name);
            match kind {
                "file" => std::fs::write(&p, b"old").unwrap(),
                "link" => std::os::unix::fs::symlink(&outside, &p).unwrap(),
                _ => std::fs::create_dir(&p).unwrap(),
            }
        }
        // Nothing is old enough yet.
        let past = Utc::now() - chrono::Duration::days(1);
        assert_eq!(store.abort_stale_uploads("", past).await.unwrap(), 0);
        let future = Utc::now() + chrono::Duration::days(1);
        assert_eq!(store.abort_stale_uploads("", future).await.unwrap(), 1);
        for (name, _, removed) in cases {
            assert_eq!(
                std::fs::symlink_metadata(tmp.join(name)).is_err(),
                removed,
                "{name}"
            );
        }
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
    }
}
