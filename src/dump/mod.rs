//! The `query` dump method: an exact SQL dump built from ordinary read queries.
//!
//! Output order (every statement on its own line, none longer than D1's 100,000 bytes):
//!
//! 1. a header comment, then `PRAGMA defer_foreign_keys=TRUE;` (never BEGIN/COMMIT, which D1
//!    refuses);
//! 2. `CREATE TABLE` for every user table, parents before children, then
//!    `CREATE VIRTUAL TABLE`;
//! 3. the rows of each table (`INSERT INTO "t"(cols) VALUES(…)`, rowids kept, generated
//!    columns left out), then virtual-table content (re-inserted, or `'rebuild'` for
//!    external-content FTS);
//! 4. `sqlite_sequence`;
//! 5. indexes, views, triggers (an INSTEAD OF trigger therefore after its view).
//!
//! The first page of every table is read in batches ([`batch`]): a small database is read
//! in one request. Further pages are read ahead ([`ahead`]): while a page is turned into
//! SQL, the next ones are on the wire.

pub mod ahead;
pub mod batch;
pub(crate) mod export;
pub mod paging;
pub mod schema;
pub mod sql;

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::manifest::{Selection, TableStats};
use crate::rows::{Page, Value};
use crate::source::{Source, is_memory_limit};
use crate::sqltext::{MAX_STATEMENT_BYTES, quote_ident, quote_str};
use crate::util::progress::Progress;
use paging::{LongValue, PagePolicy, long_pieces_query, page_read_within, parse_long_marker};
use schema::{RowKey, Schema, Table, TableKind, VirtualContent};
use sql::{Cell, RowWriter};

/// Messages from the dumper to whoever consumes the SQL (the compressor).
#[derive(Debug)]
pub enum Piece {
    Data(Bytes),
    /// The dump finished successfully.
    End,
}

/// How the SQL is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Paged read queries: exact values, never blocks the database.
    Query,
    /// D1's export API: one snapshot, blocks the database while it runs.
    Export,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Query => "query",
            Method::Export => "export",
        }
    }
}

/// Room beyond `chunk_bytes` for the statement that fills a chunk.
const CHUNK_SLACK: usize = 32 << 10;

/// Dump settings.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    pub page: PagePolicy,
    pub max_statement_bytes: usize,
    /// Hand SQL to the compressor in chunks of about this size. With the slack for the
    /// row that crosses it ([`CHUNK_SLACK`]), a chunk stays under the allocator's mmap
    /// threshold, so chunk buffers are recycled by the heap instead of being mapped and
    /// faulted in afresh.
    pub chunk_bytes: usize,
    /// Which tables, and whether rows or schema are left out.
    pub selection: Selection,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            page: PagePolicy::default(),
            max_statement_bytes: MAX_STATEMENT_BYTES,
            chunk_bytes: 192 << 10,
            selection: Selection::default(),
        }
    }
}

/// Facts for the header comment.
#[derive(Debug, Clone)]
pub struct DumpHeader {
    pub database_name: String,
    pub database_id: String,
    pub timestamp: String,
    pub method: String,
}

/// What a dump contained.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DumpStats {
    pub tables: Vec<TableStats>,
    pub table_count: usize,
    pub row_count: u64,
    pub statements: u64,
    /// Rows written as INSERT + UPDATEs because they exceeded the statement limit.
    pub split_rows: u64,
    pub requests: u64,
    pub warnings: Vec<String>,
    /// Every row came from one request that also saw the schema unchanged (with a source
    /// whose batch is a transaction, the dump is one point in time).
    pub one_request: bool,
}

/// Where SQL text goes: buffered, handed on in chunks.
struct Out<'a> {
    buf: String,
    tx: &'a mpsc::Sender<Piece>,
    chunk: usize,
    cancel: &'a CancellationToken,
}

impl Out<'_> {
    fn line(&mut self, s: &str) {
        self.buf.push_str(s);
        self.buf.push('\n');
    }

    async fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= self.chunk {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = String::with_capacity(self.chunk + CHUNK_SLACK);
        let data = Bytes::from(std::mem::replace(&mut self.buf, next).into_bytes());
        tokio::select! {
            r = self.tx.send(Piece::Data(data)) => r.map_err(|_| anyhow!(crate::util::PipelineClosed)),
            _ = self.cancel.cancelled() => Err(anyhow!(crate::util::Cancelled)),
        }
    }
}

/// Names in a table filter that are not tables of the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no such table{} in database {database:?}: {}",
    if names.len() > 1 { "s" } else { "" },
    names.iter().map(|(n, _)| format!("{n:?}")).collect::<Vec<_>>().join(", ")
)]
pub struct UnknownTables {
    pub database: String,
    /// Each unknown name, with whether it was in the include list (else the exclude list).
    pub names: Vec<(String, bool)>,
}

/// Read the schema and filter it. Names in the filter that are not tables are an
/// [`UnknownTables`] error.
pub async fn read_schema(source: &dyn Source, selection: &Selection) -> Result<Schema> {
    let mut schema = schema::read(source).await?;
    let known: HashSet<String> = schema
        .tables
        .iter()
        .map(|t| t.name.to_ascii_lowercase())
        .collect();
    let unknown = selection.unknown(&known);
    if !unknown.is_empty() {
        return Err(UnknownTables {
            database: source.info().name.clone(),
            names: unknown,
        }
        .into());
    }
    if selection.filters() {
        let all_tables = known;
        schema.tables.retain(|t| selection.keeps(&t.name));
        let kept: HashSet<String> = schema
            .tables
            .iter()
            .map(|t| t.name.to_ascii_lowercase())
            .collect();
        let objects = std::mem::take(&mut schema.objects);
        schema.objects = schema::filter_objects(objects, &all_tables, &kept);
    }
    Ok(schema)
}

/// Dump `source` as SQL into `tx`. Returns what was written.
pub async fn dump(
    source: Arc<dyn Source>,
    schema: &Schema,
    header: &DumpHeader,
    opts: &DumpOptions,
    tx: &mpsc::Sender<Piece>,
    cancel: &CancellationToken,
    progress: &Progress,
) -> Result<DumpStats> {
    let mut out = Out {
        buf: String::with_capacity(opts.chunk_bytes + CHUNK_SLACK),
        tx,
        chunk: opts.chunk_bytes,
        cancel,
    };
    let mut stats = DumpStats::default();
    write_header(&mut out, header, opts);
    out.line("PRAGMA defer_foreign_keys=TRUE;");
    stats.statements += 1;

    if !opts.selection.no_schema {
        for t in &schema.tables {
            out.line(&format!("{};", t.sql));
            stats.statements += 1;
        }
    }
    let has_sequence = schema.has_sqlite_sequence && !opts.selection.no_data;
    let mut first = if opts.selection.no_data {
        batch::Prefetched::default()
    } else {
        if source.has_row_budget() {
            let estimate = batch::estimate_rows(source.as_ref(), schema).await?;
            stats.requests += 1;
            source.admit(estimate)?;
        }
        batch::prefetch(&source, schema, &opts.page, has_sequence).await?
    };
    stats.requests += first.requests;
    for (i, t) in schema.tables.iter().enumerate() {
        progress.set_table(&t.name);
        let kind = if t.is_virtual() { "virtual" } else { "table" };
        let mut rows = 0;
        if !opts.selection.no_data {
            match &t.kind {
                TableKind::Virtual { module, content } => match content {
                    VirtualContent::Internal => {
                        rows = dump_rows(&source, t, first.take(i), schema.negative_zero, opts, &mut out, &mut stats, progress).await?;
                    }
                    VirtualContent::External(from) => {
                        // Rebuild from the content table once its rows are in. The row count
                        // recorded is what the index reads from its content table.
                        let q = quote_ident(&t.name);
                        out.line(&format!("INSERT INTO {q}({q}) VALUES('rebuild');"));
                        stats.statements += 1;
                        rows = count_rows(source.as_ref(), &t.name).await?;
                        stats.requests += 1;
                        crate::util::log::debug(format!(
                            "virtual table {:?} is rebuilt from {from:?} on restore",
                            t.name
                        ));
                    }
                    VirtualContent::Contentless => stats.warnings.push(format!(
                        "virtual table {:?} is contentless (content=''): its definition is backed up, its index cannot be and restores empty",
                        t.name
                    )),
                    VirtualContent::Unsupported => stats.warnings.push(format!(
                        "virtual table {:?} uses module {module:?}: its definition is backed up, its rows are not",
                        t.name
                    )),
                },
                TableKind::Regular { .. } => {
                    rows = dump_rows(&source, t, first.take(i), schema.negative_zero, opts, &mut out, &mut stats, progress).await?;
                }
            }
        }
        stats.tables.push(TableStats {
            name: t.name.clone(),
            kind: kind.to_string(),
            rows,
        });
        // Rows written to the dump (an external-content index writes none of its own).
        if t.has_row_data() {
            stats.row_count += rows;
        }
        out.maybe_flush().await?;
    }
    stats.table_count = schema.tables.len();

    if has_sequence {
        dump_sequence(
            source.as_ref(),
            schema,
            first.sequence.take(),
            &mut out,
            &mut stats,
        )
        .await?;
    }
    stats.one_request = first.one_request && stats.requests == first.requests;
    if !opts.selection.no_schema {
        for o in &schema.objects {
            out.line(&format!("{};", o.sql));
            stats.statements += 1;
        }
    }
    out.line(&format!(
        "-- d1-backup: end of dump ({} tables, {} rows)",
        stats.table_count, stats.row_count
    ));
    out.flush().await?;
    Ok(stats)
}

fn write_header(out: &mut Out<'_>, h: &DumpHeader, opts: &DumpOptions) {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    };
    out.line(&format!(
        "-- d1-backup {} SQL dump of database \"{}\" ({})",
        env!("CARGO_PKG_VERSION"),
        clean(&h.database_name),
        clean(&h.database_id)
    ));
    let mut parts = vec![
        format!("taken {}", clean(&h.timestamp)),
        format!("method {}", clean(&h.method)),
    ];
    if opts.selection.no_data {
        parts.push("schema only".into());
    }
    if opts.selection.no_schema {
        parts.push("data only".into());
    }
    out.line(&format!("-- {}", parts.join(", ")));
    out.line("-- Restore: sqlite3 new.db < this.sql, or wrangler d1 execute <db> --remote --file this.sql");
}

/// Fetch one page, shrinking the page while D1 reports its memory limit. A wide table is
/// read as several statements in one request; if their results disagree (a writer got in
/// between, where D1 does not run a batch as one transaction), the page is read again.
async fn fetch_page(
    source: Arc<dyn Source>,
    table: Arc<Table>,
    seg: ahead::Segment,
    policy: PagePolicy,
    negative_zero: bool,
) -> Result<(Page, usize, u64)> {
    let mut requests = 0;
    let mut disagreements = 0;
    let mut limit = seg.limit;
    loop {
        let read = page_read_within(&table, seg.after.as_deref(), seg.upto, limit, negative_zero)?;
        requests += 1;
        let cells = limit * (table.insert_columns().count() + 1);
        match source
            .pages(
                &format!("read table {:?}", table.name),
                &read.statements,
                cells,
            )
            .await
        {
            Ok(pages) => match read.join(pages) {
                Ok(page) => return Ok((page, limit, requests)),
                Err(e) if disagreements < MAX_GROUP_RETRIES => {
                    disagreements += 1;
                    crate::util::log::debug(format!(
                        "table {:?}: {e}; reading the page again",
                        table.name
                    ));
                }
                Err(e) => return Err(anyhow!(e).context(format!("table {:?}", table.name))),
            },
            Err(e) if is_memory_limit(&e) => match policy.shrink(limit) {
                Some(smaller) => {
                    crate::util::log::debug(format!(
                        "table {:?}: page of {limit} rows too large for D1, retrying with {smaller}",
                        table.name
                    ));
                    limit = smaller;
                }
                None => {
                    return Err(e.context(format!(
                        "table {:?}: a single row is too large for D1 to return",
                        table.name
                    )));
                }
            },
            Err(e) => return Err(e),
        }
    }
}

/// How often a page of a wide table is read again when its column groups disagree.
const MAX_GROUP_RETRIES: u32 = 3;

/// Dump the rows of one table; returns the row count.
#[allow(clippy::too_many_arguments)]
async fn dump_rows(
    source: &Arc<dyn Source>,
    table: &Table,
    first: Option<(Page, usize)>,
    negative_zero: bool,
    opts: &DumpOptions,
    out: &mut Out<'_>,
    stats: &mut DumpStats,
    progress: &Progress,
) -> Result<u64> {
    let writer = RowWriter::new(table, opts.max_statement_bytes);
    let table = Arc::new(table.clone());
    let rowid_key = matches!(table.key, RowKey::Rowid { .. });
    let explicit = matches!(table.key, RowKey::Rowid { explicit: true, .. });
    let policy = opts.page;
    let read: ahead::Reader = {
        let (source, table) = (Arc::clone(source), Arc::clone(&table));
        Arc::new(move |seg: ahead::Segment| {
            Box::pin(fetch_page(
                Arc::clone(&source),
                Arc::clone(&table),
                seg,
                policy,
                negative_zero,
            ))
        })
    };
    let key_of = {
        let table = Arc::clone(&table);
        Box::new(move |page: &Page, r: usize| next_key(&table, &page.row(r)))
    };
    // Key ranges read in parallel only where a page is one statement: the column groups of
    // a wide table are joined into a second copy of the page, and two of those at once
    // would cost more memory than the overlap is worth.
    let ranges = rowid_key
        && page_read_within(&table, None, None, policy.initial_rows, negative_zero)
            .is_ok_and(|r| r.statements.len() == 1);
    let mut pages = ahead::Ahead::new(read, policy, ranges, key_of, first);
    let mut count = 0u64;
    loop {
        if out.cancel.is_cancelled() {
            bail!(crate::util::Cancelled);
        }
        let Some((page, used_limit, requests)) = pages.next().await? else {
            break;
        };
        stats.requests += requests;
        let width = writer.width() + usize::from(rowid_key && !explicit);
        page.check(width)
            .map_err(|e| anyhow!("table {:?}: {e}", table.name))?;
        // Cells the decoder found plain are literals written as they are: such a page is
        // neither checked again nor looked at cell by cell.
        let plain = page.all_plain();
        if !plain {
            check_literals(&table, &page, rowid_key && !explicit)?;
        }
        crate::util::log::debug(format!(
            "table {:?}: page of {} rows ({} bytes) at limit {used_limit}",
            table.name,
            page.len(),
            page.bytes()
        ));
        let mut texts: Vec<&str> = Vec::with_capacity(width);
        let mut cells: Vec<Cell> = Vec::with_capacity(width);
        for r in 0..page.len() {
            texts.clear();
            texts.extend(page.cells(r));
            let (key, values) = if rowid_key {
                (
                    Some(texts[0]),
                    if explicit { &texts[..] } else { &texts[1..] },
                )
            } else {
                (None, &texts[..])
            };
            if plain && writer.write_plain(&mut out.buf, values) {
                stats.statements += 1;
            } else {
                cells.clear();
                cells.extend(values.iter().map(|v| Cell::Lit(v)));
                let long: Vec<(usize, LongValue)> = values
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| parse_long_marker(v).map(|lv| (i, lv)))
                    .collect();
                if !long.is_empty() {
                    fetch_long_values(
                        source.as_ref(),
                        &table,
                        &writer,
                        key,
                        &mut cells,
                        &long,
                        explicit,
                        &policy,
                        stats,
                    )
                    .await?;
                }
                let outcome = writer.write(&mut out.buf, key, &cells)?;
                stats.statements += outcome.statements as u64;
                stats.split_rows += u64::from(outcome.split);
            }
            count += 1;
            progress.add_rows(1);
            // Hand SQL on as it is made: a page turns into several times its size in SQL.
            out.maybe_flush().await?;
        }
    }
    Ok(count)
}

/// Read the long values of one row in pieces and put them into `cells` as raw bytes.
/// Pieces are batched up to the page target; D1's memory-limit error halves the batch, then
/// the piece size.
#[allow(clippy::too_many_arguments)]
async fn fetch_long_values(
    source: &dyn Source,
    table: &Table,
    writer: &RowWriter,
    key: Option<&str>,
    cells: &mut [Cell<'_>],
    long: &[(usize, LongValue)],
    explicit_rowid: bool,
    policy: &PagePolicy,
    stats: &mut DumpStats,
) -> Result<()> {
    // Indices in `long` count the explicit rowid; the query counts table columns.
    let offset = usize::from(explicit_rowid);
    let predicate = writer.row_predicate(key, cells)?;
    let mut piece = LONG_PIECE_BYTES;
    let mut per_query = (policy.target_bytes / (2 * piece)).max(1);
    for (i, lv) in long {
        let mut bytes = Vec::with_capacity(lv.len);
        while bytes.len() < lv.len {
            let pieces: Vec<(usize, usize)> = (0..per_query)
                .map(|k| bytes.len() + k * piece)
                .take_while(|off| *off < lv.len)
                .map(|off| (off, piece.min(lv.len - off)))
                .collect();
            let q = long_pieces_query(table, i - offset, &pieces, &predicate);
            stats.requests += 1;
            let rows = match source
                .query(&format!("read a long value of table {:?}", table.name), &q)
                .await
            {
                Ok(rows) => rows,
                Err(e) if is_memory_limit(&e) => {
                    if per_query > 1 {
                        per_query /= 2;
                    } else if piece > 4096 {
                        piece /= 2;
                    } else {
                        return Err(e);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let row = rows.rows.first().with_context(|| {
                format!(
                    "table {:?}: a row vanished while its long values were read",
                    table.name
                )
            })?;
            for v in row {
                let hexed = v.as_str().context("long value piece is not text")?;
                bytes.extend(hex::decode(hexed).context("long value piece is not hex")?);
            }
            if pieces.iter().map(|p| p.1).sum::<usize>()
                != row
                    .iter()
                    .map(|v| v.as_str().map_or(0, |s| s.len() / 2))
                    .sum::<usize>()
            {
                bail!(
                    "table {:?}: a long value changed while it was read",
                    table.name
                );
            }
        }
        cells[*i] = Cell::Raw(if lv.text {
            sql::Decoded::Text(bytes)
        } else {
            sql::Decoded::Blob(bytes)
        });
    }
    Ok(())
}

/// Bytes per piece when reading long values (hex doubles it in the response).
const LONG_PIECE_BYTES: usize = 512 * 1024;

/// `SELECT count(*)` of a table.
async fn count_rows(source: &dyn Source, table: &str) -> Result<u64> {
    let rows = source
        .query(
            &format!("count rows of {table:?}"),
            &format!("SELECT count(*) FROM {}", quote_ident(table)),
        )
        .await?;
    rows.rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_i64)
        .map(|n| n as u64)
        .with_context(|| format!("counting rows of {table:?}"))
}

/// Every cell of `page` must be one SQL literal (or a long-value marker) before any of it is
/// written or used in a query: a server answering anything else fails the backup here.
/// `leading_rowid`: the first cell is the hidden rowid.
fn check_literals(table: &Table, page: &Page, leading_rowid: bool) -> Result<()> {
    let names: Vec<&str> = table.insert_columns().map(|c| c.name.as_str()).collect();
    for r in 0..page.len() {
        for (i, cell) in page.cells(r).enumerate() {
            if parse_long_marker(cell).is_some() {
                continue;
            }
            if let Err(e) = crate::sqltext::cell::check_cell(cell) {
                let column = match (leading_rowid, i) {
                    (true, 0) => "rowid",
                    (true, i) => names.get(i - 1).copied().unwrap_or("?"),
                    (false, i) => names.get(i).copied().unwrap_or("?"),
                };
                bail!(
                    "table {:?}, column {column:?}: the source answered {e} where an SQL literal belongs; nothing of it was written (a proxy or a wrong api-base-url can cause this)",
                    table.name
                );
            }
        }
    }
    Ok(())
}

/// The key literals of a row, for the next page's `WHERE`.
fn next_key(table: &Table, row: &[&str]) -> Result<Vec<String>> {
    match &table.key {
        RowKey::Rowid { .. } => Ok(vec![row[0].to_string()]),
        RowKey::PrimaryKey(idx) => {
            let names: Vec<&str> = table.insert_columns().map(|c| c.name.as_str()).collect();
            idx.iter()
                .map(|&i| {
                    let pos = names
                        .iter()
                        .position(|n| *n == table.columns[i].name)
                        .ok_or_else(|| anyhow!("primary key column not selected"))?;
                    if parse_long_marker(row[pos]).is_some() {
                        bail!(
                            "table {:?}: a primary key value is too long to dump",
                            table.name
                        );
                    }
                    Ok(sql::normalize_literal(row[pos]).into_owned())
                })
                .collect()
        }
    }
}

fn cell_text(v: &Value) -> Result<&str> {
    match v {
        Value::Text(s) => Ok(s),
        other => bail!("expected an SQL literal from quote(), got {other:?}"),
    }
}

/// `sqlite_sequence` of the kept tables; `read`: its `(name, seq literal)` rows when they
/// were read with the tables.
async fn dump_sequence(
    source: &dyn Source,
    schema: &Schema,
    read: Option<Vec<(String, String)>>,
    out: &mut Out<'_>,
    stats: &mut DumpStats,
) -> Result<()> {
    let rows = match read {
        Some(rows) => rows,
        None => {
            let rows = source
                .query(
                    "read sqlite_sequence",
                    "SELECT name, quote(seq) FROM sqlite_sequence ORDER BY rowid",
                )
                .await?;
            stats.requests += 1;
            let mut named = Vec::with_capacity(rows.rows.len());
            for r in &rows.rows {
                let Some(name) = r[0].as_str() else { continue };
                named.push((name.to_string(), cell_text(&r[1])?.to_string()));
            }
            named
        }
    };
    let kept: HashSet<String> = schema
        .tables
        .iter()
        .map(|t| t.name.to_ascii_lowercase())
        .collect();
    for (name, seq) in &rows {
        if !kept.contains(&name.to_ascii_lowercase()) {
            continue;
        }
        let name = name.as_str();
        let seq = seq.as_str();
        if let Err(e) = crate::sqltext::cell::check_cell(seq) {
            bail!(
                "sqlite_sequence: the source answered {e} where an SQL literal belongs; nothing of it was written"
            );
        }
        let n = sql::normalize_literal(&quote_str(name)).into_owned();
        out.line(&format!("DELETE FROM sqlite_sequence WHERE name={n};"));
        out.line(&format!(
            "INSERT INTO sqlite_sequence(name,seq) VALUES({n},{seq});"
        ));
        stats.statements += 2;
    }
    Ok(())
}
