//! Workflow commands: the single lines a GitHub Actions runner reads from a step's output
//! (`::add-mask::`, `::error`, `::warning`, `::group::`), with the runner's escaping. Every
//! layer may print them (logging does); the outputs file and the step summary belong to the
//! command layer (`crate::cli::action`).

use crate::util::secrets::redact;

/// True when running inside a GitHub Actions job.
pub fn is_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Escape a workflow-command message (`%`, CR, LF), as the toolkit does.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escape a workflow-command property value (message escaping plus `:` and `,`).
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Print `::add-mask::` for a secret (stdout, before anything could reveal it).
pub fn add_mask(secret: &str) {
    // Each line of a multi-line secret is masked by the runner individually; escaping keeps
    // the command on one line.
    println!("::add-mask::{}", escape_data(secret));
}

/// Print an `::error` annotation (only under Actions; the message is redacted).
pub fn error_annotation(title: &str, message: &str) {
    if is_actions() {
        println!(
            "::error title={}::{}",
            escape_property(title),
            escape_data(&redact(message))
        );
    }
}

/// Print a `::warning` annotation (only under Actions; the message is redacted).
pub fn warning_annotation(title: &str, message: &str) {
    if is_actions() {
        println!(
            "::warning title={}::{}",
            escape_property(title),
            escape_data(&redact(message))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_the_toolkit() {
        assert_eq!(escape_data("a%b\r\nc"), "a%25b%0D%0Ac");
        assert_eq!(escape_property("a:b,c\n"), "a%3Ab%2Cc%0A");
    }
}
