//! The fake against the real engine: every probe of `tests/engine/probes.txt` (limits,
//! authorizer decisions, value encoding) is sent to the fake, in order, one `/raw` request each,
//! on one fresh database, and its answer must be the engine's answer recorded in
//! `tests/engine/probes.expected` (by `tests/engine/record-probes.py`): accepted or refused,
//! the same error message (without ` at offset N`), and for probes marked `-- rows` the same
//! rows, byte for byte as on the wire.

mod common;
#[path = "../../tests/engine/corpus.rs"]
mod corpus;

use std::path::PathBuf;

use common::Harness;
use corpus::{Probe, normalize, parse_expected, parse_probes, rows_text, shorten};
use serde_json::{Value, json};

fn engine_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/engine")
}

fn read(name: &str) -> String {
    corpus::read(&engine_dir(), name)
}

fn answer(h: &Harness, db: &str, probe: &Probe) -> String {
    let mut body = json!({ "sql": probe.sql });
    if let Some(params) = &probe.params {
        body["params"] = params.clone();
    }
    let r = h.call(db, "raw", &body);
    let v = r.json();
    if v["success"] == Value::Bool(true) {
        if !probe.rows {
            return "ok".to_string();
        }
        let results = v["result"].as_array().map_or(0, Vec::len);
        assert_eq!(results, 1, "probe {:?} is marked -- rows", probe.label);
        return format!("ok {}", rows_text(&r.text).expect("rows"));
    }
    let (_, message) = r.error();
    format!("err {}", normalize(&message))
}

#[test]
fn corpus_and_recording_agree() {
    let probes = parse_probes(&read("probes.txt"));
    let expected = parse_expected(&read("probes.expected"));
    assert!(probes.len() >= 60, "only {} probes", probes.len());
    let mut labels: Vec<&str> = probes.iter().map(|p| p.label.as_str()).collect();
    let recorded: Vec<&str> = expected.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels, recorded,
        "probes.expected is stale: re-record it with tests/engine/record-probes.py"
    );
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), probes.len(), "probe labels must be unique");
    for probe in &probes {
        assert!(!probe.sql.is_empty(), "probe {:?} has no SQL", probe.label);
        assert!(!probe.label.contains('\t'), "{:?}", probe.label);
    }
    for (label, answer) in &expected {
        assert!(
            answer == "ok" || answer.starts_with("ok ") || answer.starts_with("err "),
            "{label}: {answer}"
        );
    }
}

#[test]
fn fake_answers_every_probe_as_the_engine_does() {
    let probes = parse_probes(&read("probes.txt"));
    let expected = parse_expected(&read("probes.expected"));
    let h = Harness::new();
    h.fake.create_database("probes");
    let mut differences = Vec::new();
    for (probe, (label, want)) in probes.iter().zip(&expected) {
        assert_eq!(&probe.label, label, "probes.expected is stale");
        let got = answer(&h, "probes", probe);
        if &got != want {
            differences.push(format!(
                "{label}\n    engine: {}\n    fake:   {}",
                shorten(want),
                shorten(&got)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} probes answer differently on the fake:\n{}",
        differences.len(),
        probes.len(),
        differences.join("\n")
    );
}

#[test]
fn offsets_are_normalized() {
    assert_eq!(
        normalize("near \"x\": syntax error at offset 12: SQLITE_ERROR"),
        "near \"x\": syntax error: SQLITE_ERROR"
    );
    assert_eq!(normalize("x at offset y"), "x at offset y");
}
