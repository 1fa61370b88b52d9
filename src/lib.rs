//! d1-backup: exact, streamed backups of Cloudflare D1 databases to R2.
//!
//! Layers run one way, lowest first (`tests/architecture.rs` enforces it):
//!
//! 1. [`util`] — logging, secrets, workflow commands, progress, scratch files;
//! 2. [`sqltext`] (quoting, exact REAL literals, the statement splitter), [`rows`]
//!    (values, pages) and [`keys`] (the key layout);
//! 3. [`manifest`] (what a backup records), [`encrypt`] (age keys), [`sign`] (signed
//!    manifests), [`retention`] and [`shard`] (pure policies);
//! 4. [`d1`] (the Cloudflare API client) and [`store`] (object stores: R2/S3, a directory);
//! 5. [`source`] — where rows come from: D1 or a SQLite file;
//! 6. [`dump`] — the two dump methods, query and export, and the schema reader;
//! 7. [`write`] (dump → zstd → age → upload), [`read`] (verified reading, verify, restore),
//!    [`catalog`] (the backups in a store, `latest`, pruning);
//! 8. [`cli`] — the command layer: inputs, commands, exit codes, runner I/O.
//!
//! `main.rs` only calls [`cli::main_entry`].

pub(crate) mod catalog;
pub mod cli;
pub mod d1;
pub mod dump;
pub(crate) mod encrypt;
pub mod keys;
pub mod manifest;
pub mod read;
pub(crate) mod retention;
pub mod rows;
pub mod shard;
pub mod sign;
pub mod source;
pub mod sqltext;
pub mod store;
pub mod util;
pub(crate) mod write;
