"""``mmd report LEDGER [--run RUN] [--json] [--png FILE] [--html FILE]``: summarise a paper ledger.

Reads the ledger read-only and folds the chosen run's journal (:func:`daemon.paper.report.build`,
default run: the most recently created one); prints one row per symbol (fills, volume, position,
PnL by component, mean markouts at 1/5/30 s, maximum drawdown), or with ``--json`` the same as one
JSON object (non-finite numbers as null). ``--png`` writes the figure, ``--html`` a self-contained
page with the table and the figure.

Exit status: 0 ok, 1 an output file cannot be written, 2 a missing, foreign or corrupt ledger or
an unknown run (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from daemon.paper.ledger import LedgerError
from daemon.paper.report import build, format_table, render_html, render_png


def _json_safe(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _json_safe(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_json_safe(v) for v in o]
    return o


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ledger", metavar="LEDGER", help="the SQLite ledger file")
    p.add_argument("--run", default=None, help="run id (default: the most recent run)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--png", metavar="FILE", help="write charts as PNG")
    p.add_argument("--html", metavar="FILE", help="write an HTML page with the table and charts")


def run(args: argparse.Namespace) -> int:
    try:
        summary, series = build(args.ledger, args.run)
    except LedgerError as e:
        print(f"mmd report: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_json_safe(summary), sort_keys=True))
    else:
        print(format_table(summary))
    try:
        if args.png:
            render_png(series, args.png)
        if args.html:
            with open(args.html, "w", encoding="utf-8") as fh:
                fh.write(render_html(summary, series))
    except OSError as e:
        print(f"mmd report: cannot write output: {e}", file=sys.stderr)
        return 1
    return 0
