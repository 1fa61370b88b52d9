//! The `export` dump method: D1's own export API, streamed into the pipeline.
//!
//! Before anything is started, the schema is checked: D1's export fails on virtual tables
//! (FTS5) and can leave the database answering "Currently processing a long-running export"
//! to every query, so an export that would include one is refused up front. With a table
//! filter, the filter sent to D1 also names the indexes, triggers and views of the kept
//! tables (D1 keeps an object only when its own name is in the filter).
//!
//! The signed URL's body is passed on byte for byte (the stored SQL is exactly what D1
//! served); `INSERT` lines are counted per table on the way for the manifest.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::compress::Piece;
use crate::config::InputError;
use crate::d1::export::{ExportDone, ExportOptions};
use crate::dump::schema::Schema;
use crate::dump::{DumpOptions, TableStats};
use crate::source::Source;
use crate::source::d1::D1Source;

/// What an export produced.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    pub bookmark: String,
    /// Seconds the database was blocked by the export.
    pub blocked_seconds: f64,
    pub tables: Vec<TableStats>,
    pub row_count: u64,
}

/// Refuse an export that would include a virtual table.
pub fn preflight(schema: &Schema) -> Result<(), InputError> {
    let virtuals: Vec<String> = schema
        .tables
        .iter()
        .filter(|t| t.is_virtual())
        .map(|t| format!("{:?}", t.name))
        .collect();
    if virtuals.is_empty() {
        return Ok(());
    }
    Err(InputError::new(
        "method",
        format!(
            "D1's export cannot handle virtual tables and may leave the database blocked; this database has {}. Use `method: query` (which backs them up), or leave them out with `exclude-tables`",
            virtuals.join(", ")
        ),
    ))
}

/// The export's `dump_options` for a filtered schema.
pub fn export_options(schema: &Schema, opts: &DumpOptions, filtered: bool) -> ExportOptions {
    let tables = if filtered {
        schema
            .tables
            .iter()
            .map(|t| t.name.clone())
            .chain(schema.objects.iter().map(|o| o.name.clone()))
            .collect()
    } else {
        Vec::new()
    };
    ExportOptions {
        no_data: opts.no_data,
        no_schema: opts.no_schema,
        tables,
    }
}

/// Start the export and wait for it to finish (the database is blocked meanwhile).
pub async fn start(
    source: &D1Source,
    schema: &Schema,
    opts: &DumpOptions,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<ExportDone> {
    preflight(schema)?;
    let filtered = opts.filter.include.is_some() || !opts.filter.exclude.is_empty();
    let options = export_options(schema, opts, filtered);
    let done = tokio::select! {
        r = source.client().export(&source.info().id, &options, timeout) => r?,
        _ = cancel.cancelled() => bail!(crate::Cancelled),
    };
    crate::log::info(format!(
        "D1 export finished after {:.1}s (the database was blocked meanwhile)",
        done.blocked.as_secs_f64()
    ));
    Ok(done)
}

/// Stream the finished export's SQL into `tx`, byte for byte.
pub async fn download(
    source: &D1Source,
    done: &ExportDone,
    schema: &Schema,
    tx: &mpsc::Sender<Piece>,
    cancel: &CancellationToken,
) -> Result<ExportOutcome> {
    let failed = |e: reqwest::Error| {
        anyhow!(
            "downloading the export failed: {}",
            crate::d1::error_chain(&e)
        )
    };
    let mut resp = source
        .client()
        .http()
        .get(&done.signed_url)
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .map_err(failed)?;
    if !resp.status().is_success() {
        bail!(
            "downloading the export failed: the signed URL answered HTTP {} (it is valid for one hour)",
            resp.status().as_u16()
        );
    }
    let mut counter = InsertCounter::default();
    loop {
        let chunk = tokio::select! {
            c = resp.chunk() => c.map_err(failed)?,
            _ = cancel.cancelled() => bail!(crate::Cancelled),
        };
        let Some(chunk) = chunk else { break };
        counter.feed(&chunk);
        tx.send(Piece::Data(chunk))
            .await
            .map_err(|_| anyhow!(crate::PipelineClosed))?;
    }
    let counts = counter.finish();
    let tables: Vec<TableStats> = schema
        .tables
        .iter()
        .map(|t| TableStats {
            name: t.name.clone(),
            kind: "table".into(),
            rows: counts.get(&t.name).copied().unwrap_or(0),
        })
        .collect();
    let row_count = tables.iter().map(|t| t.rows).sum();
    Ok(ExportOutcome {
        bookmark: done.bookmark.clone(),
        blocked_seconds: done.blocked.as_secs_f64(),
        tables,
        row_count,
    })
}

/// Counts `INSERT INTO "<table>"` lines of a SQL stream, across chunk boundaries.
#[derive(Debug, Default)]
pub struct InsertCounter {
    /// Start of the current line (up to a bound), or `None` once the line is decided.
    head: Option<Vec<u8>>,
    counts: HashMap<String, u64>,
    started: bool,
}

/// Enough of a line to hold `INSERT INTO "` and any sane table name.
const HEAD_LIMIT: usize = 64 * 1024;

impl InsertCounter {
    pub fn feed(&mut self, mut data: &[u8]) {
        if !self.started {
            self.started = true;
            self.head = Some(Vec::new());
        }
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n');
            let (piece, rest, ends) = match nl {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            if let Some(head) = self.head.as_mut()
                && head.len() < HEAD_LIMIT
            {
                let take = (HEAD_LIMIT - head.len()).min(piece.len());
                head.extend_from_slice(&piece[..take]);
                if let Some(decided) = decide(head) {
                    if let Some(name) = decided {
                        *self.counts.entry(name).or_default() += 1;
                    }
                    self.head = None;
                }
            }
            if ends {
                self.end_line();
                self.head = Some(Vec::new());
            }
            data = rest;
        }
    }

    fn end_line(&mut self) {
        if let Some(head) = self.head.take()
            && let Some(Some(name)) = decide_final(&head)
        {
            *self.counts.entry(name).or_default() += 1;
        }
    }

    pub fn finish(mut self) -> HashMap<String, u64> {
        self.end_line();
        self.counts
    }
}

/// `Some(Some(name))`: an INSERT into `name`; `Some(None)`: not an INSERT; `None`: need more.
fn decide(head: &[u8]) -> Option<Option<String>> {
    const P: &[u8] = b"INSERT INTO \"";
    let n = head.len().min(P.len());
    if head[..n] != P[..n] {
        return Some(None);
    }
    if head.len() < P.len() {
        return None;
    }
    // Quoted identifier with "" escapes.
    let mut name = Vec::new();
    let mut i = P.len();
    while i < head.len() {
        if head[i] == b'"' {
            if head.get(i + 1) == Some(&b'"') {
                name.push(b'"');
                i += 2;
                continue;
            }
            if i + 1 >= head.len() {
                return None; // might be the first half of an escaped quote
            }
            return Some(Some(String::from_utf8_lossy(&name).into_owned()));
        }
        name.push(head[i]);
        i += 1;
    }
    None
}

fn decide_final(head: &[u8]) -> Option<Option<String>> {
    match decide(head) {
        Some(d) => Some(d),
        None if head.ends_with(b"\"") => {
            // The identifier's closing quote was the last byte of the line.
            let mut h = head.to_vec();
            h.push(b' ');
            decide(&h)
        }
        None => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_inserts_across_chunk_boundaries() {
        let sql = "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE \"a\"(x);\nINSERT INTO \"a\" (\"x\") VALUES(1);\nINSERT INTO \"a\" (\"x\") VALUES('INSERT INTO \"b\"');\nINSERT INTO \"we\"\"ird\" (\"x\") VALUES(replace('1\\n2','\\n',char(10)));\nINSERT INTO \"b\" (\"x\") VALUES(2);";
        for chunk in 1..sql.len() {
            let mut c = InsertCounter::default();
            for piece in sql.as_bytes().chunks(chunk) {
                c.feed(piece);
            }
            let counts = c.finish();
            assert_eq!(counts.get("a"), Some(&2), "chunk {chunk}");
            assert_eq!(counts.get("we\"ird"), Some(&1), "chunk {chunk}");
            assert_eq!(counts.get("b"), Some(&1), "chunk {chunk}");
            assert_eq!(counts.len(), 3);
        }
    }
}
