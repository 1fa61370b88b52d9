//! Streaming decoder of D1 `/raw` responses into [`Page`]s, one per statement.
//!
//! A page is decoded while its body arrives, chunk by chunk: cells go straight into the
//! page's arena, so the response body is never held whole (a page never exists twice in
//! memory) and the bytes are read once. The decoder is a small JSON lexer that tracks the
//! path of each value and keeps only what a dump needs:
//!
//! * `result[s].results.rows[r][c]` — the cells of statement `s`: strings are SQL literals;
//!   numbers are REALs (selected as values, because D1's `quote()` is not exact for them),
//!   turned into their exact literal here ([`crate::sqltext::literal::push_real_literal`]);
//! * `result[s].results.columns[i]` — the column count;
//! * `result[s].meta.rows_read` — the rows D1 read (and bills), summed;
//! * `success` and `errors[i].code/message` — the envelope verdict.
//!
//! Everything else is lexed and skipped. A body that ends early or is not JSON is an error.

use crate::rows::Page;

/// One step of the path to the current value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Object: a key or `}`.
    KeyOrEnd,
    /// Object: `:` after a key.
    Colon,
    /// A value (object member or array element; in arrays `]` is also allowed when empty).
    Value,
    /// After a value: `,` or the closing bracket.
    CommaOrEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
}

#[derive(Debug)]
struct Frame {
    kind: Kind,
    expect: Expect,
    /// The segment of the value being parsed in this container.
    seg: Option<Seg>,
    count: usize,
    /// What this container is, decided once when it opens, so the hot checks (is this
    /// value a cell? a row?) compare one tag instead of walking the path.
    role: Role,
}

/// The containers the hot path cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `result[s].results.rows`: its elements are rows.
    RowList,
    /// `result[s].results.rows[r]`: its elements are cells.
    Row,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Between,
    /// Inside a string; `key` if it is an object key.
    Str {
        key: bool,
    },
    /// After a backslash in a string.
    Escape {
        key: bool,
    },
    /// In `\uXXXX`: digits read so far and their value.
    Unicode {
        key: bool,
        digits: u8,
        value: u32,
    },
    /// Inside a number or literal.
    Scalar,
}

/// What a decoded response said.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    /// One page per statement, in order.
    pub pages: Vec<Page>,
    pub success: Option<bool>,
    pub errors: Vec<(Option<i64>, String)>,
    /// The sum of every statement's `meta.rows_read` (what D1 bills).
    pub rows_read: u64,
}

/// Incremental decoder; feed it chunks, then call [`PageDecoder::finish`].
#[derive(Debug)]
pub struct PageDecoder {
    stack: Vec<Frame>,
    lex: Lex,
    scratch: Vec<u8>,
    /// The literal of the last REAL cell (reused).
    real: String,
    /// A pending high surrogate from `\uD8xx`.
    high_surrogate: Option<u32>,
    /// Column count of each statement's result.
    columns: Vec<usize>,
    row_cells: usize,
    /// Cells to reserve in each new page.
    cells_hint: usize,
    out: Decoded,
    root_done: bool,
    /// Error entry being collected: (code, message).
    error: (Option<i64>, Option<String>),
}

impl Default for PageDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl PageDecoder {
    pub fn new() -> PageDecoder {
        Self::with_capacity(0)
    }

    /// A decoder expecting about `cells` cells per statement (avoids growing the index as
    /// it fills).
    pub fn with_capacity(cells: usize) -> PageDecoder {
        PageDecoder {
            stack: Vec::new(),
            lex: Lex::Between,
            scratch: Vec::new(),
            real: String::new(),
            high_surrogate: None,
            columns: Vec::new(),
            row_cells: 0,
            cells_hint: cells,
            out: Decoded::default(),
            root_done: false,
            error: (None, None),
        }
    }

    /// Feed the next chunk of the body.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        let mut i = 0;
        while i < data.len() {
            match self.lex {
                Lex::Str { key } => {
                    // Copy the plain run up to the next quote or backslash in one go.
                    let rest = &data[i..];
                    match memchr::memchr2(b'"', b'\\', rest) {
                        None => {
                            self.scratch.extend_from_slice(rest);
                            i = data.len();
                        }
                        Some(p) => {
                            self.scratch.extend_from_slice(&rest[..p]);
                            i += p + 1;
                            if rest[p] == b'"' {
                                self.lex = Lex::Between;
                                self.end_string(key)?;
                            } else {
                                self.lex = Lex::Escape { key };
                            }
                        }
                    }
                }
                Lex::Escape { key } => {
                    let c = data[i];
                    i += 1;
                    let decoded = match c {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(8),
                        b'f' => Some(12),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'u' => None,
                        other => return Err(format!("invalid escape \\{}", other as char)),
                    };
                    match decoded {
                        Some(b) => {
                            self.flush_surrogate();
                            self.scratch.push(b);
                            self.lex = Lex::Str { key };
                        }
                        None => {
                            self.lex = Lex::Unicode {
                                key,
                                digits: 0,
                                value: 0,
                            }
                        }
                    }
                }
                Lex::Unicode { key, digits, value } => {
                    let c = data[i];
                    i += 1;
                    let d = (c as char)
                        .to_digit(16)
                        .ok_or_else(|| format!("invalid \\u escape digit {:?}", c as char))?;
                    let value = value * 16 + d;
                    if digits + 1 < 4 {
                        self.lex = Lex::Unicode {
                            key,
                            digits: digits + 1,
                            value,
                        };
                    } else {
                        self.push_code_unit(value);
                        self.lex = Lex::Str { key };
                    }
                }
                Lex::Scalar => {
                    // Copy up to the delimiter in one go; the delimiter is handled in the
                    // Between state.
                    let rest = &data[i..];
                    let end = rest.iter().position(|&c| {
                        matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                    });
                    match end {
                        None => {
                            self.scratch.extend_from_slice(rest);
                            i = data.len();
                        }
                        Some(p) => {
                            self.scratch.extend_from_slice(&rest[..p]);
                            i += p;
                            self.lex = Lex::Between;
                            self.end_scalar()?;
                        }
                    }
                }
                Lex::Between => {
                    let c = data[i];
                    i += 1;
                    self.between(c)?;
                }
            }
        }
        Ok(())
    }

    /// The body ended: the decoded result, or an error if it was incomplete.
    pub fn finish(mut self) -> Result<Decoded, String> {
        if self.lex == Lex::Scalar && self.stack.is_empty() {
            self.lex = Lex::Between;
            self.end_scalar()?;
        }
        if !self.root_done || !self.stack.is_empty() || self.lex != Lex::Between {
            return Err("the response ended before the JSON was complete".into());
        }
        let statements = self.out.pages.len().max(self.columns.len());
        self.out.pages.resize_with(statements, Page::default);
        for (s, page) in self.out.pages.iter_mut().enumerate() {
            let columns = self.columns.get(s).copied().unwrap_or(0);
            if page.len_cells() == 0 {
                page.set_width(columns);
            } else if columns != 0 && page.width() != columns {
                return Err(format!(
                    "rows have {} cells but there are {columns} columns",
                    page.width()
                ));
            }
        }
        Ok(self.out)
    }

    /// The page of the statement whose result is being read.
    fn page_mut(&mut self) -> &mut Page {
        let s = self.statement();
        if self.out.pages.len() <= s {
            let hint = self.cells_hint;
            self.out.pages.resize_with(s + 1, || {
                let mut p = Page::default();
                p.reserve_cells(hint);
                p
            });
        }
        &mut self.out.pages[s]
    }

    /// Index of the result being read (`result[s]`).
    fn statement(&self) -> usize {
        match self.stack.get(1).and_then(|f| f.seg.as_ref()) {
            Some(Seg::Index(i)) => *i,
            _ => 0,
        }
    }

    fn between(&mut self, c: u8) -> Result<(), String> {
        match c {
            b' ' | b'\n' | b'\r' | b'\t' => return Ok(()),
            _ if self.root_done => return Err("data after the end of the JSON value".into()),
            _ => {}
        }
        let expect = self.stack.last().map(|f| f.expect).unwrap_or(Expect::Value);
        match (expect, c) {
            (Expect::KeyOrEnd, b'"') => {
                self.scratch.clear();
                self.lex = Lex::Str { key: true };
            }
            (Expect::KeyOrEnd, b'}') => self.close(Kind::Object)?,
            (Expect::Colon, b':') => self.set_expect(Expect::Value),
            (Expect::Value, b']') if self.in_empty_array() => self.close(Kind::Array)?,
            (Expect::Value, _) => self.start_value(c)?,
            (Expect::CommaOrEnd, b',') => {
                let frame = self.stack.last_mut().ok_or("unexpected ','")?;
                frame.count += 1;
                match frame.kind {
                    Kind::Object => frame.expect = Expect::KeyOrEnd,
                    Kind::Array => {
                        frame.expect = Expect::Value;
                        frame.seg = Some(Seg::Index(frame.count));
                    }
                }
            }
            (Expect::CommaOrEnd, b'}') => self.close(Kind::Object)?,
            (Expect::CommaOrEnd, b']') => self.close(Kind::Array)?,
            (e, c) => return Err(format!("unexpected {:?} (expected {e:?})", c as char)),
        }
        Ok(())
    }

    fn in_empty_array(&self) -> bool {
        self.stack
            .last()
            .is_some_and(|f| f.kind == Kind::Array && f.count == 0)
    }

    fn set_expect(&mut self, e: Expect) {
        if let Some(f) = self.stack.last_mut() {
            f.expect = e;
        }
    }

    fn start_value(&mut self, c: u8) -> Result<(), String> {
        match c {
            b'{' | b'[' => {
                let kind = if c == b'{' { Kind::Object } else { Kind::Array };
                if (kind == Kind::Object && self.path_is(&[P::RowsArray, P::Rows]))
                    || self.path_is(&[P::Cell])
                {
                    return Err("`rows` must be an array of arrays of strings".into());
                }
                let role = if kind != Kind::Array {
                    Role::Other
                } else if self.path_is(&[P::Rows]) {
                    self.row_cells = 0;
                    self.page_mut();
                    Role::Row
                } else if self.path_is(&[P::RowsArray]) {
                    Role::RowList
                } else {
                    Role::Other
                };
                self.stack.push(Frame {
                    role,
                    kind,
                    expect: if kind == Kind::Object {
                        Expect::KeyOrEnd
                    } else {
                        Expect::Value
                    },
                    seg: if kind == Kind::Array {
                        Some(Seg::Index(0))
                    } else {
                        None
                    },
                    count: 0,
                });
            }
            b'"' => {
                self.scratch.clear();
                self.lex = Lex::Str { key: false };
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                self.scratch.clear();
                self.scratch.push(c);
                self.lex = Lex::Scalar;
            }
            other => return Err(format!("unexpected {:?}", other as char)),
        }
        Ok(())
    }

    /// A complete value was read in the current container.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(f) => f.expect = Expect::CommaOrEnd,
            None => self.root_done = true,
        }
    }

    fn close(&mut self, kind: Kind) -> Result<(), String> {
        let frame = self.stack.pop().ok_or("unbalanced bracket")?;
        if frame.kind != kind {
            return Err("mismatched brackets".into());
        }
        if kind == Kind::Array && self.path_is(&[P::Rows]) {
            // A row ended: all rows must have the same number of cells.
            self.check_row_width()?;
        }
        if kind == Kind::Object && self.path_is(&[P::ErrorsItem]) {
            let (code, message) = std::mem::take(&mut self.error);
            self.out.errors.push((code, message.unwrap_or_default()));
        }
        self.value_done();
        Ok(())
    }

    fn check_row_width(&mut self) -> Result<(), String> {
        if self.row_cells == 0 {
            return Err("a row has no cells".into());
        }
        let row_cells = self.row_cells;
        let page = self.page_mut();
        let w = page.width();
        if w == 0 && page.len_cells() == row_cells {
            page.set_width(row_cells);
        } else if row_cells != w {
            return Err(format!("a row has {} cells, others {w}", self.row_cells));
        }
        Ok(())
    }

    fn end_string(&mut self, key: bool) -> Result<(), String> {
        self.flush_surrogate();
        let s = std::str::from_utf8(&self.scratch).map_err(|e| format!("invalid UTF-8: {e}"))?;
        if key {
            let frame = self.stack.last_mut().ok_or("key outside an object")?;
            frame.seg = Some(Seg::Key(s.to_string()));
            frame.expect = Expect::Colon;
            return Ok(());
        }
        if self.at(P::Cell) {
            // The page exists: it was made when the row opened.
            let st = self.statement();
            if let Some(page) = self.out.pages.get_mut(st) {
                // Classified here, while the cell is hot: a page of plain literals is
                // written by the dump without looking at its cells again.
                page.push_cell(s, crate::sqltext::cell::is_plain(s));
            }
            self.row_cells += 1;
        } else if self.path_is(&[P::Column]) {
            let s = self.statement();
            if self.columns.len() <= s {
                self.columns.resize(s + 1, 0);
            }
            self.columns[s] += 1;
        } else if self.path_is(&[P::ErrorMessage]) {
            self.error.1 = Some(s.to_string());
        } else if self.path_is(&[P::Success]) {
            return Err("`success` is not a boolean".into());
        } else if self.path_is(&[P::Rows, P::RowsArray]) {
            return Err("a row is not an array of strings".into());
        }
        self.value_done();
        Ok(())
    }

    fn end_scalar(&mut self) -> Result<(), String> {
        let text = std::str::from_utf8(&self.scratch).map_err(|e| e.to_string())?;
        let keyword = matches!(text, "true" | "false" | "null");
        // Parsed once: validity, and the value where it is used.
        let number = if keyword {
            None
        } else {
            Some(
                text.parse::<f64>()
                    .map_err(|_| format!("invalid literal {text:?}"))?,
            )
        };
        if self.at(P::Cell) {
            // A REAL, selected as a value: JavaScript's shortest round-trip text of the
            // double, which parses back to exactly that double.
            let real = number
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("expected an SQL literal string or a REAL, got {text}"))?;
            let mut literal = std::mem::take(&mut self.real);
            literal.clear();
            crate::sqltext::literal::push_real_literal(&mut literal, real);
            // Every form `push_real_literal` writes is a plain literal.
            self.page_mut().push_cell(&literal, true);
            self.real = literal;
            self.row_cells += 1;
        } else if self.path_is(&[P::Success]) {
            self.out.success = Some(text == "true");
        } else if self.path_is(&[P::ErrorCode]) {
            self.error.0 = number.map(|f| f as i64);
        } else if self.path_is(&[P::RowsRead]) {
            let n = number.filter(|f| f.is_finite() && *f >= 0.0);
            self.out.rows_read = self.out.rows_read.saturating_add(n.map_or(0, |f| f as u64));
        } else if self.path_is(&[P::Rows, P::RowsArray]) {
            return Err(format!("a row is not an array of strings: {text}"));
        }
        self.value_done();
        Ok(())
    }

    /// Append a UTF-16 code unit from `\uXXXX`, pairing surrogates.
    fn push_code_unit(&mut self, unit: u32) {
        match (self.high_surrogate.take(), unit) {
            (Some(hi), 0xDC00..=0xDFFF) => {
                let c = 0x10000 + ((hi - 0xD800) << 10) + (unit - 0xDC00);
                self.push_char(char::from_u32(c).unwrap_or('\u{FFFD}'));
            }
            (prev, 0xD800..=0xDBFF) => {
                if prev.is_some() {
                    self.push_char('\u{FFFD}');
                }
                self.high_surrogate = Some(unit);
            }
            (prev, u) => {
                if prev.is_some() {
                    self.push_char('\u{FFFD}');
                }
                self.push_char(char::from_u32(u).unwrap_or('\u{FFFD}'));
            }
        }
    }

    fn flush_surrogate(&mut self) {
        if self.high_surrogate.take().is_some() {
            self.push_char('\u{FFFD}');
        }
    }

    fn push_char(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.scratch
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }

    /// Does the current value sit at one of the interesting places?
    fn path_is(&self, places: &[P]) -> bool {
        places.iter().any(|&p| self.at(p))
    }

    fn at(&self, p: P) -> bool {
        let top = self.stack.last().map(|f| f.role);
        match p {
            P::Cell => top == Some(Role::Row),
            P::Rows => top == Some(Role::RowList),
            _ => p.matches(&self.stack),
        }
    }
}

/// Places in the response we care about.
#[derive(Debug, Clone, Copy)]
enum P {
    Success,
    ErrorsItem,
    ErrorCode,
    ErrorMessage,
    Column,
    /// The value of `rows` itself.
    RowsArray,
    /// An element of the `rows` array (a row).
    Rows,
    /// An element of a row (a cell).
    Cell,
    /// `result[s].meta.rows_read`.
    RowsRead,
}

impl P {
    fn matches(self, stack: &[Frame]) -> bool {
        let seg = |i: usize| stack.get(i).and_then(|f| f.seg.as_ref());
        let key = |i: usize, k: &str| matches!(seg(i), Some(Seg::Key(x)) if x == k);
        let index = |i: usize| matches!(seg(i), Some(Seg::Index(_)));
        // `result[s].results`, for any statement `s`.
        let in_result = || key(0, "result") && index(1) && key(2, "results");
        let n = stack.len();
        match self {
            P::Success => n == 1 && key(0, "success"),
            P::ErrorsItem => n == 2 && key(0, "errors"),
            P::ErrorCode => n == 3 && key(0, "errors") && key(2, "code"),
            P::ErrorMessage => n == 3 && key(0, "errors") && key(2, "message"),
            P::Column => n == 5 && in_result() && key(3, "columns"),
            P::RowsArray => n == 4 && in_result() && key(3, "rows"),
            P::Rows => n == 5 && in_result() && key(3, "rows") && index(4),
            P::Cell => n == 6 && in_result() && key(3, "rows") && index(4) && index(5),
            P::RowsRead => {
                n == 4 && key(0, "result") && index(1) && key(2, "meta") && key(3, "rows_read")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_chunks(body: &[u8], chunk: usize) -> Result<Decoded, String> {
        let mut d = PageDecoder::new();
        for c in body.chunks(chunk.max(1)) {
            d.feed(c)?;
        }
        d.finish()
    }

    const BODY: &str = r#"{"result":[{"results":{"columns":["quote(k)","c0"],"rows":[["1","'a\"b\\n\u00e9\ud83d\ude00'"],["2","X'00'"],["3","NULL"]]},"success":true,"meta":{"duration":0.1,"rows_read":3}}],"errors":[],"messages":[],"success":true}"#;

    #[test]
    fn decodes_cells_at_every_chunk_split() {
        let whole = decode_in_chunks(BODY.as_bytes(), BODY.len()).unwrap();
        assert_eq!(whole.success, Some(true));
        assert_eq!(whole.pages.len(), 1);
        let page = &whole.pages[0];
        assert_eq!(page.width(), 2);
        assert_eq!(page.len(), 3);
        assert_eq!(page.row(0), vec!["1", "'a\"b\\né😀'"]);
        assert_eq!(page.row(2), vec!["3", "NULL"]);
        assert_eq!(whole.rows_read, 3);
        for chunk in 1..40 {
            assert_eq!(
                decode_in_chunks(BODY.as_bytes(), chunk).unwrap(),
                whole,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn agrees_with_serde_json() {
        let rows: Vec<Vec<String>> = (0..200)
            .map(|i| vec![i.to_string(), format!("'{}\u{1}\t\"\\'", "x".repeat(i % 7))])
            .collect();
        let body = serde_json::json!({"result":[{"results":{"columns":["a","b"],"rows":rows},"success":true}],"success":true,"errors":[],"messages":[]}).to_string();
        let d = decode_in_chunks(body.as_bytes(), 7).unwrap();
        let p: Page =
            serde_json::from_value(serde_json::json!({"columns":["a","b"],"rows":rows})).unwrap();
        assert_eq!(d.pages, vec![p]);
    }

    /// Several statements in one request: one page each, whatever their widths.
    #[test]
    fn one_page_per_statement() {
        let body = r#"{"result":[{"results":{"columns":["k","a"],"rows":[["1","'x'"],["2","NULL"]]},"success":true},{"results":{"columns":["k","b","c"],"rows":[["1","X'00'","3"],["2","4","5"]]},"success":true},{"results":{"columns":["k"],"rows":[]},"success":true}],"success":true,"errors":[],"messages":[]}"#;
        for chunk in 1..30 {
            let d = decode_in_chunks(body.as_bytes(), chunk).unwrap();
            assert_eq!(d.pages.len(), 3);
            assert_eq!(d.pages[0].row(1), vec!["2", "NULL"]);
            assert_eq!(d.pages[1].row(0), vec!["1", "X'00'", "3"]);
            assert_eq!((d.pages[2].len(), d.pages[2].width()), (0, 1));
        }
    }

    /// REALs arrive as numbers (JavaScript's shortest form) and become exact literals.
    #[test]
    fn numbers_are_reals() {
        let body = r#"{"result":[{"results":{"columns":["a","b"],"rows":[[0.1,"1"],[1e-300,"2"],[-5e-324,"3"],[3,"4"]]},"success":true}],"success":true}"#;
        let d = decode_in_chunks(body.as_bytes(), 4).unwrap();
        let page = &d.pages[0];
        for (r, v) in [0.1, 1e-300, -5e-324, 3.0].into_iter().enumerate() {
            assert_eq!(page.cell(r, 0), crate::sqltext::literal::real_literal(v));
        }
    }

    /// The decoder tells the dump which pages hold only literals written as they are.
    #[test]
    fn plain_pages_are_marked() {
        let page = |rows: &str| {
            let body = format!(
                r#"{{"result":[{{"results":{{"columns":["a","b"],"rows":{rows}}},"success":true}}],"success":true}}"#
            );
            decode_in_chunks(body.as_bytes(), 5)
                .unwrap()
                .pages
                .remove(0)
        };
        assert!(page(r#"[["1","'x'"],[2.5,"X'00'"],["NULL","'it''s'"]]"#).all_plain());
        for rows in [
            r#"[["1","'a\nb'"]]"#,
            r#"[["1","Inf"]]"#,
            r#"[["1","~Ltext:300000"]]"#,
            r#"[["1","1); DROP TABLE t; --"]]"#,
        ] {
            assert!(!page(rows).all_plain(), "{rows}");
        }
    }

    #[test]
    fn envelope_failures_and_errors() {
        let body = r#"{"result":null,"success":false,"errors":[{"code":7500,"message":"D1 DB reset because its code was updated."}],"messages":[]}"#;
        let d = decode_in_chunks(body.as_bytes(), 3).unwrap();
        assert_eq!(d.success, Some(false));
        assert_eq!(
            d.errors,
            vec![(
                Some(7500),
                "D1 DB reset because its code was updated.".to_string()
            )]
        );
    }

    #[test]
    fn empty_results_keep_the_width() {
        let body = r#"{"result":[{"results":{"columns":["a","b","c"],"rows":[]},"success":true}],"success":true}"#;
        let d = decode_in_chunks(body.as_bytes(), 5).unwrap();
        assert_eq!((d.pages[0].len(), d.pages[0].width()), (0, 3));
    }

    #[test]
    fn refuses_malformed_rows() {
        for rows in [
            r#"[[],["'a'"]]"#,
            r#"[null,["'a'"],7]"#,
            r#"[["'y'"],{"k":"'v'"}]"#,
            r#"{"0":["'a'"]}"#,
            r#"[["'a'",["'b'"]]]"#,
            r#"[["'a'",{"x":"'b'"}]]"#,
            r#""'a'""#,
        ] {
            let body = format!(
                r#"{{"success":true,"errors":[],"messages":[],"result":[{{"results":{{"columns":["c"],"rows":{rows}}},"success":true}}]}}"#
            );
            assert!(
                decode_in_chunks(body.as_bytes(), 7).is_err(),
                "accepted rows {rows}"
            );
        }
    }

    #[test]
    fn rejects_broken_bodies() {
        let truncated = &BODY[..BODY.len() / 2];
        assert!(decode_in_chunks(truncated.as_bytes(), 4).is_err());
        for bad in [
            "upstream connect error",
            "<html>502</html>",
            r#"{"result":[{"results":{"columns":["a"],"rows":[[true]]}}],"success":true}"#,
            r#"{"result":[{"results":{"columns":["a"],"rows":[[null]]}}],"success":true}"#,
            r#"{"result":[{"results":{"columns":["a"],"rows":[[1e999]]}}],"success":true}"#,
            r#"{"result":[{"results":{"columns":["a","b"],"rows":[["1","2"],["3"]]}}],"success":true}"#,
            r#"{"success":true} x"#,
            r#"{"a":tru}"#,
        ] {
            assert!(decode_in_chunks(bad.as_bytes(), 3).is_err(), "{bad}");
        }
    }
}
