//! Exact SQL literals for REAL values: text that every SQLite parser in use reads back to the
//! same 64 bits.
//!
//! A decimal literal is only as exact as the parser that reads it. Measured: D1's engine
//! misreads about one in six shortest round-trip literals whose decimal exponent is beyond
//! ±50; SQLite 3.40 (Debian 12) misreads about one in 10,000 ordinary ones (a double rounding
//! through `long double`); SQLite 3.43–3.53 on x86-64 scale by repeated multiplication with
//! inexact powers of ten. Integers, on the other hand, are read exactly by every version, and
//! multiplying or dividing a double by a power of two is exact. So a REAL is written as:
//!
//! * `-0.0`, `9e999`, `-9e999` for the signed zero and the infinities;
//! * its exact decimal expansion when that has at most 17 significant digits (`0.5`, `2.75`,
//!   `123.0`, `1e300` is not one of them): any parser gets within far less than half an ulp
//!   of a value that is exactly representable, so it lands on it;
//! * otherwise `M.0/(1<<K)` or `M.0*(1<<K)` (repeated when `K` > 62): the odd integer mantissa
//!   `M` (below 2^53, so `M.0` is exact) scaled by exact powers of two. `0.1` becomes
//!   `3602879701896397.0/(1<<55)`.
//!
//! No function is needed (a restore works in any `sqlite3`), and the expression depth stays
//! below 40 even for subnormals, well inside D1's limit of 100.

/// The largest shift written in one factor: `1<<62` is a positive 64-bit integer.
const MAX_SHIFT: i32 = 62;

/// Most significant digits an exact decimal may have (every parser accumulates at least 19).
const MAX_DIGITS: u32 = 17;

/// The exact SQL literal of a REAL.
pub fn real_literal(v: f64) -> String {
    if v.is_nan() {
        // SQLite never stores NaN (it becomes NULL); nothing reads one back as a REAL.
        return "NULL".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "9e999" } else { "-9e999" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    let (mantissa, exp) = decompose(v);
    if let Some(d) = exact_decimal(mantissa, exp) {
        return d;
    }
    let mut out = format!("{mantissa}.0");
    let op = if exp > 0 { '*' } else { '/' };
    let mut left = exp.abs();
    while left > 0 {
        let step = left.min(MAX_SHIFT);
        out.push(op);
        out.push_str("(1<<");
        out.push_str(&step.to_string());
        out.push(')');
        left -= step;
    }
    out
}

/// `v` = `mantissa` × 2^`exp`, with `mantissa` odd (signed) and below 2^53 in magnitude.
fn decompose(v: f64) -> (i64, i32) {
    let bits = v.to_bits();
    let negative = bits >> 63 == 1;
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    let (mut m, mut e) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), biased - 1075)
    };
    let zeros = m.trailing_zeros();
    m >>= zeros;
    e += zeros as i32;
    let m = m as i64;
    (if negative { -m } else { m }, e)
}

/// The exact decimal expansion of `mantissa` × 2^`exp`, when it is short.
fn exact_decimal(mantissa: i64, exp: i32) -> Option<String> {
    let sign = if mantissa < 0 { "-" } else { "" };
    let m = u128::from(mantissa.unsigned_abs());
    if exp >= 0 {
        // An integer: short enough when below 2^53 (every bigger one has more digits than
        // are safe to spell out in some parsers).
        let n = m.checked_shl(exp as u32)?;
        return (n < 1u128 << 53).then(|| format!("{sign}{n}.0"));
    }
    // m / 2^k = m·5^k / 10^k, exactly.
    let k = (-exp) as u32;
    let digits = m.checked_mul(5u128.checked_pow(k)?)?;
    if digits >= 10u128.pow(MAX_DIGITS) {
        return None;
    }
    let text = digits.to_string();
    let k = k as usize;
    let (int, frac) = if text.len() > k {
        (
            text[..text.len() - k].to_string(),
            text[text.len() - k..].to_string(),
        )
    } else {
        (
            "0".to_string(),
            format!("{}{text}", "0".repeat(k - text.len())),
        )
    };
    Some(format!("{sign}{int}.{frac}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "9e999"),
            (f64::NEG_INFINITY, "-9e999"),
            (1.0, "1.0"),
            (-3.0, "-3.0"),
            (0.5, "0.5"),
            (-2.75, "-2.75"),
            (1e15, "1000000000000000.0"),
            (9007199254740991.0, "9007199254740991.0"),
            (9007199254740992.0, "1.0*(1<<53)"),
            (0.1, "3602879701896397.0/(1<<55)"),
            (-0.1, "-3602879701896397.0/(1<<55)"),
            (
                1e300,
                "1681218273811815.0*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<62)*(1<<16)",
            ),
            (
                5e-324,
                "1.0/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<62)/(1<<20)",
            ),
            (0.000030517578125, "0.000030517578125"),
        ];
        for (v, want) in cases {
            assert_eq!(real_literal(*v), *want, "{v:e}");
        }
    }

    /// Every form reads back to the same bits in SQLite (the bundled build, which the
    /// restore uses); `tests/it/engine.rs` checks D1's engine and the `sqlite3` shell.
    #[test]
    fn reads_back_exactly_in_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            5e-324,
            -5e-324,
            f64::from_bits(0x000f_ffff_ffff_ffff),
            0.1,
            1.0 / 3.0,
        ];
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = f64::from_bits(state);
            if v.is_finite() {
                values.push(v);
            }
        }
        for v in values {
            let lit = real_literal(v);
            let (back, kind): (f64, String) = conn
                .query_row(&format!("SELECT {lit}, typeof({lit})"), [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!(kind, "real", "{lit}");
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e} written as {lit}");
        }
    }
}
