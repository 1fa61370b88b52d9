//! An HTTP answer before it becomes an axum response: status, content type, body bytes and extra
//! headers, plus the Cloudflare envelope constructors. It also carries the rows the request read,
//! which the request log records but the response does not show.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::values::{Json, envelope_err, envelope_ok};

/// R2's answer to a forbidden, unknown or badly signed presigned URL.
pub const ACCESS_DENIED_XML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    /// Rows the request read (D1 bills rows scanned): the sum of every statement's
    /// `meta.rows_read` it ran. For the request log only; 0 when no SQL ran.
    pub rows_read: u64,
}

impl Reply {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
            rows_read: 0,
        }
    }

    /// A JSON body.
    pub fn json(status: u16, body: String) -> Reply {
        Reply::new(status, "application/json", body)
    }

    /// A success envelope around `result`.
    pub fn ok(status: u16, result: &Json) -> Reply {
        Reply::json(status, envelope_ok(result))
    }

    /// A failure envelope.
    pub fn error(status: u16, code: u32, message: &str) -> Reply {
        Reply::json(status, envelope_err(code, message))
    }

    /// R2's XML AccessDenied.
    pub fn access_denied() -> Reply {
        Reply::new(403, "application/xml", ACCESS_DENIED_XML)
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    pub fn with_rows_read(mut self, rows_read: u64) -> Reply {
        self.rows_read = rows_read;
        self
    }

    /// The `retry-after` header value, if any.
    pub fn retry_after(&self) -> Option<u32> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, v)| v.parse().ok())
    }

    pub fn into_response(self) -> Response {
        response(
            self.status,
            self.content_type,
            &self.headers,
            Body::from(self.body),
        )
    }
}

/// Builds a response from parts (also used for streamed bodies).
pub fn response(
    status: u16,
    content_type: &'static str,
    headers: &[(&'static str, String)],
    body: Body,
) -> Response {
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = res.headers_mut();
    if !content_type.is_empty() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    res
}
