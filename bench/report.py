#!/usr/bin/env python3
"""Turn one benchmark run (results.jsonl + run.json + profiles) into BENCHMARKS.md, and print it.

usage: report.py --results FILE --rundir DIR --output FILE [--smoke 0|1] [--build PROFILE]
                 [--bin PATH] [--weed PATH] [--command TEXT] [--repeat N]

Checks the run as well: every measured command exited 0, every backup reported success with
its sizes and made D1 requests, the backups with verify on and the one verified per database
restored and checked, every floor was measured, every database was measured at every method
and latency (and replayed, when the run replays). Any problem is listed in the Markdown and
makes the exit code 1, in --smoke mode as in a full run. The targets of issue 18 are evaluated
and shown, never asserted: a missed target is a finding (FAIL), not a broken benchmark. So is
an export the replaying fake D1 cannot serve.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

MIB = 1 << 20
# The targets of issue 18.
RSS_LIMIT_MIB = 64
RSS_GROWTH_LIMIT = 0.20
CPU_LIMIT = 1.25        # tool CPU (verify off, first latency) / (zstd -3 -T1 + sha256sum) CPU
REPLAY_LIMIT = 1.3      # backup wall against the replay / zstd -3 -T2 wall, at the largest size
LATENCY_FACTOR = 0.7    # wall at N ms <= 0.7 x requests x N ms + the 0 ms wall
VERIFY_LIMIT = 1.0      # extra CPU of verify on / (sqlite3 shell load + zstd -d) CPU
REQUESTS_LIMIT = {"query": 302, "export": 11}  # the largest size: unchanged or fewer than run 20261128T142759Z


def sh(cmd, cwd=None):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           cwd=cwd, timeout=30, errors="replace")
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def fmt(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def mib(kib):
    return None if kib is None else kib / 1024


def machine(root, args):
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    osname = ""
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    commit = sh(["git", "rev-parse", "--short=12", "HEAD"], cwd=root)
    subject = sh(["git", "log", "-1", "--format=%s"], cwd=root)
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root)
    # `sh` strips the output, so the first line may have lost the leading space of its
    # status: take the path after the status field. Documentation cannot change a figure.
    paths = [line.split(None, 1)[1] for line in dirty.splitlines() if len(line.split(None, 1)) == 2]
    changed = [p for p in paths if not p.startswith("bench/") and not p.endswith(".md")]
    branch = sh(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=root)
    weed_v = ""
    if args.weed:
        m = re.search(r"version (\S+ \S+)", sh([args.weed, "version"]))
        weed_v = m.group(1) if m else ""
    zstd_v = re.search(r"v(\d+\.\d+\.\d+)", sh(["zstd", "--version"]))
    return {
        "cpu": cpu or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "ram_gib": mem_kib / (1 << 20),
        "kernel": platform.release(),
        "os": osname,
        "rustc": sh(["rustc", "--version"]),
        "commit": commit,
        "subject": subject,
        "branch": branch,
        "dirty": changed,
        "sqlite3": sh(["sqlite3", "--version"]).split(" ")[0],
        "zstd": zstd_v.group(1) if zstd_v else "",
        "weed": weed_v,
        "perf": sh(["perf", "--version"]),
        "python": platform.python_version(),
    }


def timeline_slices(tl, n):
    """Average cores used per process in each of n equal slices of the wall time."""
    t = tl["t"]
    if len(t) < 2 or t[-1] <= 0:
        return []
    wall = t[-1]
    out = []
    for i in range(n):
        a, b = wall * i / n, wall * (i + 1) / n
        row = {}
        for who, series in tl.items():
            if who == "t":
                continue
            row[who] = max(0.0, (cpu_at(t, series, b) - cpu_at(t, series, a)) / (b - a))
        out.append(row)
    return out


def cpu_at(t, series, x):
    """Cumulative CPU at time x, interpolated linearly between samples."""
    pts = [(ti, v) for ti, v in zip(t, series) if v is not None]
    if not pts:
        return 0.0
    if x <= pts[0][0]:
        return pts[0][1] * (x / pts[0][0]) if pts[0][0] > 0 else pts[0][1]
    for (t0, v0), (t1, v1) in zip(pts, pts[1:]):
        if t0 <= x <= t1:
            return v0 + (v1 - v0) * ((x - t0) / (t1 - t0) if t1 > t0 else 1.0)
    return pts[-1][1]


def read_load(rundir, name):
    try:
        return open(os.path.join(rundir, name)).read().split()[:3]
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--rundir", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--smoke", default="0")
    ap.add_argument("--build", default="release")
    ap.add_argument("--bin", default="")
    ap.add_argument("--weed", default="")
    ap.add_argument("--command", default="bench/run.sh")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    smoke = args.smoke == "1"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        run = json.load(open(os.path.join(args.rundir, "run.json")))
    except (OSError, ValueError):
        run = {}

    recs = [json.loads(line) for line in open(args.results) if line.strip()]
    for r in recs:
        r.setdefault("workload", "ratings")  # runs before issue 18 had one workload
    problems = []
    findings = []  # things that did not work but do not break the benchmark

    def replay_export_failed(r):
        return r.get("kind") == "replay" and r.get("method") == "export" and r.get("exit_code") != 0

    for r in recs:
        if r.get("exit_code") != 0 and not replay_export_failed(r):
            problems.append(f"`{r['name']}` exited {r.get('exit_code')}: "
                            f"{(r.get('stderr_tail') or '').strip()[-300:]}")

    def find(**kw):
        return [r for r in recs if all(str(r.get(k)) == str(v) for k, v in kw.items())]

    def one(**kw):
        """The measurement matching kw; with --repeat, the fastest successful one."""
        xs = find(**kw)
        if not xs:
            return None
        ok = [r for r in xs if r.get("exit_code") == 0]
        return min(ok, key=lambda r: r["wall_s"]) if ok else xs[-1]

    def good(r):
        return r is not None and r.get("exit_code") == 0

    # A case is one database: (workload, size); the ratings sizes first, smallest first.
    cases = []
    methods = []
    lats = []
    for r in recs:
        if r.get("kind") == "backup":
            c = (r["workload"], r["size"])
            if c not in cases:
                cases.append(c)
            if r["method"] not in methods:
                methods.append(r["method"])
            if int(r["latency_ms"]) not in lats:
                lats.append(int(r["latency_ms"]))
    for m in run.get("methods", []):
        if m not in methods:
            methods.append(m)
    for lat in run.get("latencies", []):
        if lat not in lats:
            lats.append(lat)
    db_bytes = {}
    for r in recs:
        if "db_bytes" in r:
            db_bytes[(r["workload"], r["size"])] = int(r["db_bytes"])
    cases.sort(key=lambda c: (c[0] != "ratings", db_bytes.get(c, 0)))
    lat0 = lats[0] if lats else 0
    m0 = methods[0] if methods else "query"
    if not cases:
        problems.append("no backup was measured")
    ratings = [c for c in cases if c[0] == "ratings"]
    big = ratings[-1] if ratings else None
    small = ratings[0] if ratings else None
    rows_of = {}
    for r in recs:
        if r.get("rows"):
            rows_of[(r["workload"], r["size"])] = int(r["rows"])

    def label(c):
        if c[0] == "ratings":
            return c[1]
        n = rows_of.get(c)
        return f"small, {n:,} rows" if n else f"small-{c[1]}"

    def size_label(c):
        """The size column, next to a workload column."""
        n = rows_of.get(c)
        return f"{n:,} rows" if c[0] != "ratings" and n else c[1]

    def kw(c):
        return {"workload": c[0], "size": c[1]}

    # ------------------------------------------------------------ sanity of every backup
    backup_kinds = ("backup", "backup-verify", "replay")
    for r in recs:
        if r.get("kind") not in backup_kinds or r.get("exit_code") != 0:
            continue
        rep = r.get("report") or {}
        if rep.get("success") is not True:
            problems.append(f"`{r['name']}`: no success report on stdout")
        for k in ("sizeBytes", "compressedBytes", "sqlSha256", "key", "rowCount"):
            if not rep.get(k):
                problems.append(f"`{r['name']}`: report has no `{k}`")
        if not r.get("requests"):
            problems.append(f"`{r['name']}`: made no D1 requests (fake stats)")
        if not r.get("peak_rss_kib"):
            problems.append(f"`{r['name']}`: no peak RSS")
        if rep.get("method") and rep["method"] != r["method"]:
            problems.append(f"`{r['name']}`: ran method {rep['method']}, not {r['method']}")
        if r["kind"] == "backup-verify" and rep.get("verified") is not True:
            problems.append(f"`{r['name']}`: verify on, but the report has no `verified: true`")
    for c in cases:
        L = label(c)
        for m in methods:
            for lat in lats:
                if not find(kind="backup", method=m, latency_ms=lat, **kw(c)):
                    problems.append(f"{L}: no `{m}` backup at {lat} ms")
        v = find(kind="verify", **kw(c))
        if not v:
            problems.append(f"{L}: the backup was not verified")
        for r in v:
            if r.get("exit_code") == 0 and (r.get("report") or {}).get("verified") is not True:
                problems.append(f"`{r['name']}`: verify did not report `verified: true`")
        if not find(kind="backup-verify", **kw(c)):
            problems.append(f"{L}: no backup with verify on")
        if not one(kind="floor-dump", **kw(c)):
            problems.append(f"{L}: no `sqlite3 .dump | zstd -3` floor")
        for m in methods:
            for k in ("floor-zstd", "floor-sha256", "floor-zstd-t2"):
                if not one(kind=k, method=m, **kw(c)):
                    problems.append(f"{L} {m}: no {k} floor")
        for k in ("floor-load", "floor-unzstd"):
            if not one(kind=k, **kw(c)):
                problems.append(f"{L}: no {k} floor (verification)")
        if run.get("replay"):
            for m in methods:
                rr = find(kind="replay", method=m, **kw(c))
                if not rr:
                    problems.append(f"{L}: no `{m}` backup against the replay")
                elif m == "export" and not any(good(r) for r in rr):
                    r = rr[-1]
                    last = ((r.get("stderr_tail") or "").strip().splitlines() or [""])[-1]
                    findings.append(
                        f"{L}: the `export` backup against the replaying fake D1 failed (exit "
                        f"{r.get('exit_code')}): `{last[:300]}`")
        # Same database, same SQL: every backup must agree on the rows.
        rows = {(r.get("report") or {}).get("rowCount") for r in recs
                if r.get("kind") in backup_kinds and r.get("exit_code") == 0
                and (r["workload"], r["size"]) == c}
        if len(rows) > 1:
            problems.append(f"{L}: backups disagree on the row count: {sorted(rows)}")

    m_info = machine(root, args)
    load_start = read_load(args.rundir, "loadavg-start")
    load_end = read_load(args.rundir, "loadavg-end")
    other = [(r.get("other_cpu_s") or 0, r["name"]) for r in recs]
    max_other = max(other) if other else (0, "")

    out = []
    w = out.append
    title = "d1-backup benchmark" + (" (smoke run: sizes too small for the targets)" if smoke else "")
    w(f"# {title}\n")
    run_id = os.path.basename(os.path.normpath(args.rundir))
    m_id = re.match(r"(\d{8}T\d{6}Z)", run_id)
    started = (datetime.datetime.strptime(m_id.group(1), "%Y%m%dT%H%M%SZ")
               if m_id else datetime.datetime.now(datetime.timezone.utc))
    w(f"Generated by `{args.command}` (run `{run_id}`, started "
      f"{started.strftime('%Y-%m-%d %H:%M')} UTC). "
      "Every figure below comes from that one run, measured side by side on the machine "
      "described here. How to run it and what each column means: "
      "[bench/README.md](bench/README.md).\n")

    # ------------------------------------------------------------ machine
    w("## Machine\n")
    w("| | |\n|---|---|")
    w(f"| CPU | {m_info['cpu']}, {m_info['cores']} cores (as seen by the OS) |")
    w(f"| RAM | {m_info['ram_gib']:.1f} GiB |")
    w(f"| OS / kernel | {m_info['os']} / Linux {m_info['kernel']} |")
    w(f"| Rust | {m_info['rustc']} ({args.build} build, the workspace's `[profile.{args.build}]`) |")
    commit = f"`{m_info['commit']}` on `{m_info['branch']}` ({m_info['subject']})"
    if m_info["dirty"]:
        commit += "; with uncommitted changes to " + ", ".join(f"`{p}`" for p in m_info["dirty"][:8])
    w(f"| Commit | {commit} |")
    w(f"| Tools | sqlite3 {m_info['sqlite3']}, zstd {m_info['zstd']}, SeaweedFS {m_info['weed']}, "
      f"{m_info['perf'] or 'no perf'}, Python {m_info['python']} |")
    if load_start or load_end:
        la = (f"start {' '.join(load_start) if load_start else '?'}, "
              f"end {' '.join(load_end) if load_end else '?'} (1/5/15 min)")
        w(f"| Load average | {la} |")
    w(f"| Other work on the machine | at most {max_other[0]:.1f} CPU-s during one measurement "
      f"(`{max_other[1]}`); see Notes |")
    w("")

    # ------------------------------------------------------------ databases
    w("## Databases\n")
    w("Generated by `bench/gen.py` (seed 42). **ratings** (one per size): tables `ratings` "
      "(text, reals, 64-bit ints, ~2% BLOBs), `users` (~10% BLOB avatars), `items`, and two "
      "indexes on `ratings`. **small**: one table `events(id INTEGER PRIMARY KEY, account_id, "
      "quantity, amount REAL, label TEXT, day TEXT)` of short rows (~10-character label, ISO "
      "date), where the costs per row and per value weigh the most.\n")
    w("| Workload | Size | File | Rows (all tables) | SQL (query) | SQL (export) |\n"
      "|---|---|---:|---:|---:|---:|")
    for c in cases:
        sql = {}
        rows = None
        for m in methods:
            b = one(kind="backup", method=m, latency_ms=lat0, **kw(c))
            rep = (b or {}).get("report") or {}
            sql[m] = rep.get("sizeBytes")
            rows = rows or rep.get("rowCount")
        w(f"| {c[0]} | {size_label(c)} | {db_bytes.get(c, 0) / MIB:.1f} MiB | {fmt(rows)} | "
          + " | ".join(f"{sql[m] / MIB:.1f} MiB" if sql.get(m) else "–" for m in ("query", "export"))
          + " |")
    w("")

    # ------------------------------------------------------------ measurements
    def backup_row(r, first):
        rep = r.get("report") or {}
        sb, cb = rep.get("sizeBytes"), rep.get("compressedBytes")
        wc = r.get("watched_cpu_s") or {}
        return (f"| {first} | {fmt(r['wall_s'])} | {fmt(r['cpu_s'])} "
                f"({fmt(r['user_s'])}+{fmt(r['sys_s'])}) | {fmt(mib(r.get('peak_rss_kib')), 1)} | "
                f"{fmt(r.get('requests'))} | "
                f"{fmt(sb / 1e6 / r['wall_s'], 1) if sb and r['wall_s'] else '–'} | "
                f"{fmt(sb / 1e6 / r['cpu_s'], 1) if sb and r['cpu_s'] else '–'} | "
                f"{fmt(sb / cb, 2) + '×' if sb and cb else '–'} | "
                f"{fmt(wc.get('fake'))} | {fmt(wc.get('weed'))} | {fmt(r.get('cpu_bound_s'))} |")

    cols = ("Wall s | CPU s (user+sys) | Peak RSS MiB | D1 requests | SQL MB/s (wall) | "
            "SQL MB/s (CPU) | Compression ratio | fake D1 CPU s | SeaweedFS CPU s | "
            "All CPU / cores s |")
    w("## Measurements\n")
    w("One `d1-backup backup` (verify off) per row, through the live fake D1 into SeaweedFS. "
      "Wall time is the whole backup (the fake D1 and SeaweedFS serve it meanwhile); CPU and "
      "peak RSS are the tool's own process only.\n")
    if args.repeat > 1:
        w(f"Each backup, replay and wall-time floor ran {args.repeat} times; the fastest run "
          "is shown (its CPU, RSS and requests with it).\n")
    w("| Workload | Size | Method | D1 latency | " + cols)
    w("|---|---|---|---:|" + "---:|" * 10)
    for c in cases:
        for m in methods:
            for lat in lats:
                r = one(kind="backup", method=m, latency_ms=lat, **kw(c))
                if r:
                    w(backup_row(r, f"{c[0]} | {size_label(c)} | {m} | {lat} ms"))
    exports = [r for r in find(kind="backup", method="export")
               if (r.get("report") or {}).get("exportSeconds") is not None]
    if exports:
        w("\nThe export backups split: the D1 export phase (D1 generating the dump, the database "
          "blocked; the tool only polls) as the tool reports it (`exportSeconds`), and the rest: "
          "the schema and list requests, then downloading the dump from the signed URL (not an "
          "API request: no added latency), compressing and uploading it:\n")
        w("| Workload | Size | D1 latency | D1 export phase s | The rest s | Wall s |\n"
          "|---|---|---:|---:|---:|---:|")
        for c in cases:
            for lat in lats:
                r = one(kind="backup", method="export", latency_ms=lat, **kw(c))
                if r and (r.get("report") or {}).get("exportSeconds") is not None:
                    e = r["report"]["exportSeconds"]
                    w(f"| {c[0]} | {size_label(c)} | {lat} ms | {e:.2f} | {r['wall_s'] - e:.2f} | "
                      f"{r['wall_s']:.2f} |")
    w("")

    # ------------------------------------------------------------ replay
    w("## Replay: the tool without the server's cost\n")
    if run.get("replay"):
        w("After the live measurements, a fake D1 at 0 ms recorded every answer it gave "
          "(`fake-d1 --record`) to one backup of each database and method (not measured); a "
          "second fake serves those answers back from disk (`fake-d1 --replay`, 0 ms, no SQL "
          "work, the signed export download included), and each database is backed up against "
          "it once more (verify off, a fresh prefix). The floor is `zstd -3 -T2` (two threads: "
          "the machine's two cores) over the same SQL, read from the page cache. The target "
          "applies at the largest ratings size; the other rows are information.\n")
        w("| Workload | Size | Method | Wall s | CPU s | Peak RSS MiB | D1 requests | "
          "replaying fake CPU s | SeaweedFS CPU s | `zstd -3 -T2` wall s | Wall / floor | "
          "Live 0 ms wall s |")
        w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in cases:
            for m in methods:
                r = one(kind="replay", method=m, **kw(c))
                if r is None:
                    continue
                f2 = one(kind="floor-zstd-t2", method=m, **kw(c))
                live = one(kind="backup", method=m, latency_ms=0, **kw(c))
                if not good(r):
                    w(f"| {c[0]} | {size_label(c)} | {m} | failed (exit {r.get('exit_code')}) | | | | | | "
                      f"{fmt(f2['wall_s']) if f2 else '–'} | | "
                      f"{fmt(live['wall_s']) if live else '–'} |")
                    continue
                wc = r.get("watched_cpu_s") or {}
                ratio = r["wall_s"] / f2["wall_s"] if f2 and f2["wall_s"] else None
                w(f"| {c[0]} | {size_label(c)} | {m} | {fmt(r['wall_s'])} | {fmt(r['cpu_s'])} | "
                  f"{fmt(mib(r.get('peak_rss_kib')), 1)} | {fmt(r.get('requests'))} | "
                  f"{fmt(wc.get('fake'))} | {fmt(wc.get('weed'))} | "
                  f"{fmt(f2['wall_s']) if f2 else '–'} | "
                  f"{fmt(ratio) + '×' if ratio is not None else '–'} | "
                  f"{fmt(live['wall_s']) if live else '–'} |")
        for f in findings:
            w(f"\n- {f}. The export is measured live only.")
    else:
        w(f"Not measured in this run: {run.get('replay_note') or 'no replay'}.")
    w("")

    # ------------------------------------------------------------ verification
    w("## Verification\n")
    w("`d1-backup verify latest` of the first method's backup at the first latency (download, "
      "restore into a temporary SQLite database, check hashes, integrity, foreign keys and row "
      "counts), once per database:\n")
    w("| Workload | Size | Backup verified | Wall s | CPU s | Peak RSS MiB | Verified |\n"
      "|---|---|---|---:|---:|---:|---|")
    for c in cases:
        for r in find(kind="verify", **kw(c)):
            w(f"| {c[0]} | {size_label(c)} | {r['method']} at {r['latency_ms']} ms | {fmt(r['wall_s'])} | "
              f"{fmt(r['cpu_s'])} | {fmt(mib(r.get('peak_rss_kib')), 1)} | "
              f"{'yes' if (r.get('report') or {}).get('verified') else '**no**'} |")
    w("")
    w("What verification costs a backup: the same backup (first method, first latency) with "
      "`verify: true` and with `verify: false`; the extra CPU is compared with the floor of "
      "doing the same work with the standard tools on the same SQL: the `sqlite3` shell loading "
      "it into a fresh database file (`BEGIN; .read FILE; COMMIT`) plus `zstd -d` of the stored "
      "object (a local file, from the page cache).\n")
    w("| Workload | Size | Backup | CPU s verify off | CPU s verify on | Extra CPU s | "
      "Wall s off → on | Peak RSS MiB on | `sqlite3` load CPU s (wall s) | `zstd -d` CPU s | "
      "Floor CPU s | Extra / floor |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    verify_cost = {}
    for c in cases:
        bv = one(kind="backup-verify", **kw(c))
        if not bv:
            continue
        b0 = one(kind="backup", method=bv["method"], latency_ms=bv["latency_ms"], **kw(c))
        ld = one(kind="floor-load", **kw(c))
        uz = one(kind="floor-unzstd", **kw(c))
        extra = bv["cpu_s"] - b0["cpu_s"] if good(bv) and good(b0) else None
        floor = ld["cpu_s"] + uz["cpu_s"] if ld and uz else None
        ratio = extra / floor if extra is not None and floor else None
        verify_cost[c] = (bv, b0, extra, floor, ratio)
        w(f"| {c[0]} | {size_label(c)} | {bv['method']} at {bv['latency_ms']} ms | "
          f"{fmt(b0['cpu_s']) if b0 else '–'} | {fmt(bv['cpu_s'])} | {fmt(extra)} | "
          f"{fmt(b0['wall_s']) if b0 else '–'} → {fmt(bv['wall_s'])} | "
          f"{fmt(mib(bv.get('peak_rss_kib')), 1)} | "
          f"{fmt(ld['cpu_s']) if ld else '–'} ({fmt(ld['wall_s']) if ld else '–'}) | "
          f"{fmt(uz['cpu_s']) if uz else '–'} | {fmt(floor)} | "
          f"{fmt(ratio) + '×' if ratio is not None else '–'} |")
    w("")

    # ------------------------------------------------------------ floors
    w("## Floors (same databases, same run)\n")
    w("`sqlite3 db .dump | zstd -3` on the cached database file; the others over the exact SQL "
      "the tool stored (downloaded back, decompressed, its SHA-256 checked against the tool's "
      "`sqlSha256`), read from the page cache: the CPU floor `zstd -3 -T1` + `sha256sum`, the "
      "replay's wall floor `zstd -3 -T2`, and (first method) the verification floor.\n")
    w("| Workload | Size | `sqlite3 db .dump \\| zstd -3` wall s (CPU s) | Method | SQL the tool wrote | "
      "`zstd -3 -T1` CPU s | `sha256sum` CPU s | zstd + sha256 CPU s | `zstd -3 -T2` wall s (CPU s) | "
      "`sqlite3` load CPU s | `zstd -d` CPU s |")
    w("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in cases:
        fd = one(kind="floor-dump", **kw(c))
        for m in methods:
            z = one(kind="floor-zstd", method=m, **kw(c))
            h = one(kind="floor-sha256", method=m, **kw(c))
            z2 = one(kind="floor-zstd-t2", method=m, **kw(c))
            ld = one(kind="floor-load", method=m, **kw(c))
            uz = one(kind="floor-unzstd", method=m, **kw(c))
            tot = (z["cpu_s"] + h["cpu_s"]) if z and h else None
            sqlb = int(z.get("sql_bytes", 0)) if z else 0
            w(f"| {c[0]} | {size_label(c)} | {fmt(fd['wall_s']) if fd else '–'} "
              f"({fmt(fd['cpu_s']) if fd else '–'}) | {m} | "
              f"{sqlb / MIB:.1f} MiB | {fmt(z['cpu_s']) if z else '–'} | "
              f"{fmt(h['cpu_s']) if h else '–'} | {fmt(tot)} | "
              f"{fmt(z2['wall_s']) if z2 else '–'} ({fmt(z2['cpu_s']) if z2 else '–'}) | "
              f"{fmt(ld['cpu_s']) if ld else '–'} | {fmt(uz['cpu_s']) if uz else '–'} |")
    w("")

    # ------------------------------------------------------------ targets
    targets = []  # (target, case, measured, limit, ok)

    def add(target, case, measured, limit, ok):
        targets.append((target, case, measured, limit, ok))

    # CPU: every database, every method, verify off, at the first latency.
    for c in cases:
        for m in methods:
            b0 = one(kind="backup", method=m, latency_ms=lat0, **kw(c))
            z = one(kind="floor-zstd", method=m, **kw(c))
            h = one(kind="floor-sha256", method=m, **kw(c))
            if good(b0) and z and h:
                floor = z["cpu_s"] + h["cpu_s"]
                ratio = b0["cpu_s"] / floor if floor else float("inf")
                add(f"CPU: tool CPU ≤ {CPU_LIMIT}× `zstd -3 -T1` + `sha256sum` CPU",
                    f"{label(c)} {m} ({lat0} ms)",
                    f"{b0['cpu_s']:.2f} s vs {floor:.2f} s = {ratio:.2f}×", f"{CPU_LIMIT}×",
                    ratio <= CPU_LIMIT)
    # Wall with the server's cost removed: the replay, at the largest ratings size.
    if big is not None and run.get("replay"):
        for m in methods:
            r = one(kind="replay", method=m, **kw(big))
            f2 = one(kind="floor-zstd-t2", method=m, **kw(big))
            if good(r) and f2 and f2["wall_s"]:
                ratio = r["wall_s"] / f2["wall_s"]
                add(f"Wall, replay: backup ≤ {REPLAY_LIMIT}× `zstd -3 -T2`", f"{label(big)} {m}",
                    f"{r['wall_s']:.2f} s vs {f2['wall_s']:.2f} s = {ratio:.2f}×",
                    f"{REPLAY_LIMIT}×", ratio <= REPLAY_LIMIT)
            elif r is not None and not good(r):
                add(f"Wall, replay: backup ≤ {REPLAY_LIMIT}× `zstd -3 -T2`", f"{label(big)} {m}",
                    "the replay failed (see Replay)", f"{REPLAY_LIMIT}×", None)
    # Wall at N ms: the round trips overlap with the tool's work and with each other.
    for c in cases:
        for m in methods:
            b0 = one(kind="backup", method=m, latency_ms=0, **kw(c))
            for lat in lats:
                if lat == 0:
                    continue
                b = one(kind="backup", method=m, latency_ms=lat, **kw(c))
                if good(b) and good(b0) and b.get("requests"):
                    limit = LATENCY_FACTOR * b["requests"] * lat / 1000 + b0["wall_s"]
                    add(f"Wall, {lat} ms: ≤ {LATENCY_FACTOR} × requests × {lat} ms + the 0 ms time",
                        f"{label(c)} {m}",
                        f"{b['wall_s']:.2f} s ({b['requests']} requests, 0 ms: {b0['wall_s']:.2f} s)",
                        f"{limit:.2f} s", b["wall_s"] <= limit)
    # Verification: the extra CPU of verify on, against the sqlite3 load + zstd -d floor.
    for c in cases:
        if c in verify_cost:
            bv, b0, extra, floor, ratio = verify_cost[c]
            if ratio is not None:
                add(f"Verification: extra CPU of verify on ≤ {VERIFY_LIMIT}× `sqlite3` load + "
                    "`zstd -d` CPU", f"{label(c)} {bv['method']} ({bv['latency_ms']} ms)",
                    f"{extra:.2f} s vs {floor:.2f} s = {ratio:.2f}×", f"{VERIFY_LIMIT}×",
                    ratio <= VERIFY_LIMIT)
    # Memory: every kind of run at the largest size (and the small workload), and the growth
    # from the smallest ratings size to the largest.
    mem_kinds = (("backup", "backup"), ("backup-verify", "backup, verify on"),
                 ("replay", "replay"), ("verify", "`verify latest`"))
    for c in ([big] if big else []) + [c for c in cases if c[0] != "ratings"]:
        for kind, what in mem_kinds:
            for m in methods:
                rb = [r for r in find(kind=kind, method=m, **kw(c)) if r.get("peak_rss_kib")]
                if not rb:
                    continue
                peak = max(mib(r["peak_rss_kib"]) for r in rb)
                n = len({r.get("latency_ms") for r in rb})
                add(f"Memory: peak RSS at {label(c)} ≤ {RSS_LIMIT_MIB} MiB",
                    f"{what} {m}" + (f" (highest of {n} latencies)" if n > 1 else ""),
                    f"{peak:.1f} MiB", f"{RSS_LIMIT_MIB} MiB", peak <= RSS_LIMIT_MIB)
                if c != big or small is None or small == big:
                    continue
                rs = [r for r in find(kind=kind, method=m, **kw(small)) if r.get("peak_rss_kib")]
                if rs:
                    ps = max(mib(r["peak_rss_kib"]) for r in rs)
                    growth = peak / ps - 1
                    add(f"Memory: {label(big)} within 20% of {label(small)}", f"{what} {m}",
                        f"{peak:.1f} vs {ps:.1f} MiB ({growth * 100:+.1f}%)",
                        f"≤ {ps * (1 + RSS_GROWTH_LIMIT):.1f} MiB (+20%)",
                        growth <= RSS_GROWTH_LIMIT)
    # Requests: unchanged or fewer than before issue 18, at the largest size.
    if big is not None:
        for m in methods:
            rb = [r for r in find(kind="backup", method=m, **kw(big)) if r.get("requests")]
            if rb and m in REQUESTS_LIMIT:
                req = max(r["requests"] for r in rb)
                add(f"Requests: {label(big)} no more than before", m, f"{req}",
                    f"≤ {REQUESTS_LIMIT[m]}", req <= REQUESTS_LIMIT[m])

    w("## Targets (issue 18)\n")
    if smoke:
        w("Smoke run: the sizes are far too small for the targets to mean anything, so they are "
          "shown but not asserted.\n")
    w("| Target | Case | Measured | Limit | Result |\n|---|---|---|---|---|")
    for target, case, measured, limit, ok in targets:
        if ok is None:
            res = "not measured"
        elif not smoke:
            res = "pass" if ok else "**FAIL**"
        else:
            res = "(pass)" if ok else "(fail)"
        w(f"| {target} | {case} | {measured} | {limit} | {res} |")
    n_fail = sum(1 for t in targets if t[4] is False)
    n_pass = sum(1 for t in targets if t[4] is True)
    w("")
    if not smoke:
        w(f"{n_pass} of {n_pass + n_fail} target checks pass"
          + (f"; {n_fail} fail (see the profile and the notes for why)." if n_fail else ".")
          + (f" {len(targets) - n_pass - n_fail} not measured." if len(targets) > n_pass + n_fail
             else "") + "\n")
    if not run.get("replay"):
        w(f"The replay target was not evaluated: {run.get('replay_note') or 'no replay'}.\n")

    # ------------------------------------------------------------ timeline
    tl_rows = []
    if big is not None:
        for kind, lat_kw, what in (("backup", {"latency_ms": 0}, "live fake D1, 0 ms"),
                                   ("replay", {}, "replay")):
            for m in methods:
                b0 = one(kind=kind, method=m, **lat_kw, **kw(big))
                if good(b0) and b0.get("timeline"):
                    try:
                        tl = json.load(open(os.path.join(os.path.dirname(args.results),
                                                         b0["timeline"])))
                    except (OSError, ValueError):
                        continue
                    tl_rows.append((f"{m}, {what}", b0, timeline_slices(tl, 10)))
    if tl_rows:
        w(f"## Who was busy when ({label(big)})\n")
        w("Cores in use by each process in each tenth of the backup's wall time (from "
          "`/proc/PID/stat` every 100 ms; 2.0 = both cores of this machine). Where the sum is "
          "well under the core count, the backup waits on one stage instead of overlapping "
          "them.\n")
        for what, b0, sl in tl_rows:
            w(f"**{what}** ({b0['wall_s']:.2f} s wall):\n")
            w("| Tenth | " + " | ".join(str(i + 1) for i in range(len(sl))) + " |")
            w("|---|" + "---:|" * len(sl))
            for who, lab in (("tool", "d1-backup"), ("fake", "fake D1"), ("weed", "SeaweedFS")):
                w(f"| {lab} | " + " | ".join(f"{x.get(who, 0):.1f}" for x in sl) + " |")
            w("| sum | " + " | ".join(f"{sum(x.values()):.1f}" for x in sl) + " |")
            w("")

    # ------------------------------------------------------------ profile
    profs = []
    for m in methods:
        pj = os.path.join(args.rundir, f"profile-{m}.json")
        if os.path.exists(pj):
            profs.append((m, json.load(open(pj))))
    if profs:
        prec = {m: one(kind="profile", method=m) for m, _ in profs}
        psize = next((label((r["workload"], r["size"])) for r in prec.values() if r), "?")
        w("## Profile\n")
        w(f"`perf record -e cpu-clock -F 1999 --call-graph dwarf` of one `d1-backup backup` per "
          f"method ({psize}, {lat0} ms latency; a symbolized copy of the release build), "
          "summarised by `bench/profile.py`. Self time of all the tool's threads (the dump, the "
          "zstd workers, the upload); kernel time is split by why the kernel ran. The fake D1 and "
          "SeaweedFS are other processes and not in it. Full text: `profile-METHOD.txt` in the "
          "run directory.\n")
        for m, p in profs:
            cats = p.get("categories", [])
            top = ", ".join(f"{c['category']} {c['pct']:.0f}%" for c in cats[:3])
            w(f"**{m}** ({p.get('samples')} samples, kernel {p.get('kernel_pct', 0):.0f}%). "
              f"Dominant: {top}.\n")
            w("| Category (self time) | Share |\n|---|---:|")
            for c in cats:
                if c["pct"] >= 0.5:
                    w(f"| {c['category']} | {c['pct']:.1f}% |")
            w("")
            w("| Top functions (self time) | Share |\n|---|---:|")
            for f in p.get("top_functions", [])[:12]:
                sym = f["symbol"].replace("|", "\\|")
                if len(sym) > 100:
                    sym = sym[:99] + "…"
                w(f"| `{sym}` | {f['pct']:.1f}% |")
            w("")
            for cat, v in (p.get("callers") or {}).items():
                cs = v.get("callers") or []
                if cs:
                    w(f"- {cat} ({v['pct']:.1f}% of samples), nearest caller: "
                      + "; ".join(f"`{c['caller'][:80]}` {c['share_pct']:.0f}%" for c in cs[:4]))
            w("")
    elif not smoke:
        w("## Profile\n\nNo profile in this run (perf unavailable or `--no-profile`).\n")

    # ------------------------------------------------------------ notes
    notes_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
    w("## Notes\n")
    w("- **How it is measured.** `bench/measure.py` forks the command and takes wall time from "
      "spawn to exit, CPU (user+sys) from `wait4()` on that process only (threads included, "
      "nothing else on the machine), and peak RSS from `VmHWM` in `/proc/PID/status`. D1 "
      "requests are the difference of the fake D1's `GET /__fake/stats` before and after. "
      "SQL MB/s is SQL bytes (10^6) compressed per second of wall (or CPU) time; the "
      "compression ratio is SQL bytes / stored bytes (zstd level 3, the default).")
    w("- **The floors.** `sqlite3 db .dump | zstd -3` runs on the same cached database file "
      "(its wall time is the pipeline's). The others run over the exact SQL the tool stored "
      "(downloaded back and decompressed; its SHA-256 is checked against the tool's "
      "`sqlSha256`), read from the page cache: the CPU floor is `zstd -3 -T1` and `sha256sum`, "
      "one after the other, each single-threaded; the replay's floor is the wall time of "
      "`zstd -3 -T2`; the verification floor is the CPU of `sqlite3 -bail new.db` reading "
      "`BEGIN; .read FILE; COMMIT` into a fresh database file plus `zstd -dc` of the stored "
      "object (downloaded to a local file first).")
    w("- **Verify on** is the same backup (first method, first latency) with `D1_BACKUP_VERIFY="
      "true`, to a fresh prefix; every backup runs with `D1_BACKUP_SKIP_UNCHANGED=false`, so "
      "none is skipped as unchanged.")
    if run.get("replay"):
        w("- **Replay.** The answers are recorded by a separate fake D1 in a pass of its own, not "
          "during the measured runs (recording costs the fake CPU and writes about as many bytes "
          "as the SQL to disk), and flushed to disk (`sync`) before the replays are measured. "
          "The replaying fake does no SQL work; its CPU is in the Replay table. With `export`, "
          "the replay answers the same polls as the live fake (two \"active\"), so the tool's "
          "pauses between polls are part of its wall time there too.")
    w("- **D1 latency** is added by the fake D1 before it answers each API request (`--latency-ms`); "
      "the export's signed-URL download is not an API request and gets none. With `export`, the "
      "fake D1 answers the first two polls \"active\", so an export backup carries the tool's "
      "pauses between those polls at any size.")
    if lats and 0 not in lats:
        w("- No 0 ms run: the 0 ms targets were not evaluated.")
    noisy = [r for r in recs if (r.get("other_cpu_s") or 0) > max(0.3, 0.10 * (r.get("wall_s") or 0))]
    if not noisy:
        w("- **Other work on the machine**: none worth counting during any measurement (at most "
          f"{max_other[0]:.1f} CPU-s: /proc/stat busy time minus the tool, the fake D1 and "
          "SeaweedFS).")
    else:
        w("- **Other work on the machine** (/proc/stat busy time minus the tool, the fake D1 and "
          "SeaweedFS; the processes that did it in brackets) still disturbed, after waiting and "
          "re-measuring: "
          + "; ".join(f"`{r['name']}` {r['other_cpu_s']:.1f} CPU-s in {r['wall_s']:.1f} s"
                      + (" (" + ", ".join(f"{o['comm']} {o['cpu_s']:.1f}" for o in r["other_top"][:3]) + ")"
                         if r.get("other_top") else "")
                      for r in noisy)
          + ". Their wall times are upper bounds; CPU times can be inflated too (the cores share "
            "caches), peak RSS and request counts are not affected.")
    waited = sum(r.get("quiet_wait_s") or 0 for r in recs)
    again = [r["name"] for r in recs if (r.get("attempts") or r.get("attempt") or 1) > 1]
    if waited or again:
        w(f"- Shared-machine guard: the run waited {waited:.0f} s in all for the machine to be "
          f"idle before measurements, and measured {len(again)} again because other work "
          "disturbed them (the least disturbed attempt is shown)"
          + (": " + ", ".join(f"`{n}`" for n in again[:12]) if again else "") + ".")
    if os.path.exists(notes_path) and not smoke:
        notes = open(notes_path).read().strip()
        w("")
        if run_id in notes:
            w(notes)
        else:
            # An analysis of another run would quote figures that are not in the tables above.
            m_run = re.search(r"\d{8}T\d{6}Z", notes)
            w("### Analysis\n")
            w(f"Not written yet for this run (`bench/NOTES.md` is about run "
              f"`{m_run.group(0) if m_run else '?'}`). Write it there, naming run `{run_id}` and "
              "quoting every target with its figure, then render this file again with "
              f"`sh {os.path.relpath(os.path.join(args.rundir, 'report.sh'), root)}`.")
    w("")

    fleet_path = os.path.join(args.rundir, "fleet.md")
    if os.path.exists(fleet_path):
        w(open(fleet_path).read().strip())
        w("")

    if problems:
        w("## Problems\n")
        w("The benchmark itself is broken: these must be fixed before the figures mean anything.\n")
        for p in problems:
            w(f"- {p}")
        w("")

    text = "\n".join(out).rstrip() + "\n"
    with open(args.output, "w") as f:
        f.write(text)
    print(text)
    summary = {"targets": [{"target": t, "case": c, "measured": me, "limit": li, "ok": ok}
                           for t, c, me, li, ok in targets], "problems": problems,
               "findings": findings}
    with open(os.path.join(args.rundir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if problems:
        print(f"report.py: the benchmark is broken: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
