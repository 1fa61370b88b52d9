//! `POST …/import`: init (hands out an upload URL, or starts at once if that file is already
//! uploaded), ingest (runs the uploaded SQL file in one transaction, statement by statement,
//! with D1's limits) and poll (202 "active" for a configured number of polls, then the outcome).
//! While an import is active the database refuses `/query` and `/raw`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::conn::{DbConn, d1_message};
use crate::faults::internal_error;
use crate::jobs::ImportJob;
use crate::reply::Reply;
use crate::split::StreamSplitter;
use crate::sql::{Totals, run_import_statement};
use crate::state::{App, Db};
use crate::values::Json;

fn invalid(message: &str) -> Reply {
    Reply::error(400, 7400, message)
}

fn status_error(at_bookmark: Option<&str>, error: &str) -> Json {
    let mut fields = vec![("success", Json::Bool(true)), ("type", Json::str("import"))];
    if let Some(b) = at_bookmark {
        fields.push(("at_bookmark", Json::str(b)));
    }
    fields.extend([
        ("status", Json::str("error")),
        ("error", Json::str(error)),
        ("errors", Json::Arr(vec![Json::str(error)])),
        ("messages", Json::Arr(vec![])),
    ]);
    Json::Obj(fields)
}

fn status_active(at_bookmark: &str, messages: Vec<Json>) -> Json {
    Json::Obj(vec![
        ("success", Json::Bool(true)),
        ("type", Json::str("import")),
        ("at_bookmark", Json::str(at_bookmark)),
        ("status", Json::str("active")),
        ("messages", Json::Arr(messages)),
    ])
}

/// Handles one import call.
pub async fn handle(app: Arc<App>, db: Arc<Db>, body: &[u8]) -> Reply {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return invalid("Malformed JSON in request body");
    };
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let timeout = app.options.export_poll_timeout;
    match field("action").as_deref() {
        None => invalid("Invalid property: action => Required"),
        Some("init") => {
            let Some(etag) = field("etag") else {
                return invalid("Invalid property: etag => Required");
            };
            let filename = format!("{}-{etag}.sql", db.uuid);
            let uploaded = {
                let mut jobs = db.lock_jobs();
                jobs.refresh(timeout);
                if jobs.import.is_active() {
                    return busy();
                }
                jobs.uploads
                    .get(&filename)
                    .filter(|u| u.md5 == etag)
                    .map(|u| u.path.clone())
            };
            if let Some(path) = uploaded {
                return start(app, db, path).await;
            }
            let url = app.signed().import_url(&app.origin, &db.uuid, &filename);
            Reply::ok(
                200,
                &Json::Obj(vec![
                    ("success", Json::Bool(true)),
                    ("type", Json::str("import")),
                    ("filename", Json::Str(filename)),
                    ("upload_url", Json::Str(url)),
                ]),
            )
        }
        Some("ingest") => {
            let Some(etag) = field("etag") else {
                return invalid("Invalid property: etag => Required");
            };
            let Some(filename) = field("filename") else {
                return invalid("Invalid property: filename => Required");
            };
            let upload = {
                let mut jobs = db.lock_jobs();
                jobs.refresh(timeout);
                if jobs.import.is_active() {
                    return busy();
                }
                jobs.uploads.get(&filename).cloned()
            };
            match upload {
                None => Reply::ok(
                    200,
                    &status_error(None, &format!("File {filename} was not uploaded")),
                ),
                Some(u) if u.md5 != etag => Reply::ok(
                    200,
                    &status_error(
                        None,
                        "The uploaded file's MD5 does not match the provided etag",
                    ),
                ),
                Some(u) => start(app, db, u.path).await,
            }
        }
        Some("poll") => {
            let mut jobs = db.lock_jobs();
            jobs.refresh(timeout);
            match &mut jobs.import {
                ImportJob::Active {
                    at_bookmark,
                    polls_left,
                    last_poll,
                    ..
                } if *polls_left > 0 => {
                    *polls_left -= 1;
                    *last_poll = Instant::now();
                    Reply::ok(202, &status_active(at_bookmark, vec![]))
                }
                ImportJob::Active { outcome, .. } => {
                    let reply = Reply::ok(200, outcome);
                    jobs.import = ImportJob::Idle;
                    reply
                }
                ImportJob::Idle => Reply::ok(
                    200,
                    &Json::Obj(vec![
                        ("success", Json::Bool(true)),
                        ("type", Json::str("import")),
                        ("status", Json::str("error")),
                        ("error", Json::str("Not currently importing anything.")),
                    ]),
                ),
            }
        }
        Some(_) => invalid(
            "Invalid property: action => Invalid enum value. Expected 'init' | 'ingest' | 'poll'",
        ),
    }
}

fn busy() -> Reply {
    Reply::error(
        400,
        7500,
        "D1_ERROR: Currently processing a long-running import.",
    )
}

enum Started {
    /// The bookmark before the import, and the rows it read (0 if it failed and rolled back).
    Active(String, u64),
    Blocked(&'static str),
}

/// Runs the import now and leaves it "active" for the configured number of polls.
async fn start(app: Arc<App>, db: Arc<Db>, path: PathBuf) -> Reply {
    let polls = app.options.import_active_polls;
    let timeout = app.options.export_poll_timeout;
    let task = tokio::task::spawn_blocking(move || {
        let conn = db.lock_conn();
        {
            let mut jobs = db.lock_jobs();
            jobs.refresh(timeout);
            if let Some(m) = jobs.blocked_message() {
                return Started::Blocked(m);
            }
        }
        let at_bookmark = db.bookmark();
        let started = Instant::now();
        let ran = run_file(&conn, &path);
        if matches!(&ran, Ok(t) if t.wrote) {
            db.bump();
        }
        let (outcome, rows_read) = match ran {
            Ok(t) => (
                complete(&conn, &db, &at_bookmark, &t, started.elapsed()),
                t.rows_read,
            ),
            Err(e) => (status_error(Some(&at_bookmark), &e), 0),
        };
        db.lock_jobs().import = ImportJob::Active {
            at_bookmark: at_bookmark.clone(),
            polls_left: polls,
            last_poll: Instant::now(),
            outcome,
        };
        Started::Active(at_bookmark, rows_read)
    });
    match task.await {
        // The request that runs the SQL (init or ingest) is the one whose log record gets the
        // import's rows read; the poll that reports them later reads nothing.
        Ok(Started::Active(b, rows_read)) => Reply::ok(
            202,
            &status_active(&b, vec![Json::str("Starting import...")]),
        )
        .with_rows_read(rows_read),
        Ok(Started::Blocked(m)) => Reply::error(400, 7500, m),
        Err(e) => {
            eprintln!("fake-d1: import task failed: {e}");
            internal_error()
        }
    }
}

fn complete(conn: &DbConn, db: &Db, at_bookmark: &str, t: &Totals, took: Duration) -> Json {
    let n = t.statements as f64;
    let millis = (took.as_secs_f64() * 1000.0 * 10_000.0).round() / 10_000.0;
    Json::Obj(vec![
        ("success", Json::Bool(true)),
        ("type", Json::str("import")),
        ("at_bookmark", Json::str(at_bookmark)),
        ("status", Json::str("complete")),
        (
            "messages",
            Json::Arr(vec![Json::Str(format!(
                "Processed {} queries.",
                t.statements
            ))]),
        ),
        (
            "result",
            Json::Obj(vec![
                ("final_bookmark", Json::Str(db.bookmark())),
                ("num_queries", Json::Num(n)),
                (
                    "meta",
                    Json::Obj(vec![
                        ("changed_db", Json::Bool(t.wrote)),
                        ("changes", Json::Num(t.changes as f64)),
                        ("duration", Json::Num(millis)),
                        (
                            "last_row_id",
                            Json::Num(conn.conn().last_insert_rowid() as f64),
                        ),
                        ("rows_read", Json::Num(t.rows_read as f64)),
                        ("rows_written", Json::Num(t.rows_written as f64)),
                        ("size_after", Json::Num(conn.size_bytes() as f64)),
                        ("served_by", Json::str("v3-prod")),
                    ]),
                ),
            ]),
        ),
    ])
}

/// Runs every statement of the file in one transaction; rolls back on the first error.
fn run_file(db: &DbConn, path: &Path) -> Result<Totals, String> {
    db.internal(|c| c.execute_batch("BEGIN"))
        .map_err(|e| d1_message(&e))?;
    let ran = run_statements(db, path).and_then(|t| {
        db.internal(|c| c.execute_batch("COMMIT"))
            .map_err(|e| d1_message(&e))?;
        Ok(t)
    });
    if ran.is_err() && !db.conn().is_autocommit() {
        let _ = db.internal(|c| c.execute_batch("ROLLBACK"));
    }
    ran
}

fn run_statements(db: &DbConn, path: &Path) -> Result<Totals, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut splitter = StreamSplitter::default();
    let mut totals = Totals::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        splitter.push(&buf[..n], |stmt| {
            run_import_statement(db, &String::from_utf8_lossy(&stmt), &mut totals)
        })?;
    }
    if let Some(rest) = splitter.finish() {
        run_import_statement(db, &String::from_utf8_lossy(&rest), &mut totals)?;
    }
    Ok(totals)
}
