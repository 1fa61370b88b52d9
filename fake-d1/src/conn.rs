//! A database connection set up the way D1 runs one: D1's `sqlite3_limit` values, defensive
//! mode, foreign keys on, the math functions D1's SQLite is built with, only the virtual-table
//! modules D1 has, an authorizer with D1's rules (functions, PRAGMAs, virtual tables, temp
//! objects, ATTACH, `_cf_*` names), and D1's `<sqlite message>: <SQLITE_CODE>` error text.
//!
//! Every value and rule here was checked against the real engine (workerd's SQLite with D1's
//! limits and authorizer); `tests/engine/ENGINE-LIMITS.md` lists them with their evidence and
//! `fake-d1/tests/probes.rs` keeps checking them.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization, TransactionOperation};
use rusqlite::limits::Limit;
use rusqlite::{Connection, ffi};

/// D1's maximum SQL statement length in bytes.
pub const MAX_SQL_LENGTH: i32 = 100_000;
/// D1's maximum number of bound parameters per statement (also the highest `?NNN`).
pub const MAX_VARIABLES: i32 = 100;
/// D1's maximum string, BLOB or row size in bytes. Production documents 2,000,000; the local
/// engine allows 2,200,000. The fake takes the smaller, so that it never accepts what
/// production refuses.
pub const MAX_LENGTH: i32 = 2_000_000;
/// D1's maximum number of columns (result set, table, index, ORDER BY / GROUP BY terms, SET
/// list).
pub const MAX_COLUMNS: i32 = 100;
/// D1's maximum expression tree depth.
pub const MAX_EXPR_DEPTH: i32 = 100;
/// D1's maximum number of terms in a compound SELECT.
pub const MAX_COMPOUND_SELECT: i32 = 5;
/// D1's maximum number of VDBE instructions in one prepared statement (past it SQLite answers
/// `out of memory`).
pub const MAX_VDBE_OPS: i32 = 25_000;
/// D1's maximum number of arguments to a function.
pub const MAX_FUNCTION_ARGS: i32 = 127;
/// D1 allows no attached databases.
pub const MAX_ATTACHED: i32 = 0;
/// D1's maximum length of a LIKE or GLOB pattern.
pub const MAX_LIKE_PATTERN: i32 = 50;
/// D1's maximum depth of nested trigger programs.
pub const MAX_TRIGGER_DEPTH: i32 = 10;
/// D1 runs no sorter worker threads.
pub const MAX_WORKER_THREADS: i32 = 0;

/// Every `sqlite3_limit` D1 sets, with its value.
const D1_LIMITS: &[(Limit, i32)] = &[
    (Limit::SQLITE_LIMIT_LENGTH, MAX_LENGTH),
    (Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_LENGTH),
    (Limit::SQLITE_LIMIT_COLUMN, MAX_COLUMNS),
    (Limit::SQLITE_LIMIT_EXPR_DEPTH, MAX_EXPR_DEPTH),
    (Limit::SQLITE_LIMIT_COMPOUND_SELECT, MAX_COMPOUND_SELECT),
    (Limit::SQLITE_LIMIT_VDBE_OP, MAX_VDBE_OPS),
    (Limit::SQLITE_LIMIT_FUNCTION_ARG, MAX_FUNCTION_ARGS),
    (Limit::SQLITE_LIMIT_ATTACHED, MAX_ATTACHED),
    (Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_LIKE_PATTERN),
    (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, MAX_VARIABLES),
    (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, MAX_TRIGGER_DEPTH),
    (Limit::SQLITE_LIMIT_WORKER_THREADS, MAX_WORKER_THREADS),
];

/// How D1 checks a PRAGMA's argument (the value after `=` or inside the parentheses).
#[derive(Clone, Copy)]
enum PragmaArg {
    /// No argument allowed.
    None,
    /// Optional; when given, it must start with a boolean word or digit.
    Boolean,
    /// Required; a name outside the reserved `_cf_` namespace.
    Name,
    /// Optional; when given, a name outside the reserved namespace.
    OptionalName,
    /// Optional; when given, a 32-bit integer.
    OptionalNumber,
    /// Optional; when given, a number or a name outside the reserved namespace.
    OptionalNumberOrName,
    /// Anything (`table_list`).
    Any,
}

/// The PRAGMAs D1 allows and how it checks their argument. The names are matched exactly as
/// written in the SQL (D1 refuses `PRAGMA TABLE_INFO(t)`).
const D1_PRAGMAS: &[(&str, PragmaArg)] = &[
    ("table_list", PragmaArg::Any),
    ("table_info", PragmaArg::Name),
    ("table_xinfo", PragmaArg::Name),
    ("index_list", PragmaArg::Name),
    ("index_info", PragmaArg::Name),
    ("index_xinfo", PragmaArg::Name),
    ("foreign_key_list", PragmaArg::Name),
    ("foreign_key_check", PragmaArg::OptionalName),
    ("quick_check", PragmaArg::OptionalNumberOrName),
    ("optimize", PragmaArg::OptionalNumber),
    // FTS5 reads `PRAGMA main.data_version` itself on every query.
    ("data_version", PragmaArg::None),
    ("case_sensitive_like", PragmaArg::Boolean),
    ("foreign_keys", PragmaArg::Boolean),
    ("defer_foreign_keys", PragmaArg::Boolean),
    ("ignore_check_constraints", PragmaArg::Boolean),
    ("legacy_alter_table", PragmaArg::Boolean),
    ("recursive_triggers", PragmaArg::Boolean),
    ("reverse_unordered_selects", PragmaArg::Boolean),
];

/// The SQL functions D1's authorizer allows; every other function is refused with `not
/// authorized to use function: X`. Names as SQLite reports them (its canonical lower case).
#[rustfmt::skip]
const D1_FUNCTIONS: &[&str] = &[
    // core
    "abs", "changes", "char", "coalesce", "concat", "concat_ws", "format", "glob", "hex",
    "ifnull", "iif", "instr", "last_insert_rowid", "length", "like", "likelihood", "likely",
    "load_extension", "lower", "ltrim", "nullif", "octet_length", "printf", "quote", "random",
    "randomblob", "replace", "round", "rtrim", "sign", "substr", "substring", "total_changes",
    "trim", "typeof", "unhex", "unicode", "unlikely", "upper", "zeroblob",
    // date and time
    "date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff", "current_date",
    "current_time", "current_timestamp",
    // aggregate
    "avg", "count", "group_concat", "max", "min", "string_agg", "sum", "total",
    // window
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
    "first_value", "last_value", "nth_value",
    // math (not `ceiling`, `log10` or `power`: D1 refuses those spellings)
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "cos", "cosh", "degrees",
    "exp", "floor", "ln", "log", "log2", "mod", "pi", "pow", "radians", "sin", "sinh", "sqrt",
    "tan", "tanh", "trunc",
    // JSON
    "json", "jsonb", "json_array", "jsonb_array", "json_array_length", "json_extract",
    "jsonb_extract", "->", "->>", "json_insert", "jsonb_insert", "json_object", "jsonb_object",
    "json_patch", "jsonb_patch", "json_remove", "jsonb_remove", "json_replace", "jsonb_replace",
    "json_set", "jsonb_set", "json_type", "json_valid", "json_quote", "json_group_array",
    "jsonb_group_array", "json_group_object", "jsonb_group_object", "json_each", "json_tree",
    // FTS5
    "match", "highlight", "bm25", "snippet",
    // used by ALTER TABLE's own statements
    "sqlite_rename_column", "sqlite_rename_table", "sqlite_rename_test", "sqlite_drop_column",
    "sqlite_rename_quotefix",
];

/// Functions the fake's SQLite has but D1's does not (D1's is an older SQLite, built without
/// SOUNDEX, FTS3 or R*Tree). They are refused by the authorizer, and the error is reworded to
/// the `no such function: X` that D1 gives.
const ABSENT_FUNCTIONS: &[&str] = &[
    "soundex",
    "if",
    "unistr",
    "unistr_quote",
    "json_array_insert",
    "jsonb_array_insert",
    "fts5_insttoken",
    "fts3_tokenizer",
    "matchinfo",
    "offsets",
    "optimize",
    "rtreecheck",
    "rtreedepth",
    "rtreenode",
];

/// The virtual-table modules D1's SQLite has (FTS5 and the JSON table-valued functions; the
/// `pragma_*` tables are made on demand). The fake's SQLite also has dbstat, FTS3/4 and R*Tree:
/// they are removed, so `SELECT * FROM dbstat` reads `no such table: dbstat` as on D1.
const D1_MODULES: &[&str] = &["fts5", "fts5vocab", "json_each", "json_tree"];

/// Table-valued functions the fake's SQLite makes on demand but D1's lacks (SQLite 3.51+).
/// They are shadowed by a module that cannot connect, so that reading them answers
/// `no such table: X` as on D1.
const ABSENT_TABLES: &[&CStr] = &[c"jsonb_each", c"jsonb_tree"];

/// The only arity of `iif` D1's SQLite accepts; newer SQLite also takes 2, 4, 5, … arguments.
const IIF_ARGS: c_int = 3;

/// The modules D1 lets users create virtual tables with (case-insensitive).
const D1_VTABLE_MODULES: &[&str] = &["fts5", "fts5vocab"];

/// A database connection plus the switch that turns D1's restrictions on (for user SQL) or off
/// (for the fake's own bookkeeping and for test helpers acting as "another client").
pub struct DbConn {
    conn: Connection,
    enforce: Arc<AtomicBool>,
    /// SQLite's own values of the limits in [`D1_LIMITS`], restored by [`DbConn::internal`].
    defaults: Vec<(Limit, i32)>,
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
        keep_modules(&conn, D1_MODULES)?;
        for name in ABSENT_TABLES {
            shadow_table(&conn, name)?;
        }
        restrict_iif(&conn)?;
        math::register(&conn)?;
        let defaults = D1_LIMITS
            .iter()
            .map(|(limit, _)| Ok((*limit, conn.limit(*limit)?)))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let enforce = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&enforce);
        conn.authorizer(Some(move |ctx: AuthContext<'_>| authorize(&flag, ctx)))?;
        let db = DbConn {
            conn,
            enforce,
            defaults,
        };
        db.restrict(true)?;
        Ok(db)
    }

    /// The raw connection, in whatever mode it is.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn restrict(&self, on: bool) -> rusqlite::Result<()> {
        let values: &[(Limit, i32)] = if on { D1_LIMITS } else { &self.defaults };
        for (limit, value) in values {
            self.conn.set_limit(*limit, *value)?;
        }
        self.conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, on)?;
        self.enforce.store(on, Ordering::SeqCst);
        Ok(())
    }

    /// Runs `f` without D1's restrictions (no authorizer, SQLite's own limits, no defensive
    /// mode), then restores them. The function and module set stays D1's (math functions
    /// present; dbstat, FTS3/4, R*Tree, jsonb_each/jsonb_tree absent; `iif` takes 3 arguments).
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

/// Removes every virtual-table module of the connection except `keep`.
fn keep_modules(conn: &Connection, keep: &[&str]) -> rusqlite::Result<()> {
    let names: Vec<CString> = keep
        .iter()
        .map(|n| CString::new(*n).expect("module name"))
        .collect();
    let mut list: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    list.push(std::ptr::null());
    // SAFETY: the handle is the live connection's; `list` is a NULL-terminated array of
    // NUL-terminated strings that outlive the call (SQLite does not keep them).
    let rc = unsafe { ffi::sqlite3_drop_modules(conn.handle(), list.as_mut_ptr()) };
    check(rc)
}

/// A virtual-table module whose tables never connect: its eponymous table `X` reads
/// `no such table: X`.
static ABSENT_MODULE: ffi::sqlite3_module = {
    // SAFETY: all-zero is a valid `sqlite3_module`: version 0, every method absent.
    let mut module: ffi::sqlite3_module = unsafe { std::mem::zeroed() };
    module.xConnect = Some(absent_connect);
    module
};

/// # Safety
/// Called by SQLite as a module's xConnect, with `argv[0]` the module name and `err` valid.
unsafe extern "C" fn absent_connect(
    _db: *mut ffi::sqlite3,
    _aux: *mut c_void,
    _argc: c_int,
    argv: *const *const c_char,
    _vtab: *mut *mut ffi::sqlite3_vtab,
    err: *mut *mut c_char,
) -> c_int {
    // SAFETY: per SQLite's xConnect contract; the message is allocated with sqlite3_mprintf as
    // SQLite requires (it frees it).
    unsafe {
        *err = ffi::sqlite3_mprintf(c"no such table: %s".as_ptr(), *argv);
    }
    ffi::SQLITE_ERROR
}

/// Registers [`ABSENT_MODULE`] as `name` (eponymous only), before SQLite would make its own.
fn shadow_table(conn: &Connection, name: &CStr) -> rusqlite::Result<()> {
    // SAFETY: the handle is the live connection's; the module is static; the name is copied.
    let rc = unsafe {
        ffi::sqlite3_create_module_v2(
            conn.handle(),
            name.as_ptr(),
            &ABSENT_MODULE,
            std::ptr::null_mut(),
            None,
        )
    };
    check(rc)
}

/// Makes every arity of `iif` except [`IIF_ARGS`] fail to prepare with SQLite's
/// `wrong number of arguments to function iif()`, as on D1.
///
/// How: a connection function of arity N hides the built-in one for exactly that arity, and
/// re-registering it without callbacks leaves an entry with no implementation in its place,
/// which SQLite treats as "no such function" for N, then reports as a wrong argument count
/// because the built-in exists for other arities. Arity 3 keeps the built-in (and its lazy
/// evaluation of the branches).
fn restrict_iif(conn: &Connection) -> rusqlite::Result<()> {
    unsafe extern "C" fn never(
        _ctx: *mut ffi::sqlite3_context,
        _argc: c_int,
        _argv: *mut *mut ffi::sqlite3_value,
    ) {
    }
    for args in (0..=MAX_FUNCTION_ARGS).filter(|n| *n != IIF_ARGS) {
        for f in [Some(never as math::Callback), None] {
            // SAFETY: the handle is the live connection's; the name is a static C string.
            let rc = unsafe {
                ffi::sqlite3_create_function_v2(
                    conn.handle(),
                    c"iif".as_ptr(),
                    args,
                    ffi::SQLITE_UTF8,
                    std::ptr::null_mut(),
                    f,
                    None,
                    None,
                    None,
                )
            };
            check(rc)?;
        }
    }
    Ok(())
}

fn check(rc: c_int) -> rusqlite::Result<()> {
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None))
    }
}

/// Whether a name is in D1's reserved namespace. D1 compares case-sensitively (`_CF_x` is
/// allowed there); the fake refuses every case, so that it is never more permissive.
fn is_reserved_table(name: &str) -> bool {
    name.len() >= 4 && name.as_bytes()[..4].eq_ignore_ascii_case(b"_cf_")
}

fn allow_if(ok: bool) -> Authorization {
    if ok {
        Authorization::Allow
    } else {
        Authorization::Deny
    }
}

/// Whether D1 accepts `value` as the argument of a PRAGMA checked as `arg`.
fn pragma_arg_ok(arg: PragmaArg, value: Option<&str>) -> bool {
    match (arg, value) {
        (PragmaArg::Any, _) => true,
        (PragmaArg::None, v) => v.is_none(),
        (PragmaArg::Name, None) => false,
        (
            PragmaArg::Boolean
            | PragmaArg::OptionalName
            | PragmaArg::OptionalNumber
            | PragmaArg::OptionalNumberOrName,
            None,
        ) => true,
        (PragmaArg::Boolean, Some(v)) => {
            let v = strip_quotes(v).to_ascii_lowercase();
            ["true", "false", "yes", "no", "on", "off", "1", "0"]
                .iter()
                .any(|w| v.starts_with(w))
        }
        (PragmaArg::Name | PragmaArg::OptionalName, Some(v)) => !is_reserved_table(v),
        (PragmaArg::OptionalNumber, Some(v)) => parse_i32(v).is_some(),
        // A number never starts with `_cf_`, so the name rule decides alone.
        (PragmaArg::OptionalNumberOrName, Some(v)) => !is_reserved_table(v),
    }
}

fn strip_quotes(v: &str) -> &str {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'\'' || b[0] == b'"') && b[b.len() - 1] == b[0] {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// A 32-bit integer as D1 parses a PRAGMA argument: decimal or `0x` hexadecimal, optionally
/// signed, nothing else.
fn parse_i32(v: &str) -> Option<i32> {
    let (neg, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let magnitude = match digits.get(..2) {
        Some("0x" | "0X") => i64::from_str_radix(&digits[2..], 16).ok()?,
        _ if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse::<i64>().ok()?
        }
        _ => return None,
    };
    i32::try_from(if neg { -magnitude } else { magnitude }).ok()
}

/// The authorizer: D1's rules (workerd's `SqliteDatabase::isAuthorized`), while enforcing.
///
/// One local-engine behaviour is deliberately not imitated: the local engine refuses every
/// transaction statement with a message about `state.storage.transaction()`. Here `BEGIN` is
/// let through so that SQLite itself answers "cannot start a transaction within a
/// transaction", which is production D1's documented message, and COMMIT/ROLLBACK/END are
/// refused (they would end the request's transaction).
fn authorize(flag: &AtomicBool, ctx: AuthContext<'_>) -> Authorization {
    if !flag.load(Ordering::SeqCst) {
        return Authorization::Allow;
    }
    // For ALTER TABLE and DETACH SQLite passes the database name in the action's own fields.
    let database = match ctx.action {
        AuthAction::AlterTable { database_name, .. } => Some(database_name),
        _ => ctx.database_name,
    };
    match database {
        // The temp schema may be read (it is always empty), nothing else.
        Some("temp") => {
            return match ctx.action {
                AuthAction::Read { table_name, .. } | AuthAction::Update { table_name, .. } => {
                    allow_if(!is_reserved_table(table_name))
                }
                _ => Authorization::Deny,
            };
        }
        Some("main") | None => {}
        Some(_) => return Authorization::Deny,
    }
    match ctx.action {
        AuthAction::Select | AuthAction::Recursive => Authorization::Allow,
        // D1 lets ANALYZE through whatever the table (PRAGMA optimize analyzes every table).
        AuthAction::Analyze { .. } => Authorization::Allow,
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let rule = D1_PRAGMAS
                .iter()
                .find(|(name, _)| *name == pragma_name)
                .map(|(_, arg)| *arg);
            allow_if(rule.is_some_and(|arg| pragma_arg_ok(arg, pragma_value)))
        }
        AuthAction::Function { function_name } => allow_if(
            D1_FUNCTIONS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(function_name)),
        ),
        AuthAction::CreateVtable {
            table_name,
            module_name,
        }
        | AuthAction::DropVtable {
            table_name,
            module_name,
        } => allow_if(
            D1_VTABLE_MODULES
                .iter()
                .any(|m| m.eq_ignore_ascii_case(module_name))
                && !is_reserved_table(table_name),
        ),
        AuthAction::Transaction {
            operation: TransactionOperation::Begin,
        } => Authorization::Allow,
        AuthAction::Transaction { .. } => Authorization::Deny,
        AuthAction::Savepoint { .. } => Authorization::Allow,
        AuthAction::Read { table_name, .. }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::CreateTable { table_name }
        | AuthAction::DropTable { table_name }
        | AuthAction::AlterTable { table_name, .. }
        | AuthAction::CreateView {
            view_name: table_name,
        }
        | AuthAction::DropView {
            view_name: table_name,
        }
        | AuthAction::Reindex {
            index_name: table_name,
        } => allow_if(!is_reserved_table(table_name)),
        AuthAction::CreateIndex {
            index_name: object,
            table_name,
        }
        | AuthAction::DropIndex {
            index_name: object,
            table_name,
        }
        | AuthAction::CreateTrigger {
            trigger_name: object,
            table_name,
        }
        | AuthAction::DropTrigger {
            trigger_name: object,
            table_name,
        } => allow_if(!is_reserved_table(object) && !is_reserved_table(table_name)),
        // Temporary objects, ATTACH, DETACH and anything unknown.
        _ => Authorization::Deny,
    }
}

/// The extended result codes D1 names in its messages, as `<message>: <CODE> (extended:
/// <EXTENDED>)` (workerd's `namedExtendedErrorCode`).
macro_rules! named_codes {
    ($($name:ident),* $(,)?) => {
        &[$((ffi::$name, stringify!($name))),*]
    };
}

#[rustfmt::skip]
const EXTENDED_CODES: &[(c_int, &str)] = named_codes!(
    SQLITE_ABORT_ROLLBACK, SQLITE_AUTH_USER, SQLITE_BUSY_RECOVERY, SQLITE_BUSY_SNAPSHOT,
    SQLITE_BUSY_TIMEOUT, SQLITE_CANTOPEN_CONVPATH, SQLITE_CANTOPEN_DIRTYWAL,
    SQLITE_CANTOPEN_FULLPATH, SQLITE_CANTOPEN_ISDIR, SQLITE_CANTOPEN_NOTEMPDIR,
    SQLITE_CANTOPEN_SYMLINK, SQLITE_CONSTRAINT_CHECK, SQLITE_CONSTRAINT_COMMITHOOK,
    SQLITE_CONSTRAINT_DATATYPE, SQLITE_CONSTRAINT_FOREIGNKEY, SQLITE_CONSTRAINT_FUNCTION,
    SQLITE_CONSTRAINT_NOTNULL, SQLITE_CONSTRAINT_PINNED, SQLITE_CONSTRAINT_PRIMARYKEY,
    SQLITE_CONSTRAINT_ROWID, SQLITE_CONSTRAINT_TRIGGER, SQLITE_CONSTRAINT_UNIQUE,
    SQLITE_CONSTRAINT_VTAB, SQLITE_CORRUPT_INDEX, SQLITE_CORRUPT_SEQUENCE, SQLITE_CORRUPT_VTAB,
    SQLITE_ERROR_MISSING_COLLSEQ, SQLITE_ERROR_RETRY, SQLITE_ERROR_SNAPSHOT, SQLITE_IOERR_ACCESS,
    SQLITE_IOERR_AUTH, SQLITE_IOERR_BEGIN_ATOMIC, SQLITE_IOERR_BLOCKED,
    SQLITE_IOERR_CHECKRESERVEDLOCK, SQLITE_IOERR_CLOSE, SQLITE_IOERR_COMMIT_ATOMIC,
    SQLITE_IOERR_CONVPATH, SQLITE_IOERR_CORRUPTFS, SQLITE_IOERR_DATA, SQLITE_IOERR_DELETE,
    SQLITE_IOERR_DELETE_NOENT, SQLITE_IOERR_DIR_CLOSE, SQLITE_IOERR_DIR_FSYNC, SQLITE_IOERR_FSTAT,
    SQLITE_IOERR_FSYNC, SQLITE_IOERR_GETTEMPPATH, SQLITE_IOERR_LOCK, SQLITE_IOERR_MMAP,
    SQLITE_IOERR_NOMEM, SQLITE_IOERR_RDLOCK, SQLITE_IOERR_READ, SQLITE_IOERR_ROLLBACK_ATOMIC,
    SQLITE_IOERR_SEEK, SQLITE_IOERR_SHMLOCK, SQLITE_IOERR_SHMMAP, SQLITE_IOERR_SHMOPEN,
    SQLITE_IOERR_SHMSIZE, SQLITE_IOERR_SHORT_READ, SQLITE_IOERR_TRUNCATE, SQLITE_IOERR_UNLOCK,
    SQLITE_IOERR_VNODE, SQLITE_IOERR_WRITE, SQLITE_LOCKED_SHAREDCACHE, SQLITE_LOCKED_VTAB,
    SQLITE_NOTICE_RECOVER_ROLLBACK, SQLITE_NOTICE_RECOVER_WAL, SQLITE_OK_LOAD_PERMANENTLY,
    SQLITE_READONLY_CANTINIT, SQLITE_READONLY_CANTLOCK, SQLITE_READONLY_DBMOVED,
    SQLITE_READONLY_DIRECTORY, SQLITE_READONLY_RECOVERY, SQLITE_READONLY_ROLLBACK,
    SQLITE_WARNING_AUTOINDEX,
);

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

/// D1's ` (extended: NAME)` after the code, when SQLite gave a named extended code.
fn extended_suffix(extended: c_int) -> String {
    if extended == extended & 0xff {
        return String::new();
    }
    EXTENDED_CODES
        .iter()
        .find(|(code, _)| *code == extended)
        .map(|(_, name)| format!(" (extended: {name})"))
        .unwrap_or_default()
}

/// Messages the fake's newer SQLite words differently from D1's SQLite, with D1's wording.
const REWORDED: &[(&str, &str)] = &[
    // SQLite 3.51+ (D1 runs 3.47), for SQLITE_LIMIT_TRIGGER_DEPTH.
    (
        "triggers nested too deep",
        "too many levels of trigger recursion",
    ),
];

/// The message in D1's wording: SQLite's own, except for a function D1's SQLite lacks (see
/// [`absent_function_message`]) and the [`REWORDED`] ones.
fn engine_wording(msg: &str) -> String {
    if let Some(m) = absent_function_message(msg) {
        return m;
    }
    REWORDED
        .iter()
        .find(|(ours, _)| *ours == msg)
        .map_or_else(|| msg.to_string(), |(_, theirs)| theirs.to_string())
}

/// `no such function: X` when `msg` is SQLite's refusal of a function that D1's SQLite does
/// not have at all (see [`ABSENT_FUNCTIONS`]); `None` otherwise.
fn absent_function_message(msg: &str) -> Option<String> {
    let name = if let Some(rest) = msg.strip_prefix("not authorized to use function: ") {
        rest
    } else {
        msg.strip_prefix("wrong number of arguments to function ")?
            .strip_suffix("()")?
    };
    let lower = name.to_ascii_lowercase();
    ABSENT_FUNCTIONS
        .contains(&lower.as_str())
        .then(|| format!("no such function: {name}"))
}

/// D1's error text for a SQLite error: `<message>: <SQLITE_PRIMARY_CODE>`, with workerd's
/// ` at offset N` when SQLite reports the position of the offending token and its
/// ` (extended: SQLITE_X_Y)` when SQLite gave a named extended code. Authorization
/// failures read `not authorized` whatever SQLite says (that is what D1 users report for
/// `_cf_KV`: JacobLinCool/d1-manager#19; SQLite itself says "access to … is prohibited" for
/// column reads). A function D1's SQLite lacks reads `no such function: X`.
pub fn d1_message(err: &rusqlite::Error) -> String {
    match err {
        rusqlite::Error::SqliteFailure(e, msg) => {
            let primary = e.extended_code & 0xff;
            let text = if primary == 23 {
                "not authorized".to_string()
            } else {
                engine_wording(&msg.clone().unwrap_or_else(|| e.to_string()))
            };
            format!(
                "{text}: {}{}",
                code_name(primary),
                extended_suffix(e.extended_code)
            )
        }
        rusqlite::Error::SqlInputError {
            error, msg, offset, ..
        } => {
            let primary = error.extended_code & 0xff;
            if primary == 23 {
                return "not authorized: SQLITE_AUTH".to_string();
            }
            let text = engine_wording(msg);
            format!(
                "{text} at offset {offset}: {}{}",
                code_name(primary),
                extended_suffix(error.extended_code)
            )
        }
        other => format!("{other}: SQLITE_ERROR"),
    }
}

/// The math functions of SQLite's `SQLITE_ENABLE_MATH_FUNCTIONS` build option, which D1's
/// SQLite has and the bundled SQLite of rusqlite lacks: a port of SQLite's own `func.c` code
/// (same argument handling: non-numeric arguments give NULL, NaN results become NULL), calling
/// the C library's libm as SQLite does.
mod math {
    use super::{CString, c_int, c_void, check, ffi};
    use rusqlite::Connection;

    unsafe extern "C" {
        safe fn ceil(x: f64) -> f64;
        safe fn floor(x: f64) -> f64;
        safe fn trunc(x: f64) -> f64;
        safe fn exp(x: f64) -> f64;
        safe fn log(x: f64) -> f64;
        safe fn log10(x: f64) -> f64;
        safe fn log2(x: f64) -> f64;
        safe fn pow(x: f64, y: f64) -> f64;
        safe fn fmod(x: f64, y: f64) -> f64;
        safe fn acos(x: f64) -> f64;
        safe fn asin(x: f64) -> f64;
        safe fn atan(x: f64) -> f64;
        safe fn atan2(y: f64, x: f64) -> f64;
        safe fn cos(x: f64) -> f64;
        safe fn sin(x: f64) -> f64;
        safe fn tan(x: f64) -> f64;
        safe fn cosh(x: f64) -> f64;
        safe fn sinh(x: f64) -> f64;
        safe fn tanh(x: f64) -> f64;
        safe fn acosh(x: f64) -> f64;
        safe fn asinh(x: f64) -> f64;
        safe fn atanh(x: f64) -> f64;
        safe fn sqrt(x: f64) -> f64;
    }

    /// A libm function of one argument (or one of ours with the same ABI).
    type F1 = extern "C" fn(f64) -> f64;
    /// A libm function of two arguments.
    type F2 = extern "C" fn(f64, f64) -> f64;

    extern "C" fn deg_to_rad(x: f64) -> f64 {
        x * (std::f64::consts::PI / 180.0)
    }

    extern "C" fn rad_to_deg(x: f64) -> f64 {
        x * (180.0 / std::f64::consts::PI)
    }

    pub(super) type Callback =
        unsafe extern "C" fn(*mut ffi::sqlite3_context, c_int, *mut *mut ffi::sqlite3_value);

    /// `ceil`, `ceiling`, `floor`, `trunc`: integers stay integers.
    const ROUNDING: &[(&str, F1)] = &[
        ("ceil", ceil),
        ("ceiling", ceil),
        ("floor", floor),
        ("trunc", trunc),
    ];

    /// One-argument functions computed on the double value.
    const UNARY: &[(&str, F1)] = &[
        ("exp", exp),
        ("acos", acos),
        ("asin", asin),
        ("atan", atan),
        ("cos", cos),
        ("sin", sin),
        ("tan", tan),
        ("cosh", cosh),
        ("sinh", sinh),
        ("tanh", tanh),
        ("acosh", acosh),
        ("asinh", asinh),
        ("atanh", atanh),
        ("sqrt", sqrt),
        ("radians", deg_to_rad),
        ("degrees", rad_to_deg),
    ];

    /// Two-argument functions computed on the double values.
    const BINARY: &[(&str, F2)] = &[
        ("pow", pow),
        ("power", pow),
        ("mod", fmod),
        ("atan2", atan2),
    ];

    /// `ln`, `log(X)`, `log10`, `log2` (the user data picks the base, as in SQLite) and
    /// `log(B, X)`.
    const LOGS: &[(&str, c_int, usize)] = &[
        ("ln", 1, 0),
        ("log", 1, 1),
        ("log10", 1, 1),
        ("log2", 1, 2),
        ("log", 2, 0),
    ];

    /// The argument's numeric value, as `sqlite3_value_numeric_type` sees it.
    ///
    /// # Safety
    /// `v` must be a valid argument value of the current call.
    unsafe fn numeric(v: *mut ffi::sqlite3_value) -> Option<f64> {
        // SAFETY: per the caller's contract.
        unsafe {
            match ffi::sqlite3_value_numeric_type(v) {
                ffi::SQLITE_INTEGER | ffi::SQLITE_FLOAT => Some(ffi::sqlite3_value_double(v)),
                _ => None,
            }
        }
    }

    /// # Safety
    /// Called by SQLite with a valid context and `argc` valid argument values.
    unsafe extern "C" fn rounding(
        ctx: *mut ffi::sqlite3_context,
        _argc: c_int,
        argv: *mut *mut ffi::sqlite3_value,
    ) {
        // SAFETY: SQLite's contract for scalar function callbacks; the user data is the index
        // given at registration.
        unsafe {
            let arg = *argv;
            match ffi::sqlite3_value_numeric_type(arg) {
                ffi::SQLITE_INTEGER => {
                    ffi::sqlite3_result_int64(ctx, ffi::sqlite3_value_int64(arg));
                }
                ffi::SQLITE_FLOAT => {
                    let f = ROUNDING[ffi::sqlite3_user_data(ctx) as usize].1;
                    ffi::sqlite3_result_double(ctx, f(ffi::sqlite3_value_double(arg)));
                }
                _ => {}
            }
        }
    }

    /// # Safety
    /// Called by SQLite with a valid context and `argc` valid argument values.
    unsafe extern "C" fn unary(
        ctx: *mut ffi::sqlite3_context,
        _argc: c_int,
        argv: *mut *mut ffi::sqlite3_value,
    ) {
        // SAFETY: as in `rounding`.
        unsafe {
            if let Some(x) = numeric(*argv) {
                let f = UNARY[ffi::sqlite3_user_data(ctx) as usize].1;
                ffi::sqlite3_result_double(ctx, f(x));
            }
        }
    }

    /// # Safety
    /// Called by SQLite with a valid context and `argc` valid argument values.
    unsafe extern "C" fn binary(
        ctx: *mut ffi::sqlite3_context,
        _argc: c_int,
        argv: *mut *mut ffi::sqlite3_value,
    ) {
        // SAFETY: as in `rounding`.
        unsafe {
            let Some(x) = numeric(*argv) else { return };
            let Some(y) = numeric(*argv.add(1)) else {
                return;
            };
            let f = BINARY[ffi::sqlite3_user_data(ctx) as usize].1;
            ffi::sqlite3_result_double(ctx, f(x, y));
        }
    }

    /// SQLite's `logFunc`, including its quirk of checking the first argument's type twice.
    ///
    /// # Safety
    /// Called by SQLite with a valid context and `argc` valid argument values.
    unsafe extern "C" fn logarithm(
        ctx: *mut ffi::sqlite3_context,
        argc: c_int,
        argv: *mut *mut ffi::sqlite3_value,
    ) {
        // SAFETY: as in `rounding`.
        unsafe {
            let Some(mut x) = numeric(*argv) else {
                return;
            };
            if x <= 0.0 {
                return;
            }
            let answer = if argc == 2 {
                let b = log(x);
                if b <= 0.0 {
                    return;
                }
                x = ffi::sqlite3_value_double(*argv.add(1));
                if x <= 0.0 {
                    return;
                }
                log(x) / b
            } else {
                match ffi::sqlite3_user_data(ctx) as usize {
                    1 => log10(x),
                    2 => log2(x),
                    _ => log(x),
                }
            };
            ffi::sqlite3_result_double(ctx, answer);
        }
    }

    /// # Safety
    /// Called by SQLite with a valid context.
    unsafe extern "C" fn pi(
        ctx: *mut ffi::sqlite3_context,
        _argc: c_int,
        _argv: *mut *mut ffi::sqlite3_value,
    ) {
        // SAFETY: a valid context from SQLite.
        unsafe { ffi::sqlite3_result_double(ctx, std::f64::consts::PI) }
    }

    fn create(
        conn: &Connection,
        name: &str,
        args: c_int,
        data: usize,
        f: Callback,
    ) -> rusqlite::Result<()> {
        let name = CString::new(name).expect("function name");
        let flags = ffi::SQLITE_UTF8 | ffi::SQLITE_DETERMINISTIC | ffi::SQLITE_INNOCUOUS;
        // SAFETY: the handle is the live connection's; the name is copied by SQLite; the user
        // data is a plain index, never dereferenced; the callback matches SQLite's signature.
        let rc = unsafe {
            ffi::sqlite3_create_function_v2(
                conn.handle(),
                name.as_ptr(),
                args,
                flags,
                data as *mut c_void,
                Some(f),
                None,
                None,
                None,
            )
        };
        check(rc)
    }

    /// Registers every math function on `conn`.
    pub fn register(conn: &Connection) -> rusqlite::Result<()> {
        for (i, (name, _)) in ROUNDING.iter().enumerate() {
            create(conn, name, 1, i, rounding)?;
        }
        for (i, (name, _)) in UNARY.iter().enumerate() {
            create(conn, name, 1, i, unary)?;
        }
        for (i, (name, _)) in BINARY.iter().enumerate() {
            create(conn, name, 2, i, binary)?;
        }
        for (name, args, base) in LOGS {
            create(conn, name, *args, *base, logarithm)?;
        }
        create(conn, "pi", 0, 0, pi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pragma_arguments_follow_d1() {
        assert!(pragma_arg_ok(PragmaArg::Boolean, Some("ON")));
        assert!(pragma_arg_ok(PragmaArg::Boolean, Some("'yes'")));
        assert!(pragma_arg_ok(PragmaArg::Boolean, Some("onion")));
        assert!(!pragma_arg_ok(PragmaArg::Boolean, Some("2")));
        assert!(!pragma_arg_ok(PragmaArg::Boolean, Some("-1")));
        assert!(pragma_arg_ok(PragmaArg::OptionalNumber, Some("0x10002")));
        assert!(pragma_arg_ok(PragmaArg::OptionalNumber, Some("-1")));
        assert!(!pragma_arg_ok(PragmaArg::OptionalNumber, Some("abc")));
        assert!(!pragma_arg_ok(
            PragmaArg::OptionalNumber,
            Some("4294967296")
        ));
        assert!(!pragma_arg_ok(PragmaArg::Name, None));
        assert!(!pragma_arg_ok(PragmaArg::Name, Some("_cf_KV")));
        assert!(pragma_arg_ok(PragmaArg::OptionalNumberOrName, Some("-5")));
        assert!(!pragma_arg_ok(PragmaArg::None, Some("1")));
    }

    #[test]
    fn absent_functions_read_no_such_function() {
        assert_eq!(
            absent_function_message("not authorized to use function: SOUNDEX").as_deref(),
            Some("no such function: SOUNDEX")
        );
        assert_eq!(
            absent_function_message("wrong number of arguments to function if()").as_deref(),
            Some("no such function: if")
        );
        assert_eq!(
            absent_function_message("not authorized to use function: sqlite_version"),
            None
        );
    }
}
