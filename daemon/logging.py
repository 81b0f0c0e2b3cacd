"""Structured logging: JSON lines (one event per line), console rendering on a TTY.

Where the lines go depends on the command (:func:`daemon.commands.common.log_stream`): the
long-running ones (``run``, ``record``, ``demo``, ``exchange``) log on stdout for journald/docker;
the one-shot ones (``replay``, ``report``, ``sim``, ``train-*``, ``config show``, ...) log on stderr
so that stdout holds only their result (``mmd replay --json | jq .``).

Every line carries ``ts`` (ISO-8601 UTC), ``level``, ``event`` and the process-wide context bound
with :func:`bind_context` (``run_id``, ``config_hash``); call sites add ``symbol``/``topic`` where
relevant. The event catalogue is in ``docs/events.md``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _orjson_dumps(obj: object, default: Callable[[object], object] | None = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


class StdStream:
    """``sys.stdout`` or ``sys.stderr`` as it is when a line is written, not when logging was
    configured (a caller that swaps the stream, e.g. pytest's capture, must not leave the logger
    writing to a closed file)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        getattr(sys, self.name).flush()

    def isatty(self) -> bool:
        return getattr(getattr(sys, self.name), "isatty", lambda: False)()


STDOUT = StdStream("stdout")
STDERR = StdStream("stderr")


def configure_logging(level: str = "info", fmt: str = "auto", stream=None) -> None:
    """Configure structlog. ``fmt``: ``json``, ``console`` or ``auto`` (console on a TTY).
    ``stream``: where the lines go (default stdout)."""
    stream = stream or STDOUT
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)()))
    else:
        processors.append(structlog.processors.JSONRenderer(serializer=_orjson_dumps))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def bind_context(**kw: object) -> None:
    """Bind keys (``run_id``, ``config_hash``) onto every subsequent log line."""
    structlog.contextvars.bind_contextvars(**kw)


def get_logger(name: str | None = None):
    return structlog.get_logger(name) if name else structlog.get_logger()


class RateLimited:
    """Allow at most ``n`` log lines per ``per_s`` seconds per key (counts the suppressed ones).

    Used for per-frame problems (malformed frames) so a garbage storm cannot flood the log.
    Uses the monotonic clock: this is shell code, not core code.
    """

    def __init__(self, n: int = 5, per_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.n = n
        self.per_s = per_s
        self.clock = clock
        self._win: dict[str, tuple[float, int, int]] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """Returns ``(allowed, suppressed_since_last_allowed)``."""
        now = self.clock()
        start, count, supp = self._win.get(key, (now, 0, 0))
        if now - start >= self.per_s:
            start, count = now, 0
        if count < self.n:
            self._win[key] = (start, count + 1, 0)
            return True, supp
        self._win[key] = (start, count, supp + 1)
        return False, 0
