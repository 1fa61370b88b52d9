//! Loading a SQL dump into SQLite the way D1 imports it.
//!
//! Statements are split with SQLite's own completeness rule (`sqlite3_complete`, which also
//! understands `CREATE TRIGGER … BEGIN … END;`), so multi-line schema statements and
//! literals work. Under D1's rules every statement must be at most 100,000 bytes, foreign
//! keys are enforced, `BEGIN`/`COMMIT` are refused, and the whole load is one transaction —
//! so the dump's `PRAGMA defer_foreign_keys=TRUE` defers the checks to the end, as in D1.
//! The reader is consumed as a stream; memory stays flat whatever the dump's size.

use std::ffi::CString;
use std::io::BufRead;

use anyhow::{Context, Result, bail};
use rusqlite::Connection;

/// How strictly to load.
#[derive(Debug, Clone, Copy)]
pub struct LoadRules {
    /// Refuse statements longer than this (D1: 100,000 bytes).
    pub max_statement_bytes: Option<usize>,
    /// `PRAGMA foreign_keys=ON` and one transaction around the whole load.
    pub d1_semantics: bool,
}

impl LoadRules {
    /// D1's rules.
    pub fn d1() -> LoadRules {
        LoadRules {
            max_statement_bytes: Some(crate::dump::sql::MAX_STATEMENT_BYTES),
            d1_semantics: true,
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub statements: u64,
    pub bytes: u64,
    pub longest_statement: usize,
}

/// `sqlite3_complete`: does `sql` end with a complete statement?
pub fn is_complete(sql: &str) -> bool {
    let Ok(c) = CString::new(sql) else {
        // An interior NUL cannot occur in valid SQL text outside a literal; let SQLite
        // report it when the statement runs.
        return sql.trim_end().ends_with(';');
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) != 0 }
}

/// Strip leading whitespace and `--`/`/* */` comments (for measuring and classifying).
fn strip_leading_comments(mut s: &str) -> &str {
    loop {
        let t = s.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            s = rest.split_once('\n').map(|(_, r)| r).unwrap_or("");
        } else if let Some(rest) = t.strip_prefix("/*") {
            s = rest.split_once("*/").map(|(_, r)| r).unwrap_or("");
        } else {
            return t;
        }
    }
}

fn first_keyword(stmt: &str) -> String {
    stmt.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// SQLite's default `SQLITE_MAX_SQL_LENGTH`.
const SQLITE_MAX_SQL_LENGTH: usize = 1_000_000_000;
/// Leading comments and blank lines counted into a statement's buffer beyond its limit.
const COMMENT_ROOM: usize = 64 * 1024;

/// Split a SQL stream into statements and hand each to `f` (with its 1-based line number).
///
/// A statement that grows past `max_bytes` (plus room for leading comments) fails at once:
/// a corrupted dump (an unbalanced quote) must not be buffered, and re-scanned, to its end.
/// Without a limit, SQLite's own maximum statement length applies.
pub fn for_each_statement<R: BufRead>(
    mut reader: R,
    max_bytes: Option<usize>,
    mut f: impl FnMut(&str, u64) -> Result<()>,
) -> Result<LoadStats> {
    let cap = max_bytes.map_or(SQLITE_MAX_SQL_LENGTH, |m| m.saturating_add(COMMENT_ROOM));
    let mut stats = LoadStats::default();
    let mut buf = String::new();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut start_line = 1u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .context("reading the dump")?;
        if n == 0 {
            break;
        }
        line_no += 1;
        stats.bytes += n as u64;
        if buf.is_empty() {
            start_line = line_no;
        }
        let text = std::str::from_utf8(&line)
            .with_context(|| format!("line {line_no} of the dump is not valid UTF-8"))?;
        buf.push_str(text);
        if buf.len() > cap {
            bail!(
                "the statement starting on line {start_line} is still incomplete after {} bytes{} (an unbalanced quote: the dump is corrupted or truncated?)",
                buf.len(),
                max_bytes
                    .map(|m| format!("; D1 accepts at most {m}"))
                    .unwrap_or_default()
            );
        }
        if text.contains(';') && is_complete(&buf) {
            let stmt = strip_leading_comments(&buf);
            if !stmt.is_empty() {
                f(stmt, start_line)?;
                stats.statements += 1;
                stats.longest_statement = stats.longest_statement.max(stmt.trim_end().len());
            }
            buf.clear();
        }
    }
    if !strip_leading_comments(&buf).is_empty() {
        bail!("the dump ends inside a statement that starts on line {start_line} (truncated?)");
    }
    Ok(stats)
}

/// Load a dump into `conn` under `rules`.
pub fn load<R: BufRead>(conn: &Connection, reader: R, rules: LoadRules) -> Result<LoadStats> {
    if rules.d1_semantics {
        conn.execute_batch("PRAGMA foreign_keys=ON; BEGIN;")?;
    }
    let result = for_each_statement(reader, rules.max_statement_bytes, |stmt, line| {
        let body = stmt.trim_end();
        if let Some(max) = rules.max_statement_bytes
            && body.len() > max
        {
            bail!(
                "statement on line {line} is {} bytes; D1 accepts at most {max}",
                body.len()
            );
        }
        if rules.d1_semantics
            && matches!(
                first_keyword(body).as_str(),
                "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE"
            )
        {
            bail!("statement on line {line} controls transactions, which D1 refuses");
        }
        conn.execute_batch(body)
            .with_context(|| format!("statement on line {line} failed: {}", excerpt(body)))
    });
    match result {
        Ok(stats) => {
            if rules.d1_semantics {
                conn.execute_batch("COMMIT;")
                    .context("committing the load (deferred foreign key checks run here)")?;
            }
            Ok(stats)
        }
        Err(e) => {
            if rules.d1_semantics {
                let _ = conn.execute_batch("ROLLBACK;");
            }
            Err(e)
        }
    }
}

fn excerpt(stmt: &str) -> String {
    let flat: String = stmt
        .chars()
        .take(120)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if stmt.chars().count() > 120 {
        format!("{flat}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(sql: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_statement(sql.as_bytes(), None, |s, _| {
            out.push(s.trim_end().to_string());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn splitting_follows_sqlite() {
        let cases: &[(&str, &[&str])] = &[
            ("SELECT 1;\nSELECT 2;\n", &["SELECT 1;", "SELECT 2;"]),
            ("-- header\nSELECT 1;\n", &["SELECT 1;"]),
            (
                "INSERT INTO t VALUES('a;\nb');\n",
                &["INSERT INTO t VALUES('a;\nb');"],
            ),
            (
                "CREATE TRIGGER x AFTER INSERT ON t BEGIN\n  SELECT 1;\n  SELECT 2;\nEND;\nSELECT 3;\n",
                &[
                    "CREATE TRIGGER x AFTER INSERT ON t BEGIN\n  SELECT 1;\n  SELECT 2;\nEND;",
                    "SELECT 3;",
                ],
            ),
            ("SELECT 1; -- trailing\n", &["SELECT 1; -- trailing"]),
            ("-- only a comment\n", &[]),
        ];
        for (sql, want) in cases {
            assert_eq!(split(sql), *want, "{sql:?}");
        }
    }

    #[test]
    fn an_unbalanced_quote_fails_at_the_limit_not_at_the_end() {
        // A flipped byte that drops a closing quote: every later line holds a `;`, and the
        // statement would otherwise be re-scanned (quadratically) to the end of the dump.
        let mut sql = String::from("INSERT INTO t VALUES('oops);\n");
        let line = "INSERT INTO t VALUES('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa');\n";
        let lines = 20_000;
        for _ in 0..lines {
            sql.push_str(line);
        }
        let err = for_each_statement(
            sql.as_bytes(),
            Some(crate::dump::sql::MAX_STATEMENT_BYTES),
            |_, _| Ok(()),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("line 1") && msg.contains("at most 100000"),
            "{msg}"
        );
        let stopped_after: usize = msg
            .split("after ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(stopped_after < 100_000 + 64 * 1024 + line.len(), "{msg}");
        assert!(stopped_after < sql.len() / 4, "{msg}");
    }

    #[test]
    fn truncated_dump_is_an_error() {
        let err = for_each_statement(
            "SELECT 1;\nINSERT INTO t VALUES('x".as_bytes(),
            None,
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn d1_rules() {
        let conn = Connection::open_in_memory().unwrap();
        let long = format!(
            "CREATE TABLE t(a); INSERT INTO t VALUES('{}');\n",
            "x".repeat(100_001)
        );
        assert!(load(&conn, long.as_bytes(), LoadRules::d1()).is_err());
        let conn = Connection::open_in_memory().unwrap();
        assert!(load(&conn, "BEGIN;\n".as_bytes(), LoadRules::d1()).is_err());
        // Deferred foreign keys: a child before its parent loads; a dangling one does not.
        let ok = "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE c(p REFERENCES p(id));\nCREATE TABLE p(id INTEGER PRIMARY KEY);\nINSERT INTO c VALUES(1);\nINSERT INTO p VALUES(1);\n";
        let conn = Connection::open_in_memory().unwrap();
        load(&conn, ok.as_bytes(), LoadRules::d1()).unwrap();
        let bad = "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE c(p REFERENCES p(id));\nCREATE TABLE p(id INTEGER PRIMARY KEY);\nINSERT INTO c VALUES(2);\n";
        let conn = Connection::open_in_memory().unwrap();
        let err = load(&conn, bad.as_bytes(), LoadRules::d1()).unwrap_err();
        assert!(format!("{err:#}").contains("FOREIGN KEY"), "{err:#}");
    }
}
