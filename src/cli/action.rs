//! GitHub Actions I/O: the output file, the step summary and workflow commands.
//!
//! Formats follow the runner's own parsers (see `github-action-runtime.md` §2): outputs are
//! appended to `$GITHUB_OUTPUT` in heredoc form with a fresh random delimiter per value and
//! LF line endings; the summary is Markdown appended to `$GITHUB_STEP_SUMMARY` and kept well
//! under the runner's 1 MiB limit; workflow commands are single lines with the runner's
//! escaping. Every value is passed through [`crate::util::secrets::redact`] on the way out.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::util::secrets::redact;

/// The runner drops a step summary larger than 1 MiB; stay far below it.
pub const SUMMARY_LIMIT: usize = 512 * 1024;

/// Action outputs collected during a run and written once at the end.
#[derive(Debug, Default)]
pub struct Outputs {
    entries: Vec<(String, String)>,
}

impl Outputs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set (or replace) an output value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(e) = self.entries.iter_mut().find(|(k, _)| k == name) {
            e.1 = value;
        } else {
            self.entries.push((name.to_string(), value));
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// Render the entries in the runner's heredoc form.
    pub fn render(&self) -> Result<String> {
        let mut out = String::new();
        for (name, value) in &self.entries {
            if name.is_empty() || name.contains(['\n', '\r', '=']) || name.contains("<<") {
                bail!("invalid output name {name:?}");
            }
            let value = redact(value);
            let value = value.replace("\r\n", "\n").replace('\r', "\n");
            let delim = loop {
                let d = format!("ghadelimiter_{}", random_hex(16));
                if !value.contains(&d) {
                    break d;
                }
            };
            out.push_str(&format!("{name}<<{delim}\n{value}\n{delim}\n"));
        }
        Ok(out)
    }

    /// Append the outputs to `$GITHUB_OUTPUT`, if the variable is set.
    pub fn write(&self) -> Result<()> {
        let Some(path) = env_path("GITHUB_OUTPUT") else {
            return Ok(());
        };
        let text = self.render()?;
        append(&path, &text).with_context(|| format!("writing outputs to {}", path.display()))
    }
}

/// Set an environment variable for the job's later steps (`$GITHUB_ENV`), if running there.
pub fn export_env(name: &str, value: &str) -> Result<()> {
    let Some(path) = env_path("GITHUB_ENV") else {
        return Ok(());
    };
    let mut o = Outputs::new();
    o.set(name, value);
    append(&path, &o.render()?).with_context(|| format!("writing {}", path.display()))
}

/// Append Markdown to `$GITHUB_STEP_SUMMARY`, if set, cutting it to [`SUMMARY_LIMIT`].
pub fn write_summary(markdown: &str) -> Result<()> {
    let Some(path) = env_path("GITHUB_STEP_SUMMARY") else {
        return Ok(());
    };
    let text = redact(markdown);
    let text = truncate_utf8(&text, SUMMARY_LIMIT, "\n\n_(summary truncated)_\n");
    append(&path, &text).with_context(|| format!("writing job summary to {}", path.display()))
}

/// Escape text for a Markdown table cell (pipes, newlines, backticks and HTML).
pub fn md_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push('\''),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

fn truncate_utf8(s: &str, limit: usize, marker: &str) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let mut cut = limit.saturating_sub(marker.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{marker}", &s[..cut])
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn append(path: &PathBuf, text: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().append(true).create(true).open(path)?;
    f.write_all(text.as_bytes())?;
    f.flush()
}

fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_render_uses_distinct_random_delimiters() {
        let mut o = Outputs::new();
        o.set("a", "one");
        o.set("b", "two\nlines");
        o.set("a", "uno");
        let text = o.render().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("a<<ghadelimiter_"));
        assert_eq!(lines[1], "uno");
        let d1 = lines[0].split("<<").nth(1).unwrap();
        assert_eq!(lines[2], d1);
        assert!(lines[3].starts_with("b<<ghadelimiter_"));
        assert_ne!(lines[3].split("<<").nth(1).unwrap(), d1);
        assert_eq!(&lines[4..6], &["two", "lines"]);
        assert!(!text.contains('\r'));
    }

    #[test]
    fn rejects_bad_output_names() {
        let mut o = Outputs::new();
        o.set("x=y", "v");
        assert!(o.render().is_err());
    }

    #[test]
    fn md_cells_cannot_break_tables() {
        assert_eq!(md_cell("a|b\nc<script>`"), "a\\|b c&lt;script&gt;'");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(10);
        let t = truncate_utf8(&s, 7, "!");
        assert!(t.ends_with('!'));
        assert!(t.len() <= 7);
    }
}
