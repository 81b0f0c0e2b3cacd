"""Ledger throughput and hot-path cost.

    .venv/bin/python bench/bench_ledger.py [--n 100000] [--dir /tmp]

Prints a table:

* ``sustained``: fills appended back to back, then ``flush()``; fills/s = N / time until the last
  one is committed with ``synchronous=FULL`` (the durability rule on: fsync per batch);
* ``append``: the engine-side cost of ``Ledger.append`` (p50/p99/max in microseconds), measured
  while the writer thread is committing -- it is a deque append, it never waits on disk;
* ``append, disk full``: the same while the writer is stuck in its error state (``max_page_count``
  reached): the hot path is unaffected and the records stay queued.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time

from daemon.core.events import BUY, SELL
from daemon.core.instrument import btcusdt_linear
from daemon.paper.inventory import BookedFill
from daemon.paper.ledger import Ledger


def fills(n: int, tag: str):
    return [
        BookedFill(f"BTCUSDT-{i // 3}:{tag}{i}", "BTCUSDT", f"BTCUSDT-{i // 3}", BUY if i % 2 else SELL, 600000 + i % 50,
                   1 + i % 5, 0.012, f"{tag}{i}", 1_723_100_000_000 + i, 60000.05)
        for i in range(n)
    ]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_sustained(d: str, n: int, batch_max: int, flush_ms: int):
    path = os.path.join(d, f"sus-{batch_max}-{flush_ms}.sqlite")
    recs = fills(n, "s")
    led = Ledger.open(path, "bench", "replay", instruments={"BTCUSDT": btcusdt_linear()}, batch_max=batch_max,
                      flush_interval_ms=flush_ms)
    t0 = time.perf_counter()
    for r in recs:
        led.append(r)
    t_app = time.perf_counter() - t0
    ok = led.flush(timeout=600)
    t = time.perf_counter() - t0
    batches = led.batches
    led.close()
    return dict(n=n, secs=t, rate=n / t if ok else float("nan"), batches=batches, append_s=t_app)


def bench_append(d: str, n: int, disk_full: bool):
    path = os.path.join(d, f"app-{int(disk_full)}.sqlite")
    recs = fills(n, "a")
    led = Ledger.open(path, "bench", "replay", batch_max=512, flush_interval_ms=5, retry_base_ms=5)
    if disk_full:
        led.append(recs[0])
        led.flush()
        c = sqlite3.connect(path)
        led._max_page_count = c.execute("PRAGMA page_count").fetchone()[0]
        c.close()
        recs = recs[1:]
    ns = []
    pc = time.perf_counter_ns
    for r in recs:
        t0 = pc()
        led.append(r)
        ns.append(pc() - t0)
    err = led.error
    backlog = led.backlog
    if disk_full:
        led._max_page_count = 10**9
    led.flush(timeout=600)
    led.close()
    us = [x / 1000 for x in ns]
    return dict(p50=statistics.median(us), p99=pct(us, 0.99), max=max(us), err=err, backlog=backlog)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        print(f"ledger bench: n={a.n} fills, synchronous=FULL, WAL, dir={d}")
        print(f"{'case':42s} {'fills/s':>10s} {'seconds':>8s} {'batches':>8s}")
        for bm, fm in ((512, 50), (64, 50), (1, 1)):
            n = a.n if bm > 1 else min(a.n, 300)
            r = bench_sustained(d, n, bm, fm)
            print(f"{f'sustained batch_max={bm} flush={fm}ms (n={n})':42s} {r['rate']:10.0f} {r['secs']:8.2f} {r['batches']:8d}")
        print()
        print(f"{'case':42s} {'p50 us':>8s} {'p99 us':>8s} {'max us':>8s}  writer")
        for full in (False, True):
            r = bench_append(d, a.n, full)
            state = f"error: {r['err'][:40]}, backlog {r['backlog']}" if r["err"] else "committing"
            name = "append (writer busy)" if not full else "append (writer stuck: disk full)"
            print(f"{name:42s} {r['p50']:8.2f} {r['p99']:8.2f} {r['max']:8.1f}  {state}")


if __name__ == "__main__":
    main()
