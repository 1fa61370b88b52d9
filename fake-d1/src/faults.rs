//! Injected failures: the [`Faults`] a test sets, which fault, if any, an API request gets, and
//! the answers that imitate Cloudflare's rate limiting, internal errors, gateway pages and D1
//! resets.

use std::time::Duration;

use crate::reply::Reply;
use crate::util::random_hex;

/// Injected failures. "Every Nth" counts all API requests (everything under `/client/v4`) with
/// one global counter starting at 1; request n is hit when n % N == 0. Faulted requests are
/// logged with their status and fault name and execute nothing.
#[derive(Clone, Default, Debug)]
pub struct Faults {
    /// HTTP 429 with `retry-after` and D1's 429 body (code 971).
    pub rate_limit_every: Option<u32>,
    /// Value of `retry-after` (0 means 1).
    pub retry_after_secs: u32,
    /// HTTP 500, code 7500 "internal error; reference = …".
    pub server_error_every: Option<u32>,
    /// HTTP 502 with an HTML page.
    pub bad_gateway_html_every: Option<u32>,
    /// HTTP 503 with a JSON envelope.
    pub service_unavailable_every: Option<u32>,
    /// HTTP 200 whose JSON body is cut in half.
    pub truncated_body_every: Option<u32>,
    /// HTTP 200 with the text/plain body "upstream connect error".
    pub non_json_every: Option<u32>,
    /// HTTP 200 with `success: false` (code 7500, "D1 DB reset because its code was updated.").
    pub success_false_every: Option<u32>,
    /// Sleep this long before answering (the request then runs normally).
    pub slow_every: Option<(u32, Duration)>,
    /// Names or uuids: every API request that targets them gets HTTP 500.
    pub failing_databases: Vec<String>,
    /// Overrides `Options::max_response_bytes` while set.
    pub memory_limit_bytes: Option<usize>,
    /// Exports end with status "error" and this message.
    pub export_error: Option<String>,
    /// GET of an export signed URL answers 403 with R2's XML AccessDenied body.
    pub signed_url_forbidden: bool,
    /// On every Nth `/query` or `/raw` request to a database, first run this SQL on that
    /// database as another client would (bumps its bookmark when it writes).
    pub write_during_reads: Option<(u32, String)>,
    /// Answer every page of rows (a `/query` or `/raw` request whose SQL selects `quote(…)`)
    /// with this text in place of the last cell of its first row: a hostile or broken server.
    pub hostile_cell: Option<String>,
}

/// Whether request number `n` (1-based) is hit by an "every Nth" fault.
pub fn every(setting: Option<u32>, n: u64) -> bool {
    matches!(setting, Some(k) if k > 0 && n.is_multiple_of(u64::from(k)))
}

/// Cloudflare's generic 500.
pub fn internal_error() -> Reply {
    Reply::error(
        500,
        7500,
        &format!("internal error; reference = {}", random_hex(10)),
    )
}

/// Cloudflare's rate-limit answer: HTTP 429, `retry-after: secs` (at least 1) and D1's 429
/// body. Used by the `rate_limit_every` fault and by `Options::rate_limit`.
pub fn rate_limited(secs: u32) -> Reply {
    // Body seen in third-party clients; code 971 is UNCONFIRMED as a contract.
    Reply::error(
        429,
        971,
        "Please wait and consider throttling your request speed",
    )
    .with_header("retry-after", secs.max(1).to_string())
}

/// A fault that replaces the answer to API request `n`, checked in the documented order:
/// rate_limit, server_error, bad_gateway_html, service_unavailable, truncated_body, non_json,
/// success_false.
pub fn terminal(f: &Faults, n: u64) -> Option<(&'static str, Reply)> {
    if every(f.rate_limit_every, n) {
        return Some(("rate_limit", rate_limited(f.retry_after_secs)));
    }
    if every(f.server_error_every, n) {
        return Some(("server_error", internal_error()));
    }
    if every(f.bad_gateway_html_every, n) {
        let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                    <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n\
                    </body>\r\n</html>\r\n";
        return Some(("bad_gateway_html", Reply::new(502, "text/html", page)));
    }
    if every(f.service_unavailable_every, n) {
        let reply = Reply::error(
            503,
            7500,
            "Cannot resolve D1 DB due to transient issue on remote node.",
        );
        return Some(("service_unavailable", reply));
    }
    if every(f.truncated_body_every, n) {
        let full = "{\"result\":[{\"results\":{\"columns\":[\"id\"],\"rows\":[[1],[2],[3]]},\"success\":true,\
                    \"meta\":{\"served_by\":\"v3-prod\",\"duration\":0.1}}],\"success\":true,\"errors\":[],\"messages\":[]}";
        let half = &full[..full.len() / 2];
        return Some(("truncated_body", Reply::new(200, "application/json", half)));
    }
    if every(f.non_json_every, n) {
        return Some((
            "non_json",
            Reply::new(200, "text/plain", "upstream connect error"),
        ));
    }
    if every(f.success_false_every, n) {
        let reply = Reply::error(200, 7500, "D1 DB reset because its code was updated.");
        return Some(("success_false", reply));
    }
    None
}

/// The delay of the `slow` fault for request `n`, if it applies.
pub fn slow(f: &Faults, n: u64) -> Option<Duration> {
    match f.slow_every {
        Some((k, d)) if every(Some(k), n) => Some(d),
        _ => None,
    }
}

/// Whether `names` (uuid, name, or the reference used in the path) hit `failing_databases`.
pub fn database_fails(f: &Faults, names: &[&str]) -> bool {
    f.failing_databases
        .iter()
        .any(|d| names.iter().any(|n| n == d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_counting() {
        let f = Faults {
            rate_limit_every: Some(3),
            server_error_every: Some(2),
            retry_after_secs: 0,
            ..Faults::default()
        };
        assert!(terminal(&f, 1).is_none());
        assert_eq!(terminal(&f, 2).map(|x| x.0), Some("server_error"));
        let (name, reply) = terminal(&f, 6).expect("fault");
        assert_eq!(name, "rate_limit");
        assert_eq!(reply.status, 429);
        assert_eq!(reply.retry_after(), Some(1));
        assert!(!every(Some(0), 5));
    }
}
