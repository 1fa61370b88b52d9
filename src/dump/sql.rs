//! SQL text of a dump: identifiers, literals, and row statements within D1's limit.
//!
//! Values arrive as SQLite literals (from `quote()`), so they are exact: full-range
//! integers, REALs that round-trip bit for bit, `X'…'` BLOBs, TEXT with any content. Two
//! rewrites keep every statement on one line and replayable: TEXT containing CR/LF is
//! written as `'…'||char(10)||'…'`, and infinities as `9e999`.
//!
//! D1 rejects statements over 100,000 bytes. [`RowWriter`] writes a row as one `INSERT`
//! when it fits; otherwise the longest TEXT/BLOB values are inserted empty and appended in
//! pieces with `UPDATE … SET c = c || …` keyed by the row's rowid or primary key. Text bound
//! for a column whose affinity could turn a numeric-looking piece into a number (a
//! non-STRICT INTEGER/REAL/NUMERIC column) is assembled as a BLOB and cast to TEXT at the end.

use std::borrow::Cow;
use std::fmt::Write as _;

use anyhow::{Result, bail};

use super::schema::{Affinity, RowKey, Table};
use crate::sqltext::cell::written_as_is;
use crate::sqltext::{quote_ident, quote_str};

/// Rewrite a literal produced by `quote()` (or the dumper's NUL-safe form) for the dump.
pub fn normalize_literal(lit: &str) -> Cow<'_, str> {
    match lit {
        "Inf" => Cow::Borrowed("9e999"),
        "-Inf" => Cow::Borrowed("-9e999"),
        _ if lit.starts_with('\'') && lit.bytes().any(|b| b == b'\n' || b == b'\r') => {
            Cow::Owned(replace_newlines(&lit[1..lit.len().saturating_sub(1)]))
        }
        _ => Cow::Borrowed(lit),
    }
}

/// `body` is the inside of a quoted literal (quotes already doubled). Returns
/// `replace(replace('…','<cr>',char(13)),'<lf>',char(10))` with placeholders that do not
/// occur in the value (the SQLite shell's method), so the statement stays on one line and
/// its expression depth stays constant however many newlines the value holds.
fn replace_newlines(body: &str) -> String {
    let has_lf = body.contains('\n');
    let has_cr = body.contains('\r');
    let lf = unused_placeholder(body, "\\n", "\\012", "\\n");
    let cr = unused_placeholder(body, "\\r", "\\015", "\\r");
    let mut escaped = String::with_capacity(body.len() + 16);
    for c in body.chars() {
        match c {
            '\n' => escaped.push_str(&lf),
            '\r' => escaped.push_str(&cr),
            c => escaped.push(c),
        }
    }
    let mut out = format!("'{escaped}'");
    if has_cr {
        out = format!("replace({out},'{cr}',char(13))");
    }
    if has_lf {
        out = format!("replace({out},'{lf}',char(10))");
    }
    out
}

/// A placeholder that does not occur in `value`: `primary`, `secondary`, or `(<stem>N)`.
fn unused_placeholder(value: &str, primary: &str, secondary: &str, stem: &str) -> String {
    if !value.contains(primary) {
        return primary.to_string();
    }
    if !value.contains(secondary) {
        return secondary.to_string();
    }
    (0u64..)
        .map(|i| format!("({stem}{i})"))
        .find(|c| !value.contains(c.as_str()))
        .unwrap_or_default()
}

/// A TEXT or BLOB value decoded from its literal, for writing in pieces.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// Decode a literal as produced by `quote()`/the dumper. Numbers and NULL give `None`.
pub fn decode_literal(lit: &str) -> Option<Decoded> {
    if let Some(hex) = lit
        .strip_prefix("CAST(X'")
        .and_then(|r| r.strip_suffix("' AS TEXT)"))
    {
        return hex::decode(hex).ok().map(Decoded::Text);
    }
    if let Some(hex) = lit.strip_prefix("X'").and_then(|r| r.strip_suffix('\'')) {
        return hex::decode(hex).ok().map(Decoded::Blob);
    }
    if lit.len() >= 2 && lit.starts_with('\'') && lit.ends_with('\'') {
        return Some(Decoded::Text(
            lit[1..lit.len() - 1].replace("''", "'").into_bytes(),
        ));
    }
    None
}

/// Encode raw text bytes as a literal expression (UTF-8 without NUL as `'…'`, else as
/// `CAST(X'…' AS TEXT)`).
pub fn encode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => normalize_literal(&quote_str(s)).into_owned(),
        _ => format!("CAST(X'{}' AS TEXT)", hex::encode_upper(bytes)),
    }
}

/// Split text bytes into literal pieces of at most `budget` bytes each.
fn text_pieces(bytes: &[u8], budget: usize) -> Vec<String> {
    let plain = std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.contains('\0'));
    let Some(s) = plain else {
        return blob_pieces(bytes, budget, true);
    };
    let mut pieces = Vec::new();
    let mut rest = s;
    // Worst-case growth per character: a quote doubles, a newline becomes a placeholder of
    // up to ~8 bytes; plus the `replace(…)` wrappers.
    let mut take_budget = budget.saturating_sub(80) / 2;
    while !rest.is_empty() {
        let mut end = rest.len().min(take_budget.max(1));
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let piece = encode_text(&rest.as_bytes()[..end]);
        if piece.len() > budget && end > 1 {
            take_budget = end / 2;
            continue;
        }
        pieces.push(piece);
        rest = &rest[end..];
    }
    pieces
}

/// Split bytes into `X'…'` pieces (or `CAST(X'…' AS TEXT)` with `as_text`).
fn blob_pieces(bytes: &[u8], budget: usize, as_text: bool) -> Vec<String> {
    let overhead = if as_text { 20 } else { 3 };
    let per = ((budget.saturating_sub(overhead)) / 2).max(1);
    bytes
        .chunks(per)
        .map(|c| {
            if as_text {
                format!("CAST(X'{}' AS TEXT)", hex::encode_upper(c))
            } else {
                format!("X'{}'", hex::encode_upper(c))
            }
        })
        .collect()
}

/// One value of a row: a literal as selected, or raw bytes read in pieces.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Lit(&'a str),
    Raw(Decoded),
}

/// How the writer finds a row again for its `UPDATE`s.
#[derive(Debug, Clone)]
enum KeySpec {
    /// `<name>=<key literal>`.
    Rowid(String),
    /// `"pk1"=<v> AND …`, with indices into the inserted values.
    Columns(Vec<(String, usize)>),
}

/// What writing one row produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowOutcome {
    pub statements: usize,
    /// Whether the row needed `UPDATE`s because it exceeded the statement limit.
    pub split: bool,
}

/// Writes the rows of one table.
#[derive(Debug, Clone)]
pub struct RowWriter {
    table_name: String,
    table_q: String,
    insert_prefix: String,
    cols_q: Vec<String>,
    /// Assemble long text through a BLOB (affinity could turn a piece into a number).
    text_via_blob: Vec<bool>,
    key: KeySpec,
    limit: usize,
}

impl RowWriter {
    /// Prepare statements for `table`. Values passed to [`RowWriter::write`] are, in order:
    /// the rowid (when written explicitly), then every insertable column.
    pub fn new(table: &Table, limit: usize) -> RowWriter {
        let table_q = quote_ident(&table.name);
        let mut cols_q = Vec::new();
        let mut text_via_blob = Vec::new();
        let strict = table.strict();
        if let RowKey::Rowid {
            name,
            explicit: true,
        } = &table.key
        {
            cols_q.push(name.clone());
            text_via_blob.push(false);
        }
        let offset = cols_q.len();
        let insert_cols: Vec<&super::schema::Column> = table.insert_columns().collect();
        for c in &insert_cols {
            cols_q.push(quote_ident(&c.name));
            text_via_blob.push(
                !strict && !table.is_virtual() && Affinity::from_decl(&c.decl_type).converts_text(),
            );
        }
        let key = match &table.key {
            RowKey::Rowid { name, .. } => KeySpec::Rowid(name.clone()),
            RowKey::PrimaryKey(idx) => KeySpec::Columns(
                idx.iter()
                    .map(|&i| {
                        let name = &table.columns[i].name;
                        let pos = insert_cols
                            .iter()
                            .position(|c| &c.name == name)
                            .unwrap_or(0);
                        (quote_ident(name), offset + pos)
                    })
                    .collect(),
            ),
        };
        let insert_prefix = format!("INSERT INTO {table_q}({}) VALUES(", cols_q.join(","));
        RowWriter {
            table_name: table.name.clone(),
            table_q,
            insert_prefix,
            cols_q,
            text_via_blob,
            key,
            limit,
        }
    }

    /// Number of values [`RowWriter::write`] expects.
    pub fn width(&self) -> usize {
        self.cols_q.len()
    }

    /// Write one row. `key` is the rowid literal (rowid tables); `cells` are the values.
    pub fn write(
        &self,
        out: &mut String,
        key: Option<&str>,
        cells: &[Cell<'_>],
    ) -> Result<RowOutcome> {
        if cells.len() != self.cols_q.len() {
            bail!(
                "table {:?}: got {} values for {} columns",
                self.table_name,
                cells.len(),
                self.cols_q.len()
            );
        }
        if let Some(size) = self.plain_size(cells)
            && size <= self.limit
        {
            // The common row: literals written as they came, one INSERT.
            self.push_plain(
                out,
                size,
                cells.iter().map(|c| match c {
                    Cell::Lit(v) => *v,
                    Cell::Raw(_) => "",
                }),
            );
            return Ok(RowOutcome {
                statements: 1,
                split: false,
            });
        }
        let lits: Vec<Cow<str>> = cells
            .iter()
            .map(|c| match c {
                Cell::Lit(v) => normalize_literal(v),
                Cell::Raw(_) => Cow::Borrowed(""),
            })
            .collect();
        // Values fetched in pieces are always written in pieces.
        let mut deferred: Vec<(usize, Cow<Decoded>)> = Vec::new();
        for (i, c) in cells.iter().enumerate() {
            if let Cell::Raw(d) = c {
                if self.is_key_value(i) {
                    bail!(
                        "table {:?}: a primary key value is too long to dump",
                        self.table_name
                    );
                }
                deferred.push((i, Cow::Borrowed(d)));
            }
        }
        let mut size = self.insert_prefix.len() + lits.len().saturating_sub(1) + 3;
        for (i, l) in lits.iter().enumerate() {
            size += match deferred.iter().find(|(j, _)| *j == i) {
                Some((_, d)) => self.placeholder(i, d).len(),
                None => l.len(),
            };
        }
        if size <= self.limit && deferred.is_empty() {
            self.push_insert(out, &lits, &[]);
            return Ok(RowOutcome {
                statements: 1,
                split: false,
            });
        }
        // Defer the longest splittable literals until the INSERT fits.
        let mut order: Vec<usize> = (0..lits.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(lits[i].len()));
        for i in order {
            if size <= self.limit {
                break;
            }
            let Cell::Lit(v) = cells[i] else { continue };
            let Some(decoded) = decode_literal(v) else {
                continue;
            };
            if self.is_key_value(i) {
                bail!(
                    "table {:?}: a primary key value of {} bytes does not fit in one {}-byte statement",
                    self.table_name,
                    lits[i].len(),
                    self.limit
                );
            }
            let placeholder = self.placeholder(i, &decoded);
            size = size - lits[i].len() + placeholder.len();
            deferred.push((i, Cow::Owned(decoded)));
        }
        if size > self.limit {
            bail!(
                "table {:?}: a row cannot be split under the {}-byte statement limit",
                self.table_name,
                self.limit
            );
        }
        let predicate = self.predicate(key, &lits)?;
        self.push_insert(out, &lits, &deferred);
        let mut statements = 1;
        for (i, decoded) in &deferred {
            statements += self.push_updates(out, *i, decoded, &predicate)?;
        }
        Ok(RowOutcome {
            statements,
            split: true,
        })
    }

    /// Write a row whose values the caller knows are literals written as they are
    /// ([`written_as_is`]) as one INSERT. `false`, and nothing written, when the row needs
    /// [`RowWriter::write`]: it is longer than the statement limit.
    pub fn write_plain(&self, out: &mut String, values: &[&str]) -> bool {
        let size = self.insert_prefix.len()
            + values.len().saturating_sub(1)
            + 3
            + values.iter().map(|v| v.len()).sum::<usize>();
        if values.len() != self.cols_q.len() || size > self.limit {
            return false;
        }
        self.push_plain(out, size, values.iter().copied());
        true
    }

    /// `INSERT INTO t(…) VALUES(v1,v2,…);` of `size` bytes.
    fn push_plain<'v>(&self, out: &mut String, size: usize, values: impl Iterator<Item = &'v str>) {
        out.reserve(size + 1);
        out.push_str(&self.insert_prefix);
        for (i, v) in values.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(v);
        }
        out.push_str(");\n");
    }

    /// The `WHERE` condition that finds a row again (for reading its long values).
    pub fn row_predicate(&self, key: Option<&str>, cells: &[Cell<'_>]) -> Result<String> {
        let lits: Vec<Cow<str>> = cells
            .iter()
            .map(|c| match c {
                Cell::Lit(v) => normalize_literal(v),
                Cell::Raw(_) => Cow::Borrowed(""),
            })
            .collect();
        self.predicate(key, &lits)
    }

    fn is_key_value(&self, i: usize) -> bool {
        match &self.key {
            KeySpec::Columns(cols) => cols.iter().any(|(_, j)| *j == i),
            KeySpec::Rowid(_) => false,
        }
    }

    fn via_blob(&self, i: usize, d: &Decoded) -> bool {
        matches!(d, Decoded::Blob(_)) || self.text_via_blob[i]
    }

    fn placeholder(&self, i: usize, d: &Decoded) -> &'static str {
        if self.via_blob(i, d) { "X''" } else { "''" }
    }

    fn predicate(&self, key: Option<&str>, lits: &[Cow<str>]) -> Result<String> {
        match &self.key {
            KeySpec::Rowid(name) => match key {
                Some(k) => Ok(format!("{name}={k}")),
                None => bail!("table {:?}: no rowid for a split row", self.table_name),
            },
            KeySpec::Columns(cols) => Ok(cols
                .iter()
                .map(|(c, i)| format!("{c}={}", lits[*i]))
                .collect::<Vec<_>>()
                .join(" AND ")),
        }
    }

    /// The INSERT's length when every cell is a literal written as it is (no value read
    /// in pieces, nothing to normalize); `None` otherwise.
    fn plain_size(&self, cells: &[Cell<'_>]) -> Option<usize> {
        let mut size = self.insert_prefix.len() + cells.len().saturating_sub(1) + 3;
        for c in cells {
            match c {
                Cell::Lit(v) if written_as_is(v) => size += v.len(),
                _ => return None,
            }
        }
        Some(size)
    }

    fn push_insert(&self, out: &mut String, lits: &[Cow<str>], deferred: &[(usize, Cow<Decoded>)]) {
        out.push_str(&self.insert_prefix);
        for (i, l) in lits.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match deferred.iter().find(|(j, _)| *j == i) {
                Some((_, d)) => out.push_str(self.placeholder(i, d)),
                None => out.push_str(l),
            }
        }
        out.push_str(");\n");
    }

    fn push_updates(
        &self,
        out: &mut String,
        i: usize,
        d: &Decoded,
        predicate: &str,
    ) -> Result<usize> {
        let col = &self.cols_q[i];
        let via_blob = self.via_blob(i, d);
        let overhead = if via_blob {
            format!(
                "UPDATE {} SET {col}=CAST({col}|| AS BLOB) WHERE {predicate};\n",
                self.table_q
            )
            .len()
        } else {
            format!(
                "UPDATE {} SET {col}={col}|| WHERE {predicate};\n",
                self.table_q
            )
            .len()
        };
        if overhead + 64 > self.limit {
            bail!(
                "table {:?}: the key of a long row is too long to finish it under the {}-byte statement limit",
                self.table_name,
                self.limit
            );
        }
        let budget = self.limit - overhead;
        let (Decoded::Blob(bytes) | Decoded::Text(bytes)) = d;
        let pieces = if via_blob {
            blob_pieces(bytes, budget, false)
        } else {
            text_pieces(bytes, budget)
        };
        let mut n = 0;
        for p in &pieces {
            if via_blob {
                let _ = writeln!(
                    out,
                    "UPDATE {} SET {col}=CAST({col}||{p} AS BLOB) WHERE {predicate};",
                    self.table_q
                );
            } else {
                let _ = writeln!(
                    out,
                    "UPDATE {} SET {col}={col}||{p} WHERE {predicate};",
                    self.table_q
                );
            }
            n += 1;
        }
        if via_blob && matches!(d, Decoded::Text(_)) {
            let _ = writeln!(
                out,
                "UPDATE {} SET {col}=CAST({col} AS TEXT) WHERE {predicate};",
                self.table_q
            );
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::{Column, TableKind};
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(quote_ident("a"), "\"a\"");
        assert_eq!(
            quote_ident("x\"; DROP TABLE y; --"),
            "\"x\"\"; DROP TABLE y; --\""
        );
    }

    #[test]
    fn literal_rewrites() {
        let cases = [
            ("123", "123"),
            ("NULL", "NULL"),
            ("Inf", "9e999"),
            ("-Inf", "-9e999"),
            ("'plain'", "'plain'"),
            ("'a\nb'", "replace('a\\nb','\\n',char(10))"),
            (
                "'a\r\nb'",
                "replace(replace('a\\r\\nb','\\r',char(13)),'\\n',char(10))",
            ),
            ("'it''s\n'", "replace('it''s\\n','\\n',char(10))"),
            // The value already holds a backslash-n: another placeholder is used.
            ("'\\n\n'", "replace('\\n\\012','\\012',char(10))"),
            ("X'00FF'", "X'00FF'"),
        ];
        for (lit, want) in cases {
            assert_eq!(normalize_literal(lit), want, "{lit:?}");
        }
    }

    /// Whatever the value, the rewritten literal reads back as the same text.
    #[test]
    fn newline_rewrites_are_exact() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let values = [
            "a\nb",
            "\n",
            "\r\n\r",
            "x\\n\ny",
            "\\n\\012\n",
            "\\n\\012(\\n0)\n\r\\r\\015",
            "ends with backslash\\\n",
            "(\\n0)\n",
            "quote ' and\nnewline",
        ];
        for v in values {
            let lit = normalize_literal(&quote_str(v)).into_owned();
            assert!(!lit.contains('\n') && !lit.contains('\r'), "{lit}");
            let back: String = conn
                .query_row(&format!("SELECT {lit}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(back, v, "{lit}");
        }
        // Many newlines do not deepen the expression.
        let many = "x\n".repeat(10_000);
        let lit = normalize_literal(&quote_str(&many)).into_owned();
        let back: String = conn
            .query_row(&format!("SELECT {lit}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(back, many);
    }

    #[test]
    fn decoding_literals() {
        assert_eq!(
            decode_literal("'a''b'"),
            Some(Decoded::Text(b"a'b".to_vec()))
        );
        assert_eq!(decode_literal("X'00ff'"), Some(Decoded::Blob(vec![0, 255])));
        assert_eq!(
            decode_literal("CAST(X'610062' AS TEXT)"),
            Some(Decoded::Text(vec![b'a', 0, b'b']))
        );
        assert_eq!(decode_literal("42"), None);
        assert_eq!(decode_literal("NULL"), None);
    }

    #[test]
    fn text_encoding() {
        assert_eq!(encode_text(b"it's"), "'it''s'");
        assert_eq!(encode_text(b"a\0b"), "CAST(X'610062' AS TEXT)");
        assert_eq!(encode_text(&[0xff, 0x41]), "CAST(X'FF41' AS TEXT)");
    }

    fn table(cols: &[(&str, &str)], key: RowKey, strict: bool) -> Table {
        Table {
            name: "t".into(),
            sql: String::new(),
            kind: TableKind::Regular {
                without_rowid: matches!(key, RowKey::PrimaryKey(_)),
                strict,
            },
            columns: cols
                .iter()
                .enumerate()
                .map(|(i, (n, ty))| Column {
                    name: n.to_string(),
                    decl_type: ty.to_string(),
                    pk: if matches!(&key, RowKey::PrimaryKey(p) if p.contains(&i)) {
                        1
                    } else {
                        0
                    },
                    hidden: 0,
                })
                .collect(),
            key,
            parents: vec![],
        }
    }

    fn rowid_table(cols: &[(&str, &str)]) -> Table {
        table(
            cols,
            RowKey::Rowid {
                name: "rowid".into(),
                explicit: true,
            },
            false,
        )
    }

    #[test]
    fn small_rows_are_one_insert() {
        let w = RowWriter::new(&rowid_table(&[("a", "TEXT"), ("b", "INTEGER")]), 100_000);
        let mut out = String::new();
        let r = w
            .write(
                &mut out,
                Some("7"),
                &[Cell::Lit("7"), Cell::Lit("'x\ny'"), Cell::Lit("42")],
            )
            .unwrap();
        assert_eq!(
            r,
            RowOutcome {
                statements: 1,
                split: false
            }
        );
        assert_eq!(
            out,
            "INSERT INTO \"t\"(rowid,\"a\",\"b\") VALUES(7,replace('x\\ny','\\n',char(10)),42);\n"
        );
    }

    /// Every statement of a split row is within the limit and, replayed, gives the value.
    #[test]
    fn long_values_are_split_within_the_limit() {
        let limit = 300;
        let long_text: String = (0..2000)
            .map(|i| {
                if i % 97 == 0 {
                    '\n'
                } else {
                    char::from(b'a' + (i % 26) as u8)
                }
            })
            .collect();
        let long_text = format!("{long_text}'é☃");
        let text_lit = quote_str(&long_text);
        let blob: Vec<u8> = (0..1500u32).map(|i| (i % 256) as u8).collect();
        let blob_lit = format!("X'{}'", hex::encode_upper(&blob));
        let numeric_text = "0123".repeat(300) + "x";
        let numeric_lit = quote_str(&numeric_text);
        let cases: Vec<(Table, Vec<String>, Option<&str>)> = vec![
            (
                rowid_table(&[("t", "TEXT"), ("b", "BLOB"), ("n", "INTEGER")]),
                vec![
                    "5".into(),
                    text_lit.clone(),
                    blob_lit.clone(),
                    numeric_lit.clone(),
                ],
                Some("5"),
            ),
            (
                table(
                    &[("k", "TEXT"), ("t", "TEXT")],
                    RowKey::PrimaryKey(vec![0]),
                    false,
                ),
                vec!["'key'".into(), text_lit.clone()],
                None,
            ),
            (
                table(
                    &[("s", "TEXT")],
                    RowKey::Rowid {
                        name: "rowid".into(),
                        explicit: true,
                    },
                    true,
                ),
                vec![
                    "9".into(),
                    format!("CAST(X'{}' AS TEXT)", "610062".repeat(200)),
                ],
                Some("9"),
            ),
        ];
        for (t, values, key) in cases {
            let w = RowWriter::new(&t, limit);
            let mut out = String::new();
            let refs: Vec<Cell> = values.iter().map(|s| Cell::Lit(s.as_str())).collect();
            w.write(&mut out, key, &refs).unwrap();
            for line in out.lines() {
                assert!(
                    line.len() < limit,
                    "statement of {} bytes: {line}",
                    line.len()
                );
            }
            // Replay in SQLite and compare.
            let conn = rusqlite::Connection::open_in_memory().unwrap();
            let cols: Vec<String> = t
                .columns
                .iter()
                .map(|c| format!("{} {}", quote_ident(&c.name), c.decl_type))
                .collect();
            let pk = match &t.key {
                RowKey::PrimaryKey(p) => format!(
                    ", PRIMARY KEY({})",
                    p.iter()
                        .map(|&i| quote_ident(&t.columns[i].name))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                _ => String::new(),
            };
            let suffix = match (&t.key, t.strict()) {
                (RowKey::PrimaryKey(_), _) => " WITHOUT ROWID",
                (_, true) => " STRICT",
                _ => "",
            };
            let ddl = format!("CREATE TABLE \"t\"({}{pk}){suffix}", cols.join(","));
            conn.execute_batch(&ddl).unwrap();
            conn.execute_batch(&out).unwrap();
            let expected = format!(
                "SELECT {}",
                values
                    .iter()
                    .skip(if matches!(t.key, RowKey::Rowid { explicit: true, .. }) {
                        1
                    } else {
                        0
                    })
                    .map(|v| format!("quote({v})"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let got = format!(
                "SELECT {} FROM \"t\"",
                t.columns
                    .iter()
                    .map(|c| format!("quote({})", quote_ident(&c.name)))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let a: Vec<String> = conn
                .query_row(&expected, [], |r| {
                    (0..t.columns.len()).map(|i| r.get(i)).collect()
                })
                .unwrap();
            let b: Vec<String> = conn
                .query_row(&got, [], |r| {
                    (0..t.columns.len()).map(|i| r.get(i)).collect()
                })
                .unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn raw_cells_are_written_in_pieces() {
        let t = rowid_table(&[("a", "TEXT"), ("b", "BLOB")]);
        let w = RowWriter::new(&t, 1000);
        let text = "line\n'quoted'\r\n".repeat(200).into_bytes();
        let blob: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut out = String::new();
        let r = w
            .write(
                &mut out,
                Some("3"),
                &[
                    Cell::Lit("3"),
                    Cell::Raw(Decoded::Text(text.clone())),
                    Cell::Raw(Decoded::Blob(blob.clone())),
                ],
            )
            .unwrap();
        assert!(r.split && r.statements > 3);
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE \"t\"(a TEXT, b BLOB)")
            .unwrap();
        for line in out.lines() {
            assert!(line.len() < 1000);
        }
        conn.execute_batch(&out).unwrap();
        let (a, b): (Vec<u8>, Vec<u8>) = conn
            .query_row("SELECT CAST(a AS BLOB), b FROM t WHERE rowid=3", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(a, text);
        assert_eq!(b, blob);
        let types: String = conn
            .query_row("SELECT typeof(a)||typeof(b) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(types, "textblob");
    }

    #[test]
    fn oversized_keys_are_reported() {
        let t = table(&[("k", "TEXT")], RowKey::PrimaryKey(vec![0]), false);
        let w = RowWriter::new(&t, 200);
        let big = quote_str(&"k".repeat(500));
        let err = w
            .write(&mut String::new(), None, &[Cell::Lit(&big)])
            .unwrap_err();
        assert!(err.to_string().contains("primary key"), "{err}");
    }
}
