//! Running the binary exactly as the Actions runner starts a Docker action.

use crate::support::{self, gha, run::ActionEnv};

#[test]
fn outputs_parse_by_the_runners_rules() {
    let Some((endpoint, bucket)) = support::bucket("action") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = support::copy_db(&support::fixture_db(), dir.path(), "app");
    let fake = support::fake_d1();
    fake.add_database("app", &db);
    let env = ActionEnv::new(&[
        ("api-token", support::TOKEN),
        ("account-id", support::ACCOUNT),
        ("database", "app"),
        ("bucket", &bucket),
        ("r2-endpoint", &endpoint),
        ("r2-access-key-id", support::weed::ACCESS_KEY),
        ("r2-secret-access-key", support::weed::SECRET_KEY),
        ("api-base-url", &fake.base_url()),
        ("prefix", "nightly/"),
    ]);
    let r = env.run();
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    // Secrets are masked before anything else is printed.
    let first = r.stdout.lines().next().unwrap();
    assert!(first.starts_with("::add-mask::"), "{first}");
    let outputs =
        gha::parse_outputs(r.outputs_file.as_deref().unwrap()).expect("runner parses outputs");
    for name in [
        "filename",
        "timestamp",
        "table-count",
        "key",
        "bucket",
        "size-bytes",
        "compressed-bytes",
        "sha256",
        "row-count",
        "method",
        "report",
    ] {
        assert!(
            outputs.contains_key(name),
            "output {name} missing: {outputs:?}"
        );
    }
    assert!(outputs["key"].starts_with("nightly/app/backup-"));
    assert_eq!(outputs["bucket"], bucket);
    assert_eq!(outputs["method"], "query");
    assert!(outputs["filename"].ends_with(".sql.zst") && !outputs["filename"].contains('/'));
    chrono::DateTime::parse_from_rfc3339(&outputs["timestamp"]).expect("RFC 3339 timestamp");
    let report: serde_json::Value = serde_json::from_str(&outputs["report"]).unwrap();
    assert_eq!(report, r.report());
    assert_eq!(report["tableCount"].to_string(), outputs["table-count"]);
    assert_eq!(outputs["sha256"].len(), 64);
    let summary = r.summary_file.unwrap();
    assert!(summary.contains("D1 backup of `app`"), "{summary}");
}

#[test]
fn parser_follows_the_runner() {
    let ok = "a=1\nb<<EOF\nx\ny\nEOF\nc=\n";
    let m = gha::parse_outputs(ok).unwrap();
    assert_eq!(m["a"], "1");
    assert_eq!(m["b"], "x\ny");
    assert_eq!(m["c"], "");
    assert!(gha::parse_outputs("b<<EOF\nx\n").is_err());
}
