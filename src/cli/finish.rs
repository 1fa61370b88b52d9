//! How a command ends: its report as the `report` output and the last stdout line, the job
//! summary, an error annotation on failure, and the exit code. Every failure is worded by
//! [`crate::cli::errors::explain`] first.

use serde::Serialize;

use crate::cli::action::{self, Outputs};
use crate::cli::errors::{self, explain};
use crate::cli::report::{self, Status};
use crate::cli::signals;
use crate::util::{log, workflow};

/// A command that failed: what it had gathered so far, and the error.
pub struct Failure<R> {
    /// The headline (`Backup failed`, `Restore failed`, …).
    pub message: &'static str,
    pub error: anyhow::Error,
    pub report: R,
    pub outputs: Outputs,
    pub summary: String,
}

impl Failure<Status> {
    /// A failure before anything was gathered: the report is just the status.
    pub fn plain(message: &'static str, error: anyhow::Error) -> Failure<Status> {
        let error = explain(error);
        Failure {
            message,
            report: Status::failed(message, &error),
            error,
            outputs: Outputs::new(),
            summary: String::new(),
        }
    }
}

/// Report a failure (log, annotation, outputs, summary, JSON line); returns the exit code.
pub fn fail(message: &'static str, error: anyhow::Error) -> u8 {
    failed(Failure::plain(message, error))
}

/// Report a failure that kept a report, outputs and summary (e.g. a backup that was written
/// but failed its verification). The error must already be explained.
pub fn failed<R: Serialize>(f: Failure<R>) -> u8 {
    let Failure {
        message,
        error,
        report,
        mut outputs,
        summary,
    } = f;
    let text = format!("{error:#}");
    log::error(&text);
    workflow::error_annotation(message, &text);
    outputs.set("report", report::to_json(&report));
    if let Err(e) = outputs.write() {
        log::error(format!("{e:#}"));
    }
    let summary = format!(
        "{summary}\n**{}:** {}\n",
        action::md_cell(message),
        action::md_cell(&text)
    );
    if let Err(e) = action::write_summary(&summary) {
        log::warn(format!("{e:#}"));
    }
    print_report(&report);
    exit_code(&error)
}

/// Print the final report of a success: outputs, summary, JSON line; returns 0.
pub fn succeed<R: Serialize>(mut outputs: Outputs, report: &R, summary: &str) -> u8 {
    outputs.set("report", report::to_json(report));
    if let Err(e) = outputs.write() {
        return fail("Writing the outputs failed", e);
    }
    if let Err(e) = action::write_summary(summary) {
        log::warn(format!("{e:#}"));
    }
    print_report(report);
    0
}

/// The report as the last line on stdout (kept for the heartbeat).
pub fn print_report<R: Serialize>(report: &R) {
    let line = report::json_line(report);
    println!("{line}");
    if let Ok(mut last) = LAST_REPORT.lock() {
        *last = Some(line);
    }
}

/// The last report printed, if any.
pub fn last_report() -> Option<String> {
    LAST_REPORT.lock().ok().and_then(|l| l.clone())
}

static LAST_REPORT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The exit code for an error of this run (see [`errors::exit_code`]).
pub fn exit_code(error: &anyhow::Error) -> u8 {
    errors::exit_code(error, signals::received())
}
