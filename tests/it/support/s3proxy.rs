//! A fault-injecting HTTP proxy in front of the S3 test server. Every request is forwarded
//! unchanged (SigV4 signatures stay valid: the `Host` header is passed through), except the
//! ones the chosen [`Fault`] picks, which get S3's `500 InternalError` answer every time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode};

/// Which requests fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `UploadPart` with this part number, every time.
    Part(u32),
    /// `UploadPart` with this part number, the first time only (a transient failure).
    PartOnce(u32),
    /// `CompleteMultipartUpload`.
    Complete,
}

impl Fault {
    fn hits(self, method: &str, query: &str) -> bool {
        let has = |p: &str| {
            query
                .split('&')
                .any(|kv| kv == p || kv.starts_with(&format!("{p}=")))
        };
        match self {
            Fault::Part(n) | Fault::PartOnce(n) => {
                method == "PUT"
                    && has("uploadId")
                    && query.split('&').any(|kv| kv == format!("partNumber={n}"))
            }
            Fault::Complete => method == "POST" && has("uploadId"),
        }
    }
}

pub struct S3Proxy {
    pub endpoint: String,
    /// How many requests the fault answered.
    pub faulted: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

const INTERNAL_ERROR: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>"#;

impl S3Proxy {
    pub fn start(upstream: &str, fault: Fault) -> S3Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let faulted = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let counter = Arc::clone(&faulted);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let (client, upstream, counter) = (client.clone(), upstream.clone(), counter.clone());
            async move { forward(req, &client, &upstream, fault, &counter).await }
        });
        rt.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        S3Proxy {
            endpoint,
            faulted,
            _rt: rt,
        }
    }
}

async fn forward(
    req: Request<Body>,
    client: &reqwest::Client,
    upstream: &str,
    fault: Fault,
    faulted: &AtomicUsize,
) -> Response<Body> {
    let method = req.method().as_str().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    let once = matches!(fault, Fault::PartOnce(_));
    if fault.hits(&method, &query) && (!once || faulted.load(Ordering::SeqCst) == 0) {
        faulted.fetch_add(1, Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header("content-type", "application/xml")
            .body(Body::from(INTERNAL_ERROR))
            .unwrap();
    }
    let mut out = HeaderMap::new();
    for (k, v) in &headers {
        if !matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "expect"
        ) {
            out.append(k.clone(), v.clone());
        }
    }
    let resp = client
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{upstream}{path_and_query}"),
        )
        .headers(out)
        .body(body)
        .send()
        .await
        .unwrap();
    let mut builder = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if !matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            builder = builder.header(k.as_str(), v.as_bytes());
        }
    }
    let bytes = resp.bytes().await.unwrap();
    builder.body(Body::from(bytes)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_selection() {
        let cases = [
            (Fault::Part(2), "PUT", "partNumber=2&uploadId=abc", true),
            (Fault::Part(2), "PUT", "uploadId=abc&partNumber=2", true),
            (Fault::Part(2), "PUT", "partNumber=20&uploadId=abc", false),
            (Fault::Part(2), "PUT", "", false),
            (Fault::Complete, "POST", "uploadId=abc", true),
            (Fault::Complete, "POST", "uploads", false),
            (Fault::Complete, "PUT", "partNumber=1&uploadId=abc", false),
        ];
        for (fault, method, query, want) in cases {
            assert_eq!(
                fault.hits(method, query),
                want,
                "{fault:?} {method} {query}"
            );
        }
    }
}
