//! `fake-d1`: a faithful local imitation of the Cloudflare D1 REST API, backed by real SQLite,
//! for d1-backup's integration tests and benchmark. It follows
//! `shared/reference/d1-rest-api.md`: the envelope, status codes, error codes and messages,
//! D1's JSON encoding of values, export/import polling, limits, and injected faults.
//!
//! [`FakeD1::start`] runs the server on its own thread and tokio runtime, so it works from
//! synchronous and asynchronous tests alike; dropping the handle stops it.

mod api;
mod conn;
mod dump;
mod export;
mod faults;
mod import;
mod log;
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
use std::time::{Duration, Instant};

use state::{App, CreateError};

/// An API token the fake accepts: its secret value and its 32-hex id (what verify returns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    pub id: String,
}

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// The only account id accepted in paths.
    pub account_id: String,
    /// Accepted bearer tokens.
    pub tokens: Vec<Token>,
    /// Added before answering every API request (not signed-URL transfers).
    pub latency: Duration,
    /// A serialized `/query` or `/raw` response larger than this gets D1's memory-limit error.
    pub max_response_bytes: Option<usize>,
    /// How many polls of an export answer 202 "active" before the one that completes it.
    pub export_active_polls: u32,
    /// How many polls of an import answer 202 "active" before the one that completes it.
    pub import_active_polls: u32,
    /// An active export (or import) not polled for this long is cancelled.
    pub export_poll_timeout: Duration,
    /// Address to listen on; `None` means 127.0.0.1 on a free port.
    pub listen: Option<SocketAddr>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            account_id: "0123456789abcdef0123456789abcdef".to_string(),
            tokens: vec![Token {
                value: "test-token".to_string(),
                id: "0123456789abcdef0123456789abcd01".to_string(),
            }],
            latency: Duration::ZERO,
            max_response_bytes: Some(32 << 20),
            export_active_polls: 2,
            import_active_polls: 1,
            export_poll_timeout: Duration::from_secs(10),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        }
    }
}

/// Injected failures. "Every Nth" counts all API requests (everything under `/client/v4`) with
/// one global counter starting at 1; request n is hit when n % N == 0. Faulted requests are
/// logged with their status and fault name and execute nothing.
#[derive(Clone, Default, Debug)]
pub struct Faults {
    /// HTTP 429 with `retry-after` and D1's 429 body (code 971).
    pub rate_limit_every: Option<u32>,
    /// Value of `retry-after` (0 means 1).
    pub retry_after_secs: u32,
    /// HTTP 500, code 7500 "internal error; reference = …".
    pub server_error_every: Option<u32>,
    /// HTTP 502 with an HTML page.
    pub bad_gateway_html_every: Option<u32>,
    /// HTTP 503 with a JSON envelope.
    pub service_unavailable_every: Option<u32>,
    /// HTTP 200 whose JSON body is cut in half.
    pub truncated_body_every: Option<u32>,
    /// HTTP 200 with the text/plain body "upstream connect error".
    pub non_json_every: Option<u32>,
    /// HTTP 200 with `success: false` (code 7500, "D1 DB reset because its code was updated.").
    pub success_false_every: Option<u32>,
    /// Sleep this long before answering (the request then runs normally).
    pub slow_every: Option<(u32, Duration)>,
    /// Names or uuids: every API request that targets them gets HTTP 500.
    pub failing_databases: Vec<String>,
    /// Overrides `Options::max_response_bytes` while set.
    pub memory_limit_bytes: Option<usize>,
    /// Exports end with status "error" and this message.
    pub export_error: Option<String>,
    /// GET of an export signed URL answers 403 with R2's XML AccessDenied body.
    pub signed_url_forbidden: bool,
    /// On every Nth `/query` or `/raw` request to a database, first run this SQL on that
    /// database as another client would (bumps its bookmark when it writes).
    pub write_during_reads: Option<(u32, String)>,
}

/// One request the fake answered.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Global request number (API requests and signed-URL transfers share it).
    pub seq: u64,
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: Option<String>,
    /// "verify", "list", "get", "create", "delete", "query", "raw", "export", "import",
    /// "bookmark", "restore", "signed-export", "signed-import", "stats" or "unknown".
    pub kind: &'static str,
    /// Uuid of the database targeted, if any.
    pub database: Option<String>,
    pub token_id: Option<String>,
    pub status: u16,
    pub retry_after: Option<u32>,
    pub fault: Option<&'static str>,
    pub started: Instant,
    pub finished: Instant,
    /// API requests in flight when this one started, including itself.
    pub in_flight: usize,
    /// Distinct databases with an API request in flight when this one started, including
    /// this one's.
    pub in_flight_databases: usize,
    /// First 300 bytes of the request body (lossy UTF-8).
    pub body_head: String,
    pub response_bytes: usize,
}

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
    /// Starts the server on its own thread. Panics if it cannot listen.
    pub fn start(options: Options) -> FakeD1 {
        let listen = options
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = std::net::TcpListener::bind(listen)
            .unwrap_or_else(|e| panic!("fake-d1: cannot listen on {listen}: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("fake-d1: cannot configure listener: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake-d1: no local address: {e}"));
        let origin = format!("http://{addr}");
        let dir = tempfile::Builder::new()
            .prefix("fake-d1-")
            .tempdir()
            .unwrap_or_else(|e| panic!("fake-d1: cannot create temp dir: {e}"));
        let app = Arc::new(App::new(options, origin.clone(), dir.path().to_path_buf()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server_app = Arc::clone(&app);
        let thread = std::thread::Builder::new()
            .name("fake-d1".to_string())
            .spawn(move || serve(server_app, listener, rx))
            .unwrap_or_else(|e| panic!("fake-d1: cannot spawn server thread: {e}"));
        FakeD1 {
            app,
            origin,
            shutdown: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
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

    /// Like [`FakeD1::add_database`], returning the error instead of panicking.
    pub fn try_add_database(&self, name: &str, path: &Path) -> Result<String, String> {
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
            Err(e) => panic!("fake-d1: execute failed: {}", sql::d1_message(&e)),
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
