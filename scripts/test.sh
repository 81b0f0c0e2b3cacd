#!/usr/bin/env bash
# Install mmd from the lock into .venv (scripts/install.sh: a no-op when nothing changed), fuzz the
# frame parser and the C book under ASan + UBSan for a minute (scripts/fuzz.sh; MMD_FUZZ_SECONDS=0
# skips it), then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ "${MMD_FUZZ_SECONDS:-60}" != "0" ]; then
  bash scripts/fuzz.sh "${MMD_FUZZ_SECONDS:-60}"
fi
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
