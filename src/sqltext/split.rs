//! Splitting a stream of SQL text into statements, exactly where SQLite's `sqlite3_complete()`
//! puts the boundaries, in one linear pass and bounded memory.
//!
//! Restores and verification read SQL from a stored backup, which is hostile input: a line may
//! be a gigabyte long, a statement may hold a million `;` inside a literal or a trigger body,
//! and one line may hold several statements (`SELECT 1; COMMIT; ATTACH …`). [`Splitter`] is
//! fed bytes in chunks of any size and hands out one statement at a time:
//!
//! * the boundaries are `sqlite3_complete()`'s: the same token-level state machine (SQLite's
//!   `complete.c`, which knows that `CREATE TRIGGER … BEGIN …; …; END;` is one statement) over
//!   the same lexical rules (`'…'`, `"…"`, `` `…` ``, `[…]`, `-- …`, `/* … */`);
//! * every byte is examined a constant number of times, whatever the input: nothing is
//!   rescanned, and SQLite is never asked;
//! * only the statement being built is kept, and once it outgrows its limit (plus
//!   [`COMMENT_ALLOWANCE`] for leading comments) feeding fails at once with
//!   [`SplitError::TooLong`];
//! * it works on bytes: literals may hold anything (NUL, invalid UTF-8); validating the text
//!   is the caller's business.

/// How many bytes of leading whitespace and comments a statement may carry beyond its limit.
pub const COMMENT_ALLOWANCE: usize = 64 * 1024;

/// A statement buffer that grew past this is freed once its statement is handed out.
const RETAINED_CAPACITY: usize = 4 << 20;

/// Why splitting stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The statement being built outgrew `limit` (plus [`COMMENT_ALLOWANCE`]) before it ended.
    #[error(
        "the statement starting on line {start_line} is longer than {limit} bytes (plus {COMMENT_ALLOWANCE} bytes of leading comments) and has not ended: a statement too long, or an unbalanced quote or comment (a corrupted or truncated dump?)"
    )]
    TooLong { start_line: u64, limit: usize },
    /// The splitter was fed again after an error (its own or the callback's).
    #[error("the SQL statement splitter was used again after an error")]
    AfterError,
}

// The states of SQLite's `complete.c`. Its NOTHING state (nothing but whitespace seen yet) is
// START here: whitespace never changes the state, and the two states differ in nothing else.
const START: u8 = 0;
const NORMAL: u8 = 1;
const EXPLAIN: u8 = 2;
const CREATE: u8 = 3;
const TRIGGER: u8 = 4;
const SEMI: u8 = 5;
const END: u8 = 6;

// Its tokens. Whitespace and comments are left out: they never change the state.
const T_SEMI: usize = 0;
const T_OTHER: usize = 1;
const T_EXPLAIN: usize = 2;
const T_CREATE: usize = 3;
const T_TEMP: usize = 4;
const T_TRIGGER: usize = 5;
const T_END: usize = 6;

/// `complete.c`'s transition table, `TRANS[state][token]`.
const TRANS: [[u8; 7]; 7] = [
    //             SEMI     OTHER    EXPLAIN  CREATE   TEMP     TRIGGER  END
    /* START   */
    [START, NORMAL, EXPLAIN, CREATE, NORMAL, NORMAL, NORMAL],
    /* NORMAL  */ [START, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL],
    /* EXPLAIN */ [START, EXPLAIN, NORMAL, CREATE, NORMAL, NORMAL, NORMAL],
    /* CREATE  */ [START, NORMAL, NORMAL, NORMAL, CREATE, TRIGGER, NORMAL],
    /* TRIGGER */ [SEMI, TRIGGER, TRIGGER, TRIGGER, TRIGGER, TRIGGER, TRIGGER],
    /* SEMI    */ [SEMI, TRIGGER, TRIGGER, TRIGGER, TRIGGER, TRIGGER, END],
    /* END     */ [START, TRIGGER, TRIGGER, TRIGGER, TRIGGER, TRIGGER, TRIGGER],
];

/// The longest keyword the state machine knows (`TEMPORARY`).
const KEYWORD_MAX: usize = 9;

/// Where the lexer is between two bytes (the token-level state is [`Splitter::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between tokens.
    Between,
    /// In a word: keyword, identifier or number (see [`Splitter::word`]).
    Word,
    /// After a `-` that may begin a `--` comment.
    Dash,
    /// After a `/` that may begin a `/*` comment.
    Slash,
    /// In a `--` comment.
    LineComment,
    /// In a `/* */` comment.
    BlockComment,
    /// In a `/* */` comment, just after a `*`.
    BlockStar,
    /// In `'…'`, `"…"`, `` `…` `` or `[…]`; the byte that closes it. A doubled quote closes
    /// the token and opens the next one, as in `complete.c` (the state is the same).
    Quoted(u8),
}

/// SQLite's whitespace (`complete.c`): not vertical tab, which is an "other" token.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

/// SQLite's `IdChar`: ASCII letters and digits, `_`, `$`, and every byte from 0x80.
fn is_id(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn newlines(s: &[u8]) -> u64 {
    s.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Splits SQL fed in chunks into statements, as `sqlite3_complete()` would.
///
/// After any error (its own or the callback's) it must not be used again: further calls fail.
#[derive(Debug)]
pub struct Splitter {
    /// The caller's statement limit (reported in errors).
    limit: usize,
    /// The limit plus [`COMMENT_ALLOWANCE`]: the statement's bytes never exceed it.
    cap: usize,
    /// The current statement's bytes from earlier chunks.
    buf: Vec<u8>,
    /// `complete.c`'s state.
    state: u8,
    lex: Lex,
    /// The current word's first bytes, lower-cased, and its length.
    word: [u8; KEYWORD_MAX],
    word_len: usize,
    /// The 1-based line of the next byte.
    line: u64,
    /// The line of the current statement's first token (not whitespace or a comment).
    token_line: Option<u64>,
    /// The line of its first byte that is not whitespace (a comment, perhaps).
    lead_line: Option<u64>,
    failed: Option<SplitError>,
}

impl Splitter {
    /// A splitter that refuses statements longer than `max_statement_bytes` plus
    /// [`COMMENT_ALLOWANCE`] bytes of leading whitespace and comments.
    pub fn new(max_statement_bytes: usize) -> Splitter {
        Splitter {
            limit: max_statement_bytes,
            cap: max_statement_bytes.saturating_add(COMMENT_ALLOWANCE),
            buf: Vec::new(),
            state: START,
            lex: Lex::Between,
            word: [0; KEYWORD_MAX],
            word_len: 0,
            line: 1,
            token_line: None,
            lead_line: None,
            failed: None,
        }
    }

    /// Feed the next bytes. For every statement completed inside `data`, call
    /// `f(statement, start_line)` with exactly one statement: its bytes from the first one after
    /// the previous statement's end (leading whitespace and comments included) up to and
    /// including its terminating `;`. `start_line` is the 1-based line of its first token.
    ///
    /// Fails at once (while feeding) with [`SplitError::TooLong`] when the statement being
    /// built outgrows its limit, and with the callback's own error when it fails.
    pub fn feed<E: From<SplitError>>(
        &mut self,
        data: &[u8],
        mut f: impl FnMut(&[u8], u64) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into());
        }
        // The current statement's bytes in `data` begin at `start`; reaching `stop` makes it
        // too long (the statement's earlier bytes are in `buf`, which never exceeds `cap`).
        let mut start = 0;
        let mut stop = self.cap - self.buf.len();
        let mut i = 0;
        while i < data.len() {
            if i >= stop {
                let e = SplitError::TooLong {
                    start_line: self.start_line(),
                    limit: self.limit,
                };
                self.failed = Some(e.clone());
                return Err(e.into());
            }
            let end = stop.min(data.len());
            i = match self.lex {
                Lex::Between => {
                    let b = data[i];
                    i += 1;
                    if self.between(b) {
                        self.emit(&data[start..i], &mut f)?;
                        start = i;
                        stop = start.saturating_add(self.cap);
                    }
                    i
                }
                Lex::Word => self.scan_word(data, i, end),
                Lex::Dash | Lex::Slash => self.dash_or_slash(data[i], i),
                Lex::LineComment => self.line_comment(&data[i..end], i),
                Lex::BlockComment => self.block_comment(&data[i..end], i),
                Lex::BlockStar => self.block_star(data[i], i),
                Lex::Quoted(close) => self.quoted(&data[i..end], i, close),
            };
        }
        self.buf.extend_from_slice(&data[start..]);
        Ok(())
    }

    /// Hands the statement that ends with `tail` (its earlier bytes are in `buf`) to `f` and
    /// starts the next one.
    fn emit<E>(
        &mut self,
        tail: &[u8],
        f: &mut impl FnMut(&[u8], u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let line = self.start_line();
        let result = if self.buf.is_empty() {
            f(tail, line)
        } else {
            self.buf.extend_from_slice(tail);
            let r = f(&self.buf, line);
            self.buf.clear();
            if self.buf.capacity() > RETAINED_CAPACITY {
                self.buf = Vec::new();
            }
            r
        };
        if let Err(e) = result {
            self.failed = Some(SplitError::AfterError);
            return Err(e);
        }
        self.token_line = None;
        self.lead_line = None;
        Ok(())
    }

    /// One byte between tokens; true when it is the `;` that completes a statement.
    fn between(&mut self, b: u8) -> bool {
        if is_space(b) {
            if b == b'\n' {
                self.line += 1;
            }
            return false;
        }
        self.lead_line.get_or_insert(self.line);
        match b {
            b'-' => self.lex = Lex::Dash,
            b'/' => self.lex = Lex::Slash,
            _ => {
                self.token_line.get_or_insert(self.line);
                match b {
                    b';' => return self.token(T_SEMI),
                    b'\'' | b'"' | b'`' => self.lex = Lex::Quoted(b),
                    b'[' => self.lex = Lex::Quoted(b']'),
                    _ if is_id(b) => {
                        self.lex = Lex::Word;
                        self.word[0] = b.to_ascii_lowercase();
                        self.word_len = 1;
                    }
                    _ => {
                        self.token(T_OTHER);
                    }
                }
            }
        }
        false
    }

    /// Continues a word in `data[i..end]`; returns where scanning goes on.
    fn scan_word(&mut self, data: &[u8], mut i: usize, end: usize) -> usize {
        while i < end && is_id(data[i]) {
            if self.word_len < KEYWORD_MAX {
                self.word[self.word_len] = data[i].to_ascii_lowercase();
            }
            self.word_len = self.word_len.saturating_add(1);
            i += 1;
        }
        if i < end {
            // `data[i]` ends the word; it is read again between tokens.
            self.end_word();
        }
        i
    }

    /// The byte `b` at `i` after a `-` or `/`: a comment opens, or that was an operator.
    fn dash_or_slash(&mut self, b: u8, i: usize) -> usize {
        match (self.lex, b) {
            (Lex::Dash, b'-') => {
                self.lex = Lex::LineComment;
                i + 1
            }
            (Lex::Slash, b'*') => {
                self.lex = Lex::BlockComment;
                i + 1
            }
            _ => {
                // An operator; `b` is read again between tokens.
                self.token_line.get_or_insert(self.line);
                self.token(T_OTHER);
                self.lex = Lex::Between;
                i
            }
        }
    }

    /// Inside a `--` comment: `span` starts at `i`.
    fn line_comment(&mut self, span: &[u8], i: usize) -> usize {
        match span.iter().position(|&b| b == b'\n') {
            Some(p) => {
                self.line += 1;
                self.lex = Lex::Between;
                i + p + 1
            }
            None => i + span.len(),
        }
    }

    /// Inside a `/* */` comment: `span` starts at `i`.
    fn block_comment(&mut self, span: &[u8], i: usize) -> usize {
        match span.iter().position(|&b| b == b'*') {
            Some(p) => {
                self.line += newlines(&span[..p]);
                self.lex = Lex::BlockStar;
                i + p + 1
            }
            None => {
                self.line += newlines(span);
                i + span.len()
            }
        }
    }

    /// The byte `b` at `i` after a `*` inside a block comment.
    fn block_star(&mut self, b: u8, i: usize) -> usize {
        match b {
            b'/' => self.lex = Lex::Between,
            b'*' => {}
            _ => {
                if b == b'\n' {
                    self.line += 1;
                }
                self.lex = Lex::BlockComment;
            }
        }
        i + 1
    }

    /// Inside a quoted string or identifier closed by `close`: `span` starts at `i`.
    fn quoted(&mut self, span: &[u8], i: usize, close: u8) -> usize {
        match span.iter().position(|&b| b == close) {
            Some(p) => {
                self.line += newlines(&span[..p]);
                self.lex = Lex::Between;
                self.token(T_OTHER);
                i + p + 1
            }
            None => {
                self.line += newlines(span);
                i + span.len()
            }
        }
    }

    /// End of input: `Ok(Some((rest, start_line)))` when text other than whitespace and
    /// comments (an unterminated comment counts as one) remains without a terminating `;`.
    pub fn finish(mut self) -> Result<Option<(Vec<u8>, u64)>, SplitError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let in_literal = match self.lex {
            Lex::Word => {
                self.end_word();
                false
            }
            Lex::Dash | Lex::Slash => {
                self.token_line.get_or_insert(self.line);
                self.token(T_OTHER);
                false
            }
            Lex::Quoted(_) => true,
            Lex::Between | Lex::LineComment | Lex::BlockComment | Lex::BlockStar => false,
        };
        if in_literal || self.state != START {
            let line = self.start_line();
            Ok(Some((self.buf, line)))
        } else {
            Ok(None)
        }
    }

    /// The line the current statement starts on: its first token's, or while it has none,
    /// its first comment's.
    fn start_line(&self) -> u64 {
        self.token_line.or(self.lead_line).unwrap_or(self.line)
    }

    /// Take a token; true when it ended a statement.
    fn token(&mut self, token: usize) -> bool {
        self.state = TRANS[usize::from(self.state)][token];
        token == T_SEMI && self.state == START
    }

    /// The current word has ended: classify it (without allocating) and take it.
    fn end_word(&mut self) {
        let word = &self.word[..self.word_len.min(KEYWORD_MAX)];
        let token = if self.word_len > KEYWORD_MAX {
            T_OTHER
        } else {
            match word {
                b"create" => T_CREATE,
                b"temp" | b"temporary" => T_TEMP,
                b"trigger" => T_TRIGGER,
                b"end" => T_END,
                b"explain" => T_EXPLAIN,
                _ => T_OTHER,
            }
        };
        self.token(token);
        self.lex = Lex::Between;
    }
}

/// `stmt` without its leading whitespace and `--`/`/* */` comments (for classifying a
/// statement). An unterminated `/*` comment runs to the end.
pub fn strip_leading_comments(mut stmt: &[u8]) -> &[u8] {
    loop {
        stmt = stmt.trim_ascii_start();
        if let Some(rest) = stmt.strip_prefix(b"--") {
            stmt = match rest.iter().position(|&b| b == b'\n') {
                Some(p) => &rest[p + 1..],
                None => &[],
            };
        } else if let Some(rest) = stmt.strip_prefix(b"/*") {
            stmt = match rest.windows(2).position(|w| w == b"*/") {
                Some(p) => &rest[p + 2..],
                None => &[],
            };
        } else {
            return stmt;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use std::ffi::CString;
    use std::time::{Duration, Instant};

    /// Statements with their start lines, and the rest.
    type Split = (Vec<(Vec<u8>, u64)>, Option<(Vec<u8>, u64)>);

    const BIG: usize = 64 << 20;

    fn split_in(
        input: &[u8],
        max: usize,
        sizes: &mut dyn FnMut() -> usize,
    ) -> Result<Split, SplitError> {
        let mut s = Splitter::new(max);
        let mut out = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = sizes().clamp(1, rest.len());
            s.feed(&rest[..n], |stmt, line| {
                out.push((stmt.to_vec(), line));
                Ok::<(), SplitError>(())
            })?;
            rest = &rest[n..];
        }
        Ok((out, s.finish()?))
    }

    fn split(input: &[u8]) -> Split {
        split_in(input, BIG, &mut || usize::MAX).unwrap()
    }

    /// The same input whole, a byte at a time, and in a few chunk sizes: identical results.
    fn split_every_way(input: &[u8]) -> Split {
        let whole = split(input);
        for size in [1, 2, 3, 7, 64] {
            let got = split_in(input, BIG, &mut || size).unwrap();
            assert_eq!(
                got,
                whole,
                "chunks of {size}: {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(input.len() as u64);
        for _ in 0..4 {
            let got = split_in(input, BIG, &mut || rng.random_range(1..=16)).unwrap();
            assert_eq!(
                got,
                whole,
                "random chunks: {:?}",
                String::from_utf8_lossy(input)
            );
        }
        whole
    }

    fn sqlite_complete(sql: &[u8]) -> bool {
        let c = CString::new(sql).expect("no NUL");
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) != 0 }
    }

    /// The reference: after every `;`, ask SQLite whether the growing prefix is complete.
    /// Returns the statements and whatever is left.
    fn reference(input: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for &b in input {
            buf.push(b);
            if b == b';' && sqlite_complete(&buf) {
                out.push(std::mem::take(&mut buf));
            }
        }
        (out, buf)
    }

    /// Splitter and reference agree, and each start line is that of the first token.
    fn check_against_reference(input: &[u8]) {
        let (stmts, rest) = split_every_way(input);
        let (want, want_rest) = reference(input);
        let got: Vec<Vec<u8>> = stmts.iter().map(|(s, _)| s.clone()).collect();
        assert_eq!(
            got.iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect::<Vec<_>>(),
            want.iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect::<Vec<_>>(),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        let blank = strip_leading_comments(&want_rest).is_empty();
        match &rest {
            Some((r, _)) => assert!(
                !blank && *r == want_rest,
                "rest {:?}",
                String::from_utf8_lossy(input)
            ),
            None => assert!(blank, "rest {:?}", String::from_utf8_lossy(input)),
        }
        let mut offset = 0;
        let mut check_line = |text: &[u8], line: u64| {
            let first_token = offset + text.len() - strip_leading_comments(text).len();
            assert_eq!(
                line,
                1 + newlines(&input[..first_token]),
                "{:?}",
                String::from_utf8_lossy(text)
            );
            offset += text.len();
        };
        for (s, line) in &stmts {
            check_line(s, *line);
        }
        if let Some((r, line)) = &rest {
            check_line(r, *line);
        }
    }

    /// Input, the statements it splits into, and the text left at the end.
    type Case = (&'static str, &'static [&'static str], Option<&'static str>);

    const CASES: &[Case] = &[
        ("SELECT 1;", &["SELECT 1;"], None),
        (
            "SELECT 1;\nSELECT 2;\n",
            &["SELECT 1;", "\nSELECT 2;"],
            None,
        ),
        (
            "SELECT 1; COMMIT; ATTACH 'x' AS y;",
            &["SELECT 1;", " COMMIT;", " ATTACH 'x' AS y;"],
            None,
        ),
        (";;", &[";", ";"], None),
        // Semicolons inside every kind of quote and comment.
        (
            "INSERT INTO t VALUES('a;b', 'it''s; ok');",
            &["INSERT INTO t VALUES('a;b', 'it''s; ok');"],
            None,
        ),
        (
            "INSERT INTO t VALUES('a;\nb');\n",
            &["INSERT INTO t VALUES('a;\nb');"],
            None,
        ),
        (
            "SELECT \"a;b\", \"c\"\";d\" FROM t;",
            &["SELECT \"a;b\", \"c\"\";d\" FROM t;"],
            None,
        ),
        (
            "SELECT `a;b`, `c``;d` FROM t;",
            &["SELECT `a;b`, `c``;d` FROM t;"],
            None,
        ),
        (
            "SELECT [a;b] FROM [t;]];",
            &["SELECT [a;b] FROM [t;]];"],
            None,
        ),
        (
            "SELECT 1 -- not the end;\n;",
            &["SELECT 1 -- not the end;\n;"],
            None,
        ),
        (
            "SELECT /* ; */ 1; SELECT /*/ ; */ 2;",
            &["SELECT /* ; */ 1;", " SELECT /*/ ; */ 2;"],
            None,
        ),
        (
            "SELECT 1-1; SELECT 4/2;",
            &["SELECT 1-1;", " SELECT 4/2;"],
            None,
        ),
        // Leading comments belong to the statement that follows them.
        (
            "-- header; really\n/* block; */\nSELECT 1;",
            &["-- header; really\n/* block; */\nSELECT 1;"],
            None,
        ),
        // Triggers.
        (
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE u SET a = 1;\n  DELETE FROM v;\nEND;\nSELECT 3;\n",
            &[
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE u SET a = 1;\n  DELETE FROM v;\nEND;",
                "\nSELECT 3;",
            ],
            None,
        ),
        (
            "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END; create temporary trigger t2 before delete on t begin select 2; end;",
            &[
                "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;",
                " create temporary trigger t2 before delete on t begin select 2; end;",
            ],
            None,
        ),
        (
            "EXPLAIN CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END; EXPLAIN SELECT 1;",
            &[
                "EXPLAIN CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;",
                " EXPLAIN SELECT 1;",
            ],
            None,
        ),
        // END as a column name in a trigger's body: only `; END ;` ends it.
        (
            "CREATE TRIGGER tr AFTER UPDATE ON t BEGIN UPDATE t SET end = 1 WHERE end > 0; SELECT end FROM t; END;",
            &[
                "CREATE TRIGGER tr AFTER UPDATE ON t BEGIN UPDATE t SET end = 1 WHERE end > 0; SELECT end FROM t; END;",
            ],
            None,
        ),
        (
            "CREATE TRIGGER tr BEGIN SELECT 1; END x; SELECT 2; END;",
            &["CREATE TRIGGER tr BEGIN SELECT 1; END x; SELECT 2; END;"],
            None,
        ),
        (
            "CREATE TRIGGER tr BEGIN SELECT 1; end; SELECT 2;",
            &["CREATE TRIGGER tr BEGIN SELECT 1; end;", " SELECT 2;"],
            None,
        ),
        (
            "CREATE TRIGGER tr BEGIN SELECT 1; END",
            &[],
            Some("CREATE TRIGGER tr BEGIN SELECT 1; END"),
        ),
        // Words that only look like keywords.
        (
            "CREATE TRIGGERS x; SELECT 1;",
            &["CREATE TRIGGERS x;", " SELECT 1;"],
            None,
        ),
        (
            "CREATE TRIGGER$ x; SELECT 1;",
            &["CREATE TRIGGER$ x;", " SELECT 1;"],
            None,
        ),
        (
            "CREATE TRIGGER\u{e9} x; SELECT 1;",
            &["CREATE TRIGGER\u{e9} x;", " SELECT 1;"],
            None,
        ),
        (
            "CREATE 1TRIGGER x; SELECT 1;",
            &["CREATE 1TRIGGER x;", " SELECT 1;"],
            None,
        ),
        (
            "CREATE TEMPORARYX TRIGGER x; SELECT 1;",
            &["CREATE TEMPORARYX TRIGGER x;", " SELECT 1;"],
            None,
        ),
        (
            "EXPLAIN$ CREATE TRIGGER x; SELECT 1;",
            &["EXPLAIN$ CREATE TRIGGER x;", " SELECT 1;"],
            None,
        ),
        (
            "CREATE TEMPORARILY TRIGGER x; SELECT 1;",
            &["CREATE TEMPORARILY TRIGGER x;", " SELECT 1;"],
            None,
        ),
        (
            "CREATE/**/TEMP--\nTRIGGER x BEGIN; END;",
            &["CREATE/**/TEMP--\nTRIGGER x BEGIN; END;"],
            None,
        ),
        // Vertical tab is not whitespace to SQLite.
        ("\x0b;", &["\x0b;"], None),
        ("SELECT 1;\x0b", &["SELECT 1;"], Some("\x0b")),
        // What is left at the end.
        ("SELECT 1; SELECT 2", &["SELECT 1;"], Some(" SELECT 2")),
        ("SELECT 1;\n-- bye;\n", &["SELECT 1;"], None),
        ("SELECT 1; -- bye", &["SELECT 1;"], None),
        ("SELECT 1; /* unterminated;", &["SELECT 1;"], None),
        (
            "SELECT 1; 'unterminated;",
            &["SELECT 1;"],
            Some(" 'unterminated;"),
        ),
        (
            "SELECT 1; [unterminated;",
            &["SELECT 1;"],
            Some(" [unterminated;"),
        ),
        ("SELECT 1; -", &["SELECT 1;"], Some(" -")),
        ("SELECT 1; /", &["SELECT 1;"], Some(" /")),
        ("SELECT 1; x", &["SELECT 1;"], Some(" x")),
        ("", &[], None),
        ("  \n\t", &[], None),
        // CRLF line endings.
        (
            "SELECT 1;\r\nSELECT 2;\r\n",
            &["SELECT 1;", "\r\nSELECT 2;"],
            None,
        ),
    ];

    #[test]
    fn splits_as_sqlite_does() {
        for (input, want, want_rest) in CASES {
            let (stmts, rest) = split_every_way(input.as_bytes());
            let got: Vec<&str> = stmts
                .iter()
                .map(|(s, _)| std::str::from_utf8(s).unwrap())
                .collect();
            assert_eq!(got, *want, "{input:?}");
            let rest = rest.map(|(r, _)| String::from_utf8(r).unwrap());
            assert_eq!(rest.as_deref(), *want_rest, "{input:?}");
            check_against_reference(input.as_bytes());
        }
    }

    #[test]
    fn start_lines() {
        let input = "SELECT 1;\r\nSELECT 2;\r\n\r\n-- comment\n/* a\nb */ SELECT\n3;\nSELECT 'a\nb'; SELECT 4\n";
        let (stmts, rest) = split(input.as_bytes());
        let lines: Vec<u64> = stmts.iter().map(|(_, l)| *l).collect();
        assert_eq!(lines, [1, 2, 6, 8]);
        assert_eq!(rest, Some((b" SELECT 4\n".to_vec(), 9)));
        let (_, rest) = split(b"SELECT 1;\nINSERT INTO t VALUES('x");
        assert_eq!(rest, Some((b"\nINSERT INTO t VALUES('x".to_vec(), 2)));
    }

    #[test]
    fn literals_hold_any_bytes() {
        let input = b"INSERT INTO t VALUES('\0\xff;\xc3', X'00');\n\xe9x; SELECT 1;";
        let (stmts, rest) = split_every_way(input);
        let got: Vec<&[u8]> = stmts.iter().map(|(s, _)| s.as_slice()).collect();
        assert_eq!(
            got,
            [
                &b"INSERT INTO t VALUES('\0\xff;\xc3', X'00');"[..],
                b"\n\xe9x;",
                b" SELECT 1;"
            ]
        );
        assert_eq!(rest, None);
        check_against_reference(
            b"SELECT '\xff;\xfe'; CREATE TRIGGER\xff; SELECT 2; CREATE TRIGGER \xff; SELECT 1;",
        );
    }

    #[test]
    fn strips_leading_comments() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"SELECT 1;", b"SELECT 1;"),
            (b" \r\n\t\x0cSELECT 1;", b"SELECT 1;"),
            (b"-- a\n  /* b */ -- c\nSELECT 1;", b"SELECT 1;"),
            (b"/*/ still */x", b"x"),
            (b"-- no newline", b""),
            (b"/* unterminated", b""),
            (b"\x0b;", b"\x0b;"),
            (b"- -x", b"- -x"),
        ];
        for (input, want) in cases {
            assert_eq!(
                strip_leading_comments(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn callback_errors_stop_the_splitter() {
        let mut s = Splitter::new(1000);
        let mut seen = 0;
        let err = s
            .feed(b"SELECT 1; SELECT 2;", |_, _| {
                seen += 1;
                anyhow::bail!("stop")
            })
            .unwrap_err();
        assert_eq!((seen, err.to_string()), (1, "stop".to_string()));
        let err = s
            .feed(b"SELECT 3;", |_, _| Ok::<(), anyhow::Error>(()))
            .unwrap_err();
        assert_eq!(
            err.downcast_ref::<SplitError>(),
            Some(&SplitError::AfterError)
        );
        assert_eq!(s.finish(), Err(SplitError::AfterError));
    }

    fn chunks(size: usize) -> String {
        if size == usize::MAX {
            "whole".into()
        } else {
            format!("in chunks of {size}")
        }
    }

    fn time_split(input: &[u8], chunk: usize) -> (Duration, Split) {
        let t = Instant::now();
        let out = split_in(input, BIG, &mut || chunk).unwrap();
        (t.elapsed(), out)
    }

    #[test]
    fn linear_time_with_semicolons_in_a_literal() {
        let mut input = b"INSERT INTO t VALUES('".to_vec();
        for _ in 0..200_000 {
            input.extend_from_slice(b";abcdefgh\n");
        }
        input.extend_from_slice(b"');\nSELECT 1;\n");
        assert!(input.len() >= 2_000_000);
        for chunk in [usize::MAX, 4096, 1] {
            let (took, (stmts, rest)) = time_split(&input, chunk);
            eprintln!(
                "{} bytes, 200,000 `;` in a literal, {}: {took:?}",
                input.len(),
                chunks(chunk)
            );
            assert_eq!(stmts.len(), 2);
            assert_eq!(stmts[1].1, 200_002);
            assert_eq!(rest, None);
            assert!(took < Duration::from_secs(2), "{took:?}");
        }
    }

    #[test]
    fn linear_time_with_trigger_fragments() {
        let mut input = b"CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n".to_vec();
        for _ in 0..100_000 {
            input.extend_from_slice(b"CREATE TRIGGER x; END y;\n");
        }
        input.extend_from_slice(b"END;\nSELECT 1;\n");
        assert!(input.len() >= 2_000_000);
        for chunk in [usize::MAX, 4096, 1] {
            let (took, (stmts, rest)) = time_split(&input, chunk);
            eprintln!(
                "{} bytes, 100,000 trigger fragments, {}: {took:?}",
                input.len(),
                chunks(chunk)
            );
            assert_eq!(stmts.len(), 2);
            assert_eq!(rest, None);
            assert!(took < Duration::from_secs(2), "{took:?}");
        }
    }

    #[test]
    fn a_statement_too_long_fails_while_feeding() {
        let max = 100_000;
        let chunk = 64 * 1024;
        let mut input = b"SELECT 1;\n-- the next one never ends\nINSERT INTO t VALUES('".to_vec();
        while input.len() < 10_000_000 {
            input.extend_from_slice(b"abcdefghi\n");
        }
        let mut s = Splitter::new(max);
        let mut stmts = Vec::new();
        let mut fed = 0;
        let mut err = None;
        for piece in input.chunks(chunk) {
            fed += piece.len();
            if let Err(e) = s.feed(piece, |stmt, line| {
                stmts.push((stmt.to_vec(), line));
                Ok::<(), SplitError>(())
            }) {
                err = Some(e);
                break;
            }
            assert!(s.buf.len() <= max + COMMENT_ALLOWANCE);
        }
        assert_eq!(stmts, [(b"SELECT 1;".to_vec(), 1)]);
        let err = err.expect("too long");
        assert_eq!(
            err,
            SplitError::TooLong {
                start_line: 3,
                limit: max
            }
        );
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(fed <= max + COMMENT_ALLOWANCE + chunk, "{fed}");
        assert_eq!(
            s.feed(b";", |_, _| Ok::<(), SplitError>(())),
            Err(err.clone())
        );
        assert_eq!(s.finish(), Err(err));

        // One chunk holding it all fails too, at the same point.
        let mut s = Splitter::new(max);
        assert!(matches!(
            s.feed(&input, |_, _| Ok::<(), SplitError>(())),
            Err(SplitError::TooLong { start_line: 3, .. })
        ));
    }

    #[test]
    fn the_limit_is_exact() {
        let max = 10;
        let cap = max + COMMENT_ALLOWANCE;
        let fits = format!("SELECT 1;\nSELECT '{}';", "a".repeat(cap - 11));
        let over = format!("SELECT 1;\nSELECT '{}';", "a".repeat(cap - 10));
        let statement = &fits["SELECT 1;".len()..];
        assert_eq!(statement.len(), cap);
        for size in [1, 1000, usize::MAX] {
            let (stmts, _) = split_in(fits.as_bytes(), max, &mut || size).unwrap();
            assert_eq!(stmts[1].0, statement.as_bytes());
            assert_eq!(
                split_in(over.as_bytes(), max, &mut || size),
                Err(SplitError::TooLong {
                    start_line: 2,
                    limit: max
                })
            );
        }
        // Only comments so far: the error names the line where they start.
        let comments = format!("SELECT 1;\n\n/*{}", "x".repeat(cap));
        assert_eq!(
            split_in(comments.as_bytes(), max, &mut || 100),
            Err(SplitError::TooLong {
                start_line: 3,
                limit: max
            })
        );
    }

    /// SQL-ish pieces; spaces and `;` are repeated to weigh them, and keywords come with and
    /// without a following space (so that some run into the next word).
    const FRAGMENTS: &[&str] = &[
        ";",
        ";",
        ";",
        ";",
        " ",
        " ",
        " ",
        " ",
        " ",
        " ",
        "\n",
        "\r\n",
        "\t",
        "CREATE",
        "CREATE ",
        "create ",
        "TRIGGER",
        "TRIGGER ",
        "trigger ",
        "BEGIN ",
        "END",
        "END ",
        "end ",
        "eNd;",
        "TEMP ",
        "temp",
        "TEMPORARY ",
        "TEMPORARY",
        "TRIGGER",
        "EXPLAIN ",
        "explain",
        "SELECT ",
        "x",
        "x ",
        "1",
        "$",
        "_",
        "\u{e9}",
        "'",
        "''",
        "\"",
        "`",
        "[",
        "]",
        "--",
        "/*",
        "*/",
        "*",
        "/",
        "-",
        "(",
        ")",
        "\x0b",
    ];

    /// Beginnings that put the state machine into its rarer states.
    const PREFIXES: &[&str] = &[
        "",
        "",
        "CREATE TRIGGER t BEGIN ",
        "create temp trigger t AFTER INSERT ON x BEGIN SELECT 1; ",
        "CREATE TEMPORARY TRIGGER ",
        "EXPLAIN x CREATE TEMP ",
        "EXPLAIN ",
        "CREATE ",
        "SELECT 1; CREATE TRIGGER t BEGIN SELECT 2;",
    ];

    fn sqlish() -> impl Strategy<Value = String> {
        (
            prop::sample::select(PREFIXES),
            prop::collection::vec(prop::sample::select(FRAGMENTS), 0..60),
        )
            .prop_map(|(prefix, parts)| format!("{prefix}{}", parts.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn boundaries_match_sqlite_complete(input in sqlish()) {
            check_against_reference(input.as_bytes());
        }

        #[test]
        fn chunking_does_not_matter(
            input in sqlish(),
            sizes in prop::collection::vec(1usize..20, 1..20),
        ) {
            let mut k = 0;
            let got = split_in(input.as_bytes(), BIG, &mut || { k += 1; sizes[k % sizes.len()] });
            prop_assert_eq!(got, Ok(split(input.as_bytes())));
        }
    }
}
