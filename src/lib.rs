//! d1-backup: exact, streamed backups of Cloudflare D1 databases to R2.
//!
//! The pipeline, one module per stage:
//!
//! * [`inputs`] / [`config`] — action inputs, environment and flags → validated settings;
//! * [`source`] (with the REST client in [`d1`]) — where rows come from: D1 or a SQLite file;
//! * [`dump`] — the exact SQL dump (schema, keyset-paged data, statement splitting);
//! * [`compress`] — zstd and hashing on a dedicated thread;
//! * [`store`] — the object-store trait, R2/S3 and local-directory implementations;
//! * [`pipeline`] — the bounded channels that join producer, compressor and uploader;
//! * [`backup`] / [`manifest`] — the command itself and what it records;
//! * [`action`] / [`report`] / [`log`] / [`secrets`] — what the caller sees, safely.
//!
//! [`app`] wires it into a command-line program; `main.rs` only calls it.

pub mod action;
pub mod app;
pub mod backup;
pub mod catalog;
pub mod codec;
pub mod compress;
pub mod config;
pub mod contract;
pub mod d1;
pub mod dump;
pub mod encrypt;
pub mod export;
pub mod inputs;
pub mod literal;
pub mod load;
pub mod log;
pub mod manifest;
pub mod many;
pub mod pipeline;
pub mod progress;
pub mod prune;
pub mod report;
pub mod restore;
pub mod retention;
pub mod scratch;
pub mod secrets;
pub mod source;
pub mod sqlsplit;
pub mod store;
pub mod stored;
pub mod verify;

/// A stage stopped because another stage stopped first (never the root cause).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("pipeline closed")]
pub struct PipelineClosed;

/// The run was cancelled (SIGINT/SIGTERM).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;
