"""Where the hand-written C accelerators are switched on or off (one rule for all of them).

Each accelerator sits next to its pure-Python reference and gives the same results
(``daemon/core/_fastbook.c``: order book and frame scanner; ``daemon/models/_fastmodels.c``: the
A/kappa fit and the adverse classifier's logits). ``MMD_PURE_PYTHON`` set to anything but ``""``
or ``0`` selects the references at import time.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def pure_python() -> bool:
    """True when ``MMD_PURE_PYTHON`` asks for the pure-Python references."""
    return os.environ.get("MMD_PURE_PYTHON", "") not in ("", "0")


def load_native(module: str) -> ModuleType | None:
    """The C extension ``module``, or None when it is not built or :func:`pure_python` is set."""
    if pure_python():
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
