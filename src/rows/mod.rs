//! What a query returns, whatever answered it: [`Value`] (a SQLite value as D1 encodes it in
//! JSON, or as read from a local file), [`Rows`] (a small result), and [`Page`] (the compact
//! page of SQL literals a dump is made of).

pub(crate) mod page;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

pub use page::Page;

/// The result of one statement.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// Size of the response on the wire (or an estimate), used to size pages.
    pub bytes: usize,
}

impl Rows {
    /// Index of a column by name.
    pub fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// A SQLite value as received.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Integer view: integers, integral reals, and numeric text.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(*f as i64),
            Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a D1 value (null, number, string or byte array)")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Integer(v as i64))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Integer(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Real(v as f64),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Real(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Text(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Text(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(n) = seq.next_element::<f64>()? {
            if !(0.0..=255.0).contains(&n) || n.fract() != 0.0 {
                return Err(de::Error::custom(format!("byte array holds {n}")));
            }
            bytes.push(n as u8);
        }
        Ok(Value::Blob(bytes))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // Not a SQLite value; keep the text so nothing is silently lost.
        let mut parts = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
            parts.push(format!("{k}={v}"));
        }
        Ok(Value::Text(parts.join(",")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(json: &str) -> Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn decodes_what_d1_sends() {
        let cases: &[(&str, Value)] = &[
            ("null", Value::Null),
            ("42", Value::Integer(42)),
            ("-7", Value::Integer(-7)),
            // int64::MAX printed through a double by JavaScript.
            ("9223372036854776000", Value::Real(9223372036854776000.0)),
            ("9007199254740992", Value::Integer(9007199254740992)),
            ("1e+21", Value::Real(1e21)),
            ("0.1", Value::Real(0.1)),
            ("5e-324", Value::Real(5e-324)),
            ("\"a\\u0000b\"", Value::Text("a\0b".into())),
            ("[0,255,7]", Value::Blob(vec![0, 255, 7])),
            ("[]", Value::Blob(vec![])),
            ("true", Value::Integer(1)),
        ];
        for (json, want) in cases {
            assert_eq!(&v(json), want, "{json}");
        }
    }

    #[test]
    fn rejects_non_byte_arrays() {
        assert!(serde_json::from_str::<Value>("[256]").is_err());
        assert!(serde_json::from_str::<Value>("[1.5]").is_err());
    }

    #[test]
    fn integer_views() {
        assert_eq!(Value::Real(3.0).as_i64(), Some(3));
        assert_eq!(Value::Text("12".into()).as_i64(), Some(12));
        assert_eq!(Value::Real(1.5).as_i64(), None);
    }
}
