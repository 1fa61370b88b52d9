//! Record and replay: a recording fake writes its answers to a directory, and a replaying fake
//! serves the same requests from it byte for byte, without its database file, so without
//! running any SQL.

mod common;

use std::path::Path;

use common::{Harness, TOKEN};
use fake_d1::Options;
use serde_json::{Value, json};

/// One answer as it came over the wire.
#[derive(Debug, PartialEq, Eq)]
struct Wire {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

fn send(h: &Harness, method: &str, url: &str, body: Option<&Value>) -> Wire {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = h.http.request(method, url).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let res = req.send().expect("request");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = res.bytes().expect("body").to_vec();
    Wire {
        status,
        content_type,
        body,
    }
}

fn json_of(w: &Wire) -> Value {
    serde_json::from_slice(&w.body).expect("JSON body")
}

/// A small database file: a table of a few hundred rows.
fn make_db(path: &Path) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch(
        "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         INSERT INTO items SELECT i, 'item ' || i, i * 1.5, randomblob(8) FROM n;",
    )
    .expect("fill");
}

/// The requests both servers get: (method, path after the database, body).
fn script() -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", String::new(), None),
        (
            "GET",
            "/time_travel/bookmark?timestamp=2024-01-01T00:00:00Z".into(),
            None,
        ),
        (
            "POST",
            "/raw".into(),
            Some(
                json!({"sql": "SELECT quote(id), quote(name), quote(data) FROM items ORDER BY id"}),
            ),
        ),
        (
            "POST",
            "/query".into(),
            Some(json!({"sql": "SELECT count(*) AS n FROM items"})),
        ),
        (
            "POST",
            "/raw".into(),
            Some(
                json!({"batch": [{"sql": "SELECT 1"}, {"sql": "SELECT name FROM sqlite_schema"}]}),
            ),
        ),
        // An error answer is recorded like any other.
        (
            "POST",
            "/raw".into(),
            Some(json!({"sql": "SELECT nope FROM items"})),
        ),
    ]
}

/// Runs the export flow: start, poll until complete, download. Returns every answer.
fn export_flow(h: &Harness, uuid: &str) -> Vec<Wire> {
    let url = h.db_url(&format!("/{uuid}/export"));
    let mut out = Vec::new();
    let start = send(h, "POST", &url, Some(&json!({"output_format": "polling"})));
    assert_eq!(
        start.status,
        202,
        "{}",
        String::from_utf8_lossy(&start.body)
    );
    let bookmark = json_of(&start)["result"]["at_bookmark"].clone();
    out.push(start);
    let poll = json!({"output_format": "polling", "current_bookmark": bookmark});
    for _ in 0..10 {
        let w = send(h, "POST", &url, Some(&poll));
        let done = w.status == 200;
        out.push(w);
        if done {
            break;
        }
    }
    let last = out.last().expect("a poll");
    assert_eq!(last.status, 200);
    let signed = json_of(last)["result"]["result"]["signed_url"]
        .as_str()
        .expect("signed url")
        .to_string();
    assert!(signed.starts_with(&h.fake.origin()), "{signed}");
    out.push(send(h, "GET", &signed, None));
    out
}

#[test]
fn replay_serves_recorded_answers_without_sql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shop.sqlite");
    let rec = dir.path().join("recording");
    make_db(&db);

    // Record.
    let live = Harness::with(Options {
        record: Some(rec.clone()),
        ..Options::default()
    });
    let uuid = live.fake.add_database("shop", &db);
    let mut recorded = Vec::new();
    for (method, suffix, body) in script() {
        let url = live.db_url(&format!("/{uuid}{suffix}"));
        recorded.push(send(&live, method, &url, body.as_ref()));
    }
    assert_eq!(recorded[0].status, 200);
    assert_eq!(recorded[2].status, 200);
    assert_eq!(recorded[5].status, 400);
    let recorded_export = export_flow(&live, &uuid);
    let dump = std::fs::read(&live.fake.export_dumps()[0].1).expect("dump");
    assert_eq!(recorded_export.last().expect("download").body, dump);
    drop(live);
    let files = std::fs::read_dir(&rec).expect("recording").count();
    // 6 requests, the export start, 3 distinct poll answers (one key), the download.
    assert_eq!(files, 6 + 1 + 3 + 1);

    // Replay, with the database file gone.
    std::fs::remove_file(&db).expect("remove db");
    let replay = Harness::with(Options {
        replay: Some(rec.clone()),
        ..Options::default()
    });
    assert_eq!(replay.fake.add_database("shop", &db), uuid);
    for (i, (method, suffix, body)) in script().into_iter().enumerate() {
        // The bookmark's timestamp is not part of the key.
        let suffix = suffix.replace("2024-01-01T00:00:00Z", "2025-06-30T12:00:00Z");
        let url = replay.db_url(&format!("/{uuid}{suffix}"));
        let got = send(&replay, method, &url, body.as_ref());
        assert_eq!(got, recorded[i], "{method} {suffix}");
    }

    // The export replays its polls in order, with the signed URL on the replaying server;
    // a second run replays the same sequence again.
    for _ in 0..2 {
        let replayed = export_flow(&replay, &uuid);
        assert_eq!(replayed.len(), recorded_export.len());
        for (got, want) in replayed.iter().zip(&recorded_export) {
            let want_body = String::from_utf8_lossy(&want.body)
                .replace(&live_origin(&recorded_export), &replay.fake.origin());
            assert_eq!(got.status, want.status);
            assert_eq!(got.content_type, want.content_type);
            assert_eq!(String::from_utf8_lossy(&got.body), want_body);
        }
    }

    // A request never recorded: 500 with D1's error envelope.
    let url = replay.db_url(&format!("/{uuid}/raw"));
    let miss = send(&replay, "POST", &url, Some(&json!({"sql": "SELECT 2"})));
    assert_eq!(miss.status, 500);
    assert_eq!(miss.content_type, "application/json");
    let v = json_of(&miss);
    assert_eq!(v["success"], json!(false));
    assert_eq!(v["errors"][0]["code"], json!(7500));
    let path = format!(
        "/client/v4/accounts/{}/d1/database/{uuid}/raw",
        replay.fake.account_id()
    );
    assert_eq!(
        v["errors"][0]["message"],
        json!(format!("replay: no recording for POST {path}"))
    );

    // Replayed requests are counted like live ones.
    let stats = send(
        &replay,
        "GET",
        &format!("{}/__fake/stats", replay.fake.origin()),
        None,
    );
    let stats = json_of(&stats);
    assert_eq!(stats["by_kind"]["raw"], json!(4));
    assert_eq!(stats["by_kind"]["get"], json!(1));
    assert_eq!(
        stats["by_kind"]["export"],
        json!(2 * (recorded_export.len() - 1))
    );
    assert_eq!(
        stats["requests"],
        json!(6 + 1 + 2 * (recorded_export.len() - 1))
    );
    let raws: Vec<_> = replay
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.kind == "raw" && r.status == 200)
        .collect();
    assert_eq!(raws.len(), 2);
    assert_eq!(raws[0].rows_read, 300);
}

/// The recording server's origin, from the signed URL of a recorded export.
fn live_origin(export: &[Wire]) -> String {
    let done = &export[export.len() - 2];
    let url = json_of(done)["result"]["result"]["signed_url"]
        .as_str()
        .expect("signed url")
        .to_string();
    let end = url.find("/signed/").expect("signed path");
    url[..end].to_string()
}

#[test]
fn replay_needs_an_existing_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nothing-here");
    let err = fake_d1::FakeD1::try_start(Options {
        replay: Some(missing),
        ..Options::default()
    })
    .err()
    .expect("an error");
    assert!(err.contains("--replay"), "{err}");
    let both = fake_d1::FakeD1::try_start(Options {
        replay: Some(dir.path().to_path_buf()),
        record: Some(dir.path().to_path_buf()),
        ..Options::default()
    });
    assert!(both.is_err());
}
