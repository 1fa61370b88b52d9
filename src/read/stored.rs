//! Reading a stored backup back, trusting nothing the store says until it is checked.
//!
//! [`fetch`] downloads the object into a private scratch file ([`crate::util::scratch`]) while
//! hashing it, reading at most one byte more than the manifest's size; only when the size
//! and SHA-256 match the manifest is any SQL produced. [`Spooled::sql`] then decrypts (age)
//! and decompresses (zstd) the spooled bytes — however often a command needs them, always the
//! same checked bytes — caps the SQL at the manifest's size (a small hostile object cannot
//! expand into gigabytes) and checks the SQL's size and SHA-256 when it ends. Verify and
//! both restores read backups only through here.

use std::io::{self, Read, Seek, Write};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::encrypt::Identities;
use crate::manifest::Manifest;
use crate::read::codec;
use crate::store::ObjectStore;
use crate::util::scratch::Scratch;

/// A backup's object, downloaded and checked against its manifest.
#[derive(Debug)]
pub struct Spooled {
    file: Scratch,
    manifest: Manifest,
}

/// What a download found.
#[derive(Debug)]
pub enum Fetched {
    /// Size and SHA-256 match the manifest.
    Intact(Box<Spooled>),
    /// They do not: nothing of the object may be used.
    Mismatch(String),
}

/// Download `manifest`'s object into a private scratch file, hashing it on the way.
pub async fn fetch(store: &dyn ObjectStore, manifest: &Manifest) -> Result<Fetched> {
    let (scratch, file) = Scratch::create("d1-backup-object").context("creating a scratch file")?;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
    let body = store.get(&manifest.key).await?;
    let expected = manifest.object.size;
    let mut body = body.take(expected.saturating_add(1));
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = body
            .read(&mut buf)
            .await
            .with_context(|| format!("downloading {}", manifest.key))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        file.write_all(&buf[..n])
            .with_context(|| format!("spooling {}", manifest.key))?;
    }
    file.flush().context("spooling the object")?;
    if size != expected {
        let what = if size > expected {
            format!("more than the {expected} bytes its manifest says")
        } else {
            format!("{size} bytes, the manifest says {expected}")
        };
        return Ok(Fetched::Mismatch(format!(
            "object is {what} (truncated or replaced?); not a byte of it was used"
        )));
    }
    let sha = hex::encode(hasher.finalize());
    if sha != manifest.object.sha256 {
        return Ok(Fetched::Mismatch(format!(
            "object SHA-256 is {sha}, the manifest says {} (the stored bytes changed); not a byte of it was used",
            manifest.object.sha256
        )));
    }
    Ok(Fetched::Intact(Box::new(Spooled {
        file: scratch,
        manifest: manifest.clone(),
    })))
}

/// [`fetch`], with a mismatch as an error.
pub async fn fetch_intact(store: &dyn ObjectStore, manifest: &Manifest) -> Result<Spooled> {
    match fetch(store, manifest).await? {
        Fetched::Intact(s) => Ok(*s),
        Fetched::Mismatch(why) => anyhow::bail!("backup {}: {why}", manifest.key),
    }
}

impl Spooled {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The SQL: decrypted, decompressed, capped at the manifest's size and checked against its
    /// SHA-256 at the end (a mismatch is a read error).
    pub fn sql(&self, identities: Option<&Identities>) -> Result<CheckedSql> {
        let mut file =
            std::fs::File::open(self.file.path()).context("opening the spooled object")?;
        file.rewind()?;
        let inner = codec::sql_reader(
            io::BufReader::with_capacity(256 * 1024, file),
            &self.manifest,
            identities,
        )?;
        Ok(CheckedSql {
            inner,
            limit: self.manifest.sql.size,
            expected_sha: self.manifest.sql.sha256.clone(),
            read: 0,
            hasher: Sha256::new(),
            done: false,
        })
    }
}

/// The SQL of a spooled backup, checked as it is read.
pub struct CheckedSql {
    inner: Box<dyn Read + Send>,
    limit: u64,
    expected_sha: String,
    read: u64,
    hasher: Sha256,
    done: bool,
}

impl Read for CheckedSql {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        // Ask for at most one byte past the limit: enough to notice an overrun.
        let room = (self.limit + 1 - self.read.min(self.limit + 1)).max(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(format!(
                "the SQL is longer than the {} bytes its manifest says; not trusted",
                self.limit
            )));
        }
        self.hasher.update(&buf[..n]);
        if n == 0 {
            self.done = true;
            if self.read != self.limit {
                return Err(io::Error::other(format!(
                    "the SQL is {} bytes, its manifest says {}",
                    self.read, self.limit
                )));
            }
            let sha = hex::encode(std::mem::take(&mut self.hasher).finalize());
            if sha != self.expected_sha {
                return Err(io::Error::other(format!(
                    "the SQL's SHA-256 is {sha}, its manifest says {}",
                    self.expected_sha
                )));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Digest as Dg;

    fn manifest(sql: &[u8], object: &[u8]) -> Manifest {
        Manifest {
            key: "db/backup-2026-11-28T06-00-00-000Z.sql.zst".into(),
            compression: "zstd".into(),
            object: Dg {
                size: object.len() as u64,
                sha256: hex::encode(Sha256::digest(object)),
            },
            sql: Dg {
                size: sql.len() as u64,
                sha256: hex::encode(Sha256::digest(sql)),
            },
            ..Manifest::default()
        }
    }

    fn spooled(object: &[u8], m: Manifest) -> Spooled {
        let (scratch, mut file) = Scratch::create("test").unwrap();
        file.write_all(object).unwrap();
        Spooled {
            file: scratch,
            manifest: m,
        }
    }

    fn read_all(s: &Spooled) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        s.sql(None).unwrap().read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn the_sql_is_capped_and_checked() {
        let sql = b"CREATE TABLE t(a);\nINSERT INTO t VALUES(1);\n".to_vec();
        let object = zstd::encode_all(&sql[..], 3).unwrap();
        assert_eq!(
            read_all(&spooled(&object, manifest(&sql, &object))).unwrap(),
            sql
        );

        // A bomb: 50 MB of one line behind a manifest that says 40 bytes stops after 41.
        let bomb = zstd::encode_all(std::io::repeat(b'x').take(50 << 20), 19).unwrap();
        let m = manifest(&sql[..40], &bomb);
        let s = spooled(&bomb, m);
        let mut r = s.sql(None).unwrap();
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        assert!(out.len() <= 41, "{}", out.len());

        // Same length, other bytes.
        let mut other = sql.clone();
        other[0] = b'D';
        let object2 = zstd::encode_all(&other[..], 3).unwrap();
        let e = read_all(&spooled(&object2, manifest(&sql, &object2))).unwrap_err();
        assert!(e.to_string().contains("SHA-256"), "{e}");
        // Shorter than the manifest says.
        let e = read_all(&spooled(
            &object,
            manifest(&[sql.clone(), b"more".to_vec()].concat(), &object),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("manifest says"), "{e}");
    }
}
