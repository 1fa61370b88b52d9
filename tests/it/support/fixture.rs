//! The fixture database: every hard case the dump must carry exactly.

use std::path::Path;

use rusqlite::{Connection, params};

/// The hostile table name from the issue.
pub const HOSTILE_TABLE: &str = "x\"; DROP TABLE y; --";

/// Build the fixture at `path` with `many_rows` rows in the big table.
pub fn build(path: &Path, many_rows: u64) {
    let _ = std::fs::remove_file(path);
    let c = Connection::open(path).expect("open fixture");
    c.execute_batch(&format!(
        r#"
        PRAGMA foreign_keys=ON;
        CREATE TABLE numbers(id INTEGER PRIMARY KEY, i INTEGER, r REAL, v);
        CREATE TABLE texts(id INTEGER PRIMARY KEY, t TEXT);
        CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB);
        CREATE TABLE big_values(id INTEGER PRIMARY KEY, t TEXT, b BLOB, n INTEGER, s TEXT);
        CREATE TABLE {hostile}("select" TEXT, "名前" TEXT, "order" INTEGER, "we""ird col" BLOB);
        CREATE TABLE "Ünïcødé 表"(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
        CREATE TABLE pairs(a TEXT NOT NULL, b BLOB NOT NULL, v, PRIMARY KEY(a, b)) WITHOUT ROWID;
        CREATE TABLE events(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT);
        CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id));
        CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);
        CREATE INDEX texts_partial ON texts(t) WHERE t IS NOT NULL AND length(t) < 100;
        CREATE INDEX parent_lower ON parent(lower(name));
        CREATE UNIQUE INDEX pairs_v ON pairs(v) WHERE v IS NOT NULL;
        CREATE VIEW parent_names AS SELECT id, name FROM parent;
        CREATE VIEW child_view AS SELECT c.id, p.name FROM child c JOIN parent_names p ON p.id = c.parent_id;
        CREATE TRIGGER parent_audit AFTER INSERT ON parent BEGIN
            INSERT INTO events(name) VALUES('parent ' || NEW.name);
        END;
        CREATE TRIGGER parent_names_insert INSTEAD OF INSERT ON parent_names BEGIN
            INSERT INTO parent(id, name) VALUES(NEW.id, NEW.name);
        END;
        CREATE TABLE gen(id INTEGER PRIMARY KEY, a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL, c TEXT GENERATED ALWAYS AS (a || 'x') STORED);
        CREATE VIRTUAL TABLE docs USING fts5(title, body);
        CREATE TABLE articles(id INTEGER PRIMARY KEY, body TEXT);
        CREATE VIRTUAL TABLE articles_fts USING fts5(body, content='articles', content_rowid='id');
        CREATE TABLE implicit(name TEXT, n INTEGER);
        CREATE TABLE shadowed(rowid TEXT, v INTEGER);
        CREATE TABLE strict_t(id INTEGER PRIMARY KEY, v TEXT, a ANY) STRICT;
        CREATE TABLE desc_pk(id INTEGER PRIMARY KEY DESC, v TEXT);
        CREATE TABLE d1_migrations(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL);
        CREATE TABLE many(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, data BLOB, note TEXT);
        CREATE INDEX many_name ON many(name);
        "#,
        hostile = d1_backup::sqltext::quote_ident(HOSTILE_TABLE)
    ))
    .expect("fixture schema");
    let wide_cols: Vec<String> = (1..=100).map(|i| format!("c{i}")).collect();
    c.execute_batch(&format!("CREATE TABLE wide({});", wide_cols.join(", ")))
        .expect("wide table");

    let tx = c.unchecked_transaction().unwrap();
    // numbers: int64 bounds, 2^53+1, REAL edge cases; `v` has no affinity so -0.0 survives.
    let ints: &[i64] = &[
        i64::MAX,
        i64::MIN,
        (1 << 53) + 1,
        -(1 << 53) - 1,
        0,
        -1,
        1234567824702058496,
    ];
    for (n, i) in ints.iter().enumerate() {
        tx.execute(
            "INSERT INTO numbers(id, i) VALUES(?1, ?2)",
            params![n as i64 + 1, i],
        )
        .unwrap();
    }
    let reals: &[f64] = &[
        0.1,
        1e308,
        5e-324,
        -0.0,
        1.0,
        -2.5e-5,
        f64::MAX,
        f64::MIN_POSITIVE,
        1.0 / 3.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    for (n, r) in reals.iter().enumerate() {
        tx.execute(
            "INSERT INTO numbers(id, r, v) VALUES(?1, ?2, ?2)",
            params![100 + n as i64, r],
        )
        .unwrap();
    }
    tx.execute(
        "INSERT INTO numbers(id, v) VALUES(200, 'text in untyped'), (201, x'00ff')",
        [],
    )
    .unwrap();
    // texts
    let texts = [
        "plain",
        "line1\r\nline2",
        "nul\0inside",
        "emoji 😀 and ñ and 漢字",
        "literal backslash-n \\n beside a real newline\n",
        "it's 'quoted' \"double\"",
        "",
        "-- looks like a comment",
        "'); DROP TABLE texts; --",
        "::set-output name=x::y\n::add-mask::z",
        "\r",
        "\n\n",
        "tab\there",
        "\u{2028}\u{feff}",
    ];
    for (n, t) in texts.iter().enumerate() {
        tx.execute(
            "INSERT INTO texts(id, t) VALUES(?1, ?2)",
            params![n as i64 + 1, t],
        )
        .unwrap();
    }
    tx.execute("INSERT INTO texts(id, t) VALUES(100, NULL)", [])
        .unwrap();
    // blobs
    let all: Vec<u8> = (0..=255u8).collect();
    tx.execute(
        "INSERT INTO blobs(id, b) VALUES(1, ?1), (2, ?2), (3, NULL), (4, ?3)",
        params![Vec::<u8>::new(), all, vec![0u8; 10]],
    )
    .unwrap();
    // big values (one per row: D1 caps a row at 2,000,000 bytes): 1.5 MB text, 1.5 MB blob,
    // a 150 KB numeric-looking text in an INTEGER column, a 120 KB text with newlines.
    let big_text: String = (0..1_500_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let big_blob: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let numeric_text = format!("{}x", "0123456789".repeat(15_000));
    let lines = "row with 'quotes'\n".repeat(7_000);
    tx.execute(
        "INSERT INTO big_values VALUES(1, ?1, NULL, ?2, ?3)",
        params![big_text, numeric_text, lines],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO big_values VALUES(3, NULL, ?1, NULL, NULL)",
        params![big_blob],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO big_values VALUES(2, 'small', x'01', 5, NULL)",
        [],
    )
    .unwrap();
    // hostile table and Unicode WITHOUT ROWID table
    tx.execute(
        &format!(
            "INSERT INTO {} VALUES('SELECT * FROM x; --', '値', 1, x'22'), ('a''b', NULL, 2, NULL)",
            d1_backup::sqltext::quote_ident(HOSTILE_TABLE)
        ),
        [],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO \"Ünïcødé 表\" VALUES('ключ', 1), ('κλειδί', 2.5), ('键', x'00')",
        [],
    )
    .unwrap();
    tx.execute("INSERT INTO pairs VALUES('a', x'01', 1), ('a', x'02', NULL), ('b', x'', 'v'), ('line\nbreak', x'ff', 2)", []).unwrap();
    // AUTOINCREMENT with deleted rows: the sequence is ahead of max(id).
    for i in 0..5 {
        tx.execute(
            "INSERT INTO events(name) VALUES(?1)",
            params![format!("e{i}")],
        )
        .unwrap();
    }
    tx.execute("DELETE FROM events WHERE id > 3", []).unwrap();
    // child before parent, FK satisfied; the parent trigger adds events rows.
    tx.execute(
        "INSERT INTO parent(id, name) VALUES(1, 'Alice'), (2, 'Bob')",
        [],
    )
    .unwrap();
    tx.execute("INSERT INTO child VALUES(10, 2), (11, 1), (12, 2)", [])
        .unwrap();
    tx.execute(
        "INSERT INTO gen(id, a) VALUES(1, 10), (2, NULL), (3, -4)",
        [],
    )
    .unwrap();
    tx.execute("INSERT INTO docs(rowid, title, body) VALUES(5, 'Hello', 'the quick brown fox'), (9, 'Bye', 'lazy dog jumps')", []).unwrap();
    tx.execute(
        "INSERT INTO articles VALUES(1, 'searchable words here'), (7, 'more words')",
        [],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO articles_fts(articles_fts) VALUES('rebuild')",
        [],
    )
    .unwrap();
    // implicit rowids with gaps
    for i in 1..=10 {
        tx.execute(
            "INSERT INTO implicit VALUES(?1, ?2)",
            params![format!("n{i}"), i],
        )
        .unwrap();
    }
    tx.execute("DELETE FROM implicit WHERE n IN (2, 5, 6)", [])
        .unwrap();
    tx.execute(
        "INSERT INTO shadowed(rowid, v) VALUES('r1', 1), ('r2', 2)",
        [],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO strict_t VALUES(1, 'x', 1), (2, NULL, 'y'), (3, 'z', x'01'), (4, 'w', 1.5)",
        [],
    )
    .unwrap();
    tx.execute("INSERT INTO desc_pk VALUES(3, 'c'), (1, 'a'), (2, 'b')", [])
        .unwrap();
    tx.execute(
        "INSERT INTO d1_migrations(name) VALUES('0001_init.sql'), ('0002_more.sql')",
        [],
    )
    .unwrap();
    // wide table
    let placeholders: Vec<String> = (1..=100).map(|i| format!("?{i}")).collect();
    let insert = format!("INSERT INTO wide VALUES({})", placeholders.join(","));
    for r in 0..3 {
        let vals: Vec<rusqlite::types::Value> = (1..=100)
            .map(|i| match (i + r) % 4 {
                0 => rusqlite::types::Value::Integer(i * 1000 + r),
                1 => rusqlite::types::Value::Text(format!("c{i}r{r}")),
                2 => rusqlite::types::Value::Real(i as f64 / 7.0),
                _ => rusqlite::types::Value::Null,
            })
            .collect();
        tx.execute(&insert, rusqlite::params_from_iter(vals))
            .unwrap();
    }
    tx.commit().unwrap();
    fill_many(&c, many_rows);
}

/// Fill the `many` table with `n` deterministic rows (~100 bytes each).
pub fn fill_many(c: &Connection, n: u64) {
    let tx = c.unchecked_transaction().unwrap();
    {
        let mut stmt = tx
            .prepare("INSERT INTO many(id, name, score, data, note) VALUES(?1, ?2, ?3, ?4, ?5)")
            .unwrap();
        let mut x = 0x9e3779b97f4a7c15u64;
        for id in 1..=n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let name = format!("user-{:08x}", x as u32);
            let score = (x % 100_000) as f64 / 1000.0;
            let data = if id % 10 == 0 {
                Some(x.to_le_bytes().to_vec())
            } else {
                None
            };
            let note = if id % 3 == 0 {
                Some(format!("note {id} with some text, 'quoted'"))
            } else {
                None
            };
            stmt.execute(params![id as i64, name, score, data, note])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Tables at D1's column limit (100 columns), every key shape: an INTEGER PRIMARY KEY, an
/// implicit rowid, WITHOUT ROWID with a 3-column primary key, and one whose last column holds
/// a 1,900,000-byte TEXT and a 1,900,000-byte BLOB. `extra_rows` more rows go into the
/// implicit-rowid table (for the memory test).
pub fn build_wide_with(path: &Path, extra_rows: u64) {
    let _ = std::fs::remove_file(path);
    let c = Connection::open(path).expect("open wide db");
    let cols = |from: usize, to: usize| -> Vec<String> {
        (from..=to).map(|i| format!("c{i:03} ANY")).collect()
    };
    c.execute_batch(&format!(
        "CREATE TABLE t_ipk(id INTEGER PRIMARY KEY, {});
         CREATE TABLE t_rowid({});
         CREATE TABLE t_wr(k1 TEXT, k2 INTEGER, k3 BLOB, {}, PRIMARY KEY(k1, k2, k3)) WITHOUT ROWID;
         CREATE TABLE t_big(id INTEGER PRIMARY KEY, {}, last);
         CREATE INDEX t_rowid_c001 ON t_rowid(c001);",
        cols(1, 99).join(", "),
        cols(1, 100).join(", "),
        cols(4, 100).join(", "),
        cols(1, 98).join(", "),
    ))
    .expect("wide schema");
    let value = |r: u64, c: u64| -> rusqlite::types::Value {
        use rusqlite::types::Value as V;
        match (r + c) % 7 {
            0 => {
                V::Integer((r as i64 * 7919 + c as i64) * if c.is_multiple_of(2) { 1 } else { -1 })
            }
            1 => V::Integer(i64::MAX - r as i64 - c as i64),
            2 => V::Real((r * 100 + c) as f64 / 3.0),
            3 => V::Text(format!("r{r}c{c} 'q' \"dq\" \n nl")),
            4 => V::Blob(vec![r as u8, c as u8, 0, 255]),
            5 => V::Null,
            _ => V::Real(-1.5e300 / (r + c + 1) as f64),
        }
    };
    let tx = c.unchecked_transaction().unwrap();
    let insert =
        |table: &str, n: usize, row: &dyn Fn(u64) -> Vec<rusqlite::types::Value>, rows: u64| {
            let ph: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
            let sql = format!("INSERT INTO {table} VALUES({})", ph.join(","));
            let mut stmt = tx.prepare(&sql).unwrap();
            for r in 0..rows {
                stmt.execute(rusqlite::params_from_iter(row(r))).unwrap();
            }
        };
    insert(
        "t_ipk",
        100,
        &|r| {
            let mut v = vec![rusqlite::types::Value::Integer(r as i64 * 3 + 1)];
            v.extend((1..=99).map(|c| value(r, c)));
            v
        },
        40,
    );
    insert(
        "t_rowid",
        100,
        &|r| (1..=100).map(|c| value(r, c)).collect(),
        40 + extra_rows,
    );
    insert(
        "t_wr",
        100,
        &|r| {
            use rusqlite::types::Value as V;
            let mut v = vec![
                V::Text(format!("key {}", r % 5)),
                V::Integer(r as i64 - 20),
                V::Blob(vec![(r % 3) as u8; 3]),
            ];
            v.extend((4..=100).map(|c| value(r, c)));
            v
        },
        40,
    );
    insert(
        "t_big",
        100,
        &|r| {
            use rusqlite::types::Value as V;
            let mut v = vec![V::Integer(r as i64 + 1)];
            v.extend((1..=98).map(|c| value(r, c)));
            v.push(match r {
                0 => V::Text("t".repeat(1_900_000)),
                1 => V::Blob((0..1_900_000u32).map(|i| (i % 251) as u8).collect()),
                _ => value(r, 99),
            });
            v
        },
        6,
    );
    tx.execute("DELETE FROM t_rowid WHERE rowid % 7 = 3", [])
        .unwrap();
    tx.commit().unwrap();
}

/// [`build_wide_with`] without extra rows.
pub fn build_wide(path: &Path) {
    build_wide_with(path, 0);
}

/// A table `r(id INTEGER PRIMARY KEY, v)` (no affinity, so `-0.0` keeps its sign) of REALs spread over every decimal exponent
/// (−324 … +308), subnormals, ±0.0, ±max, ±min normal and ±infinity, and a WITHOUT ROWID
/// table keyed by REALs. Returns the number of REALs in `r`.
pub fn build_reals(path: &Path) -> usize {
    let _ = std::fs::remove_file(path);
    let c = Connection::open(path).expect("open reals db");
    c.execute_batch(
        "CREATE TABLE r(id INTEGER PRIMARY KEY, v NOT NULL);
         CREATE TABLE rk(v REAL PRIMARY KEY, id INTEGER) WITHOUT ROWID;",
    )
    .unwrap();
    let mut values: Vec<f64> = vec![
        0.0,
        -0.0,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        -f64::MIN_POSITIVE,
        5e-324,
        -5e-324,
        f64::from_bits(0x000f_ffff_ffff_ffff),
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.1,
        1.0 / 3.0,
        123.456,
    ];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for e in -324..=308i32 {
        for _ in 0..16 {
            let m = 1.0 + (next() % 9_000_000_000_000_000) as f64 / 1e15;
            let v = m * 10f64.powi(e);
            if v.is_finite() && v != 0.0 {
                values.push(if next() % 2 == 0 { v } else { -v });
            }
        }
    }
    for _ in 0..1000 {
        // Random bit patterns (subnormals and every exponent).
        let v = f64::from_bits(next());
        if v.is_finite() {
            values.push(v);
        }
    }
    let tx = c.unchecked_transaction().unwrap();
    {
        let mut stmt = tx.prepare("INSERT INTO r(id, v) VALUES(?1, ?2)").unwrap();
        for (i, v) in values.iter().enumerate() {
            stmt.execute(params![i as i64 + 1, v]).unwrap();
        }
        let mut stmt = tx
            .prepare("INSERT OR IGNORE INTO rk(v, id) VALUES(?1, ?2)")
            .unwrap();
        for (i, v) in values.iter().enumerate().step_by(7) {
            stmt.execute(params![v, i as i64]).unwrap();
        }
    }
    tx.commit().unwrap();
    values.len()
}
