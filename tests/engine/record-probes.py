#!/usr/bin/env python3
"""Record the real engine's answers to tests/engine/probes.txt into tests/engine/probes.expected.

Usage: record-probes.py BASE_URL [--token TOKEN] [--account ACCOUNT] [--probes FILE] [--out FILE]

BASE_URL is where the shim (tests/engine/shim.js under `wrangler dev --local`) listens, e.g.
http://127.0.0.1:8811 (`/client/v4` is appended unless already there). The token and account
are the shim's API_TOKEN and ACCOUNT_ID vars. The script creates one database, sends every probe
alone as one `/raw` request, in file order, then deletes the database.

Each probe gives one line, `<label>\t<answer>`, where the answer is `ok`, `ok <rows>` for
probes marked `-- rows` (the rows JSON exactly as on the wire) or `err <message>` (the error
message with any ` at offset N` removed). fake-d1/tests/probes.rs checks the fake against it.

Python 3 standard library only.
"""

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_probes(text):
    """[(label, sql, params or None, rows)] in file order."""
    probes = []
    current = None
    for line in text.split("\n"):
        if line.startswith("-- probe: "):
            current = {"label": line[len("-- probe: "):].strip(), "sql": [], "params": None, "rows": False}
            probes.append(current)
        elif current is None:
            continue
        elif not current["sql"] and line.startswith("-- params: "):
            current["params"] = json.loads(line[len("-- params: "):])
        elif not current["sql"] and line.strip() == "-- rows":
            current["rows"] = True
        else:
            current["sql"].append(line)
    out = []
    labels = set()
    for p in probes:
        if p["label"] in labels or "\t" in p["label"]:
            sys.exit(f"bad or duplicate probe label: {p['label']!r}")
        labels.add(p["label"])
        out.append((p["label"], "\n".join(p["sql"]).strip("\n"), p["params"], p["rows"]))
    return out


def normalize(message):
    return re.sub(r" at offset \d+", "", message)


def rows_text(body):
    """The `rows` value of a single-result /raw answer, exactly as on the wire."""
    start = body.find('],"rows":')
    end = body.rfind('},"success":true,"meta"')
    if start < 0 or end < 0:
        raise ValueError("no rows in answer: " + body[:200])
    return body[start + len('],"rows":'):end]


class Api:
    def __init__(self, base, token, account):
        base = base.rstrip("/")
        if not base.endswith("/client/v4"):
            base += "/client/v4"
        self.databases = f"{base}/accounts/{account}/d1/database"
        self.token = token

    def call(self, method, url, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={
            "authorization": f"Bearer {self.token}",
            "content-type": "application/json",
        })
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base_url")
    ap.add_argument("--token", default="tok")
    ap.add_argument("--account", default="acc")
    ap.add_argument("--probes", default=os.path.join(HERE, "probes.txt"))
    ap.add_argument("--out", default=os.path.join(HERE, "probes.expected"))
    args = ap.parse_args()

    with open(args.probes, encoding="utf-8") as f:
        probes = parse_probes(f.read())
    api = Api(args.base_url, args.token, args.account)

    status, body = api.call("POST", api.databases, {"name": f"probes-{int(time.time() * 1000)}"})
    if status != 200:
        sys.exit(f"cannot create a database ({status}): {body}")
    uuid = json.loads(body)["result"]["uuid"]
    lines = []
    try:
        for label, sql, params, want_rows in probes:
            request = {"sql": sql}
            if params is not None:
                request["params"] = params
            status, body = api.call("POST", f"{api.databases}/{uuid}/raw", request)
            answer = json.loads(body)
            if answer.get("success"):
                if want_rows:
                    if len(answer["result"]) != 1:
                        sys.exit(f"probe {label!r} is marked -- rows but ran several statements")
                    line = "ok " + rows_text(body)
                else:
                    line = "ok"
            else:
                if status != 400:
                    print(f"warning: probe {label!r} answered HTTP {status}: {body[:200]}", file=sys.stderr)
                line = "err " + normalize(answer["errors"][0]["message"])
            if "\n" in line:
                sys.exit(f"probe {label!r}: answer spans lines: {line!r}")
            lines.append(f"{label}\t{line}")
    finally:
        api.call("DELETE", f"{api.databases}/{uuid}")

    with open(args.out, "w", encoding="utf-8") as f:
        f.write("# The real engine's answers to probes.txt, written by record-probes.py; do not edit.\n")
        f.write("# <label> TAB ok | ok <rows as on the wire> | err <message without ' at offset N'>\n")
        for line in lines:
            f.write(line + "\n")
    print(f"{len(lines)} probes recorded in {args.out}")


if __name__ == "__main__":
    main()
