//! A database connection set up the way D1 runs one: D1's limits (statement length, bound
//! parameters, value size), foreign keys on, an authorizer that hides `_cf_*` tables and
//! unsupported PRAGMAs, and D1's `<sqlite message>: <SQLITE_CODE>` error text.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization, TransactionOperation};
use rusqlite::limits::Limit;

/// D1's maximum SQL statement length in bytes.
pub const MAX_SQL_LENGTH: i32 = 100_000;
/// D1's maximum number of bound parameters per statement.
pub const MAX_VARIABLES: i32 = 100;
/// D1's maximum string, BLOB or row size in bytes.
pub const MAX_LENGTH: i32 = 2_000_000;

/// The PRAGMAs D1 supports (reference §10); every other PRAGMA is refused.
const ALLOWED_PRAGMAS: &[&str] = &[
    "table_list",
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "quick_check",
    "defer_foreign_keys",
    "foreign_keys",
    "case_sensitive_like",
    "ignore_check_constraints",
    "legacy_alter_table",
    "recursive_triggers",
    "reverse_unordered_selects",
    "optimize",
    // Not for users: FTS5 reads `PRAGMA main.data_version` itself on every query, and D1
    // runs FTS5, so its own statements must pass the authorizer.
    "data_version",
];

/// A database connection plus the switch that turns D1's restrictions on (for user SQL) or off
/// (for the fake's own bookkeeping and for test helpers acting as "another client").
pub struct DbConn {
    conn: Connection,
    enforce: Arc<AtomicBool>,
}

impl DbConn {
    /// Opens (or creates) the SQLite file, switches foreign keys on and creates `_cf_KV`.
    pub fn open(path: &Path) -> rusqlite::Result<DbConn> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA foreign_keys=ON;\
             CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;",
        )?;
        let enforce = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&enforce);
        conn.authorizer(Some(move |ctx: AuthContext<'_>| authorize(&flag, ctx)))?;
        let db = DbConn { conn, enforce };
        db.restrict(true)?;
        Ok(db)
    }

    /// The raw connection, in whatever mode it is.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn restrict(&self, on: bool) -> rusqlite::Result<()> {
        let (sql_len, vars, len) = if on {
            (MAX_SQL_LENGTH, MAX_VARIABLES, MAX_LENGTH)
        } else {
            // SQLite clamps these to its compile-time maximums.
            (i32::MAX, i32::MAX, i32::MAX)
        };
        self.conn
            .set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, sql_len)?;
        self.conn
            .set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, vars)?;
        self.conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, len)?;
        self.enforce.store(on, Ordering::SeqCst);
        Ok(())
    }

    /// Runs `f` without D1's restrictions (no authorizer, no limits), then restores them.
    pub fn internal<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.restrict(false)?;
        let result = f(&self.conn);
        self.restrict(true)?;
        result
    }

    /// Database size in bytes (page count × page size), as D1's `size_after`.
    pub fn size_bytes(&self) -> i64 {
        self.internal(|c| {
            c.query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .unwrap_or(0)
    }

    /// Number of user tables, as D1's `num_tables` (internal `_cf_*` and `sqlite_*` tables are
    /// not counted; UNCONFIRMED but the most plausible reading).
    pub fn num_tables(&self) -> i64 {
        self.internal(|c| {
            c.query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .unwrap_or(0)
    }
}

fn is_reserved_table(name: &str) -> bool {
    name.len() >= 4 && name.as_bytes()[..4].eq_ignore_ascii_case(b"_cf_")
}

/// The authorizer: no access to `_cf_*` tables, only the supported PRAGMAs, no ATTACH/DETACH,
/// and no COMMIT/ROLLBACK/END (they would end the request's transaction; D1 refuses them).
/// `BEGIN` is let through so that SQLite itself answers "cannot start a transaction within a
/// transaction", which is D1's documented message.
fn authorize(flag: &AtomicBool, ctx: AuthContext<'_>) -> Authorization {
    if !flag.load(Ordering::SeqCst) {
        return Authorization::Allow;
    }
    let table = match ctx.action {
        AuthAction::Pragma { pragma_name, .. } => {
            let allowed = ALLOWED_PRAGMAS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name));
            return if allowed {
                Authorization::Allow
            } else {
                Authorization::Deny
            };
        }
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => return Authorization::Deny,
        AuthAction::Transaction {
            operation: TransactionOperation::Begin,
        } => return Authorization::Allow,
        AuthAction::Transaction { .. } => return Authorization::Deny,
        AuthAction::Read { table_name, .. }
        | AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
        | AuthAction::CreateTable { table_name }
        | AuthAction::DropTable { table_name }
        | AuthAction::CreateIndex { table_name, .. }
        | AuthAction::DropIndex { table_name, .. }
        | AuthAction::CreateTrigger { table_name, .. }
        | AuthAction::DropTrigger { table_name, .. }
        | AuthAction::AlterTable { table_name, .. }
        | AuthAction::Analyze { table_name }
        | AuthAction::CreateVtable { table_name, .. }
        | AuthAction::DropVtable { table_name, .. } => table_name,
        _ => return Authorization::Allow,
    };
    if is_reserved_table(table) {
        Authorization::Deny
    } else {
        Authorization::Allow
    }
}

fn code_name(primary: i32) -> &'static str {
    match primary {
        1 => "SQLITE_ERROR",
        2 => "SQLITE_INTERNAL",
        3 => "SQLITE_PERM",
        4 => "SQLITE_ABORT",
        5 => "SQLITE_BUSY",
        6 => "SQLITE_LOCKED",
        7 => "SQLITE_NOMEM",
        8 => "SQLITE_READONLY",
        9 => "SQLITE_INTERRUPT",
        10 => "SQLITE_IOERR",
        11 => "SQLITE_CORRUPT",
        12 => "SQLITE_NOTFOUND",
        13 => "SQLITE_FULL",
        14 => "SQLITE_CANTOPEN",
        15 => "SQLITE_PROTOCOL",
        16 => "SQLITE_EMPTY",
        17 => "SQLITE_SCHEMA",
        18 => "SQLITE_TOOBIG",
        19 => "SQLITE_CONSTRAINT",
        20 => "SQLITE_MISMATCH",
        21 => "SQLITE_MISUSE",
        22 => "SQLITE_NOLFS",
        23 => "SQLITE_AUTH",
        24 => "SQLITE_FORMAT",
        25 => "SQLITE_RANGE",
        26 => "SQLITE_NOTADB",
        _ => "SQLITE_ERROR",
    }
}

/// D1's error text for a SQLite error: `<message>: <SQLITE_PRIMARY_CODE>`, with workerd's
/// ` at offset N` when SQLite reports the position of the offending token. Authorization
/// failures read `not authorized` whatever SQLite says (that is what D1 users report for
/// `_cf_KV`: JacobLinCool/d1-manager#19; SQLite itself says "access to … is prohibited" for
/// column reads).
pub fn d1_message(err: &rusqlite::Error) -> String {
    match err {
        rusqlite::Error::SqliteFailure(e, msg) => {
            let primary = e.extended_code & 0xff;
            let text = if primary == 23 {
                "not authorized".to_string()
            } else {
                msg.clone().unwrap_or_else(|| e.to_string())
            };
            format!("{text}: {}", code_name(primary))
        }
        rusqlite::Error::SqlInputError {
            error, msg, offset, ..
        } => {
            let primary = error.extended_code & 0xff;
            if primary == 23 {
                return "not authorized: SQLITE_AUTH".to_string();
            }
            format!("{msg} at offset {offset}: {}", code_name(primary))
        }
        other => format!("{other}: SQLITE_ERROR"),
    }
}
