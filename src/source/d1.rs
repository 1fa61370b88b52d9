//! [`Source`] over the D1 REST API (`/raw`, which keeps column order and duplicate names).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::meter::{Meter, OverBudget, RowBudget};
use super::{Source, SourceInfo};
use crate::d1::{D1Client, DatabaseInfo};
use crate::rows::{Page, Rows, Value};

/// One D1 database, read through the REST API.
pub struct D1Source {
    client: Arc<D1Client>,
    info: SourceInfo,
    meter: Meter,
    /// API requests made for this database (each call, not counting retries).
    requests: AtomicU64,
}

impl D1Source {
    /// A database read without a rows-read budget.
    pub fn new(client: Arc<D1Client>, db: &DatabaseInfo) -> Self {
        Self::metered(client, db, Arc::new(RowBudget::default()))
    }

    /// A database whose rows read count into `budget` (shared by the databases of a run).
    pub fn metered(client: Arc<D1Client>, db: &DatabaseInfo, budget: Arc<RowBudget>) -> Self {
        D1Source {
            meter: Meter::new(&db.name, budget),
            requests: AtomicU64::new(0),
            client,
            info: SourceInfo {
                id: db.uuid.clone(),
                name: db.name.clone(),
                kind: "d1",
                file_size: db.file_size,
            },
        }
    }

    pub fn client(&self) -> &Arc<D1Client> {
        &self.client
    }
}

#[async_trait]
impl Source for D1Source {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    async fn query(&self, operation: &str, sql: &str) -> anyhow::Result<Rows> {
        let op = format!("{operation} (database {:?})", self.info.name);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut results = self.client.raw(&self.info.id, &op, sql, &[]).await?;
        self.meter
            .add(results.iter().map(|r| r.rows_read()).sum())?;
        let first = results
            .drain(..)
            .next()
            .and_then(|r| r.results)
            .unwrap_or_default();
        let bytes = estimate_bytes(&first.rows);
        Ok(Rows {
            columns: first.columns,
            rows: first.rows,
            bytes,
        })
    }

    async fn pages(
        &self,
        operation: &str,
        statements: &[String],
        cells_hint: usize,
    ) -> anyhow::Result<Vec<Page>> {
        let op = format!("{operation} (database {:?})", self.info.name);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let paged = self
            .client
            .raw_pages(&self.info.id, &op, statements, cells_hint)
            .await?;
        self.meter.add(paged.rows_read)?;
        Ok(paged.pages)
    }

    async fn query_many(
        &self,
        operation: &str,
        statements: &[String],
    ) -> anyhow::Result<Vec<Rows>> {
        let op = format!("{operation} (database {:?})", self.info.name);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let results = self
            .client
            .raw_batch(&self.info.id, &op, statements)
            .await?;
        self.meter
            .add(results.iter().map(|r| r.rows_read()).sum())?;
        Ok(results
            .into_iter()
            .map(|r| {
                let r = r.results.unwrap_or_default();
                let bytes = estimate_bytes(&r.rows);
                Rows {
                    columns: r.columns,
                    rows: r.rows,
                    bytes,
                }
            })
            .collect())
    }

    async fn bookmark(&self) -> anyhow::Result<Option<String>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(Some(self.client.bookmark(&self.info.id).await?))
    }

    fn is_snapshot(&self) -> bool {
        false
    }

    fn batch_is_snapshot(&self) -> bool {
        true
    }

    fn rows_read(&self) -> u64 {
        self.meter.read()
    }

    fn requests(&self) -> Option<u64> {
        Some(self.requests.load(Ordering::Relaxed))
    }

    fn admit(&self, estimate: u64) -> Result<(), OverBudget> {
        self.meter.admit(estimate)
    }

    fn has_row_budget(&self) -> bool {
        self.meter.is_limited()
    }

    fn d1_client(&self) -> Option<&Arc<D1Client>> {
        Some(&self.client)
    }
}

/// Approximate wire size of rows (strings dominate a dump page).
pub fn estimate_bytes(rows: &[Vec<Value>]) -> usize {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|v| match v {
                    Value::Text(s) => s.len() + 3,
                    Value::Blob(b) => b.len() * 4,
                    _ => 8,
                })
                .sum::<usize>()
                + 2
        })
        .sum()
}
