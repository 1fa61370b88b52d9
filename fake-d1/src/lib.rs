//! `fake-d1`: a faithful local imitation of the Cloudflare D1 REST API, backed by real SQLite,
//! for d1-backup's integration tests and benchmark. It follows
//! `shared/reference/d1-rest-api.md`: the envelope, status codes, error codes and messages,
//! D1's JSON encoding of values, export/import polling, limits, and injected faults.
//!
//! [`FakeD1::start`] runs the server on its own thread and tokio runtime, so it works from
//! synchronous and asynchronous tests alike; dropping the handle stops it.
//!
//! With [`Options::record`] it also writes every answer to a directory; with
//! [`Options::replay`] it answers from such a directory and runs no SQL (see `replay`).
//!
//! The modules form layers; each imports only from layers below it, never upwards: the leaves
//! (`values`, `split`, `util`, `conn`, `options`, `log`, `budget`), then the building blocks
//! (`dump`, `sql`, `reply`, `routes`, `faults`, `jobs`, `links`, `replay`), then `state` (the
//! shared `App` and its databases), then the request handlers (`export`, `import`, `signed`,
//! then `api`), then `server`, and this file on top.

mod api;
mod budget;
mod conn;
mod dump;
mod export;
mod faults;
mod import;
mod jobs;
mod links;
mod log;
mod options;
mod replay;
mod reply;
mod routes;
mod server;
mod signed;
mod split;
mod sql;
mod state;
mod util;
mod values;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use faults::Faults;
pub use log::RequestRecord;
pub use options::{Options, RateLimit, Token};
use state::{App, CreateError};

/// A running fake. Dropping it shuts the server down.
pub struct FakeD1 {
    app: Arc<App>,
    origin: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn serve(app: Arc<App>, listener: std::net::TcpListener, stop: tokio::sync::oneshot::Receiver<()>) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fake-d1-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fake-d1: cannot start runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("fake-d1: cannot use listener: {e}");
                return;
            }
        };
        let served = axum::serve(listener, server::router(app)).into_future();
        tokio::select! {
            r = served => {
                if let Err(e) = r {
                    eprintln!("fake-d1: server stopped: {e}");
                }
            }
            _ = stop => {}
        }
    });
    rt.shutdown_timeout(Duration::from_millis(500));
}

impl FakeD1 {
    /// Starts the server on its own thread. Panics if it cannot start (see
    /// [`FakeD1::try_start`]).
    pub fn start(options: Options) -> FakeD1 {
        FakeD1::try_start(options).unwrap_or_else(|e| panic!("fake-d1: {e}"))
    }

    /// Starts the server on its own thread, or says why it cannot: it cannot listen, or the
    /// record or replay directory is unusable.
    pub fn try_start(options: Options) -> Result<FakeD1, String> {
        let mode = replay::Mode::open(options.record.as_deref(), options.replay.as_deref())?;
        let listen = options
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot configure listener: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no local address: {e}"))?;
        let origin = format!("http://{addr}");
        let dir = tempfile::Builder::new()
            .prefix("fake-d1-")
            .tempdir()
            .map_err(|e| format!("cannot create temp dir: {e}"))?;
        let app = Arc::new(App::new(
            options,
            origin.clone(),
            dir.path().to_path_buf(),
            mode,
        ));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server_app = Arc::clone(&app);
        let thread = std::thread::Builder::new()
            .name("fake-d1".to_string())
            .spawn(move || serve(server_app, listener, rx))
            .map_err(|e| format!("cannot spawn server thread: {e}"))?;
        Ok(FakeD1 {
            app,
            origin,
            shutdown: Some(tx),
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT/client/v4`.
    pub fn base_url(&self) -> String {
        format!("{}/client/v4", self.origin)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        self.origin.clone()
    }

    pub fn account_id(&self) -> String {
        self.app.options.account_id.clone()
    }

    /// Serves an existing SQLite file in place (creating `_cf_KV` in it if missing) and
    /// returns its uuid (the MD5 of the name, formatted 8-4-4-4-12). Panics on error.
    pub fn add_database(&self, name: &str, path: &Path) -> String {
        self.try_add_database(name, path)
            .unwrap_or_else(|e| panic!("fake-d1: {e}"))
    }

    /// Like [`FakeD1::add_database`], returning the error instead of panicking. A replaying
    /// fake does not open the file (it need not exist) and only returns the uuid.
    pub fn try_add_database(&self, name: &str, path: &Path) -> Result<String, String> {
        if let replay::Mode::Replay(_) = self.app.mode {
            return Ok(util::uuid_for(name));
        }
        self.app.add(name, path, false).map(|db| db.uuid.clone())
    }

    /// Creates a new empty database (with `_cf_KV`) in the fake's temp dir; returns its uuid.
    pub fn create_database(&self, name: &str) -> String {
        match self.app.create(name) {
            Ok(db) => db.uuid.clone(),
            Err(CreateError::Exists) => panic!("fake-d1: database {name} already exists"),
            Err(CreateError::Other(e)) => panic!("fake-d1: cannot create {name}: {e}"),
        }
    }

    pub fn database_path(&self, name_or_uuid: &str) -> Option<PathBuf> {
        self.app.find(name_or_uuid).map(|d| d.path.clone())
    }

    /// Runs SQL as another client would (no D1 restrictions, autocommit); bumps the bookmark
    /// when it writes. Panics on error (a test helper).
    pub fn execute(&self, name_or_uuid: &str, sql: &str) {
        let db = self
            .app
            .find(name_or_uuid)
            .unwrap_or_else(|| panic!("fake-d1: no database {name_or_uuid}"));
        let result = {
            let conn = db.lock_conn();
            sql::execute_as_client(&conn, sql)
        };
        match result {
            Ok(true) => db.bump(),
            Ok(false) => {}
            Err(e) => panic!("fake-d1: execute failed: {}", conn::d1_message(&e)),
        }
    }

    /// The database's current Time Travel bookmark. Panics if there is no such database.
    pub fn bookmark(&self, name_or_uuid: &str) -> String {
        self.app
            .find(name_or_uuid)
            .unwrap_or_else(|| panic!("fake-d1: no database {name_or_uuid}"))
            .bookmark()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.app.set_faults(faults);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.app.log().records()
    }

    /// Total rows read (what D1 bills: rows scanned, see [`RequestRecord::rows_read`]) by the
    /// recorded requests to a database, by name or uuid; 0 if there were none. Counts only
    /// the requests still in the log, so [`FakeD1::clear_requests`] starts it over.
    pub fn rows_read(&self, name_or_uuid: &str) -> u64 {
        let found = self.app.find(name_or_uuid).map(|d| d.uuid.clone());
        // A deleted database is found by its uuid, which is the MD5 of its name.
        let by_name = util::uuid_for(name_or_uuid);
        let mut uuids = vec![name_or_uuid, by_name.as_str()];
        uuids.extend(found.as_deref());
        self.app.log().rows_read(&uuids)
    }

    pub fn clear_requests(&self) {
        self.app.log().clear();
    }

    /// Every dump an export generated: the database uuid and the file its signed URL serves.
    pub fn export_dumps(&self) -> Vec<(String, PathBuf)> {
        self.app.dumps().clone()
    }
}

impl Drop for FakeD1 {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
