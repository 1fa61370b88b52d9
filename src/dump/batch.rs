//! Small tables read together: the first page of many tables in one request, so that a small
//! database (all of its rows within one page budget) is read in a single request.
//!
//! The first request also reads `sqlite_schema` again (a schema that changed since it was
//! read fails the attempt) and, when it holds every table, `sqlite_sequence`. A source whose
//! batch is one transaction (D1) then answers the whole database at one point in time, and no
//! bookmark needs to be read after it. Tables whose first page is full go on with ordinary
//! keyset paging from where their batched page ended.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Result, bail};

use super::paging::{PagePolicy, PageRead, page_read};
use super::schema::{
    MASTER_LITERALS_SQL, RowKey, Schema, Table, TableKind, VirtualContent, unquote,
};
use crate::rows::Page;
use crate::source::{Source, is_memory_limit};
use crate::sqltext::quote_ident;

/// At most this many tables share a request.
const MAX_TABLES: usize = 32;
/// At most this many statements in one request.
const MAX_STATEMENTS: usize = 64;
/// About this many cells in one batched response (a first page of 500 rows × 128 cells).
const BATCH_CELLS: usize = 64_000;
/// A batched first page asks for at least this many rows.
const MIN_ROWS: usize = 16;

/// `sqlite_sequence` as literals.
const SEQUENCE_SQL: &str = "SELECT quote(name), quote(seq) FROM sqlite_sequence ORDER BY rowid";

/// The schema changed between the schema read and the data read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the schema of the database changed while it was read")]
pub struct SchemaChanged;

/// What the batched reads returned.
#[derive(Debug, Default)]
pub struct Prefetched {
    /// First page of a table (by index into the schema's tables) and the row limit it was
    /// read with.
    pub pages: HashMap<usize, (Page, usize)>,
    /// `(name, seq literal)` of `sqlite_sequence`, read in the same request as every table.
    pub sequence: Option<Vec<(String, String)>>,
    /// Every table's rows came whole from one request that also saw the same schema.
    pub one_request: bool,
    pub requests: u64,
}

impl Prefetched {
    /// The first page of table `i`, if it was read in a batch.
    pub fn take(&mut self, i: usize) -> Option<(Page, usize)> {
        self.pages.remove(&i)
    }
}

/// Whether the dump reads rows of `t` page by page.
pub fn reads_rows(t: &Table) -> bool {
    match &t.kind {
        TableKind::Regular { .. } => true,
        TableKind::Virtual { content, .. } => matches!(content, VirtualContent::Internal),
    }
}

/// One table's part of a batch.
struct Slot {
    table: usize,
    read: PageRead,
    limit: usize,
}

/// Read the first page of every table that has rows to read, as few tables per request as
/// fit. `has_sequence`: `sqlite_sequence` is dumped.
pub async fn prefetch(
    source: &Arc<dyn Source>,
    schema: &Schema,
    policy: &PagePolicy,
    has_sequence: bool,
) -> Result<Prefetched> {
    let tables: Vec<usize> = (0..schema.tables.len())
        .filter(|&i| reads_rows(&schema.tables[i]))
        .collect();
    let share = BATCH_CELLS / tables.len().clamp(1, MAX_TABLES);
    let mut batches: Vec<Vec<Slot>> = vec![Vec::new()];
    let mut statements = 1 + usize::from(has_sequence);
    for &i in &tables {
        let t = &schema.tables[i];
        let width = t.insert_columns().count() + 1;
        let limit = (share / width).clamp(MIN_ROWS, policy.initial_rows.max(MIN_ROWS));
        let read = page_read(t, None, limit, schema.negative_zero)?;
        let current = batches.last().map_or(0, Vec::len);
        if current > 0
            && (current == MAX_TABLES || statements + read.statements.len() > MAX_STATEMENTS)
        {
            batches.push(Vec::new());
            statements = 0;
        }
        statements += read.statements.len();
        if let Some(b) = batches.last_mut() {
            b.push(Slot {
                table: i,
                read,
                limit,
            });
        }
    }
    let single = batches.len() == 1;
    let mut out = Prefetched {
        one_request: single,
        ..Prefetched::default()
    };
    for (n, batch) in batches.into_iter().enumerate() {
        let first = n == 0;
        let mut sql: Vec<String> = Vec::new();
        if first {
            sql.push(MASTER_LITERALS_SQL.to_string());
            if single && has_sequence {
                sql.push(SEQUENCE_SQL.to_string());
            }
        }
        let extra = sql.len();
        for slot in &batch {
            sql.extend(slot.read.statements.iter().cloned());
        }
        let cells: usize = batch.iter().map(|s| s.limit).max().unwrap_or(1) * 16;
        out.requests += 1;
        let mut pages = match source.pages("read small tables", &sql, cells).await {
            Ok(pages) => pages,
            Err(e) if is_memory_limit(&e) => {
                // Too much at once: these tables are read one by one (and the bookmark
                // tells whether the database changed meanwhile).
                out.one_request = false;
                continue;
            }
            Err(e) => return Err(e),
        };
        let rest = pages.split_off(extra);
        if first {
            let mut head = pages.into_iter();
            if let Some(master) = head.next() {
                check_schema(&master, schema)?;
            }
            if let Some(seq) = head.next() {
                out.sequence = Some(sequence_rows(&seq));
            }
        }
        let mut rest = rest.into_iter();
        for slot in batch {
            let own: Vec<Page> = rest.by_ref().take(slot.read.statements.len()).collect();
            match slot.read.join(own) {
                Ok(page) => {
                    if page.len() >= slot.limit {
                        out.one_request = false;
                    }
                    out.pages.insert(slot.table, (page, slot.limit));
                }
                Err(e) => {
                    crate::util::log::debug(format!(
                        "table {:?}: {e}; reading it on its own",
                        schema.tables[slot.table].name
                    ));
                    out.one_request = false;
                }
            }
        }
    }
    Ok(out)
}

/// `sqlite_schema` read again must be what the schema was read from.
fn check_schema(master: &Page, schema: &Schema) -> Result<()> {
    let same = master.len() == schema.master_literals.len()
        && (0..master.len()).all(|r| master.row(r) == schema.master_literals[r]);
    if !same {
        bail!(SchemaChanged);
    }
    Ok(())
}

/// `(name, seq literal)` rows; a name that is not a text literal is left out (it cannot be a
/// table of the dump).
fn sequence_rows(page: &Page) -> Vec<(String, String)> {
    (0..page.len())
        .filter_map(|r| {
            let row = page.row(r);
            let (name, seq) = (row.first()?, row.get(1)?);
            name.starts_with('\'')
                .then(|| (unquote(name), (*seq).to_string()))
        })
        .collect()
}

/// Rows to expect in the database, for the rows-read budget: `max(rowid)` of every table read
/// with a rowid (WITHOUT ROWID tables count only once read). One request.
pub async fn estimate_rows(source: &dyn Source, schema: &Schema) -> Result<u64> {
    let statements: Vec<String> = schema
        .tables
        .iter()
        .filter(|t| reads_rows(t))
        .filter_map(|t| match &t.key {
            RowKey::Rowid { name, .. } => Some(format!(
                "SELECT max({}) FROM {}",
                quote_ident(name),
                quote_ident(&t.name)
            )),
            RowKey::PrimaryKey(_) => None,
        })
        .collect();
    if statements.is_empty() {
        return Ok(0);
    }
    let answers = source.query_many("estimate rows", &statements).await?;
    Ok(answers
        .iter()
        .filter_map(|r| r.rows.first().and_then(|row| row.first()))
        .filter_map(|v| v.as_i64())
        .map(|n| n.max(0) as u64)
        .sum())
}
