//! Running SQL the way D1 does: a request's statements (split as SQLite sees them) run in ONE
//! transaction, results are encoded as D1 encodes them (see [`crate::values`]), and an import
//! runs statement by statement.

use std::time::Instant;

use rusqlite::StatementStatus;
use rusqlite::types::Value;

use crate::conn::{DbConn, d1_message};
use crate::split::split_sql;
use crate::values::{self, ENVELOPE_OK_TAIL};

/// One `sql` (possibly several statements) with its parameters.
#[derive(Clone, Debug)]
pub struct QueryItem {
    pub sql: String,
    pub params: Vec<Value>,
}

/// `/query` (rows as objects) or `/raw` (columns plus rows as arrays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Objects,
    Arrays,
}

#[derive(Debug)]
pub enum ExecError {
    /// A SQLite error, already in D1's wording.
    Sql(String),
    /// The serialized response would exceed the memory limit.
    MemoryLimit,
}

/// A finished request: the whole response envelope, whether the database was written, and the
/// sum of every statement's `meta.rows_read` in that envelope.
#[derive(Debug)]
pub struct Executed {
    pub body: String,
    pub wrote: bool,
    pub rows_read: u64,
}

/// What [`run_items`] learned: whether any statement wrote, and the rows they read.
#[derive(Clone, Copy, Debug, Default)]
struct Ran {
    wrote: bool,
    rows_read: u64,
}

/// Runs a `/query` or `/raw` request in one transaction and builds its whole JSON envelope.
/// `limit` caps the size of the serialized response (D1's isolate memory limit).
pub fn run_request(
    db: &DbConn,
    items: &[QueryItem],
    shape: Shape,
    limit: Option<usize>,
) -> Result<Executed, ExecError> {
    let sql_err = |e: rusqlite::Error| ExecError::Sql(d1_message(&e));
    db.internal(|c| c.execute_batch("BEGIN")).map_err(sql_err)?;
    let mut out = String::from("{\"result\":[");
    let ran = run_items(db, items, shape, limit, &mut out).and_then(|ran| {
        if limit.is_some_and(|l| out.len() + ENVELOPE_OK_TAIL.len() > l) {
            return Err(ExecError::MemoryLimit);
        }
        db.internal(|c| c.execute_batch("COMMIT"))
            .map_err(sql_err)?;
        Ok(ran)
    });
    match ran {
        Ok(Ran { wrote, rows_read }) => {
            out.push(']');
            out.push_str(ENVELOPE_OK_TAIL);
            Ok(Executed {
                body: out,
                wrote,
                rows_read,
            })
        }
        Err(e) => {
            if !db.conn().is_autocommit() {
                let _ = db.internal(|c| c.execute_batch("ROLLBACK"));
            }
            Err(e)
        }
    }
}

fn run_items(
    db: &DbConn,
    items: &[QueryItem],
    shape: Shape,
    limit: Option<usize>,
    out: &mut String,
) -> Result<Ran, ExecError> {
    let sql_err = |e: rusqlite::Error| ExecError::Sql(d1_message(&e));
    let too_big = |out: &String| limit.is_some_and(|l| out.len() + ENVELOPE_OK_TAIL.len() + 1 > l);
    let conn = db.conn();
    let mut ran = Ran::default();
    let mut first = true;
    for item in items {
        for piece in split_sql(&item.sql) {
            let started = Instant::now();
            let mut stmt = match conn.prepare(piece) {
                Ok(s) => s,
                Err(rusqlite::Error::Empty) => continue,
                Err(e) => return Err(sql_err(e)),
            };
            let wanted = stmt.parameter_count();
            for (i, p) in item.params.iter().take(wanted).enumerate() {
                stmt.raw_bind_parameter(i + 1, p).map_err(sql_err)?;
            }
            let readonly = stmt.readonly();
            let changes_before = conn.total_changes();
            let names: Vec<String> = stmt.column_names().map(String::from).collect();
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str("{\"results\":");
            let layout = match shape {
                Shape::Objects => {
                    out.push('[');
                    values::object_layout(&names)
                }
                Shape::Arrays => {
                    out.push_str("{\"columns\":[");
                    for (i, n) in names.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        values::push_json_str(out, n);
                    }
                    out.push_str("],\"rows\":[");
                    Vec::new()
                }
            };
            let mut returned: u64 = 0;
            {
                let mut rows = stmt.raw_query();
                while let Some(row) = rows.next().map_err(sql_err)? {
                    if returned > 0 {
                        out.push(',');
                    }
                    returned += 1;
                    match shape {
                        Shape::Objects => {
                            out.push('{');
                            for (k, (key, idx)) in layout.iter().enumerate() {
                                if k > 0 {
                                    out.push(',');
                                }
                                out.push_str(key);
                                values::push_json_value(out, row.get_ref(*idx).map_err(sql_err)?);
                            }
                            out.push('}');
                        }
                        Shape::Arrays => {
                            out.push('[');
                            for idx in 0..names.len() {
                                if idx > 0 {
                                    out.push(',');
                                }
                                values::push_json_value(out, row.get_ref(idx).map_err(sql_err)?);
                            }
                            out.push(']');
                        }
                    }
                    if too_big(out) {
                        return Err(ExecError::MemoryLimit);
                    }
                }
            }
            let scanned =
                u64::try_from(stmt.get_status(StatementStatus::FullscanStep)).unwrap_or(0);
            drop(stmt);
            out.push_str(match shape {
                Shape::Objects => "]",
                Shape::Arrays => "]}",
            });
            let changes = if readonly {
                0
            } else {
                conn.total_changes().saturating_sub(changes_before)
            };
            ran.wrote |= !readonly;
            // D1 bills rows scanned; full-scan steps or rows returned, whichever is larger, is
            // the closest SQLite offers.
            let rows_read = scanned.max(returned);
            ran.rows_read += rows_read;
            let millis = (started.elapsed().as_secs_f64() * 1000.0 * 10_000.0).round() / 10_000.0;
            let meta = Meta {
                millis,
                changes,
                last_row_id: conn.last_insert_rowid(),
                changed_db: !readonly,
                size_after: db.size_bytes(),
                rows_read,
                rows_written: changes,
            };
            out.push_str(",\"success\":true,\"meta\":");
            meta.write(out);
            out.push('}');
            if too_big(out) {
                return Err(ExecError::MemoryLimit);
            }
        }
    }
    Ok(ran)
}

/// The `meta` object of one statement's result.
struct Meta {
    millis: f64,
    changes: u64,
    last_row_id: i64,
    changed_db: bool,
    size_after: i64,
    rows_read: u64,
    rows_written: u64,
}

impl Meta {
    fn write(&self, out: &mut String) {
        out.push_str(
            "{\"served_by\":\"v3-prod\",\"served_by_region\":\"WEUR\",\"served_by_primary\":true,\
             \"served_by_colo\":\"LHR\",\"timings\":{\"sql_duration_ms\":",
        );
        values::push_json_number(out, self.millis);
        out.push_str("},\"duration\":");
        values::push_json_number(out, self.millis);
        out.push_str(",\"changes\":");
        values::push_json_number(out, self.changes as f64);
        out.push_str(",\"last_row_id\":");
        values::push_json_number(out, self.last_row_id as f64);
        out.push_str(",\"changed_db\":");
        out.push_str(if self.changed_db { "true" } else { "false" });
        out.push_str(",\"size_after\":");
        values::push_json_number(out, self.size_after as f64);
        out.push_str(",\"rows_read\":");
        values::push_json_number(out, self.rows_read as f64);
        out.push_str(",\"rows_written\":");
        values::push_json_number(out, self.rows_written as f64);
        out.push('}');
    }
}

/// Runs every statement of `sql` as another client would (autocommit, no D1 restrictions).
/// Returns whether any statement wrote.
pub fn execute_as_client(db: &DbConn, sql: &str) -> rusqlite::Result<bool> {
    db.internal(|conn| {
        let mut wrote = false;
        for piece in split_sql(sql) {
            let mut stmt = match conn.prepare(piece) {
                Ok(s) => s,
                Err(rusqlite::Error::Empty) => continue,
                Err(e) => return Err(e),
            };
            wrote |= !stmt.readonly();
            let mut rows = stmt.raw_query();
            while rows.next()?.is_some() {}
        }
        Ok(wrote)
    })
}

/// Totals of a statement sequence (an import).
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub statements: u64,
    pub changes: u64,
    pub rows_read: u64,
    pub rows_written: u64,
    pub wrote: bool,
}

/// Runs one statement of an import (D1 restrictions on) and adds it to `totals`.
pub fn run_import_statement(db: &DbConn, sql: &str, totals: &mut Totals) -> Result<(), String> {
    let conn = db.conn();
    let mut stmt = match conn.prepare(sql) {
        Ok(s) => s,
        Err(rusqlite::Error::Empty) => return Ok(()),
        Err(e) => return Err(d1_message(&e)),
    };
    let readonly = stmt.readonly();
    let before = conn.total_changes();
    let mut returned = 0u64;
    {
        let mut rows = stmt.raw_query();
        while rows.next().map_err(|e| d1_message(&e))?.is_some() {
            returned += 1;
        }
    }
    let scanned = u64::try_from(stmt.get_status(StatementStatus::FullscanStep)).unwrap_or(0);
    let changes = if readonly {
        0
    } else {
        conn.total_changes().saturating_sub(before)
    };
    totals.statements += 1;
    totals.changes += changes;
    totals.rows_written += changes;
    // Counted like a `/query` statement's `meta.rows_read`: D1 bills rows scanned.
    totals.rows_read += scanned.max(returned);
    totals.wrote |= !readonly;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, DbConn) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = DbConn::open(&dir.path().join("t.sqlite")).expect("open");
        (dir, db)
    }

    fn run(db: &DbConn, sql: &str, shape: Shape) -> Result<String, String> {
        let items = [QueryItem {
            sql: sql.to_string(),
            params: vec![],
        }];
        match run_request(db, &items, shape, None) {
            Ok(e) => Ok(e.body),
            Err(ExecError::Sql(m)) => Err(m),
            Err(ExecError::MemoryLimit) => Err("memory".into()),
        }
    }

    #[test]
    fn errors_use_d1_wording() {
        let (_d, db) = db();
        assert_eq!(
            run(&db, "SELECT * FROM x", Shape::Arrays).unwrap_err(),
            "no such table: x: SQLITE_ERROR"
        );
        assert_eq!(
            run(&db, "SELEC 1", Shape::Arrays).unwrap_err(),
            "near \"SELEC\": syntax error at offset 0: SQLITE_ERROR"
        );
        assert_eq!(
            run(&db, "SELECT * FROM _cf_KV", Shape::Arrays).unwrap_err(),
            "not authorized: SQLITE_AUTH"
        );
        assert_eq!(
            run(&db, "SELECT count(*) FROM _cf_KV", Shape::Arrays).unwrap_err(),
            "not authorized: SQLITE_AUTH"
        );
        assert_eq!(
            run(&db, "PRAGMA journal_mode", Shape::Arrays).unwrap_err(),
            "not authorized: SQLITE_AUTH"
        );
        assert_eq!(
            run(&db, "BEGIN", Shape::Arrays).unwrap_err(),
            "cannot start a transaction within a transaction: SQLITE_ERROR"
        );
        assert_eq!(
            run(&db, "COMMIT", Shape::Arrays).unwrap_err(),
            "not authorized: SQLITE_AUTH"
        );
        run(&db, "CREATE TABLE t(a UNIQUE)", Shape::Objects).unwrap();
        assert_eq!(
            run(&db, "INSERT INTO t VALUES(1),(1)", Shape::Objects).unwrap_err(),
            "UNIQUE constraint failed: t.a: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)"
        );
        let long = format!("SELECT '{}'", "x".repeat(100_000));
        assert_eq!(
            run(&db, &long, Shape::Arrays).unwrap_err(),
            "statement too long: SQLITE_TOOBIG"
        );
        let vars = format!("SELECT {}", vec!["?"; 101].join(","));
        assert_eq!(
            run(&db, &vars, Shape::Arrays).unwrap_err(),
            "too many SQL variables at offset 207: SQLITE_ERROR"
        );
    }

    #[test]
    fn failed_request_rolls_back_everything() {
        let (_d, db) = db();
        run(&db, "CREATE TABLE t(a UNIQUE)", Shape::Objects).unwrap();
        assert!(
            run(
                &db,
                "INSERT INTO t VALUES(1); INSERT INTO t VALUES(1)",
                Shape::Objects
            )
            .is_err()
        );
        let body = run(&db, "SELECT count(*) AS n FROM t", Shape::Objects).unwrap();
        assert!(body.contains("\"results\":[{\"n\":0}]"), "{body}");
    }

    #[test]
    fn rows_read_is_the_sum_of_statement_meta() {
        let (_d, db) = db();
        run(
            &db,
            "CREATE TABLE t(a); INSERT INTO t VALUES (1),(2),(3),(4),(5)",
            Shape::Objects,
        )
        .unwrap();
        let items = [
            QueryItem {
                // A full scan of 5 rows returning one; a constant SELECT returning 2 rows.
                sql: "SELECT count(*) FROM t WHERE a > 0; SELECT 1 UNION ALL SELECT 2".into(),
                params: vec![],
            },
            QueryItem {
                sql: "SELECT a FROM t WHERE a < ?".into(),
                params: vec![Value::Integer(3)],
            },
        ];
        let done = run_request(&db, &items, Shape::Arrays, None).expect("run");
        let v: serde_json::Value = serde_json::from_str(&done.body).expect("json");
        let metas: Vec<u64> = v["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|r| r["meta"]["rows_read"].as_u64().expect("rows_read"))
            .collect();
        assert_eq!(metas.len(), 3);
        // SQLite counts the steps of a full scan after its first row: 4 for 5 rows.
        assert!(metas[0] >= 4 && metas[2] >= 4, "{metas:?}");
        assert_eq!(metas[1], 2);
        assert_eq!(done.rows_read, metas.iter().sum::<u64>());
        assert!(!done.wrote);
        let items = [QueryItem {
            sql: "CREATE TABLE u(b)".into(),
            params: vec![],
        }];
        let done = run_request(&db, &items, Shape::Objects, None).expect("run");
        assert_eq!((done.rows_read, done.wrote), (0, true));
    }

    #[test]
    fn raw_and_objects_shapes() {
        let (_d, db) = db();
        let body = run(&db, "SELECT 1 AS a, 2 AS a, 'x' AS b", Shape::Objects).unwrap();
        assert!(
            body.starts_with(
                "{\"result\":[{\"results\":[{\"a\":2,\"b\":\"x\"}],\"success\":true,\"meta\":{"
            ),
            "{body}"
        );
        let body = run(&db, "SELECT 1 AS a, 2 AS a WHERE 0", Shape::Arrays).unwrap();
        assert!(
            body.starts_with("{\"result\":[{\"results\":{\"columns\":[\"a\",\"a\"],\"rows\":[]},"),
            "{body}"
        );
        assert!(
            body.ends_with("}],\"success\":true,\"errors\":[],\"messages\":[]}"),
            "{body}"
        );
    }
}
