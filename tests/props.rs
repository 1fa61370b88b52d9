//! Property tests of the dump's exactness and of the decoders' robustness.
//!
//! Each property runs a bounded number of cases (the whole file takes a few seconds in the
//! dev profile; `PROPTEST_CASES=N` overrides every count for a deeper local run). Failures
//! print the minimal input; nothing is written to disk.
//!
//! * Literals (1,024 cases each): any SQLite value → the product's literal (the
//!   `page_query` expression run by SQLite, then `normalize_literal`) → SQLite reads back
//!   the same storage class and the same value, bit for bit for REALs (every f64 bit
//!   pattern; NaN is stored by SQLite as NULL and so backed up as NULL); `decode_literal`
//!   gives back TEXT/BLOB bytes; TEXT that is not UTF-8 is exact or refused, never altered.
//! * Whole dumps (`dump::dump` over a local SQLite source, then `load::load` under D1's
//!   rules; 256 cases, 256 under small limits, 48 with values of 100 KB–600 KB): typed,
//!   STRICT, WITHOUT ROWID and rowid-alias tables with any values come back identical; rows
//!   over the statement limit are split into statements that each fit and re-assemble
//!   exactly, at D1's 100,000 bytes and at limits of 500–4,000 bytes; values over 256 KiB
//!   take the read-in-pieces path.
//! * The statement splitter (`load::for_each_statement`; 1,024 cases) gives back exactly
//!   the statements that were joined, whatever their literals hold, with their line numbers;
//!   a cut dump never yields a statement that was not there.
//! * The D1 response decoders (512 cases) never panic, and the streaming page decoder
//!   agrees with serde however the body is cut; the fuzz target's seed corpus runs through
//!   the same harness (`fuzz/harness.rs`).

use std::fmt;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use d1_backup::dump::Piece;
use d1_backup::dump::paging::page_query;
use d1_backup::dump::schema::{Column, RowKey, Table, TableKind};
use d1_backup::dump::sql::{
    Cell, Decoded, RowWriter, decode_literal, encode_text, normalize_literal,
};
use d1_backup::dump::{DumpHeader, DumpOptions, dump, read_schema};
use d1_backup::manifest::Selection;
use d1_backup::read::load::{LoadRules, for_each_statement, load};
use d1_backup::source::Source;
use d1_backup::source::sqlite::{SqliteSource, run_page};
use d1_backup::sqltext::cell::check_cell;
use d1_backup::sqltext::statement::DumpGrammar;
use d1_backup::sqltext::{MAX_STATEMENT_BYTES, quote_ident, quote_str};
use d1_backup::util::progress::Progress;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rusqlite::Connection;
use rusqlite::types::{Value as SqlValue, ValueRef};

#[path = "../fuzz/harness.rs"]
mod harness;

/// `cases` unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Values

/// A value to store (what a test puts into SQLite).
#[derive(Debug, Clone)]
enum Gen {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Gen {
    fn to_sql(&self) -> SqlValue {
        match self {
            Gen::Null => SqlValue::Null,
            Gen::Int(i) => SqlValue::Integer(*i),
            Gen::Real(f) => SqlValue::Real(*f),
            Gen::Text(s) => SqlValue::Text(s.clone()),
            Gen::Blob(b) => SqlValue::Blob(b.clone()),
        }
    }

    /// What SQLite stores in a column without affinity. SQLite stores a NaN as NULL, so a
    /// NaN is backed up (and restored) as NULL: there is no NaN in a database to keep.
    fn stored(&self) -> Stored {
        match self {
            Gen::Null => Stored::Null,
            Gen::Int(i) => Stored::Integer(*i),
            Gen::Real(f) if f.is_nan() => Stored::Null,
            Gen::Real(f) => Stored::Real(f.to_bits()),
            Gen::Text(s) => Stored::Text(s.as_bytes().to_vec()),
            Gen::Blob(b) => Stored::Blob(b.clone()),
        }
    }
}

/// A value as SQLite holds it: its storage class and exact content (REALs as bits).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Stored {
    Null,
    Integer(i64),
    Real(u64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Stored {
    fn from_ref(v: ValueRef<'_>) -> Stored {
        match v {
            ValueRef::Null => Stored::Null,
            ValueRef::Integer(i) => Stored::Integer(i),
            ValueRef::Real(f) => Stored::Real(f.to_bits()),
            ValueRef::Text(t) => Stored::Text(t.to_vec()),
            ValueRef::Blob(b) => Stored::Blob(b.to_vec()),
        }
    }
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |b: &[u8]| {
            let s = String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned();
            if b.len() > 120 {
                format!("{s:?}… ({} bytes)", b.len())
            } else {
                format!("{s:?}")
            }
        };
        match self {
            Stored::Null => write!(f, "NULL"),
            Stored::Integer(i) => write!(f, "integer {i}"),
            Stored::Real(bits) => write!(f, "real {:e} ({bits:#018x})", f64::from_bits(*bits)),
            Stored::Text(t) => write!(f, "text {}", short(t)),
            Stored::Blob(b) => write!(f, "blob {} bytes {:02x?}", b.len(), &b[..b.len().min(16)]),
        }
    }
}

/// Rows of a query, each value exact.
fn read_rows(conn: &Connection, sql: &str) -> Vec<Vec<Stored>> {
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = stmt.column_count();
    let mut rows = stmt.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        out.push(
            (0..n)
                .map(|i| Stored::from_ref(row.get_ref(i).unwrap()))
                .collect(),
        );
    }
    out
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        2 => -300i64..300,
        1 => prop::sample::select(vec![
            1i64 << 53,
            (1 << 53) + 1,
            -(1 << 53) - 1,
            i64::MIN + 1,
            i64::MAX - 1,
            u32::MAX as i64,
        ]),
    ]
}

fn real() -> impl Strategy<Value = f64> {
    prop_oneof![
        // Every bit pattern: subnormals, NaNs with payloads, both zeros, infinities.
        4 => any::<u64>().prop_map(f64::from_bits),
        2 => any::<i64>().prop_map(|i| i as f64),
        2 => (any::<i32>(), -30i32..30).prop_map(|(m, e)| f64::from(m) * 10f64.powi(e)),
        3 => prop::sample::select(vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            f64::from_bits(1),
            -f64::from_bits(1),
            f64::from_bits(0x000f_ffff_ffff_ffff),
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            1.0 + f64::EPSILON,
            0.1,
            1.0,
            -1.0,
            1e15,
            1e16,
            1e17,
            9_007_199_254_740_993.0,
            9.223_372_036_854_776e18,
            -9.223_372_036_854_776e18,
            2.225_073_858_507_201e-308,
            1.797_693_134_862_315_7e308,
            123_456_789.123_456_79,
        ]),
    ]
}

/// Pieces that stress literals, splitting, the newline rewrite and the statement splitter.
fn tricky_piece() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "'",
        "''",
        "\n",
        "\r",
        "\r\n",
        "\n\r",
        "\0",
        ";",
        "--",
        "/*",
        "*/",
        "\\",
        "\\n",
        "\\012",
        "\\r",
        "\\015",
        "(\\n0)",
        "(\\r0)",
        "(\\n1)",
        "char(10)",
        "X'00'",
        "CAST(X'00' AS TEXT)",
        "~Ltext:5",
        "~Lblob:1",
        "é",
        "😀",
        "\u{FFFD}",
        "\u{FEFF}",
        "\u{2028}",
        "\u{7f}",
        "\t",
        "NULL",
        " 12 ",
        "12",
        "-0.0",
        "1.5",
        "0x1F",
        "1e999",
        "9223372036854775808",
        "\"",
        "END;",
        "BEGIN",
        "';DROP TABLE t;--",
        "\u{10FFFF}",
        "\u{0301}",
    ])
    .prop_map(String::from)
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "\\PC{0,12}",
            4 => tricky_piece(),
            2 => any::<char>().prop_map(String::from),
        ],
        0..12,
    )
    .prop_map(|v| v.concat())
}

fn blob() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..48)
}

fn value() -> BoxedStrategy<Gen> {
    prop_oneof![
        1 => Just(Gen::Null),
        3 => int().prop_map(Gen::Int),
        3 => real().prop_map(Gen::Real),
        4 => text().prop_map(Gen::Text),
        2 => blob().prop_map(Gen::Blob),
    ]
    .boxed()
}

/// A value of about `len` bytes made by repeating `pattern` (cheap to make, and as hostile
/// as the pattern: all quotes, all newlines, all 4-byte characters, all NULs…).
fn long_value(min: usize, max: usize) -> BoxedStrategy<Gen> {
    let pattern = prop_oneof![
        3 => prop::collection::vec(tricky_piece(), 1..6).prop_map(|v| v.concat()),
        1 => "\\PC{1,8}",
        1 => any::<char>().prop_map(String::from),
    ];
    (any::<bool>(), pattern, blob(), min..=max)
        .prop_map(|(is_text, pattern, blob, len)| {
            if is_text {
                let mut s = pattern.repeat(len / pattern.len() + 1);
                let mut end = len.min(s.len());
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                Gen::Text(s)
            } else {
                let seed = if blob.is_empty() { vec![0u8] } else { blob };
                Gen::Blob(seed.iter().copied().cycle().take(len).collect())
            }
        })
        .boxed()
}

/// Declared types: affinities, the classic `FLOATING POINT` (INTEGER affinity), `ANY`
/// (NUMERIC affinity outside STRICT tables), and the STRICT set.
const DECLS: &[&str] = &[
    "",
    "TEXT",
    "BLOB",
    "INTEGER",
    "INT",
    "REAL",
    "NUMERIC",
    "VARCHAR(20)",
    "DOUBLE PRECISION",
    "BOOLEAN",
    "DATETIME",
    "ANY",
    "STRING",
    "FLOATING POINT",
];
const STRICT_DECLS: &[&str] = &["INT", "INTEGER", "REAL", "TEXT", "BLOB", "ANY"];

// ---------------------------------------------------------------------------------------
// 1. Literals

fn literal_table(decl: &str) -> Table {
    let col = |name: &str, decl: &str| Column {
        name: name.into(),
        decl_type: decl.into(),
        pk: 0,
        hidden: 0,
    };
    Table {
        name: "t".into(),
        sql: String::new(),
        kind: TableKind::Regular {
            without_rowid: false,
            strict: false,
        },
        columns: vec![col("v", ""), col("w", decl)],
        key: RowKey::Rowid {
            name: "rowid".into(),
            explicit: true,
        },
        parents: vec![],
    }
}

/// The value a literal gives when SQLite evaluates it.
fn eval_literal(conn: &Connection, lit: &str) -> Result<Stored, TestCaseError> {
    let rows = conn
        .prepare(&format!("SELECT {lit}"))
        .and_then(|mut s| s.query_row([], |r| Ok(Stored::from_ref(r.get_ref(0)?))))
        .map_err(|e| TestCaseError::fail(format!("literal {lit:?} does not evaluate: {e}")))?;
    Ok(rows)
}

proptest! {
    #![proptest_config(config(1024))]

    /// Any value → the product's literal → the identical value and storage class, for a
    /// column without affinity (`v`) and one of any declared type (`w`); and the rows loaded
    /// from the writer's statements equal the source.
    #[test]
    fn literals_read_back_identically(
        rows in prop::collection::btree_map(int(), value(), 1..8),
        decl in prop::sample::select(DECLS),
    ) {
        let src = Connection::open_in_memory().unwrap();
        let ddl = format!("CREATE TABLE t(v, w {decl})");
        src.execute_batch(&ddl).unwrap();
        for (rowid, v) in &rows {
            src.execute(
                "INSERT INTO t(rowid, v, w) VALUES(?1, ?2, ?2)",
                rusqlite::params![rowid, v.to_sql()],
            )
            .unwrap();
        }
        let source_rows = read_rows(&src, "SELECT rowid, v, w FROM t ORDER BY rowid");
        for ((rowid, v), row) in rows.iter().zip(&source_rows) {
            prop_assert_eq!(&row[0], &Stored::Integer(*rowid));
            prop_assert_eq!(&row[1], &v.stored(), "SQLite stored {:?} unexpectedly", v);
        }

        let table = literal_table(decl);
        let q = page_query(&table, None, 1000, true);
        let page = run_page(&src, &q, 0).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        prop_assert_eq!(page.len(), rows.len());
        let mut dst = Connection::open_in_memory().unwrap();
        dst.execute_batch(&ddl).unwrap();
        let writer = RowWriter::new(&table, MAX_STATEMENT_BYTES);
        let mut out = String::new();
        for (r, want) in source_rows.iter().enumerate() {
            let lits = page.row(r);
            for (lit, want) in lits.iter().zip(want) {
                // Every literal the encoder makes passes the cell checker.
                prop_assert!(check_cell(lit).is_ok(), "checker refused {:?}", lit);
                let sql_lit = normalize_literal(lit);
                prop_assert!(
                    !sql_lit.contains(['\n', '\r']),
                    "literal spans lines: {:?}", sql_lit
                );
                let got = eval_literal(&dst, &sql_lit)?;
                prop_assert_eq!(&got, want, "literal {:?} (from {:?})", sql_lit, lit);
                let decoded = decode_literal(lit);
                match want {
                    Stored::Text(b) => prop_assert_eq!(decoded, Some(Decoded::Text(b.clone()))),
                    Stored::Blob(b) => prop_assert_eq!(decoded, Some(Decoded::Blob(b.clone()))),
                    _ => prop_assert_eq!(decoded, None, "{:?}", lit),
                }
            }
            let cells: Vec<Cell> = lits.iter().map(|l| Cell::Lit(l)).collect();
            writer
                .write(&mut out, Some(lits[0]), &cells)
                .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        }
        // The rows alone (the table exists already): the grammar of a data-only dump.
        let mut grammar = DumpGrammar::with_tables(["t"]);
        for_each_statement(out.as_bytes(), None, |s, _| Ok(grammar.check(s)?))
            .map_err(|e| TestCaseError::fail(format!("{e:#}\n{out}")))?;
        let rules = LoadRules { dump_statements_only: false, ..LoadRules::d1() };
        load(&mut dst, out.as_bytes(), rules)
            .map_err(|e| TestCaseError::fail(format!("{e:#}\n{out}")))?;
        prop_assert_eq!(read_rows(&dst, "SELECT rowid, v, w FROM t ORDER BY rowid"), source_rows);
    }

    /// `encode_text` (how the writer spells TEXT pieces): any bytes read back as that TEXT.
    #[test]
    fn encoded_text_reads_back(text in text(), raw in blob()) {
        let conn = Connection::open_in_memory().unwrap();
        for bytes in [text.as_bytes(), &raw[..]] {
            let lit = encode_text(bytes);
            prop_assert!(!lit.contains(['\n', '\r']), "{:?}", lit);
            let got = eval_literal(&conn, &lit)?;
            prop_assert_eq!(got, Stored::Text(bytes.to_vec()), "{:?}", lit);
        }
        // `quote_str` + `normalize_literal` (names in the dump): any text without NUL, which
        // SQLite identifiers cannot hold.
        let text = text.replace('\0', "");
        let lit = normalize_literal(&quote_str(&text)).into_owned();
        prop_assert_eq!(eval_literal(&conn, &lit)?, Stored::Text(text.into_bytes()));
    }

    /// TEXT that is not UTF-8 (SQLite stores whatever bytes it is given) is never changed
    /// silently: it is dumped exactly or the read fails.
    #[test]
    fn text_that_is_not_utf8_is_exact_or_refused(
        prefix in blob(),
        // A stray byte, a lone continuation, an overlong NUL, a surrogate, a 5-byte form,
        // a cut sequence.
        bad in prop::sample::select(vec![
            vec![0xffu8],
            vec![0x80],
            vec![0xc0, 0x80],
            vec![0xed, 0xa0, 0x80],
            vec![0xf8, 0x88, 0x80, 0x80, 0x80],
            vec![0xe2, 0x82],
        ]),
        suffix in blob(),
    ) {
        let bytes = [prefix, bad, suffix].concat();
        prop_assume!(std::str::from_utf8(&bytes).is_err());
        let src = Connection::open_in_memory().unwrap();
        src.execute_batch("CREATE TABLE t(v, w TEXT)").unwrap();
        src.execute("INSERT INTO t(rowid, v, w) VALUES(1, CAST(?1 AS TEXT), ?1)", [&bytes])
            .unwrap();
        let table = literal_table("TEXT");
        match run_page(&src, &page_query(&table, None, 10, true), 0) {
            Err(_) => {} // refused: the backup fails loudly
            Ok(page) => {
                let dst = Connection::open_in_memory().unwrap();
                let got = eval_literal(&dst, &normalize_literal(page.cell(0, 1)))?;
                prop_assert_eq!(got, Stored::Text(bytes));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. Whole dumps: typed tables, split rows, long values

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A rowid table; the rowid is written explicitly.
    Rowid,
    /// `id INTEGER PRIMARY KEY` (the rowid is that column).
    Alias,
    /// WITHOUT ROWID, keyed by the first column.
    WithoutRowid,
}

#[derive(Debug, Clone)]
struct TableSpec {
    mode: Mode,
    strict: bool,
    /// (name, declared type); in `Alias` mode the first is the key.
    cols: Vec<(String, String)>,
    /// (rowid, values).
    rows: Vec<(i64, Vec<Gen>)>,
}

const NAMES: &[&str] = &[
    "a", "B b", "x\"y", "rowid", "é", "select", "1c", "a;--b", "v'q", "/*c*/",
];

fn table_spec(
    max_cols: usize,
    max_rows: usize,
    values: BoxedStrategy<Gen>,
) -> impl Strategy<Value = TableSpec> {
    (
        prop::sample::select(vec![Mode::Rowid, Mode::Alias, Mode::WithoutRowid]),
        any::<bool>(),
        prop::collection::vec(
            (prop::sample::select(NAMES), 0..DECLS.len(), 0..STRICT_DECLS.len()),
            1..=max_cols,
        ),
    )
        .prop_flat_map(move |(mode, strict, cols)| {
            let mut seen = std::collections::HashSet::new();
            let mut named: Vec<(String, String)> = Vec::new();
            if mode == Mode::Alias {
                seen.insert("id".to_string());
                named.push(("id".into(), "INTEGER".into()));
            }
            for (name, d, sd) in cols {
                if seen.insert(name.to_lowercase()) {
                    let decl = if strict { STRICT_DECLS[sd] } else { DECLS[d] };
                    named.push((name.to_string(), decl.to_string()));
                }
            }
            let width = named.len();
            let key = prop_oneof![3 => text().prop_map(Gen::Text), 2 => int().prop_map(Gen::Int), 1 => blob().prop_map(Gen::Blob)];
            let row = (int(), key, prop::collection::vec(values.clone(), width));
            let rows = prop::collection::vec(row, 1..=max_rows).prop_map(move |rows| {
                rows.into_iter()
                    .map(|(rowid, key, mut vals)| {
                        match mode {
                            // The key column holds the rowid; a short key for WITHOUT ROWID
                            // (a key too long for one statement is refused by design).
                            Mode::Alias => vals[0] = Gen::Int(rowid),
                            Mode::WithoutRowid => vals[0] = key,
                            Mode::Rowid => {}
                        }
                        (rowid, vals)
                    })
                    .collect()
            });
            (Just(mode), Just(strict), Just(named), rows)
        })
        .prop_map(|(mode, strict, cols, rows)| TableSpec {
            mode,
            strict,
            cols,
            rows,
        })
}

impl TableSpec {
    fn ddl(&self) -> String {
        let mut cols: Vec<String> = self
            .cols
            .iter()
            .map(|(n, d)| format!("{} {d}", quote_ident(n)))
            .collect();
        match self.mode {
            Mode::Alias => cols[0].push_str(" PRIMARY KEY"),
            Mode::WithoutRowid => {
                cols.push(format!("PRIMARY KEY({})", quote_ident(&self.cols[0].0)))
            }
            Mode::Rowid => {}
        }
        let mut options = Vec::new();
        if self.mode == Mode::WithoutRowid {
            options.push("WITHOUT ROWID");
        }
        if self.strict {
            options.push("STRICT");
        }
        format!(
            "CREATE TABLE \"t\"({}) {}",
            cols.join(", "),
            options.join(", ")
        )
    }

    /// A name that reads the rowid (one the columns do not shadow).
    fn rowid_name(&self) -> &'static str {
        ["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|n| !self.cols.iter().any(|(c, _)| c.eq_ignore_ascii_case(n)))
            .expect("NAMES shadows at most one rowid name")
    }

    /// Create the table and insert the rows that SQLite accepts (STRICT type errors,
    /// duplicate or NULL keys are skipped).
    fn create(&self, conn: &Connection) {
        conn.execute_batch(&self.ddl())
            .unwrap_or_else(|e| panic!("{}: {e}", self.ddl()));
        let names: Vec<String> = self.cols.iter().map(|(n, _)| quote_ident(n)).collect();
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let sql = match self.mode {
            Mode::Rowid => format!(
                "INSERT INTO \"t\"({}, {}) VALUES(?{}, {})",
                self.rowid_name(),
                names.join(", "),
                names.len() + 1,
                marks.join(", ")
            ),
            _ => format!(
                "INSERT INTO \"t\"({}) VALUES({})",
                names.join(", "),
                marks.join(", ")
            ),
        };
        for (rowid, vals) in &self.rows {
            let mut params: Vec<SqlValue> = vals.iter().map(Gen::to_sql).collect();
            if self.mode == Mode::Rowid {
                params.push(SqlValue::Integer(*rowid));
            }
            if conn
                .execute(&sql, rusqlite::params_from_iter(&params))
                .is_err()
                && self.strict
            {
                // A STRICT column refused a value of another type: store NULL there instead.
                for (p, (_, decl)) in params.iter_mut().zip(&self.cols) {
                    if !strict_accepts(decl, p) {
                        *p = SqlValue::Null;
                    }
                }
                let _ = conn.execute(&sql, rusqlite::params_from_iter(&params));
            }
        }
    }

    /// Everything in the table, exactly, in a canonical order.
    fn content(&self, conn: &Connection) -> Vec<Vec<Stored>> {
        let sql = match self.mode {
            Mode::WithoutRowid => "SELECT * FROM \"t\"".to_string(),
            _ => format!("SELECT {}, * FROM \"t\"", self.rowid_name()),
        };
        let mut rows = read_rows(conn, &sql);
        rows.sort();
        rows
    }
}

/// Whether a STRICT column of type `decl` takes `v` as it is.
fn strict_accepts(decl: &str, v: &SqlValue) -> bool {
    matches!(
        (decl, v),
        (_, SqlValue::Null)
            | ("ANY", _)
            | ("INT" | "INTEGER", SqlValue::Integer(_))
            | ("REAL", SqlValue::Real(_) | SqlValue::Integer(_))
            | ("TEXT", SqlValue::Text(_))
            | ("BLOB", SqlValue::Blob(_))
    )
}

/// Run the product's dump of the SQLite file at `path` with a statement limit.
fn dump_file(path: &Path, limit: usize) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let source: Arc<dyn Source> = Arc::new(SqliteSource::open(path, "db")?);
        let schema = read_schema(source.as_ref(), &Selection::default()).await?;
        let header = DumpHeader {
            database_name: "db".into(),
            database_id: "props".into(),
            timestamp: "2025-01-01T00:00:00Z".into(),
            method: "query".into(),
        };
        let opts = DumpOptions {
            max_statement_bytes: limit,
            ..DumpOptions::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(8);
        let cancel = tokio_util::sync::CancellationToken::new();
        let progress = Progress::new("props");
        let producing = async move {
            let r = dump(source, &schema, &header, &opts, &tx, &cancel, &progress).await;
            drop(tx);
            r
        };
        let collecting = async {
            let mut sql = Vec::new();
            while let Some(piece) = rx.recv().await {
                if let Piece::Data(b) = piece {
                    sql.extend_from_slice(&b);
                }
            }
            sql
        };
        let (stats, sql) = tokio::join!(producing, collecting);
        stats?;
        Ok(String::from_utf8(sql)?)
    })
}

/// Dump `spec` with `limit`, check every statement, restore under D1's rules, compare.
fn dump_round_trip(spec: &TableSpec, limit: usize) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.sqlite");
    let src = Connection::open(&path).unwrap();
    spec.create(&src);
    let want = spec.content(&src);
    drop(src);

    let sql = dump_file(&path, limit)
        .map_err(|e| TestCaseError::fail(format!("dump failed: {e:#}\n{}", spec.ddl())))?;
    // Every statement is one line and within the limit; the splitter finds exactly those.
    let mut statements = Vec::new();
    for_each_statement(sql.as_bytes(), Some(limit), |s, line| {
        statements.push((s.trim_end().to_string(), line));
        Ok(())
    })
    .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    let lines: Vec<&str> = sql.lines().filter(|l| !l.starts_with("--")).collect();
    prop_assert_eq!(statements.len(), lines.len());
    for ((s, _), line) in statements.iter().zip(&lines) {
        prop_assert_eq!(s, line);
        prop_assert!(
            s.len() <= limit,
            "statement of {} bytes > {}: {:.200}",
            s.len(),
            limit,
            s
        );
    }

    let mut dst = Connection::open_in_memory().unwrap();
    let rules = LoadRules {
        max_statement_bytes: Some(limit),
        d1_semantics: true,
        max_db_bytes: None,
        dump_statements_only: true,
    };
    load(&mut dst, sql.as_bytes(), rules)
        .map_err(|e| TestCaseError::fail(format!("restore failed: {e:#}")))?;
    let got = spec.content(&dst);
    prop_assert_eq!(got.len(), want.len(), "row count");
    for (g, w) in got.iter().zip(&want) {
        prop_assert_eq!(g, w);
    }
    let schema =
        |c: &Connection| read_rows(c, "SELECT type, name, sql FROM sqlite_schema ORDER BY name");
    let src = Connection::open(&path).unwrap();
    prop_assert_eq!(schema(&dst), schema(&src));
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Any table, any values: dump → restore under D1's rules gives the identical table.
    #[test]
    fn dumps_restore_identically(spec in table_spec(4, 6, value())) {
        dump_round_trip(&spec, MAX_STATEMENT_BYTES)?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Under small statement limits, rows are split into statements that each fit and that
    /// re-assemble every value exactly (same algorithm as at 100,000 bytes, many more splits).
    #[test]
    fn rows_split_under_any_limit(
        spec in table_spec(3, 3, prop_oneof![2 => value(), 3 => long_value(0, 6_000)].boxed()),
        limit in 500usize..4_000,
    ) {
        dump_round_trip(&spec, limit)?;
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Values over 100,000 bytes (and over 256 KiB, read from the source in pieces) at D1's
    /// real limit: every statement ≤ 100,000 bytes, every value identical after restore.
    #[test]
    fn big_values_split_under_d1_limit(
        spec in table_spec(2, 2, prop_oneof![1 => value(), 3 => long_value(100_001, 600_000)].boxed()),
    ) {
        dump_round_trip(&spec, MAX_STATEMENT_BYTES)?;
    }
}

// ---------------------------------------------------------------------------------------
// 3. The statement splitter

fn sql_literal() -> BoxedStrategy<String> {
    prop_oneof![
        // Raw `quote()` text: real newlines inside the literal.
        3 => text().prop_map(|s| quote_str(&s.replace('\0', ""))),
        // The dump's one-line form.
        2 => text().prop_map(|s| normalize_literal(&quote_str(&s.replace('\0', ""))).into_owned()),
        1 => int().prop_map(|i| i.to_string()),
        1 => blob().prop_map(|b| format!("X'{}'", hex::encode_upper(b))),
        1 => Just("NULL".to_string()),
    ]
    .boxed()
}

fn sql_ident() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(NAMES).prop_map(quote_ident),
        text().prop_map(|s| quote_ident(&s.replace('\0', ""))),
    ]
}

/// One statement (no trailing whitespace) whose literals and identifiers hold anything.
fn statement() -> impl Strategy<Value = String> {
    let lits = prop::collection::vec(sql_literal(), 1..4);
    prop_oneof![
        (sql_ident(), sql_ident(), lits.clone()).prop_map(|(t, c, l)| {
            let cols = vec![c; l.len()].join(",");
            format!("INSERT INTO {t}({cols}) VALUES({});", l.join(","))
        }),
        (sql_ident(), sql_literal()).prop_map(|(t, l)| format!("CREATE TABLE {t}(a TEXT DEFAULT {l}, b);")),
        (sql_ident(), lits.clone(), sql_literal()).prop_map(|(t, l, m)| format!(
            "CREATE TRIGGER {t} AFTER INSERT ON x BEGIN\n  INSERT INTO y VALUES({});\n  SELECT {m}; -- c;\nEND;",
            l.join(",")
        )),
        (lits.clone(), "[a-z;' ]{0,10}").prop_map(|(l, c)| format!(
            "SELECT {} /* {c} */, 1 -- {c}\n;",
            l.join(", ")
        )),
        lits.prop_map(|l| format!("SELECT {};", l.join(", "))),
        Just("PRAGMA defer_foreign_keys=TRUE;".to_string()),
    ]
}

/// A comment line or block between statements (dropped by the splitter).
fn comment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z;' ]{0,20}".prop_map(|c| format!("-- {c}")),
        "[a-z;' \n]{0,20}".prop_map(|c| format!("/* {c} */")),
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    /// Statements joined by newlines (with comments and blank lines between) split back into
    /// exactly those statements, each with the line it starts on, however the reader buffers.
    #[test]
    fn statements_split_back_exactly(
        items in prop::collection::vec((prop::option::of(comment()), statement()), 0..10),
        crlf in any::<bool>(),
        buffer in 1usize..64,
        limited in any::<bool>(),
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        let mut want = Vec::new();
        for (comment, stmt) in &items {
            if let Some(c) = comment {
                text.push_str(c);
                text.push_str(nl);
            }
            // A statement's line is its own first line (after any leading comment).
            let start_line = 1 + text.matches('\n').count() as u64;
            want.push((stmt.clone(), start_line));
            text.push_str(stmt);
            text.push_str(nl);
        }
        let mut got = Vec::new();
        let reader = BufReader::with_capacity(buffer, text.as_bytes());
        let max = limited.then_some(MAX_STATEMENT_BYTES);
        let stats = for_each_statement(reader, max, |s, line| {
            got.push((s.trim_end().to_string(), line));
            Ok(())
        })
        .map_err(|e| TestCaseError::fail(format!("{e:#}\n{text}")))?;
        prop_assert_eq!(&got, &want, "{}", text);
        prop_assert_eq!(stats.statements, want.len() as u64);
        prop_assert_eq!(stats.bytes, text.len() as u64);
    }

    /// A dump cut anywhere is refused as truncated, or splits into a prefix of its
    /// statements: a cut never yields a statement that was not there, nor drops one silently.
    #[test]
    fn truncated_sql_never_yields_a_foreign_statement(
        stmts in prop::collection::vec(statement(), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let text: String = stmts.iter().map(|s| format!("{s}\n")).collect();
        // Anywhere: inside a literal, a comment, or a UTF-8 sequence.
        let end = cut.index(text.len() + 1);
        let mut got = Vec::new();
        let result = for_each_statement(&text.as_bytes()[..end], None, |s, _| {
            got.push(s.trim_end().to_string());
            Ok(())
        });
        prop_assert!(got.len() <= stmts.len());
        for (g, s) in got.iter().zip(&stmts) {
            prop_assert_eq!(g, s);
        }
        if result.is_ok() && got.len() < stmts.len() {
            // Success with statements missing: the cut fell before the first missing one.
            let rest = stmts[got.len()..].join("\n");
            let missing_from = text.len() - rest.len() - 1;
            prop_assert!(end <= missing_from, "cut at {} of {:?}", end, text);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4. D1 response decoders

/// JSON with every non-ASCII character (and some ASCII) written as `\uXXXX`, surrogate
/// pairs included, the way some encoders do it.
fn json_ascii(v: &serde_json::Value) -> String {
    let mut out = String::new();
    for c in serde_json::to_string(v).unwrap().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(config(512))]

    /// A `/raw` answer decodes to exactly its cells, whatever the chunking, the JSON
    /// spelling and the surrounding fields; and agrees with the serde page decoder.
    #[test]
    fn page_decoder_reads_exactly_the_cells(
        width in 1usize..5,
        cells in prop::collection::vec(text(), 0..24),
        chunk in 1usize..97,
        spelling in 0u8..3,
        meta_first in any::<bool>(),
    ) {
        let rows: Vec<Vec<String>> = cells.chunks_exact(width).map(|r| r.to_vec()).collect();
        let columns: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
        let results = serde_json::json!({"columns": columns, "rows": rows});
        let first = if meta_first {
            serde_json::json!({"meta": {"duration": 0.5, "rows_read": 3, "x": [[["rows"]]]}, "success": true, "results": results})
        } else {
            serde_json::json!({"results": results, "success": true, "meta": {"served_by": "v3", "timings": {"sql_duration_ms": 1e-3}}})
        };
        let body = serde_json::json!({
            "result": [first, {"results": {"columns": ["z"], "rows": [["ignored"]]}}],
            "errors": [],
            "messages": [{"code": 1, "message": "note"}],
            "success": true,
        });
        let text = match spelling {
            0 => serde_json::to_string(&body).unwrap(),
            1 => serde_json::to_string_pretty(&body).unwrap(),
            _ => json_ascii(&body),
        };
        let decoded = harness::stream_decode(text.as_bytes(), chunk)
            .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(decoded.success, Some(true));
        prop_assert!(decoded.errors.is_empty());
        // One page per statement: the second result is a page of its own.
        prop_assert_eq!(decoded.pages.len(), 2);
        let page = &decoded.pages[0];
        prop_assert_eq!(page.width(), width);
        prop_assert_eq!(page.len(), rows.len());
        for (r, row) in rows.iter().enumerate() {
            prop_assert_eq!(&page.row(r), row);
        }
        prop_assert_eq!(decoded.pages[1].row(0), vec!["ignored"]);
        let serde_page: d1_backup::rows::Page = serde_json::from_value(results).unwrap();
        prop_assert_eq!(page, &serde_page);
        harness::decode_d1_response(text.as_bytes());
    }

    /// Error envelopes give back every error's code and message.
    #[test]
    fn page_decoder_reads_errors(
        errors in prop::collection::vec((prop::option::of(-100_000i64..100_000), text()), 0..4),
        chunk in 1usize..33,
    ) {
        let list: Vec<serde_json::Value> = errors
            .iter()
            .map(|(code, message)| match code {
                Some(c) => serde_json::json!({"code": c, "message": message}),
                None => serde_json::json!({"message": message}),
            })
            .collect();
        let body = serde_json::json!({"result": null, "success": false, "errors": list, "messages": []});
        let text = body.to_string();
        let decoded = harness::stream_decode(text.as_bytes(), chunk)
            .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(decoded.success, Some(false));
        prop_assert_eq!(decoded.errors, errors);
    }

    /// Arbitrary bytes, and realistic answers with bytes flipped, cut or inserted: no
    /// decoder panics, and the streaming decoder's answer does not depend on the chunking.
    #[test]
    fn decoders_survive_hostile_bytes(
        seed in prop::sample::select(seeds()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 0..6),
        random in prop::collection::vec(any::<u8>(), 0..256),
        use_random in any::<bool>(),
    ) {
        let mut data = if use_random { random } else { seed.1.clone() };
        for (at, byte, op) in edits {
            let i = at.index(data.len() + 1);
            match op {
                0 if i < data.len() => data[i] = byte,
                1 => data.insert(i, byte),
                2 => data.truncate(i),
                _ => data.insert(i, b"\"{}[],:\\u0d83"[usize::from(byte) % 13]),
            }
        }
        harness::decode_d1_response(&data);
    }
}

/// The fuzz target's seed corpus (name, bytes).
fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/d1_response");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The fuzz target's harness over its seed corpus (what CI runs without libFuzzer), and
/// what the seeds decode to.
#[test]
fn fuzz_seed_corpus_decodes() {
    let seeds = seeds();
    assert!(seeds.len() >= 6, "seed corpus missing: {seeds:?}");
    for (name, data) in &seeds {
        harness::decode_d1_response(data);
        let streamed = harness::stream_decode(data, 7);
        match name.as_str() {
            "raw_page_success.json" => {
                let d = streamed.unwrap();
                assert_eq!(
                    (d.success, d.pages[0].len(), d.pages[0].width()),
                    (Some(true), 4, 4)
                );
                assert_eq!(d.pages[0].cell(1, 1), "'a\nb\r\né😀'");
                assert_eq!(d.pages[0].cell(2, 2), "Inf");
            }
            "raw_empty.json" => {
                let d = streamed.unwrap();
                assert_eq!((d.pages[0].len(), d.pages[0].width()), (0, 3));
            }
            "error_7500.json" | "error_memory_limit.json" | "success_false_7500_reset.json" => {
                let d = streamed.unwrap();
                assert_eq!(d.success, Some(false));
                assert_eq!(d.errors[0].0, Some(7500), "{name}");
            }
            "truncated_raw.json" | "bad_gateway_502.html" | "retry_after_date_429.txt" => {
                assert!(streamed.is_err(), "{name}");
            }
            _ => {}
        }
    }
    let raw: d1_backup::d1::Envelope<Vec<d1_backup::d1::RawResult>> = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/corpus/d1_response/raw_values_success.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let result = raw.result.unwrap();
    let rows = &result[0].results.as_ref().unwrap().rows;
    assert_eq!(rows[0][5], d1_backup::rows::Value::Blob(vec![0, 255, 7]));
}

// ---------------------------------------------------------------------------------------
// 5. Retry-After, and regression tests for bugs these properties found

fn fixed_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::<chrono::Utc>::from_timestamp(1_750_000_000, 0).expect("a valid time")
}

proptest! {
    #![proptest_config(config(256))]

    /// The forms servers send: delta-seconds (any spacing) and HTTP dates.
    #[test]
    fn retry_after_reads_seconds_and_dates(secs in 0u64..10_000_000, pad in "[ \t]{0,2}") {
        use d1_backup::d1::retry::parse_retry_after;
        // Values beyond a day are capped at a day (no retry waits that long).
        let d = std::time::Duration::from_secs(secs).min(d1_backup::d1::retry::MAX_RETRY_AFTER);
        prop_assert_eq!(parse_retry_after(&format!("{pad}{secs}{pad}"), fixed_now()), Some(d));
        let when = fixed_now() + chrono::Duration::seconds(secs as i64);
        let date = when.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        prop_assert_eq!(parse_retry_after(&date, fixed_now()), Some(d));
        let past = (fixed_now() - chrono::Duration::seconds(secs as i64 + 1))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        prop_assert_eq!(parse_retry_after(&past, fixed_now()), Some(std::time::Duration::ZERO));
    }
}

/// A `Retry-After` header too large for a `Duration` must not panic the client: not in
/// `parse_retry_after` (`1e20`, 40 digits: `Duration::from_secs_f64` panics), nor where the
/// client uses the value (`RetryPolicy::allows` adds it to the elapsed time, `Budget::
/// pause_for` adds it to `Instant::now()`; both overflow for values near `u64::MAX` s).
#[test]
fn huge_retry_after_values_do_not_panic() {
    use d1_backup::d1::retry::parse_retry_after;
    use d1_backup::d1::{Budget, RetryPolicy};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for header in [
        "1e20",
        "8888888888888888888888888888888888888888",
        "18446744073709551615",
        "9223372036854775807",
        "1e19",
    ] {
        let Some(wait) = parse_retry_after(header, fixed_now()) else {
            continue;
        };
        let policy = RetryPolicy::default();
        let delay = policy.delay(1, Some(wait), &mut rand::rng());
        let _ = policy.allows(1, std::time::Duration::from_secs(1), delay);
        rt.block_on(Budget::cloudflare_default().pause_for(wait));
    }
}

/// The streaming page decoder must refuse what is not a `/raw` page rather than drop rows:
/// before the fix, `rows: [[], ["a"]]` and `rows: [null, ["a"], 7]` decode as one row, and an object
/// in `rows` is read as a row of its values (the serde `Page` decoder refuses all three).
#[test]
fn page_decoder_refuses_malformed_rows() {
    for rows in [
        r#"[[], ["a"]]"#,
        r#"[null, ["a"], 7]"#,
        r#"[["y"], {"k": "v"}]"#,
        r#"[["y"], [["z"]]]"#,
    ] {
        let body = format!(
            r#"{{"result":[{{"results":{{"columns":["x"],"rows":{rows}}},"success":true}}],"success":true}}"#
        );
        let serde: Result<d1_backup::rows::Page, _> =
            serde_json::from_str(&format!(r#"{{"columns":["x"],"rows":{rows}}}"#));
        assert!(serde.is_err(), "{rows}");
        let streamed = harness::stream_decode(body.as_bytes(), 4);
        assert!(streamed.is_err(), "{rows}: {streamed:?}");
    }
}
