//! `action.yml` and the README's tables match the inputs and outputs the binary knows.
//! `UPDATE_GENERATED=1 cargo test --test it contract` rewrites them.

use std::path::PathBuf;

use d1_backup::cli::contract::{action_yml, inputs_table, outputs_table, replace_section};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn update() -> bool {
    std::env::var("UPDATE_GENERATED").is_ok_and(|v| v == "1")
}

#[test]
fn action_yml_matches_the_inputs_and_outputs() {
    let path = root().join("action.yml");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    // A release points `image` at a prebuilt image; keep whatever it is.
    let image = current
        .lines()
        .find_map(|l| l.strip_prefix("  image: "))
        .map(|v| v.trim_matches('\'').to_string())
        .unwrap_or_else(|| "Dockerfile".to_string());
    let want = action_yml(&image);
    if update() {
        std::fs::write(&path, &want).unwrap();
    } else {
        assert!(
            current == want,
            "action.yml is out of date: run UPDATE_GENERATED=1 cargo test --test it contract"
        );
    }
}

#[test]
fn readme_tables_match_the_inputs_and_outputs() {
    let path = root().join("README.md");
    let current = std::fs::read_to_string(&path).unwrap();
    let want =
        replace_section(&current, "INPUTS", &inputs_table()).expect("README has INPUTS markers");
    let want =
        replace_section(&want, "OUTPUTS", &outputs_table()).expect("README has OUTPUTS markers");
    if update() {
        std::fs::write(&path, &want).unwrap();
    } else {
        assert!(
            current == want,
            "README tables are out of date: run UPDATE_GENERATED=1 cargo test --test it contract"
        );
    }
}
