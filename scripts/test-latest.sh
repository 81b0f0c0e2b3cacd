#!/usr/bin/env bash
# Drift check for maintainers (not CI): install the *newest* versions pyproject.toml allows into a
# separate venv (.venv-latest), ignoring the lock, and run the suite there. Green means the lock can
# be refreshed (bash scripts/lock.sh); red names the dependency release that breaks us before any
# user meets it. CI keeps running the locked set, so a new release upstream never blocks a landing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv-latest}
rm -rf "$VENV"
"$PY" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -m pip install -q --upgrade -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -m pip freeze --exclude-editable | tee "$VENV/versions.txt" | tr '\n' ' '; echo
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
