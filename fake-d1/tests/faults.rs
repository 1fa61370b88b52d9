//! Injected faults, the request log, `/__fake/stats` and the `fake-d1` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::{Harness, TOKEN};
use fake_d1::{Faults, Options, RateLimit, Token};
use serde_json::json;

fn every_second(f: impl FnOnce(&mut Faults)) -> Faults {
    let mut faults = Faults::default();
    f(&mut faults);
    faults
}

/// Sends two requests (the fault hits the second) and returns the second response.
fn second(h: &Harness, faults: Faults) -> common::Resp {
    h.fake.set_faults(faults);
    h.fake.clear_requests();
    let first = h.raw("db", "SELECT 1");
    assert_eq!(first.status, 200, "{}", first.text);
    let r = h.raw("db", "SELECT 1");
    h.fake.set_faults(Faults::default());
    r
}

/// A fresh fake for each fault, so the global request counter starts at 1.
fn fresh() -> Harness {
    let h = Harness::new();
    h.fake.create_database("db");
    h
}

#[test]
fn each_fault_kind() {
    let h = fresh();
    let r = second(
        &h,
        every_second(|f| {
            f.rate_limit_every = Some(2);
            f.retry_after_secs = 3;
        }),
    );
    assert_eq!(r.status, 429);
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert_eq!(
        r.text,
        "{\"result\":null,\"success\":false,\"errors\":[{\"code\":971,\"message\":\"Please wait and consider throttling your request speed\"}],\"messages\":[]}"
    );
    let rec = h.fake.requests().pop().expect("record");
    assert_eq!(
        (rec.status, rec.retry_after, rec.fault),
        (429, Some(3), Some("rate_limit"))
    );

    let h = fresh();
    let r = second(&h, every_second(|f| f.server_error_every = Some(2)));
    assert_eq!(r.status, 500);
    assert!(r.error().1.starts_with("internal error; reference = "));
    assert_eq!(r.error().0, 7500);

    let h = fresh();
    let r = second(&h, every_second(|f| f.bad_gateway_html_every = Some(2)));
    assert_eq!(r.status, 502);
    assert_eq!(r.content_type, "text/html");
    assert!(r.text.contains("502 Bad Gateway"));

    let h = fresh();
    let r = second(&h, every_second(|f| f.service_unavailable_every = Some(2)));
    assert_eq!(r.status, 503);
    assert_eq!(r.error().0, 7500);

    let h = fresh();
    let r = second(&h, every_second(|f| f.truncated_body_every = Some(2)));
    assert_eq!(r.status, 200);
    assert!(serde_json::from_str::<serde_json::Value>(&r.text).is_err());
    assert!(r.text.starts_with("{\"result\":"));

    let h = fresh();
    let r = second(&h, every_second(|f| f.non_json_every = Some(2)));
    assert_eq!(
        (r.status, r.content_type.as_str(), r.text.as_str()),
        (200, "text/plain", "upstream connect error")
    );

    let h = fresh();
    let r = second(&h, every_second(|f| f.success_false_every = Some(2)));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.error(),
        (
            7500,
            "D1 DB reset because its code was updated.".to_string()
        )
    );

    let h = fresh();
    let t = Instant::now();
    let r = second(
        &h,
        every_second(|f| f.slow_every = Some((2, Duration::from_millis(300)))),
    );
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(h.fake.requests().pop().and_then(|r| r.fault), Some("slow"));
}

#[test]
fn faulted_requests_execute_nothing() {
    let h = fresh();
    h.fake.execute("db", "CREATE TABLE t(a)");
    h.fake.set_faults(Faults {
        server_error_every: Some(1),
        ..Faults::default()
    });
    assert_eq!(h.raw("db", "INSERT INTO t VALUES (1)").status, 500);
    h.fake.set_faults(Faults::default());
    assert_eq!(h.raw_rows("db", "SELECT count(*) FROM t"), "[[0]]");
}

#[test]
fn failing_databases_and_memory_limit_override() {
    let h = fresh();
    let other = h.fake.create_database("other");
    h.fake.set_faults(Faults {
        failing_databases: vec![other.clone()],
        memory_limit_bytes: Some(50),
        ..Faults::default()
    });
    for id in [other.as_str(), "other"] {
        let r = h.raw(id, "SELECT 1");
        assert_eq!(r.status, 500);
        assert!(r.error().1.starts_with("internal error; reference = "));
        assert_eq!(h.get(&h.db_url(&format!("/{id}"))).status, 500);
    }
    let r = h.raw("db", "SELECT 1");
    assert_eq!(r.status, 500);
    assert_eq!(
        r.error().1,
        "D1 DB's isolate exceeded its memory limit and was reset."
    );
    let rec = h
        .fake
        .requests()
        .into_iter()
        .find(|r| r.database.as_deref() == Some(other.as_str()))
        .expect("record");
    assert_eq!(rec.fault, Some("failing_database"));
}

#[test]
fn write_during_reads_moves_the_bookmark() {
    let h = fresh();
    h.fake.execute("db", "CREATE TABLE t(a)");
    h.fake.set_faults(Faults {
        write_during_reads: Some((2, "INSERT INTO t VALUES (1)".into())),
        ..Faults::default()
    });
    let b0 = h.bookmark("db");
    assert_eq!(h.raw_rows("db", "SELECT count(*) FROM t"), "[[0]]");
    assert_eq!(h.bookmark("db"), b0);
    assert_eq!(h.raw_rows("db", "SELECT count(*) FROM t"), "[[1]]");
    assert_ne!(h.bookmark("db"), b0);
}

#[test]
fn request_log_fields() {
    let h = Harness::with(Options {
        latency: Duration::from_millis(800),
        ..Options::default()
    });
    let a = h.fake.create_database("a");
    let b = h.fake.create_database("b");
    std::thread::scope(|s| {
        for db in ["a", "a", "b"] {
            let h = &h;
            s.spawn(move || assert_eq!(h.raw(db, "SELECT 1").status, 200));
        }
    });
    let records = h.fake.requests();
    assert_eq!(records.len(), 3);
    assert_eq!(records.iter().map(|r| r.in_flight).max(), Some(3));
    assert_eq!(records.iter().map(|r| r.in_flight_databases).max(), Some(2));
    let mut seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![1, 2, 3]);
    for r in &records {
        assert_eq!(r.kind, "raw");
        assert_eq!(r.method, "POST");
        assert!(r.path.ends_with("/raw"));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.token_id.as_deref(),
            Some("0123456789abcdef0123456789abcd01")
        );
        assert_eq!(r.body_head, "{\"sql\":\"SELECT 1\"}");
        assert!(
            r.database.as_deref() == Some(a.as_str()) || r.database.as_deref() == Some(b.as_str())
        );
        assert!(r.finished.duration_since(r.started) >= Duration::from_millis(800));
        assert!(r.response_bytes > 100);
        assert_eq!(r.fault, None);
    }
    h.fake.clear_requests();
    let r = h.get(&format!("{}?per_page=10", h.db_url("")));
    assert_eq!(r.status, 200);
    let rec = h.fake.requests().pop().expect("record");
    assert_eq!(
        (rec.kind, rec.query.as_deref(), rec.database),
        ("list", Some("per_page=10"), None)
    );
    assert_eq!(rec.in_flight, 1);
}

/// The sum of `meta.rows_read` over the results of a `/query` or `/raw` response.
fn meta_rows_read(r: &common::Resp) -> u64 {
    r.json()["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|x| x["meta"]["rows_read"].as_u64().expect("rows_read"))
        .sum()
}

#[test]
fn request_log_records_rows_read() {
    let h = Harness::new();
    let uuid = h.fake.create_database("db");
    h.fake.execute(
        "db",
        "CREATE TABLE t(a); INSERT INTO t VALUES (1),(2),(3),(4),(5),(6)",
    );
    let other = h.fake.create_database("other");
    h.fake.clear_requests();
    let a = h.call(
        "db",
        "raw",
        &json!({"batch": [{"sql": "SELECT * FROM t"}, {"sql": "SELECT count(*) FROM t; SELECT 1"}]}),
    );
    assert_eq!(a.status, 200, "{}", a.text);
    let b = h.query("db", "SELECT a FROM t WHERE a > 4");
    assert_eq!(b.status, 200, "{}", b.text);
    let c = h.raw("other", "SELECT 1 UNION ALL SELECT 2");
    assert_eq!(meta_rows_read(&c), 2);
    // Requests that read no SQL record 0: a failed statement, a list, a bookmark.
    assert_eq!(h.raw("db", "SELECT * FROM missing").status, 400);
    assert_eq!(h.get(&h.db_url("")).status, 200);
    h.bookmark("db");

    let records = h.fake.requests();
    let rows: Vec<(&str, u64)> = records.iter().map(|r| (r.kind, r.rows_read)).collect();
    let (ra, rb) = (meta_rows_read(&a), meta_rows_read(&b));
    assert!(ra > 6, "{}", a.text);
    assert_eq!(
        rows,
        vec![
            ("raw", ra),
            ("query", rb),
            ("raw", 2),
            ("raw", 0),
            ("list", 0),
            ("bookmark", 0)
        ]
    );
    assert_eq!(h.fake.rows_read("db"), ra + rb);
    assert_eq!(h.fake.rows_read(&uuid), ra + rb);
    assert_eq!(h.fake.rows_read(&other), 2);
    assert_eq!(h.fake.rows_read("nothing"), 0);
    // Still counted after the database is deleted, by name or uuid.
    assert_eq!(
        h.send(h.http.delete(h.db_url("/other")).bearer_auth(TOKEN))
            .status,
        200
    );
    assert_eq!(h.fake.rows_read("other"), 2);
    assert_eq!(h.fake.rows_read(&other), 2);
    h.fake.clear_requests();
    assert_eq!(h.fake.rows_read("db"), 0);
}

/// A fake allowing each token `requests` API requests per `window`, with a second token.
fn limited(requests: u32, window: Duration) -> Harness {
    let h = Harness::with(Options {
        rate_limit: Some(RateLimit { requests, window }),
        tokens: vec![
            Token {
                value: TOKEN.to_string(),
                id: "0123456789abcdef0123456789abcd01".to_string(),
            },
            Token {
                value: "other-token".to_string(),
                id: "0123456789abcdef0123456789abcd02".to_string(),
            },
        ],
        ..Options::default()
    });
    h.fake.create_database("db");
    h.fake.execute("db", "CREATE TABLE t(a)");
    h
}

const RATE_LIMIT_BODY: &str = "{\"result\":null,\"success\":false,\"errors\":[{\"code\":971,\"message\":\"Please wait and consider throttling your request speed\"}],\"messages\":[]}";

#[test]
fn rate_limit_per_token() {
    let h = limited(2, Duration::from_secs(30));
    let insert = |token: &str| {
        h.send(
            h.http
                .post(h.db_url("/db/raw"))
                .bearer_auth(token)
                .body("{\"sql\":\"INSERT INTO t VALUES (1)\"}"),
        )
    };
    assert_eq!(insert(TOKEN).status, 200);
    assert_eq!(insert(TOKEN).status, 200);
    let r = insert(TOKEN);
    assert_eq!(r.status, 429);
    let secs: u32 = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("retry-after");
    assert!((1..=30).contains(&secs), "{secs}");
    assert_eq!(r.text, RATE_LIMIT_BODY);
    let rec = h.fake.requests().pop().expect("record");
    assert_eq!(
        (rec.status, rec.retry_after, rec.fault, rec.rows_read),
        (429, Some(secs), Some("rate_limit"), 0)
    );
    assert_eq!(
        rec.token_id.as_deref(),
        Some("0123456789abcdef0123456789abcd01")
    );
    // Limited requests run nothing; another token has its own budget.
    let other = h.send(
        h.http
            .post(h.db_url("/db/raw"))
            .bearer_auth("other-token")
            .body("{\"sql\":\"SELECT count(*) FROM t\"}"),
    );
    assert_eq!(other.status, 200, "{}", other.text);
    assert!(other.text.contains("\"rows\":[[2]]"), "{}", other.text);
    // Every API endpoint counts; requests without an accepted token are not limited.
    assert_eq!(h.get(&h.db_url("")).status, 429);
    let anonymous = h.send(h.http.get(h.db_url("")).bearer_auth("wrong"));
    assert_eq!(anonymous.status, 403);
}

#[test]
fn rate_limit_window_frees_and_signed_urls_are_free() {
    let h = limited(3, Duration::from_secs(1));
    let sql = "INSERT INTO t VALUES (7);";
    let etag = {
        use md5::{Digest, Md5};
        hex::encode(Md5::digest(sql.as_bytes()))
    };
    let init = h.call("db", "import", &json!({"action": "init", "etag": etag}));
    assert_eq!(init.status, 200, "{}", init.text);
    let url = init.json()["result"]["upload_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Signed-URL transfers do not count against the token.
    for _ in 0..4 {
        let put = h.http.put(&url).body(sql).send().expect("put");
        assert_eq!(put.status().as_u16(), 200);
    }
    assert_eq!(h.raw("db", "SELECT 1").status, 200);
    assert_eq!(h.raw("db", "SELECT 1").status, 200);
    let r = h.raw("db", "SELECT 1");
    assert_eq!(r.status, 429);
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(h.raw("db", "SELECT 1").status, 200);
    let faults: Vec<Option<&str>> = h
        .fake
        .requests()
        .iter()
        .filter(|r| r.kind == "raw")
        .map(|r| r.fault)
        .collect();
    assert_eq!(faults, vec![None, None, Some("rate_limit"), None]);
}

#[test]
fn stats_count_api_requests() {
    let h = fresh();
    h.raw("db", "SELECT 1");
    h.raw("db", "SELECT 1");
    h.query("db", "SELECT 1");
    h.get(&h.db_url(""));
    let text = h
        .http
        .get(format!("{}/__fake/stats", h.fake.origin()))
        .send()
        .expect("stats")
        .text()
        .expect("text");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        v,
        json!({"requests": 4, "by_kind": {"list": 1, "query": 1, "raw": 2}})
    );
}

#[test]
fn binary_serves_until_killed() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("x.sqlite");
    rusqlite::Connection::open(&path)
        .and_then(|c| c.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (7);"))
        .expect("setup");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-d1"))
        .args([
            "--token",
            "secret:abcdef0123456789abcdef0123456789",
            "--account",
            "acc",
        ])
        .arg("--db")
        .arg(format!("x={}", path.display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let second = lines.next().and_then(Result::ok).unwrap_or_default();
    let base = first
        .strip_prefix("listening ")
        .unwrap_or_default()
        .to_string();
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/client/v4"),
        "{first}"
    );
    let parts: Vec<&str> = second.split(' ').collect();
    assert_eq!(parts.len(), 3, "{second}");
    assert_eq!((parts[0], parts[1]), ("database", "x"));
    let http = reqwest::blocking::Client::new();
    let res = http
        .post(format!("{base}/accounts/acc/d1/database/{}/raw", parts[2]))
        .bearer_auth("secret")
        .body("{\"sql\":\"SELECT a FROM t\"}")
        .send()
        .expect("send");
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.text().unwrap_or_default().contains("\"rows\":[[7]]"));
    let res = http
        .get(format!("{base}/user/tokens/verify"))
        .bearer_auth(TOKEN)
        .send()
        .expect("send");
    assert_eq!(res.status().as_u16(), 403);
    // SAFETY-free termination: SIGTERM through kill(1) is not portable in std; kill() sends SIGKILL.
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
}
