// Runs the shim on D1's local engine: miniflare — the runtime `wrangler dev --local` runs,
// pinned with wrangler in package-lock.json — with the D1 bindings of wrangler.toml.
//
//   node serve.mjs <port> <state dir> <api token> <token id> <account id>
//
// Prints "ready <port>" once requests are served; stops when its stdin closes (the test
// harness holds it open) or on SIGTERM/SIGINT.
//
// Why not `wrangler dev` itself: its proxy in front of the Worker reuses its inner
// connections, and a POST that meets one the runtime has just closed comes back as "Your
// worker restarted mid-request" (503) — seen under the parallel test load, never from the
// engine. The engine, its SQLite build, limits and authorizer are the same either way.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const here = dirname(fileURLToPath(import.meta.url));
const [port, state, token, tokenId, account] = process.argv.slice(2);
if (!port || !state || !token || !tokenId || !account) {
  console.error("usage: node serve.mjs <port> <state dir> <api token> <token id> <account id>");
  process.exit(2);
}

// The D1 bindings and compatibility date, from wrangler.toml (which `wrangler d1 execute`
// reads too).
const toml = readFileSync(join(here, "wrangler.toml"), "utf8");
const d1Databases = {};
for (const block of toml.split("[[d1_databases]]").slice(1)) {
  const binding = /binding\s*=\s*"([^"]+)"/.exec(block);
  const id = /database_id\s*=\s*"([^"]+)"/.exec(block);
  if (binding && id) d1Databases[binding[1]] = id[1];
}
const compatibilityDate = /compatibility_date\s*=\s*"([^"]+)"/.exec(toml)[1];

const mf = new Miniflare({
  modules: true,
  scriptPath: join(here, "shim.js"),
  compatibilityDate,
  d1Databases,
  d1Persist: join(state, "v3", "d1"),
  bindings: { API_TOKEN: token, TOKEN_ID: tokenId, ACCOUNT_ID: account },
  host: "127.0.0.1",
  port: Number(port),
  cf: false,
});
await mf.ready;
console.log(`ready ${port}`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose().catch(() => {});
  process.exit(0);
}
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
