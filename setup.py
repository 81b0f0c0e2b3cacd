"""Build hook for mmd's compiled hot path. Everything else lives in pyproject.toml.

Two kinds of native code, both optional (without a C compiler the install still succeeds and mmd
runs the same Python source, several times slower; it logs ``fast_path_unavailable`` at start):

* hand-written C accelerators next to their pure-Python references: ``daemon/core/_fastbook.c``
  (order book + frame scanner) and ``daemon/models/_fastmodels.c`` (A/kappa fit, adverse logits).
  ``MMD_PURE_PYTHON=1`` switches them off at run time.
* the per-tick modules (feature state, quote step) compiled from their own Python source with
  mypyc (:data:`COMPILED`). The source stays the reference: ``tests/test_compiled.py`` replays the
  recording with the compiled modules and with the plain source and compares the journals.
  ``MMD_NO_COMPILE=1`` at install time skips mypyc. ``daemon/_compiled.py`` records a hash of
  each compiled source, and importing ``daemon`` refuses a compiled module whose source changed
  since (an editable install must be rebuilt: ``pip install -e .``).

Floating point: no fast-math and no FMA contraction anywhere (``-ffp-contract=off``), so compiled
code computes the same doubles as the Python it came from.
"""

from __future__ import annotations

import hashlib
import os
import sys

from setuptools import Extension, setup

#: modules on the per-tick path compiled with mypyc (paths relative to this file): only those whose
#: stage ``bench/bench_compiled.py`` shows at least 1.5x faster compiled (the feature update, the
#: quote step); engine, instrument, volatility and calibration gained less and stay plain Python
COMPILED = [
    "daemon/features/windows.py",
    "daemon/features/vpin.py",
    "daemon/features/state.py",
    "daemon/models/base.py",
    "daemon/models/avellaneda.py",
    "daemon/models/glft.py",
    "daemon/models/inventory.py",
    "daemon/models/quoting.py",
]

FP_FLAGS = ["-ffp-contract=off", "-fno-fast-math"]

#: MMD_SANITIZE=1: build the hand-written C accelerators with AddressSanitizer and
#: UndefinedBehaviorSanitizer (scripts/fuzz.sh; run Python with libasan preloaded). For fuzzing only.
SANITIZE = os.environ.get("MMD_SANITIZE", "") not in ("", "0")
SAN_COMPILE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g"]
SAN_LINK = ["-fsanitize=address,undefined"]

HERE = os.path.dirname(os.path.abspath(__file__))


def _sha(path: str) -> str:
    with open(os.path.join(HERE, path), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _drop_stale_builds(keep: list[str]) -> None:
    """Remove what an earlier in-place (editable) build compiled for a module not in ``keep``: a
    leftover ``.so`` would be imported instead of that module's source."""
    import glob

    for py in glob.glob(os.path.join(HERE, "daemon", "**", "*.py"), recursive=True):
        if os.path.relpath(py, HERE) not in keep:
            for f in glob.glob(py[:-3] + ".*.so") + glob.glob(py[:-3] + ".*.pyd"):
                os.remove(f)


def _mypyc_extensions() -> list[Extension]:
    stamp = os.path.join(HERE, "daemon", "_compiled.py")
    if os.environ.get("MMD_NO_COMPILE", "") not in ("", "0"):
        # plain Python: also drop the compiled group an earlier in-place build left here
        import glob

        for p in [stamp, *glob.glob(os.path.join(HERE, "daemon__mypyc.*"))]:
            if os.path.exists(p):
                os.remove(p)
        _drop_stale_builds([])
        return []
    _drop_stale_builds(COMPILED)
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("mmd: mypyc not available, the per-tick modules stay plain Python", file=sys.stderr)
        return []
    try:
        exts = mypycify(["--ignore-missing-imports", "--follow-imports=silent", *COMPILED], opt_level="3",
                        group_name="daemon")
    except (Exception, SystemExit) as e:  # a type error stops mypyc: install plain Python, loudly
        print(f"mmd: mypyc failed ({e}); the per-tick modules stay plain Python", file=sys.stderr)
        if os.path.exists(stamp):
            os.remove(stamp)
        return []
    for e in exts:
        e.optional = True  # no compiler: the plain source runs
        e.extra_compile_args = [*(e.extra_compile_args or []), *FP_FLAGS]
    with open(stamp, "w") as f:
        f.write('"""Written by setup.py: sha256 of each mypyc-compiled source at build time."""\n\n')
        f.write("SOURCES = {\n")
        for p in COMPILED:
            mod = p[:-3].replace("/", ".")
            f.write(f"    {mod!r}: {_sha(p)!r},\n")
        f.write("}\n")
    return exts


setup(
    ext_modules=[
        Extension(
            "daemon.core._fastbook",
            ["daemon/core/_fastbook.c"],
            optional=True,
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wno-missing-field-initializers", *FP_FLAGS,
                                *(SAN_COMPILE if SANITIZE else [])],
            extra_link_args=SAN_LINK if SANITIZE else [],
        ),
        Extension(
            "daemon.models._fastmodels",
            ["daemon/models/_fastmodels.c"],
            optional=True,
            extra_compile_args=["-O2", "-std=c11", "-Wall", *FP_FLAGS, *(SAN_COMPILE if SANITIZE else [])],
            extra_link_args=SAN_LINK if SANITIZE else [],
        ),
        *_mypyc_extensions(),
    ]
)
