"""``mmd replay FILE...``: drive the core from recordings without network, as fast as it can.

Prints a table (one row per symbol: frames, market trades, book state, and when trading fills,
volume, position, PnL by component in quote currency, quotes and decisions) ending with the ledger
file it wrote, or with ``--json`` the same summary as one JSON object (``ledger`` and ``run_id``
name the journal). Logs go to stderr: stdout holds only the result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from daemon.commands.common import note_fast_path, recordings_only, settings_from_args
from daemon.recording import RecordingError, bundled_recording


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="recordings (<recv_ns> <frame json> lines, .gz ok; *.instruments.json sidecars among them are "
                        "skipped, so `mmd replay rec/*` works); default: the bundled BTCUSDT one")
    p.add_argument("--ledger", metavar="PATH", help="ledger SQLite file (default: [ledger] path)")
    p.add_argument("--json", action="store_true", help="print the final summary as one JSON object")
    p.add_argument("--no-trade", action="store_true", help="book and features only: no quoting, no ledger")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    files: list[str | os.PathLike[str]] = list(recordings_only("replay", args.files))
    if args.json and not getattr(args, "log_level", None):
        # quiet logs via the CLI level, not a config override: the config hash (hence the replay's
        # run id) must not depend on --json, or a re-run would not continue an interrupted run
        args.log_level = "warning"
    s = settings_from_args(args)
    note_fast_path()
    from daemon.replay import replay

    files = files or [str(bundled_recording())]
    try:
        summary = replay(files, s, ledger_path=args.ledger, progress=not args.no_progress and sys.stderr.isatty(),
                         trade=not args.no_trade)
    except (RecordingError, FileNotFoundError, ValueError) as e:
        print(f"mmd replay: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    """The replay summary as a table, one row per symbol (what ``mmd replay`` prints without ``--json``)."""
    from daemon.paper.report import aligned, fmt

    errors = summary["parse_errors"]
    lines = [f"replay: {summary['frames']:,} frames in {summary['seconds']:.2f} s ({summary['frames_per_s']:,.0f} frames/s),"
             f" parse errors {sum(errors.values())}" + (f" ({', '.join(f'{k} {v}' for k, v in errors.items())})" if errors else "")
             + f", resyncs {summary['resyncs']}"]
    traded = "ledger" in summary
    head = ["symbol", "frames", "trades", "book"]
    if traded:
        head += ["fills", "volume", "position", "spread", "inventory", "fees", "funding", "total", "quotes", "decisions"]
    rows = [head]
    for sym, r in summary["symbols"].items():
        row = [sym, f"{r['frames']:,}", f"{r['trades']:,}", r["book_state"]]
        if traded:
            p = r["pnl"]
            row += [f"{r['fills']:,}", fmt(r["volume"], 4), fmt(r["position"], 4), fmt(p["spread"]), fmt(p["inventory"]),
                    fmt(p["fees"]), fmt(p["funding"]), fmt(p["total"]), f"{r['quotes']:,}", f"{r['decisions']:,}"]
        rows.append(row)
    lines += aligned(rows)
    if traded:
        lines.append("PnL in quote currency: total = spread + inventory - fees - funding; volume and position in base units;"
                     " trades = market prints seen")
        lines.append(f"ledger {summary['ledger']} (run {summary['run_id']}): mmd report {summary['ledger']}")
    else:
        lines.append("no trading (--no-trade): no ledger written")
    return "\n".join(lines)
