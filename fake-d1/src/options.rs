//! How the fake is set up: the [`Options`] it starts with and the API [`Token`]s it accepts.
//! A leaf: plain configuration records that the rest of the fake reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// An API token the fake accepts: its secret value and its 32-hex id (what verify returns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    pub id: String,
}

/// A per-token API rate limit: at most `requests` API requests per bearer token in any
/// `window` (Cloudflare's is 1200 requests per 5 minutes per token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub window: Duration,
}

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// The only account id accepted in paths.
    pub account_id: String,
    /// Accepted bearer tokens.
    pub tokens: Vec<Token>,
    /// Added before answering every API request (not signed-URL transfers).
    pub latency: Duration,
    /// A serialized `/query` or `/raw` response larger than this gets D1's memory-limit error.
    pub max_response_bytes: Option<usize>,
    /// How many polls of an export answer 202 "active" before the one that completes it.
    pub export_active_polls: u32,
    /// How many polls of an import answer 202 "active" before the one that completes it.
    pub import_active_polls: u32,
    /// An active export (or import) not polled for this long is cancelled.
    pub export_poll_timeout: Duration,
    /// Address to listen on; `None` means 127.0.0.1 on a free port.
    pub listen: Option<SocketAddr>,
    /// When set, API requests (not signed-URL transfers) over this limit for their token get
    /// HTTP 429 with `retry-after` and D1's 429 body, and run nothing.
    pub rate_limit: Option<RateLimit>,
    /// Also write every answer under `/client/v4` and every signed-URL export download to
    /// this directory (see `replay`).
    pub record: Option<PathBuf>,
    /// Answer `/client/v4` and signed-URL requests from this recording directory, running no
    /// SQL; databases are not opened (see `replay`). Excludes `record`.
    pub replay: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            account_id: "0123456789abcdef0123456789abcdef".to_string(),
            tokens: vec![Token {
                value: "test-token".to_string(),
                id: "0123456789abcdef0123456789abcd01".to_string(),
            }],
            latency: Duration::ZERO,
            max_response_bytes: Some(32 << 20),
            export_active_polls: 2,
            import_active_polls: 1,
            export_poll_timeout: Duration::from_secs(10),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            rate_limit: None,
            record: None,
            replay: None,
        }
    }
}
