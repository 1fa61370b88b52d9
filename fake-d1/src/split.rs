//! Splitting SQL text into statements the way SQLite itself sees them. A small lexer finds the
//! semicolons that are outside string literals, quoted identifiers and comments; SQLite's own
//! completeness rule (`sqlite3_complete`) then decides whether the text so far is a whole
//! statement (it is not inside a `CREATE TRIGGER … BEGIN … END`, for instance).

use std::ffi::CString;

/// Where the lexer is: enough to know whether a `;` ends a statement candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Lex {
    #[default]
    Normal,
    Minus,
    LineComment,
    Slash,
    Block,
    BlockStar,
    Quote(u8),
    Bracket,
}

/// A resumable lexer: feed bytes one at a time; `true` means a top-level `;`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lexer {
    state: Lex,
}

impl Lexer {
    pub fn step(&mut self, b: u8) -> bool {
        match self.state {
            Lex::Minus => {
                if b == b'-' {
                    self.state = Lex::LineComment;
                    return false;
                }
                self.state = Lex::Normal;
                self.normal(b)
            }
            Lex::Slash => {
                if b == b'*' {
                    self.state = Lex::Block;
                    return false;
                }
                self.state = Lex::Normal;
                self.normal(b)
            }
            Lex::Normal => self.normal(b),
            Lex::LineComment => {
                if b == b'\n' {
                    self.state = Lex::Normal;
                }
                false
            }
            Lex::Block => {
                if b == b'*' {
                    self.state = Lex::BlockStar;
                }
                false
            }
            Lex::BlockStar => {
                self.state = match b {
                    b'/' => Lex::Normal,
                    b'*' => Lex::BlockStar,
                    _ => Lex::Block,
                };
                false
            }
            Lex::Quote(q) => {
                if b == q {
                    self.state = Lex::Normal;
                }
                false
            }
            Lex::Bracket => {
                if b == b']' {
                    self.state = Lex::Normal;
                }
                false
            }
        }
    }

    fn normal(&mut self, b: u8) -> bool {
        match b {
            b';' => return true,
            b'-' => self.state = Lex::Minus,
            b'/' => self.state = Lex::Slash,
            b'\'' | b'"' | b'`' => self.state = Lex::Quote(b),
            b'[' => self.state = Lex::Bracket,
            _ => {}
        }
        false
    }
}

/// SQLite's `sqlite3_complete` on raw bytes. Text with a NUL byte cannot be handed to it; SQLite
/// would stop reading at the NUL anyway, so such text counts as complete.
pub fn is_complete(sql: &[u8]) -> bool {
    match CString::new(sql) {
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        Ok(c) => unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) != 0 },
        Err(_) => true,
    }
}

/// The statements of `sql`, each ending with its `;` (the last one may lack it). Text after the
/// last statement that holds only whitespace or comments is returned too; preparing it yields
/// no statement, which callers skip.
pub fn split_sql(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut lexer = Lexer::default();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if lexer.step(b) && is_complete(&bytes[start..=i]) {
            out.push(&sql[start..=i]);
            start = i + 1;
            lexer = Lexer::default();
        }
    }
    if start < bytes.len() && !sql[start..].trim().is_empty() {
        out.push(&sql[start..]);
    }
    out
}

/// Splits a stream of bytes (an import file) into statements as they complete.
#[derive(Debug, Default)]
pub struct StreamSplitter {
    lexer: Lexer,
    current: Vec<u8>,
}

impl StreamSplitter {
    /// Feeds a chunk; every statement completed by it is passed to `emit`.
    pub fn push<E>(
        &mut self,
        chunk: &[u8],
        mut emit: impl FnMut(Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        for &b in chunk {
            self.current.push(b);
            if self.lexer.step(b) && is_complete(&self.current) {
                emit(std::mem::take(&mut self.current))?;
                self.lexer = Lexer::default();
            }
        }
        Ok(())
    }

    /// What is left after the last complete statement, unless it is only whitespace.
    pub fn finish(self) -> Option<Vec<u8>> {
        if self.current.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(self.current)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_top_level_semicolons() {
        let sql = "SELECT 1; SELECT ';' -- ;\n, \"a;b\", [c;d], `e;f` /* ; */;SELECT 3";
        assert_eq!(
            split_sql(sql),
            vec![
                "SELECT 1;",
                " SELECT ';' -- ;\n, \"a;b\", [c;d], `e;f` /* ; */;",
                "SELECT 3"
            ]
        );
    }

    #[test]
    fn keeps_trigger_bodies_whole() {
        let sql = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO u VALUES(1); UPDATE u SET a=2; END; SELECT 1;";
        let parts = split_sql(sql);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].ends_with("END;"));
    }

    #[test]
    fn stream_splitter_handles_chunk_boundaries() {
        let sql = b"INSERT INTO t VALUES('a;b');\n-- c;\nINSERT INTO t VALUES(2);\n";
        let mut s = StreamSplitter::default();
        let mut got = Vec::new();
        for chunk in sql.chunks(3) {
            s.push::<()>(chunk, |stmt| {
                got.push(String::from_utf8(stmt).unwrap_or_default());
                Ok(())
            })
            .unwrap_or(());
        }
        assert_eq!(s.finish(), None);
        assert_eq!(
            got,
            vec![
                "INSERT INTO t VALUES('a;b');",
                "\n-- c;\nINSERT INTO t VALUES(2);"
            ]
        );
    }
}
