//! Which statements a dump may contain: the allow-list every restore and verification applies
//! to a stored backup before a statement runs.
//!
//! A stored backup is untrusted input. Whoever can write to the bucket can replace a backup
//! and its manifest together, so a matching SHA-256 proves nothing about intent; only the
//! shape of each statement can. A d1-backup dump (and D1's own export) contains:
//!
//! * `PRAGMA defer_foreign_keys=TRUE`;
//! * `CREATE TABLE` / `CREATE [UNIQUE] INDEX` / `CREATE VIEW` / `CREATE TRIGGER` /
//!   `CREATE VIRTUAL TABLE` (never `TEMP`, never in another schema, never `AS SELECT`);
//! * `INSERT INTO t [(columns)] VALUES (…)[, (…)]` into a table the dump created (or one the
//!   caller names, for data-only backups), `sqlite_sequence` or `sqlite_stat1/4`, where every
//!   value is a literal expression: literals, `-`, `CAST(… AS TEXT|BLOB)`, `char(…)`,
//!   `replace(…)`, `*`, `/`, `<<`, `||`, parentheses — no names, no subqueries;
//! * the pieces of a split row: `UPDATE t SET c=c||v WHERE k=v [AND k=v…]`,
//!   `UPDATE t SET c=CAST(c||v AS BLOB) WHERE …`, `UPDATE t SET c=CAST(c AS TEXT) WHERE …`;
//! * `DELETE FROM sqlite_sequence [WHERE name=v]` and `ANALYZE sqlite_schema` (D1's export).
//!
//! Anything else — DROP, DELETE elsewhere, ATTACH, other PRAGMAs, transaction control, UPDATE
//! of other shapes, INSERT … SELECT or ON CONFLICT, a second statement behind the first —
//! is refused. Once a trigger exists no more data statements are accepted, so a forged
//! trigger cannot fire during the restore (dumps create triggers after their data).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Why a statement is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refuse<T>(why: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(why.into()))
}

/// A token, borrowing from the statement (a quoted name is copied only when it holds a
/// doubled quote): checking a statement allocates little more than its token list.
#[derive(Debug, Clone, PartialEq)]
enum Tok<'s> {
    /// A bare word (keyword or identifier), as written.
    Word(&'s str),
    /// A quoted identifier, unquoted.
    Quoted(Cow<'s, str>),
    Str,
    Blob,
    Num,
    /// Punctuation and operators: `(`, `)`, `,`, `;`, `=`, `||`, `<<`, `.`, …
    Op(&'static str),
    /// Anything else (variables, other operators): never part of a value.
    Other,
}

const OPS: &[&str] = &[
    "||", "<<", ">>", "<=", ">=", "==", "!=", "<>", "(", ")", ",", ";", "=", "*", "/", "+", "-",
    ".", "<", ">", "%", "&", "|", "~",
];

fn is_id_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_id(c: char) -> bool {
    is_id_start(c) || c.is_ascii_digit() || c == '$'
}

/// Splits one statement into tokens (comments and whitespace dropped).
fn tokenize(sql: &str) -> Result<Vec<Tok<'_>>, Refused> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let rest = &sql[i..];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if rest.starts_with("--") {
            i += rest.find('\n').map_or(rest.len(), |p| p + 1);
        } else if let Some(body) = rest.strip_prefix("/*") {
            i += body.find("*/").map_or(rest.len(), |p| p + 4);
        } else if c == b'\'' {
            i += quoted_len(rest, '\'')?;
            out.push(Tok::Str);
        } else if (c == b'x' || c == b'X') && b.get(i + 1) == Some(&b'\'') {
            i += 1 + quoted_len(&rest[1..], '\'')?;
            out.push(Tok::Blob);
        } else if c == b'"' || c == b'`' {
            let n = quoted_len(rest, c as char)?;
            let q = c as char;
            let inner = &rest[1..n - 1];
            out.push(Tok::Quoted(if inner.contains(q) {
                Cow::Owned(inner.replace(&format!("{q}{q}"), &q.to_string()))
            } else {
                Cow::Borrowed(inner)
            }));
            i += n;
        } else if c == b'[' {
            let n = rest
                .find(']')
                .ok_or_else(|| Refused("an unterminated [name]".into()))?;
            out.push(Tok::Quoted(Cow::Borrowed(&rest[1..n])));
            i += n + 1;
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            i += number_len(rest);
            out.push(Tok::Num);
        } else if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Tok::Op(op));
            i += op.len();
        } else {
            let ch = rest.chars().next().unwrap_or(' ');
            if is_id_start(ch) {
                let n = rest.find(|c: char| !is_id(c)).unwrap_or(rest.len());
                out.push(Tok::Word(&rest[..n]));
                i += n;
            } else {
                out.push(Tok::Other);
                i += ch.len_utf8();
            }
        }
    }
    Ok(out)
}

/// Length of a quoted token starting at `s[0] == q`, closing quote included (`qq` escapes).
/// `q` is ASCII, so a byte search finds it (it never occurs inside a multi-byte character).
fn quoted_len(s: &str, q: char) -> Result<usize, Refused> {
    let b = s.as_bytes();
    let q = q as u8;
    let mut i = 1;
    while let Some(p) = b[i..].iter().position(|&c| c == q) {
        let at = i + p;
        if b.get(at + 1) == Some(&q) {
            i = at + 2;
        } else {
            return Ok(at + 1);
        }
    }
    refuse("an unterminated quoted token")
}

fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
        return 2 + b[2..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
    }
    let mut i = b
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b'.')
        .count();
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let digits = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            i = j + digits;
        }
    }
    i
}

/// A cursor over one statement's tokens.
struct Cursor<'a> {
    toks: &'a [Tok<'a>],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a Tok<'a>> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<&'a Tok<'a>> {
        let t = self.toks.get(self.pos);
        self.pos += 1;
        t
    }

    /// The next token is the keyword `kw` (consumed when it is).
    fn word(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn op(&mut self, op: &str) -> bool {
        match self.peek() {
            Some(Tok::Op(o)) if *o == op => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn expect_word(&mut self, kw: &str) -> Result<(), Refused> {
        if self.word(kw) {
            Ok(())
        } else {
            refuse(format!("expected {kw}"))
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), Refused> {
        if self.op(op) {
            Ok(())
        } else {
            refuse(format!("expected `{op}`"))
        }
    }

    /// A name (bare or quoted), never qualified by a schema.
    fn name(&mut self) -> Result<String, Refused> {
        let n = match self.next() {
            Some(Tok::Word(w)) => w.to_string(),
            Some(Tok::Quoted(w)) => w.to_string(),
            _ => return refuse("expected a name"),
        };
        if self.peek() == Some(&Tok::Op(".")) {
            return refuse(format!("{n:?} names another schema"));
        }
        Ok(n)
    }

    /// The statement ends here: only its `;` (if any) remains.
    fn end(&mut self) -> Result<(), Refused> {
        self.op(";");
        if self.pos < self.toks.len() {
            return refuse("more follows where the statement should end");
        }
        Ok(())
    }

    /// A literal expression: literals combined with the few functions and operators a dump
    /// uses; no names, no subqueries.
    fn value(&mut self, depth: usize) -> Result<(), Refused> {
        if depth > 64 {
            return refuse("a value nested too deeply");
        }
        self.term(depth)?;
        while ["||", "*", "/", "<<", "+", "-"]
            .iter()
            .any(|op| self.op(op))
        {
            self.term(depth)?;
        }
        Ok(())
    }

    fn term(&mut self, depth: usize) -> Result<(), Refused> {
        match self.next() {
            Some(Tok::Str | Tok::Blob | Tok::Num) => Ok(()),
            Some(Tok::Op("-" | "+")) => self.term(depth + 1),
            Some(Tok::Op("(")) => {
                self.value(depth + 1)?;
                self.expect_op(")")
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NULL") => Ok(()),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("CAST") => {
                self.expect_op("(")?;
                self.value(depth + 1)?;
                self.expect_word("AS")?;
                if !(self.word("TEXT") || self.word("BLOB")) {
                    return refuse("a CAST to other than TEXT or BLOB");
                }
                self.expect_op(")")
            }
            Some(Tok::Word(w))
                if w.eq_ignore_ascii_case("char") || w.eq_ignore_ascii_case("replace") =>
            {
                self.expect_op("(")?;
                self.value(depth + 1)?;
                while self.op(",") {
                    self.value(depth + 1)?;
                }
                self.expect_op(")")
            }
            _ => refuse("a value that is not a literal"),
        }
    }
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Tables SQLite maintains that a dump may still write to.
const INTERNAL_TABLES: &[&str] = &["sqlite_sequence", "sqlite_stat1", "sqlite_stat4"];

/// The allow-list, with what the statements seen so far created.
#[derive(Debug, Clone, Default)]
pub struct DumpGrammar {
    /// Tables data may go into, lower-cased.
    tables: HashSet<String>,
    /// A trigger exists: no more data statements.
    triggers: bool,
}

impl DumpGrammar {
    /// For a full dump: data may go only into tables it creates.
    pub fn new() -> DumpGrammar {
        DumpGrammar::default()
    }

    /// For a data-only dump: data may also go into `tables` (which the target already has).
    pub fn with_tables<'a>(tables: impl IntoIterator<Item = &'a str>) -> DumpGrammar {
        DumpGrammar {
            tables: tables.into_iter().map(str::to_ascii_lowercase).collect(),
            triggers: false,
        }
    }

    /// Checks one statement (one, as the splitter gives it; leading comments allowed).
    pub fn check(&mut self, sql: &str) -> Result<(), Refused> {
        let toks = tokenize(sql)?;
        let mut c = Cursor {
            toks: &toks,
            pos: 0,
        };
        let Some(Tok::Word(first)) = c.next() else {
            return if toks.iter().all(|t| *t == Tok::Op(";")) && toks.len() <= 1 {
                Ok(())
            } else {
                refuse("not a statement a dump contains")
            };
        };
        let first = first.to_ascii_uppercase();
        match first.as_str() {
            "PRAGMA" => {
                c.expect_word("defer_foreign_keys")?;
                c.expect_op("=")?;
                if !(c.word("TRUE") || c.word("ON") || c.op_num()) {
                    return refuse("a PRAGMA a dump does not use");
                }
                c.end()
            }
            "CREATE" => self.create(&mut c),
            "INSERT" => {
                self.data_allowed()?;
                self.insert(&mut c)
            }
            "UPDATE" => {
                self.data_allowed()?;
                self.update(&mut c)
            }
            "DELETE" => {
                self.data_allowed()?;
                c.expect_word("FROM")?;
                if !same(&c.name()?, "sqlite_sequence") {
                    return refuse("DELETE from a table other than sqlite_sequence");
                }
                if c.word("WHERE") {
                    c.expect_word("name")?;
                    c.expect_op("=")?;
                    c.value(0)?;
                }
                c.end()
            }
            "ANALYZE" => {
                if !same(&c.name()?, "sqlite_schema") {
                    return refuse("ANALYZE of other than sqlite_schema");
                }
                c.end()
            }
            _ => refuse(format!("{first} is not a statement a dump contains")),
        }
    }

    fn data_allowed(&self) -> Result<(), Refused> {
        if self.triggers {
            return refuse("data after a trigger was created (a dump creates triggers last)");
        }
        Ok(())
    }

    fn may_write(&self, table: &str) -> Result<(), Refused> {
        let lower = table.to_ascii_lowercase();
        if self.tables.contains(&lower) || INTERNAL_TABLES.contains(&lower.as_str()) {
            Ok(())
        } else {
            refuse(format!(
                "writes to {table:?}, a table the dump did not create"
            ))
        }
    }

    fn create(&mut self, c: &mut Cursor<'_>) -> Result<(), Refused> {
        c.word("UNIQUE");
        let what = match c.next() {
            Some(Tok::Word(w)) => w.to_ascii_uppercase(),
            _ => return refuse("CREATE of something a dump does not create"),
        };
        let virtual_table = what == "VIRTUAL";
        if virtual_table {
            c.expect_word("TABLE")?;
        }
        if !matches!(
            what.as_str(),
            "TABLE" | "INDEX" | "VIEW" | "TRIGGER" | "VIRTUAL"
        ) {
            return refuse(format!("CREATE {what} is not in a dump"));
        }
        if c.word("IF") {
            c.expect_word("NOT")?;
            c.expect_word("EXISTS")?;
        }
        let name = c.name()?;
        // Only a trigger's body holds `;` before the end (the splitter ends other statements
        // at their first `;`, so this is a second line of defence).
        let body = &c.toks[..c.toks.len().saturating_sub(1)];
        if what != "TRIGGER" && body.contains(&Tok::Op(";")) {
            return refuse("a second statement inside a CREATE");
        }
        match what.as_str() {
            "TABLE" => {
                if !matches!(c.peek(), Some(Tok::Op("("))) {
                    return refuse("CREATE TABLE without a column list (AS SELECT?)");
                }
                self.tables.insert(name.to_ascii_lowercase());
            }
            "VIRTUAL" => {
                c.expect_word("USING")?;
                self.tables.insert(name.to_ascii_lowercase());
            }
            "TRIGGER" => self.triggers = true,
            _ => {}
        }
        Ok(())
    }

    fn insert(&self, c: &mut Cursor<'_>) -> Result<(), Refused> {
        c.expect_word("INTO")?;
        self.may_write(&c.name()?)?;
        if c.op("(") {
            loop {
                c.name()?;
                if c.op(")") {
                    break;
                }
                c.expect_op(",")?;
            }
        }
        c.expect_word("VALUES")?;
        loop {
            c.expect_op("(")?;
            loop {
                c.value(0)?;
                if c.op(")") {
                    break;
                }
                c.expect_op(",")?;
            }
            if !c.op(",") {
                break;
            }
        }
        c.end()
    }

    fn update(&self, c: &mut Cursor<'_>) -> Result<(), Refused> {
        self.may_write(&c.name()?)?;
        c.expect_word("SET")?;
        let col = c.name()?;
        c.expect_op("=")?;
        let same_col = |c: &mut Cursor<'_>| -> Result<(), Refused> {
            if same(&c.name()?, &col) {
                Ok(())
            } else {
                refuse("an UPDATE that is not the piece of a split row")
            }
        };
        if c.word("CAST") {
            c.expect_op("(")?;
            same_col(c)?;
            if c.op("||") {
                c.value(0)?;
                c.expect_word("AS")?;
                c.expect_word("BLOB")?;
            } else {
                c.expect_word("AS")?;
                c.expect_word("TEXT")?;
            }
            c.expect_op(")")?;
        } else {
            same_col(c)?;
            c.expect_op("||")?;
            c.value(0)?;
        }
        c.expect_word("WHERE")?;
        loop {
            c.name()?;
            c.expect_op("=")?;
            c.value(0)?;
            if !c.word("AND") {
                break;
            }
        }
        c.end()
            .or_else(|_| refuse("an UPDATE that is not the piece of a split row"))
    }
}

impl Cursor<'_> {
    /// `1` or `0` as a PRAGMA value.
    fn op_num(&mut self) -> bool {
        if self.peek() == Some(&Tok::Num) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `stmts` through one grammar; returns the index of the first refused one.
    fn first_refused(stmts: &[&str]) -> Option<usize> {
        let mut g = DumpGrammar::new();
        stmts.iter().position(|s| g.check(s).is_err())
    }

    const DUMP: &[&str] = &[
        "-- d1-backup 0.1.0 SQL dump\n-- taken …\nPRAGMA defer_foreign_keys=TRUE;",
        "CREATE TABLE \"t\"(id INTEGER PRIMARY KEY, name TEXT, b BLOB, CHECK(length(name) < 9));",
        "CREATE TABLE IF NOT EXISTS \"we\"\"ird\" (x);",
        "CREATE TABLE [sq](x) STRICT;",
        "CREATE VIRTUAL TABLE f USING fts5(body);",
        "CREATE TABLE c(id INTEGER PRIMARY KEY AUTOINCREMENT);",
        "INSERT INTO \"t\" VALUES(1,'it''s; DROP TABLE t; --',X'00ff');",
        "INSERT INTO \"t\"(\"id\",\"name\",\"b\") VALUES(-9223372036854775808,NULL,X''),(2,'',x'01');",
        "INSERT INTO \"t\" VALUES(3,replace(replace('a\\nb\\rc','\\r',char(13)),'\\n',char(10)),NULL);",
        "INSERT INTO \"t\" VALUES(4,CAST(X'610062' AS TEXT),-0.0);",
        "INSERT INTO \"t\" VALUES(5,'x',3602879701896397.0/(1<<55));",
        "INSERT INTO \"t\" VALUES(6,'y',-1.0*(1<<62)*(1<<16)), (7, 'z', 9e999), (8, 'w', -9e999);",
        "INSERT INTO \"we\"\"ird\" (\"x\") VALUES(1e+21);",
        "INSERT INTO \"t\" VALUES(9,'',X'');",
        "UPDATE \"t\" SET \"name\"=\"name\"||'more' WHERE rowid=9;",
        "UPDATE \"t\" SET \"b\"=CAST(\"b\"||X'abcd' AS BLOB) WHERE \"id\"=9 AND \"x\"='k';",
        "UPDATE \"t\" SET \"name\"=CAST(\"name\" AS TEXT) WHERE \"id\"=9;",
        "INSERT INTO \"f\"(\"f\") VALUES('rebuild');",
        "INSERT INTO f VALUES('text');",
        "DELETE FROM sqlite_sequence WHERE name='c';",
        "INSERT INTO sqlite_sequence(name,seq) VALUES('c',5);",
        "DELETE FROM sqlite_sequence;",
        "INSERT INTO \"sqlite_sequence\" VALUES('c',5);",
        "ANALYZE sqlite_schema;",
        "INSERT INTO \"sqlite_stat1\" VALUES('t','i','10 1');",
        "CREATE INDEX i ON t(name);",
        "CREATE UNIQUE INDEX IF NOT EXISTS j ON t(lower(name)) WHERE id > 0;",
        "CREATE VIEW v AS SELECT * FROM t;",
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET name = 'x' WHERE id = new.id; DELETE FROM c; END;",
        "CREATE TRIGGER tv INSTEAD OF INSERT ON v BEGIN SELECT 1; END;",
        ";",
    ];

    #[test]
    fn a_dump_passes() {
        assert_eq!(first_refused(DUMP), None);
    }

    #[test]
    fn everything_else_is_refused() {
        let setup = "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);";
        let cases = [
            "DROP TABLE t;",
            "DELETE FROM t;",
            "DELETE FROM t WHERE 1;",
            "ATTACH DATABASE '/tmp/x' AS x;",
            "DETACH x;",
            "BEGIN;",
            "COMMIT;",
            "END;",
            "ROLLBACK;",
            "SAVEPOINT a;",
            "PRAGMA writable_schema=ON;",
            "PRAGMA foreign_keys=OFF;",
            "PRAGMA defer_foreign_keys=TRUE; DROP TABLE t;",
            "VACUUM;",
            "SELECT 1;",
            "REPLACE INTO t VALUES(1,'a');",
            "INSERT OR REPLACE INTO t VALUES(1,'a');",
            "INSERT INTO other VALUES(1);",
            "INSERT INTO main.t VALUES(1,'a');",
            "INSERT INTO t SELECT * FROM t;",
            "INSERT INTO t VALUES(1,'a') ON CONFLICT DO UPDATE SET name='pwned';",
            "INSERT INTO t VALUES(1,'a') RETURNING *;",
            "INSERT INTO t VALUES(1,(SELECT name FROM t));",
            "INSERT INTO t VALUES(1,name);",
            "INSERT INTO t VALUES(1,load_extension('x'));",
            "INSERT INTO t VALUES(1,?);",
            "INSERT INTO t VALUES(1,'a'); DROP TABLE t;",
            "INSERT INTO t VALUES(1,'a') DROP TABLE t;",
            "INSERT INTO t VALUES(1,'a'",
            "INSERT INTO t VALUES(1,CAST('a' AS INTEGER));",
            "UPDATE t SET name='pwned';",
            "UPDATE t SET name='pwned' WHERE 1;",
            "UPDATE t SET name=name||'x';",
            "UPDATE t SET name=id||'x' WHERE id=1;",
            "UPDATE t SET name=name||'x' WHERE id=1 OR 1;",
            "UPDATE t SET name=name||'x' WHERE id=(SELECT 1);",
            "UPDATE t SET name=name||'x', id=5 WHERE id=1;",
            "UPDATE t SET name=CAST(name AS BLOB) WHERE id=1;",
            "UPDATE other SET x=x||'a' WHERE id=1;",
            "CREATE TEMP TABLE x(a);",
            "CREATE TEMPORARY TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END;",
            "CREATE TABLE x AS SELECT * FROM t;",
            "CREATE TABLE aux.x(a);",
            "ANALYZE t;",
            "INSERT INTO t VALUES(1,'unterminated);",
            "WITH x AS (SELECT 1) INSERT INTO t VALUES(1,'a');",
        ];
        for stmt in cases {
            assert_eq!(first_refused(&[setup, stmt]), Some(1), "{stmt:?} passed");
        }
    }

    #[test]
    fn no_data_after_a_trigger() {
        let forged = [
            "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);",
            "CREATE TRIGGER pwn AFTER INSERT ON t BEGIN UPDATE t SET name='pwned'; END;",
            "INSERT INTO t VALUES(1,'a');",
        ];
        assert_eq!(first_refused(&forged), Some(2));
    }

    #[test]
    fn data_only_dumps_write_to_the_tables_named() {
        let mut g = DumpGrammar::with_tables(["Users"]);
        assert_eq!(g.check("INSERT INTO \"users\" VALUES(1);"), Ok(()));
        assert!(g.check("INSERT INTO \"orders\" VALUES(1);").is_err());
    }
}
