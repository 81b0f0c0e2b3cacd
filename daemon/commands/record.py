"""``mmd record``: write every raw frame with its receive time to compressed, rotating files
(``<recv_ns> <frame json>`` lines, the format of the recordings we ship; one
``.instruments.json`` sidecar per file so ``mmd replay`` needs no network). The book is still
verified (state changes are logged) but nothing is quoted."""

from __future__ import annotations

import argparse
import sys

from daemon.commands.common import settings_from_args
from daemon.commands.loop import run_async
from daemon.recording import RecordingWriter


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", default="recordings", help="directory for the rotating files (default: recordings)")
    p.add_argument("--rotate-mb", type=float, default=256.0, help="rotate after this many MB of raw frames (default 256)")
    p.add_argument("--rotate-minutes", type=float, default=60.0, help="rotate after this many minutes (default 60)")


def run(args: argparse.Namespace) -> int:
    if args.rotate_mb <= 0 or args.rotate_minutes <= 0:
        print("mmd record: --rotate-mb and --rotate-minutes must be > 0", file=sys.stderr)
        return 2
    s = settings_from_args(args)
    from daemon.app import App

    writer = RecordingWriter(args.out, rotate=True, max_bytes=int(args.rotate_mb * (1 << 20)), max_age_s=args.rotate_minutes * 60)
    app = App(s, trade=False, recorder=writer)
    return run_async(app.run())
