//! [`Source`] over a local SQLite file (for example the one `wrangler dev` keeps under
//! `.wrangler/state/v3/d1/`). The file is opened read-only and one read transaction is held
//! for the whole dump, so the backup is a consistent snapshot.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::{Source, SourceInfo};
use crate::rows::{Page, Rows, Value};

/// A local SQLite database.
pub struct SqliteSource {
    conn: Arc<Mutex<Connection>>,
    info: SourceInfo,
}

impl SqliteSource {
    /// Open `path` read-only and start the snapshot.
    pub fn open(path: &Path, name: &str) -> anyhow::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening SQLite file {}", path.display()))?;
        // Take the snapshot now: every later read sees the database as of this moment.
        conn.execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
            .with_context(|| format!("reading {} (is it a SQLite database?)", path.display()))?;
        let file_size = std::fs::metadata(path).ok().map(|m| m.len());
        Ok(SqliteSource {
            conn: Arc::new(Mutex::new(conn)),
            info: SourceInfo {
                id: path_id(path),
                name: name.to_string(),
                kind: "sqlite",
                file_size,
            },
        })
    }
}

fn path_id(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| PathBuf::from(path))
        .display()
        .to_string()
}

#[async_trait]
impl Source for SqliteSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    async fn query(&self, operation: &str, sql: &str) -> anyhow::Result<Rows> {
        let conn = Arc::clone(&self.conn);
        let sql = sql.to_string();
        let op = operation.to_string();
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| anyhow!("SQLite connection poisoned"))?;
            run(&conn, &sql).with_context(|| format!("{op} failed"))
        })
        .await?
    }

    async fn pages(
        &self,
        operation: &str,
        statements: &[String],
        cells_hint: usize,
    ) -> anyhow::Result<Vec<Page>> {
        let conn = Arc::clone(&self.conn);
        let statements = statements.to_vec();
        let op = operation.to_string();
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| anyhow!("SQLite connection poisoned"))?;
            statements
                .iter()
                .map(|sql| run_page(&conn, sql, cells_hint))
                .collect::<anyhow::Result<Vec<Page>>>()
                .with_context(|| format!("{op} failed"))
        })
        .await?
    }

    async fn bookmark(&self) -> anyhow::Result<Option<String>> {
        Ok(None)
    }

    fn is_snapshot(&self) -> bool {
        true
    }
}

/// Run one statement whose cells are SQL literals (text) or REAL values into a [`Page`].
pub fn run_page(conn: &Connection, sql: &str, cells_hint: usize) -> anyhow::Result<Page> {
    let mut stmt = conn.prepare(sql)?;
    let n = stmt.column_count();
    let mut page = Page::new(n);
    page.reserve_cells(cells_hint);
    let mut q = stmt.query([])?;
    let mut real = String::new();
    while let Some(row) = q.next()? {
        for i in 0..n {
            match row.get_ref(i)? {
                ValueRef::Text(t) => {
                    let cell = std::str::from_utf8(t)?;
                    page.push_cell(cell, crate::sqltext::cell::is_plain(cell));
                }
                ValueRef::Real(f) => {
                    real.clear();
                    crate::sqltext::literal::push_real_literal(&mut real, f);
                    page.push_cell(&real, true);
                }
                other => anyhow::bail!("expected an SQL literal, got {:?}", other.data_type()),
            }
        }
    }
    Ok(page)
}

/// Run one statement and collect its rows as [`Value`]s.
pub fn run(conn: &Connection, sql: &str) -> rusqlite::Result<Rows> {
    let mut stmt = conn.prepare(sql)?;
    let columns: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    let n = columns.len();
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    let mut q = stmt.query([])?;
    while let Some(row) = q.next()? {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let v = match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(x) => Value::Integer(x),
                ValueRef::Real(x) => Value::Real(x),
                ValueRef::Text(t) => {
                    bytes += t.len();
                    Value::Text(String::from_utf8_lossy(t).into_owned())
                }
                ValueRef::Blob(b) => {
                    bytes += b.len() * 2;
                    Value::Blob(b.to_vec())
                }
            };
            out.push(v);
        }
        bytes += 8 * n;
        rows.push(out);
    }
    Ok(Rows {
        columns,
        rows,
        bytes,
    })
}
