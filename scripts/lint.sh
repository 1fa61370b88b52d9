#!/usr/bin/env bash
# Static checks of the action's packaging: action.yml and the workflows against GitHub's
# schemas, actionlint, zizmor (workflow security), hadolint (Dockerfile). Installs the tools
# from PyPI into .ci/.venv-lint on first use; they run offline.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.ci/.venv-lint
if [ ! -x "$venv/bin/zizmor" ]; then
  echo "== installing linters into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r .ci/requirements-lint.txt
fi
echo "== check-jsonschema"
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-actions action.yml
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml
echo "== actionlint"
"$venv/bin/actionlint"
echo "== zizmor"
"$venv/bin/zizmor" --offline --quiet .
echo "== hadolint"
"$venv/bin/hadolint" Dockerfile
