#!/usr/bin/env bash
# Create (or reuse) .venv, install mmd with its test extra, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v -i "^warning" || true
.venv/bin/python -c "import daemon, pytest, hypothesis" # fail loudly if the install did not work
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
