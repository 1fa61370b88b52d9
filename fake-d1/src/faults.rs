//! Injected failures ([`crate::Faults`]): which fault, if any, an API request gets, and the
//! answers that imitate Cloudflare's rate limiting, internal errors, gateway pages and D1 resets.

use std::time::Duration;

use crate::Faults;
use crate::reply::Reply;
use crate::util::random_hex;

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

/// A fault that replaces the answer to API request `n`, checked in the documented order:
/// rate_limit, server_error, bad_gateway_html, service_unavailable, truncated_body, non_json,
/// success_false.
pub fn terminal(f: &Faults, n: u64) -> Option<(&'static str, Reply)> {
    if every(f.rate_limit_every, n) {
        let secs = f.retry_after_secs.max(1);
        // Body seen in third-party clients; code 971 is UNCONFIRMED as a contract.
        let reply = Reply::error(
            429,
            971,
            "Please wait and consider throttling your request speed",
        )
        .with_header("retry-after", secs.to_string());
        return Some(("rate_limit", reply));
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
