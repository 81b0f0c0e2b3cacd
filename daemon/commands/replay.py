"""``mmd replay FILE...``: drive the core from recordings without network, as fast as it can."""

from __future__ import annotations

import argparse
import json
import sys

from daemon.commands.common import note_fast_path, settings_from_args
from daemon.recording import RecordingError, bundled_recording


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE", help="recordings (<recv_ns> <frame json> lines, .gz ok); default: the bundled BTCUSDT one")
    p.add_argument("--ledger", metavar="PATH", help="ledger SQLite file (default: [ledger] path)")
    p.add_argument("--json", action="store_true", help="print the final summary as one JSON object")
    p.add_argument("--no-trade", action="store_true", help="book and features only: no quoting, no ledger")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    if args.json and not getattr(args, "log_level", None):
        # quiet logs via the CLI level, not a config override: the config hash (hence the replay's
        # run id) must not depend on --json, or a re-run would not continue an interrupted run
        args.log_level = "warning"
    s = settings_from_args(args)
    note_fast_path()
    from daemon.replay import replay

    files = args.files or [str(bundled_recording())]
    try:
        summary = replay(files, s, ledger_path=args.ledger, progress=not args.no_progress and sys.stderr.isatty(),
                         trade=not args.no_trade)
    except (RecordingError, FileNotFoundError, ValueError) as e:
        print(f"mmd replay: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"frames {summary['frames']:,}  {summary['seconds']:.2f} s  {summary['frames_per_s']:,.0f} frames/s  "
              f"parse errors {sum(summary['parse_errors'].values())}  resyncs {summary['resyncs']}")
        for sym, row in summary["symbols"].items():
            print(f"{sym}: " + "  ".join(f"{k}={v}" for k, v in row.items()))
    return 0
