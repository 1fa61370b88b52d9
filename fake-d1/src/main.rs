//! The `fake-d1` binary: serves the fake D1 REST API for a benchmark or a manual run.
//!
//! `fake-d1 [--listen 127.0.0.1:8787] [--account ID] [--token VALUE[:ID]]... [--db NAME=PATH]...
//! [--latency-ms N] [--max-response-bytes N] [--rate-limit N/SECONDS]
//! [--record DIR | --replay DIR]`
//!
//! `--rate-limit 1200/300` allows each token 1200 API requests in any 300 seconds (Cloudflare's
//! limit); requests over it get HTTP 429 with `retry-after`.
//!
//! `--record DIR` serves as usual and also writes every answer under `/client/v4` and every
//! signed-URL export download to DIR (created if missing), one file per distinct answer, keyed
//! by method, path, query (without `timestamp`) and the SHA-256 of the request body.
//! `--replay DIR` answers those requests from DIR after `--latency-ms`, running no SQL:
//! `--db` files are not opened (the uuids are derived from the names, as always), faults and
//! `--rate-limit` do not apply, and a request with no recording gets HTTP 500 with a D1 error
//! (code 7500, `replay: no recording for …`) and a line on stderr. `/__fake/stats` counts
//! replayed requests like live ones. The file format and the replay order are described in
//! the library's `replay` module.
//!
//! Prints `listening <base_url>` and `database <name> <uuid>` lines, then serves until SIGTERM
//! or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fake_d1::{FakeD1, Options, RateLimit, Token};

const USAGE: &str = "usage: fake-d1 [--listen ADDR] [--account ID] [--token VALUE[:ID]]... \
[--db NAME=PATH]... [--latency-ms N] [--max-response-bytes N] [--rate-limit N/SECONDS] \
[--record DIR | --replay DIR]";

struct Args {
    options: Options,
    databases: Vec<(String, PathBuf)>,
}

fn token_id(value: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(value.as_bytes()))
}

/// `N/SECONDS`: at most N API requests per token in any SECONDS (a whole number above 0).
fn rate_limit(value: &str) -> Result<RateLimit, String> {
    let bad = |why: String| format!("--rate-limit {value}: {why}");
    let (n, secs) = value
        .split_once('/')
        .ok_or_else(|| bad("expected N/SECONDS".to_string()))?;
    let requests: u32 = n.trim().parse().map_err(|e| bad(format!("{e}")))?;
    let secs: u64 = secs.trim().parse().map_err(|e| bad(format!("{e}")))?;
    if secs == 0 {
        return Err(bad("SECONDS must be above 0".to_string()));
    }
    Ok(RateLimit {
        requests,
        window: Duration::from_secs(secs),
    })
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut options = Options::default();
    let mut tokens: Vec<Token> = Vec::new();
    let mut databases = Vec::new();
    while let Some(flag) = argv.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_string());
        }
        let value = argv
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--listen" => {
                let addr: SocketAddr = value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?;
                options.listen = Some(addr);
            }
            "--account" => options.account_id = value,
            "--token" => {
                let (v, id) = match value.split_once(':') {
                    Some((v, id)) => (v.to_string(), id.to_string()),
                    None => (value.clone(), token_id(&value)),
                };
                tokens.push(Token { value: v, id });
            }
            "--db" => {
                let (name, path) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--db {value}: expected NAME=PATH"))?;
                databases.push((name.to_string(), PathBuf::from(path)));
            }
            "--latency-ms" => {
                let ms: u64 = value
                    .parse()
                    .map_err(|e| format!("--latency-ms {value}: {e}"))?;
                options.latency = Duration::from_millis(ms);
            }
            "--max-response-bytes" => {
                let n: usize = value
                    .parse()
                    .map_err(|e| format!("--max-response-bytes {value}: {e}"))?;
                options.max_response_bytes = if n == 0 { None } else { Some(n) };
            }
            "--rate-limit" => options.rate_limit = Some(rate_limit(&value)?),
            "--record" => options.record = Some(PathBuf::from(value)),
            "--replay" => options.replay = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if !tokens.is_empty() {
        options.tokens = tokens;
    }
    if options.record.is_some() && options.replay.is_some() {
        return Err(format!("--record and --replay exclude each other\n{USAGE}"));
    }
    Ok(Args { options, databases })
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeD1::try_start(args.options) {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-d1: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lines = vec![format!("listening {}", fake.base_url())];
    for (name, path) in &args.databases {
        match fake.try_add_database(name, path) {
            Ok(uuid) => lines.push(format!("database {name} {uuid}")),
            Err(e) => {
                eprintln!("fake-d1: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
    drop(stdout);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fake-d1: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(wait_for_signal());
    drop(fake);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn rate_limit_flag() {
        let a = args(&["--rate-limit", "1200/300"]).expect("parse");
        assert_eq!(
            a.options.rate_limit,
            Some(RateLimit {
                requests: 1200,
                window: Duration::from_secs(300),
            })
        );
        assert_eq!(args(&[]).expect("parse").options.rate_limit, None);
        for bad in ["1200", "x/300", "1200/x", "1200/0", "-1/5"] {
            assert!(args(&["--rate-limit", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn record_and_replay_flags() {
        let a = args(&["--record", "/tmp/r"]).expect("parse");
        assert_eq!(a.options.record, Some(PathBuf::from("/tmp/r")));
        assert_eq!(a.options.replay, None);
        let a = args(&["--replay", "/tmp/r"]).expect("parse");
        assert_eq!(a.options.replay, Some(PathBuf::from("/tmp/r")));
        assert!(args(&["--record", "/a", "--replay", "/b"]).is_err());
    }
}
