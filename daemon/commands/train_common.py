"""What the ``mmd train-*`` commands share: the error line, a throttled progress line on stderr,
and the ending (write the model file atomically through its ``save``, then print either one JSON
object on stdout or the human table).

Exit status convention of every train command: 0 ok, 1 unusable data or an unwritable output file,
2 bad usage/config.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, Callable, Protocol, TextIO


class _Savable(Protocol):
    def save(self, path: str) -> None: ...


def fail(prog: str, msg: str, code: int) -> int:
    """Print ``mmd PROG: MSG`` on stderr and return ``code`` (the exit status)."""
    print(f"mmd {prog}: {msg}", file=sys.stderr)
    return code


def progress_line(render: Callable[[int, int, float], str], stream: TextIO | None = None,
                  every_s: float = 0.2) -> Callable[[int, int, float], None]:
    """A ``progress(step, total, value)`` callback that redraws ``render(step, total, value)`` on one
    stderr line at most every ``every_s`` seconds (wall clock: this is the CLI shell, not the core),
    and always at the last step, which ends the line."""
    out = stream if stream is not None else sys.stderr
    last = [-math.inf]  # the first call always draws

    def progress(step: int, total: int, value: float) -> None:
        now = time.monotonic()
        if step != total and now - last[0] < every_s:
            return
        last[0] = now
        out.write("\r" + render(step, total, value) + ("\n" if step == total else ""))
        out.flush()

    return progress


def save_and_report(prog: str, model: _Savable, out: str, as_json: bool, summary: dict[str, Any],
                    table: Callable[[], None]) -> int:
    """Write ``model`` to ``out`` (exit 1 with a one-line reason when that fails), then print
    ``summary`` as one JSON object (``as_json``) or call ``table``; returns the exit status."""
    try:
        model.save(out)
    except OSError as e:
        return fail(prog, f"cannot write {out!r}: {e.strerror or e}", 1)
    if as_json:
        print(json.dumps(summary))
    else:
        table()
    return 0
