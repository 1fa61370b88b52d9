// The real-engine test ground: the D1 REST routes d1-backup uses, served over ordinary D1
// bindings of wrangler's local engine (workerd's SQLite with D1's limits and authorizer).
//
// Everything SQL goes through the binding, so the engine alone accepts or refuses it. What the
// shim adds (the envelope, database names, the bookmark, the import flow) is listed in NOTES.md.
// Started by tests/it/support/engine.rs (serve.mjs: miniflare, the runtime of `wrangler dev
// --local`) on 127.0.0.1; `wrangler dev --local` serves it the same by hand.

const SLOTS = 16;
const API = "/client/v4";

// Module state lives as long as the dev server's isolate: one per test run.
const slots = Array.from({ length: SLOTS }, (_, i) => ({
  binding: `SLOT${i}`,
  name: null,
  uuid: null,
  createdAt: null,
  writes: 0,
}));
const uploads = new Map(); // upload id -> { uuid, filename, signature, md5?, sql? }
const imports = new Map(); // uuid -> finished import outcome, until polled

function envelope(result, extra = {}) {
  return { result, success: true, errors: [], messages: [], ...extra };
}

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function fail(status, code, message) {
  return json(status, { result: null, success: false, errors: [{ code, message }], messages: [] });
}

// D1's REST messages drop the binding's `D1_ERROR: ` / `D1_EXEC_ERROR: ` prefixes.
function sqlMessage(e) {
  let m = e && typeof e.message === "string" ? e.message : String(e);
  m = m.replace(/^D1_[A-Z_]*ERROR: /, "");
  m = m.replace(/^Error in line \d+: /, "");
  return m;
}

function hex(n, width) {
  return n.toString(16).padStart(width, "0");
}

// A bookmark that moves only when the database is written (the engine's own counter also
// moves on reads; see NOTES.md).
function bookmark(slot) {
  const tail = slot.uuid.replace(/-/g, "");
  return `${hex(slot.writes, 8)}-00000000-00000000-${tail}`;
}

// ---- SQL statement splitting, as sqlite3_complete() sees statements -------------------------

const SEMI = 0, WS = 1, OTHER = 2, EXPLAIN = 3, CREATE = 4, TEMP = 5, TRIGGER = 6, END = 7;
const TRANS = [
  [1, 0, 2, 3, 4, 2, 2, 2],
  [1, 1, 2, 3, 4, 2, 2, 2],
  [1, 2, 2, 2, 2, 2, 2, 2],
  [1, 3, 3, 2, 4, 2, 2, 2],
  [1, 4, 2, 2, 2, 4, 5, 2],
  [6, 5, 5, 5, 5, 5, 5, 5],
  [6, 6, 5, 5, 5, 5, 5, 7],
  [1, 7, 5, 5, 5, 5, 5, 5],
];

function isIdChar(c) {
  return /[A-Za-z0-9_$]/.test(c) || c.charCodeAt(0) > 0x7f;
}

function keyword(word) {
  switch (word.toUpperCase()) {
    case "CREATE": return CREATE;
    case "TEMP": case "TEMPORARY": return TEMP;
    case "TRIGGER": return TRIGGER;
    case "END": return END;
    case "EXPLAIN": return EXPLAIN;
    default: return OTHER;
  }
}

// Splits `sql` into statements (each ending with its `;`, or the unterminated tail).
export function splitStatements(sql) {
  const out = [];
  let state = 0;
  let start = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    let token;
    if (c === ";") {
      token = SEMI;
      i += 1;
    } else if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f") {
      token = WS;
      i += 1;
    } else if (c === "-" && sql[i + 1] === "-") {
      const e = sql.indexOf("\n", i);
      i = e < 0 ? n : e + 1;
      token = WS;
    } else if (c === "/" && sql[i + 1] === "*") {
      const e = sql.indexOf("*/", i + 2);
      i = e < 0 ? n : e + 2;
      token = WS;
    } else if (c === "'" || c === '"' || c === "`") {
      let j = i + 1;
      for (;;) {
        const e = sql.indexOf(c, j);
        if (e < 0) { j = n; break; }
        if (sql[e + 1] === c) { j = e + 2; continue; }
        j = e + 1;
        break;
      }
      i = j;
      token = OTHER;
    } else if (c === "[") {
      const e = sql.indexOf("]", i);
      i = e < 0 ? n : e + 1;
      token = OTHER;
    } else if (isIdChar(c)) {
      let j = i;
      while (j < n && isIdChar(sql[j])) j += 1;
      token = /[0-9]/.test(c) ? OTHER : keyword(sql.slice(i, j));
      i = j;
    } else {
      token = OTHER;
      i += 1;
    }
    state = TRANS[state][token];
    if (token === SEMI && state === 1) {
      const stmt = sql.slice(start, i).trim();
      if (stmt !== ";") out.push(stmt);
      start = i;
      state = 1;
    }
  }
  const tail = sql.slice(start).trim();
  if (tail.length > 0 && !/^(\s|--[^\n]*(\n|$)|\/\*[\s\S]*?\*\/)*$/.test(tail)) out.push(tail);
  return out;
}

// A statement that only reads (the bookmark stays where it is).
function isRead(stmt) {
  const m = /^\s*([A-Za-z]+)/.exec(stmt);
  if (!m) return true;
  const w = m[1].toUpperCase();
  if (w === "SELECT" || w === "WITH" || w === "EXPLAIN" || w === "VALUES") return true;
  if (w === "PRAGMA") return !/=/.test(stmt) || /defer_foreign_keys/i.test(stmt);
  return false;
}

// ---- values ---------------------------------------------------------------------------------

function toParam(p) {
  if (Array.isArray(p)) return new Uint8Array(p);
  if (typeof p === "boolean") return p ? 1 : 0;
  return p;
}

function toJsonValue(v) {
  if (v instanceof ArrayBuffer) return Array.from(new Uint8Array(v));
  if (ArrayBuffer.isView(v)) return Array.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  if (typeof v === "bigint") return Number(v);
  return v;
}

// ---- databases ------------------------------------------------------------------------------

function findSlot(ref) {
  if (!ref) return null;
  return slots.find((s) => s.name !== null && (s.uuid === ref || s.name === ref)) || null;
}

async function userObjects(db) {
  const r = await db
    .prepare("SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND sql IS NOT NULL")
    .raw();
  return r.map(([type, name]) => ({ type, name }));
}

// Drops every user object of a slot (a deleted database leaves nothing for the next one).
async function wipe(db) {
  const objects = await userObjects(db);
  const q = (n) => `"${n.replace(/"/g, '""')}"`;
  const stmts = [db.prepare("PRAGMA defer_foreign_keys=TRUE")];
  for (const o of objects) if (o.type === "view") stmts.push(db.prepare(`DROP VIEW IF EXISTS ${q(o.name)}`));
  for (const o of objects) if (o.type === "table") stmts.push(db.prepare(`DROP TABLE IF EXISTS ${q(o.name)}`));
  if (stmts.length > 1) await db.batch(stmts);
  for (const t of ["sqlite_sequence", "sqlite_stat1", "sqlite_stat4"]) {
    try { await db.prepare(`DELETE FROM ${t}`).run(); } catch (_) { /* absent */ }
  }
}

async function info(env, slot) {
  const db = env[slot.binding];
  const tables = await db
    .prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'")
    .raw();
  const size = await db.prepare("SELECT 1").run();
  return {
    uuid: slot.uuid,
    name: slot.name,
    created_at: slot.createdAt,
    version: "production",
    num_tables: tables[0][0],
    file_size: size.meta.size_after ?? 0,
    running_in_region: "WEUR",
  };
}

function listItem(slot) {
  return { uuid: slot.uuid, name: slot.name, created_at: slot.createdAt, version: "production" };
}

// ---- /query and /raw ------------------------------------------------------------------------

function queryItems(body) {
  if (body === null || typeof body !== "object") throw new Error("Invalid property: sql => Required");
  const items = Array.isArray(body.batch) ? body.batch : [body];
  return items.map((it, i) => {
    if (typeof it.sql !== "string") {
      throw new Error(`Invalid property: ${Array.isArray(body.batch) ? `batch.${i}.` : ""}sql => Required`);
    }
    return { sql: it.sql, params: Array.isArray(it.params) ? it.params.map(toParam) : [] };
  });
}

function meta(started, changes) {
  const ms = Date.now() - started;
  return {
    served_by: "d1-engine-shim",
    duration: ms,
    changes,
    last_row_id: 0,
    changed_db: changes > 0,
    size_after: 0,
    rows_read: 0,
    rows_written: changes,
  };
}

function bind(db, stmt, params) {
  const p = db.prepare(stmt);
  // D1 binds a request's parameters to each statement, as many as it takes.
  const wanted = (stmt.match(/\?/g) || []).length;
  return wanted > 0 && params.length > 0 ? p.bind(...params.slice(0, wanted)) : p;
}

async function runQuery(env, slot, body, arrays) {
  const db = env[slot.binding];
  const items = queryItems(body);
  const pieces = [];
  for (const it of items) for (const s of splitStatements(it.sql)) pieces.push({ sql: s, params: it.params });
  if (pieces.length === 0) throw new Error("No SQL statements detected.");
  const reads = pieces.every((p) => isRead(p.sql));
  const results = [];
  if (reads || pieces.length === 1) {
    // Reads run one by one through raw(), which keeps column order and duplicate names.
    for (const p of pieces) {
      const started = Date.now();
      const stmt = bind(db, p.sql, p.params);
      if (arrays) {
        const [columns, ...rows] = await stmt.raw({ columnNames: true });
        results.push({
          results: { columns, rows: rows.map((r) => r.map(toJsonValue)) },
          success: true,
          meta: meta(started, 0),
        });
      } else {
        const r = await stmt.all();
        results.push({ results: r.results.map(objectValues), success: true, meta: { ...meta(started, r.meta.changes ?? 0) } });
      }
    }
    if (!reads) slot.writes += 1;
  } else {
    // Several statements that write: one batch, one transaction, as D1 runs a request.
    const started = Date.now();
    const out = await db.batch(pieces.map((p) => bind(db, p.sql, p.params)));
    slot.writes += 1;
    for (const r of out) {
      const rows = r.results || [];
      const columns = rows.length > 0 ? Object.keys(rows[0]) : [];
      results.push({
        results: arrays ? { columns, rows: rows.map((o) => columns.map((c) => toJsonValue(o[c]))) } : rows.map(objectValues),
        success: true,
        meta: meta(started, r.meta.changes ?? 0),
      });
    }
  }
  return results;
}

function objectValues(o) {
  const out = {};
  for (const [k, v] of Object.entries(o)) out[k] = toJsonValue(v);
  return out;
}

// ---- import ---------------------------------------------------------------------------------

async function md5Hex(bytes) {
  const d = await crypto.subtle.digest("MD5", bytes);
  return Array.from(new Uint8Array(d), (b) => hex(b, 2)).join("");
}

function importError(error, atBookmark) {
  const r = { success: false, type: "import", status: "error", error };
  if (atBookmark) r.at_bookmark = atBookmark;
  return r;
}

// Runs a whole file in one transaction (one batch), as D1 imports it.
async function runImport(env, slot, sql) {
  const db = env[slot.binding];
  const atBookmark = bookmark(slot);
  const started = Date.now();
  let stmts;
  try {
    stmts = splitStatements(sql);
    if (stmts.length === 0) throw new Error("No SQL statements detected.");
    await db.batch(stmts.map((s) => db.prepare(s)));
  } catch (e) {
    return importError(sqlMessage(e), atBookmark);
  }
  slot.writes += 1;
  return {
    success: true,
    type: "import",
    at_bookmark: atBookmark,
    status: "complete",
    messages: [`Processed ${stmts.length} queries.`],
    result: {
      final_bookmark: bookmark(slot),
      num_queries: stmts.length,
      meta: { changed_db: true, duration: Date.now() - started, served_by: "d1-engine-shim" },
    },
  };
}

async function importRoute(env, slot, body, origin) {
  const action = body && body.action;
  if (action === "init") {
    if (typeof body.etag !== "string") return fail(400, 7400, "Invalid property: etag => Required");
    const filename = `${slot.uuid}-${body.etag}.sql`;
    const id = crypto.randomUUID();
    const signature = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => hex(b, 2)).join("");
    uploads.set(id, { uuid: slot.uuid, filename, signature });
    const url = `${origin}/signed/import/${id}?X-Amz-Signature=${signature}`;
    return json(200, envelope({ success: true, type: "import", filename, upload_url: url }));
  }
  if (action === "ingest") {
    const up = [...uploads.values()].find((u) => u.uuid === slot.uuid && u.filename === body.filename && u.sql !== undefined);
    if (!up) return json(200, envelope(importError(`File ${body.filename} was not uploaded`)));
    if (up.md5 !== body.etag) return json(200, envelope(importError("The uploaded file's MD5 does not match the provided etag")));
    // The file is imported once; holding it longer would grow the isolate's memory with
    // every restore until the runtime restarts the Worker.
    const sql = up.sql;
    for (const [id, u] of uploads) if (u === up) uploads.delete(id);
    const outcome = await runImport(env, slot, sql);
    imports.set(slot.uuid, outcome);
    return json(202, envelope({ success: true, type: "import", at_bookmark: outcome.at_bookmark, status: "active", messages: ["Starting import..."] }));
  }
  if (action === "poll") {
    const outcome = imports.get(slot.uuid);
    if (!outcome) return json(200, envelope({ success: true, type: "import", status: "error", error: "Not currently importing anything." }));
    imports.delete(slot.uuid);
    return json(200, envelope(outcome));
  }
  return fail(400, 7400, "Invalid property: action => Invalid enum value. Expected 'init' | 'ingest' | 'poll'");
}

async function upload(request, id, url) {
  const up = uploads.get(id);
  if (!up || request.method !== "PUT" || url.searchParams.get("X-Amz-Signature") !== up.signature) {
    return new Response("<Error><Code>AccessDenied</Code></Error>", { status: 403 });
  }
  const bytes = await request.arrayBuffer();
  up.md5 = await md5Hex(bytes);
  up.sql = new TextDecoder().decode(bytes);
  return new Response(null, { status: 200, headers: { etag: `"${up.md5}"` } });
}

// ---- routing --------------------------------------------------------------------------------

async function route(request, env) {
  const url = new URL(request.url);
  const signed = /^\/signed\/import\/([0-9a-f-]+)$/.exec(url.pathname);
  if (signed) return upload(request, signed[1], url);
  if (!url.pathname.startsWith(API)) return fail(404, 7003, "No route for the URI");
  if (request.headers.get("authorization") !== `Bearer ${env.API_TOKEN}`) {
    return fail(403, 10000, "Authentication error");
  }
  const segs = url.pathname.slice(API.length).split("/").filter((s) => s.length > 0).map(decodeURIComponent);
  const method = request.method;
  if (method === "GET" && segs.join("/") === "user/tokens/verify") {
    return json(200, envelope({ id: env.TOKEN_ID, status: "active" }));
  }
  if (segs[0] !== "accounts" || segs[2] !== "d1" || segs[3] !== "database") return fail(404, 7003, "No route for the URI");
  if (segs[1] !== env.ACCOUNT_ID) return fail(403, 7403, "The given account is not valid or is not authorized to access this service");
  const rest = segs.slice(4);
  if (rest.length === 0 && method === "GET") {
    const name = url.searchParams.get("name");
    const page = Math.max(1, Number(url.searchParams.get("page") || 1));
    const perPage = Math.max(1, Math.min(10000, Number(url.searchParams.get("per_page") || 1000)));
    const all = slots.filter((s) => s.name !== null && (name === null || s.name.includes(name)));
    const items = all.slice((page - 1) * perPage, page * perPage).map(listItem);
    return json(200, envelope(items, {
      result_info: { page, per_page: perPage, count: items.length, total_count: all.length, total_pages: Math.ceil(all.length / perPage) },
    }));
  }
  if (rest.length === 0 && method === "POST") {
    const body = await request.json().catch(() => null);
    const name = body && body.name;
    if (typeof name !== "string" || name.length === 0) return fail(400, 7400, "Invalid property: name => Required");
    if (findSlot(name)) return fail(400, 7502, "A database with that name already exists");
    const slot = slots.find((s) => s.name === null);
    if (!slot) return fail(400, 7406, "The shim has no free database slot");
    await wipe(env[slot.binding]);
    slot.name = name;
    slot.uuid = crypto.randomUUID();
    slot.createdAt = new Date().toISOString();
    slot.writes = 1;
    return json(200, envelope(listItem(slot)));
  }
  const slot = findSlot(rest[0]);
  if (!slot) return fail(404, 7404, "Not Found");
  const what = rest.slice(1).join("/");
  try {
    if (what === "" && method === "GET") return json(200, envelope(await info(env, slot)));
    if (what === "" && method === "DELETE") {
      await wipe(env[slot.binding]);
      slot.name = null;
      slot.uuid = null;
      return json(200, envelope(null));
    }
    if (what === "time_travel/bookmark" && method === "GET") return json(200, envelope({ bookmark: bookmark(slot) }));
    if ((what === "raw" || what === "query") && method === "POST") {
      let body;
      try {
        body = await request.json();
      } catch (_) {
        return fail(400, 7400, "Malformed JSON in request body");
      }
      let items;
      try {
        items = queryItems(body);
      } catch (e) {
        return fail(400, 7400, e.message);
      }
      void items;
      try {
        return json(200, envelope(await runQuery(env, slot, body, what === "raw")));
      } catch (e) {
        return fail(400, 7500, sqlMessage(e));
      }
    }
    if (what === "import" && method === "POST") {
      const body = await request.json().catch(() => null);
      return await importRoute(env, slot, body, url.origin);
    }
  } catch (e) {
    return fail(500, 7500, `internal error: ${sqlMessage(e)}`);
  }
  return fail(404, 7003, "No route for the URI");
}

export default {
  async fetch(request, env) {
    return route(request, env);
  },
};
