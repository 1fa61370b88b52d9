//! The grammar a cell must match before it goes into a dump: one SQLite literal, nothing else.
//!
//! Cells arrive from the source as SQL text (`quote()` output, or the exact REAL form of
//! [`super::literal::push_real_literal`]) and are written into the dump as they are. A hostile or
//! broken server could answer `1); DROP TABLE t; --` instead of a literal and have every later
//! restore run it, so every cell is checked against the forms a literal can take here:
//!
//! * `NULL`;
//! * a number: `-?` digits with an optional fraction and exponent (`-0.0`, `9e999`, `2.75`,
//!   `1e300`), or `Inf`/`-Inf` (older `quote()` of an infinity);
//! * the exact REAL form `M.0` followed by `*(1<<K)` / `/(1<<K)` factors (`K` ≤ 62);
//! * `'…'` with every inner `'` doubled;
//! * `X'…'` with an even number of hex digits, alone or as `CAST(X'…' AS TEXT)` (TEXT that
//!   holds NUL bytes).
//!
//! The check is one pass over the bytes, without allocation. [`is_plain`] answers the
//! question the dump's hot path asks of every cell at once: is it a literal that is written
//! into the dump exactly as it came?

use std::fmt;

/// Why a cell is not a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotALiteral(&'static str);

impl fmt::Display for NotALiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NotALiteral {}

/// Checks that `cell` is exactly one SQLite literal of the forms above.
pub fn check_cell(cell: &str) -> Result<(), NotALiteral> {
    let b = cell.as_bytes();
    match b.first() {
        None => Err(NotALiteral("an empty value")),
        Some(b'\'') => check_quoted(b),
        Some(b'X' | b'x') => check_blob(b),
        Some(b'C' | b'c') => {
            let inner = strip_ci(b, b"CAST(")
                .and_then(|rest| strip_suffix_ci(rest, b" AS TEXT)"))
                .ok_or(NotALiteral("not a literal"))?;
            check_blob(inner)
        }
        Some(b'N' | b'n') if b.eq_ignore_ascii_case(b"NULL") => Ok(()),
        Some(b'I') | Some(b'-') if cell == "Inf" || cell == "-Inf" => Ok(()),
        Some(b'-' | b'0'..=b'9' | b'.') => check_number(b),
        Some(_) => Err(NotALiteral("not a literal")),
    }
}

/// Whether a literal is written into a dump as it is: everything but TEXT holding CR or LF
/// (written through `replace(…)` to stay on one line) and `Inf`/`-Inf` (written `9e999`).
/// Only meaningful for a cell [`check_cell`] accepts.
pub fn written_as_is(lit: &str) -> bool {
    match lit.as_bytes().first() {
        Some(b'\'') => memchr::memchr2(b'\n', b'\r', lit.as_bytes()).is_none(),
        Some(b'I') | Some(b'-') => lit != "Inf" && lit != "-Inf",
        _ => true,
    }
}

/// `check_cell(cell).is_ok() && written_as_is(cell)`, with the common forms (a quoted
/// string without inner quotes or line breaks, a run of digits) decided by one byte search.
pub fn is_plain(cell: &str) -> bool {
    match cell.as_bytes() {
        [b'\'', inner @ .., b'\''] if memchr::memchr3(b'\'', b'\n', b'\r', inner).is_none() => true,
        digits @ [b'0'..=b'9', ..] if digits.iter().all(u8::is_ascii_digit) => true,
        _ => check_cell(cell).is_ok() && written_as_is(cell),
    }
}

/// `'…'` with inner quotes doubled.
fn check_quoted(b: &[u8]) -> Result<(), NotALiteral> {
    if b.len() < 2 || b[b.len() - 1] != b'\'' {
        return Err(NotALiteral("an unterminated string literal"));
    }
    let inner = &b[1..b.len() - 1];
    if !inner.contains(&b'\'') {
        // The common case, found by a fast byte search.
        return Ok(());
    }
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\'' {
            if inner.get(i + 1) != Some(&b'\'') {
                return Err(NotALiteral("a string literal with text after its end"));
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// `X'…'`: an even number of hex digits.
fn check_blob(b: &[u8]) -> Result<(), NotALiteral> {
    let hex = strip_ci(b, b"X'")
        .and_then(|rest| rest.strip_suffix(b"'"))
        .ok_or(NotALiteral("a malformed BLOB literal"))?;
    // Every byte is looked at (no early exit), which the compiler vectorizes: BLOB
    // literals are long.
    let all_hex = hex.iter().fold(true, |ok, &c| {
        ok & (c.is_ascii_digit() | matches!(c | 0x20, b'a'..=b'f'))
    });
    if hex.len() % 2 != 0 || !all_hex {
        return Err(NotALiteral(
            "a BLOB literal with other than pairs of hex digits",
        ));
    }
    Ok(())
}

/// A plain number, or `M.0` scaled by `(1<<K)` factors.
fn check_number(b: &[u8]) -> Result<(), NotALiteral> {
    let bad = NotALiteral("a malformed number");
    let body = b.strip_prefix(b"-").unwrap_or(b);
    let (int, rest) = split_digits(body);
    let (frac, rest) = match rest.strip_prefix(b".") {
        Some(r) => split_digits(r),
        None => (&b""[..], rest),
    };
    if int.is_empty() && frac.is_empty() {
        return Err(bad);
    }
    let rest = match rest.first() {
        Some(b'e' | b'E') => {
            let r = &rest[1..];
            let r = r
                .strip_prefix(b"+")
                .or_else(|| r.strip_prefix(b"-"))
                .unwrap_or(r);
            let (exp, r) = split_digits(r);
            if exp.is_empty() {
                return Err(bad);
            }
            return if r.is_empty() { Ok(()) } else { Err(bad) };
        }
        _ => rest,
    };
    // `M.0*(1<<K)…`: only after an integer mantissa written with `.0`.
    let mut rest = rest;
    if !rest.is_empty() && (frac != b"0" || int.is_empty()) {
        return Err(bad);
    }
    while !rest.is_empty() {
        let r = rest
            .strip_prefix(b"*(1<<")
            .or_else(|| rest.strip_prefix(b"/(1<<"))
            .ok_or(bad)?;
        let (shift, r) = split_digits(r);
        let ok_shift = matches!(shift.len(), 1 | 2)
            && std::str::from_utf8(shift)
                .ok()
                .and_then(|s| s.parse::<u8>().ok())
                .is_some_and(|k| (1..=62).contains(&k));
        if !ok_shift {
            return Err(bad);
        }
        rest = r.strip_prefix(b")").ok_or(bad)?;
    }
    Ok(())
}

fn split_digits(b: &[u8]) -> (&[u8], &[u8]) {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    b.split_at(n)
}

fn strip_ci<'a>(b: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (b.len() >= prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &b[prefix.len()..])
}

fn strip_suffix_ci<'a>(b: &'a [u8], suffix: &[u8]) -> Option<&'a [u8]> {
    (b.len() >= suffix.len() && b[b.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
        .then(|| &b[..b.len() - suffix.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_pass_and_everything_else_fails() {
        let good = [
            "NULL",
            "0",
            "-9223372036854775808",
            "9223372036854775807",
            "0.0",
            "-0.0",
            "9e999",
            "-9e999",
            "Inf",
            "-Inf",
            "2.75",
            "1e300",
            "1.5E-7",
            ".5",
            "3602879701896397.0/(1<<55)",
            "-1.0*(1<<62)*(1<<62)*(1<<16)",
            "''",
            "'it''s'",
            "'a;b -- c /* d'",
            "'line\nbreak'",
            "X''",
            "X'00ff'",
            "x'AbCd'",
            "CAST(X'610062' AS TEXT)",
        ];
        for c in good {
            assert_eq!(check_cell(c), Ok(()), "{c:?}");
        }
        let bad = [
            "",
            "1); DROP TABLE t; --",
            "'unterminated",
            "'a' || (SELECT 1)",
            "'a'); DROP TABLE t; --'",
            "X'0G'",
            "X'0'",
            "X'00",
            "CAST(X'00' AS BLOB)",
            "CAST('a' AS TEXT)",
            "1 OR 1",
            "1;",
            "-",
            ".",
            "1e",
            "1e+",
            "1.5/(1<<3)",
            "1.0/(1<<63)",
            "1.0/(1<<0)",
            "1.0/(2<<3)",
            "1.0+(1<<3)",
            "NULL;",
            "null1",
            "abs(1)",
            "Infinity",
            "--",
            "/* */1",
            " 1",
            "1 ",
        ];
        for c in bad {
            assert!(check_cell(c).is_err(), "{c:?} passed");
        }
    }

    #[test]
    fn plain_is_a_literal_written_as_it_is() {
        let cases = [
            ("NULL", true),
            ("0", true),
            ("007", true),
            ("-12", true),
            ("2.75", true),
            ("3602879701896397.0/(1<<55)", true),
            ("''", true),
            ("'abc'", true),
            ("'it''s'", true),
            ("X'00ff'", true),
            ("CAST(X'610062' AS TEXT)", true),
            ("9e999", true),
            ("'line\nbreak'", false),
            ("'cr\r'", false),
            ("'it''s\n'", false),
            ("Inf", false),
            ("-Inf", false),
            ("'", false),
            ("'a'b'", false),
            ("'a'); DROP TABLE t; --'", false),
            ("1 ", false),
            ("12a", false),
            ("~Ltext:300000", false),
            ("", false),
        ];
        for (cell, plain) in cases {
            assert_eq!(is_plain(cell), plain, "{cell:?}");
            assert_eq!(
                is_plain(cell),
                check_cell(cell).is_ok() && written_as_is(cell),
                "{cell:?}"
            );
        }
    }

    #[test]
    fn every_real_form_passes() {
        let mut x = 1.0e-310_f64;
        while x.is_finite() {
            for v in [x, -x, x * 0.1, 1.0 / x] {
                let lit = super::super::literal::real_literal(v);
                assert_eq!(check_cell(&lit), Ok(()), "{v:e} → {lit}");
            }
            x *= 7.3;
        }
    }
}
