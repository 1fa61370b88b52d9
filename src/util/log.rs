//! Human-readable progress logging on stderr.
//!
//! Log lines can carry untrusted text (table names, server error messages). Two rules keep
//! them from hijacking the Actions log: control characters are escaped so one message is
//! always exactly one line, and a line that would start with `::` (a workflow command) is
//! prefixed so the runner does not parse it. Secrets are redacted. stdout is reserved for
//! workflow commands and the final JSON report.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::util::secrets::redact;

static DEBUG: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);

/// Enable debug lines (`RUNNER_DEBUG=1` or `--verbose`).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Suppress info lines (errors and warnings still print).
pub fn set_quiet(on: bool) {
    QUIET.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Make a message safe to print as one log line.
pub fn sanitize(msg: &str) -> String {
    let redacted = redact(msg);
    let mut out = String::with_capacity(redacted.len());
    for c in redacted.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push(' '),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    if out.trim_start().starts_with("::") {
        out.insert_str(0, "| ");
    }
    // The runner also parses the legacy `##[command]` form anywhere in a line.
    if out.contains("##[") {
        out = out.replace("##[", "## [");
    }
    out
}

tokio::task_local! {
    /// The database a line belongs to, in a run that backs up several at once.
    static SCOPE: String;
}

/// Run `f` with every log line it prints prefixed by `[label] ` (also inside log groups,
/// which become plain headings: groups of concurrent work would interleave).
pub async fn scoped<F: std::future::Future>(label: &str, f: F) -> F::Output {
    SCOPE.scope(sanitize(label), f).await
}

fn scope() -> Option<String> {
    SCOPE.try_with(|s| format!("[{s}] ")).ok()
}

fn emit(prefix: &str, msg: &str) {
    let line = sanitize(msg);
    let scope = scope().unwrap_or_default();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{prefix}{scope}{line}");
}

pub fn info(msg: impl AsRef<str>) {
    if !QUIET.load(Ordering::Relaxed) {
        emit("", msg.as_ref());
    }
}

pub fn warn(msg: impl AsRef<str>) {
    emit("warning: ", msg.as_ref());
    let scope = scope().unwrap_or_default();
    crate::util::workflow::warning_annotation("d1-backup", &format!("{scope}{}", msg.as_ref()));
}

pub fn error(msg: impl AsRef<str>) {
    emit("error: ", msg.as_ref());
}

/// Start a collapsible log group (`::group::` under Actions, a heading elsewhere). Written
/// to stderr, the stream every log line goes to, so lines stay inside their group.
pub fn group(title: impl AsRef<str>) {
    if scope().is_some() {
        info(format!("== {}", title.as_ref()));
        return;
    }
    let title = sanitize(title.as_ref());
    let mut err = std::io::stderr().lock();
    if crate::util::workflow::is_actions() {
        let _ = writeln!(
            err,
            "::group::{}",
            crate::util::workflow::escape_data(&title)
        );
    } else if !QUIET.load(Ordering::Relaxed) {
        let _ = writeln!(err, "== {title}");
    }
}

/// End the current log group.
pub fn endgroup() {
    if crate::util::workflow::is_actions() && scope().is_none() {
        let _ = writeln!(std::io::stderr().lock(), "::endgroup::");
    }
}

/// A log group that ends when dropped (so an early `?` return closes it too).
pub struct Group(());

impl Group {
    pub fn new(title: impl AsRef<str>) -> Group {
        group(title);
        Group(())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        endgroup();
    }
}

pub fn debug(msg: impl AsRef<str>) {
    if debug_enabled() {
        emit("debug: ", msg.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_is_one_line() {
        assert_eq!(sanitize("a\nb\rc"), "a\\nb\\rc");
        assert_eq!(sanitize("x\u{1b}[31m"), "x\\u{1b}[31m");
    }

    #[test]
    fn legacy_commands_are_neutralised() {
        assert_eq!(
            sanitize("table \"##[set-output name=x;]1\""),
            "table \"## [set-output name=x;]1\""
        );
    }

    #[test]
    fn workflow_commands_are_neutralised() {
        assert_eq!(
            sanitize("::set-output name=x::y"),
            "| ::set-output name=x::y"
        );
        assert_eq!(sanitize("  ::add-mask::z"), "|   ::add-mask::z");
        // A newline inside the message can no longer start a new command line.
        assert!(!sanitize("ok\n::error::boom").contains('\n'));
    }
}
