"""``mmd run``: the daemon against the configured venue (Bybit mainnet public data by default),
paper quoting only. No API keys are needed or read."""

from __future__ import annotations

import argparse

from daemon.commands.common import note_fast_path, settings_from_args
from daemon.commands.loop import run_async


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--record", metavar="FILE", help="also record every raw frame to FILE (gzip, <recv_ns> <frame> lines)")
    p.add_argument("--ledger", metavar="PATH", help="ledger SQLite file (overrides [ledger] path)")
    p.add_argument("--resume", action="store_true", help="clear a tripped risk gate recorded in the ledger at start")


def run(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    note_fast_path()
    from daemon.app import App

    app = App(s, record_path=args.record, ledger_path=args.ledger, resume=args.resume)
    return run_async(app.run())
