//! The fake's synchronous API over HTTP: envelope, value encoding, auth and routing errors,
//! limits, `_cf_KV`, multi-statement and batch requests, list/info/create/delete, bookmarks.

mod common;

use common::{Harness, TOKEN};
use fake_d1::{FakeD1, Options};
use serde_json::{Value, json};

#[test]
fn envelope_shape_and_key_order() {
    let h = Harness::new();
    h.fake.create_database("db");
    let r = h.raw("db", "SELECT 1 AS a");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    assert!(
        r.text.starts_with(
            "{\"result\":[{\"results\":{\"columns\":[\"a\"],\"rows\":[[1]]},\"success\":true,\
             \"meta\":{\"served_by\":\"v3-prod\",\"served_by_region\":\"WEUR\",\"served_by_primary\":true,"
        ),
        "{}",
        r.text
    );
    assert!(
        r.text
            .ends_with("}],\"success\":true,\"errors\":[],\"messages\":[]}"),
        "{}",
        r.text
    );
    let meta = &r.json()["result"][0]["meta"];
    for key in [
        "timings",
        "duration",
        "changes",
        "last_row_id",
        "changed_db",
        "size_after",
        "rows_read",
        "rows_written",
    ] {
        assert!(!meta[key].is_null(), "meta.{key} missing: {meta}");
    }
    let q = h.query("db", "SELECT 1 AS a, 'x' AS b");
    assert!(
        q.text.starts_with(
            "{\"result\":[{\"results\":[{\"a\":1,\"b\":\"x\"}],\"success\":true,\"meta\":{"
        ),
        "{}",
        q.text
    );

    let e = h.raw("db", "SELECT * FROM nope");
    assert_eq!(e.status, 400);
    assert_eq!(
        e.text,
        "{\"result\":null,\"success\":false,\"errors\":[{\"code\":7500,\"message\":\"no such table: nope: SQLITE_ERROR\"}],\"messages\":[]}"
    );
}

#[test]
fn values_are_encoded_like_d1() {
    let h = Harness::new();
    h.fake.create_database("db");
    let rows = h.raw_rows(
        "db",
        "SELECT 9223372036854775807, -9223372036854775808, 9007199254740993, 0.1, 1e308, 5e-324, \
         -0.0, 1.0, 1e21, 123e-20, 1e999, -1e999, 'a' || char(0) || 'b', x'0102ff', NULL, \
         CAST(x'61ff62' AS TEXT), 'é\"\\'",
    );
    assert_eq!(
        rows,
        "[[9223372036854776000,-9223372036854776000,9007199254740992,0.1,1e+308,5e-324,0,1,1e+21,1.23e-18,null,null,\"a\\u0000b\",[1,2,255],null,\"a\u{fffd}b\",\"é\\\"\\\\\"]]"
    );
    // The exact wire text, not a re-serialization.
    let r = h.raw("db", "SELECT 9007199254740993 AS n, 1.0 AS r");
    assert!(
        r.text.contains("\"rows\":[[9007199254740992,1]]"),
        "{}",
        r.text
    );
    // Duplicate names: /raw keeps both, /query keeps the last value in the first position.
    let r = h.raw("db", "SELECT 1 AS a, 2 AS b, 3 AS a");
    assert!(
        r.text
            .contains("{\"columns\":[\"a\",\"b\",\"a\"],\"rows\":[[1,2,3]]}"),
        "{}",
        r.text
    );
    let q = h.query("db", "SELECT 1 AS a, 2 AS b, 3 AS a, 4 AS \"7\"");
    assert!(
        q.text.contains("\"results\":[{\"7\":4,\"a\":3,\"b\":2}]"),
        "{}",
        q.text
    );
    // Empty results keep their columns.
    let r = h.raw("db", "SELECT 1 AS x WHERE 0");
    assert!(
        r.text.contains("{\"columns\":[\"x\"],\"rows\":[]}"),
        "{}",
        r.text
    );
}

#[test]
fn params_bind_by_position() {
    let h = Harness::new();
    h.fake.create_database("db");
    let r = h.call(
        "db",
        "raw",
        &json!({"sql": "SELECT ?, typeof(?), ?3, typeof(?4), ?5; SELECT ?", "params": ["x", 2, 2.5, true, null]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(
        v["result"][0]["results"]["rows"],
        json!([["x", "integer", 2.5, "integer", null]])
    );
    assert_eq!(v["result"][1]["results"]["rows"], json!([["x"]]));
}

#[test]
fn auth_account_route_and_database_errors() {
    let h = Harness::new();
    h.fake.create_database("db");
    let url = h.db_url("/db/raw");
    let body = json!({"sql": "SELECT 1"}).to_string();

    let r = h.send(h.http.post(&url).body(body.clone()));
    assert_eq!(r.status, 403);
    assert_eq!(r.error(), (10000, "Authentication error".to_string()));
    let r = h.send(h.http.post(&url).bearer_auth("wrong").body(body.clone()));
    assert_eq!((r.status, r.error().0), (403, 10000));

    let other = format!(
        "{}/accounts/ffffffffffffffffffffffffffffffff/d1/database/db/raw",
        h.fake.base_url()
    );
    let r = h.post(&other, &body);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.error(),
        (
            7403,
            "The given account is not valid or is not authorized to access this service"
                .to_string()
        )
    );

    let r = h.post(&h.db_url("/db/nope"), &body);
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), (7003, "No route for the URI".to_string()));

    let r = h.post(&h.db_url("/missing/raw"), &body);
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), (7404, "Not Found".to_string()));

    let r = h.post(&url, "{not json");
    assert_eq!((r.status, r.error().0), (400, 7400));
    let r = h.post(&url, "{\"params\":[]}");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error(),
        (7400, "Invalid property: sql => Required".to_string())
    );

    for verify in [
        format!("{}/user/tokens/verify", h.fake.base_url()),
        format!(
            "{}/accounts/{}/tokens/verify",
            h.fake.base_url(),
            h.fake.account_id()
        ),
    ] {
        let r = h.get(&verify);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.json()["result"],
            json!({"id": "0123456789abcdef0123456789abcd01", "status": "active"})
        );
    }
}

#[test]
fn d1_limits_come_from_sqlite() {
    let h = Harness::new();
    h.fake.create_database("db");
    // "SELECT '" + n x's + "'" is n + 9 bytes.
    let fits = format!("SELECT '{}'", "x".repeat(100_000 - 9));
    assert_eq!(fits.len(), 100_000);
    assert_eq!(h.raw("db", &fits).status, 200);
    let too_long = format!("SELECT '{}'", "x".repeat(100_001 - 9));
    let r = h.raw("db", &too_long);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error(),
        (7500, "statement too long: SQLITE_TOOBIG".to_string())
    );
    // The limit is per statement: two statements of 60,000 bytes each are fine.
    let half = format!("SELECT '{}'", "x".repeat(60_000));
    assert_eq!(h.raw("db", &format!("{half};{half}")).status, 200);

    let params: Vec<Value> = (0..101).map(|i| json!(i)).collect();
    let sql_101 = format!("SELECT {}", vec!["?"; 101].join(","));
    let r = h.call("db", "raw", &json!({"sql": sql_101, "params": params}));
    assert_eq!(r.status, 400);
    let (code, message) = r.error();
    assert_eq!(code, 7500);
    assert!(message.starts_with("too many SQL variables"), "{message}");
    assert!(message.ends_with(": SQLITE_ERROR"), "{message}");
    let sql_100 = format!("SELECT {}", vec!["?"; 100].join(","));
    let r = h.call(
        "db",
        "raw",
        &json!({"sql": sql_100, "params": &params[..100]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn cf_kv_is_listed_but_not_readable() {
    let h = Harness::new();
    h.fake.create_database("db");
    let rows = h.raw_rows(
        "db",
        "SELECT name FROM sqlite_schema WHERE name LIKE '\\_cf%' ESCAPE '\\'",
    );
    assert_eq!(rows, "[[\"_cf_KV\"]]");
    for sql in [
        "SELECT * FROM _cf_KV",
        "INSERT INTO _cf_KV VALUES('a', 1)",
        "PRAGMA journal_mode",
    ] {
        let r = h.raw("db", sql);
        assert_eq!(r.status, 400, "{sql}");
        assert_eq!(
            r.error(),
            (7500, "not authorized: SQLITE_AUTH".to_string()),
            "{sql}"
        );
    }
    assert_eq!(h.raw("db", "PRAGMA table_list").status, 200);
    let r = h.raw("db", "BEGIN");
    assert_eq!(
        r.error().1,
        "cannot start a transaction within a transaction: SQLITE_ERROR"
    );
}

#[test]
fn multi_statement_and_batch_run_in_one_transaction() {
    let h = Harness::new();
    h.fake.create_database("db");
    let r = h.query(
        "db",
        "CREATE TABLE t(a UNIQUE); INSERT INTO t VALUES (1), (2); SELECT a FROM t ORDER BY a;",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let results = v["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 3);
    assert_eq!(results[1]["meta"]["changes"], json!(2));
    assert_eq!(results[1]["meta"]["last_row_id"], json!(2));
    assert_eq!(results[2]["results"], json!([{"a": 1}, {"a": 2}]));

    let batch = json!({"batch": [
        {"sql": "INSERT INTO t VALUES (?)", "params": [3]},
        {"sql": "SELECT count(*) AS n FROM t"}
    ]});
    let r = h.call("db", "query", &batch);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["result"][1]["results"], json!([{"n": 3}]));

    let failing = json!({"batch": [
        {"sql": "INSERT INTO t VALUES (?)", "params": [4]},
        {"sql": "INSERT INTO t VALUES (?)", "params": [1]}
    ]});
    let r = h.call("db", "query", &failing);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error().1,
        "UNIQUE constraint failed: t.a: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)"
    );
    assert_eq!(h.raw_rows("db", "SELECT count(*) FROM t"), "[[3]]");
}

#[test]
fn list_get_create_delete() {
    let h = Harness::new();
    for i in 0..25 {
        h.fake.create_database(&format!("db-{i:02}"));
    }
    h.fake.create_database("other");
    let r = h.get(&h.db_url("?per_page=10&page=3"));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(
        v["result_info"],
        json!({"page": 3, "per_page": 10, "count": 6, "total_count": 26, "total_pages": 3})
    );
    assert_eq!(v["result"][0]["name"], json!("db-20"));
    assert_eq!(v["result"][5]["name"], json!("other"));
    assert!(
        r.text.contains("\"messages\":[],\"result_info\":{"),
        "{}",
        r.text
    );
    let first = &v["result"][0];
    for key in ["uuid", "created_at", "version", "num_tables", "file_size"] {
        assert!(!first[key].is_null(), "{key}");
    }
    assert_eq!(first["jurisdiction"], Value::Null);
    // per_page is clamped to at least 10; name filters by substring.
    let v = h.get(&h.db_url("?per_page=1&name=db-1")).json();
    assert_eq!(v["result_info"]["per_page"], json!(10));
    assert_eq!(v["result_info"]["total_count"], json!(10));
    let v = h.get(&h.db_url("")).json();
    assert_eq!(v["result_info"]["per_page"], json!(1000));
    assert_eq!(v["result"].as_array().map(Vec::len), Some(26));

    let uuid = h.fake.create_database("info");
    h.fake
        .execute("info", "CREATE TABLE a(x); CREATE TABLE b(y);");
    for id in [uuid.as_str(), "info"] {
        let r = h.get(&h.db_url(&format!("/{id}")));
        assert_eq!(r.status, 200);
        let info = r.json()["result"].clone();
        assert_eq!(info["uuid"], json!(uuid));
        assert_eq!(info["num_tables"], json!(2));
        assert_eq!(info["running_in_region"], json!("WEUR"));
        assert_eq!(info["read_replication"], json!({"mode": "disabled"}));
        assert!(info["file_size"].as_u64().unwrap_or(0) > 0);
    }
    let r = h.get(&h.db_url("/info?fields=uuid,name"));
    assert_eq!(r.json()["result"], json!({"uuid": uuid, "name": "info"}));

    let r = h.post(&h.db_url(""), &json!({"name": "made"}).to_string());
    assert_eq!(r.status, 200, "{}", r.text);
    let made = r.json()["result"]["uuid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(made.len(), 36);
    let r = h.post(&h.db_url(""), &json!({"name": "made"}).to_string());
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error(),
        (
            7502,
            "A database with that name already exists.".to_string()
        )
    );
    let r = h.post(&h.db_url(""), "{}");
    assert_eq!(
        r.error(),
        (7400, "Invalid property: name => Required".to_string())
    );
    let r = h.send(
        h.http
            .delete(h.db_url(&format!("/{made}")))
            .bearer_auth(TOKEN),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text,
        "{\"result\":null,\"success\":true,\"errors\":[],\"messages\":[]}"
    );
    assert_eq!(h.get(&h.db_url("/made")).status, 404);
}

#[test]
fn add_database_serves_a_file_in_place() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("mine.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (42);")
            .expect("setup");
    }
    let h = Harness::new();
    let uuid = h.fake.add_database("mine", &path);
    // md5("mine") formatted 8-4-4-4-12.
    assert_eq!(uuid.len(), 36);
    assert_eq!(uuid.matches('-').count(), 4);
    assert_eq!(h.fake.database_path(&uuid), Some(path.clone()));
    assert_eq!(h.raw_rows(&uuid, "SELECT a FROM t"), "[[42]]");
    let conn = rusqlite::Connection::open(&path).expect("open");
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = '_cf_KV'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 1);
}

#[test]
fn bookmarks_change_only_on_writes() {
    let h = Harness::new();
    h.fake.create_database("db");
    let b0 = h.bookmark("db");
    assert_eq!(b0, h.fake.bookmark("db"));
    let parts: Vec<&str> = b0.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        vec![8, 8, 8, 32]
    );
    h.raw("db", "SELECT 1");
    assert_eq!(h.bookmark("db"), b0);
    assert_eq!(h.raw("db", "CREATE TABLE t(a)").status, 200);
    let b1 = h.bookmark("db");
    assert_ne!(b1, b0);
    assert!(b1 > b0);
    h.raw("db", "SELECT * FROM t");
    assert_eq!(h.bookmark("db"), b1);
    // A failed (rolled back) request does not move it.
    h.raw("db", "INSERT INTO t VALUES (1); SELECT * FROM nope");
    assert_eq!(h.bookmark("db"), b1);
    h.fake.execute("db", "INSERT INTO t VALUES (1)");
    let b2 = h.bookmark("db");
    assert!(b2 > b1);
    h.fake.execute("db", "SELECT * FROM t");
    assert_eq!(h.bookmark("db"), b2);
    let r = h.get(&h.db_url("/db/time_travel/bookmark?timestamp=2024-01-01T00:00:00Z"));
    assert_eq!(r.json()["result"]["bookmark"], json!(b2));
}

#[test]
fn memory_limit_error() {
    let h = Harness::with(Options {
        max_response_bytes: Some(10_000),
        ..Options::default()
    });
    h.fake.create_database("db");
    assert_eq!(h.raw("db", "SELECT 1").status, 200);
    let r = h.raw("db", "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 5000) SELECT i FROM c");
    assert_eq!(r.status, 500);
    assert_eq!(
        r.error(),
        (
            7500,
            "D1 DB's isolate exceeded its memory limit and was reset.".to_string()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usable_from_async_tests() {
    let fake = FakeD1::start(Options::default());
    fake.create_database("db");
    let client = reqwest::Client::new();
    let res = client
        .post(format!(
            "{}/accounts/{}/d1/database/db/raw",
            fake.base_url(),
            fake.account_id()
        ))
        .bearer_auth(TOKEN)
        .body("{\"sql\":\"SELECT 2\"}")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.expect("text");
    assert!(text.contains("\"rows\":[[2]]"), "{text}");
    drop(fake);
}
