#!/usr/bin/env python3
"""Run one command and measure it; append the measurement as one JSON line to a results file.

usage: measure.py --results FILE --name NAME [--field K=V]... [--env K=V]... [--clean-env]
                  [--stats-url URL] [--watch NAME=PID]... [--logs DIR] [--shell]
                  [--stdout-file FILE] [--quiet-wait SECONDS] [--retries N]
                  -- COMMAND [ARG]...

For a shared machine: --quiet-wait waits (at most SECONDS) before each run until the machine
is idle, and --retries measures again (at most N more times) when other work took more than
10% of a core during the run; the least disturbed run is recorded (with `attempt`).

What is measured, for the process started (and only it):
  wall_s           elapsed time from spawn to exit (time.monotonic)
  user_s, sys_s    CPU time of the process (and of any children it waited for), from wait4()
                   on its own pid: nothing else that runs on the machine is counted
  peak_rss_kib     VmHWM read from /proc/PID/status every 10 ms while it runs (ru_maxrss of a
                   freshly forked child can include its parent's pages, so it is kept only as
                   ru_maxrss_kib, for reference)
  requests         with --stats-url: D1 API requests made (GET /__fake/stats after - before),
                   and by_kind the same per kind
  watched          with --watch NAME=PID: CPU seconds other processes (the fake D1, SeaweedFS)
                   spent during the run, from /proc/PID/stat
  cpu_bound_s      (CPU of the command + watched CPU) / cores: the wall time a perfect
                   schedule would need for the same work
  timeline         LOGS/NAME.timeline.json: cumulative CPU seconds of the command and of each
                   watched process every 100 ms (who was busy when)
  machine_busy_s   CPU seconds all cores spent busy during the run (/proc/stat; steal_s: time
                   the hypervisor took away, reported separately);
                   other_cpu_s = machine_busy_s - this process - watched processes, i.e. work
                   that was not part of the benchmark (a shared machine shows up here)
  other_top        when other_cpu_s is notable: the processes that used the most CPU (with the
                   children they reaped, e.g. cargo with its rustc), to say what the other work was
  report           the final JSON line the command printed on stdout, if any
With --shell, COMMAND is one string run by `bash -o pipefail -c` (for the floor pipelines);
CPU then covers the whole pipeline, and peak RSS is that of bash only (not reported).
Exits with the command's exit code.
"""

import json
import os
import re
import signal
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
TIMELINE_STEP = 0.1  # seconds between CPU samples of the timeline


def vm_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def proc_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        fields = data[data.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def machine_cpu():
    """(busy, steal) CPU seconds of all cores since boot: busy = user+nice+system+irq+softirq
    (guest time is included in user), steal = time the hypervisor gave to someone else."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    v += [0] * (8 - len(v))
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK, v[7] / CLK_TCK


def all_proc_cpu():
    """{pid: (comm, CPU seconds)} of every process, counting the children it has reaped
    (utime+stime+cutime+cstime), so short-lived compiler processes show up in their parent."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                data = f.read()
            comm = data[data.index("(") + 1:data.rindex(")")]
            v = data[data.rindex(")") + 2:].split()
            # (name, CPU, start time: tells a reused pid from the same process)
            out[int(d)] = (comm, sum(int(x) for x in v[11:15]) / CLK_TCK, v[19])
        except (OSError, ValueError, IndexError):
            continue
    return out


def top_other(before, after, exclude, n=4):
    """The processes that used the most CPU between two all_proc_cpu() snapshots."""
    deltas = {}
    for pid, (comm, cpu, start) in after.items():
        if pid in exclude:
            continue
        b = before.get(pid)
        d = cpu - (b[1] if b and b[2] == start else 0.0)
        comm = re.sub(r"^(kworker/[^-]*).*", r"\1", comm)
        if d >= 0.05:
            deltas[comm] = deltas.get(comm, 0.0) + d
    return [{"comm": c, "cpu_s": round(v, 2)}
            for c, v in sorted(deltas.items(), key=lambda kv: -kv[1])[:n]]


def fetch_stats(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def wait_quiet(limit):
    """Wait (at most `limit` seconds) until the machine is idle: under 0.15 cores busy over
    half a second. Returns the seconds waited."""
    if limit <= 0:
        return 0.0
    t0 = time.monotonic()
    while True:
        b0, _ = machine_cpu()
        time.sleep(0.5)
        b1, _ = machine_cpu()
        if (b1 - b0) / 0.5 < 0.15 or time.monotonic() - t0 >= limit:
            return round(time.monotonic() - t0, 1)


def disturbed(rec):
    """Other work took more than 10% of one core (and 0.3 CPU-s) during the measurement."""
    return rec["other_cpu_s"] > max(0.3, 0.10 * rec["wall_s"])


def run_once(cmd, env, name, fields, watch, stats_url, shell, out_path, err_path, logs,
             results):
    """Run the command once; returns (record, exit code, wall, peak RSS KiB)."""
    before = fetch_stats(stats_url) if stats_url else None
    watched_before = {k: proc_cpu_s(p) for k, p in watch.items()}
    procs_before = all_proc_cpu()
    busy_before, steal_before = machine_cpu()
    load_before = open("/proc/loadavg").read().split()[0]

    child = {"pid": None}

    def forward(signum, _frame):
        if child["pid"]:
            try:
                os.kill(child["pid"], signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # child: exec the command with its own stdio
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.execvpe(cmd[0], cmd, env)
            finally:
                os._exit(127)
        child["pid"] = pid
        peak = 0
        timeline = {"t": [], "tool": [], **{k: [] for k in watch}}
        next_sample = t0
        while True:
            hwm = vm_hwm_kib(pid)
            if hwm is not None:
                peak = max(peak, hwm)
            now = time.monotonic()
            if now >= next_sample:  # CPU seconds so far of the command and the watched
                next_sample = now + TIMELINE_STEP
                timeline["t"].append(round(now - t0, 3))
                timeline["tool"].append(proc_cpu_s(pid))
                for k, p in watch.items():
                    c = proc_cpu_s(p)
                    timeline[k].append(None if c is None else c - (watched_before[k] or 0))
            try:
                wpid, status, ru = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                raise
            if wpid == pid:
                break
            time.sleep(0.01)
        wall = time.monotonic() - t0
    child["pid"] = None

    busy_after, steal_after = machine_cpu()
    procs_after = all_proc_cpu()
    watched_after = {k: proc_cpu_s(p) for k, p in watch.items()}
    after = fetch_stats(stats_url) if stats_url else None
    code = os.waitstatus_to_exitcode(status)

    rec = {"name": name, **fields, "exit_code": code, "wall_s": round(wall, 3),
           "user_s": round(ru.ru_utime, 3), "sys_s": round(ru.ru_stime, 3),
           "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
           "peak_rss_kib": None if shell else peak, "ru_maxrss_kib": ru.ru_maxrss,
           "loadavg_before": float(load_before)}
    if before is not None and after is not None:
        rec["requests"] = int(after["requests"] - before["requests"])
        kinds = set(before.get("by_kind", {})) | set(after.get("by_kind", {}))
        rec["by_kind"] = {k: int(after["by_kind"].get(k, 0) - before["by_kind"].get(k, 0))
                          for k in sorted(kinds)
                          if after["by_kind"].get(k, 0) != before["by_kind"].get(k, 0)}
    watched = {}
    for k in watch:
        b, a = watched_before.get(k), watched_after.get(k)
        watched[k] = None if a is None or b is None else round(a - b, 2)
    rec["watched_cpu_s"] = watched
    # The CPU work of the backup spread over every core: no schedule can be faster than this.
    ncpu = os.cpu_count() or 1
    rec["cpu_bound_s"] = round((rec["cpu_s"] + sum(v or 0 for v in watched.values())) / ncpu, 3)
    timeline["t"].append(round(wall, 3))
    timeline["tool"].append(rec["cpu_s"])
    for k in watch:
        timeline[k].append(watched[k])
    tl_path = out_path + ".timeline"
    with open(tl_path, "w") as f:
        json.dump(timeline, f)
    busy = busy_after - busy_before
    rec["machine_busy_s"] = round(busy, 2)
    rec["steal_s"] = round(steal_after - steal_before, 2)
    rec["other_cpu_s"] = round(busy - rec["cpu_s"] - sum(v or 0 for v in watched.values()), 2)
    if rec["other_cpu_s"] > 0.3:  # name the other work
        rec["other_top"] = top_other(procs_before, procs_after,
                                     {pid, os.getpid(), *watch.values()})

    report = None
    try:
        with open(out_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        for line in reversed(text.splitlines()):
            if line.startswith("{"):
                report = json.loads(line)
                break
        if report is None and text.strip():
            rec["stdout_tail"] = text.strip()[-200:]
    except (OSError, ValueError):
        pass
    if report is not None:
        rec["report"] = {k: report[k] for k in (
            "success", "key", "sizeBytes", "compressedBytes", "sqlSha256", "sha256", "rowCount",
            "tableCount", "durationMs", "method", "verified", "consistent", "exportSeconds",
            "error") if k in report}
    if code != 0:
        try:
            with open(err_path, "rb") as f:
                rec["stderr_tail"] = f.read().decode("utf-8", "replace")[-1500:]
        except OSError:
            pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return rec, code, wall, peak


def main(argv):
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    sep = argv.index("--")
    opts, cmd = argv[1:sep], argv[sep + 1:]
    results = name = stats_url = logs = stdout_file = None
    fields, envs, watch = {}, {}, {}
    clean_env = shell = False
    quiet_wait, retries = 0.0, 0
    i = 0
    while i < len(opts):
        o = opts[i]
        if o in ("--clean-env", "--shell"):
            clean_env = clean_env or o == "--clean-env"
            shell = shell or o == "--shell"
            i += 1
            continue
        v = opts[i + 1]
        i += 2
        if o == "--results":
            results = v
        elif o == "--name":
            name = v
        elif o == "--stats-url":
            stats_url = v
        elif o == "--logs":
            logs = v
        elif o == "--stdout-file":
            stdout_file = v
        elif o == "--field":
            k, _, val = v.partition("=")
            fields[k] = val
        elif o == "--env":
            k, _, val = v.partition("=")
            envs[k] = val
        elif o == "--quiet-wait":
            quiet_wait = float(v)
        elif o == "--retries":
            retries = int(v)
        elif o == "--watch":
            k, _, val = v.partition("=")
            watch[k] = int(val)
        else:
            print(f"measure.py: unknown option {o}", file=sys.stderr)
            return 2
    if not results or not name:
        print("measure.py: --results and --name are required", file=sys.stderr)
        return 2

    if clean_env:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    else:
        env = dict(os.environ)
    env.update(envs)
    if shell:
        cmd = ["bash", "-o", "pipefail", "-c", cmd[0] if len(cmd) == 1 else " ".join(cmd)]

    logs = logs or os.path.dirname(os.path.abspath(results))
    os.makedirs(logs, exist_ok=True)
    out_path = stdout_file or os.path.join(logs, f"{name}.stdout")
    err_path = os.path.join(logs, f"{name}.stderr")

    best = None
    for attempt in range(1, retries + 2):
        waited = wait_quiet(quiet_wait)
        # Each attempt writes its own files; the one recorded gets the plain names below.
        paths = (f"{out_path}.{attempt}", f"{err_path}.{attempt}")
        rec, code, wall, peak = run_once(cmd, env, name, fields, watch, stats_url, shell,
                                         paths[0], paths[1], logs, results)
        rec["attempt"] = attempt
        rec["_paths"] = paths
        rec["quiet_wait_s"] = waited
        if code != 0:
            best = (rec, code, wall, peak)
            break
        if best is None or rec["other_cpu_s"] < best[0]["other_cpu_s"]:
            best = (rec, code, wall, peak)
        if not disturbed(rec) or attempt > retries:
            break
        print(f"  {name}: {rec['other_cpu_s']:.1f} CPU-s of other work ran during the "
              f"{wall:.1f} s measurement; measuring again", file=sys.stderr)
    rec, code, wall, peak = best
    rec["attempts"] = attempt
    chosen = rec.pop("_paths")
    tl_path = os.path.join(logs, f"{name}.timeline.json")
    os.replace(chosen[0], out_path)
    os.replace(chosen[1], err_path)
    os.replace(chosen[0] + ".timeline", tl_path)
    rec["timeline"] = os.path.relpath(tl_path, os.path.dirname(os.path.abspath(results)))
    for n in range(1, attempt + 1):  # the attempts not recorded: kept, marked
        for pth in (f"{out_path}.{n}", f"{err_path}.{n}", f"{out_path}.{n}.timeline"):
            if os.path.exists(pth):
                os.replace(pth, pth + ".discarded")
    with open(results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    summary = f"{name}: exit {code}, wall {wall:.2f}s, cpu {rec['cpu_s']:.2f}s"
    if not shell:
        summary += f", peak RSS {peak / 1024:.1f} MiB"
    if "requests" in rec:
        summary += f", {rec['requests']} D1 requests"
    if rec["other_cpu_s"] > 0.25 * max(wall, 1):
        summary += f" (other load on the machine: {rec['other_cpu_s']:.1f} CPU-s)"
    print("  " + summary, file=sys.stderr)
    if code != 0 and "stderr_tail" in rec:
        print(rec["stderr_tail"], file=sys.stderr)
    return code if code >= 0 else 128 - code  # -SIG -> 128+SIG


if __name__ == "__main__":
    sys.exit(main(sys.argv))
