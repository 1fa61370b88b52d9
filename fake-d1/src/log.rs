//! The request log: a global sequence number, the API request counter that faults key on,
//! per-kind counts for `/__fake/stats`, in-flight tracking (overall and per database) and the
//! finished [`RequestRecord`]s that tests inspect. A leaf: it imports nothing from the crate.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// One request the fake answered.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Global request number (API requests and signed-URL transfers share it).
    pub seq: u64,
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: Option<String>,
    /// "verify", "list", "get", "create", "delete", "query", "raw", "export", "import",
    /// "bookmark", "restore", "signed-export", "signed-import", "stats" or "unknown".
    pub kind: &'static str,
    /// Uuid of the database targeted, if any.
    pub database: Option<String>,
    pub token_id: Option<String>,
    pub status: u16,
    pub retry_after: Option<u32>,
    pub fault: Option<&'static str>,
    pub started: Instant,
    pub finished: Instant,
    /// API requests in flight when this one started, including itself.
    pub in_flight: usize,
    /// Distinct databases with an API request in flight when this one started, including
    /// this one's.
    pub in_flight_databases: usize,
    /// First 300 bytes of the request body (lossy UTF-8).
    pub body_head: String,
    pub response_bytes: usize,
    /// Rows this request read, the quantity D1 bills (rows scanned, not rows returned): the
    /// sum of every statement's `meta.rows_read` in a `/query` or `/raw` response, the import's
    /// total `rows_read` on the init or ingest call that ran the import's SQL, and 0 for every
    /// request that ran no SQL (including failed, faulted and rate-limited ones).
    pub rows_read: u64,
}

/// Counters and records, behind the application's log mutex.
#[derive(Debug, Default)]
pub struct Log {
    seq: u64,
    api: u64,
    in_flight: usize,
    databases: HashMap<String, usize>,
    by_kind: BTreeMap<&'static str, u64>,
    records: Vec<RequestRecord>,
}

/// What a request learns when it starts.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    pub seq: u64,
    /// The API request number (1-based) that "every Nth" faults use; 0 for non-API requests.
    pub api_n: u64,
    pub in_flight: usize,
    pub in_flight_databases: usize,
    pub started: Instant,
}

impl Log {
    /// Registers the start of an API request (counted, in flight until [`Log::end_api`]).
    pub fn begin_api(&mut self, kind: &'static str, database: Option<&str>) -> Ticket {
        self.seq += 1;
        self.api += 1;
        self.in_flight += 1;
        *self.by_kind.entry(kind).or_insert(0) += 1;
        if let Some(db) = database {
            *self.databases.entry(db.to_string()).or_insert(0) += 1;
        }
        Ticket {
            seq: self.seq,
            api_n: self.api,
            in_flight: self.in_flight,
            in_flight_databases: self.databases.len(),
            started: Instant::now(),
        }
    }

    /// Registers the end of an API request.
    pub fn end_api(&mut self, database: Option<&str>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(db) = database
            && let Some(n) = self.databases.get_mut(db)
        {
            *n -= 1;
            if *n == 0 {
                self.databases.remove(db);
            }
        }
    }

    /// Registers the start of a request that is not an API request (signed URLs, stats).
    pub fn begin_other(&mut self, database: Option<&str>) -> Ticket {
        self.seq += 1;
        let extra = database.is_some_and(|d| !self.databases.contains_key(d));
        Ticket {
            seq: self.seq,
            api_n: 0,
            in_flight: self.in_flight,
            in_flight_databases: self.databases.len() + usize::from(extra),
            started: Instant::now(),
        }
    }

    pub fn push(&mut self, record: RequestRecord) {
        self.records.push(record);
    }

    pub fn records(&self) -> Vec<RequestRecord> {
        self.records.clone()
    }

    pub fn clear(&mut self) {
        self.records.clear();
    }

    /// Total rows read by the recorded requests whose database is any of `uuids`.
    pub fn rows_read(&self, uuids: &[&str]) -> u64 {
        self.records
            .iter()
            .filter(|r| r.database.as_deref().is_some_and(|d| uuids.contains(&d)))
            .map(|r| r.rows_read)
            .sum()
    }

    /// Number of API requests so far.
    pub fn api_requests(&self) -> u64 {
        self.api
    }

    pub fn by_kind(&self) -> &BTreeMap<&'static str, u64> {
        &self.by_kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_requests_and_databases() {
        let mut log = Log::default();
        let a = log.begin_api("raw", Some("x"));
        assert_eq!(
            (a.seq, a.api_n, a.in_flight, a.in_flight_databases),
            (1, 1, 1, 1)
        );
        let b = log.begin_api("raw", Some("x"));
        assert_eq!((b.in_flight, b.in_flight_databases), (2, 1));
        let c = log.begin_api("list", None);
        assert_eq!((c.in_flight, c.in_flight_databases), (3, 1));
        let d = log.begin_api("raw", Some("y"));
        assert_eq!((d.in_flight, d.in_flight_databases), (4, 2));
        log.end_api(Some("x"));
        log.end_api(Some("x"));
        let e = log.begin_other(None);
        assert_eq!(
            (e.seq, e.api_n, e.in_flight, e.in_flight_databases),
            (5, 0, 2, 1)
        );
        assert_eq!(log.api_requests(), 4);
        assert_eq!(log.by_kind().get("raw"), Some(&3));
    }

    fn record(seq: u64, database: Option<&str>, rows_read: u64) -> RequestRecord {
        let now = Instant::now();
        RequestRecord {
            seq,
            method: "POST".into(),
            path: "/".into(),
            query: None,
            kind: "raw",
            database: database.map(str::to_string),
            token_id: None,
            status: 200,
            retry_after: None,
            fault: None,
            started: now,
            finished: now,
            in_flight: 1,
            in_flight_databases: 1,
            body_head: String::new(),
            response_bytes: 0,
            rows_read,
        }
    }

    #[test]
    fn rows_read_sums_records_per_database() {
        let mut log = Log::default();
        log.push(record(1, Some("x"), 5));
        log.push(record(2, Some("y"), 7));
        log.push(record(3, Some("x"), 2));
        log.push(record(4, None, 100));
        assert_eq!(log.rows_read(&["x"]), 7);
        assert_eq!(log.rows_read(&["x", "y"]), 14);
        assert_eq!(log.rows_read(&["z"]), 0);
        log.clear();
        assert_eq!(log.rows_read(&["x"]), 0);
    }
}
