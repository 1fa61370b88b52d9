#!/usr/bin/env python3
"""Generate a deterministic SQLite database: ratings-like of about a given file size (the
default shape), or one table of small rows (--shape small) of a given row count.

usage: gen.py OUT.sqlite SIZE [--seed N]                     (shape ratings)
       gen.py OUT.sqlite --shape small --rows N [--seed N]
       gen.py --version [--shape ratings|small]

SIZE is a byte count with an optional binary suffix (5M = 5 MiB, 100M, 1G = 1 GiB). The file
is written to OUT.sqlite.tmp and renamed when complete, so an interrupted run never leaves a
half-built database that a later run would reuse. Rows are inserted in fixed batches until
the file (tables + indexes) reaches SIZE; with the same seed, SQLite and Python the result is
identical row for row.

Shape (what a D1 app that stores ratings looks like):
  users(id INTEGER PK, handle TEXT UNIQUE, country TEXT, created_at INTEGER, avatar BLOB)
      one per ~40 ratings; ~10% have a 256..2048-byte avatar BLOB (random, incompressible)
  items(id INTEGER PK, title TEXT, year INTEGER, avg_score REAL)
  ratings(id INTEGER PK, user_id INTEGER, item_id INTEGER, score REAL, weight REAL,
          review TEXT, tags TEXT, created_at TEXT, helpful INTEGER, attachment BLOB)
      score in 0.5 steps, weight a full-precision double, review 0..80 Zipf-distributed
      words (~65% of rows), tags short JSON text, helpful sometimes a 64-bit integer,
      ~2% of rows carry a 64..4096-byte attachment BLOB
  index ratings_item_score ON ratings(item_id, score), index ratings_user ON ratings(user_id)

Shape small (many short rows, where per-row costs weigh the most):
  events(id INTEGER PRIMARY KEY, account_id INTEGER, quantity INTEGER, amount REAL,
         label TEXT, day TEXT)
      id 1..N in order, account_id uniform in 1..200000, quantity 1..100, amount a
      full-precision double in [0, 1000), label 1..3 Zipf-distributed words (~10 characters),
      day an ISO date ('YYYY-MM-DD') in 2015..2024; no other index, no NULLs.
      About 153 bytes of d1-backup's SQL per row (D1's dump format names the columns in
      every INSERT; `sqlite3 db .dump` writes about 93): 2,750,000 rows are ~400 MiB of it.
"""

import datetime
import os
import random
import sqlite3
import sys
import time

GENERATOR_VERSION = 1  # of the ratings shape: run.sh names the cached files after it
SMALL_VERSION = 1  # of the small shape
BATCH = 5000
SMALL_BATCH = 50000


def parse_size(s: str) -> int:
    s = s.strip().upper()
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)):
        if s.endswith(suffix):
            s, mult = s[:-1], m
            break
    return int(float(s) * mult)


def vocabulary(rnd: random.Random, n: int):
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    lw = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4,
          2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1]
    words = set()
    out = []
    while len(out) < n:
        w = "".join(rnd.choices(letters, lw, k=rnd.randint(2, 10)))
        if w not in words:
            words.add(w)
            out.append(w)
    weights = [1.0 / (i + 1) for i in range(n)]  # Zipf
    cum = []
    acc = 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    return out, cum


def option(argv, name, default=None):
    """The value after `name` in argv (and both removed from it), or default."""
    if name in argv:
        i = argv.index(name)
        if i + 1 >= len(argv):
            raise SystemExit(f"gen.py: {name} needs a value")
        v = argv[i + 1]
        del argv[i:i + 2]
        return v
    return default


def main(argv):
    argv = list(argv)
    shape = option(argv, "--shape", "ratings")
    seed = int(option(argv, "--seed", "42"))
    rows = option(argv, "--rows")
    if shape not in ("ratings", "small"):
        print(f"gen.py: unknown shape {shape!r} (ratings, small)", file=sys.stderr)
        return 2
    if argv[1:] == ["--version"]:  # run.sh names the cached files after it
        print(GENERATOR_VERSION if shape == "ratings" else SMALL_VERSION)
        return 0
    if shape == "small":
        if len(argv) != 2 or rows is None:
            print(__doc__, file=sys.stderr)
            return 2
        return gen_small(argv[1], int(rows), seed)
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    return gen_ratings(argv[1], parse_size(argv[2]), seed)


def fresh_tmp(out):
    tmp = out + ".tmp"
    for p in (tmp, tmp + "-journal"):
        if os.path.exists(p):
            os.remove(p)
    return tmp


def connect(tmp):
    """A connection to the new database file, set up for a fast bulk load."""
    c = sqlite3.connect(tmp, isolation_level=None)
    c.executescript(
        """
        PRAGMA page_size=4096;
        PRAGMA journal_mode=OFF;
        PRAGMA synchronous=OFF;
        PRAGMA cache_size=-262144;
        """
    )
    return c


def gen_ratings(out, target, seed):
    tmp = fresh_tmp(out)
    rnd = random.Random(seed)
    words, cum = vocabulary(rnd, 4000)
    tags_pool = ["drama", "comedy", "sci-fi", "horror", "indie", "classic", "family",
                 "documentary", "thriller", "romance", "animation", "noir", "é-accent", "日本"]
    countries = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "NL", "SE", "ES", "IT", None]

    c = connect(tmp)
    c.executescript(
        """
        CREATE TABLE users(
            id INTEGER PRIMARY KEY,
            handle TEXT NOT NULL UNIQUE,
            country TEXT,
            created_at INTEGER NOT NULL,
            avatar BLOB
        );
        CREATE TABLE items(
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            year INTEGER,
            avg_score REAL
        );
        CREATE TABLE ratings(
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            item_id INTEGER NOT NULL REFERENCES items(id),
            score REAL NOT NULL,
            weight REAL,
            review TEXT,
            tags TEXT,
            created_at TEXT NOT NULL,
            helpful INTEGER NOT NULL DEFAULT 0,
            attachment BLOB
        );
        CREATE INDEX ratings_item_score ON ratings(item_id, score);
        CREATE INDEX ratings_user ON ratings(user_id);
        """
    )
    n_items = 20000
    c.execute("BEGIN")
    c.executemany(
        "INSERT INTO items(id, title, year, avg_score) VALUES(?,?,?,?)",
        (
            (i, " ".join(rnd.choices(words, cum_weights=cum, k=rnd.randint(1, 6))).title(),
             rnd.randint(1920, 2025), rnd.random() * 5)
            for i in range(1, n_items + 1)
        ),
    )
    c.execute("COMMIT")

    page_size = c.execute("PRAGMA page_size").fetchone()[0]
    t0 = time.time()
    rid = 0
    uid = 0
    base_ts = 1_600_000_000
    last_report = t0
    while True:
        users = []
        rows = []
        for _ in range(BATCH):
            rid += 1
            if rid % 40 == 1:
                uid += 1
                avatar = rnd.randbytes(rnd.randint(256, 2048)) if rnd.random() < 0.10 else None
                users.append((uid, f"user_{uid}_{rnd.choice(words)}", rnd.choice(countries),
                              base_ts + rnd.randint(0, 100_000_000), avatar))
            has_review = rnd.random() < 0.65
            review = (" ".join(rnd.choices(words, cum_weights=cum, k=rnd.randint(3, 80)))
                      .capitalize() + "." if has_review else None)
            tags = ("[" + ",".join('"%s"' % t for t in rnd.sample(tags_pool, rnd.randint(0, 3))) + "]"
                    if rnd.random() < 0.5 else None)
            ts = base_ts + rid * 7 + rnd.randint(0, 6)
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
            helpful = rnd.randint(0, 50) if rnd.random() < 0.98 else rnd.getrandbits(63)
            attachment = rnd.randbytes(rnd.randint(64, 4096)) if rnd.random() < 0.02 else None
            weight = rnd.random() if rnd.random() < 0.9 else None
            rows.append((rid, rnd.randint(1, uid), rnd.randint(1, n_items),
                         rnd.randint(1, 10) / 2.0, weight, review, tags, created, helpful,
                         attachment))
        c.execute("BEGIN")
        c.executemany("INSERT INTO users VALUES(?,?,?,?,?)", users)
        c.executemany("INSERT INTO ratings VALUES(?,?,?,?,?,?,?,?,?,?)", rows)
        c.execute("COMMIT")
        size = c.execute("PRAGMA page_count").fetchone()[0] * page_size
        now = time.time()
        if now - last_report > 15:
            last_report = now
            print(f"  gen {os.path.basename(out)}: {size / (1 << 20):.0f} MiB / "
                  f"{target / (1 << 20):.0f} MiB, {rid} rows, {now - t0:.0f}s", file=sys.stderr)
        if size >= target:
            break
    c.execute("ANALYZE")
    c.close()
    os.rename(tmp, out)
    print(f"  gen {os.path.basename(out)}: {os.path.getsize(out)} bytes, {rid} ratings, "
          f"{uid} users, {time.time() - t0:.0f}s (seed {seed}, generator v{GENERATOR_VERSION})",
          file=sys.stderr)
    return 0


def gen_small(out, n_rows, seed):
    """One table of n_rows short rows (see the module doc); ~153 bytes of D1-format SQL a row."""
    tmp = fresh_tmp(out)
    rnd = random.Random(seed)
    words, cum = vocabulary(rnd, 2000)
    t0 = time.time()
    first = datetime.date(2015, 1, 1)
    days = [(first + datetime.timedelta(days=d)).isoformat() for d in range(3652)]
    n_days = len(days)
    c = connect(tmp)
    c.executescript(
        """
        CREATE TABLE events(
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL,
            quantity INTEGER NOT NULL,
            amount REAL NOT NULL,
            label TEXT NOT NULL,
            day TEXT NOT NULL
        );
        """
    )
    r = rnd.random
    choices = rnd.choices
    last_report = t0
    rid = 0
    while rid < n_rows:
        batch = []
        for _ in range(min(SMALL_BATCH, n_rows - rid)):
            rid += 1
            k = 1 if r() < 0.4 else (2 if r() < 0.75 else 3)
            batch.append((rid, 1 + int(r() * 200000), 1 + int(r() * 100), r() * 1000,
                          " ".join(choices(words, cum_weights=cum, k=k)),
                          days[int(r() * n_days)]))
        c.execute("BEGIN")
        c.executemany("INSERT INTO events VALUES(?,?,?,?,?,?)", batch)
        c.execute("COMMIT")
        now = time.time()
        if now - last_report > 15:
            last_report = now
            print(f"  gen {os.path.basename(out)}: {rid} / {n_rows} rows, {now - t0:.0f}s",
                  file=sys.stderr)
    c.execute("ANALYZE")
    c.close()
    os.rename(tmp, out)
    print(f"  gen {os.path.basename(out)}: {os.path.getsize(out)} bytes, {rid} rows, "
          f"{time.time() - t0:.0f}s (seed {seed}, shape small v{SMALL_VERSION})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
