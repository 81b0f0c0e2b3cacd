#!/usr/bin/env python3
"""The paper venue next to hftbacktest 2.4.4: one fixed quoting policy over the bundled real BTCUSDT
recording in both engines (``tests/hbt_reference.py``: every 100 ms a post-only 1-lot bid at the best
bid and ask at the best ask, |position| <= 10 lots, maker fee 2 bp, prob queue x**2, constant order
latency L for entry and cancel).

    .venv/bin/python bench/bench_venue_reference.py [--latency 0 20 100] [--requote always on_change]

Prints one row per (requote mode, L, engine):

* ``fills`` (orders filled; each fill is 1 lot), ``buys/sells``; ``orders`` placed and ``rej`` of them
  rejected as post-only (they would have crossed when they reached the book);
* ``edge``: mean of ``side * (mid - price) / mid`` in bps over the fills, ``mid`` the prevailing mid
  (the last book update stamped strictly before the fill's ms); ``n`` fills with a mid;
* ``mk1s``: mean 1 s markout, ``side * (mid 1 s after the fill - price) / mid`` in bps (the mid of
  the last book update stamped at or before fill + 1000 ms); ``n`` fills at least 1 s before the
  end of the recording;
* ``fees`` (USDT, each engine's own accounting) and ``pnl`` (USDT: cash from the fills plus the
  position marked to the final mid, minus fees).

hftbacktest comes from the ``test`` extra (``bash scripts/install.sh``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from daemon.core.book import OrderBook  # noqa: E402
from daemon.core.events import BookUpdate  # noqa: E402
from hbt_reference import (  # noqa: E402
    DEPTH,
    REQUOTE_MODES,
    SYMBOL,
    Market,
    Run,
    hbt_events,
    load_market,
    run_hftbacktest,
    run_paper_venue,
)

MARKOUT_MS = 1000


def mids(market: Market) -> tuple[np.ndarray, np.ndarray]:
    """``(ts_ms, mid_ticks)`` after each book update with both sides."""
    book = OrderBook(SYMBOL, DEPTH)
    book.request_sync("replay")
    ts, mid = [], []
    for ev in market.events:
        if isinstance(ev, BookUpdate):
            book.apply(ev)
            if book.best_bid is not None and book.best_ask is not None:
                ts.append(ev.ts_ms)
                mid.append((book.best_bid + book.best_ask) / 2)
    return np.asarray(ts, dtype=np.int64), np.asarray(mid, dtype=np.float64)


def stats(run: Run, market: Market, mid_ts: np.ndarray, mid: np.ndarray) -> dict:
    inst = market.instrument
    tick = inst.price.step_float
    edges, marks = [], []
    for ts, side, px, _qty in run.fills:
        i = np.searchsorted(mid_ts, ts, side="left") - 1  # last mid stamped < ts
        if i < 0:
            continue
        m0 = mid[i]
        edges.append(side * (m0 - px) / m0 * 1e4)
        if ts + MARKOUT_MS <= mid_ts[-1]:
            j = np.searchsorted(mid_ts, ts + MARKOUT_MS, side="right") - 1  # last mid stamped <= ts + 1 s
            marks.append(side * (mid[j] - px) / m0 * 1e4)
    final_mid = (market.final_bid + market.final_ask) / 2 * tick
    pnl = run.cash(inst) + run.position_lots * inst.qty.step_float * final_mid - run.fees
    return {
        "orders": run.extra["orders"],
        "rej": run.extra["rejected"],
        "fills": len(run.fills),
        "buys": run.buys,
        "sells": run.sells,
        "n_edge": len(edges),
        "edge": float(np.mean(edges)) if edges else float("nan"),
        "n_mk": len(marks),
        "mk1s": float(np.mean(marks)) if marks else float("nan"),
        "fees": run.fees,
        "pnl": pnl,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=int, nargs="+", default=[0, 20, 100], help="order latencies L (ms)")
    ap.add_argument("--requote", nargs="+", default=list(REQUOTE_MODES), choices=REQUOTE_MODES)
    args = ap.parse_args()

    market = load_market()
    data = hbt_events(market)
    mid_ts, mid = mids(market)
    print(f"recording: {len(market.events)} events (depth-50 updates + trades), "
          f"{(market.last_ms - market.first_ms) / 1000:.0f} s; hftbacktest event rows: {len(data)}")
    head = (f"{'requote':<10}{'L ms':>5}  {'engine':<12}{'orders':>7}{'rej':>5}{'fills':>6}{'buys/sells':>12}{'n':>6}{'edge bps':>10}"
            f"{'n':>6}{'mk1s bps':>10}{'fees':>9}{'pnl':>9}{'secs':>7}")
    print(head)
    print("-" * len(head))
    for requote in args.requote:
        for latency in args.latency:
            for engine, run_fn in (("hftbacktest", lambda: run_hftbacktest(market, latency, requote, data)),
                                   ("mmd", lambda: run_paper_venue(market, latency, requote))):
                t0 = time.perf_counter()
                run = run_fn()
                secs = time.perf_counter() - t0
                s = stats(run, market, mid_ts, mid)
                print(f"{requote:<10}{latency:>5}  {engine:<12}{s['orders']:>7}{s['rej']:>5}{s['fills']:>6}{s['buys']:>6}/{s['sells']:<5}"
                      f"{s['n_edge']:>6}{s['edge']:>10.3f}{s['n_mk']:>6}{s['mk1s']:>10.3f}{s['fees']:>9.3f}"
                      f"{s['pnl']:>9.3f}{secs:>7.2f}")
    print("(the first hftbacktest row includes numba's compile of the policy)")


if __name__ == "__main__":
    main()
