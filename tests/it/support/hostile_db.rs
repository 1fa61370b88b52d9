//! A database whose every schema object has a hostile name (quotes, comment markers,
//! newlines, control characters, Unicode, very long names, SQL and workflow-command text),
//! with hostile values: used by `tests/hostile.rs` and the real-engine tests.

use std::path::Path;

use d1_backup::sqltext::{quote_ident as qi, quote_str as qs};

/// Hostile names (each is a table; derived names are its columns, index, view, trigger).
pub fn hostile_names() -> Vec<String> {
    vec![
        "q\"uote".into(),
        "s'ingle".into(),
        "back`tick".into(),
        "[bracket]".into(),
        "semi;colon; DROP TABLE \"q\"\"uote\";".into(),
        "new\nline\n# Injected heading".into(),
        "dash -- comment".into(),
        "c /* open comment".into(),
        "close */ comment".into(),
        "::set-output name=x::y".into(),
        "::add-mask::hostile-mask-text".into(),
        "ctl\u{1}\u{1b}[31m\ttab".into(),
        "Ünïcødé 表 😀 \u{2028} \u{feff}".into(),
        format!("{}ong", "L".repeat(220)),
        "'); DROP TABLE x; --".into(),
        "pct%zz%0A::set-output name=pct::1".into(),
        "|pipe|<script>alert(1)</script>".into(),
        "\r\n::error::pwned".into(),
        "  ::warning::indented".into(),
        "::group::fake group".into(),
        "comma, colon: percent%".into(),
    ]
}

/// Hostile values (stored in every hostile table).
pub const VALUES: &[&str] = &[
    "'); DROP TABLE x; --",
    "::error::pwned",
    "\n::set-output name=v::1\n",
    "::add-mask::value-mask",
    "*/ DROP TABLE y; /*",
    "\u{1b}[2J\u{1}\t\r\n",
    "%0A::warning::v",
    "-- comment\n;",
    "\"; DROP TABLE \"q\"\"uote\"; --",
    "##[set-output name=v;]1",
];

/// An FTS5 table with a hostile name (SQLite allows it; its shadow tables get it too).
pub const FTS: &str = "fts \"q'`[;]\n::add-mask::fts -- /*";
/// An external-content FTS5 index over the first hostile table.
pub const FTS_EXTERNAL: &str = "fts ext ::set-output name=ext::1";

/// Build a SQLite database whose every schema object has a hostile name.
pub fn build(path: &Path, names: &[String]) {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut sql = String::from(
        "PRAGMA foreign_keys=ON;\nCREATE TABLE audit(id INTEGER PRIMARY KEY, msg TEXT);\n",
    );
    for n in names {
        let t = qi(n);
        let col = qi(n);
        let other = qi(&format!("v;{n}"));
        sql.push_str(&format!(
            "CREATE TABLE {t}(id INTEGER PRIMARY KEY, {col} TEXT, {other} BLOB);\n\
             CREATE INDEX {} ON {t}({col});\n\
             CREATE VIEW {} AS SELECT id, {col} FROM {t} WHERE {col} <> {};\n\
             CREATE TRIGGER {} AFTER INSERT ON {t} BEGIN INSERT INTO audit(msg) VALUES({} || NEW.{col}); END;\n",
            qi(&format!("i {n}")),
            qi(&format!("v {n}")),
            qs(n),
            qi(&format!("t {n}")),
            qs(&format!("{n} -- ';")),
        ));
    }
    // A foreign key between two hostile tables.
    let parent = names.last().unwrap();
    sql.push_str(&format!(
        "CREATE TABLE {}(id INTEGER PRIMARY KEY, p INTEGER REFERENCES {}(id));\n",
        qi(&child_of(parent)),
        qi(parent)
    ));
    sql.push_str(&format!(
        "CREATE VIRTUAL TABLE {} USING fts5({}, body);\n",
        qi(FTS),
        qi("col \"';--")
    ));
    sql.push_str(&format!(
        "CREATE VIRTUAL TABLE {} USING fts5({}, content={}, content_rowid='id');\n",
        qi(FTS_EXTERNAL),
        qi(&names[0]),
        qs(&names[0])
    ));
    c.execute_batch(&sql).expect("hostile schema");
    let tx = c.unchecked_transaction().unwrap();
    for n in names {
        for (i, v) in VALUES.iter().enumerate() {
            tx.execute(
                &format!(
                    "INSERT INTO {}(id, {}, {}) VALUES(?1, ?2, ?3)",
                    qi(n),
                    qi(n),
                    qi(&format!("v;{n}"))
                ),
                rusqlite::params![i as i64 + 1, v, v.as_bytes()],
            )
            .unwrap();
        }
    }
    tx.execute(
        &format!(
            "INSERT INTO {}(id, p) VALUES(1, 1), (2, NULL)",
            qi(&child_of(parent))
        ),
        [],
    )
    .unwrap();
    for (i, v) in VALUES.iter().enumerate() {
        tx.execute(
            &format!(
                "INSERT INTO {}(rowid, {}, body) VALUES(?1, ?2, ?3)",
                qi(FTS),
                qi("col \"';--")
            ),
            rusqlite::params![i as i64 + 1, v, format!("body {v}")],
        )
        .unwrap();
    }
    tx.execute(
        &format!(
            "INSERT INTO {}({}) VALUES('rebuild')",
            qi(FTS_EXTERNAL),
            qi(FTS_EXTERNAL)
        ),
        [],
    )
    .unwrap();
    tx.commit().unwrap();
}

pub fn child_of(parent: &str) -> String {
    format!("child of {parent}")
}
