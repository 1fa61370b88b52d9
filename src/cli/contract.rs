//! The public contract in the formats users read: `action.yml` and the README's input and
//! output tables, rendered from [`crate::cli::inputs::INPUTS`] and [`crate::cli::report::OUTPUTS`].
//!
//! The files are checked in; a test renders them again and fails if they differ
//! (`UPDATE_GENERATED=1` rewrites them), so the action, the docs and the binary can never
//! disagree about an input's name or default.

use crate::cli::inputs::INPUTS;
use crate::cli::report::OUTPUTS;

/// YAML single-quoted scalar.
fn yq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Render `action.yml` with the given `runs.image` (`Dockerfile`, or `docker://…` in a
/// release).
pub fn action_yml(image: &str) -> String {
    let mut y = String::new();
    y.push_str("# Generated from src/inputs.rs and src/report.rs (see src/contract.rs): edit those, then\n");
    y.push_str("# run `UPDATE_GENERATED=1 cargo test --test it contract` to refresh this file.\n");
    y.push_str("name: 'D1 Backup to R2'\n");
    y.push_str("description: 'Exact, streamed backups of Cloudflare D1 databases to R2 (or any S3 store): zstd-compressed SQL with a manifest'\n");
    y.push_str("author: 'd1-backup'\n");
    y.push_str("branding:\n  icon: 'database'\n  color: 'orange'\n");
    y.push_str("inputs:\n");
    for spec in INPUTS {
        y.push_str(&format!("  {}:\n", spec.name));
        y.push_str(&format!(
            "    description: {}\n",
            yq(&plain(spec.description))
        ));
        y.push_str("    required: false\n");
        if !spec.default.is_empty() {
            y.push_str(&format!("    default: {}\n", yq(spec.default)));
        }
    }
    y.push_str("outputs:\n");
    for (name, description) in OUTPUTS {
        y.push_str(&format!(
            "  {name}:\n    description: {}\n",
            yq(&plain(description))
        ));
    }
    y.push_str("runs:\n  using: 'docker'\n");
    y.push_str(&format!("  image: {}\n", yq(image)));
    y
}

/// Markdown code spans are noise in YAML descriptions shown by the Marketplace.
fn plain(s: &str) -> String {
    s.replace('`', "")
}

/// The README's inputs table.
pub fn inputs_table() -> String {
    let mut t =
        String::from("| Input | Default | Environment | Description |\n|---|---|---|---|\n");
    for spec in INPUTS {
        let mut env: Vec<String> = spec.env.iter().map(|e| format!("`{e}`")).collect();
        env.push(format!(
            "`D1_BACKUP_{}`",
            spec.name.to_ascii_uppercase().replace('-', "_")
        ));
        let default = if spec.default.is_empty() {
            String::new()
        } else {
            format!("`{}`", spec.default)
        };
        t.push_str(&format!(
            "| `{}` | {default} | {} | {}{} |\n",
            spec.name,
            env.join(", "),
            spec.description.replace('|', "\\|"),
            if spec.secret { " *Secret.*" } else { "" }
        ));
    }
    t
}

/// The README's outputs table.
pub fn outputs_table() -> String {
    let mut t = String::from("| Output | Description |\n|---|---|\n");
    for (name, description) in OUTPUTS {
        t.push_str(&format!(
            "| `{name}` | {} |\n",
            description.replace('|', "\\|")
        ));
    }
    t
}

/// Replace the text between `<!-- BEGIN name -->` and `<!-- END name -->`.
pub fn replace_section(doc: &str, name: &str, body: &str) -> Option<String> {
    let begin = format!("<!-- BEGIN {name} -->\n");
    let end = format!("<!-- END {name} -->");
    let b = doc.find(&begin)? + begin.len();
    let e = doc[b..].find(&end)? + b;
    Some(format!("{}{}{}", &doc[..b], body, &doc[e..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_quoting() {
        assert_eq!(yq("it's"), "'it''s'");
    }

    #[test]
    fn every_input_and_output_is_rendered() {
        let y = action_yml("Dockerfile");
        for spec in INPUTS {
            assert!(
                y.contains(&format!("\n  {}:\n", spec.name)),
                "{}",
                spec.name
            );
        }
        for (name, _) in OUTPUTS {
            assert!(y.contains(&format!("\n  {name}:\n")), "{name}");
        }
        assert!(y.ends_with("  image: 'Dockerfile'\n"));
    }

    #[test]
    fn sections_are_replaced() {
        let doc = "a\n<!-- BEGIN X -->\nold\n<!-- END X -->\nb";
        assert_eq!(
            replace_section(doc, "X", "new\n").unwrap(),
            "a\n<!-- BEGIN X -->\nnew\n<!-- END X -->\nb"
        );
        assert!(replace_section(doc, "Y", "").is_none());
    }
}
