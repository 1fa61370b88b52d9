//! The decoding harness of the `d1_response` fuzz target, shared with `tests/props.rs`
//! (which runs it over the seed corpus on stable, without libFuzzer).
//!
//! It feeds arbitrary bytes to every public decoder of a D1 API answer:
//!
//! * the Cloudflare envelope (`{success, errors, messages, result, result_info}`) with each
//!   result type the client asks for (`/raw` results with their [`Value`]s, database info,
//!   lists, the Time Travel bookmark, token verification, untyped JSON);
//! * the compact [`Page`] of a `/raw` result (`{columns, rows}`, serde path);
//! * the streaming [`PageDecoder`] the dumper uses for pages, fed whole, byte by byte and in
//!   chunks: it must never panic and must decode the same thing however the body is split;
//! * the `Retry-After` header parser, on the first line of the input;
//! * the cell checker every dumped cell passes (each decoded cell: a cell it accepts must,
//!   as the dump writes it, be accepted as a value by the restore grammar), and the restore grammar itself on
//!   the input read as one statement.
//!
//! Whatever decodes is read back through the accessors the product uses, so a decoder that
//! builds an inconsistent value panics here rather than later in a dump.

use std::time::Duration;

use d1_backup::d1::retry::parse_retry_after;
use d1_backup::d1::stream::{Decoded, PageDecoder};
use d1_backup::d1::types::{BookmarkResult, DatabaseInfo, Envelope, RawResult, TokenInfo};
use d1_backup::rows::Page;
use d1_backup::rows::Value;
use d1_backup::sqltext::cell::check_cell;
use d1_backup::sqltext::statement::DumpGrammar;

/// Decode `data` every way the product decodes a D1 answer. Panics only on a product bug.
pub fn decode_d1_response(data: &[u8]) {
    // The envelope, with each result type the client deserializes.
    if let Ok(env) = serde_json::from_slice::<Envelope<Vec<RawResult>>>(data) {
        touch_envelope(&env);
        for r in env.result.iter().flatten() {
            if let Some(res) = &r.results {
                touch_rows(&res.rows);
                let _ = res.columns.len();
            }
        }
    }
    if let Ok(env) = serde_json::from_slice::<Envelope<serde_json::Value>>(data) {
        touch_envelope(&env);
    }
    if let Ok(env) = serde_json::from_slice::<Envelope<Vec<DatabaseInfo>>>(data) {
        touch_envelope(&env);
    }
    if let Ok(env) = serde_json::from_slice::<Envelope<DatabaseInfo>>(data) {
        touch_envelope(&env);
    }
    if let Ok(env) = serde_json::from_slice::<Envelope<BookmarkResult>>(data) {
        touch_envelope(&env);
    }
    if let Ok(env) = serde_json::from_slice::<Envelope<TokenInfo>>(data) {
        touch_envelope(&env);
    }
    // A bare value list (what a `/raw` row is).
    if let Ok(values) = serde_json::from_slice::<Vec<Value>>(data) {
        touch_rows(&[values]);
    }
    // The compact page, serde path.
    if let Ok(page) = serde_json::from_slice::<Page>(data) {
        touch_page(&page);
    }

    // The streaming page decoder: whole, byte by byte, and in chunks of a size the input
    // picks. Every split must give the same answer (the same error included).
    let whole = stream_decode(data, data.len().max(1));
    let bytewise = stream_decode(data, 1);
    assert_eq!(
        whole, bytewise,
        "the decoder's answer depends on how the body is split"
    );
    let chunk = 2 + usize::from(data.first().copied().unwrap_or(0) % 61);
    let chunked = stream_decode(data, chunk);
    assert_eq!(
        whole, chunked,
        "the decoder's answer depends on chunks of {chunk} bytes"
    );
    if let Ok(decoded) = &whole {
        for page in &decoded.pages {
            touch_page(page);
        }
        for (code, message) in &decoded.errors {
            let _ = (code, message.len());
        }
    }

    // The restore grammar on the input as one statement: it may refuse, never panic.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = DumpGrammar::with_tables(["t"]).check(text);
    }

    // `Retry-After`, from the first line (headers are short).
    let first_line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if first_line.len() <= 128
        && let Ok(text) = std::str::from_utf8(first_line)
    {
        let now = chrono::DateTime::<chrono::Utc>::from_timestamp(1_750_000_000, 0)
            .expect("a valid timestamp");
        if let Some(d) = parse_retry_after(text, now) {
            let _: Duration = d;
        }
    }
}

/// Run the streaming decoder over `data` fed in chunks of `chunk` bytes.
pub fn stream_decode(data: &[u8], chunk: usize) -> Result<Decoded, String> {
    let mut decoder = PageDecoder::new();
    for piece in data.chunks(chunk.max(1)) {
        decoder.feed(piece)?;
    }
    decoder.finish()
}

fn touch_envelope<T>(env: &Envelope<T>) {
    let _ = (env.success, env.result.is_some(), env.messages.len());
    for e in &env.errors {
        let _ = (e.code, e.message.len());
    }
    if let Some(info) = &env.result_info {
        let _ = (info.page, info.per_page, info.count, info.total_count);
    }
}

fn touch_rows(rows: &[Vec<Value>]) {
    for row in rows {
        for v in row {
            let _ = (v.as_str(), v.as_i64(), v.is_null());
        }
    }
    let _ = d1_backup::source::d1::estimate_bytes(rows);
}

/// Read every cell of a page back, as the dumper does.
fn touch_page(page: &Page) {
    let _ = page.check(page.width());
    let _ = (page.bytes(), page.len_cells(), page.is_empty());
    for r in 0..page.len() {
        let row = page.row(r);
        assert_eq!(row.len(), page.width());
        for (c, cell) in row.iter().enumerate() {
            assert_eq!(page.cell(r, c), *cell);
            if check_cell(cell).is_ok() {
                let written = d1_backup::dump::sql::normalize_literal(cell);
                let insert = format!("INSERT INTO t VALUES({written});");
                if let Err(e) = DumpGrammar::with_tables(["t"]).check(&insert) {
                    panic!("the cell checker passed {cell:?}, the restore grammar refuses it: {e}");
                }
            }
        }
    }
}
