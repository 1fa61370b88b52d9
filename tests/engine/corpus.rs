//! The probe corpus of the real D1 engine (`probes.txt`, format at its top) and its
//! recorded answers (`probes.expected`): parsing and comparing, shared by
//! `fake-d1/tests/probes.rs` (the fake against the recording) and `tests/it/engine.rs` (the
//! live engine and the fake side by side).

#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;

/// One probe of `probes.txt`.
pub struct Probe {
    pub label: String,
    pub sql: String,
    pub params: Option<Value>,
    pub rows: bool,
}

/// A file of `dir` (the `tests/engine` directory).
pub fn read(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The probes in file order (the format is described at the top of probes.txt).
pub fn parse_probes(text: &str) -> Vec<Probe> {
    let mut probes: Vec<Probe> = Vec::new();
    let mut sql: Vec<Vec<&str>> = Vec::new();
    for line in text.split('\n') {
        if let Some(label) = line.strip_prefix("-- probe: ") {
            probes.push(Probe {
                label: label.trim().to_string(),
                sql: String::new(),
                params: None,
                rows: false,
            });
            sql.push(Vec::new());
            continue;
        }
        let (Some(probe), Some(lines)) = (probes.last_mut(), sql.last_mut()) else {
            continue;
        };
        if lines.is_empty() {
            if let Some(params) = line.strip_prefix("-- params: ") {
                probe.params = Some(serde_json::from_str(params).expect("params JSON"));
                continue;
            }
            if line.trim() == "-- rows" {
                probe.rows = true;
                continue;
            }
        }
        lines.push(line);
    }
    for (probe, lines) in probes.iter_mut().zip(sql) {
        probe.sql = lines.join("\n").trim_matches('\n').to_string();
    }
    probes
}

/// `(label, answer)` per line of probes.expected.
pub fn parse_expected(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (label, answer) = l.split_once('\t').expect("label TAB answer");
            (label.to_string(), answer.to_string())
        })
        .collect()
}

/// The message without any ` at offset N` (the offset depends on SQLite's version).
pub fn normalize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(" at offset ") {
        let after = &rest[i + " at offset ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push_str(&rest[..i + 1]);
            rest = &rest[i + 1..];
            continue;
        }
        out.push_str(&rest[..i]);
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// The `rows` of a single-result `/raw` answer, exactly as on the wire.
pub fn rows_text(body: &str) -> Option<&str> {
    let start = body.find("],\"rows\":")? + "],\"rows\":".len();
    let end = body.rfind("},\"success\":true,\"meta\"")?;
    body.get(start..end)
}

/// At most 400 bytes of an answer, for failure messages.
pub fn shorten(s: &str) -> String {
    const MAX: usize = 400;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &s[..cut], s.len())
}
