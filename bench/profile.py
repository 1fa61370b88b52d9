#!/usr/bin/env python3
"""Summarise a `perf record --call-graph dwarf` of d1-backup: where the CPU went by category
(zstd, SHA-256, JSON decoding, SQL rendering, memcpy, allocator, kernel by reason, …), the top
functions by self time, the threads, and who caused the generic work (memcpy, malloc, page
faults).

usage: profile.py PERF.DATA OUT.json OUT.txt [--top N] [--perf PERF]

One pass of `perf script -F comm,tid,ip,sym,dso --no-inline`: every sample is one stack,
counted once in the function that was running (self time), so the shares add up to 100% and
the categories do not overlap. Kernel samples are split by why the kernel was running, read
from the kernel part of the stack: a page fault, a system call (by name), or an interrupt.
For memcpy, the allocator and page faults, the nearest caller in d1-backup's own code (or in
the library that called it) is listed, to say who asked for the work.
"""

import json
import re
import subprocess
import sys

# First match wins; checked against "symbol (dso)" of the sampled (leaf) frame.
CATEGORIES = [
    ("zstd compression", r"ZSTD_|HUF_|FSE_|HIST_|POOL_|ZSTDMT|\bzstd"),
    ("SHA-256", r"sha2::|sha256|Sha256"),
    ("MD5 / CRC (S3 checksums)", r"md5|Md5|crc32|crc64|Crc|crc_fast"),
    ("gzip (HTTP decoding)", r"flate2|miniz|inflate|zlib"),
    ("JSON decoding (D1 responses)", r"serde_json|serde::de|ryu|lexical|PageDecoder|json"),
    ("SQL rendering (dump)", r"d1_backup::dump|d1_backup::source|d1_backup::export|itoa|core::fmt|"
                             r"alloc::fmt|write_fmt|hex::|from_utf8|core::str"),
    ("SQLite (in-process)", r"sqlite3|libsqlite"),
    ("memcpy / memmove / memset", r"__memmove|__memcpy|memcpy|memmove|__memset|memset|__memcmp|"
                                  r"memchr|memcmp|__strlen"),
    ("allocator", r"malloc|_int_free|cfree|\bfree\b|realloc|calloc|arena_|tcache|__rust_alloc|"
                  r"__rust_dealloc|__rdl_|sysmalloc|unlink_chunk|malloc_consolidate|"
                  r"alloc::raw_vec|munmap_chunk|mremap_chunk|RawVec"),
    ("HTTP / TLS / async runtime", r"hyper|h2::|reqwest|rustls|ring::|aws_lc|tokio|mio::|futures|"
                                   r"http::|aws_smithy|aws_sdk|bytes::|tower|parking_lot|"
                                   r"std::sync|crossbeam|pthread|__lll|futex"),
    ("libc / ld.so (other)", r"libc\.so|ld-linux"),
]

HEX = re.compile(r"^\s*([0-9a-f]+)\s+(.*?)\s+\(([^()]*)\)\s*$")


def categorize(sym, dso):
    key = f"{sym} ({dso})"
    for name, pat in CATEGORIES:
        if re.search(pat, key):
            return name
    if "d1-backup" in dso:
        return "other (d1-backup code)"
    return f"other ({dso.rsplit('/', 1)[-1]})"


def kernel_reason(frames):
    """Why the kernel was running, from the kernel frames (innermost first)."""
    names = [s for s, d in frames if d.startswith("[kernel")]
    for s in names:
        if "page_fault" in s:
            return "page faults"
    for s in reversed(names):  # the outermost entry point names the reason
        m = re.match(r"__(?:x64|se|do)_sys_(\w+)", s)
        if m:
            sc = m.group(1)
            if sc in ("read", "recvfrom", "recvmsg", "readv", "pread64"):
                return "syscall read/recv"
            if sc in ("write", "sendto", "sendmsg", "writev", "pwrite64"):
                return "syscall write/send"
            if sc in ("munmap", "mmap", "mremap", "madvise", "brk", "mprotect"):
                return "syscall mmap/munmap"
            if sc in ("futex", "epoll_wait", "epoll_pwait", "sched_yield", "nanosleep",
                      "clock_nanosleep"):
                return "syscall futex/epoll (thread wake-ups)"
            return f"syscall {sc}"
    for s in names:
        if re.search(r"sysvec|irq|softirq|apic|hrtimer", s):
            return "interrupts"
    for s in names:
        if re.search(r"schedule|task_switch|exit_to_user|ret_from_fork", s):
            return "scheduler / return to user"
    return "other"


def short(sym, n=90):
    sym = re.sub(r"::h[0-9a-f]{16}$", "", sym)
    return sym if len(sym) <= n else sym[: n - 1] + "…"


GENERIC = re.compile(
    r"^(__|_int_|_dl_|malloc|free|realloc|calloc|cfree|sysmalloc|alloc::|<alloc::|core::|<core::|"
    r"std::|<std::|\[unknown\]|memcpy|memmove|memset|bytes::|<bytes::|hashbrown|<hashbrown|"
    r"<&|<\[|<T|RawVec|Vec<|<Vec|hyper::|<hyper|tokio::io|<tokio::io|asm_|exc_|do_|handle_)")


def first_caller(frames, start):
    """The first frame after `start` that is real code, not memcpy/allocator/std plumbing."""
    for s, d in frames[start:]:
        if d.startswith("[kernel"):
            continue
        if s and not GENERIC.match(s):
            return short(s, 120)
    return "[unknown]"


def parse(perf, data):
    cmd = [perf, "script", "-i", data, "-F", "comm,tid,ip,sym,dso", "--no-inline"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         errors="replace", bufsize=1 << 20)
    header, frames = None, []
    for line in p.stdout:
        if not line.strip():
            if header is not None:
                yield header, frames
            header, frames = None, []
            continue
        if header is None and not line[0].isspace():
            header = line.strip()
            continue
        m = HEX.match(line)
        if m:
            frames.append((m.group(2), m.group(3)))
    if header is not None:
        yield header, frames
    if p.wait() != 0:
        raise SystemExit(f"profile.py: {' '.join(cmd)} failed")


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    data, out_json, out_txt = argv[1:4]
    top = int(argv[argv.index("--top") + 1]) if "--top" in argv else 15
    perf = argv[argv.index("--perf") + 1] if "--perf" in argv else "perf"

    total = 0
    by_sym, by_cat, by_thread, by_kernel = {}, {}, {}, {}
    callers = {"memcpy / memmove / memset": {}, "allocator": {}, "kernel: page faults": {},
               "kernel: syscall mmap/munmap": {}}
    for header, frames in parse(perf, data):
        if not frames:
            continue
        total += 1
        comm = re.sub(r"\s+\d+$", "", header).strip()
        comm = re.sub(r"-\d+$", "", comm)  # tokio-runtime-w, zstd workers: merge numbered ones
        by_thread[comm] = by_thread.get(comm, 0) + 1
        sym, dso = frames[0]
        if dso.startswith("[kernel"):
            cat = "kernel: " + kernel_reason(frames)
            by_kernel[cat] = by_kernel.get(cat, 0) + 1
            sym_key = (sym, "kernel")
        else:
            cat = categorize(sym, dso)
            sym_key = (short(sym, 200), dso.rsplit("/", 1)[-1])
        by_cat[cat] = by_cat.get(cat, 0) + 1
        by_sym[sym_key] = by_sym.get(sym_key, 0) + 1
        if cat in callers:
            c = first_caller(frames, 1)
            callers[cat][c] = callers[cat].get(c, 0) + 1
    if not total:
        raise SystemExit("profile.py: no samples")

    def pct(n):
        return round(100.0 * n / total, 2)

    top_syms = sorted(by_sym.items(), key=lambda kv: -kv[1])[:top]
    cats = sorted(by_cat.items(), key=lambda kv: -kv[1])
    threads = sorted(by_thread.items(), key=lambda kv: -kv[1])
    kernel_total = sum(by_kernel.values())
    caller_out = {}
    for cat, cs in callers.items():
        n = sum(cs.values())
        if n and pct(n) >= 1.0:
            caller_out[cat] = {"pct": pct(n), "callers": [
                {"caller": c, "share_pct": round(100.0 * k / n, 1)}
                for c, k in sorted(cs.items(), key=lambda kv: -kv[1])[:5]]}
    summary = {
        "samples": total,
        "kernel_pct": pct(kernel_total),
        "categories": [{"category": c, "pct": pct(n)} for c, n in cats],
        "top_functions": [{"pct": pct(n), "dso": d, "symbol": s} for (s, d), n in top_syms],
        "threads": [{"thread": t, "pct": pct(n)} for t, n in threads],
        "callers": caller_out,
    }
    with open(out_json, "w") as f:
        json.dump(summary, f, indent=1)
    lines = [f"samples: {total} (kernel {pct(kernel_total):.1f}%)", "",
             "where the CPU went (self time, by category):"]
    lines += [f"  {pct(n):6.2f}%  {c}" for c, n in cats if pct(n) >= 0.1]
    lines += ["", "threads:"] + [f"  {pct(n):6.2f}%  {t}" for t, n in threads if pct(n) >= 0.1]
    lines += ["", f"top {top} functions (self time):"]
    lines += [f"  {pct(n):6.2f}%  {short(s)}  [{d}]" for (s, d), n in top_syms]
    for cat, v in caller_out.items():
        lines += ["", f"{cat} ({v['pct']:.1f}% of all samples), nearest caller:"]
        lines += [f"  {c['share_pct']:6.1f}%  {c['caller']}" for c in v["callers"]]
    with open(out_txt, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
