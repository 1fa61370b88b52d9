//! Long-running jobs over HTTP: the polling export (202 then 200, the signed URL serving D1's
//! dumpSql bytes, the database blocked meanwhile, the virtual-table error, the poll timeout)
//! and the import (init, upload, ingest, poll; statement-too-long rolls back).

mod common;

use std::time::Duration;

use common::Harness;
use fake_d1::{Faults, Options};
use serde_json::{Value, json};

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}

fn export(h: &Harness, db: &str, body: Value) -> common::Resp {
    h.call(db, "export", &body)
}

#[test]
fn export_happy_path() {
    let h = Harness::new();
    let uuid = h.fake.create_database("db");
    h.fake.execute(
        "db",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v);
         INSERT INTO t VALUES (1, 'a''b'), (2, 9007199254740993), (3, x'00ff'), (4, 'x\ny');
         CREATE INDEX tv ON t(v);",
    );
    let bookmark = h.fake.bookmark("db");

    let r = export(&h, "db", json!({"output_format": "polling"}));
    assert_eq!(r.status, 202, "{}", r.text);
    let v = r.json()["result"].clone();
    let filename = format!("{uuid}-{}.sql", &bookmark[27..35]);
    assert_eq!(
        v,
        json!({"success": true, "type": "export", "at_bookmark": bookmark, "status": "active",
               "messages": [format!("Generating {filename}")]})
    );

    // Blocked while active.
    let q = h.raw("db", "SELECT 1");
    assert_eq!(q.status, 500);
    assert_eq!(
        q.error(),
        (
            7500,
            "D1_ERROR: Currently processing a long-running export.".to_string()
        )
    );
    // A second export cannot start.
    let again = export(&h, "db", json!({"output_format": "polling"}));
    assert_eq!(again.status, 400);
    assert!(
        again
            .error()
            .1
            .starts_with("Currently processing a long-running export.")
    );

    let poll = json!({"output_format": "polling", "current_bookmark": bookmark});
    for part in 1..=2 {
        let r = export(&h, "db", poll.clone());
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(
            r.json()["result"]["messages"],
            json!([format!("Uploaded part {part}")])
        );
    }
    let r = export(&h, "db", poll.clone());
    assert_eq!(r.status, 200, "{}", r.text);
    let done = r.json()["result"].clone();
    assert_eq!(done["status"], json!("complete"));
    assert_eq!(done["at_bookmark"], json!(bookmark));
    assert_eq!(done["result"]["filename"], json!(filename));
    let url = done["result"]["signed_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        url.starts_with(&format!("{}/signed/export/", h.fake.origin())),
        "{url}"
    );
    assert!(
        url.contains("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="),
        "{url}"
    );
    assert!(url.contains("&X-Amz-Expires=3600&"), "{url}");

    // Unblocked again.
    assert_eq!(h.raw("db", "SELECT 1").status, 200);

    // The signed URL needs no auth and serves the dump.
    let res = h.http.get(&url).send().expect("download");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/sql")
    );
    let bytes = res.bytes().expect("bytes").to_vec();
    let expected = [
        "PRAGMA defer_foreign_keys=TRUE;",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v);",
        "INSERT INTO \"t\" (\"id\",\"v\") VALUES(1,'a''b');",
        "INSERT INTO \"t\" (\"id\",\"v\") VALUES(2,9007199254740992);",
        "INSERT INTO \"t\" (\"id\",\"v\") VALUES(3,X'00ff');",
        "INSERT INTO \"t\" (\"id\",\"v\") VALUES(4,replace('x\\ny','\\n',char(10)));",
        "CREATE INDEX tv ON t(v);",
    ]
    .join("\n");
    assert_eq!(String::from_utf8_lossy(&bytes), expected);
    let dumps = h.fake.export_dumps();
    assert_eq!(dumps.len(), 1);
    assert_eq!(dumps[0].0, uuid);
    assert_eq!(std::fs::read(&dumps[0].1).expect("dump file"), bytes);

    // A repeated final poll gets the same answer; a wrong signature is refused.
    let r = export(&h, "db", poll);
    assert_eq!(r.json()["result"]["result"]["signed_url"], json!(url));
    let bad = url.replace("X-Amz-Signature=", "X-Amz-Signature=00");
    let res = h.http.get(&bad).send().expect("download");
    assert_eq!(res.status().as_u16(), 403);
    assert!(
        res.text()
            .unwrap_or_default()
            .contains("<Code>AccessDenied</Code>")
    );

    let kinds: Vec<&str> = h.fake.requests().iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&"signed-export"));
}

#[test]
fn export_options_and_validation() {
    let h = Harness::with(Options {
        export_active_polls: 0,
        ..Options::default()
    });
    h.fake.create_database("db");
    h.fake.execute(
        "db",
        "CREATE TABLE a(x); CREATE TABLE b(y); INSERT INTO a VALUES (1); INSERT INTO b VALUES (2);",
    );
    let r = export(&h, "db", json!({}));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error(),
        (
            7400,
            "Invalid property: output_format => Required".to_string()
        )
    );
    let r = export(&h, "db", json!({"output_format": "other"}));
    assert_eq!((r.status, r.error().0), (400, 7400));

    let r = export(
        &h,
        "db",
        json!({"output_format": "polling", "dump_options": {"tables": ["b"], "no_schema": true}}),
    );
    assert_eq!(r.status, 202);
    let b = r.json()["result"]["at_bookmark"].clone();
    let r = export(
        &h,
        "db",
        json!({"output_format": "polling", "current_bookmark": b}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let url = r.json()["result"]["result"]["signed_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let text = h.http.get(&url).send().expect("get").text().expect("text");
    assert_eq!(
        text,
        "PRAGMA defer_foreign_keys=TRUE;\nINSERT INTO \"b\" (\"y\") VALUES(2);"
    );
}

#[test]
fn virtual_tables_make_the_export_fail() {
    let h = Harness::new();
    h.fake.create_database("db");
    h.fake.execute(
        "db",
        "CREATE TABLE a(x); CREATE VIRTUAL TABLE f USING fts5(body);",
    );
    let bookmark = h.fake.bookmark("db");
    let r = export(&h, "db", json!({"output_format": "polling"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["result"],
        json!({"success": true, "type": "export", "at_bookmark": bookmark, "status": "error",
               "error": "D1 Export error: cannot export databases with Virtual Tables (fts5)", "messages": []})
    );
    // Not blocked afterwards; a table filter that leaves the virtual table out works.
    assert_eq!(h.raw("db", "SELECT 1").status, 200);
    let r = export(
        &h,
        "db",
        json!({"output_format": "polling", "dump_options": {"tables": ["a"]}}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
}

#[test]
fn unpolled_export_is_cancelled() {
    let h = Harness::with(Options {
        export_poll_timeout: Duration::from_secs(1),
        ..Options::default()
    });
    h.fake.create_database("db");
    let r = export(&h, "db", json!({"output_format": "polling"}));
    assert_eq!(r.status, 202);
    let b = r.json()["result"]["at_bookmark"].clone();
    assert_eq!(h.raw("db", "SELECT 1").status, 500);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(h.raw("db", "SELECT 1").status, 200);
    let r = export(
        &h,
        "db",
        json!({"output_format": "polling", "current_bookmark": b}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["status"], json!("error"));
    assert_eq!(
        r.json()["result"]["error"],
        json!("D1 reset before export completed!")
    );
}

#[test]
fn export_error_fault() {
    let h = Harness::with(Options {
        export_active_polls: 0,
        ..Options::default()
    });
    h.fake.create_database("db");
    h.fake.set_faults(Faults {
        export_error: Some("boom".into()),
        ..Faults::default()
    });
    let r = export(&h, "db", json!({"output_format": "polling"}));
    let b = r.json()["result"]["at_bookmark"].clone();
    let r = export(
        &h,
        "db",
        json!({"output_format": "polling", "current_bookmark": b}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["status"], json!("error"));
    assert_eq!(r.json()["result"]["error"], json!("boom"));
    assert_eq!(h.raw("db", "SELECT 1").status, 200);
}

#[test]
fn signed_url_forbidden_fault() {
    let h = Harness::with(Options {
        export_active_polls: 0,
        ..Options::default()
    });
    h.fake.create_database("db");
    let r = export(&h, "db", json!({"output_format": "polling"}));
    let b = r.json()["result"]["at_bookmark"].clone();
    let r = export(
        &h,
        "db",
        json!({"output_format": "polling", "current_bookmark": b}),
    );
    let url = r.json()["result"]["result"]["signed_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    h.fake.set_faults(Faults {
        signed_url_forbidden: true,
        ..Faults::default()
    });
    let res = h.http.get(&url).send().expect("get");
    assert_eq!(res.status().as_u16(), 403);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/xml")
    );
    assert_eq!(
        res.text().unwrap_or_default(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    );
    let rec = h
        .fake
        .requests()
        .into_iter()
        .find(|r| r.kind == "signed-export")
        .expect("record");
    assert_eq!(rec.fault, Some("signed_url_forbidden"));
    assert_eq!(rec.status, 403);
}

fn upload(h: &Harness, db: &str, sql: &str) -> (String, String) {
    let etag = md5_hex(sql.as_bytes());
    let r = h.call(db, "import", &json!({"action": "init", "etag": etag}));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json()["result"].clone();
    let filename = v["filename"].as_str().unwrap_or_default().to_string();
    let url = v["upload_url"].as_str().unwrap_or_default().to_string();
    let res = h.http.put(&url).body(sql.to_string()).send().expect("put");
    assert_eq!(res.status().as_u16(), 200);
    let got = res
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(got, format!("\"{etag}\""));
    (etag, filename)
}

#[test]
fn import_happy_path() {
    let h = Harness::new();
    let uuid = h.fake.create_database("db");
    let sql = "PRAGMA defer_foreign_keys=TRUE;\n\
               CREATE TABLE parent(id INTEGER PRIMARY KEY, note);\n\
               CREATE TABLE child(id INTEGER PRIMARY KEY, p REFERENCES parent(id));\n\
               INSERT INTO child VALUES(1, 10);\n\
               INSERT INTO \"parent\" (\"id\",\"note\") VALUES(10,replace('a;\\nb','\\n',char(10)));\n\
               CREATE TRIGGER tr AFTER INSERT ON parent BEGIN UPDATE parent SET note = 'x'; END;";
    let (etag, filename) = upload(&h, "db", sql);
    assert_eq!(filename, format!("{uuid}-{etag}.sql"));
    let before = h.fake.bookmark("db");

    let r = h.call(
        "db",
        "import",
        &json!({"action": "ingest", "etag": etag, "filename": filename}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(
        r.json()["result"],
        json!({"success": true, "type": "import", "at_bookmark": before, "status": "active", "messages": ["Starting import..."]})
    );
    let q = h.raw("db", "SELECT 1");
    assert_eq!(q.status, 500);
    assert_eq!(
        q.error().1,
        "D1_ERROR: Currently processing a long-running import."
    );

    let poll = json!({"action": "poll", "current_bookmark": before});
    assert_eq!(h.call("db", "import", &poll).status, 202);
    let r = h.call("db", "import", &poll);
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json()["result"].clone();
    assert_eq!(v["status"], json!("complete"), "{v}");
    assert_eq!(v["messages"], json!(["Processed 6 queries."]));
    assert_eq!(v["result"]["num_queries"], json!(6));
    let final_bookmark = v["result"]["final_bookmark"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_ne!(final_bookmark, before);
    assert_eq!(final_bookmark, h.fake.bookmark("db"));
    assert_eq!(v["result"]["meta"]["served_by"], json!("v3-prod"));
    assert_eq!(
        h.raw_rows("db", "SELECT note FROM parent"),
        "[[\"a;\\nb\"]]"
    );

    let r = h.call("db", "import", &poll);
    assert_eq!(
        r.json()["result"],
        json!({"success": true, "type": "import", "status": "error", "error": "Not currently importing anything."})
    );

    // Init with an etag already uploaded starts at once, without an upload URL.
    h.fake.execute(
        "db",
        "DROP TRIGGER tr; DROP TABLE child; DROP TABLE parent;",
    );
    let r = h.call("db", "import", &json!({"action": "init", "etag": etag}));
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(r.json()["result"].get("upload_url").is_none());
    assert_eq!(r.json()["result"]["status"], json!("active"));
}

#[test]
fn import_records_rows_read() {
    let h = Harness::with(Options {
        import_active_polls: 0,
        ..Options::default()
    });
    h.fake.create_database("db");
    let sql = "CREATE TABLE t(a);\nINSERT INTO t VALUES (1),(2),(3),(4);\n\
               INSERT INTO t SELECT a + 10 FROM t;\nINSERT INTO t SELECT a FROM t WHERE a > 10;\n";
    let (etag, filename) = upload(&h, "db", sql);
    h.fake.clear_requests();
    let r = h.call(
        "db",
        "import",
        &json!({"action": "ingest", "etag": etag, "filename": filename}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let r = h.call("db", "import", &json!({"action": "poll"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let total = r.json()["result"]["result"]["meta"]["rows_read"]
        .as_u64()
        .expect("rows_read");
    assert!(total >= 8, "{}", r.text);
    // The ingest that ran the SQL carries the import's rows read; the poll reads nothing.
    let rows: Vec<(u64, u64)> = h
        .fake
        .requests()
        .iter()
        .map(|r| (r.status.into(), r.rows_read))
        .collect();
    assert_eq!(rows, vec![(202, total), (200, 0)]);
    assert_eq!(h.fake.rows_read("db"), total);
}

#[test]
fn import_errors_roll_back() {
    let h = Harness::with(Options {
        import_active_polls: 0,
        ..Options::default()
    });
    h.fake.create_database("db");
    let long = format!("INSERT INTO t VALUES('{}');", "x".repeat(100_001));
    let sql = format!("CREATE TABLE t(a);\nINSERT INTO t VALUES('ok');\n{long}\n");
    let (etag, filename) = upload(&h, "db", &sql);
    let r = h.call(
        "db",
        "import",
        &json!({"action": "ingest", "etag": etag, "filename": filename}),
    );
    assert_eq!(r.status, 202);
    let b = r.json()["result"]["at_bookmark"].clone();
    let r = h.call(
        "db",
        "import",
        &json!({"action": "poll", "current_bookmark": b}),
    );
    assert_eq!(r.status, 200);
    let v = r.json()["result"].clone();
    assert_eq!(v["status"], json!("error"));
    assert_eq!(v["error"], json!("statement too long: SQLITE_TOOBIG"));
    assert_eq!(v["errors"], json!(["statement too long: SQLITE_TOOBIG"]));
    assert_eq!(
        h.raw("db", "SELECT * FROM t").error().1,
        "no such table: t: SQLITE_ERROR"
    );

    let (etag, filename) = upload(&h, "db", "BEGIN TRANSACTION;\nCREATE TABLE u(a);\nCOMMIT;");
    h.call(
        "db",
        "import",
        &json!({"action": "ingest", "etag": etag, "filename": filename}),
    );
    let r = h.call(
        "db",
        "import",
        &json!({"action": "poll", "current_bookmark": ""}),
    );
    assert_eq!(
        r.json()["result"]["error"],
        json!("cannot start a transaction within a transaction: SQLITE_ERROR")
    );

    // Wrong etag at ingest.
    let (_, filename) = upload(&h, "db", "SELECT 1;");
    let r = h.call(
        "db",
        "import",
        &json!({"action": "ingest", "etag": "0".repeat(32), "filename": filename}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["status"], json!("error"));
}
