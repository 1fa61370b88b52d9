//! How D1 turns SQLite values into JSON and SQL text: numbers are JavaScript numbers (an INTEGER
//! becomes a double, so precision is lost above 2^53), TEXT is a JSON string (invalid UTF-8 is
//! replaced by U+FFFD, as a JavaScript `TextDecoder` would), BLOBs are arrays of byte numbers.
//! Also a tiny ordered JSON value type, because key order and number text on the wire must be
//! exactly what JavaScript's `JSON.stringify` produces.

use std::borrow::Cow;

use rusqlite::types::ValueRef;

/// JavaScript's `Number.prototype.toString` (also used by `JSON.stringify` for finite numbers).
/// `-0` prints as `0`; NaN and the infinities print as `NaN`, `Infinity`, `-Infinity`.
pub fn push_js_number(out: &mut String, f: f64) {
    if f == 0.0 {
        out.push('0');
        return;
    }
    let mut buf = ryu_js::Buffer::new();
    out.push_str(buf.format(f));
}

/// The text `JSON.stringify` gives a number: like [`push_js_number`] but `null` when not finite.
pub fn push_json_number(out: &mut String, f: f64) {
    if f.is_finite() {
        push_js_number(out, f);
    } else {
        out.push_str("null");
    }
}

/// JavaScript number text of a value, as a new string.
#[cfg(test)]
pub fn js_number(f: f64) -> String {
    let mut s = String::new();
    push_js_number(&mut s, f);
    s
}

/// A JSON string literal exactly as `JSON.stringify` writes it.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: Cow<'static, str> = match b {
            b'"' => "\\\"".into(),
            b'\\' => "\\\\".into(),
            b'\n' => "\\n".into(),
            b'\r' => "\\r".into(),
            b'\t' => "\\t".into(),
            0x08 => "\\b".into(),
            0x0c => "\\f".into(),
            0x00..=0x1f => format!("\\u{b:04x}").into(),
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(&escape);
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A JSON string literal as a new string.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_str(&mut out, s);
    out
}

/// TEXT bytes as JavaScript would see them: invalid UTF-8 sequences become U+FFFD.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// One SQLite value as D1 encodes it in `/query` and `/raw` results.
pub fn push_json_value(out: &mut String, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => out.push_str("null"),
        ValueRef::Integer(i) => push_json_number(out, i as f64),
        ValueRef::Real(f) => push_json_number(out, f),
        ValueRef::Text(t) => push_json_str(out, &text(t)),
        ValueRef::Blob(b) => {
            out.push('[');
            for (i, byte) in b.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&byte.to_string());
            }
            out.push(']');
        }
    }
}

/// Whether a property name is a JavaScript array index (canonical decimal below 2^32 - 1).
/// Such keys come first, in numeric order, when a JavaScript object is serialized.
pub fn array_index(key: &str) -> Option<u32> {
    if key.is_empty() || key.len() > 10 || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if key.len() > 1 && key.starts_with('0') {
        return None;
    }
    let n: u64 = key.parse().ok()?;
    if n < u64::from(u32::MAX) {
        u32::try_from(n).ok()
    } else {
        None
    }
}

/// How a row becomes a JavaScript object: for each property, in the order `JSON.stringify`
/// emits them, the encoded `"key":` prefix and the index of the column whose value it holds.
/// Duplicate column names keep their first position but take the last value (plain assignment).
pub fn object_layout(names: &[String]) -> Vec<(String, usize)> {
    let mut order: Vec<(&str, usize)> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match order.iter_mut().find(|(n, _)| *n == name.as_str()) {
            Some(entry) => entry.1 = i,
            None => order.push((name.as_str(), i)),
        }
    }
    let (mut indices, rest): (Vec<_>, Vec<_>) = order
        .into_iter()
        .partition(|(n, _)| array_index(n).is_some());
    indices.sort_by_key(|(n, _)| array_index(n));
    indices
        .into_iter()
        .chain(rest)
        .map(|(n, i)| {
            let mut key = json_str(n);
            key.push(':');
            (key, i)
        })
        .collect()
}

/// A JSON value whose object keys keep their order and whose numbers print the JavaScript way.
#[derive(Clone, Debug)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
    /// Already-encoded JSON text.
    Raw(String),
}

impl Json {
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(f) => push_json_number(out, *f),
            Json::Str(s) => push_json_str(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
            Json::Raw(s) => out.push_str(s),
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

/// The Cloudflare success envelope, `result` first.
pub fn envelope_ok(result: &Json) -> String {
    let mut out = String::from("{\"result\":");
    result.write(&mut out);
    out.push_str(ENVELOPE_OK_TAIL);
    out
}

/// What follows `result` in a success envelope.
pub const ENVELOPE_OK_TAIL: &str = ",\"success\":true,\"errors\":[],\"messages\":[]}";

/// The success envelope of a collection endpoint, with `result_info` last.
pub fn envelope_ok_info(result: &Json, info: &Json) -> String {
    let mut out = String::from("{\"result\":");
    result.write(&mut out);
    out.push_str(",\"success\":true,\"errors\":[],\"messages\":[],\"result_info\":");
    info.write(&mut out);
    out.push('}');
    out
}

/// The Cloudflare failure envelope.
pub fn envelope_err(code: u32, message: &str) -> String {
    let mut out = String::from("{\"result\":null,\"success\":false,\"errors\":[{\"code\":");
    out.push_str(&code.to_string());
    out.push_str(",\"message\":");
    push_json_str(&mut out, message);
    out.push_str("}],\"messages\":[]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(f: f64) -> String {
        let mut s = String::new();
        push_json_number(&mut s, f);
        s
    }

    #[test]
    fn numbers_print_like_javascript() {
        assert_eq!(num(i64::MAX as f64), "9223372036854776000");
        assert_eq!(num(i64::MIN as f64), "-9223372036854776000");
        assert_eq!(num(9_007_199_254_740_993_i64 as f64), "9007199254740992");
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(1e308), "1e+308");
        assert_eq!(num(5e-324), "5e-324");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1e21), "1e+21");
        assert_eq!(num(1e20), "100000000000000000000");
        assert_eq!(num(123e-20), "1.23e-18");
        assert_eq!(num(f64::NAN), "null");
        assert_eq!(num(f64::NEG_INFINITY), "null");
        assert_eq!(js_number(f64::INFINITY), "Infinity");
        assert_eq!(js_number(f64::NAN), "NaN");
    }

    #[test]
    fn strings_escape_like_json_stringify() {
        assert_eq!(
            json_str("a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é/"),
            "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0000\\u001f\u{7f}é/\""
        );
        assert_eq!(text(b"a\xffb"), "a\u{fffd}b");
    }

    #[test]
    fn object_keys_follow_javascript_order() {
        let names: Vec<String> = ["b", "10", "a", "2", "b", "01"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let layout = object_layout(&names);
        let keys: Vec<(&str, usize)> = layout.iter().map(|(k, i)| (k.as_str(), *i)).collect();
        assert_eq!(
            keys,
            vec![
                ("\"2\":", 3),
                ("\"10\":", 1),
                ("\"b\":", 4),
                ("\"a\":", 2),
                ("\"01\":", 5)
            ]
        );
        assert_eq!(array_index("4294967294"), Some(4_294_967_294));
        assert_eq!(array_index("4294967295"), None);
    }

    #[test]
    fn blobs_are_byte_arrays() {
        let mut s = String::new();
        push_json_value(&mut s, ValueRef::Blob(&[0, 1, 255]));
        assert_eq!(s, "[0,1,255]");
    }
}
