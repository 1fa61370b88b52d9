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
use super::sql::quote_ident;

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

/// The select expression of one value: an exact SQL literal. With `negative_zero` (the
/// server has SQLite's math functions), `-0.0` keeps its sign, which `quote()` drops.
fn literal_expr(col: &str, negative_zero: bool) -> String {
    let negzero = if negative_zero {
        format!(" WHEN typeof({col})='real' AND {col}=0.0 AND atan2({col},-1.0)<0.0 THEN '-0.0'")
    } else {
        String::new()
    };
    format!(
        "CASE WHEN typeof({col}) IN ('text','blob') AND length(CAST({col} AS BLOB))>{LONG_VALUE_BYTES} \
         THEN '{LONG_MARKER}'||typeof({col})||':'||length(CAST({col} AS BLOB)) \
         WHEN typeof({col})='text' AND instr(CAST({col} AS BLOB),X'00')>0 \
         THEN 'CAST('||quote(CAST({col} AS BLOB))||' AS TEXT)'{negzero} ELSE quote({col}) END"
    )
}

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

/// Build the query for the page after `after` (key literals; `None` for the first page).
///
/// Result columns: for rowid tables `quote(rowid)` first, then one literal per insertable
/// column; for WITHOUT ROWID tables only the column literals.
pub fn page_query(
    table: &Table,
    after: Option<&[String]>,
    limit: usize,
    negative_zero: bool,
) -> String {
    let t = quote_ident(&table.name);
    let cols: Vec<String> = table
        .insert_columns()
        .map(|c| quote_ident(&c.name))
        .collect();
    let inner_cols: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} AS c{i}"))
        .collect();
    let outer: Vec<String> = (0..cols.len())
        .map(|i| literal_expr(&format!("c{i}"), negative_zero))
        .collect();
    match &table.key {
        RowKey::Rowid { name, .. } => {
            let filter = after
                .and_then(|a| a.first())
                .map(|k| format!(" WHERE {name}>{k}"))
                .unwrap_or_default();
            let mut inner = vec![format!("{name} AS k")];
            inner.extend(inner_cols);
            let mut sel = vec!["quote(k)".to_string()];
            sel.extend(outer);
            format!(
                "SELECT {} FROM (SELECT {} FROM {t}{filter} ORDER BY {name} LIMIT {limit}) ORDER BY k",
                sel.join(","),
                inner.join(",")
            )
        }
        RowKey::PrimaryKey(idx) => {
            let insert_names: Vec<&str> = table.insert_columns().map(|c| c.name.as_str()).collect();
            let pk_cols: Vec<String> = idx
                .iter()
                .map(|&i| quote_ident(&table.columns[i].name))
                .collect();
            let pk_aliases: Vec<String> = idx
                .iter()
                .map(|&i| {
                    let pos = insert_names
                        .iter()
                        .position(|n| *n == table.columns[i].name)
                        .unwrap_or(0);
                    format!("c{pos}")
                })
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
            format!(
                "SELECT {} FROM (SELECT {} FROM {t}{filter} ORDER BY {} LIMIT {limit}) ORDER BY {}",
                outer.join(","),
                inner_cols.join(","),
                pk_cols.join(","),
                pk_aliases.join(",")
            )
        }
    }
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
        let lits: Vec<String> = conn
            .prepare(&sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
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
