//! The API endpoints after the plumbing: authentication, account check, the failing-database
//! fault, database lookup, then token verification, list/get/create/delete, `/query` and `/raw`,
//! Time Travel bookmarks, and hand-off to export and import.

use std::sync::Arc;

use serde_json::Value;

use crate::faults::{self, Faults, internal_error};
use crate::options::Token;
use crate::reply::Reply;
use crate::routes::Route;
use crate::sql::{ExecError, QueryItem, Shape, execute_as_client, run_request};
use crate::state::{App, CreateError, Db};
use crate::util::query_param;
use crate::values::{Json, envelope_ok_info};
use crate::{export, import};

/// Everything the endpoint needs from the request.
pub struct Call<'a> {
    pub route: &'a Route,
    pub db: Option<Arc<Db>>,
    pub token: Option<&'a Token>,
    pub body: &'a [u8],
    pub query: Option<&'a str>,
    pub faults: &'a Faults,
}

/// Answers one API request; sets `fault` when an injected fault shaped the answer.
pub async fn handle(app: &Arc<App>, call: Call<'_>, fault: &mut Option<&'static str>) -> Reply {
    let route = call.route;
    if route.kind == "unknown" {
        return Reply::error(404, 7003, "No route for the URI");
    }
    let Some(token) = call.token else {
        return Reply::error(403, 10000, "Authentication error");
    };
    if let Some(a) = &route.account
        && *a != app.options.account_id
    {
        return Reply::error(
            403,
            7403,
            "The given account is not valid or is not authorized to access this service",
        );
    }
    if let Some(r) = &route.database {
        let mut names = vec![r.as_str()];
        if let Some(d) = &call.db {
            names.push(&d.uuid);
            names.push(&d.name);
        }
        if faults::database_fails(call.faults, &names) {
            *fault = Some("failing_database");
            return internal_error();
        }
    }
    match route.kind {
        "verify" => {
            return Reply::ok(
                200,
                &Json::Obj(vec![
                    ("id", Json::str(token.id.clone())),
                    ("status", Json::str("active")),
                ]),
            );
        }
        "list" => return list(app, call.query).await,
        "create" => return create(app, call.body).await,
        _ => {}
    }
    let Some(db) = call.db else {
        return Reply::error(404, 7404, "Not Found");
    };
    match route.kind {
        "get" => {
            let fields = query_param(call.query, "fields");
            let info = info(db).await;
            Reply::ok(200, &filter_fields(info, fields.as_deref()))
        }
        "delete" => {
            app.remove(&db.uuid);
            Reply::ok(200, &Json::Null)
        }
        "query" => query(app, db, call.body, Shape::Objects, call.faults, fault).await,
        "raw" => query(app, db, call.body, Shape::Arrays, call.faults, fault).await,
        "export" => export::handle(Arc::clone(app), db, call.body, call.faults).await,
        "import" => import::handle(Arc::clone(app), db, call.body).await,
        // `?timestamp=` is accepted and ignored: the fake keeps no history, so the nearest
        // bookmark at or before any timestamp it could be asked about is the current one.
        "bookmark" => Reply::ok(
            200,
            &Json::Obj(vec![("bookmark", Json::Str(db.bookmark()))]),
        ),
        "restore" => restore(&db, call.query),
        _ => Reply::error(404, 7003, "No route for the URI"),
    }
}

/// Restoring to the current bookmark is a no-op; the fake keeps no history to go back to.
fn restore(db: &Db, query: Option<&str>) -> Reply {
    let current = db.bookmark();
    match query_param(query, "bookmark") {
        Some(b) if b == current => Reply::ok(
            200,
            &Json::Obj(vec![
                ("bookmark", Json::Str(current.clone())),
                ("previous_bookmark", Json::Str(current)),
                ("message", Json::str("Database restored successfully")),
            ]),
        ),
        _ => Reply::error(
            400,
            7500,
            "fake-d1 keeps no history: it can only restore to the current bookmark",
        ),
    }
}

fn db_fields(db: &Db, num_tables: i64, full: bool) -> Json {
    let mut fields = vec![
        ("uuid", Json::str(db.uuid.clone())),
        ("name", Json::str(db.name.clone())),
        ("created_at", Json::str(db.created_at.clone())),
        ("version", Json::str("production")),
    ];
    if full {
        fields.extend([
            ("num_tables", Json::Num(num_tables as f64)),
            ("file_size", Json::Num(db.file_size() as f64)),
            ("running_in_region", Json::str("WEUR")),
            (
                "read_replication",
                Json::Obj(vec![("mode", Json::str("disabled"))]),
            ),
            ("jurisdiction", Json::Null),
        ]);
    } else {
        fields.extend([
            ("jurisdiction", Json::Null),
            ("num_tables", Json::Num(num_tables as f64)),
            ("file_size", Json::Num(db.file_size() as f64)),
        ]);
    }
    Json::Obj(fields)
}

/// The info object of one database.
async fn info(db: Arc<Db>) -> Json {
    tokio::task::spawn_blocking(move || {
        let n = db.lock_conn().num_tables();
        db_fields(&db, n, true)
    })
    .await
    .unwrap_or(Json::Null)
}

/// `?fields=uuid,name`: keep only those keys.
fn filter_fields(info: Json, fields: Option<&str>) -> Json {
    match (info, fields) {
        (Json::Obj(all), Some(f)) if !f.is_empty() => {
            let wanted: Vec<&str> = f.split(',').map(str::trim).collect();
            Json::Obj(
                all.into_iter()
                    .filter(|(k, _)| wanted.contains(k))
                    .collect(),
            )
        }
        (info, _) => info,
    }
}

async fn list(app: &Arc<App>, query: Option<&str>) -> Reply {
    let name = query_param(query, "name").unwrap_or_default();
    let page = query_param(query, "page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let per_page = query_param(query, "per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1000)
        .clamp(10, 10_000);
    let matching: Vec<Arc<Db>> = app
        .databases()
        .into_iter()
        .filter(|d| d.name.contains(&name))
        .collect();
    let total = matching.len();
    let chosen: Vec<Arc<Db>> = matching
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let count = chosen.len();
    let items = tokio::task::spawn_blocking(move || {
        chosen
            .iter()
            .map(|d| db_fields(d, d.lock_conn().num_tables(), false))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let info = Json::Obj(vec![
        ("page", Json::Num(page as f64)),
        ("per_page", Json::Num(per_page as f64)),
        ("count", Json::Num(count as f64)),
        ("total_count", Json::Num(total as f64)),
        ("total_pages", Json::Num(total.div_ceil(per_page) as f64)),
    ]);
    Reply::json(200, envelope_ok_info(&Json::Arr(items), &info))
}

async fn create(app: &Arc<App>, body: &[u8]) -> Reply {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Reply::error(400, 7400, "Malformed JSON in request body");
    };
    let Some(name) = v.get("name").and_then(Value::as_str) else {
        return Reply::error(400, 7400, "Invalid property: name => Required");
    };
    let app2 = Arc::clone(app);
    let name = name.to_string();
    let created = tokio::task::spawn_blocking(move || app2.create(&name)).await;
    match created {
        Ok(Ok(db)) => Reply::ok(200, &info(db).await),
        Ok(Err(CreateError::Exists)) => {
            Reply::error(400, 7502, "A database with that name already exists.")
        }
        Ok(Err(CreateError::Other(e))) => {
            eprintln!("fake-d1: create failed: {e}");
            internal_error()
        }
        Err(_) => internal_error(),
    }
}

/// A JSON parameter as D1 (JavaScript) binds it. Numbers are parsed as doubles like
/// `JSON.parse` does; whole numbers in the int64 range bind as INTEGER, others as REAL. Arrays of
/// byte numbers bind as BLOBs, the form the Worker binding uses (UNCONFIRMED for REST).
fn param(p: &Value) -> Option<rusqlite::types::Value> {
    use rusqlite::types::Value as V;
    Some(match p {
        Value::Null => V::Null,
        Value::Bool(b) => V::Integer(i64::from(*b)),
        Value::String(s) => V::Text(s.clone()),
        Value::Number(n) => {
            let f = n.as_f64()?;
            if f.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
            {
                V::Integer(f as i64)
            } else {
                V::Real(f)
            }
        }
        Value::Array(items) => V::Blob(
            items
                .iter()
                .map(|i| i.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()?,
        ),
        Value::Object(_) => return None,
    })
}

fn query_item(v: &Value, prefix: &str) -> Result<QueryItem, String> {
    let sql = match v.get("sql") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => {
            return Err(format!("Invalid property: {prefix}sql => Required"));
        }
        Some(_) => return Err(format!("Invalid property: {prefix}sql => Expected string")),
    };
    let params = match v.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, p)| {
                param(p)
                    .ok_or_else(|| format!("Invalid property: {prefix}params.{j} => Invalid input"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(format!(
                "Invalid property: {prefix}params => Expected array"
            ));
        }
    };
    Ok(QueryItem { sql, params })
}

/// The body of `/query` and `/raw`: `{sql, params}` or `{batch: [{sql, params}, …]}`.
pub fn parse_query_body(body: &[u8]) -> Result<Vec<QueryItem>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| "Malformed JSON in request body".to_string())?;
    if !v.is_object() {
        return Err("Invalid property: sql => Required".to_string());
    }
    match v.get("batch") {
        None | Some(Value::Null) => Ok(vec![query_item(&v, "")?]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, it)| query_item(it, &format!("batch.{i}.")))
            .collect(),
        Some(_) => Err("Invalid property: batch => Expected array".to_string()),
    }
}

enum Ran {
    /// The response body and the rows the request read.
    Done(String, u64),
    Blocked(&'static str),
    Failed(ExecError),
}

async fn query(
    app: &Arc<App>,
    db: Arc<Db>,
    body: &[u8],
    shape: Shape,
    faults: &Faults,
    fault: &mut Option<&'static str>,
) -> Reply {
    let items = match parse_query_body(body) {
        Ok(items) => items,
        Err(m) => return Reply::error(400, 7400, &m),
    };
    let limit = app.memory_limit(faults);
    let timeout = app.options.export_poll_timeout;
    let n = db.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    let inject = faults
        .write_during_reads
        .clone()
        .filter(|(k, _)| faults::every(Some(*k), n))
        .map(|(_, sql)| sql);
    if inject.is_some() {
        *fault = Some("write_during_reads");
    }
    // Pages of user tables: statements selecting `quote(…)`, not from SQLite's own tables.
    let pages: Vec<bool> = items
        .iter()
        .map(|it| it.sql.contains("quote(") && !it.sql.contains("sqlite_"))
        .collect();
    let hostile = faults
        .hostile_cell
        .clone()
        .filter(|_| pages.iter().any(|&p| p));
    if hostile.is_some() {
        *fault = Some("hostile_cell");
    }
    let ran = tokio::task::spawn_blocking(move || {
        let conn = db.lock_conn();
        {
            let mut jobs = db.lock_jobs();
            jobs.refresh(timeout);
            if let Some(m) = jobs.blocked_message() {
                return Ran::Blocked(m);
            }
        }
        if let Some(sql) = inject {
            match execute_as_client(&conn, &sql) {
                Ok(true) => db.bump(),
                Ok(false) => {}
                Err(e) => eprintln!("fake-d1: write_during_reads SQL failed: {e}"),
            }
        }
        match run_request(&conn, &items, shape, limit) {
            Ok(done) => {
                if done.wrote {
                    db.bump();
                }
                Ran::Done(done.body, done.rows_read)
            }
            Err(e) => Ran::Failed(e),
        }
    })
    .await;
    match ran {
        Ok(Ran::Done(body, rows_read)) => match hostile {
            Some(cell) => Reply::json(200, plant_cell(&body, &cell, &pages)),
            None => Reply::json(200, body),
        }
        .with_rows_read(rows_read),
        Ok(Ran::Blocked(m)) => Reply::error(500, 7500, m),
        Ok(Ran::Failed(ExecError::Sql(m))) => Reply::error(400, 7500, &m),
        // The HTTP status of this error is UNCONFIRMED; a reset isolate looks like a 5xx.
        Ok(Ran::Failed(ExecError::MemoryLimit)) => Reply::error(
            500,
            7500,
            "D1 DB's isolate exceeded its memory limit and was reset.",
        ),
        Err(_) => internal_error(),
    }
}

/// `body` with `cell` in place of the last cell of the first row of every result whose
/// statement is a page of a user table (`pages`, by statement).
fn plant_cell(body: &str, cell: &str, pages: &[bool]) -> String {
    fn plant(result: &mut Value, cell: &str) {
        if let Some(Value::Array(rows)) = result.pointer_mut("/results/rows")
            && let Some(Value::Array(first)) = rows.first_mut()
            && let Some(last) = first.last_mut()
        {
            *last = Value::String(cell.to_string());
        }
    }
    fn walk(v: &mut Value, cell: &str, pages: &[bool]) {
        if let Some(Value::Array(results)) = v.get_mut("result") {
            for (i, r) in results.iter_mut().enumerate() {
                if pages.get(i).copied().unwrap_or(false) {
                    plant(r, cell);
                }
            }
        }
    }
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            walk(&mut v, cell, pages);
            v.to_string()
        }
        Err(_) => body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_bind_like_javascript() {
        use rusqlite::types::Value as V;
        let items = parse_query_body(
            br#"{"sql":"SELECT ?","params":["a",1,1.5,1.0,null,true,9007199254740993,1e300,[1,2]]}"#,
        )
        .expect("parse");
        assert_eq!(
            items[0].params,
            vec![
                V::Text("a".into()),
                V::Integer(1),
                V::Real(1.5),
                V::Integer(1),
                V::Null,
                V::Integer(1),
                V::Integer(9_007_199_254_740_992),
                V::Real(1e300),
                V::Blob(vec![1, 2]),
            ]
        );
        assert_eq!(
            parse_query_body(br#"{"params":[]}"#).unwrap_err(),
            "Invalid property: sql => Required"
        );
        assert_eq!(
            parse_query_body(br#"{"batch":[{"sql":"SELECT 1"},{}]}"#).unwrap_err(),
            "Invalid property: batch.1.sql => Required"
        );
    }
}
