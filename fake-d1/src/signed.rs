//! The presigned R2 URLs: export downloads (`GET /signed/export/<id>/<filename>`, streamed from
//! the dump file) and import uploads (`PUT /signed/import/<id>`, streamed to disk and answered
//! with the body's MD5 as `ETag`). Both are valid for one hour and need no API token. When
//! recording, each download's answer is also recorded (the dump file copied whole); uploads
//! are not recorded.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

/// Read size of a signed-URL download (the default 4 KiB costs a syscall and a chunk per page).
const DOWNLOAD_CHUNK: usize = 256 << 10;

use crate::jobs::Upload;
use crate::links::ImportLink;
use crate::log::{RequestRecord, Ticket};
use crate::replay::{self, Download, Key, Mode};
use crate::reply::{ACCESS_DENIED_XML, Reply, response};
use crate::state::App;
use crate::util::query_param;

struct Outcome {
    status: u16,
    database: Option<String>,
    fault: Option<&'static str>,
    response_bytes: usize,
    body_head: String,
}

fn record(
    app: &App,
    t: Ticket,
    method: &str,
    path: &str,
    query: Option<&str>,
    kind: &'static str,
    o: Outcome,
) {
    app.log().push(RequestRecord {
        seq: t.seq,
        method: method.to_string(),
        path: path.to_string(),
        query: query.map(str::to_string),
        kind,
        database: o.database,
        token_id: None,
        status: o.status,
        retry_after: None,
        fault: o.fault,
        started: t.started,
        finished: Instant::now(),
        in_flight: t.in_flight,
        in_flight_databases: t.in_flight_databases,
        body_head: o.body_head,
        response_bytes: o.response_bytes,
        rows_read: 0,
    });
}

fn denied() -> Response {
    Reply::access_denied().into_response()
}

/// `GET /signed/export/<id>/<filename>`.
pub async fn download(
    app: Arc<App>,
    method: &str,
    path: &str,
    rest: &str,
    query: Option<&str>,
) -> Response {
    let (id, filename) = rest.split_once('/').unwrap_or((rest, ""));
    let link = app.signed().export_link(id);
    let signature = query_param(query, "X-Amz-Signature");
    let mut outcome = Outcome {
        status: 403,
        database: link.as_ref().map(|l| l.uuid.clone()),
        fault: None,
        response_bytes: ACCESS_DENIED_XML.len(),
        body_head: String::new(),
    };
    let ticket = app.log().begin_other(outcome.database.as_deref());
    let valid = link.as_ref().filter(|l| {
        (method == "GET" || method == "HEAD")
            && l.filename == filename
            && signature.as_deref() == Some(l.signature.as_str())
            && Instant::now() < l.expires
    });
    // The dump file served and its length, for a recording.
    let mut served = None;
    let res = if app.faults().signed_url_forbidden {
        outcome.fault = Some("signed_url_forbidden");
        denied()
    } else if let Some(l) = valid {
        match tokio::fs::File::open(&l.path).await {
            Ok(file) => {
                let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
                served = Some((l.path.clone(), len));
                outcome.status = 200;
                outcome.response_bytes = usize::try_from(len).unwrap_or(usize::MAX);
                let headers = [("content-length", len.to_string())];
                let body = if method == "HEAD" {
                    Body::empty()
                } else {
                    Body::from_stream(ReaderStream::with_capacity(file, DOWNLOAD_CHUNK))
                };
                response(200, "application/sql", &headers, body)
            }
            Err(_) => denied(),
        }
    } else {
        denied()
    };
    if let Mode::Record(rec) = &app.mode {
        let answer = match served {
            Some((path, len)) => Download::File(path, len),
            None => Download::Reply(Reply::access_denied()),
        };
        let key = Key::new(method, path, query, b"");
        replay::record_download(
            Arc::clone(rec),
            key,
            method == "HEAD",
            answer,
            app.origin.clone(),
        )
        .await;
    }
    record(&app, ticket, method, path, query, "signed-export", outcome);
    res
}

/// `PUT /signed/import/<id>`.
pub async fn upload(
    app: Arc<App>,
    method: &str,
    path: &str,
    id: &str,
    query: Option<&str>,
    body: Body,
) -> Response {
    let link = app.signed().import_link(id);
    let signature = query_param(query, "X-Amz-Signature");
    let mut outcome = Outcome {
        status: 403,
        database: link.as_ref().map(|l| l.uuid.clone()),
        fault: None,
        response_bytes: ACCESS_DENIED_XML.len(),
        body_head: String::new(),
    };
    let ticket = app.log().begin_other(outcome.database.as_deref());
    let valid = link.filter(|l| {
        method == "PUT"
            && signature.as_deref() == Some(l.signature.as_str())
            && Instant::now() < l.expires
    });
    let res = match valid {
        None => denied(),
        Some(link) => match store(&app, id, &link, body).await {
            Ok((md5, head)) => {
                outcome.status = 200;
                outcome.response_bytes = 0;
                outcome.body_head = head;
                response(200, "", &[("etag", format!("\"{md5}\""))], Body::empty())
            }
            Err(e) => {
                outcome.status = 400;
                let reply = Reply::new(400, "text/plain", format!("upload failed: {e}"));
                outcome.response_bytes = reply.body.len();
                reply.into_response()
            }
        },
    };
    record(&app, ticket, method, path, query, "signed-import", outcome);
    res
}

/// Streams the request body to disk; returns its MD5 and first 300 bytes.
async fn store(
    app: &App,
    id: &str,
    link: &ImportLink,
    body: Body,
) -> Result<(String, String), String> {
    let dir = app.dir.join("imports");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| e.to_string())?;
    let path = dir.join(format!("{id}-{}", link.filename));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| e.to_string())?;
    let mut hasher = Md5::new();
    let mut head = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if head.len() < 300 {
            let take = (300 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    let md5 = hex::encode(hasher.finalize());
    if let Some(db) = app.find(&link.uuid) {
        db.lock_jobs().uploads.insert(
            link.filename.clone(),
            Upload {
                path,
                md5: md5.clone(),
            },
        );
    }
    Ok((md5, String::from_utf8_lossy(&head).into_owned()))
}
