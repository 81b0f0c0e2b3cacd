"""Build hook for the optional C accelerators (daemon/core/_fastbook.c, daemon/models/_fastmodels.c).

Everything else lives in pyproject.toml. The extension is ``optional``: without a C compiler the
install still succeeds and mmd runs on the pure-Python references (book, parser, A/kappa fit) (slower; it logs
``fast_path_unavailable`` at start). ``MMD_PURE_PYTHON=1`` selects the pure-Python path at run time.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "daemon.core._fastbook",
            ["daemon/core/_fastbook.c"],
            optional=True,
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wno-missing-field-initializers", "-ffp-contract=off"],
        ),
        Extension(
            "daemon.models._fastmodels",
            ["daemon/models/_fastmodels.c"],
            optional=True,
            # no fast-math, no FMA contraction: bit-identical to the Python references
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-fno-fast-math", "-ffp-contract=off"],
        ),
    ]
)
