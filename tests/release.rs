//! The release, rehearsed: `scripts/release.sh --dry-run` against a temporary git repository.
//! After v1.2.3 and then v1.3.0, the tags v1, v1.2/v1.3 and v1.2.3/v1.3.0 end on commits whose
//! `action.yml` runs the image pinned by digest (and is a valid action); a tag that does not
//! match Cargo.toml fails before any tag moves.

use std::path::{Path, PathBuf};
use std::process::Command;

const IMAGE: &str = "ghcr.io/acme/d1-backup";

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A repository at version `version`, committed.
fn commit_version(dir: &Path, version: &str) {
    std::fs::write(
        dir.join("Cargo.toml"),
        format!("[package]\nname = \"d1-backup\"\nversion = \"{version}\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("CHANGELOG.md"),
        "# Changelog\n\n## [Unreleased]\n\n## [1.3.0] - 2026-12-20\n\n### Added\n- check\n\n## [1.2.3] - 2026-12-10\n\n### Added\n- fleets\n",
    )
    .unwrap();
    std::fs::copy(root().join("action.yml"), dir.join("action.yml")).unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", &format!("version {version}")]);
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn release(dir: &Path, tag: &str, digest: &str) -> std::process::Output {
    Command::new("bash")
        .arg(root().join("scripts/release.sh"))
        .current_dir(dir)
        .args([
            "--tag",
            tag,
            "--image",
            IMAGE,
            "--digest",
            digest,
            "--dry-run",
        ])
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_d1-backup"))
        .arg("--notes")
        .arg(dir.join(".git/notes.md"))
        .output()
        .expect("bash runs")
}

/// The commit a tag ends on, and that commit's action.yml.
fn tagged(dir: &Path, tag: &str) -> (String, String) {
    let commit = git(dir, &["rev-parse", &format!("{tag}^{{commit}}")]);
    let yml = git(dir, &["show", &format!("{commit}:action.yml")]);
    (commit, yml)
}

/// The action.yml is a valid action that runs exactly `image`.
fn assert_runs(yml: &str, image: &str) {
    let doc: serde_yaml::Value = serde_yaml::from_str(yml).unwrap();
    assert_eq!(doc["runs"]["using"], "docker");
    assert_eq!(doc["runs"]["image"].as_str(), Some(image));
    assert!(doc["inputs"]["database"].is_mapping());
    let lint = root().join(".ci/.venv-lint/bin/check-jsonschema");
    if lint.exists() {
        let file = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
        std::fs::write(file.path(), yml).unwrap();
        let ok = Command::new(lint)
            .args(["--builtin-schema", "vendor.github-actions"])
            .arg(file.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "check-jsonschema refused the release action.yml");
    }
}

#[test]
fn releases_move_the_major_and_minor_tags_onto_pinned_images() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    commit_version(d, "1.2.3");
    let source_123 = git(d, &["rev-parse", "HEAD"]);
    git(d, &["tag", "v1.2.3"]);

    let out = release(d, "v1.2.3", &digest(0xab));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pinned_123 = format!("docker://{IMAGE}@{}", digest(0xab));
    let (c123, yml) = tagged(d, "v1.2.3");
    assert_ne!(c123, source_123, "the tag moved to the release commit");
    assert_eq!(git(d, &["rev-parse", &format!("{c123}^")]), source_123);
    assert_runs(&yml, &pinned_123);
    for t in ["v1", "v1.2"] {
        assert_eq!(tagged(d, t).0, c123, "{t}");
    }
    let notes = std::fs::read_to_string(d.join(".git/notes.md")).unwrap();
    assert!(
        notes.contains("- fleets") && !notes.contains("- check"),
        "{notes}"
    );
    // The branch itself is untouched: main still builds the Dockerfile.
    assert_eq!(git(d, &["rev-parse", "main"]), source_123);

    // v1.3.0: v1 moves, v1.2 stays, v1.3 appears.
    commit_version(d, "1.3.0");
    git(d, &["tag", "v1.3.0"]);
    let out = release(d, "v1.3.0", &digest(0xcd));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (c130, yml) = tagged(d, "v1.3.0");
    assert_runs(&yml, &format!("docker://{IMAGE}@{}", digest(0xcd)));
    assert_eq!(tagged(d, "v1.3").0, c130);
    assert_eq!(tagged(d, "v1").0, c130);
    assert_eq!(tagged(d, "v1.2").0, c123);
    assert_eq!(tagged(d, "v1.2.3").0, c123);

    // A tag that does not match Cargo.toml fails before any tag moves.
    let before = git(d, &["show-ref", "--tags"]);
    git(d, &["tag", "v1.4.0"]);
    let out = release(d, "v1.4.0", &digest(0xef));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not match Cargo.toml's version 1.3.0"),
        "{err}"
    );
    git(d, &["tag", "-d", "v1.4.0"]);
    assert_eq!(git(d, &["show-ref", "--tags"]), before);
    // So does a version without a CHANGELOG section, and a digest that is not one.
    commit_version(d, "1.5.0");
    let out = release(d, "v1.5.0", &digest(0x01));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CHANGELOG.md has no section"));
    let out = release(d, "v1.5.0", "sha256:latest");
    assert!(!out.status.success());
    assert_eq!(git(d, &["show-ref", "--tags"]), before);
}
