#!/usr/bin/env bash
# Build the cargo-fuzz targets on stable Rust and run their seed corpora once.
#
# Real fuzzing needs nightly (`cargo +nightly fuzz run d1_response`, see fuzz/README.md). On
# stable this still checks that the fuzz crate builds (libfuzzer-sys compiles libFuzzer, so a
# C++ compiler is needed: Debian package g++), and runs every seed through the target twice:
#
#   1. through the libFuzzer binary with -runs=0 (each corpus file executed once, no mutation);
#   2. through the same harness without libFuzzer, as a plain test
#      (`cargo test --test props fuzz_seed_corpus_decodes`).
#
# Environment:
#   CARGO_TARGET_DIR  where the fuzz crate is built (default: target/fuzz, so its separate
#                     lockfile and profile never invalidate the main build); the test of
#                     step 2 uses the caller's CARGO_TARGET_DIR as it is (unset: target/)
#   FUZZ_SECONDS      if set, also mutate the corpus for that many seconds per target. On
#                     stable the binary is not coverage-instrumented, so this is blind
#                     mutation — still enough to find shallow panics. Inputs it finds are
#                     written to a temporary directory, never to fuzz/corpus.
#   FUZZ_SKIP_TEST=1  skip step 2 (e.g. when the main test suite runs anyway)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v c++ >/dev/null; then
  echo "fuzz-build: no C++ compiler (c++); install the Debian package g++" >&2
  exit 1
fi

target_dir="${CARGO_TARGET_DIR:-$PWD/target/fuzz}"
targets=(d1_response)

echo "== building the fuzz targets (CARGO_TARGET_DIR=$target_dir)"
start=$SECONDS
CARGO_TARGET_DIR="$target_dir" cargo build --manifest-path fuzz/Cargo.toml --bins
echo "   built in $((SECONDS - start)) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  bin="$target_dir/debug/$t"
  corpus="fuzz/corpus/$t"
  echo "== $t: running the seed corpus ($corpus) once"
  "$bin" -runs=0 "$corpus"
  if [ -n "${FUZZ_SECONDS:-}" ]; then
    echo "== $t: blind mutation for ${FUZZ_SECONDS} s (uninstrumented: stable toolchain)"
    mkdir -p "$work/$t" fuzz/artifacts
    "$bin" -max_total_time="$FUZZ_SECONDS" -artifact_prefix="$PWD/fuzz/artifacts/$t-" \
      -print_final_stats=1 "$work/$t" "$corpus"
  fi
done

if [ "${FUZZ_SKIP_TEST:-}" != 1 ]; then
  echo "== the harness over the seed corpus, without libFuzzer"
  cargo test --test props fuzz_seed_corpus_decodes
fi
