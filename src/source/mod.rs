//! Where a dump reads from: a D1 database over the REST API, or a local SQLite file.
//!
//! Both implement [`Source`], a deliberately small surface — run one read-only statement,
//! get columns and rows back — so the dumper is the same code for both and the local path
//! exercises exactly what runs against D1.

pub mod d1;
pub mod meter;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::d1::D1Client;
use crate::rows::{Page, Rows};

/// What a source is.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    /// D1 UUID, or the file path for a local source.
    pub id: String,
    /// Database name (used in keys and reports).
    pub name: String,
    /// `d1` or `sqlite`.
    pub kind: &'static str,
    /// Size of the database file, when known (sizes multipart parts).
    pub file_size: Option<u64>,
}

/// A database that can be read with SQL.
#[async_trait]
pub trait Source: Send + Sync {
    fn info(&self) -> &SourceInfo;

    /// Run one read-only statement. Errors keep the server's message; a D1 memory-limit
    /// error is an [`crate::d1::ApiError`] with `is_memory_limit()`.
    async fn query(&self, operation: &str, sql: &str) -> anyhow::Result<Rows>;

    /// Run read-only statements in one request (one result each, in order). A source
    /// without batches runs them one by one.
    async fn query_many(
        &self,
        operation: &str,
        statements: &[String],
    ) -> anyhow::Result<Vec<Rows>> {
        let mut out = Vec::with_capacity(statements.len());
        for sql in statements {
            out.push(self.query(operation, sql).await?);
        }
        Ok(out)
    }

    /// Run read-only statements in one request, each into a compact [`Page`] (one per
    /// statement, in order). Every result cell is an SQL literal (text) or a REAL value,
    /// which becomes its exact literal. Used for the bulk of a dump. `cells_hint`: about
    /// how many cells to expect per statement, so each page is sized once.
    async fn pages(
        &self,
        operation: &str,
        statements: &[String],
        cells_hint: usize,
    ) -> anyhow::Result<Vec<Page>>;

    /// The point-in-time marker of the database (D1's Time Travel bookmark), if it has one.
    async fn bookmark(&self) -> anyhow::Result<Option<String>>;

    /// Whether all reads see one snapshot (a local read transaction does; REST pages do not).
    fn is_snapshot(&self) -> bool;

    /// Whether one request (a batch of statements) is read as one transaction, so that what
    /// one request returns is one point in time (D1 runs a batch as a transaction).
    fn batch_is_snapshot(&self) -> bool {
        self.is_snapshot()
    }

    /// Rows the server read (and bills) for this source so far; 0 where nothing is billed.
    fn rows_read(&self) -> u64 {
        0
    }

    /// API requests made to read this source so far (every kind: schema, rows, bookmarks);
    /// `None` for a source that makes none.
    fn requests(&self) -> Option<u64> {
        None
    }

    /// Whether reading about `estimate` more rows stays within the run's rows-read budget.
    fn admit(&self, _estimate: u64) -> Result<(), meter::OverBudget> {
        Ok(())
    }

    /// Whether a rows-read budget applies (an estimate is worth a request).
    fn has_row_budget(&self) -> bool {
        false
    }

    /// The D1 client behind this source, if it is a D1 database (for D1-only features:
    /// export). The database is `info().id`.
    fn d1_client(&self) -> Option<&Arc<D1Client>> {
        None
    }
}

/// True if the error (anywhere in its chain) is D1's "result too large" error.
pub fn is_memory_limit(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<crate::d1::ApiError>()
            .is_some_and(|a| a.is_memory_limit())
    })
}
