#!/usr/bin/env python3
"""Fleet benchmark: API requests per small database, and what they mean for a large fleet.

Serves N small tenant databases (two tables, four rows each) through the fake D1 and backs up
`database: *` three times into a local directory: the first run (every database dumped), an
idle run (nothing written since), and a run after writes to 10% of the databases. The fake's
request counter gives the requests per database of each kind of run; the report projects the
time for 10,000 databases at Cloudflare's 1,200 requests per 5 minutes (4 per second).

Usage: bench/fleet.py --bin target/release/d1-backup --fake-bin target/release/fake-d1
       [--databases 200] [--markdown out.md]
"""

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "bench-fleet-token-0f9e8d7c6b5a"
TOKEN_ID = "0123456789abcdef0123456789abcd02"
PER_SECOND = 1200 / 300
FLEET = 10_000
LIST_PAGE = 100  # databases per page of D1's account listing, projected conservatively


def tenant(path, i):
    c = sqlite3.connect(path)
    c.executescript(
        f"""
        CREATE TABLE users(id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL, big INTEGER);
        CREATE TABLE notes(user_id INTEGER REFERENCES users(id), body TEXT, score REAL);
        CREATE INDEX notes_user ON notes(user_id);
        INSERT INTO users(email, big) VALUES ('a{i}@example.com', 9223372036854775807),
                                             ('b{i}@example.com', -9007199254740993);
        INSERT INTO notes VALUES (1, 'hello {i}', 0.1), (2, 'x''y', -2.5e-300);
        """
    )
    c.commit()
    c.close()


def get_json(url, body=None):
    req = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    req.add_header("authorization", f"Bearer {TOKEN}")
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fake-bin", required=True)
    ap.add_argument("--databases", type=int, default=200)
    ap.add_argument("--markdown")
    a = ap.parse_args()
    n = a.databases
    changed = max(1, n // 10)

    with tempfile.TemporaryDirectory(prefix="d1-fleet-") as tmp:
        args = [a.fake_bin, "--account", ACCOUNT, "--token", f"{TOKEN}:{TOKEN_ID}"]
        for i in range(n):
            path = os.path.join(tmp, f"tenant-{i:04}.sqlite")
            tenant(path, i)
            args += ["--db", f"tenant-{i:04}={path}"]
        out = open(os.path.join(tmp, "fake.out"), "w+")
        fake = subprocess.Popen(args, stdout=out, stderr=subprocess.DEVNULL)
        try:
            uuids = {}
            base = None
            for _ in range(600):
                out.seek(0)
                lines = out.read().splitlines()
                uuids = {l.split()[1]: l.split()[2] for l in lines if l.startswith("database ")}
                base = next((l.split()[1] for l in lines if l.startswith("listening ")), None)
                if base and len(uuids) == n:
                    break
                if fake.poll() is not None:
                    sys.exit("fake-d1 exited")
                time.sleep(0.1)
            stats_url = base.rsplit("/client/v4", 1)[0] + "/__fake/stats"
            env = {
                "PATH": os.environ.get("PATH", ""),
                "CLOUDFLARE_API_TOKEN": TOKEN,
                "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
                "CLOUDFLARE_API_BASE_URL": base,
                "D1_DATABASE": "*",
                "D1_BACKUP_OUTPUT_DIR": os.path.join(tmp, "backups"),
                "D1_BACKUP_CONCURRENCY": "8",
            }

            def run(label):
                before = get_json(stats_url)
                t = time.monotonic()
                p = subprocess.run([a.bin, "backup"], env=env, capture_output=True, text=True)
                wall = time.monotonic() - t
                if p.returncode != 0:
                    sys.exit(f"{label}: exit {p.returncode}\n{p.stderr[-3000:]}")
                reports = json.loads([l for l in p.stdout.splitlines() if l.startswith("[")][-1])
                after = get_json(stats_url)
                lists = after["by_kind"].get("list", 0) - before["by_kind"].get("list", 0)
                return {
                    "label": label,
                    "requests": after["requests"] - before["requests"],
                    "listing": lists,
                    "unchanged": sum(1 for r in reports if r.get("unchanged")),
                    "rows_read": sum(r.get("rowsRead", 0) for r in reports),
                    "wall_s": wall,
                }

            first = run("first run (every database dumped)")
            idle = run("idle run (nothing written)")
            for name in sorted(uuids)[:changed]:
                get_json(
                    f"{base}/accounts/{ACCOUNT}/d1/database/{uuids[name]}/query",
                    json.dumps({"sql": "INSERT INTO users(email) VALUES ('new@example.com')"}).encode(),
                )
            some = run(f"after writes to {changed} databases")
        finally:
            fake.send_signal(signal.SIGTERM)
            fake.wait(timeout=10)

    listing = first["listing"]
    per_dumped = (first["requests"] - first["listing"]) / n
    per_idle = (idle["requests"] - idle["listing"]) / n
    per_changed = (some["requests"] - some["listing"] - (n - changed) * per_idle) / changed
    fleet_listing = -(-FLEET // LIST_PAGE)
    idle_fleet = FLEET * per_idle + fleet_listing
    tenth = int(FLEET * 0.9 * per_idle + FLEET * 0.1 * per_changed + fleet_listing)

    rows = [
        "| Run | Requests | Per database | Unchanged | Rows read | Wall |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for r in (first, idle, some):
        rows.append(
            f"| {r['label']} | {r['requests']} | {(r['requests'] - r['listing']) / n:.2f} | "
            f"{r['unchanged']} | {r['rows_read']} | {r['wall_s']:.1f} s |"
        )
    md = "\n".join(
        [
            f"### Fleet: {n} small databases (`bench/fleet.py`)",
            "",
            f"Each database: two tables, four rows. `database: *`, concurrency 8, local directory; "
            f"the account listing is {listing} request(s) per run.",
            "",
            *rows,
            "",
            f"Requests per small database: **{per_dumped:.2f}** dumped, **{per_idle:.2f}** idle, "
            f"**{per_changed:.2f}** changed.",
            "",
            f"Projected for {FLEET:,} databases at 1,200 requests per 5 minutes on one token: "
            f"idle fleet {idle_fleet:,.0f} requests = **{idle_fleet / PER_SECOND / 60:.0f} min**; "
            f"10% changed {tenth:,} requests = **{tenth / PER_SECOND / 60:.0f} min**; "
            f"first backup of all {FLEET * per_dumped + fleet_listing:,.0f} requests = "
            f"{(FLEET * per_dumped + fleet_listing) / PER_SECOND / 60:.0f} min "
            f"(split it with `shard` and a token per shard).",
            "",
        ]
    )
    print(md)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(md)


if __name__ == "__main__":
    main()
