"""``mmd demo``: one command, offline. Starts the embedded Bybit-compatible exchange with the bundled
real BTCUSDT recording, runs the full daemon against it over loopback (REST bootstrap, websocket,
verified book, features, classifier, quoter, risk gate, paper venue, ledger), shows a live compact
status, and ends with the report (table on stdout, PNG and HTML in ``--out``).

The demo is paced by the wall clock (``--speed``), so its fill count varies by a few between runs;
it says so with its summary and points to ``mmd replay``, the deterministic path."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from daemon.commands.common import note_fast_path, settings_from_args
from daemon.commands.loop import run_async


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speed", type=float, default=20.0, help="replay speed of the recording (x real time; default 20)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: end of the recording)")
    p.add_argument("--recording", metavar="FILE", help="another recording to serve (default: the bundled BTCUSDT one)")
    p.add_argument("--out", metavar="DIR", default="mmd-demo", help="directory for the ledger and the report (default: ./mmd-demo)")
    p.add_argument("--quoter", choices=["avellaneda", "glft", "rl"], help="quoter to run (default: from config)")


def run(args: argparse.Namespace) -> int:
    if args.speed <= 0:
        print("mmd demo: --speed must be > 0", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ledger = out / "ledger.sqlite"
    if ledger.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(str(ledger) + suffix).unlink(missing_ok=True)
    overrides: dict = {
        "ledger": {"path": str(ledger)},
        "ops": {"metrics_port": 0, "status_interval_s": 1.0},
        "market": {"topics": ["publicTrade", "tickers", "kline"], "kline_history": 0},
    }
    if args.quoter:
        overrides["quoter"] = {"kind": args.quoter}
    if not os.environ.get("MMD_ADVERSE__MODEL_PATH"):
        from daemon.recording import bundled_adverse_model

        overrides["adverse"] = {"model_path": str(bundled_adverse_model())}
    if not getattr(args, "log_level", None):
        args.log_level = "warning"
    s = settings_from_args(args, overrides)
    note_fast_path()
    return run_async(_demo(s, args, out, ledger))


async def _demo(s, args, out: Path, ledger: Path) -> int:
    from daemon.app import App
    from daemon.exchange.server import ExchangeServer

    tty = sys.stdout.isatty()
    ex = ExchangeServer(recording=args.recording, speed=args.speed, loop=False)
    await ex.start()
    s.market.rest_url = ex.rest_url
    s.market.ws_url = ex.ws_url
    print(f"mmd demo: embedded exchange on {ex.rest_url} replaying {ex.recording.path if hasattr(ex.recording, 'path') else 'the bundled BTCUSDT recording'} at {args.speed:g}x")

    def show(st: dict) -> None:
        parts = []
        for sym, r in st["symbols"].items():
            q = f"quote {r.get('quote_bid') or '-'}/{r.get('quote_ask') or '-'}" if "quote_bid" in r else ""
            pos = f"pos {r['position']:+.3f}" if "position" in r else ""
            pnl = f"pnl {r['pnl_total']:+.2f}" if "pnl_total" in r else ""
            pa = f"p_adv {r['p_adverse_bid']:.2f}/{r['p_adverse_ask']:.2f}" if "p_adverse_bid" in r else ""
            fills = f"fills {r['fills']}" if "fills" in r else ""
            risk = f"risk {r['risk']}" if r.get("risk") else ""
            parts.append(" | ".join(x for x in (f"{sym} {r['book']} {r['bid']}/{r['ask']}", q, pos, fills, pnl, pa, risk) if x))
        line = "  ".join(parts) + f"  [{ex.frames_broadcast:,} frames]"
        if tty:
            sys.stdout.write("\r\x1b[K" + line[:200])
            sys.stdout.flush()
        else:
            print(line, flush=True)

    app = App(s, status_printer=show)
    task = asyncio.create_task(app.run())
    t0 = time.monotonic()
    assert ex.finished is not None
    finished = asyncio.create_task(ex.finished.wait())
    waits = {task, finished}
    timeout = args.duration
    done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task not in done:
        app.request_stop("demo end")
    rc = await task
    finished.cancel()
    await ex.stop()
    if tty:
        print()
    print(f"mmd demo: ran {time.monotonic() - t0:.1f} s, {ex.frames_broadcast:,} frames, exit {rc}")
    if rc != 0:
        return rc
    rc = _report(ledger, out)
    # The exchange paces the frames by the wall clock and the daemon reads them over a socket, so
    # scheduling decides where some quotes land relative to the trades: a few fills differ per run.
    print(f"mmd demo: paced by the wall clock ({args.speed:g}x), so the fill count varies by a few between runs; "
          f"for a deterministic run of the same recording use: mmd replay{' ' + args.recording if args.recording else ''}")
    return rc


def _report(ledger: Path, out: Path) -> int:
    try:
        from daemon.paper.report import build, format_table, render_html, render_png
    except ImportError:
        return 0
    if not ledger.exists():
        print("mmd demo: no ledger was written")
        return 1
    summary, series = build(str(ledger))
    print(format_table(summary))
    png = out / "report.png"
    html = out / "report.html"
    render_png(series, str(png))
    html.write_text(render_html(summary, series))
    print(f"mmd demo: report written to {png} and {html} (ledger: {ledger})")
    return 0
