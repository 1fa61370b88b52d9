//! The fake's shared state: the options, the databases (each with its connection, write
//! counter, bookmark and long-running [`Jobs`]), the current faults, the request log, the
//! per-token rate-limit budget, the signed URLs and the record/replay [`Mode`]. It holds the
//! records of `budget`, `jobs`, `links`, `log` and `replay`; the request handlers above
//! it (`api`, `export`, `import`, `signed`, `server`) act on it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::budget::Budget;
use crate::conn::DbConn;
use crate::faults::Faults;
use crate::jobs::Jobs;
use crate::links::Signed;
use crate::log::Log;
use crate::options::Options;
use crate::replay::Mode;
use crate::util::{iso_now, md5_hex, uuid_for};

/// One served database.
pub struct Db {
    pub uuid: String,
    pub name: String,
    pub path: PathBuf,
    pub created_at: String,
    /// The file lives in the fake's temp dir (deleted with the database).
    pub owned: bool,
    conn: Mutex<DbConn>,
    writes: AtomicU64,
    jobs: Mutex<Jobs>,
    /// `/query` and `/raw` requests seen (for `Faults::write_during_reads`).
    pub reads: AtomicU64,
}

impl Db {
    pub fn lock_conn(&self) -> MutexGuard<'_, DbConn> {
        self.conn.lock().expect("fake-d1 database poisoned")
    }

    pub fn lock_jobs(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().expect("fake-d1 jobs poisoned")
    }

    /// The current Time Travel bookmark.
    pub fn bookmark(&self) -> String {
        bookmark_for(&self.uuid, self.writes.load(Ordering::SeqCst))
    }

    /// Records a write: the bookmark moves on.
    pub fn bump(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

/// A bookmark: the zero-padded hex write counter (so bookmarks sort in write order), two fields
/// fixed per database, and 32 hex derived from the uuid and the counter.
pub fn bookmark_for(uuid: &str, writes: u64) -> String {
    let fixed = md5_hex(uuid);
    let hash = md5_hex(format!("{uuid}{writes}"));
    format!("{writes:08x}-{}-{}-{hash}", &fixed[..8], &fixed[8..16])
}

/// The 32 hex hash part of a bookmark.
pub fn bookmark_hash(bookmark: &str) -> &str {
    bookmark.rsplit('-').next().unwrap_or(bookmark)
}

pub enum CreateError {
    Exists,
    Other(String),
}

/// Everything the server and the `FakeD1` handle share.
pub struct App {
    pub options: Options,
    pub origin: String,
    pub dir: PathBuf,
    /// Live, recording or replaying.
    pub mode: Mode,
    dbs: Mutex<Vec<Arc<Db>>>,
    faults: Mutex<Faults>,
    log: Mutex<Log>,
    budget: Mutex<Budget>,
    signed: Mutex<Signed>,
    dumps: Mutex<Vec<(String, PathBuf)>>,
}

impl App {
    pub fn new(options: Options, origin: String, dir: PathBuf, mode: Mode) -> App {
        App {
            options,
            origin,
            dir,
            mode,
            dbs: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Log::default()),
            budget: Mutex::new(Budget::default()),
            signed: Mutex::new(Signed::default()),
            dumps: Mutex::new(Vec::new()),
        }
    }

    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().expect("fake-d1 state poisoned")
    }

    pub fn budget(&self) -> MutexGuard<'_, Budget> {
        self.budget.lock().expect("fake-d1 state poisoned")
    }

    pub fn signed(&self) -> MutexGuard<'_, Signed> {
        self.signed.lock().expect("fake-d1 state poisoned")
    }

    pub fn dumps(&self) -> MutexGuard<'_, Vec<(String, PathBuf)>> {
        self.dumps.lock().expect("fake-d1 state poisoned")
    }

    pub fn faults(&self) -> Faults {
        self.faults.lock().expect("fake-d1 state poisoned").clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().expect("fake-d1 state poisoned") = faults;
    }

    /// The response-size limit in force.
    pub fn memory_limit(&self, faults: &Faults) -> Option<usize> {
        faults
            .memory_limit_bytes
            .or(self.options.max_response_bytes)
    }

    /// A database by uuid or name.
    pub fn find(&self, name_or_uuid: &str) -> Option<Arc<Db>> {
        let dbs = self.dbs.lock().expect("fake-d1 state poisoned");
        dbs.iter()
            .find(|d| d.uuid == name_or_uuid)
            .or_else(|| dbs.iter().find(|d| d.name == name_or_uuid))
            .cloned()
    }

    /// All databases in creation order.
    pub fn databases(&self) -> Vec<Arc<Db>> {
        self.dbs.lock().expect("fake-d1 state poisoned").clone()
    }

    /// Serves the SQLite file at `path` as database `name` (replacing one of the same name).
    pub fn add(&self, name: &str, path: &Path, owned: bool) -> Result<Arc<Db>, String> {
        let conn =
            DbConn::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let db = Arc::new(Db {
            uuid: uuid_for(name),
            name: name.to_string(),
            path: path.to_path_buf(),
            created_at: iso_now(),
            owned,
            conn: Mutex::new(conn),
            writes: AtomicU64::new(1),
            jobs: Mutex::new(Jobs::default()),
            reads: AtomicU64::new(0),
        });
        let mut dbs = self.dbs.lock().expect("fake-d1 state poisoned");
        dbs.retain(|d| d.uuid != db.uuid);
        dbs.push(Arc::clone(&db));
        Ok(db)
    }

    /// Creates a new empty database in the fake's own directory.
    pub fn create(&self, name: &str) -> Result<Arc<Db>, CreateError> {
        if self.find_by_name(name).is_some() {
            return Err(CreateError::Exists);
        }
        let dir = self.dir.join("databases");
        std::fs::create_dir_all(&dir).map_err(|e| CreateError::Other(e.to_string()))?;
        let path = dir.join(format!("{}.sqlite", uuid_for(name)));
        let _ = std::fs::remove_file(&path);
        self.add(name, &path, true).map_err(CreateError::Other)
    }

    fn find_by_name(&self, name: &str) -> Option<Arc<Db>> {
        let dbs = self.dbs.lock().expect("fake-d1 state poisoned");
        dbs.iter().find(|d| d.name == name).cloned()
    }

    /// Stops serving a database; deletes its file if the fake created it.
    pub fn remove(&self, uuid: &str) -> Option<Arc<Db>> {
        let mut dbs = self.dbs.lock().expect("fake-d1 state poisoned");
        let pos = dbs.iter().position(|d| d.uuid == uuid)?;
        let db = dbs.remove(pos);
        if db.owned {
            let _ = std::fs::remove_file(&db.path);
        }
        Some(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookmarks_sort_in_write_order() {
        let a = bookmark_for("u", 9);
        let b = bookmark_for("u", 10);
        assert!(a < b);
        assert_eq!(a.len(), 8 + 1 + 8 + 1 + 8 + 1 + 32);
        assert!(a.starts_with("00000009-"));
        assert_eq!(bookmark_hash(&a).len(), 32);
    }
}
