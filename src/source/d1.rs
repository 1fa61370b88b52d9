//! [`Source`] over the D1 REST API (`/raw`, which keeps column order and duplicate names).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Source, SourceInfo};
use crate::d1::{D1Client, DatabaseInfo};
use crate::rows::{Page, Rows, Value};

/// One D1 database, read through the REST API.
pub struct D1Source {
    client: Arc<D1Client>,
    info: SourceInfo,
}

impl D1Source {
    pub fn new(client: Arc<D1Client>, db: &DatabaseInfo) -> Self {
        D1Source {
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
        let mut results = self.client.raw(&self.info.id, &op, sql, &[]).await?;
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
        Ok(self
            .client
            .raw_pages(&self.info.id, &op, statements, cells_hint)
            .await?)
    }

    async fn bookmark(&self) -> anyhow::Result<Option<String>> {
        Ok(Some(self.client.bookmark(&self.info.id).await?))
    }

    fn is_snapshot(&self) -> bool {
        false
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
