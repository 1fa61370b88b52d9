#!/usr/bin/env bash
# Static checks of the action's packaging: action.yml, this repository's workflows and the
# copy-paste workflows in examples/workflows/ against GitHub's schemas, actionlint, zizmor
# (workflow security), Dependabot's schema, hadolint (Dockerfile). Installs the tools from PyPI
# into .ci/.venv-lint on first use; they run offline.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.ci/.venv-lint
if [ ! -x "$venv/bin/zizmor" ]; then
  echo "== installing linters into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r .ci/requirements-lint.txt
fi
examples=(examples/workflows/*.yml)
echo "== check-jsonschema"
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-actions action.yml
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml "${examples[@]}"
"$venv/bin/check-jsonschema" --builtin-schema vendor.dependabot .github/dependabot.yml
echo "== actionlint"
# With file arguments actionlint checks only those, so the repository's workflows are named too.
"$venv/bin/actionlint" .github/workflows/*.yml "${examples[@]}"
echo "== actionlint: examples against this action.yml"
# actionlint cannot read your-org/d1-backup@v1. In a scratch project where the examples use
# `./` (this action.yml), it checks every input they give and every output they read.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/.git" "$scratch/.github/workflows"
cp action.yml "$scratch/"
touch "$scratch/Dockerfile"
for f in "${examples[@]}"; do
  grep -q 'uses: your-org/d1-backup@v1' "$f" || { echo "$f: no 'uses: your-org/d1-backup@v1'" >&2; exit 1; }
  sed 's#uses: your-org/d1-backup@v1#uses: ./#' "$f" > "$scratch/.github/workflows/${f##*/}"
done
actionlint=$(pwd)/$venv/bin/actionlint
(cd "$scratch" && "$actionlint")
echo "== zizmor"
# `.` covers .github/workflows, action.yml and dependabot.yml, not workflows elsewhere.
"$venv/bin/zizmor" --offline --quiet . "${examples[@]}"
echo "== hadolint"
"$venv/bin/hadolint" Dockerfile
