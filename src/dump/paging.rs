//! Keyset paging: the query for each page of a table, and how many rows to ask for.
//!
//! Pages are read with `WHERE key > last ORDER BY key LIMIT n` (rowid, or the primary key of
//! a WITHOUT ROWID table) — never OFFSET, which rescans and bills every skipped row. The last
//! key is carried as an exact SQL literal, so no value passes through JSON numbers. Each
//! value is selected as a literal: `quote()`, except TEXT containing NUL (which `quote()`
//! would cut short), selected as `CAST(X'…' AS TEXT)`.
//!
//! [`PagePolicy`] sizes pages by bytes: it aims each response at a few MiB, grows or shrinks
//! from what the last page weighed, and shrinks hard when D1 reports its memory limit.

use super::schema::{RowKey, Table};
use crate::rows::Page;
use crate::sqltext::cell::is_plain;
use crate::sqltext::{MAX_STATEMENT_BYTES, quote_ident};

/// Byte-targeted page sizing.
#[derive(Debug, Clone, Copy)]
pub struct PagePolicy {
    /// Aim for responses of about this many bytes.
    pub target_bytes: usize,
    pub initial_rows: usize,
    pub max_rows: usize,
    /// Never grow by more than this factor from one page to the next.
    pub max_growth: usize,
}

impl Default for PagePolicy {
    fn default() -> Self {
        PagePolicy {
            target_bytes: 4 << 20,
            initial_rows: 500,
            max_rows: 100_000,
            max_growth: 8,
        }
    }
}

impl PagePolicy {
    /// Rows to ask for next, given the last page's `rows` and `bytes` at `limit`.
    pub fn next_limit(&self, limit: usize, rows: usize, bytes: usize) -> usize {
        if rows == 0 {
            return limit;
        }
        let per_row = (bytes / rows).max(1);
        let ideal = (self.target_bytes / per_row).max(1);
        ideal
            .min(limit.saturating_mul(self.max_growth))
            .min(self.max_rows)
            .max(1)
    }

    /// Rows to ask for after D1 said the result was too large.
    pub fn shrink(&self, limit: usize) -> Option<usize> {
        if limit <= 1 {
            None
        } else {
            Some((limit / 4).max(1))
        }
    }
}

/// The select expression of one value: an exact SQL literal, or for a REAL the value
/// itself (D1's `quote()` prints some REALs inexactly, while its JSON numbers are exact; the
/// decoder turns them into [`crate::sqltext::literal::push_real_literal`]). With `negative_zero` (the
/// server has SQLite's math functions), `-0.0` keeps its sign, which JSON drops.
fn literal_expr(col: &str, negative_zero: bool) -> String {
    let negzero = if negative_zero {
        format!("WHEN {col}=0.0 AND atan2({col},-1.0)<0.0 THEN '-0.0' ")
    } else {
        String::new()
    };
    format!(
        "CASE typeof({col}) \
         WHEN 'real' THEN CASE {negzero}WHEN {col}=9e999 THEN '9e999' WHEN {col}=-9e999 THEN '-9e999' ELSE {col} END \
         WHEN 'text' THEN CASE WHEN length(CAST({col} AS BLOB))>{LONG_VALUE_BYTES} \
         THEN '{LONG_MARKER}text:'||length(CAST({col} AS BLOB)) \
         WHEN instr(CAST({col} AS BLOB),X'00')>0 THEN 'CAST('||quote(CAST({col} AS BLOB))||' AS TEXT)' \
         ELSE quote({col}) END \
         WHEN 'blob' THEN CASE WHEN length({col})>{LONG_VALUE_BYTES} THEN '{LONG_MARKER}blob:'||length({col}) \
         ELSE quote({col}) END \
         ELSE quote({col}) END"
    )
}

/// D1's limit on the columns of a result (and of a table, an index, an ORDER BY).
pub const MAX_RESULT_COLUMNS: usize = 100;

/// Values longer than this are not selected inline (their literal could exceed D1's
/// 2,000,000-byte value limit and would bloat pages); they are fetched in pieces.
pub const LONG_VALUE_BYTES: usize = 256 * 1024;

/// Prefix of the marker selected in place of a long value: `~Ltext:1500000`. No SQL literal
/// starts with `~`.
pub const LONG_MARKER: &str = "~L";

/// A long value announced by its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongValue {
    pub text: bool,
    pub len: usize,
}

/// Parse a long-value marker.
pub fn parse_long_marker(cell: &str) -> Option<LongValue> {
    let rest = cell.strip_prefix(LONG_MARKER)?;
    let (kind, len) = rest.split_once(':')?;
    Some(LongValue {
        text: match kind {
            "text" => true,
            "blob" => false,
            _ => return None,
        },
        len: len.parse().ok()?,
    })
}

/// The query that reads pieces of one long value as hex: one result row, one column per
/// `(offset, length)` piece. `where_clause` selects the row.
pub fn long_pieces_query(
    table: &Table,
    column: usize,
    pieces: &[(usize, usize)],
    where_clause: &str,
) -> String {
    let name = table
        .insert_columns()
        .nth(column)
        .map(|c| quote_ident(&c.name))
        .unwrap_or_default();
    let sel: Vec<String> = pieces
        .iter()
        .map(|(off, len)| format!("hex(substr(CAST({name} AS BLOB),{},{len}))", off + 1))
        .collect();
    format!(
        "SELECT {} FROM {} WHERE {where_clause}",
        sel.join(","),
        quote_ident(&table.name)
    )
}

/// How one page of a table is read: one statement, or, when the table is too wide for one
/// result (D1 allows 100 result columns and 100,000-byte statements), several statements
/// over the same rows, each returning the key and a group of columns, joined back into one
/// page by [`PageRead::join`].
#[derive(Debug, Clone)]
pub struct PageRead {
    pub statements: Vec<String>,
    /// Insert-column indices read by each statement; empty for a single statement.
    groups: Vec<Vec<usize>>,
    /// Key cells leading each group's rows (1 for rowid tables, the primary key's width
    /// otherwise).
    key_width: usize,
    /// Rowid tables keep the key as the first column of the joined page; WITHOUT ROWID
    /// tables find their key among the columns.
    rowid: bool,
}

/// The pieces a page statement is assembled from.
struct Parts {
    table: String,
    /// Per insert column: `"name" AS cI` (inner) and its literal expression (outer).
    inner: Vec<String>,
    outer: Vec<String>,
    /// Primary-key insert-column positions (WITHOUT ROWID), in key order.
    pk: Vec<usize>,
}

impl Parts {
    fn new(table: &Table, negative_zero: bool) -> Parts {
        let cols: Vec<&super::schema::Column> = table.insert_columns().collect();
        let pk = match &table.key {
            RowKey::Rowid { .. } => Vec::new(),
            RowKey::PrimaryKey(idx) => idx
                .iter()
                .map(|&i| {
                    cols.iter()
                        .position(|c| c.name == table.columns[i].name)
                        .unwrap_or(0)
                })
                .collect(),
        };
        Parts {
            table: quote_ident(&table.name),
            inner: cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} AS c{i}", quote_ident(&c.name)))
                .collect(),
            outer: (0..cols.len())
                .map(|i| literal_expr(&format!("c{i}"), negative_zero))
                .collect(),
            pk,
        }
    }

    /// The statement reading insert columns `cols` (for WITHOUT ROWID tables, led by the
    /// key columns when `lead_key`).
    fn statement(
        &self,
        table: &Table,
        after: Option<&[String]>,
        upto: Option<i64>,
        limit: usize,
        cols: &[usize],
        lead_key: bool,
    ) -> String {
        let t = &self.table;
        match &table.key {
            RowKey::Rowid { name, .. } => {
                let lower = after.and_then(|a| a.first()).map(|k| format!("{name}>{k}"));
                let upper = upto.map(|u| format!("{name}<={u}"));
                let filter = match (lower, upper) {
                    (Some(l), Some(u)) => format!(" WHERE {l} AND {u}"),
                    (Some(c), None) | (None, Some(c)) => format!(" WHERE {c}"),
                    (None, None) => String::new(),
                };
                let mut inner = vec![format!("{name} AS k")];
                inner.extend(cols.iter().map(|&i| self.inner[i].clone()));
                let mut sel = vec!["quote(k)".to_string()];
                sel.extend(cols.iter().map(|&i| self.outer[i].clone()));
                format!(
                    "SELECT {} FROM (SELECT {} FROM {t}{filter} ORDER BY {name} LIMIT {limit}) ORDER BY k",
                    sel.join(","),
                    inner.join(",")
                )
            }
            RowKey::PrimaryKey(idx) => {
                let pk_cols: Vec<String> = idx
                    .iter()
                    .map(|&i| quote_ident(&table.columns[i].name))
                    .collect();
                let filter = after
                    .map(|keys| {
                        if pk_cols.len() == 1 {
                            format!(" WHERE {}>{}", pk_cols[0], keys[0])
                        } else {
                            format!(" WHERE ({})>({})", pk_cols.join(","), keys.join(","))
                        }
                    })
                    .unwrap_or_default();
                let selected: Vec<usize> = if lead_key {
                    self.pk.iter().chain(cols).copied().collect()
                } else {
                    cols.to_vec()
                };
                let mut inner_cols: Vec<usize> = selected.clone();
                inner_cols.sort_unstable();
                inner_cols.dedup();
                for p in &self.pk {
                    if !inner_cols.contains(p) {
                        inner_cols.push(*p);
                    }
                }
                let order: Vec<String> = self.pk.iter().map(|p| format!("c{p}")).collect();
                format!(
                    "SELECT {} FROM (SELECT {} FROM {t}{filter} ORDER BY {} LIMIT {limit}) ORDER BY {}",
                    selected
                        .iter()
                        .map(|&i| self.outer[i].as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    inner_cols
                        .iter()
                        .map(|&i| self.inner[i].as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    pk_cols.join(","),
                    order.join(",")
                )
            }
        }
    }
}

/// Plan the statements of the page after `after` (key literals; `None` for the first page).
///
/// Result columns, once joined: for rowid tables `quote(rowid)` first, then one literal per
/// insertable column; for WITHOUT ROWID tables only the column literals.
pub fn page_read(
    table: &Table,
    after: Option<&[String]>,
    limit: usize,
    negative_zero: bool,
) -> anyhow::Result<PageRead> {
    page_read_within(table, after, None, limit, negative_zero)
}

/// [`page_read`] of the rows up to and including rowid `upto` (rowid tables; ignored for
/// tables keyed by a primary key).
pub fn page_read_within(
    table: &Table,
    after: Option<&[String]>,
    upto: Option<i64>,
    limit: usize,
    negative_zero: bool,
) -> anyhow::Result<PageRead> {
    let parts = Parts::new(table, negative_zero);
    let n = parts.inner.len();
    let all: Vec<usize> = (0..n).collect();
    let rowid = matches!(table.key, RowKey::Rowid { .. });
    let one = parts.statement(table, after, upto, limit, &all, false);
    if n + usize::from(rowid) <= MAX_RESULT_COLUMNS && one.len() <= MAX_STATEMENT_BYTES {
        return Ok(PageRead {
            statements: vec![one],
            groups: Vec::new(),
            key_width: 0,
            rowid,
        });
    }
    let key_width = if rowid { 1 } else { parts.pk.len() };
    let room = MAX_RESULT_COLUMNS.saturating_sub(key_width);
    // Greedy packing: a column joins the current group while the statement stays within
    // both limits (the statement's length is the empty statement's plus each column's).
    let base = parts.statement(table, after, upto, limit, &[], true).len();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = base;
    for i in 0..n {
        let cost = parts.inner[i].len() + parts.outer[i].len() + 2;
        if !current.is_empty() && (current.len() == room || bytes + cost > MAX_STATEMENT_BYTES) {
            groups.push(std::mem::take(&mut current));
            bytes = base;
        }
        current.push(i);
        bytes += cost;
    }
    if !current.is_empty() {
        groups.push(current);
    }
    let statements: Vec<String> = groups
        .iter()
        .map(|g| parts.statement(table, after, upto, limit, g, true))
        .collect();
    if room == 0 || statements.iter().any(|s| s.len() > MAX_STATEMENT_BYTES) {
        anyhow::bail!(
            "table {:?}: its column names (or the last primary key read) are too long to read a page within D1's limit of {MAX_STATEMENT_BYTES} bytes per statement",
            table.name
        );
    }
    Ok(PageRead {
        statements,
        groups,
        key_width,
        rowid,
    })
}

/// Why the pages of a split read could not be joined.
#[derive(Debug, thiserror::Error)]
#[error("the column groups of a page disagree ({0}); the table changed while it was read")]
pub struct GroupsDisagree(String);

impl PageRead {
    /// Join the pages of the statements into one page in the single-statement layout.
    /// Every group must hold the same rows (checked by their keys).
    pub fn join(&self, mut pages: Vec<Page>) -> Result<Page, GroupsDisagree> {
        if self.groups.is_empty() {
            return pages
                .pop()
                .filter(|_| pages.is_empty())
                .ok_or_else(|| GroupsDisagree("one result expected".into()));
        }
        if pages.len() != self.groups.len() {
            return Err(GroupsDisagree(format!(
                "{} results for {} statements",
                pages.len(),
                self.groups.len()
            )));
        }
        let rows = pages[0].len();
        let kw = self.key_width;
        for (g, p) in pages.iter().enumerate() {
            if p.width() != kw + self.groups[g].len() {
                return Err(GroupsDisagree(format!(
                    "group {g} has {} columns",
                    p.width()
                )));
            }
            if p.len() != rows {
                return Err(GroupsDisagree(format!(
                    "{} rows in one group, {rows} in another",
                    p.len()
                )));
            }
        }
        let n: usize = self.groups.iter().map(Vec::len).sum();
        let rowid = self.rowid;
        let width = n + usize::from(rowid);
        let mut joined = Page::new(width);
        joined.reserve_cells(rows * width);
        let mut cells: Vec<&str> = vec![""; n];
        for r in 0..rows {
            for g in 1..pages.len() {
                for k in 0..kw {
                    if pages[g].cell(r, k) != pages[0].cell(r, k) {
                        return Err(GroupsDisagree(format!("row {r} has different keys")));
                    }
                }
            }
            for (g, p) in pages.iter().enumerate() {
                for (j, &col) in self.groups[g].iter().enumerate() {
                    cells[col] = p.cell(r, kw + j);
                }
            }
            if rowid {
                let key = pages[0].cell(r, 0);
                joined.push_cell(key, is_plain(key));
            }
            for c in &cells {
                joined.push_cell(c, is_plain(c));
            }
        }
        Ok(joined)
    }
}

/// The single statement reading a page (tables that fit in one result; tests and tools).
pub fn page_query(
    table: &Table,
    after: Option<&[String]>,
    limit: usize,
    negative_zero: bool,
) -> String {
    let parts = Parts::new(table, negative_zero);
    let all: Vec<usize> = (0..parts.inner.len()).collect();
    parts.statement(table, after, None, limit, &all, false)
}

#[cfg(test)]
mod tests {
    use super::super::schema::{Column, TableKind};
    use super::*;

    #[test]
    fn page_sizes_follow_bytes() {
        let p = PagePolicy::default();
        // (limit, rows, bytes) -> next
        let cases = [
            (500, 500, 500 * 100, 4000),          // 100 B rows: grow, capped at 8x
            (4000, 4000, 4000 * 100, 32000),      // keep growing toward ~41,943
            (32000, 32000, 32000 * 100, 41943),   // reach the byte target
            (500, 500, 500 * 1_000_000, 4),       // 1 MB rows: few per page
            (500, 500, 500 * 100_000_000, 1),     // never below one row
            (100_000, 100_000, 100_000, 100_000), // tiny rows: capped at max_rows
            (500, 0, 0, 500),
        ];
        for (limit, rows, bytes, want) in cases {
            assert_eq!(
                p.next_limit(limit, rows, bytes),
                want,
                "{limit} {rows} {bytes}"
            );
        }
        assert_eq!(p.shrink(500), Some(125));
        assert_eq!(p.shrink(3), Some(1));
        assert_eq!(p.shrink(1), None);
    }

    #[test]
    fn long_markers() {
        assert_eq!(
            parse_long_marker("~Ltext:300000"),
            Some(LongValue {
                text: true,
                len: 300000
            })
        );
        assert_eq!(
            parse_long_marker("~Lblob:5"),
            Some(LongValue {
                text: false,
                len: 5
            })
        );
        for not in ["'~Ltext:1'", "~Lreal:1", "~Ltext:x", "X'00'"] {
            assert_eq!(parse_long_marker(not), None, "{not}");
        }
    }

    fn col(name: &str, pk: i64, hidden: i64) -> Column {
        Column {
            name: name.into(),
            decl_type: String::new(),
            pk,
            hidden,
        }
    }

    #[test]
    fn rowid_pages() {
        let t = Table {
            name: "we\"ird".into(),
            sql: String::new(),
            kind: TableKind::Regular {
                without_rowid: false,
                strict: false,
            },
            columns: vec![col("a", 0, 0), col("g", 0, 2)],
            key: RowKey::Rowid {
                name: "rowid".into(),
                explicit: true,
            },
            parents: vec![],
        };
        let q = page_query(&t, None, 10, false);
        assert!(
            q.contains("FROM \"we\"\"ird\" ORDER BY rowid LIMIT 10"),
            "{q}"
        );
        assert!(!q.contains("\"g\""), "generated columns are not read: {q}");
        let q = page_query(&t, Some(&["42".into()]), 10, false);
        assert!(q.contains("WHERE rowid>42 ORDER BY rowid"), "{q}");
    }

    #[test]
    fn primary_key_pages() {
        let t = Table {
            name: "t".into(),
            sql: String::new(),
            kind: TableKind::Regular {
                without_rowid: true,
                strict: false,
            },
            columns: vec![col("v", 0, 0), col("b", 2, 0), col("a", 1, 0)],
            key: RowKey::PrimaryKey(vec![2, 1]),
            parents: vec![],
        };
        let q = page_query(&t, Some(&["'x'".into(), "X'00'".into()]), 5, true);
        assert!(
            q.contains(
                "WHERE (\"a\",\"b\")>('x',X'00') ORDER BY \"a\",\"b\" LIMIT 5) ORDER BY c2,c1"
            ),
            "{q}"
        );
    }

    /// A connection with D1's limits on result columns and statement length.
    fn d1_limited(conn: &rusqlite::Connection) {
        use rusqlite::limits::Limit;
        conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, 100).unwrap();
        conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000)
            .unwrap();
        conn.set_limit(Limit::SQLITE_LIMIT_EXPR_DEPTH, 100).unwrap();
    }

    fn wide_table(
        name: &str,
        key: RowKey,
        n: usize,
        name_len: usize,
        without_rowid: bool,
    ) -> Table {
        Table {
            name: name.into(),
            sql: String::new(),
            kind: TableKind::Regular {
                without_rowid,
                strict: false,
            },
            columns: (0..n)
                .map(|i| {
                    let pk = match &key {
                        RowKey::PrimaryKey(idx) => {
                            idx.iter().position(|&p| p == i).map_or(0, |p| p as i64 + 1)
                        }
                        RowKey::Rowid { .. } => 0,
                    };
                    col(&format!("c{i:03}{}", "x".repeat(name_len)), pk, 0)
                })
                .collect(),
            key,
            parents: vec![],
        }
    }

    /// Tables at D1's column limit are read in groups that each fit D1's limits, and the
    /// joined page equals what one unlimited statement reads.
    #[test]
    fn wide_tables_are_read_in_groups_within_limits() {
        let cases: Vec<(&str, Table, usize)> = vec![
            (
                "implicit rowid, 100 columns",
                wide_table(
                    "w1",
                    RowKey::Rowid {
                        name: "rowid".into(),
                        explicit: true,
                    },
                    100,
                    0,
                    false,
                ),
                2,
            ),
            (
                "without rowid, 3-column key, 100 columns",
                wide_table("w2", RowKey::PrimaryKey(vec![5, 0, 99]), 100, 0, true),
                1,
            ),
            (
                "99 columns with long names",
                wide_table(
                    "w3",
                    RowKey::Rowid {
                        name: "rowid".into(),
                        explicit: true,
                    },
                    99,
                    600,
                    false,
                ),
                2,
            ),
            (
                "without rowid, long names",
                wide_table("w5", RowKey::PrimaryKey(vec![98, 1]), 100, 900, true),
                2,
            ),
            (
                "narrow",
                wide_table(
                    "w4",
                    RowKey::Rowid {
                        name: "rowid".into(),
                        explicit: true,
                    },
                    10,
                    0,
                    false,
                ),
                1,
            ),
        ];
        for (label, t, statements) in cases {
            let conn = table_with_rows(&t);
            let unlimited =
                crate::source::sqlite::run_page(&conn, &page_query(&t, None, 100, true), 0)
                    .unwrap();
            d1_limited(&conn);
            let rows = read_in_groups(&conn, &t, label, statements);
            let want: Vec<Vec<String>> = (0..unlimited.len())
                .map(|r| unlimited.row(r).into_iter().map(String::from).collect())
                .collect();
            assert_eq!(rows, want, "{label}");
        }
    }

    /// An in-memory database holding `t` with seven rows of every storage class.
    fn table_with_rows(t: &Table) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let cols: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
        let pk = match &t.key {
            RowKey::PrimaryKey(idx) => format!(
                ", PRIMARY KEY({})) WITHOUT ROWID",
                idx.iter()
                    .map(|&i| cols[i].clone())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            RowKey::Rowid { .. } => ")".into(),
        };
        conn.execute_batch(&format!(
            "CREATE TABLE {}({}{pk}",
            quote_ident(&t.name),
            cols.join(",")
        ))
        .unwrap();
        for r in 0..7i64 {
            let vals: Vec<String> = (0..t.columns.len() as i64)
                .map(|c| match c % 4 {
                    0 => (r * 1000 + c).to_string(),
                    1 => format!("'{r}-{c}'"),
                    2 => format!("{r}.5e-300"),
                    _ => format!("X'{:02x}'", r),
                })
                .collect();
            conn.execute_batch(&format!(
                "INSERT INTO {} VALUES({})",
                quote_ident(&t.name),
                vals.join(",")
            ))
            .unwrap();
        }
        conn
    }

    /// Reads every row of `t` in pages of 3, each page in `statements` grouped statements
    /// within D1's limits, and returns the joined rows.
    fn read_in_groups(
        conn: &rusqlite::Connection,
        t: &Table,
        label: &str,
        statements: usize,
    ) -> Vec<Vec<String>> {
        let mut after: Option<Vec<String>> = None;
        let mut rows = Vec::new();
        loop {
            let read = page_read(t, after.as_deref(), 3, true).unwrap();
            assert_eq!(read.statements.len(), statements, "{label}");
            for s in &read.statements {
                assert!(s.len() <= MAX_STATEMENT_BYTES, "{label}: {} bytes", s.len());
            }
            let pages: Vec<Page> = read
                .statements
                .iter()
                .map(|s| {
                    crate::source::sqlite::run_page(conn, s, 0)
                        .unwrap_or_else(|e| panic!("{label}: {e}"))
                })
                .collect();
            let page = read.join(pages).unwrap();
            for r in 0..page.len() {
                rows.push(
                    page.row(r)
                        .into_iter()
                        .map(String::from)
                        .collect::<Vec<_>>(),
                );
            }
            if page.len() < 3 {
                return rows;
            }
            let last = page.row(page.len() - 1);
            after = Some(match &t.key {
                RowKey::Rowid { .. } => vec![last[0].to_string()],
                RowKey::PrimaryKey(idx) => idx.iter().map(|&i| last[i].to_string()).collect(),
            });
        }
    }

    /// Groups whose rows differ are refused, never joined.
    #[test]
    fn disagreeing_groups_are_refused() {
        let t = wide_table(
            "w",
            RowKey::Rowid {
                name: "rowid".into(),
                explicit: true,
            },
            100,
            0,
            false,
        );
        let read = page_read(&t, None, 10, false).unwrap();
        let page = |keys: &[&str], width: usize| {
            let mut p = Page::new(width);
            for k in keys {
                p.push(k);
                for _ in 1..width {
                    p.push("NULL");
                }
            }
            p
        };
        let widths: Vec<usize> = read.groups.iter().map(|g| g.len() + 1).collect();
        assert!(
            read.join(vec![
                page(&["1", "2"], widths[0]),
                page(&["1", "2"], widths[1])
            ])
            .is_ok()
        );
        assert!(
            read.join(vec![
                page(&["1", "2"], widths[0]),
                page(&["1", "3"], widths[1])
            ])
            .is_err()
        );
        assert!(
            read.join(vec![page(&["1", "2"], widths[0]), page(&["1"], widths[1])])
                .is_err()
        );
        assert!(read.join(vec![page(&["1", "2"], widths[0])]).is_err());
    }

    /// The literal expression keeps every value exact, NUL-containing text included.
    #[test]
    fn literals_are_exact_in_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t(v); INSERT INTO t VALUES (NULL),(9223372036854775807),(-9223372036854775808),\
             (0.1),(1e308),(5e-324),(-0.0),(0.0),('a'||char(0)||'b'),('it''s'),(X'00FF'),(X''),('');",
        )
        .unwrap();
        let sql = format!("SELECT {} FROM t", literal_expr("v", true));
        let page = crate::source::sqlite::run_page(&conn, &sql, 0).unwrap();
        let lits: Vec<String> = (0..page.len())
            .map(|r| page.cell(r, 0).to_string())
            .collect();
        let back = rusqlite::Connection::open_in_memory().unwrap();
        back.execute_batch("CREATE TABLE t(v)").unwrap();
        for l in &lits {
            back.execute_batch(&format!(
                "INSERT INTO t VALUES({})",
                super::super::sql::normalize_literal(l)
            ))
            .unwrap();
        }
        let dump = |c: &rusqlite::Connection| -> Vec<(String, String)> {
            c.prepare("SELECT typeof(v), hex(v), CASE WHEN typeof(v)='real' THEN atan2(v,-1.0) END FROM t ORDER BY rowid")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, format!("{}{:?}", r.get::<_, String>(1)?, r.get::<_, Option<f64>>(2)?))))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(dump(&conn), dump(&back));
        assert!(
            lits.iter().any(|l| l.starts_with("CAST(X'610062'")),
            "{lits:?}"
        );
    }
}
