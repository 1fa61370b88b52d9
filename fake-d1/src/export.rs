//! `POST …/export`: the polling export. The first call generates the dump (D1's `dumpSql`,
//! see [`crate::dump`]) into the fake's directory and answers 202 "active"; the database then
//! refuses `/query` and `/raw` until the export completes, errors or times out. Later calls
//! carry `current_bookmark` and poll until a 200 "complete" hands out the signed URL.

use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::dump::{DumpError, DumpOptions, VIRTUAL_TABLE_ERROR, dump_sql};
use crate::faults::{Faults, internal_error};
use crate::jobs::ExportJob;
use crate::reply::Reply;
use crate::state::{App, Db, bookmark_hash};
use crate::util::random_hex;
use crate::values::Json;

fn status_error(bookmark: &str, error: &str) -> Json {
    Json::Obj(vec![
        ("success", Json::Bool(true)),
        ("type", Json::str("export")),
        ("at_bookmark", Json::str(bookmark)),
        ("status", Json::str("error")),
        ("error", Json::str(error)),
        ("messages", Json::Arr(vec![])),
    ])
}

fn status_active(bookmark: &str, message: String) -> Json {
    Json::Obj(vec![
        ("success", Json::Bool(true)),
        ("type", Json::str("export")),
        ("at_bookmark", Json::str(bookmark)),
        ("status", Json::str("active")),
        ("messages", Json::Arr(vec![Json::Str(message)])),
    ])
}

struct Request {
    current_bookmark: Option<String>,
    options: DumpOptions,
}

fn parse(body: &[u8]) -> Result<Request, Reply> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Reply::error(400, 7400, "Malformed JSON in request body"))?;
    match v.get("output_format") {
        None | Some(Value::Null) => {
            return Err(Reply::error(
                400,
                7400,
                "Invalid property: output_format => Required",
            ));
        }
        Some(Value::String(s)) if s == "polling" => {}
        Some(_) => {
            return Err(Reply::error(
                400,
                7400,
                "Invalid property: output_format => Invalid enum value. Expected 'polling'",
            ));
        }
    }
    let current_bookmark = v
        .get("current_bookmark")
        .and_then(Value::as_str)
        .map(str::to_string);
    let d = v.get("dump_options");
    let flag = |k: &str| {
        d.and_then(|d| d.get(k))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let tables = match d.and_then(|d| d.get("tables")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                Reply::error(
                    400,
                    7400,
                    "Invalid property: dump_options.tables => Expected array of strings",
                )
            })?,
        Some(_) => {
            return Err(Reply::error(
                400,
                7400,
                "Invalid property: dump_options.tables => Expected array of strings",
            ));
        }
    };
    Ok(Request {
        current_bookmark,
        options: DumpOptions {
            no_data: flag("no_data"),
            no_schema: flag("no_schema"),
            tables,
        },
    })
}

/// Handles one export call.
pub async fn handle(app: Arc<App>, db: Arc<Db>, body: &[u8], faults: &Faults) -> Reply {
    let req = match parse(body) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let timeout = app.options.export_poll_timeout;
    {
        let mut jobs = db.lock_jobs();
        jobs.refresh(timeout);
        match (&req.current_bookmark, &mut jobs.export) {
            (Some(_), job @ ExportJob::Active { .. }) => return poll(&app, &db, job, faults),
            (Some(cb), ExportJob::Finished { bookmark, result }) if bookmark == cb => {
                return Reply::ok(200, &Json::Raw(result.clone()));
            }
            (Some(_), ExportJob::Cancelled { bookmark }) => {
                return Reply::ok(
                    200,
                    &status_error(bookmark, "D1 reset before export completed!"),
                );
            }
            (None, ExportJob::Active { .. }) => return busy(),
            _ => {}
        }
    }
    start(app, db, req.options).await
}

fn busy() -> Reply {
    Reply::error(
        400,
        7500,
        "Currently processing a long-running export. Cannot start a new export until that completes or times out.",
    )
}

/// One poll of an active export (the jobs lock is held).
fn poll(app: &App, db: &Db, job: &mut ExportJob, faults: &Faults) -> Reply {
    let ExportJob::Active {
        bookmark,
        filename,
        path,
        polls_left,
        parts,
        last_poll,
    } = job
    else {
        return internal_error();
    };
    *last_poll = Instant::now();
    if *polls_left > 0 {
        *polls_left -= 1;
        *parts += 1;
        return Reply::ok(
            202,
            &status_active(bookmark, format!("Uploaded part {parts}")),
        );
    }
    let bookmark = std::mem::take(bookmark);
    let result = match &faults.export_error {
        Some(message) => status_error(&bookmark, message),
        None => {
            let url = app
                .signed()
                .export_url(&app.origin, &db.uuid, filename, path.clone());
            Json::Obj(vec![
                ("success", Json::Bool(true)),
                ("type", Json::str("export")),
                ("at_bookmark", Json::str(bookmark.clone())),
                ("status", Json::str("complete")),
                (
                    "messages",
                    Json::Arr(vec![Json::Str(format!(
                        "Finished uploading {filename} in {} parts.",
                        (*parts).max(1)
                    ))]),
                ),
                (
                    "result",
                    Json::Obj(vec![
                        ("filename", Json::str(filename.clone())),
                        ("signed_url", Json::Str(url)),
                    ]),
                ),
            ])
        }
    };
    let encoded = result.encode();
    *job = ExportJob::Finished {
        bookmark,
        result: encoded.clone(),
    };
    Reply::ok(200, &Json::Raw(encoded))
}

enum Started {
    Active { bookmark: String, filename: String },
    VirtualTable { bookmark: String },
    Busy,
    Importing,
    Failed(String),
}

/// Starts an export: generates the dump while holding the database, then marks it active.
async fn start(app: Arc<App>, db: Arc<Db>, options: DumpOptions) -> Reply {
    let task_app = Arc::clone(&app);
    let outcome = tokio::task::spawn_blocking(move || generate(&task_app, &db, &options)).await;
    match outcome {
        Ok(Started::Active { bookmark, filename }) => Reply::ok(
            202,
            &status_active(&bookmark, format!("Generating {filename}")),
        ),
        Ok(Started::VirtualTable { bookmark }) => {
            Reply::ok(200, &status_error(&bookmark, VIRTUAL_TABLE_ERROR))
        }
        Ok(Started::Busy) => busy(),
        Ok(Started::Importing) => Reply::error(
            400,
            7500,
            "D1_ERROR: Currently processing a long-running import.",
        ),
        Ok(Started::Failed(e)) => {
            eprintln!("fake-d1: export failed: {e}");
            internal_error()
        }
        Err(e) => {
            eprintln!("fake-d1: export task failed: {e}");
            internal_error()
        }
    }
}

fn generate(app: &App, db: &Db, options: &DumpOptions) -> Started {
    let conn = db.lock_conn();
    {
        let mut jobs = db.lock_jobs();
        jobs.refresh(app.options.export_poll_timeout);
        if jobs.export.is_active() {
            return Started::Busy;
        }
        if jobs.import.is_active() {
            return Started::Importing;
        }
    }
    let bookmark = db.bookmark();
    let filename = format!("{}-{}.sql", db.uuid, &bookmark_hash(&bookmark)[..8]);
    let dir = app.dir.join("exports");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Started::Failed(e.to_string());
    }
    let path = dir.join(format!("{}-{filename}", random_hex(6)));
    let file = match std::fs::File::create(&path) {
        Ok(f) => f,
        Err(e) => return Started::Failed(e.to_string()),
    };
    let mut out = BufWriter::new(file);
    let dumped = conn.internal(|c| {
        c.execute_batch("BEGIN")?;
        let r = dump_sql(c, options, &mut out);
        c.execute_batch("COMMIT")?;
        Ok(r)
    });
    let flushed = out.flush();
    let failure = match (dumped, flushed) {
        (Ok(Ok(())), Ok(())) => None,
        (Ok(Err(DumpError::VirtualTable)), _) => Some(Started::VirtualTable {
            bookmark: bookmark.clone(),
        }),
        (Ok(Err(e)), _) => Some(Started::Failed(e.to_string())),
        (Err(e), _) => Some(Started::Failed(e.to_string())),
        (_, Err(e)) => Some(Started::Failed(e.to_string())),
    };
    if let Some(f) = failure {
        let _ = std::fs::remove_file(&path);
        return f;
    }
    db.lock_jobs().export = ExportJob::Active {
        bookmark: bookmark.clone(),
        filename: filename.clone(),
        path: path.clone(),
        polls_left: app.options.export_active_polls,
        parts: 0,
        last_poll: Instant::now(),
    };
    app.dumps().push((db.uuid.clone(), path));
    Started::Active { bookmark, filename }
}
