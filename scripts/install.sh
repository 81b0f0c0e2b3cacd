#!/usr/bin/env bash
# Install mmd into a virtualenv from the lock file: exact versions, every download checked against
# its sha256 (pip --require-hashes), then mmd itself, editable, built once with the locked build
# requirements (no build isolation: nothing is fetched or resolved at build time).
#
#   bash scripts/install.sh              # ./.venv with the interpreter `python3`
#   PYTHON=python3.12 VENV=/tmp/v bash scripts/install.sh
#
# The lock is requirements/lock-py<major><minor>.txt for the interpreter (refresh: scripts/lock.sh).
# A second run with the same lock and sources does nothing (stamp in the venv); MMD_NO_COMPILE=1
# builds without mypyc. Prints the venv path on success.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
tag=$("$PY" -c 'import sys; print("%d%d" % sys.version_info[:2])')
LOCK=requirements/lock-py$tag.txt
if [ ! -f "$LOCK" ]; then
  echo "install: no lock for Python ${tag:0:1}.${tag:1} ($LOCK); supported: $(ls requirements/lock-py*.txt | sed 's/.*lock-py\(.\)\(.*\)\.txt/\1.\2/' | tr '\n' ' ')" >&2
  echo "install: pick one with PYTHON=python3.11, or add the version to scripts/lock.sh" >&2
  exit 2
fi
stamp=$(cat "$LOCK" pyproject.toml setup.py $(find daemon -name '*.py' -o -name '*.c' -o -name '*.h' | LC_ALL=C sort) \
        | { cat; echo "MMD_NO_COMPILE=${MMD_NO_COMPILE:-}"; } | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.mmd-install" ] && [ "$(cat "$VENV/.mmd-install")" = "$stamp" ] && [ -x "$VENV/bin/mmd" ]; then
  exit 0  # this lock and these sources are what the venv already has
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
quiet() { grep -v -E "^WARNING: Location '.*' is ignored" || true; }  # this machine's pip.conf names absent mirrors
"$VENV/bin/python" -m pip install -q --require-hashes -r "$LOCK" 2>&1 | quiet
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | quiet
"$VENV/bin/python" -c "import daemon, daemon.cli" # fail loudly if the install did not work
echo "$stamp" > "$VENV/.mmd-install"
