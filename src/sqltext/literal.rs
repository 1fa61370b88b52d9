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
#[cfg(test)]
pub fn real_literal(v: f64) -> String {
    let mut out = String::new();
    push_real_literal(&mut out, v);
    out
}

/// Append the exact SQL literal of a REAL to `out` (no allocation beyond `out`'s growth).
pub fn push_real_literal(out: &mut String, v: f64) {
    if v.is_nan() {
        // SQLite never stores NaN (it becomes NULL); nothing reads one back as a REAL.
        return out.push_str("NULL");
    }
    if v.is_infinite() {
        return out.push_str(if v > 0.0 { "9e999" } else { "-9e999" });
    }
    if v == 0.0 {
        return out.push_str(if v.is_sign_negative() { "-0.0" } else { "0.0" });
    }
    let (mantissa, exp) = decompose(v);
    if push_exact_decimal(out, mantissa, exp) {
        return;
    }
    if mantissa < 0 {
        out.push('-');
    }
    push_digits(out, mantissa.unsigned_abs(), 0);
    out.push_str(".0");
    let op = if exp > 0 { "*(1<<" } else { "/(1<<" };
    let mut left = exp.abs();
    while left > 0 {
        let step = left.min(MAX_SHIFT);
        out.push_str(op);
        push_digits(out, step as u64, 0);
        out.push(')');
        left -= step;
    }
}

/// Append the decimal digits of `n`, left-padded with zeros to at least `width` (≤ 32)
/// digits.
fn push_digits(out: &mut String, mut n: u64, width: usize) {
    // u64::MAX has 20 digits; a fraction is padded to at most 24.
    let mut buf = [b'0'; 32];
    let mut at = buf.len();
    while n > 0 {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let at = at.min(buf.len() - width.clamp(1, buf.len()));
    out.push_str(std::str::from_utf8(&buf[at..]).unwrap_or("0"));
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

/// Append the exact decimal expansion of `mantissa` × 2^`exp` when it is short; `false`
/// (and nothing appended) otherwise.
fn push_exact_decimal(out: &mut String, mantissa: i64, exp: i32) -> bool {
    let sign = if mantissa < 0 { "-" } else { "" };
    let m = mantissa.unsigned_abs();
    if exp >= 0 {
        // An integer: short enough when below 2^53 (every bigger one has more digits than
        // are safe to spell out in some parsers).
        if exp >= 53 || m >> (53 - exp) != 0 {
            return false;
        }
        out.push_str(sign);
        push_digits(out, m << exp, 0);
        out.push_str(".0");
        return true;
    }
    // m / 2^k = m·5^k / 10^k, exactly.
    let k = (-exp) as u32;
    let Some(digits) = 5u64
        .checked_pow(k)
        .and_then(|p| m.checked_mul(p))
        .filter(|d| *d < 10u64.pow(MAX_DIGITS))
    else {
        return false;
    };
    // 5^k ≤ m·5^k < 10^17, so k ≤ 24; past 19 digits of fraction the integer part is 0.
    let (int, frac) = match 10u64.checked_pow(k) {
        Some(scale) => (digits / scale, digits % scale),
        None => (0, digits),
    };
    out.push_str(sign);
    push_digits(out, int, 1);
    out.push('.');
    push_digits(out, frac, k as usize);
    true
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
            // The longest exact fraction: 24 digits.
            (1.0 / (1u64 << 24) as f64, "0.000000059604644775390625"),
            // An integer mantissa shifted past 64 bits.
            (5.722180868973821e22, "6821371160714413.0*(1<<23)"),
            (-4503599627370497.0, "-4503599627370497.0"),
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
