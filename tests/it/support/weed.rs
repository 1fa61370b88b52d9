//! A real S3 server for the tests: SeaweedFS (`weed mini`) on loopback, one per test binary.
//!
//! Found through `WEED_BIN`, else `.ci/.venv-s3/bin/weed` (what `scripts/test.sh` installs),
//! else `weed` on PATH. Without it the S3 tests are skipped with a loud message — unless
//! `D1_BACKUP_REQUIRE_S3=1` or `CI=true`, where a missing server fails them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Credentials of the test identity (distinctive, so leak checks can search for them).
pub const ACCESS_KEY: &str = "D1BTESTKEYAKIA0001";
pub const SECRET_KEY: &str = "S3cr3t-d1backup-5b7e9f0c2a81d4";

pub struct Weed {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Weed {
    fn drop(&mut self) {
        // Closing the guardian's stdin makes it stop weed (see `start`).
        drop(self.child.stdin.take());
        let t0 = Instant::now();
        while self.child.try_wait().ok().flatten().is_none()
            && t0.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weed_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WEED_BIN") {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/.venv-s3/bin/weed");
    if local.exists() {
        return Some(local);
    }
    let on_path = Command::new("weed")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    on_path
        .ok()
        .filter(|s| s.success())
        .map(|_| PathBuf::from("weed"))
}

fn required() -> bool {
    std::env::var("D1_BACKUP_REQUIRE_S3").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Extra identities: (access key, secret) pairs accepted besides the test one.
pub fn extra_identities() -> Vec<(String, String)> {
    vec![(
        super::TOKEN_ID.to_string(),
        super::derived_secret(super::TOKEN),
    )]
}

/// The shared server, started on first use. `None` (after a loud message) when no weed
/// binary exists and the S3 tests are not required.
pub fn weed() -> Option<&'static Weed> {
    static WEED: OnceLock<Option<Weed>> = OnceLock::new();
    WEED.get_or_init(|| {
        let Some(bin) = weed_bin() else {
            if required() {
                panic!("SeaweedFS (`weed`) not found: run scripts/test.sh, or set WEED_BIN");
            }
            eprintln!("\n*** SKIPPING S3 TESTS: no `weed` binary (run scripts/test.sh or set WEED_BIN) ***\n");
            return None;
        };
        Some(start(&bin))
    })
    .as_ref()
}

fn start(bin: &PathBuf) -> Weed {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("s3.json");
    let mut identities = vec![serde_json::json!({
        "name": "ci",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    })];
    for (i, (k, s)) in extra_identities().into_iter().enumerate() {
        identities.push(serde_json::json!({
            "name": format!("extra{i}"),
            "credentials": [{"accessKey": k, "secretKey": s}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]
        }));
    }
    std::fs::write(
        &cfg,
        serde_json::json!({ "identities": identities }).to_string(),
    )
    .unwrap();
    let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    let mut base = 20000 + (std::process::id() % 2000) as u16 * 5;
    while !(0..5).all(|i| free(base + i) && free(base + 10000 + i)) {
        base += 5;
    }
    let d = dir.path().display().to_string();
    // The server lives in a static, and statics are never dropped: a small `sh` guardian
    // runs weed and stops it as soon as its stdin reaches EOF, which the kernel delivers
    // when this test process exits for any reason (even a panic or SIGKILL).
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" "$@" & w=$!; read -r _; kill "$w"; wait "$w""#)
        .arg(bin)
        .arg(format!("-logdir={d}"))
        .args([
            "mini",
            &format!("-dir={d}"),
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            &format!("-s3.port={base}"),
            &format!("-s3.config={}", cfg.display()),
            &format!("-s3.localSocket={d}/s3.sock"),
            &format!("-filer.localSocket={d}/filer.sock"),
            &format!("-master.port={}", base + 1),
            &format!("-volume.port={}", base + 2),
            &format!("-filer.port={}", base + 3),
            &format!("-admin.port={}", base + 4),
            // Every test bucket is a collection with a volume of its own; the default
            // maximum is derived from free disk space (27 here) and runs out mid-suite.
            "-volume.max=1000",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting weed");
    let w = Weed {
        child,
        port: base,
        _dir: dir,
    };
    let t0 = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", base)) {
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200") {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "weed not healthy in 60s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    w
}

impl Weed {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
