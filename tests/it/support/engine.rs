//! The real D1 engine for the tests: wrangler's local D1 (workerd's SQLite with D1's limits
//! and authorizer) behind `tests/engine/shim.js`, which serves the REST routes d1-backup uses.
//! One server per test binary (`tests/engine/serve.mjs`: the shim on miniflare, the runtime of
//! `wrangler dev --local`), on 127.0.0.1, with its state in a temporary directory; see
//! `tests/engine/NOTES.md` for what the shim adds and what is the engine's, and why not
//! `wrangler dev` itself.
//!
//! wrangler comes from `tests/engine/node_modules` (`npm ci` there; `scripts/test.sh` and
//! `.ci/run` do it). Without it the engine tests are skipped with a loud message — unless
//! `D1_BACKUP_REQUIRE_ENGINE=1` or `CI=true`, where a missing engine fails them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ACCOUNT, TOKEN, TOKEN_ID};

pub struct Engine {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Engine {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The directory holding the shim, its `wrangler.toml` and `node_modules`.
pub fn engine_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/engine")
}

/// wrangler's entry point, when installed.
pub fn wrangler_js() -> Option<PathBuf> {
    let p = engine_dir().join("node_modules/wrangler/bin/wrangler.js");
    p.exists().then_some(p)
}

fn required() -> bool {
    std::env::var("D1_BACKUP_REQUIRE_ENGINE").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The shared engine, started on first use. `None` (after a loud message) when wrangler is
/// not installed and the engine tests are not required.
pub fn engine() -> Option<&'static Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            if wrangler_js().is_none() {
                if required() {
                    panic!(
                        "wrangler not found in tests/engine/node_modules: run `npm ci --prefix tests/engine` (scripts/test.sh does)"
                    );
                }
                eprintln!(
                    "\n*** SKIPPING REAL-ENGINE TESTS: wrangler is not installed (npm ci --prefix tests/engine) ***\n"
                );
                return None;
            }
            Some(start())
        })
        .as_ref()
}

/// Environment for running wrangler offline and quietly.
pub fn wrangler_env(cmd: &mut Command, home: &Path) {
    cmd.env("WRANGLER_SEND_METRICS", "false")
        // No `Request.cf` download (there is no network): miniflare would otherwise fall
        // back to a placeholder after a timeout and reload the Worker.
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("CI", "true")
        .env("NO_UPDATE_NOTIFIER", "1")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("WRANGLER_LOG_PATH", home.join("logs"));
}

fn start() -> Engine {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut port = 30000 + (std::process::id() % 2000) as u16 * 3;
    while !(0..3).all(|i| TcpListener::bind(("127.0.0.1", port + i)).is_ok()) {
        port += 3;
    }
    let state = dir.path().join("state");
    // The log outlives the run (beside the test binaries), for a failure to be read later.
    let log_path = log_path();
    let log = std::fs::File::create(&log_path).expect("log file");
    // Statics are never dropped: a `sh` guardian leads a process group of its own, runs the
    // server in it (on the guardian's own stdin, so it sees the EOF too), and kills the whole
    // group (node and workerd) when its stdin reaches EOF, which happens when this test
    // process exits for any reason.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"exec 3<&0; trap '' TERM; node "$0" "$@" <&3 & read -r _ <&3; kill -TERM 0; sleep 2; kill -KILL 0"#)
        .process_group(0)
        .arg(engine_dir().join("serve.mjs"))
        .args([
            port.to_string(),
            state.display().to_string(),
            TOKEN.to_string(),
            TOKEN_ID.to_string(),
            ACCOUNT.to_string(),
        ])
        .current_dir(engine_dir())
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    wrangler_env(&mut cmd, dir.path());
    let child = cmd
        .spawn()
        .expect("starting the engine (node tests/engine/serve.mjs)");
    let engine = Engine { child, port, dir };
    let t0 = Instant::now();
    // Ready when a POST (which wrangler does not retry across a reload) is answered three
    // times in a row.
    let probe = format!("/client/v4/accounts/{ACCOUNT}/d1/database/not-a-database/raw");
    let mut answered = 0;
    loop {
        match http(port, "POST", &probe, Some("{\"sql\":\"SELECT 1\"}")) {
            Some((404, _)) => answered += 1,
            _ => answered = 0,
        }
        if answered == 3 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            panic!(
                "the real-engine shim did not answer in 120s; its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    engine
}

/// Where the engine's log of this test binary goes (`target/tmp/engine-<pid>.log`).
pub fn log_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("engine-{}.log", std::process::id()))
}

/// A copy of the shim and its `wrangler.toml` in `dir`: wrangler watches the directory of
/// its configuration and restarts the Worker when anything there changes (a file written by
/// another wrangler, an edit in the checkout), failing requests in flight with 503.
pub fn app_copy(dir: &Path) -> PathBuf {
    let app = dir.join("app");
    std::fs::create_dir_all(&app).expect("app dir");
    for f in ["shim.js", "wrangler.toml"] {
        std::fs::copy(engine_dir().join(f), app.join(f)).expect("copy the shim");
    }
    app
}

/// A minimal HTTP/1.1 client (no TLS, one request per connection) for the engine shim and
/// the fake alike: status and body. The body is read by its `Content-Length` (or chunked),
/// not until the server closes.
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(600))).ok()?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut reader = std::io::BufReader::new(s);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).ok()?;
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (k, v) = header.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = v.trim().parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            std::io::BufRead::read_line(&mut reader, &mut line).ok()?;
            let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        out.resize(n, 0);
        reader.read_exact(&mut out).ok()?;
    } else {
        reader.read_to_end(&mut out).ok()?;
    }
    Some((status, String::from_utf8_lossy(&out).into_owned()))
}

impl Engine {
    /// The API base URL to give d1-backup.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/client/v4", self.port)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text) = http(self.port, method, path, body.as_deref())
            .unwrap_or_else(|| panic!("the engine shim did not answer {method} {path}"));
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (status, v)
    }

    /// Create a database; returns its UUID.
    pub fn create_database(&self, name: &str) -> String {
        let (status, v) = self.call(
            "POST",
            &format!("/client/v4/accounts/{ACCOUNT}/d1/database"),
            Some(json!({ "name": name })),
        );
        assert_eq!(status, 200, "create {name}: {v}");
        v["result"]["uuid"].as_str().unwrap().to_string()
    }

    /// The UUID of a database by name.
    pub fn uuid(&self, name: &str) -> Option<String> {
        let (_, v) = self.call(
            "GET",
            &format!(
                "/client/v4/accounts/{ACCOUNT}/d1/database?name={}",
                urlencode(name)
            ),
            None,
        );
        v["result"]
            .as_array()?
            .iter()
            .find(|d| d["name"] == name)
            .and_then(|d| d["uuid"].as_str())
            .map(String::from)
    }

    /// Run SQL through `/raw`: the whole envelope and the HTTP status.
    pub fn raw(&self, uuid: &str, sql: &str, params: &[Value]) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/client/v4/accounts/{ACCOUNT}/d1/database/{uuid}/raw"),
            Some(json!({ "sql": sql, "params": params })),
        )
    }

    /// The rows of a successful `/raw` query.
    pub fn rows(&self, uuid: &str, sql: &str) -> Vec<Vec<Value>> {
        let (status, v) = self.raw(uuid, sql, &[]);
        assert_eq!(status, 200, "{sql}: {v}");
        serde_json::from_value(v["result"][0]["results"]["rows"].clone()).unwrap()
    }

    /// Where the engine keeps its databases.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Environment of a CLI run against the engine, writing to a local directory.
pub fn engine_env(
    engine: &Engine,
    database: &str,
    out: &Path,
) -> std::collections::BTreeMap<String, String> {
    let mut env = std::collections::BTreeMap::new();
    env.insert("CLOUDFLARE_API_TOKEN".into(), TOKEN.into());
    env.insert("CLOUDFLARE_ACCOUNT_ID".into(), ACCOUNT.into());
    env.insert("CLOUDFLARE_API_BASE_URL".into(), engine.base_url());
    env.insert("D1_DATABASE".into(), database.into());
    env.insert("D1_BACKUP_OUTPUT_DIR".into(), out.display().to_string());
    env
}

/// The SQLite files `wrangler d1 execute --local --persist-to <dir>` left in `dir`.
pub fn sqlite_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "sqlite") {
                out.push(p);
            }
        }
    }
    out
}
