//! The `export` dump method: D1's own export API, streamed into the pipeline.
//!
//! Before anything is started, the schema is checked: D1's export fails on virtual tables
//! (FTS5) and can leave the database answering "Currently processing a long-running export"
//! to every query, so an export that would include one is refused up front. With a table
//! filter, the filter sent to D1 also names the indexes, triggers and views of the kept
//! tables (D1 keeps an object only when its own name is in the filter).
//!
//! The signed URL's body is passed on byte for byte (the stored SQL is exactly what D1
//! served) unless it could not be restored as written: D1 writes each table's `CREATE` and
//! `INSERT`s in creation order, and an `INSERT` into a table whose foreign-key parent does not
//! exist yet fails on import (`no such table: main.parent`), even with foreign keys deferred.
//! Then, and only then, the `CREATE TABLE` statements of those parents are moved up, right
//! after the leading `PRAGMA` (see [`Reorder`]); every other byte stays as D1 wrote it, and
//! the manifest records which tables moved. `INSERT` lines are counted per table on the way.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Piece;
use crate::d1::D1Client;
use crate::d1::export::{ExportDone, ExportOptions};
use crate::dump::DumpOptions;
use crate::dump::schema::Schema;
use crate::manifest::TableStats;

/// What an export produced.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    pub bookmark: String,
    /// Seconds the database was blocked by the export.
    pub blocked_seconds: f64,
    pub tables: Vec<TableStats>,
    pub row_count: u64,
    /// Tables whose `CREATE TABLE` was moved to the top (empty: D1's bytes unchanged).
    pub moved: Vec<String>,
}

/// How the tool changes the order of D1's export, in words (manifest, README).
pub const REORDER_HOW: &str = "the CREATE TABLE statements of these tables were moved from their place in D1's export to just after its first line, because a table created before them references them with a foreign key and its rows could not be inserted otherwise; nothing else changed";

/// The `CREATE TABLE` statements to move up: tables referenced (by foreign key) by a table
/// created before them, in creation order, each with the exact text D1's export gives it.
pub fn statements_to_move(schema: &Schema, opts: &DumpOptions) -> Vec<(String, String)> {
    if opts.selection.no_schema {
        return Vec::new();
    }
    let lower = |s: &str| s.to_lowercase();
    let position: HashMap<String, usize> = schema
        .creation_order
        .iter()
        .enumerate()
        .map(|(i, n)| (lower(n), i))
        .collect();
    let mut late: Vec<(usize, &str)> = Vec::new();
    for t in &schema.tables {
        let Some(&child) = position.get(&lower(&t.name)) else {
            continue;
        };
        for parent in &t.parents {
            let Some(kept) = schema
                .tables
                .iter()
                .find(|p| lower(&p.name) == lower(parent))
            else {
                continue;
            };
            let at = position.get(&lower(&kept.name)).copied().unwrap_or(0);
            if at > child && !late.iter().any(|(i, _)| *i == at) {
                late.push((at, kept.sql.as_str()));
            }
        }
    }
    late.sort_unstable();
    late.into_iter()
        .map(|(at, sql)| (schema.creation_order[at].clone(), d1_create_statement(sql)))
        .collect()
}

/// The statement D1's export writes for a table's `sql` (miniflare `dumpSql`: when the text
/// holds `CREATE TABLE '` or `CREATE TABLE "`, `IF NOT EXISTS` is added after the first 13
/// characters).
pub fn d1_create_statement(sql: &str) -> String {
    if sql.contains("CREATE TABLE '") || sql.contains("CREATE TABLE \"") {
        let rest: String = sql.chars().skip(13).collect();
        format!("CREATE TABLE IF NOT EXISTS {rest};")
    } else {
        format!("{sql};")
    }
}

/// Moves given statements of a SQL stream to the top, in one pass with bounded memory: the
/// first line passes (D1's `PRAGMA defer_foreign_keys=TRUE;`), then the moved statements,
/// then the rest with each moved statement left out where it stood. A statement is only
/// recognised whole, at the start of a line, byte for byte, so nothing else can be dropped.
#[derive(Debug)]
pub struct Reorder {
    moved: Vec<Vec<u8>>,
    found: Vec<bool>,
    /// Before the end of the first line.
    first_line: bool,
    /// Bytes held at the start of a line while they may still be a moved statement.
    held: Vec<u8>,
    /// The current line was decided not to be a moved statement.
    passing: bool,
}

impl Reorder {
    pub fn new(statements: &[String]) -> Reorder {
        Reorder {
            moved: statements.iter().map(|s| s.as_bytes().to_vec()).collect(),
            found: vec![false; statements.len()],
            first_line: true,
            held: Vec::new(),
            passing: false,
        }
    }

    /// Feed a chunk; what may be written so far is appended to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        for &b in data {
            if self.first_line {
                out.push(b);
                if b == b'\n' {
                    self.first_line = false;
                    for m in &self.moved {
                        out.extend_from_slice(m);
                        out.push(b'\n');
                    }
                }
                continue;
            }
            if self.passing {
                out.push(b);
                if b == b'\n' {
                    self.passing = false;
                }
                continue;
            }
            self.held.push(b);
            self.decide(out, false);
        }
    }

    /// Settle the held bytes: drop them when they are a whole moved statement (followed by
    /// a newline, or by the end of the stream), pass them when they cannot become one.
    fn decide(&mut self, out: &mut Vec<u8>, at_end: bool) {
        let held = &self.held;
        let whole = self.moved.iter().enumerate().find(|(i, m)| {
            !self.found[*i]
                && ((held.len() == m.len() + 1 && held.ends_with(b"\n") && held.starts_with(m))
                    || (at_end && held.as_slice() == m.as_slice()))
        });
        if let Some((i, _)) = whole {
            self.found[i] = true;
            self.held.clear();
            return;
        }
        let may_become = !at_end
            && self
                .moved
                .iter()
                .enumerate()
                .any(|(i, m)| !self.found[i] && m.starts_with(held));
        if !may_become {
            self.passing = !held.ends_with(b"\n");
            out.append(&mut self.held);
        }
    }

    /// The stream ended: the rest to write, or an error naming a statement never seen.
    pub fn finish(mut self, names: &[String], out: &mut Vec<u8>) -> Result<()> {
        if self.first_line {
            // No newline at all: the moved statements still go after the only line.
            out.push(b'\n');
            for m in &self.moved {
                out.extend_from_slice(m);
                out.push(b'\n');
            }
        } else if !self.held.is_empty() {
            self.decide(out, true);
        }
        if let Some(i) = self.found.iter().position(|f| !f) {
            bail!(
                "D1's export could not be reordered: the CREATE TABLE statement of {:?} was not where expected; use the query method",
                names.get(i).map(String::as_str).unwrap_or("?")
            );
        }
        Ok(())
    }
}

/// D1's export cannot handle virtual tables (FTS5): it fails on them and may leave the
/// database blocked. The tables are named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "D1's export cannot handle virtual tables and may leave the database blocked; this database has {}",
    .0.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ")
)]
pub struct VirtualTables(pub Vec<String>);

/// Refuse an export that would include a virtual table.
pub fn preflight(schema: &Schema) -> Result<(), VirtualTables> {
    let virtuals: Vec<String> = schema
        .tables
        .iter()
        .filter(|t| t.is_virtual())
        .map(|t| t.name.clone())
        .collect();
    if virtuals.is_empty() {
        Ok(())
    } else {
        Err(VirtualTables(virtuals))
    }
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
        no_data: opts.selection.no_data,
        no_schema: opts.selection.no_schema,
        tables,
    }
}

/// Start the export and wait for it to finish (the database is blocked meanwhile).
pub async fn start(
    client: &D1Client,
    database_id: &str,
    schema: &Schema,
    opts: &DumpOptions,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<ExportDone> {
    preflight(schema)?;
    let filtered = opts.selection.filters();
    let options = export_options(schema, opts, filtered);
    let done = tokio::select! {
        r = client.export(database_id, &options, timeout) => r?,
        _ = cancel.cancelled() => bail!(crate::util::Cancelled),
    };
    crate::util::log::info(format!(
        "D1 export finished after {:.1}s (the database was blocked meanwhile)",
        done.blocked.as_secs_f64()
    ));
    Ok(done)
}

/// Stream the finished export's SQL into `tx`, byte for byte.
pub async fn download(
    client: &D1Client,
    done: &ExportDone,
    schema: &Schema,
    opts: &DumpOptions,
    tx: &mpsc::Sender<Piece>,
    cancel: &CancellationToken,
) -> Result<ExportOutcome> {
    let failed = |e: reqwest::Error| {
        anyhow!(
            "downloading the export failed: {}",
            crate::d1::error_chain(&e)
        )
    };
    let mut resp = client
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
    let moving = statements_to_move(schema, opts);
    let (names, statements): (Vec<String>, Vec<String>) = moving.into_iter().unzip();
    let mut reorder = (!statements.is_empty()).then(|| Reorder::new(&statements));
    let send = |bytes: bytes::Bytes| async {
        tx.send(Piece::Data(bytes))
            .await
            .map_err(|_| anyhow!(crate::util::PipelineClosed))
    };
    loop {
        let chunk = tokio::select! {
            c = resp.chunk() => c.map_err(failed)?,
            _ = cancel.cancelled() => bail!(crate::util::Cancelled),
        };
        let Some(chunk) = chunk else { break };
        counter.feed(&chunk);
        match reorder.as_mut() {
            Some(r) => {
                let mut out = Vec::with_capacity(chunk.len());
                r.feed(&chunk, &mut out);
                if !out.is_empty() {
                    send(out.into()).await?;
                }
            }
            None => send(chunk).await?,
        }
    }
    if let Some(r) = reorder {
        let mut out = Vec::new();
        r.finish(&names, &mut out)?;
        if !out.is_empty() {
            send(out.into()).await?;
        }
        crate::util::log::info(format!(
            "D1's export creates {} after a table that references it; its CREATE TABLE was moved to the top so the backup restores",
            names
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
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
        moved: names,
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

    fn reorder(sql: &str, moved: &[&str], chunk: usize) -> Result<String> {
        let moved: Vec<String> = moved.iter().map(|s| s.to_string()).collect();
        let mut r = Reorder::new(&moved);
        let mut out = Vec::new();
        for piece in sql.as_bytes().chunks(chunk) {
            r.feed(piece, &mut out);
        }
        r.finish(&moved, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn moves_whole_statements_only() {
        let create_p = "CREATE TABLE parent(\n  id INTEGER PRIMARY KEY\n);";
        let sql = format!(
            "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE child(id, p REFERENCES parent);\nINSERT INTO \"child\" VALUES(1,1);\nINSERT INTO \"child\" VALUES('CREATE TABLE parent(',2);\n{create_p}\nINSERT INTO \"parent\" VALUES(1);\nCREATE INDEX i ON child(p);"
        );
        let want = format!(
            "PRAGMA defer_foreign_keys=TRUE;\n{create_p}\nCREATE TABLE child(id, p REFERENCES parent);\nINSERT INTO \"child\" VALUES(1,1);\nINSERT INTO \"child\" VALUES('CREATE TABLE parent(',2);\nINSERT INTO \"parent\" VALUES(1);\nCREATE INDEX i ON child(p);"
        );
        for chunk in 1..sql.len() + 1 {
            assert_eq!(
                reorder(&sql, &[create_p], chunk).unwrap(),
                want,
                "chunk {chunk}"
            );
        }
        // At the very end of the stream, without a newline.
        let tail = format!("PRAGMA x;\nINSERT INTO \"c\" VALUES(1);\n{create_p}");
        assert_eq!(
            reorder(&tail, &[create_p], 3).unwrap(),
            format!("PRAGMA x;\n{create_p}\nINSERT INTO \"c\" VALUES(1);\n")
        );
        // A statement that only starts the same way is not touched; a missing one is an error.
        let similar = "PRAGMA x;\nCREATE TABLE parent(\n  id INTEGER PRIMARY KEY\n, extra);\n";
        assert!(reorder(similar, &[create_p], 5).is_err());
    }

    #[test]
    fn d1_create_text() {
        assert_eq!(
            d1_create_statement("CREATE TABLE p(a)"),
            "CREATE TABLE p(a);"
        );
        assert_eq!(
            d1_create_statement("CREATE TABLE \"p\"(a)"),
            "CREATE TABLE IF NOT EXISTS \"p\"(a);"
        );
    }

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
