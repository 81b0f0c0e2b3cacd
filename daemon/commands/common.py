"""Helpers shared by subcommands: load config (exit 2 with one line on error), set up logging,
set aside the recordings' sidecar files."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from daemon.config import ConfigError, Settings, load_settings
from daemon.logging import STDERR, bind_context, configure_logging
from daemon.recording import split_sidecars


def settings_from_args(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings from ``--config`` + env + ``overrides``; on error print one line and exit 2.
    Logging goes to ``args.log_stream`` (set by :func:`daemon.cli.main`: stdout for the long-running
    commands), stderr when it is not set."""
    try:
        s = load_settings(getattr(args, "config", None), overrides)
    except ConfigError as e:
        print(f"mmd: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    level = getattr(args, "log_level", None) or s.ops.log_level
    fmt = getattr(args, "log_format", None) or s.ops.log_format
    configure_logging(level, fmt, getattr(args, "log_stream", None) or STDERR)
    bind_context(run_id=uuid.uuid4().hex[:12], config_hash=s.config_hash())
    return s


def recordings_only(prog: str, paths: list[str]) -> list[str]:
    """``paths`` without the ``*.instruments.json`` sidecars a glob over a ``mmd record`` directory
    also names (they are read next to their recording); exit 2 with one line when nothing else is left."""
    files, sidecars = split_sidecars(paths)
    if sidecars and not files:
        print(f"mmd {prog}: no recordings among the files, only instrument sidecars ({sidecars[0]}, ...)",
              file=sys.stderr)
        raise SystemExit(2)
    return files


def note_fast_path() -> None:
    """One warning at start when native code is not in use: the C book/scanner (not built, or
    MMD_PURE_PYTHON) or the mypyc-compiled per-tick modules (MMD_NO_COMPILE, no compiler)."""
    import daemon.features.state
    from daemon.core.book import FAST_PATH
    from daemon.logging import get_logger
    from daemon.native import pure_python

    if not FAST_PATH:
        why = "MMD_PURE_PYTHON is set" if pure_python() else \
            "daemon.core._fastbook is not built (install with a C compiler)"
        get_logger("mmd").warning("fast_path_unavailable", reason=why, fallback="pure-Python book and parser")
    if daemon.features.state.__file__.endswith(".py"):
        get_logger("mmd").warning("fast_path_unavailable", reason="per-tick modules not compiled (MMD_NO_COMPILE, "
                                  "or no C compiler / mypy at install)", fallback="plain Python features and models")
