//! The compression stage: SQL in, stored bytes out, on its own thread.
//!
//! Receives SQL chunks from the dumper, hashes them (SHA-256 of the SQL), compresses them
//! with zstd (multi-threaded, with a frame checksum) or passes them through at level 0, and
//! writes the result into a [`PartWriter`] that hashes the stored bytes and cuts them into
//! equal parts for the uploader. Channels between the stages are bounded, so memory stays
//! flat however large the database is.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::dump::Piece;
use crate::store::parts::{PartWriter, WrittenObject};
use crate::util::progress::Progress;

/// zstd job size with worker threads (the default, 4× the window, costs tens of MiB).
const JOB_SIZE: u32 = 2 << 20;

/// Compression settings.
#[derive(Debug, Clone, Copy)]
pub struct Compression {
    /// zstd level; 0 stores plain SQL.
    pub level: i32,
    /// zstd worker threads (0 = compress on the calling thread).
    pub workers: u32,
}

impl Compression {
    /// `threads`: zstd workers, `None` for one per CPU (at most 4).
    pub fn new(level: i32, threads: Option<u32>) -> Compression {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        Compression {
            level,
            workers: threads.unwrap_or(if cpus > 1 { cpus.min(4) } else { 0 }),
        }
    }

    /// Object name suffix.
    pub fn extension(&self) -> &'static str {
        if self.level == 0 { ".sql" } else { ".sql.zst" }
    }

    pub fn content_type(&self) -> &'static str {
        if self.level == 0 {
            "application/sql"
        } else {
            "application/zstd"
        }
    }

    pub fn name(&self) -> &'static str {
        if self.level == 0 { "none" } else { "zstd" }
    }
}

/// Sizes and hashes of what went through the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    pub sql_bytes: u64,
    pub sql_sha256: String,
    pub object_bytes: u64,
    pub object_sha256: String,
    pub parts: u64,
}

/// A transform between the compressor and the part writer (encryption plugs in here).
pub type Wrap = Box<dyn FnOnce(PartWriter) -> Result<Box<dyn FinishWrite>> + Send>;

/// A writer that must be finished explicitly and hands back the [`PartWriter`].
pub trait FinishWrite: Write + Send {
    fn finish(self: Box<Self>) -> Result<PartWriter>;
}

impl FinishWrite for PartWriter {
    fn finish(self: Box<Self>) -> Result<PartWriter> {
        Ok(*self)
    }
}

struct Zstd(zstd::stream::write::Encoder<'static, Box<dyn FinishWrite>>);

impl Write for Zstd {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl FinishWrite for Zstd {
    fn finish(self: Box<Self>) -> Result<PartWriter> {
        let inner = self.0.finish().context("finishing zstd stream")?;
        inner.finish()
    }
}

/// Run the stage (blocking; call from `spawn_blocking`).
pub fn run(
    mut rx: mpsc::Receiver<Piece>,
    parts: PartWriter,
    compression: Compression,
    wrap: Option<Wrap>,
    progress: Arc<Progress>,
) -> Result<StreamStats> {
    let inner: Box<dyn FinishWrite> = match wrap {
        Some(w) => w(parts)?,
        None => Box::new(parts),
    };
    let mut writer: Box<dyn FinishWrite> = if compression.level == 0 {
        inner
    } else {
        let mut enc =
            zstd::stream::write::Encoder::new(inner, compression.level).context("starting zstd")?;
        enc.include_checksum(true).context("configuring zstd")?;
        if compression.workers > 0 {
            enc.multithread(compression.workers)
                .context("starting zstd worker threads")?;
            // Small jobs keep zstd's buffers (a few jobs per worker) to a few MiB.
            enc.set_parameter(zstd::stream::raw::CParameter::JobSize(JOB_SIZE))
                .context("configuring zstd")?;
        }
        Box::new(Zstd(enc))
    };
    let mut sql_hash = Sha256::new();
    let mut sql_bytes = 0u64;
    loop {
        match rx.blocking_recv() {
            Some(Piece::Data(chunk)) => {
                sql_hash.update(&chunk);
                sql_bytes += chunk.len() as u64;
                progress.add_sql(chunk.len() as u64);
                writer.write_all(&chunk).map_err(io_error)?;
            }
            Some(Piece::End) => break,
            None => return Err(anyhow!(crate::util::PipelineClosed)),
        }
    }
    let parts = writer.finish()?;
    let WrittenObject {
        bytes,
        sha256,
        parts,
    } = parts.finish().map_err(io_error)?;
    Ok(StreamStats {
        sql_bytes,
        sql_sha256: hex::encode(sql_hash.finalize()),
        object_bytes: bytes,
        object_sha256: sha256,
        parts,
    })
}

/// Keep a closed-pipeline marker recognisable through `io::Error`.
fn io_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow!(crate::util::PipelineClosed)
    } else {
        anyhow::Error::from(e).context("compressing the dump")
    }
}
