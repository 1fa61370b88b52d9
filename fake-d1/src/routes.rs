//! Which API endpoint a method and path name: the request kind, the account id and the
//! database reference (uuid or name) taken from the path.

use crate::util::percent_decode;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// One of the [`crate::log::RequestRecord::kind`] values.
    pub kind: &'static str,
    pub account: Option<String>,
    pub database: Option<String>,
}

impl Route {
    fn new(kind: &'static str, account: Option<&str>, database: Option<&str>) -> Route {
        Route {
            kind,
            account: account.map(|a| percent_decode(a, false)),
            database: database.map(|d| percent_decode(d, false)),
        }
    }
}

/// Parses `rest`, the path after `/client/v4`.
pub fn parse(method: &str, rest: &str) -> Route {
    let trimmed = rest.trim_matches('/');
    let segs: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    match (method, segs.as_slice()) {
        ("GET", ["user", "tokens", "verify"]) => Route::new("verify", None, None),
        ("GET", ["accounts", a, "tokens", "verify"]) => Route::new("verify", Some(a), None),
        ("GET", ["accounts", a, "d1", "database"]) => Route::new("list", Some(a), None),
        ("POST", ["accounts", a, "d1", "database"]) => Route::new("create", Some(a), None),
        ("GET", ["accounts", a, "d1", "database", id]) => Route::new("get", Some(a), Some(id)),
        ("DELETE", ["accounts", a, "d1", "database", id]) => {
            Route::new("delete", Some(a), Some(id))
        }
        ("POST", ["accounts", a, "d1", "database", id, "query"]) => {
            Route::new("query", Some(a), Some(id))
        }
        ("POST", ["accounts", a, "d1", "database", id, "raw"]) => {
            Route::new("raw", Some(a), Some(id))
        }
        ("POST", ["accounts", a, "d1", "database", id, "export"]) => {
            Route::new("export", Some(a), Some(id))
        }
        ("POST", ["accounts", a, "d1", "database", id, "import"]) => {
            Route::new("import", Some(a), Some(id))
        }
        (
            "GET",
            [
                "accounts",
                a,
                "d1",
                "database",
                id,
                "time_travel",
                "bookmark",
            ],
        ) => Route::new("bookmark", Some(a), Some(id)),
        (
            "POST",
            [
                "accounts",
                a,
                "d1",
                "database",
                id,
                "time_travel",
                "restore",
            ],
        ) => Route::new("restore", Some(a), Some(id)),
        _ => Route::new("unknown", None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = parse("POST", "/accounts/acc/d1/database/my%20db/raw");
        assert_eq!(r.kind, "raw");
        assert_eq!(r.account.as_deref(), Some("acc"));
        assert_eq!(r.database.as_deref(), Some("my db"));
        assert_eq!(parse("GET", "/user/tokens/verify").kind, "verify");
        assert_eq!(
            parse("GET", "/accounts/a/d1/database/x/raw").kind,
            "unknown"
        );
        assert_eq!(parse("GET", "/nothing").kind, "unknown");
    }
}
