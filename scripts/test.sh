#!/usr/bin/env bash
# Install mmd from the lock into .venv (scripts/install.sh: a no-op when nothing changed), then run
# the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
