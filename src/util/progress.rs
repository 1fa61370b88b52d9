//! Progress of a running backup, printed at a steady interval.
//!
//! The stages add to shared counters (rows dumped, SQL bytes, stored bytes, the current
//! table); a ticker prints one line every `progress-interval` so a long job never looks hung.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters shared by the stages of one backup.
#[derive(Debug)]
pub struct Progress {
    label: String,
    started: Instant,
    rows: AtomicU64,
    sql_bytes: AtomicU64,
    stored_bytes: AtomicU64,
    table: Mutex<String>,
}

impl Progress {
    pub fn new(label: &str) -> Arc<Progress> {
        Arc::new(Progress {
            label: label.to_string(),
            started: Instant::now(),
            rows: AtomicU64::new(0),
            sql_bytes: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
            table: Mutex::new(String::new()),
        })
    }

    pub fn add_rows(&self, n: u64) {
        self.rows.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_sql(&self, n: u64) {
        self.sql_bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_stored(&self, n: u64) {
        self.stored_bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_table(&self, name: &str) {
        if let Ok(mut t) = self.table.lock() {
            name.clone_into(&mut t);
        }
    }

    /// One human line: where the backup is and how fast it goes.
    pub fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let sql = self.sql_bytes.load(Ordering::Relaxed);
        let table = self.table.lock().map(|t| t.clone()).unwrap_or_default();
        let at = if table.is_empty() {
            String::new()
        } else {
            format!(" (table {table:?})")
        };
        format!(
            "{}: {} rows, {} of SQL, {} stored, {}/s, {:.0}s{at}",
            self.label,
            self.rows.load(Ordering::Relaxed),
            human_bytes(sql),
            human_bytes(self.stored_bytes.load(Ordering::Relaxed)),
            human_bytes((sql as f64 / secs) as u64),
            secs,
        )
    }
}

/// Print `progress.line()` every `every` until the returned guard is dropped.
pub fn ticker(progress: Arc<Progress>, every: Option<Duration>) -> Ticker {
    let handle = every.map(|every| {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                crate::util::log::info(progress.line());
            }
        })
    });
    Ticker(handle)
}

/// Stops the ticker when dropped.
pub struct Ticker(Option<tokio::task::JoinHandle<()>>);

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn the_line_shows_counters() {
        let p = Progress::new("prod");
        p.add_rows(10);
        p.add_sql(2048);
        p.add_stored(1024);
        p.set_table("users");
        let line = p.line();
        assert!(
            line.starts_with("prod: 10 rows, 2.0 KiB of SQL, 1.0 KiB stored"),
            "{line}"
        );
        assert!(line.ends_with("(table \"users\")"), "{line}");
    }
}
