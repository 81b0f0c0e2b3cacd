#!/usr/bin/env bash
# Fuzz the frame parser and the C order book under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   bash scripts/fuzz.sh [SECONDS] [SEED]     # default 60 s (the CI run); a long run: 3600
#
# Builds the hand-written C accelerators with -fsanitize=address,undefined (MMD_SANITIZE=1) in a
# temporary copy of the source tree (the checkout and its .venv are not touched), then runs
# scripts/fuzz.py there with libasan preloaded. A memory error or undefined behaviour aborts the
# process (exit != 0) with the sanitizer's report; a disagreement with the Python references, or an
# exception other than FrameError from the parser, exits 1 with the input. Needs .venv
# (scripts/install.sh) and gcc.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-60}
SEED=${2:-1}
PY=.venv/bin/python
[ -x "$PY" ] || bash scripts/install.sh
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mmd-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# the package sources only (no compiled modules: the C accelerators are rebuilt with sanitizers)
tar --exclude='*.so' --exclude='_compiled.py' --exclude='__pycache__' -cf - daemon setup.py pyproject.toml README.md \
  | tar -C "$WORK" -xf -
(cd "$WORK" && MMD_NO_COMPILE=1 MMD_SANITIZE=1 "$OLDPWD/$PY" setup.py -q build_ext --inplace 2>&1 \
  | grep -v -E "^(WARNING|running|copying|creating|gcc|x86_64)" || true)
ls "$WORK"/daemon/core/_fastbook*.so "$WORK"/daemon/models/_fastmodels*.so >/dev/null
LIBASAN=$(gcc -print-file-name=libasan.so)
LIBUBSAN=$(gcc -print-file-name=libubsan.so)
env LD_PRELOAD="$LIBASAN $LIBUBSAN" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 PYTHONPATH="$WORK" MMD_PURE_PYTHON= \
    "$PY" scripts/fuzz.py --seconds "$SECONDS_TO_RUN" --seed "$SEED"
nm -D "$WORK"/daemon/core/_fastbook*.so | grep -q __asan_ && echo "fuzz: the C book and scanner ran with AddressSanitizer + UndefinedBehaviorSanitizer"
