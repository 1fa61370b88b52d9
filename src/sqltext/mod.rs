//! SQLite text every layer shares: identifier and string quoting (here), the literal grammar
//! every dumped cell must match ([`cell`]), exact REAL literals
//! ([`literal`]), and the linear-time statement splitter ([`split`]) — used alike by the dump
//! writer, verification and restore.

pub mod cell;
pub(crate) mod literal;
pub(crate) mod split;
pub mod statement;

/// D1's maximum statement length in bytes.
pub const MAX_STATEMENT_BYTES: usize = 100_000;

/// Quote an identifier: `"` + name with `"` doubled + `"`.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quote a string as a SQL text literal (no newline rewriting).
pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
