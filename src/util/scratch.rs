//! Private scratch files: created `0600` with `O_EXCL` (never through an existing file or
//! symlink), removed when dropped, and removed by [`remove_all`] — which the signal handler
//! calls before a forced exit — so a spooled backup or a half-restored database (decrypted
//! data, perhaps) is never left behind, readable, by any exit path that can still run code.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Every scratch file alive in this process.
static LIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// A private file that disappears with its owner (unless [`Scratch::persist`]ed).
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
    kept: bool,
}

impl Scratch {
    /// A new empty file in `dir`, named `.<stem>.<random>.tmp`.
    pub fn create_in(dir: &Path, stem: &str) -> io::Result<(Scratch, File)> {
        for _ in 0..16 {
            let path = dir.join(format!(".{stem}.{:016x}.tmp", rand::random::<u64>()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(file) => {
                    if let Ok(mut live) = LIVE.lock() {
                        live.insert(path.clone());
                    }
                    return Ok((Scratch { path, kept: false }, file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "could not create a scratch file in {}",
            dir.display()
        )))
    }

    /// A new empty file in the system's temporary directory.
    pub fn create(stem: &str) -> io::Result<(Scratch, File)> {
        Scratch::create_in(&std::env::temp_dir(), stem)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rename the file to `to` (same filesystem) and keep it.
    pub fn persist(mut self, to: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, to)?;
        self.kept = true;
        forget(&self.path);
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
            forget(&self.path);
        }
    }
}

fn forget(path: &Path) {
    if let Ok(mut live) = LIVE.lock() {
        live.remove(path);
    }
}

/// Remove every live scratch file (before a forced exit).
pub fn remove_all() {
    let paths: Vec<PathBuf> = match LIVE.lock() {
        Ok(mut live) => std::mem::take(&mut *live).into_iter().collect(),
        Err(_) => return,
    };
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_removed_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = Scratch::create_in(dir.path(), "a").unwrap();
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pa = a.path().to_path_buf();
        drop(a);
        assert!(!pa.exists());

        let (b, _) = Scratch::create_in(dir.path(), "b").unwrap();
        let target = dir.path().join("kept");
        b.persist(&target).unwrap();
        assert!(target.exists());
        // Never through an existing name (a planted symlink, say).
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        assert!(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(dir.path().join("link"))
                .is_err()
        );
        // `remove_all` (the signal path) is tested against the binary: tests/it/hostile_store.rs.
    }
}
