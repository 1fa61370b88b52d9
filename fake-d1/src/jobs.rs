//! The records of a database's long-running work, which the shared state keeps behind each
//! database's jobs lock: where its export and its import stand, and the import files uploaded
//! to it. Only records and their bookkeeping; the handlers that drive them are `export`,
//! `import` and `signed`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::values::Json;

/// Where a database's export stands.
#[derive(Debug, Default)]
pub enum ExportJob {
    #[default]
    Idle,
    Active {
        bookmark: String,
        filename: String,
        path: PathBuf,
        polls_left: u32,
        parts: u32,
        last_poll: Instant,
    },
    /// Finished (complete or error); a repeated poll with the same bookmark gets the same answer.
    Finished { bookmark: String, result: String },
    /// Not polled in time.
    Cancelled { bookmark: String },
}

impl ExportJob {
    pub fn is_active(&self) -> bool {
        matches!(self, ExportJob::Active { .. })
    }

    /// An active export that was not polled within `timeout` is cancelled.
    pub fn refresh(&mut self, timeout: Duration) {
        if let ExportJob::Active {
            bookmark,
            last_poll,
            ..
        } = self
            && last_poll.elapsed() > timeout
        {
            *self = ExportJob::Cancelled {
                bookmark: std::mem::take(bookmark),
            };
        }
    }
}

/// Where a database's import stands.
#[derive(Debug, Default)]
pub enum ImportJob {
    #[default]
    Idle,
    Active {
        at_bookmark: String,
        polls_left: u32,
        last_poll: Instant,
        /// The final `result`, already decided (the import ran at ingest).
        outcome: Json,
    },
}

impl ImportJob {
    pub fn is_active(&self) -> bool {
        matches!(self, ImportJob::Active { .. })
    }

    /// An import that is not polled within `timeout` stops blocking the database (its outcome
    /// is dropped; a later poll hears "Not currently importing anything.").
    pub fn refresh(&mut self, timeout: Duration) {
        if let ImportJob::Active { last_poll, .. } = self
            && last_poll.elapsed() > timeout
        {
            *self = ImportJob::Idle;
        }
    }
}

/// An uploaded import file, by filename (`<uuid>-<etag>.sql`).
#[derive(Clone, Debug)]
pub struct Upload {
    pub path: PathBuf,
    pub md5: String,
}

/// The long-running work of one database. Lock order: a database's `conn` before its `jobs`.
#[derive(Debug, Default)]
pub struct Jobs {
    pub export: ExportJob,
    pub import: ImportJob,
    pub uploads: HashMap<String, Upload>,
}

impl Jobs {
    /// Applies the poll timeout: a job that was not polled in time is dropped.
    pub fn refresh(&mut self, timeout: std::time::Duration) {
        self.export.refresh(timeout);
        self.import.refresh(timeout);
    }

    /// The error `/query` and `/raw` get while an export or import runs.
    pub fn blocked_message(&self) -> Option<&'static str> {
        if self.export.is_active() {
            Some("D1_ERROR: Currently processing a long-running export.")
        } else if self.import.is_active() {
            Some("D1_ERROR: Currently processing a long-running import.")
        } else {
            None
        }
    }
}
