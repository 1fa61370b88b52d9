//! The Actions runner's parser for `$GITHUB_OUTPUT` (`FileCommandManager.cs`
//! `EnvFileKeyValuePairs`), re-implemented to check what the tool writes.

use std::collections::BTreeMap;

/// Parse an output file by the runner's rules; `Err` where the runner would fail the step.
pub fn parse_outputs(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    // Linux runner: only "\n" ends a line.
    let lines: Vec<&str> = text.split('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if line.is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let (k, v) = line.split_at(e);
                if k.is_empty() {
                    return Err(format!("empty name on line {i}"));
                }
                out.insert(k.to_string(), v[1..].to_string());
            }
            (_, Some(h)) => {
                let name = &line[..h];
                let delim = &line[h + 2..];
                if name.is_empty() || delim.is_empty() {
                    return Err(format!("empty name or delimiter on line {i}"));
                }
                let mut value: Vec<&str> = Vec::new();
                loop {
                    if i >= lines.len() {
                        return Err(format!("Matching delimiter not found '{delim}'"));
                    }
                    let l = lines[i];
                    i += 1;
                    if l == delim {
                        break;
                    }
                    if i >= lines.len() && !text.ends_with('\n') {
                        return Err("EOF marker missing new line".into());
                    }
                    value.push(l);
                }
                out.insert(name.to_string(), value.join("\n"));
            }
            _ => return Err(format!("invalid line {i}: {line:?}")),
        }
    }
    Ok(out)
}
