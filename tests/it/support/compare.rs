//! Exact comparison of two SQLite databases: schema objects, and every row of every user
//! table with each value's storage class and exact bytes (REALs bit for bit).

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

/// A value with its storage class; REALs compared by bit pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exact {
    Null,
    Integer(i64),
    Real(u64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

fn exact(v: ValueRef<'_>) -> Exact {
    match v {
        ValueRef::Null => Exact::Null,
        ValueRef::Integer(i) => Exact::Integer(i),
        ValueRef::Real(f) => Exact::Real(f.to_bits()),
        ValueRef::Text(t) => Exact::Text(t.to_vec()),
        ValueRef::Blob(b) => Exact::Blob(b.to_vec()),
    }
}

pub fn open(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open db")
}

/// Schema objects (type, name, tbl_name, sql) without D1/SQLite internals.
pub fn schema(c: &Connection) -> Vec<(String, String, String, Option<String>)> {
    let mut stmt = c
        .prepare(
            "SELECT type, name, tbl_name, sql FROM sqlite_schema \
             WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_stat%' ESCAPE '\\' \
             ORDER BY type, name",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// (name, type, without_rowid) of user tables (no shadow/internal tables).
pub fn user_tables(c: &Connection) -> Vec<(String, String, bool)> {
    let mut stmt = c
        .prepare("SELECT name, type, wr FROM pragma_table_list WHERE schema='main' AND type IN ('table','virtual') ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)? != 0,
        ))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .filter(|(n, _, _)| !n.starts_with("sqlite_") && !n.starts_with("_cf_"))
    .collect()
}

/// Every row of a table, with rowid where it has one, in key order.
pub fn rows(c: &Connection, table: &str, without_rowid: bool) -> Vec<Vec<Exact>> {
    let q = d1_backup::sqltext::quote_ident(table);
    let cols: Vec<String> = c
        .prepare(&format!(
            "SELECT name FROM pragma_table_xinfo({}) ORDER BY cid",
            d1_backup::sqltext::quote_str(table)
        ))
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let select: Vec<String> = cols
        .iter()
        .map(|c| d1_backup::sqltext::quote_ident(c))
        .collect();
    let sql = if without_rowid {
        format!("SELECT {} FROM {q}", select.join(","))
    } else {
        let rowid = ["_rowid_", "rowid", "oid"]
            .into_iter()
            .find(|r| !cols.iter().any(|c| c.eq_ignore_ascii_case(r)))
            .expect("a free rowid name");
        format!(
            "SELECT {rowid}, {} FROM {q} ORDER BY {rowid}",
            select.join(",")
        )
    };
    let mut stmt = c.prepare(&sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        Ok((0..n).map(|i| exact(r.get_ref(i).unwrap())).collect())
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn single(c: &Connection, sql: &str) -> Vec<String> {
    c.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Assert `restored` equals `source`: schema objects, every row and storage class,
/// sqlite_sequence, integrity and foreign keys. `skip` lists tables not expected (filters).
pub fn assert_same(source: &Path, restored: &Path) {
    let a = open(source);
    let b = open(restored);
    assert_eq!(schema(&a), schema(&b), "schema objects differ");
    let ta = user_tables(&a);
    assert_eq!(ta, user_tables(&b), "user tables differ");
    for (name, kind, wr) in &ta {
        let ra = rows(&a, name, *wr);
        let rb = rows(&b, name, *wr);
        assert_eq!(ra.len(), rb.len(), "row count of {name:?} ({kind})");
        for (i, (x, y)) in ra.iter().zip(&rb).enumerate() {
            assert_eq!(x, y, "table {name:?} row {i} differs");
        }
    }
    let seq = "SELECT name || '=' || seq FROM sqlite_sequence ORDER BY name";
    let has_seq = |c: &Connection| {
        c.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name='sqlite_sequence'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            > 0
    };
    if has_seq(&a) {
        assert_eq!(single(&a, seq), single(&b, seq), "sqlite_sequence differs");
    }
    assert_eq!(single(&b, "PRAGMA integrity_check"), vec!["ok".to_string()]);
    let fk: i64 = b
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fk, 0, "foreign key violations in the restored database");
}
