//! Reading the catalog of a database and deciding how each table is dumped.
//!
//! Reads `sqlite_schema`, `PRAGMA table_list` and the per-table pragmas (through their
//! table-valued forms in one query each, falling back to one `PRAGMA` per table when a
//! server refuses those) and builds a [`Schema`]: the user tables in an order where parents
//! come before children, how each one is paged (rowid or primary key), which columns are
//! inserted (generated columns are not), which virtual tables carry data, and the indexes,
//! views and triggers to create after the data. `_cf_*` tables, SQLite internals and the
//! shadow tables of virtual tables are left out.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, bail};

use crate::rows::{Rows, Value};
use crate::source::Source;

/// Type affinity of a column, from its declared type (SQLite §3.1 rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl Affinity {
    pub fn from_decl(decl: &str) -> Affinity {
        let d = decl.to_ascii_uppercase();
        if d.contains("INT") {
            Affinity::Integer
        } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
            Affinity::Text
        } else if d.contains("BLOB") || d.trim().is_empty() {
            Affinity::Blob
        } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }

    /// Whether storing text in such a column may turn it into a number.
    pub fn converts_text(self) -> bool {
        matches!(self, Affinity::Integer | Affinity::Real | Affinity::Numeric)
    }
}

/// A column as `PRAGMA table_xinfo` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub decl_type: String,
    /// Position in the primary key (1-based), 0 if not part of it.
    pub pk: i64,
    /// 0 normal, 1 hidden (virtual tables), 2/3 generated (virtual/stored).
    pub hidden: i64,
}

impl Column {
    /// Columns that receive values on INSERT.
    pub fn insertable(&self) -> bool {
        self.hidden == 0
    }
}

/// Where a virtual table's rows live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtualContent {
    /// The table stores its own content (FTS default): re-insert the rows.
    Internal,
    /// `content='table'`: rebuild from that table after its data is loaded.
    External(String),
    /// `content=''`: the index has no content to restore.
    Contentless,
    /// A module whose data this tool does not know how to restore.
    Unsupported,
}

/// What kind of table.
#[derive(Debug, Clone, PartialEq)]
pub enum TableKind {
    Regular {
        without_rowid: bool,
        strict: bool,
    },
    Virtual {
        module: String,
        content: VirtualContent,
    },
}

/// How rows are keyed for paging and for the `UPDATE`s that finish long values.
#[derive(Debug, Clone, PartialEq)]
pub enum RowKey {
    /// Page by rowid. `name` is an unshadowed rowid name (`rowid`, `_rowid_`, `oid`, or the
    /// INTEGER PRIMARY KEY column); `explicit` means the rowid is written in INSERTs.
    Rowid { name: String, explicit: bool },
    /// WITHOUT ROWID: page by the primary key columns (indices into `columns`).
    PrimaryKey(Vec<usize>),
}

/// A table to dump.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub sql: String,
    pub kind: TableKind,
    pub columns: Vec<Column>,
    pub key: RowKey,
    /// Tables this one references with foreign keys.
    pub parents: Vec<String>,
}

impl Table {
    pub fn is_virtual(&self) -> bool {
        matches!(self.kind, TableKind::Virtual { .. })
    }

    pub fn strict(&self) -> bool {
        matches!(self.kind, TableKind::Regular { strict: true, .. })
    }

    /// Whether rows are read and re-inserted.
    pub fn has_row_data(&self) -> bool {
        match &self.kind {
            TableKind::Regular { .. } => true,
            TableKind::Virtual { content, .. } => *content == VirtualContent::Internal,
        }
    }

    pub fn insert_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.insertable())
    }
}

/// An index, view or trigger, created after the data.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaObject {
    pub kind: String,
    pub name: String,
    pub tbl_name: String,
    pub sql: String,
}

/// Everything the dumper needs to know about a database.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// User tables, parents before children (virtual tables after regular ones).
    pub tables: Vec<Table>,
    /// Indexes, then views, then triggers, each group in creation order.
    pub objects: Vec<SchemaObject>,
    pub has_sqlite_sequence: bool,
    /// The server has SQLite's math functions, so `-0.0` can be told from `0.0`.
    pub negative_zero: bool,
    /// Every user table's name in creation order (`sqlite_schema` rowid order: the order
    /// D1's export writes them in).
    pub creation_order: Vec<String>,
    /// `sqlite_schema` as it was read, as literals (see [`MASTER_LITERALS_SQL`]): a later
    /// request that reads it again tells whether the schema changed in between.
    pub master_literals: Vec<Vec<String>>,
}

/// `_cf_*` (D1's own) and `sqlite_*` (SQLite's) objects are never dumped.
pub fn is_internal(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("_cf_") || lower.starts_with("sqlite_")
}

const NOT_INTERNAL: &str =
    "m.name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'";

/// `sqlite_schema` in creation order.
const MASTER_SQL: &str = "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid";

/// `sqlite_schema` as literals, to tell whether it changed between two requests.
pub const MASTER_LITERALS_SQL: &str = "SELECT quote(type), quote(name), quote(tbl_name), quote(sql) FROM sqlite_schema ORDER BY rowid";

/// Answers only where SQLite's math functions exist (quote() prints -0.0 as 0.0; atan2()
/// tells them apart).
const NEGATIVE_ZERO_PROBE: &str = "SELECT atan2(0.0,-1.0)";

fn columns_sql() -> String {
    format!(
        "SELECT m.name, p.name, p.type, p.pk, p.hidden FROM sqlite_schema AS m, pragma_table_xinfo(m.name) AS p \
         WHERE m.type = 'table' AND {NOT_INTERNAL} ORDER BY m.rowid, p.cid"
    )
}

fn foreign_keys_sql() -> String {
    format!(
        "SELECT m.name, p.\"table\" FROM sqlite_schema AS m, pragma_foreign_key_list(m.name) AS p \
         WHERE m.type = 'table' AND {NOT_INTERNAL}"
    )
}

fn pk_indexes_sql() -> String {
    format!(
        "SELECT m.name FROM sqlite_schema AS m, pragma_index_list(m.name) AS p \
         WHERE m.type = 'table' AND {NOT_INTERNAL} AND p.origin = 'pk'"
    )
}

/// Everything the schema read asks, answered in one request where the source can; the
/// slots of a source that cannot are empty and each part is read on its own.
struct Answers {
    slots: Vec<Option<Rows>>,
}

impl Answers {
    const MASTER: usize = 0;
    const TABLE_LIST: usize = 1;
    const COLUMNS: usize = 2;
    const FOREIGN_KEYS: usize = 3;
    const PK_INDEXES: usize = 4;
    const NEGATIVE_ZERO: usize = 5;

    async fn read(source: &dyn Source) -> Answers {
        let statements = vec![
            MASTER_SQL.to_string(),
            "PRAGMA table_list".to_string(),
            columns_sql(),
            foreign_keys_sql(),
            pk_indexes_sql(),
            NEGATIVE_ZERO_PROBE.to_string(),
        ];
        let n = statements.len();
        let slots = match source.query_many("read schema", &statements).await {
            Ok(rows) if rows.len() == n => rows.into_iter().map(Some).collect(),
            Ok(_) | Err(_) => (0..n).map(|_| None).collect(),
        };
        Answers { slots }
    }

    fn take(&mut self, slot: usize) -> Option<Rows> {
        self.slots.get_mut(slot).and_then(Option::take)
    }
}

/// Read the schema of `source`: one request where the source answers a batch, else a few.
pub async fn read(source: &dyn Source) -> Result<Schema> {
    let mut answers = Answers::read(source).await;
    let master = match answers.take(Answers::MASTER) {
        Some(rows) => rows,
        None => source.query("read schema", MASTER_SQL).await?,
    };
    let list = match answers.take(Answers::TABLE_LIST) {
        Some(rows) => rows,
        None => source.query("read table list", "PRAGMA table_list").await?,
    };
    let entries: Vec<Entry> = master
        .rows
        .iter()
        .map(|r| Entry {
            kind: text(&r[0]),
            name: text(&r[1]),
            tbl_name: text(&r[2]),
            sql: r[3].as_str().map(str::to_string),
        })
        .collect();
    let has_sqlite_sequence = entries.iter().any(|e| e.name == "sqlite_sequence");
    let listed = table_list(&list)?;
    let candidates: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == "table" && e.sql.is_some() && !is_internal(&e.name))
        .filter(|e| !listed.get(&lower(&e.name)).is_some_and(Listed::is_shadow))
        .collect();
    let names: Vec<String> = candidates.iter().map(|e| e.name.clone()).collect();
    let columns = read_columns(source, &names, answers.take(Answers::COLUMNS)).await?;
    let parents = read_foreign_keys(source, &names, answers.take(Answers::FOREIGN_KEYS)).await?;
    let pk_indexed = read_pk_indexes(source, &names, answers.take(Answers::PK_INDEXES)).await?;

    let mut tables = Vec::new();
    for e in &candidates {
        let sql = e.sql.clone().unwrap_or_default();
        let key_name = lower(&e.name);
        let cols = columns.get(&key_name).cloned().unwrap_or_default();
        let kind = table_kind(&sql, listed.get(&key_name));
        let key = row_key(&e.name, &kind, &cols, pk_indexed.contains(&key_name))?;
        tables.push(Table {
            name: e.name.clone(),
            sql,
            kind,
            columns: cols,
            key,
            parents: parents.get(&key_name).cloned().unwrap_or_default(),
        });
    }
    let negative_zero = match answers.take(Answers::NEGATIVE_ZERO) {
        Some(_) => true,
        None => source
            .query("probe math functions", NEGATIVE_ZERO_PROBE)
            .await
            .is_ok(),
    };
    Ok(Schema {
        tables: creation_ready(tables),
        objects: schema_objects(&entries, &listed),
        has_sqlite_sequence,
        negative_zero,
        creation_order: names,
        master_literals: master_literals(&master),
    })
}

/// `sqlite_schema` as [`MASTER_LITERALS_SQL`] selects it.
fn master_literals(master: &Rows) -> Vec<Vec<String>> {
    master
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| match v.as_str() {
                    Some(t) => crate::sqltext::quote_str(t),
                    None => "NULL".to_string(),
                })
                .collect()
        })
        .collect()
}

/// One row of `sqlite_schema`.
struct Entry {
    kind: String,
    name: String,
    tbl_name: String,
    sql: Option<String>,
}

/// What `PRAGMA table_list` says about a table.
#[derive(Clone)]
struct Listed {
    /// `table`, `view`, `shadow` or `virtual`.
    kind: String,
    without_rowid: bool,
    strict: bool,
}

impl Listed {
    fn is_shadow(&self) -> bool {
        self.kind == "shadow"
    }
}

/// `PRAGMA table_list` of the main schema, by lower-case name.
fn table_list(list: &Rows) -> Result<HashMap<String, Listed>> {
    let (c_schema, c_name, c_type, c_wr, c_strict) = (
        list.col("schema"),
        list.col("name"),
        list.col("type"),
        list.col("wr"),
        list.col("strict"),
    );
    let (Some(c_name), Some(c_type)) = (c_name, c_type) else {
        bail!(
            "PRAGMA table_list returned unexpected columns {:?}",
            list.columns
        );
    };
    let mut listed = HashMap::new();
    for r in &list.rows {
        if let Some(cs) = c_schema
            && text(&r[cs]) != "main"
        {
            continue;
        }
        let flag = |c: Option<usize>| c.and_then(|i| r[i].as_i64()).unwrap_or(0) != 0;
        listed.insert(
            lower(&text(&r[c_name])),
            Listed {
                kind: text(&r[c_type]),
                without_rowid: flag(c_wr),
                strict: flag(c_strict),
            },
        );
    }
    Ok(listed)
}

/// Whether a table is virtual (with its module and content) or regular.
fn table_kind(sql: &str, listed: Option<&Listed>) -> TableKind {
    let is_virtual = listed.is_some_and(|l| l.kind == "virtual");
    if is_virtual || starts_with_ci(sql, "CREATE VIRTUAL TABLE") {
        let (module, content) = parse_virtual(sql);
        TableKind::Virtual { module, content }
    } else {
        TableKind::Regular {
            without_rowid: listed.is_some_and(|l| l.without_rowid),
            strict: listed.is_some_and(|l| l.strict),
        }
    }
}

/// Regular tables in dependency order, then virtual tables (external content tables must
/// exist, and hold data, before an index is rebuilt from them).
fn creation_ready(tables: Vec<Table>) -> Vec<Table> {
    let (regular, virtuals): (Vec<Table>, Vec<Table>) =
        tables.into_iter().partition(|t| !t.is_virtual());
    let order = dependency_order(
        &regular.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        &regular
            .iter()
            .map(|t| (lower(&t.name), t.parents.iter().map(|p| lower(p)).collect()))
            .collect(),
    );
    let mut slots: Vec<Option<Table>> = regular.into_iter().map(Some).collect();
    let mut tables: Vec<Table> = order.iter().filter_map(|&i| slots[i].take()).collect();
    tables.extend(virtuals);
    tables
}

/// Indexes, views and triggers, in that order (those of internal and shadow tables left out:
/// they belong to SQLite or to their virtual table).
fn schema_objects(entries: &[Entry], listed: &HashMap<String, Listed>) -> Vec<SchemaObject> {
    let mut objects = Vec::new();
    for kind in ["index", "view", "trigger"] {
        for e in entries.iter().filter(|e| e.kind == kind) {
            let Some(sql) = &e.sql else { continue };
            if is_internal(&e.name) || is_internal(&e.tbl_name) {
                continue;
            }
            if kind != "view"
                && listed
                    .get(&lower(&e.tbl_name))
                    .is_some_and(Listed::is_shadow)
            {
                continue;
            }
            objects.push(SchemaObject {
                kind: kind.to_string(),
                name: e.name.clone(),
                tbl_name: e.tbl_name.clone(),
                sql: sql.clone(),
            });
        }
    }
    objects
}

/// Columns of every table: one query over `pragma_table_xinfo`, else one PRAGMA per table.
async fn read_columns(
    source: &dyn Source,
    names: &[String],
    answered: Option<Rows>,
) -> Result<HashMap<String, Vec<Column>>> {
    let mut out: HashMap<String, Vec<Column>> = HashMap::new();
    match joined(source, "read columns", &columns_sql(), answered).await {
        Ok(rows) => {
            for r in &rows.rows {
                out.entry(lower(&text(&r[0]))).or_default().push(Column {
                    name: text(&r[1]),
                    decl_type: text(&r[2]),
                    pk: r[3].as_i64().unwrap_or(0),
                    hidden: r[4].as_i64().unwrap_or(0),
                });
            }
        }
        Err(_) => {
            for name in names {
                let rows = source
                    .query(
                        &format!("read columns of table {name:?}"),
                        &format!("PRAGMA table_xinfo({})", crate::sqltext::quote_ident(name)),
                    )
                    .await?;
                out.insert(lower(name), columns_from_pragma(&rows)?);
            }
        }
    }
    Ok(out)
}

fn columns_from_pragma(rows: &Rows) -> Result<Vec<Column>> {
    let idx = |n: &str| {
        rows.col(n)
            .with_context(|| format!("PRAGMA table_xinfo has no column {n}"))
    };
    let (n, t, pk) = (idx("name")?, idx("type")?, idx("pk")?);
    let hidden = rows.col("hidden");
    Ok(rows
        .rows
        .iter()
        .map(|r| Column {
            name: text(&r[n]),
            decl_type: text(&r[t]),
            pk: r[pk].as_i64().unwrap_or(0),
            hidden: hidden.and_then(|h| r[h].as_i64()).unwrap_or(0),
        })
        .collect())
}

/// The answer of a query over every table at once (`pragma_…(m.name)` joined with
/// `sqlite_schema`): already answered in the schema batch, or asked now. An error means the
/// source cannot join pragmas, and each table is asked on its own.
async fn joined(
    source: &dyn Source,
    operation: &str,
    sql: &str,
    answered: Option<Rows>,
) -> Result<Rows> {
    match answered {
        Some(rows) => Ok(rows),
        None => source.query(operation, sql).await,
    }
}

/// Parent tables per table, from foreign keys.
async fn read_foreign_keys(
    source: &dyn Source,
    names: &[String],
    answered: Option<Rows>,
) -> Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    match joined(source, "read foreign keys", &foreign_keys_sql(), answered).await {
        Ok(rows) => {
            for r in &rows.rows {
                out.entry(lower(&text(&r[0])))
                    .or_default()
                    .push(text(&r[1]));
            }
        }
        Err(_) => {
            for name in names {
                let rows = source
                    .query(
                        &format!("read foreign keys of table {name:?}"),
                        &format!(
                            "PRAGMA foreign_key_list({})",
                            crate::sqltext::quote_ident(name)
                        ),
                    )
                    .await?;
                if let Some(c) = rows.col("table") {
                    out.insert(lower(name), rows.rows.iter().map(|r| text(&r[c])).collect());
                }
            }
        }
    }
    Ok(out)
}

/// Tables whose primary key is a real index (so an INTEGER PRIMARY KEY is *not* the rowid,
/// as with `INTEGER PRIMARY KEY DESC`).
async fn read_pk_indexes(
    source: &dyn Source,
    names: &[String],
    answered: Option<Rows>,
) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    match joined(
        source,
        "read primary key indexes",
        &pk_indexes_sql(),
        answered,
    )
    .await
    {
        Ok(rows) => {
            for r in &rows.rows {
                out.insert(lower(&text(&r[0])));
            }
        }
        Err(_) => {
            for name in names {
                let rows = source
                    .query(
                        &format!("read indexes of table {name:?}"),
                        &format!("PRAGMA index_list({})", crate::sqltext::quote_ident(name)),
                    )
                    .await?;
                if let Some(c) = rows.col("origin")
                    && rows.rows.iter().any(|r| text(&r[c]) == "pk")
                {
                    out.insert(lower(name));
                }
            }
        }
    }
    Ok(out)
}

/// Decide how a table is paged and whether its rowid is written out.
pub fn row_key(table: &str, kind: &TableKind, cols: &[Column], pk_index: bool) -> Result<RowKey> {
    if let TableKind::Regular {
        without_rowid: true,
        ..
    } = kind
    {
        let mut pk: Vec<(i64, usize)> = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.pk > 0)
            .map(|(i, c)| (c.pk, i))
            .collect();
        pk.sort();
        if pk.is_empty() {
            bail!("WITHOUT ROWID table {table:?} reports no primary key columns");
        }
        return Ok(RowKey::PrimaryKey(pk.into_iter().map(|(_, i)| i).collect()));
    }
    let is_alias = |c: &Column| {
        !pk_index
            && c.pk == 1
            && c.decl_type.eq_ignore_ascii_case("INTEGER")
            && cols.iter().filter(|c| c.pk > 0).count() == 1
    };
    let alias = match kind {
        TableKind::Regular { .. } => cols.iter().find(|c| is_alias(c)).map(|c| c.name.clone()),
        TableKind::Virtual { .. } => None,
    };
    let taken: HashSet<String> = cols.iter().map(|c| lower(&c.name)).collect();
    let free = ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|n| !taken.contains(*n));
    // rtree and similar modules expose their key as an ordinary first column; FTS tables
    // and rowid tables without an INTEGER PRIMARY KEY need the rowid written explicitly.
    let explicit = alias.is_none()
        && match kind {
            TableKind::Regular { .. } => true,
            TableKind::Virtual { module, .. } => module.starts_with("fts"),
        };
    match (free, alias) {
        (Some(n), _) => Ok(RowKey::Rowid {
            name: n.to_string(),
            explicit,
        }),
        (None, Some(a)) => Ok(RowKey::Rowid {
            name: crate::sqltext::quote_ident(&a),
            explicit: false,
        }),
        (None, None) => bail!(
            "table {table:?} has columns named rowid, _rowid_ and oid, so its rowid cannot be read; rename one of them"
        ),
    }
}

/// Keep the indexes, views and triggers that belong with the kept tables: an index follows
/// its table; a view is kept when every table and view it names is kept; a trigger follows
/// its table or view. `all_tables` holds every table name of the database (lower-case).
pub fn filter_objects(
    objects: Vec<SchemaObject>,
    all_tables: &HashSet<String>,
    kept_tables: &HashSet<String>,
) -> Vec<SchemaObject> {
    let views: HashSet<String> = objects
        .iter()
        .filter(|o| o.kind == "view")
        .map(|o| lower(&o.name))
        .collect();
    let names: HashSet<String> = all_tables.union(&views).cloned().collect();
    let mut kept_views = views.clone();
    loop {
        let before = kept_views.len();
        for o in objects.iter().filter(|o| o.kind == "view") {
            let me = lower(&o.name);
            let ok = referenced_names(&o.sql, &names).iter().all(|n| {
                *n == me || kept_tables.contains(n) || (views.contains(n) && kept_views.contains(n))
            });
            if !ok {
                kept_views.remove(&me);
            }
        }
        if kept_views.len() == before {
            break;
        }
    }
    objects
        .into_iter()
        .filter(|o| match o.kind.as_str() {
            "view" => kept_views.contains(&lower(&o.name)),
            "trigger" => {
                let t = lower(&o.tbl_name);
                kept_tables.contains(&t) || kept_views.contains(&t)
            }
            _ => kept_tables.contains(&lower(&o.tbl_name)),
        })
        .collect()
}

/// Names from `known` that appear as identifiers in `sql`.
pub fn referenced_names(sql: &str, known: &HashSet<String>) -> Vec<String> {
    let mut out: Vec<String> = tokenize(sql)
        .iter()
        .map(|t| lower(&unquote(t)))
        .filter(|t| known.contains(t))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Parse `CREATE VIRTUAL TABLE x USING module(args)`: the module and where content lives.
pub fn parse_virtual(sql: &str) -> (String, VirtualContent) {
    let tokens = tokenize(sql);
    let using = tokens.iter().position(|t| t.eq_ignore_ascii_case("USING"));
    let Some(u) = using else {
        return (String::new(), VirtualContent::Unsupported);
    };
    let module = tokens
        .get(u + 1)
        .map(|t| unquote(t).to_ascii_lowercase())
        .unwrap_or_default();
    let args = top_level_args(sql);
    let content = match module.as_str() {
        "fts5" | "fts4" => {
            let opt = args.iter().find_map(|a| {
                let (k, v) = a.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("content")
                    .then(|| unquote(v.trim()).to_string())
            });
            match opt {
                None => VirtualContent::Internal,
                Some(v) if v.is_empty() => VirtualContent::Contentless,
                Some(v) => VirtualContent::External(v),
            }
        }
        "fts3" | "rtree" | "rtree_i32" | "geopoly" => VirtualContent::Internal,
        _ => VirtualContent::Unsupported,
    };
    (module, content)
}

/// Split the argument list of `module(...)` at top-level commas.
fn top_level_args(sql: &str) -> Vec<String> {
    let Some(open) = find_outside_quotes(sql, '(') else {
        return vec![];
    };
    let body = &sql[open + 1..];
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in body.chars() {
        if let Some(q) = quote {
            cur.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => {
                quote = Some(c);
                cur.push(c);
            }
            '[' => {
                quote = Some(']');
                cur.push(c);
            }
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' if depth == 0 => {
                args.push(cur.trim().to_string());
                return args;
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => args.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    args.push(cur.trim().to_string());
    args
}

fn find_outside_quotes(s: &str, target: char) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == target => return Some(i),
            None if matches!(c, '\'' | '"' | '`') => quote = Some(c),
            None if c == '[' => quote = Some(']'),
            None => {}
        }
    }
    None
}

/// Tokens of a statement: quoted strings/identifiers kept whole, words, single punctuation.
fn tokenize(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if matches!(c, '\'' | '"' | '`' | '[') {
            let close = if c == '[' { ']' } else { c };
            let start = i;
            i += 1;
            while i < chars.len() {
                if chars[i] == close {
                    if close != ']' && chars.get(i + 1) == Some(&close) {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else if c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || chars[i] == '_'
                    || chars[i] == '$'
                    || !chars[i].is_ascii())
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// Remove SQL quoting from an identifier or string token.
pub fn unquote(t: &str) -> String {
    let t = t.trim();
    let mut cs = t.chars();
    match (cs.next(), t.chars().last()) {
        (Some(q @ ('\'' | '"' | '`')), Some(e)) if e == q && t.len() >= 2 => {
            let inner = &t[1..t.len() - 1];
            let dq: String = [q, q].iter().collect();
            inner.replace(&dq, &q.to_string())
        }
        (Some('['), Some(']')) if t.len() >= 2 => t[1..t.len() - 1].to_string(),
        _ => t.to_string(),
    }
}

/// Order tables so each comes after the tables it references. Ties (and cycles) keep the
/// original order. Returns indices into `names`.
pub fn dependency_order(names: &[String], parents: &HashMap<String, Vec<String>>) -> Vec<usize> {
    let keys: Vec<String> = names.iter().map(|n| lower(n)).collect();
    let present: HashSet<&str> = keys.iter().map(|s| s.as_str()).collect();
    let mut done: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(names.len());
    let mut remaining: Vec<usize> = (0..names.len()).collect();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|&i| {
            parents.get(&keys[i]).is_none_or(|ps| {
                ps.iter().all(|p| {
                    let p = lower(p);
                    p == keys[i] || !present.contains(p.as_str()) || done.contains(p.as_str())
                })
            })
        });
        // A cycle: take the earliest remaining table.
        let pos = ready.unwrap_or(0);
        let i = remaining.remove(pos);
        done.insert(keys[i].as_str());
        out.push(i);
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_rules() {
        let cases = [
            ("INTEGER", Affinity::Integer),
            ("BIGINT", Affinity::Integer),
            ("VARCHAR(10)", Affinity::Text),
            ("CLOB", Affinity::Text),
            ("BLOB", Affinity::Blob),
            ("", Affinity::Blob),
            ("DOUBLE PRECISION", Affinity::Real),
            ("FLOAT", Affinity::Real),
            ("DECIMAL(10,2)", Affinity::Numeric),
            ("BOOLEAN", Affinity::Numeric),
            ("POINT", Affinity::Integer), // "POINT" contains "INT"
        ];
        for (decl, want) in cases {
            assert_eq!(Affinity::from_decl(decl), want, "{decl}");
        }
    }

    #[test]
    fn virtual_table_content_modes() {
        let cases = [
            (
                "CREATE VIRTUAL TABLE docs USING fts5(title, body)",
                "fts5",
                VirtualContent::Internal,
            ),
            (
                "CREATE VIRTUAL TABLE \"x\" USING fts5(a, content='posts', content_rowid='id')",
                "fts5",
                VirtualContent::External("posts".into()),
            ),
            (
                "CREATE VIRTUAL TABLE x USING fts5(a, content='')",
                "fts5",
                VirtualContent::Contentless,
            ),
            (
                "CREATE VIRTUAL TABLE x USING FTS4(a, content=\"t b\")",
                "fts4",
                VirtualContent::External("t b".into()),
            ),
            (
                "CREATE VIRTUAL TABLE x USING rtree(id, minX, maxX)",
                "rtree",
                VirtualContent::Internal,
            ),
            (
                "CREATE VIRTUAL TABLE x USING vec0(a)",
                "vec0",
                VirtualContent::Unsupported,
            ),
            (
                "CREATE VIRTUAL TABLE x USING fts5(a, tokenize = 'porter unicode61', content = 'c(1)')",
                "fts5",
                VirtualContent::External("c(1)".into()),
            ),
        ];
        for (sql, module, content) in cases {
            assert_eq!(parse_virtual(sql), (module.to_string(), content), "{sql}");
        }
    }

    fn col(name: &str, ty: &str, pk: i64) -> Column {
        Column {
            name: name.into(),
            decl_type: ty.into(),
            pk,
            hidden: 0,
        }
    }

    #[test]
    fn row_keys() {
        let regular = TableKind::Regular {
            without_rowid: false,
            strict: false,
        };
        let wr = TableKind::Regular {
            without_rowid: true,
            strict: false,
        };
        // INTEGER PRIMARY KEY aliases the rowid: not written twice.
        assert_eq!(
            row_key(
                "t",
                &regular,
                &[col("id", "INTEGER", 1), col("a", "", 0)],
                false
            )
            .unwrap(),
            RowKey::Rowid {
                name: "rowid".into(),
                explicit: false
            }
        );
        // INTEGER PRIMARY KEY DESC (a real pk index) does not alias the rowid.
        assert_eq!(
            row_key("t", &regular, &[col("id", "INTEGER", 1)], true).unwrap(),
            RowKey::Rowid {
                name: "rowid".into(),
                explicit: true
            }
        );
        // INT PRIMARY KEY is not an alias either.
        assert_eq!(
            row_key("t", &regular, &[col("id", "INT", 1)], false).unwrap(),
            RowKey::Rowid {
                name: "rowid".into(),
                explicit: true
            }
        );
        // A column named rowid shadows the name.
        assert_eq!(
            row_key("t", &regular, &[col("rowid", "TEXT", 0)], false).unwrap(),
            RowKey::Rowid {
                name: "_rowid_".into(),
                explicit: true
            }
        );
        assert_eq!(
            row_key(
                "t",
                &wr,
                &[col("b", "TEXT", 2), col("a", "TEXT", 1), col("c", "", 0)],
                false
            )
            .unwrap(),
            RowKey::PrimaryKey(vec![1, 0])
        );
        assert!(
            row_key(
                "t",
                &regular,
                &[
                    col("rowid", "", 0),
                    col("_rowid_", "", 0),
                    col("oid", "", 0)
                ],
                false
            )
            .is_err()
        );
        let fts = TableKind::Virtual {
            module: "fts5".into(),
            content: VirtualContent::Internal,
        };
        assert_eq!(
            row_key("f", &fts, &[col("a", "", 0)], false).unwrap(),
            RowKey::Rowid {
                name: "rowid".into(),
                explicit: true
            }
        );
    }

    #[test]
    fn parents_first_ties_and_cycles_keep_order() {
        let names: Vec<String> = ["child", "parent", "solo", "a", "b", "self"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut deps: HashMap<String, Vec<String>> = HashMap::new();
        deps.insert("child".into(), vec!["Parent".into()]);
        deps.insert("a".into(), vec!["b".into()]);
        deps.insert("b".into(), vec!["a".into()]);
        deps.insert("self".into(), vec!["self".into(), "missing".into()]);
        let order: Vec<&str> = dependency_order(&names, &deps)
            .into_iter()
            .map(|i| names[i].as_str())
            .collect();
        // `self` is ready before the a<->b cycle has to be broken.
        assert_eq!(order, vec!["parent", "child", "solo", "self", "a", "b"]);
    }

    #[test]
    fn objects_follow_their_tables() {
        let obj = |kind: &str, name: &str, tbl: &str, sql: &str| SchemaObject {
            kind: kind.into(),
            name: name.into(),
            tbl_name: tbl.into(),
            sql: sql.into(),
        };
        let objects = vec![
            obj("index", "i_a", "a", "CREATE INDEX i_a ON a(x)"),
            obj("index", "i_b", "b", "CREATE INDEX i_b ON b(x)"),
            obj("view", "va", "va", "CREATE VIEW va AS SELECT * FROM \"A\""),
            obj(
                "view",
                "vab",
                "vab",
                "CREATE VIEW vab AS SELECT * FROM a JOIN b",
            ),
            obj("view", "vva", "vva", "CREATE VIEW vva AS SELECT * FROM va"),
            obj(
                "view",
                "vvab",
                "vvab",
                "CREATE VIEW vvab AS SELECT * FROM vab",
            ),
            obj(
                "view",
                "konst",
                "konst",
                "CREATE VIEW konst AS SELECT 1 AS one",
            ),
            obj(
                "trigger",
                "t_a",
                "a",
                "CREATE TRIGGER t_a AFTER INSERT ON a BEGIN SELECT 1; END",
            ),
            obj(
                "trigger",
                "t_b",
                "b",
                "CREATE TRIGGER t_b AFTER INSERT ON b BEGIN SELECT 1; END",
            ),
            obj(
                "trigger",
                "t_va",
                "va",
                "CREATE TRIGGER t_va INSTEAD OF INSERT ON va BEGIN SELECT 1; END",
            ),
        ];
        let all: HashSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let kept: HashSet<String> = ["a"].iter().map(|s| s.to_string()).collect();
        let names: Vec<String> = filter_objects(objects, &all, &kept)
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, vec!["i_a", "va", "vva", "konst", "t_a", "t_va"]);
    }

    #[test]
    fn unquoting() {
        assert_eq!(unquote("'a''b'"), "a'b");
        assert_eq!(unquote("\"x\"\"y\""), "x\"y");
        assert_eq!(unquote("[a b]"), "a b");
        assert_eq!(unquote("plain"), "plain");
    }

    #[test]
    fn internal_names() {
        for n in ["_cf_KV", "_CF_METADATA", "sqlite_sequence", "sqlite_stat1"] {
            assert!(is_internal(n), "{n}");
        }
        for n in ["users", "cf_data", "d1_migrations"] {
            assert!(!is_internal(n), "{n}");
        }
    }
}
