//! The HTTP server: one axum fallback handler that routes by path (the API under `/client/v4`,
//! the signed URLs, `/__fake/stats`), and the plumbing every API request goes through: request
//! log and in-flight tracking, the per-token rate limit, added latency, injected faults, then the
//! endpoint itself. When recording, each API answer is also written to the recording; when
//! replaying, API and signed-URL requests are answered from it after the log, in-flight
//! tracking and latency, and nothing else runs (see `replay`).

use std::sync::Arc;

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::log::RequestRecord;
use crate::options::Token;
use crate::replay::{self, Key, Mode};
use crate::reply::Reply;
use crate::state::App;
use crate::values::Json;
use crate::{api, faults, routes, signed};

/// Largest API request body read.
const MAX_BODY: usize = 512 << 20;

pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(dispatch).with_state(app)
}

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    if path == "/__fake/stats" {
        return stats(&app, &method, &path, query.as_deref());
    }
    if let Mode::Replay(_) = app.mode
        && (path.starts_with("/signed/") || api_rest(&path).is_some())
    {
        return replayed(app, req, method, path, query).await;
    }
    if let Some(rest) = path.strip_prefix("/signed/export/") {
        return signed::download(Arc::clone(&app), &method, &path, rest, query.as_deref()).await;
    }
    if let Some(id) = path.strip_prefix("/signed/import/") {
        let body = req.into_body();
        return signed::upload(Arc::clone(&app), &method, &path, id, query.as_deref(), body).await;
    }
    match api_rest(&path) {
        Some(rest) => {
            let rest = rest.to_string();
            api_request(app, req, method, path, rest, query).await
        }
        None => not_found(&app, &method, &path, query.as_deref()),
    }
}

/// The path after `/client/v4`, if it is an API path.
fn api_rest(path: &str) -> Option<&str> {
    path.strip_prefix("/client/v4")
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Ends an API request's in-flight registration, even if the handler is dropped.
struct InFlight {
    app: Arc<App>,
    database: Option<String>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.app.log().end_api(self.database.as_deref());
    }
}

/// Counts a request against its token's budget when `Options::rate_limit` is set; the
/// `retry-after` seconds if it is over the limit. Requests without an accepted token are not
/// counted: they fail authentication anyway.
fn over_budget(app: &App, token: Option<&Token>) -> Option<u32> {
    let limit = app.options.rate_limit?;
    let token = token?;
    app.budget()
        .admit(&token.id, limit, std::time::Instant::now())
        .err()
}

async fn api_request(
    app: Arc<App>,
    req: Request,
    method: String,
    path: String,
    rest: String,
    query: Option<String>,
) -> Response {
    let route = routes::parse(&method, &rest);
    let db = route.database.as_deref().and_then(|r| app.find(r));
    let database = db.as_ref().map(|d| d.uuid.clone());
    let ticket = app.log().begin_api(route.kind, database.as_deref());
    let guard = InFlight {
        app: Arc::clone(&app),
        database: database.clone(),
    };
    let token = bearer(req.headers())
        .and_then(|v| app.options.tokens.iter().find(|t| t.value == v))
        .cloned();
    // Counted on arrival, as at Cloudflare's edge; a refused request still waits out the
    // latency, then runs nothing.
    let limited = over_budget(&app, token.as_ref());
    let body = to_bytes(req.into_body(), MAX_BODY).await;
    let body = body.unwrap_or_default();
    let body_head = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if !app.options.latency.is_zero() {
        tokio::time::sleep(app.options.latency).await;
    }
    let faults = app.faults();
    let mut fault = None;
    let terminal = match limited {
        Some(secs) => Some(("rate_limit", faults::rate_limited(secs))),
        None => faults::terminal(&faults, ticket.api_n),
    };
    let reply = match terminal {
        Some((name, reply)) => {
            fault = Some(name);
            reply
        }
        None => {
            if let Some(delay) = faults::slow(&faults, ticket.api_n) {
                fault = Some("slow");
                tokio::time::sleep(delay).await;
            }
            let call = api::Call {
                route: &route,
                db,
                token: token.as_ref(),
                body: &body,
                query: query.as_deref(),
                faults: &faults,
            };
            api::handle(&app, call, &mut fault).await
        }
    };
    let key = match app.mode {
        Mode::Record(_) => Some(Key::new(&method, &path, query.as_deref(), &body)),
        _ => None,
    };
    app.log().push(RequestRecord {
        seq: ticket.seq,
        method,
        path,
        query,
        kind: route.kind,
        database,
        token_id: token.map(|t| t.id),
        status: reply.status,
        retry_after: reply.retry_after(),
        fault,
        started: ticket.started,
        finished: std::time::Instant::now(),
        in_flight: ticket.in_flight,
        in_flight_databases: ticket.in_flight_databases,
        body_head,
        response_bytes: reply.body.len(),
        rows_read: reply.rows_read,
    });
    drop(guard);
    match (&app.mode, key) {
        (Mode::Record(rec), Some(key)) => {
            replay::record_reply(Arc::clone(rec), key, reply, app.origin.clone())
                .await
                .into_response()
        }
        _ => reply.into_response(),
    }
}

/// A request answered from the recording: an API request is counted, tracked in flight and
/// delayed like a live one (but not rate-limited and not faulted); a signed-URL transfer is
/// logged like a live one.
async fn replayed(
    app: Arc<App>,
    req: Request,
    method: String,
    path: String,
    query: Option<String>,
) -> Response {
    let Mode::Replay(player) = &app.mode else {
        return not_found(&app, &method, &path, query.as_deref());
    };
    let route = api_rest(&path).map(|rest| routes::parse(&method, rest));
    let (kind, database, ticket, guard) = match &route {
        Some(route) => {
            let database = route.database.as_deref().map(replay::database_uuid);
            let ticket = app.log().begin_api(route.kind, database.as_deref());
            let guard = InFlight {
                app: Arc::clone(&app),
                database: database.clone(),
            };
            (route.kind, database, ticket, Some(guard))
        }
        None => {
            let kind = if path.starts_with("/signed/export/") {
                "signed-export"
            } else {
                "signed-import"
            };
            (kind, None, app.log().begin_other(None), None)
        }
    };
    let token_id = bearer(req.headers())
        .and_then(|v| app.options.tokens.iter().find(|t| t.value == v))
        .map(|t| t.id.clone());
    let (key, body_head) = Key::read(&method, &path, query.as_deref(), req.into_body()).await;
    if route.is_some() && !app.options.latency.is_zero() {
        tokio::time::sleep(app.options.latency).await;
    }
    let answer = player.answer(&key, method == "HEAD", &app.origin).await;
    let retry_after = answer
        .response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    app.log().push(RequestRecord {
        seq: ticket.seq,
        method,
        path,
        query,
        kind,
        database,
        token_id: route.is_some().then_some(token_id).flatten(),
        status: answer.status,
        retry_after,
        fault: None,
        started: ticket.started,
        finished: std::time::Instant::now(),
        in_flight: ticket.in_flight,
        in_flight_databases: ticket.in_flight_databases,
        body_head,
        response_bytes: usize::try_from(answer.bytes).unwrap_or(usize::MAX),
        rows_read: answer.rows_read,
    });
    drop(guard);
    answer.response
}

/// A record for a request that is not an API request.
fn record_other(
    app: &App,
    method: &str,
    path: &str,
    query: Option<&str>,
    kind: &'static str,
    reply: &Reply,
) {
    let mut log = app.log();
    let t = log.begin_other(None);
    log.push(RequestRecord {
        seq: t.seq,
        method: method.to_string(),
        path: path.to_string(),
        query: query.map(str::to_string),
        kind,
        database: None,
        token_id: None,
        status: reply.status,
        retry_after: None,
        fault: None,
        started: t.started,
        finished: std::time::Instant::now(),
        in_flight: t.in_flight,
        in_flight_databases: t.in_flight_databases,
        body_head: String::new(),
        response_bytes: reply.body.len(),
        rows_read: 0,
    });
}

/// `GET /__fake/stats`: API request counts for a benchmark running in another process.
fn stats(app: &App, method: &str, path: &str, query: Option<&str>) -> Response {
    let body = {
        let log = app.log();
        Json::Obj(vec![
            ("requests", Json::Num(log.api_requests() as f64)),
            (
                "by_kind",
                Json::Obj(
                    log.by_kind()
                        .iter()
                        .map(|(k, v)| (*k, Json::Num(*v as f64)))
                        .collect(),
                ),
            ),
        ])
        .encode()
    };
    let reply = Reply::json(200, body);
    record_other(app, method, path, query, "stats", &reply);
    reply.into_response()
}

fn not_found(app: &App, method: &str, path: &str, query: Option<&str>) -> Response {
    let reply = Reply::error(404, 7003, "No route for the URI");
    record_other(app, method, path, query, "unknown", &reply);
    reply.into_response()
}
