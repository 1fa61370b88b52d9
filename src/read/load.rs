//! Loading a SQL dump into SQLite the way D1 imports it.
//!
//! Statements are split where SQLite's own completeness rule (`sqlite3_complete`, which also
//! understands `CREATE TRIGGER … BEGIN … END;`) splits them, in one linear pass
//! ([`crate::sqltext::split`]), and run one at a time. Under D1's rules every statement must be at
//! most 100,000 bytes, foreign keys are enforced, and the whole load is one transaction — so
//! the dump's `PRAGMA defer_foreign_keys=TRUE` defers the checks to the end, as in D1. A
//! stored dump is untrusted: only the statements a dump contains run
//! ([`crate::sqltext::statement`]), an authorizer refuses transaction control, ATTACH/DETACH
//! and other PRAGMAs besides, and the database can be capped in size. The reader is consumed as a stream; memory stays flat whatever the dump.

use std::ffi::CString;
use std::io::Read;

use anyhow::{Context, Result, bail};
use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use crate::sqltext::split::{Splitter, strip_leading_comments};
use crate::sqltext::statement::DumpGrammar;

/// How strictly to load.
#[derive(Debug, Clone, Copy)]
pub struct LoadRules {
    /// Refuse statements longer than this (D1: 100,000 bytes).
    pub max_statement_bytes: Option<usize>,
    /// `PRAGMA foreign_keys=ON` and one transaction around the whole load.
    pub d1_semantics: bool,
    /// Refuse to grow the database past about this many bytes (`PRAGMA max_page_count`).
    pub max_db_bytes: Option<u64>,
    /// Run only what a dump contains ([`DumpGrammar`]): every statement is checked before it
    /// runs, and the first other one stops the load. Data may go into tables the dump creates
    /// and those the database already has.
    pub dump_statements_only: bool,
}

impl LoadRules {
    /// D1's rules.
    pub fn d1() -> LoadRules {
        LoadRules {
            max_statement_bytes: Some(crate::sqltext::MAX_STATEMENT_BYTES),
            d1_semantics: true,
            max_db_bytes: None,
            dump_statements_only: true,
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

/// SQLite's default `SQLITE_MAX_SQL_LENGTH`.
const SQLITE_MAX_SQL_LENGTH: usize = 1_000_000_000;

/// Split a SQL stream into statements and hand each to `f` (with the 1-based line of its
/// first token), one statement at a time, leading comments removed.
///
/// The stream is read in chunks and split in one linear pass ([`Splitter`]): no line is
/// buffered whole, and a statement that grows past `max_bytes` (plus room for leading
/// comments) fails at once — a corrupted or hostile dump (an unbalanced quote, a gigabyte
/// line) costs bounded memory and time. Without a limit, SQLite's own maximum applies.
pub fn for_each_statement<R: Read>(
    mut reader: R,
    max_bytes: Option<usize>,
    mut f: impl FnMut(&str, u64) -> Result<()>,
) -> Result<LoadStats> {
    let mut splitter = Splitter::new(max_bytes.unwrap_or(SQLITE_MAX_SQL_LENGTH));
    let mut stats = LoadStats::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut each = |stmt: &[u8], line: u64, stats: &mut LoadStats| -> Result<()> {
        let body = strip_leading_comments(stmt);
        if body.is_empty() {
            return Ok(());
        }
        let text = std::str::from_utf8(body)
            .with_context(|| format!("the statement on line {line} is not valid UTF-8"))?;
        f(text, line)?;
        stats.statements += 1;
        stats.longest_statement = stats.longest_statement.max(text.trim_end().len());
        Ok(())
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::Error::from(e).context("reading the dump")),
        };
        if n == 0 {
            break;
        }
        stats.bytes += n as u64;
        splitter.feed(&buf[..n], |stmt, line| each(stmt, line, &mut stats))?;
    }
    if let Some((rest, line)) = splitter.finish()?
        && !strip_leading_comments(&rest).is_empty()
    {
        bail!("the dump ends inside a statement that starts on line {line} (truncated?)");
    }
    Ok(stats)
}

/// The checks every statement of a stored dump passes before it runs, here or in D1: its
/// size, and (with a grammar) that it is a statement a dump contains.
fn check_statement(
    body: &str,
    line: u64,
    max: Option<usize>,
    grammar: Option<&mut DumpGrammar>,
) -> Result<()> {
    if let Some(max) = max
        && body.len() > max
    {
        bail!(
            "statement on line {line} is {} bytes; D1 accepts at most {max}",
            body.len()
        );
    }
    if let Some(g) = grammar {
        g.check(body).map_err(|why| {
            anyhow::anyhow!(
                "statement on line {line} is refused: {why} ({}); a backup runs only the statements a dump contains",
                excerpt(body)
            )
        })?;
    }
    Ok(())
}

/// Split and check every statement of a dump against `grammar` without running any (before
/// it goes to D1).
pub fn check_statements<R: Read>(
    reader: R,
    max_bytes: usize,
    mut grammar: DumpGrammar,
) -> Result<LoadStats> {
    for_each_statement(reader, Some(max_bytes), |stmt, line| {
        check_statement(stmt.trim_end(), line, Some(max_bytes), Some(&mut grammar))
    })
}

/// PRAGMAs a dump may run while it loads (D1's export and d1-backup's dumps use the first;
/// FTS5 reads `data_version` itself).
const LOAD_PRAGMAS: &[&str] = &["defer_foreign_keys", "data_version"];

/// While a dump loads, the connection refuses what no dump needs and a hostile one could
/// use: ATTACH/DETACH (files outside the database), transaction control (the load is one
/// transaction), and every PRAGMA but [`LOAD_PRAGMAS`].
fn load_authorizer(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } | AuthAction::Transaction { .. } => {
            Authorization::Deny
        }
        AuthAction::Pragma { pragma_name, .. }
            if !LOAD_PRAGMAS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name)) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// Load a dump into `conn` under `rules`.
pub fn load<R: Read>(conn: &mut Connection, reader: R, rules: LoadRules) -> Result<LoadStats> {
    if let Some(max) = rules.max_db_bytes {
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (max / page_size.max(512) as u64).max(16);
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    }
    if rules.d1_semantics {
        conn.execute_batch("PRAGMA foreign_keys=ON; BEGIN;")?;
    }
    conn.authorizer(Some(load_authorizer))?;
    // Data may go into the tables the dump creates and those the database already has (a
    // data-only dump loads into its schema; verify and restore load into empty databases).
    let mut grammar = if rules.dump_statements_only {
        let mut stmt = conn.prepare("SELECT name FROM sqlite_schema WHERE type='table'")?;
        let existing = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Some(DumpGrammar::with_tables(
            existing.iter().map(String::as_str),
        ))
    } else {
        None
    };
    let result = for_each_statement(reader, rules.max_statement_bytes, |stmt, line| {
        let body = stmt.trim_end();
        check_statement(body, line, rules.max_statement_bytes, grammar.as_mut())?;
        // Exactly one statement (the splitter's), so nothing can ride along behind it.
        conn.execute_batch(body)
            .with_context(|| format!("statement on line {line} failed: {}", excerpt(body)))
    });
    conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>)?;
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
            ("SELECT 1; -- trailing\n", &["SELECT 1;"]),
            (
                "SELECT 1; COMMIT; ATTACH 'x' AS y;\n",
                &["SELECT 1;", "COMMIT;", "ATTACH 'x' AS y;"],
            ),
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
        let mut counted = Counted {
            inner: sql.as_bytes(),
            read: 0,
        };
        let err = for_each_statement(
            &mut counted,
            Some(crate::sqltext::MAX_STATEMENT_BYTES),
            |_, _| Ok(()),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 1") && msg.contains("100000"), "{msg}");
        // Stopped within a read of the limit, not at the end of the dump.
        assert!(
            counted.read < 100_000 + 64 * 1024 + 64 * 1024 + line.len(),
            "{}",
            counted.read
        );
        assert!(counted.read < sql.len() / 4, "{}", counted.read);
    }

    struct Counted<R> {
        inner: R,
        read: usize,
    }

    impl<R: Read> Read for Counted<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n;
            Ok(n)
        }
    }

    /// One statement runs at a time, and what no dump needs is refused — the attacks on
    /// verification: a line with several statements, ATTACH by a second statement, PRAGMAs.
    #[test]
    fn hostile_statements_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.db");
        let cases = [
            format!(
                "CREATE TABLE t(a);\nSELECT 1; COMMIT; ATTACH '{}' AS x; CREATE TABLE x.owned(a);\n",
                outside.display()
            ),
            format!("ATTACH '{}' AS x;\n", outside.display()),
            format!(
                "CREATE TABLE t(a);\nINSERT INTO t SELECT 1 FROM (SELECT 1); ATTACH '{}' AS x;\n",
                outside.display()
            ),
            "PRAGMA writable_schema=ON;\n".to_string(),
            "CREATE TABLE t(a);\nSELECT * FROM pragma_database_list;\n".to_string(),
        ];
        // The grammar refuses each; without it, the authorizer still does.
        for (grammar, needle) in [(true, "is refused"), (false, "not authorized")] {
            for sql in &cases {
                let target = dir.path().join(format!("target-{grammar}.db"));
                let _ = std::fs::remove_file(&target);
                let mut conn = Connection::open(&target).unwrap();
                let rules = LoadRules {
                    dump_statements_only: grammar,
                    ..LoadRules::d1()
                };
                let err = load(&mut conn, sql.as_bytes(), rules).unwrap_err();
                assert!(format!("{err:#}").contains(needle), "{sql}: {err:#}");
                assert!(
                    !outside.exists(),
                    "{sql}: a file was created outside the database"
                );
            }
        }
        // The database cannot grow past its bound.
        let mut conn = Connection::open(dir.path().join("bounded.db")).unwrap();
        let rules = LoadRules {
            max_db_bytes: Some(1 << 20),
            dump_statements_only: false,
            ..LoadRules::d1()
        };
        let sql = "CREATE TABLE t(a);\nINSERT INTO t VALUES(zeroblob(4000000));\n";
        let err = load(&mut conn, sql.as_bytes(), rules).unwrap_err();
        assert!(format!("{err:#}").contains("full"), "{err:#}");
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
        let mut conn = Connection::open_in_memory().unwrap();
        let long = format!(
            "CREATE TABLE t(a); INSERT INTO t VALUES('{}');\n",
            "x".repeat(100_001)
        );
        assert!(load(&mut conn, long.as_bytes(), LoadRules::d1()).is_err());
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(load(&mut conn, "BEGIN;\n".as_bytes(), LoadRules::d1()).is_err());
        // Deferred foreign keys: a child before its parent loads; a dangling one does not.
        let ok = "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE c(p REFERENCES p(id));\nCREATE TABLE p(id INTEGER PRIMARY KEY);\nINSERT INTO c VALUES(1);\nINSERT INTO p VALUES(1);\n";
        let mut conn = Connection::open_in_memory().unwrap();
        load(&mut conn, ok.as_bytes(), LoadRules::d1()).unwrap();
        let bad = "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE c(p REFERENCES p(id));\nCREATE TABLE p(id INTEGER PRIMARY KEY);\nINSERT INTO c VALUES(2);\n";
        let mut conn = Connection::open_in_memory().unwrap();
        let err = load(&mut conn, bad.as_bytes(), LoadRules::d1()).unwrap_err();
        assert!(format!("{err:#}").contains("FOREIGN KEY"), "{err:#}");
    }
}
