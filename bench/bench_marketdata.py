#!/usr/bin/env python3
"""Market-data plane bench: frames/s and per-frame latency of parse + book, in one run, next to

* the floor: ``orjson.loads`` alone on the same frames;
* pybit's Bybit book handling (its own code path: ``_V5WebSocketManager._on_message`` -> json.loads
  -> ``_process_delta_orderbook`` -> deepcopy for the callback; and, separately, the book step alone);
* cryptofeed's Bybit handler (``Bybit.message_handler``: json.loads(parse_float=Decimal) -> ``_book``
  into its C ``order_book``; instance built without network, symbol lookup bound to the one symbol).

Streams: the bundled real BTCUSDT recording (39,470 frames) and a larger generated stream (a
deterministic random-walk 50-level book with trades, u+1, never crossed).

Every mmd row runs what the installed daemon runs: the C scanner + C book and the mypyc-compiled
per-tick modules (the default install; see setup.py), else plain Python (reported at start).
"mmd parse+book" uses the C scanner + C book when the extension is built, else the pure-Python reference; ``--pure`` adds the reference's own row
(``MMD_PURE_PYTHON`` semantics, measured in the same run) for comparison.

Optional stages (``--full``): "mmd tick" = parse, book, features, classifier, quote (the stages
issue #3 names); "mmd whole tick + paper" = all the daemon does per frame: that plus the risk gate,
the paper venue's queue/fill simulation and the inventory (no ledger I/O).

Usage: ``python bench/bench_marketdata.py [--synthetic-frames N] [--repeat R]``. Peers come from the
``bench`` extra (``pip install -e .[bench]``); a missing peer is reported as such.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import random
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.bybit.messages import FrameParser  # noqa: E402
from daemon.core.events import BookUpdate  # noqa: E402
from daemon.core.instrument import btcusdt_linear  # noqa: E402
from daemon.logging import configure_logging  # noqa: E402
from daemon.recording import bundled_recording  # noqa: E402

configure_logging("warning", "json")

ns = time.perf_counter_ns


def load_recording() -> list[bytes]:
    return [line.split(b" ", 1)[1] for line in gzip.open(bundled_recording(), "rb").read().splitlines() if line]


def synthetic(n: int, seed: int = 7, depth: int = 50) -> list[bytes]:
    """A valid orderbook.50 + publicTrade stream: u+1, exactly ``depth`` levels a side, never
    crossed, ~15 changed levels per delta, trades at the touch. Prices tick 0.1, sizes lot 0.001."""
    rng = random.Random(seed)
    mid = 600000  # ticks (60000.0)
    bids = {mid - i: rng.randint(1, 5000) for i in range(1, depth + 1)}
    asks = {mid + i: rng.randint(1, 5000) for i in range(0, depth)}
    u, seq, ts = 1, 10**10, 1_700_000_000_000
    out: list[bytes] = []

    def px(t: int) -> str:
        return f"{t // 10}.{t % 10}0"

    def sz(s: int) -> str:
        return f"{s // 1000}.{s % 1000:03d}"

    def book_frame(typ: str, b: list, a: list) -> bytes:
        return orjson.dumps({"topic": "orderbook.50.BTCUSDT", "type": typ, "ts": ts,
                             "data": {"s": "BTCUSDT", "b": b, "a": a, "u": u, "seq": seq}, "cts": ts - 1})

    out.append(book_frame("snapshot", [[px(p), sz(s)] for p, s in sorted(bids.items(), reverse=True)],
                          [[px(p), sz(s)] for p, s in sorted(asks.items())]))
    while len(out) < n:
        u += 1
        seq += rng.randint(1, 20)
        ts += rng.randint(1, 40)
        step = rng.choice((-1, 0, 0, 0, 1))
        db, da = [], []
        if step:
            mid += step
            for p in [p for p in bids if p >= mid]:
                del bids[p]
                db.append([px(p), "0"])
            for p in [p for p in asks if p < mid]:
                del asks[p]
                da.append([px(p), "0"])
        for _ in range(rng.randint(8, 20)):
            side = bids if rng.random() < 0.5 else asks
            off = rng.randint(1, depth) if side is bids else rng.randint(0, depth - 1)
            p = mid - off if side is bids else mid + off
            s = rng.randint(0, 5000) if rng.random() < 0.9 else 0
            if s:
                side[p] = s
            elif p in side:
                del side[p]
            else:
                continue
            (db if side is bids else da).append([px(p), sz(s)])
        # refill / trim the window to exactly `depth`
        for side, lst, sign in ((bids, db, -1), (asks, da, 1)):
            keys = sorted(side, key=lambda k: k * sign)
            for p in keys[depth:]:
                del side[p]
                lst.append([px(p), "0"])
            edge = keys[min(len(keys), depth) - 1] if keys else mid
            while len(side) < depth:
                edge += sign
                if edge not in side:
                    side[edge] = rng.randint(1, 5000)
                    lst.append([px(edge), sz(side[edge])])
        out.append(book_frame("delta", db, da))
        if rng.random() < 0.6:
            buy = rng.random() < 0.5
            p = min(asks) if buy else max(bids)
            out.append(orjson.dumps({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": ts, "data": [
                {"T": ts, "s": "BTCUSDT", "S": "Buy" if buy else "Sell", "v": sz(rng.randint(1, 300)), "p": px(p),
                 "L": "PlusTick", "i": f"t{len(out)}", "BT": False, "RPI": False, "seq": seq}]}))
    return out


def measure(name: str, fn, frames: list[bytes], repeat: int) -> dict:
    """Run ``fn(frame)`` over all frames ``repeat`` times; per-frame latencies from the last pass,
    throughput from the best pass."""
    best = float("inf")
    lat: list[int] = []
    for r in range(repeat):
        state = fn("reset")
        gc.collect()
        gc.disable()
        t0 = ns()
        if r == repeat - 1:
            lat = [0] * len(frames)
            i = 0
            for f in frames:
                a = ns()
                state(f)
                lat[i] = ns() - a
                i += 1
        else:
            for f in frames:
                state(f)
        el = ns() - t0
        gc.enable()
        best = min(best, el)
    lat.sort()
    n = len(lat)

    def pct(q: float) -> float:
        return lat[min(n - 1, int(q * n))] / 1000.0

    return {"name": name, "fps": len(frames) / (best / 1e9), "p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999)}


# -- subjects ----------------------------------------------------------------------------------


def s_orjson(_):
    return orjson.loads


def _parse_book(pure: bool):
    """parse + book as the daemon runs it (C scanner + C book when built), or on the pure-Python
    reference (no scanner, ``PyOrderBook``)."""
    from daemon.core.book import OrderBook, PyOrderBook

    inst = btcusdt_linear()
    parser = FrameParser({"BTCUSDT": inst})
    if pure:
        parser._scan = None
    Book = PyOrderBook if pure else OrderBook
    books = {1: Book("BTCUSDT", 1), 50: Book("BTCUSDT", 50)}
    parse = parser.parse

    def step(f: bytes) -> None:
        for ev in parse(f, 0):
            if type(ev) is BookUpdate:
                books[ev.depth].apply(ev)

    return step


def s_mmd(_):
    return _parse_book(False)


def s_mmd_pure(_):
    return _parse_book(True)


def s_pybit_full(_):
    try:
        from pybit._websocket_stream import _V5WebSocketManager
    except ImportError:
        return None
    m = object.__new__(_V5WebSocketManager)
    m.data = {}
    m.callback_directory = {}
    m.callback = m._handle_incoming_message
    m.subscriptions = {}
    noop = lambda msg: None  # noqa: E731
    for t in ("orderbook.50.BTCUSDT", "orderbook.1.BTCUSDT", "publicTrade.BTCUSDT"):
        m.callback_directory[t] = noop
    return m._on_message


def s_pybit_book(_):
    try:
        from pybit._websocket_stream import _V5WebSocketManager
    except ImportError:
        return None
    m = object.__new__(_V5WebSocketManager)
    m.data = {}
    loads = json.loads

    def step(f: bytes) -> None:
        msg = loads(f)
        topic = msg.get("topic", "")
        if "orderbook" in topic:
            m._process_delta_orderbook(msg, topic)

    return step


def s_cryptofeed(_):
    try:
        from cryptofeed.defines import L2_BOOK, TRADES
        from cryptofeed.exchanges.bybit import Bybit
    except ImportError:
        return None
    feed = object.__new__(Bybit)
    feed._l2_book = {}
    feed.max_depth = 0
    feed.cross_check = False
    feed.callbacks = {L2_BOOK: [], TRADES: []}
    feed.id = "BYBIT"
    feed.exchange_symbol_to_std_symbol = lambda s: "BTC-USDT-PERP"  # no network symbol map

    class Conn:
        address = "wss://stream.bybit.com/v5/public/linear"
        uuid = "bench"

    conn = Conn()
    loop = asyncio.new_event_loop()
    handler = feed.message_handler

    def step(f: bytes) -> None:
        coro = handler(f.decode(), conn, 0.0)
        try:
            coro.send(None)  # no real awaits inside: runs to completion synchronously
        except StopIteration:
            pass

    step._loop = loop  # type: ignore[attr-defined]
    return step


def s_full_tick(_):
    """parse + book + features + classifier + quoter + risk + paper venue (no ledger I/O)."""
    try:
        from daemon.runtime.runtime import bench_pipeline
    except ImportError:
        return None
    return bench_pipeline()


def s_tick(_):
    """The tick as the issue names it: parse -> book -> features -> classifier -> quote (the
    engine's routing, FeatureState, the bundled AdverseModel, Calibrator, QuotingPipeline with
    finalize), built from the same settings and classes as the daemon's SymbolStrategy, without
    the risk gate, paper venue, inventory and ledger (those are in "whole tick + paper")."""
    from daemon import wiring
    from daemon.config import load_settings
    from daemon.core.engine import Engine
    from daemon.features.state import FeatureState
    from daemon.models.adverse import AdverseModel
    from daemon.models.calibration import Calibrator
    from daemon.recording import bundled_adverse_model

    s = load_settings(overrides={"adverse": {"model_path": str(bundled_adverse_model())}})
    inst = btcusdt_linear()
    engine = Engine({"BTCUSDT": inst}, s.market.depth)
    parser = FrameParser({"BTCUSDT": inst})
    sc = engine.symbols["BTCUSDT"]

    class Signal:
        def __init__(self) -> None:
            self.features = FeatureState(inst, wiring.feature_params(s))
            self.calib = Calibrator(wiring.calibration_params(s), inst.price.step_float)
            self.model = AdverseModel.load(s.adverse.model_path)
            self.pipe = wiring.quoting_pipeline(s, inst, model_threshold=self.model.threshold)
            self.tick = inst.price.step_float
            self.lot = inst.qty.step_float
            self.mid = float("nan")
            self.quote = None

        def before_book(self, ts_ms: int) -> None:
            """No venue in this stage: nothing becomes due before an update."""

        def on_book(self, ev) -> None:
            book = sc.book
            f = self.features
            f.on_book(book, ev)
            bb, ba = book.best_bid, book.best_ask
            if bb is None or ba is None:
                return
            self.mid = (bb + ba) * 0.5 * self.tick
            pb, pa = self.model.predict(f)
            self.calib.set_sigma(f.sigma_price_per_s())
            cal = self.calib.on_timer(ev.ts_ms)
            self.quote = self.pipe.step(ts_ms=ev.ts_ms, best_bid_ticks=bb, best_ask_ticks=ba, position_lots=0,
                                        calibration=cal, ofi=f.ofi, imbalance=f.imbalance_top, vpin=f.vpin,
                                        p_adverse_bid=pb, p_adverse_ask=pa)

        def on_trade(self, tr) -> None:
            self.features.on_trade(tr)
            if self.mid == self.mid:
                self.calib.on_trade(tr.ts_ms, tr.price * self.tick, tr.qty * self.lot, self.mid, tr.side)

        def on_ticker(self, ticker, ts_ms) -> None:
            pass

        def on_kline(self, k) -> None:
            self.features.on_kline(k)

        def on_book_lost(self, reason, ts_ms) -> None:
            self.features.reset_book()

        def on_timer(self, ts_ms) -> None:
            pass

    sc.strategy = Signal()
    parse = parser.parse
    on_events = engine.on_events

    def step(frame: bytes) -> None:
        out = parse(frame, 0)
        if type(out) is list:
            on_events(out)
            if engine.out:
                engine.out.clear()

    return step


def memory_growth(n: int) -> dict:
    """Whole tick + paper over one continuous generated stream of ``3n`` frames (time keeps moving
    forward): allocated blocks after n, 2n and 3n frames (after a gc), and the fills in each span.
    Bounded state (time windows, ring buffers, LRU trade ids) means ~no growth once warm; the one
    expected growth is the inventory's memory of recent fill ids (idempotence), one id per fill,
    capped at ``SEEN_MAX``."""
    step = s_full_tick(None)
    if step is None:
        return {}
    st = step.runtime.strategies["BTCUSDT"]  # type: ignore[attr-defined]
    frames = synthetic(3 * n, seed=11)
    blocks, fills = [], []
    for k in range(3):
        for f in frames[k * n:(k + 1) * n]:
            step(f)
        gc.collect()
        blocks.append(sys.getallocatedblocks())
        fills.append(st.fills)
    return {"frames_per_span": n, "blocks": blocks, "fills": fills}


SUBJECTS = [
    ("orjson.loads (floor)", s_orjson),
    ("mmd parse+book", s_mmd),
    ("pybit (full _on_message)", s_pybit_full),
    ("pybit (json+book only)", s_pybit_book),
    ("cryptofeed (message_handler)", s_cryptofeed),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synthetic-frames", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="also the whole tick (features, classifier, quoter, venue)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--pure", action="store_true", help="also parse+book on the pure-Python reference")
    args = ap.parse_args()
    streams = [("BTCUSDT recording (real)", load_recording()), (f"generated ({args.synthetic_frames:,} frames)", synthetic(args.synthetic_frames))]
    subjects = list(SUBJECTS)
    from daemon.core.book import FAST_PATH

    if not FAST_PATH:
        subjects[1] = ("mmd parse+book (pure Python!)", s_mmd)
    if args.pure:
        subjects.insert(2, ("mmd parse+book, pure Python", s_mmd_pure))
    if args.full:
        subjects.append(("mmd tick (issue #3 stages)", s_tick))
        subjects.append(("mmd whole tick + paper", s_full_tick))
    results = []
    for sname, frames in streams:
        rows = []
        for name, factory in subjects:
            if factory(None) is None:
                rows.append({"name": name, "missing": True})
                continue
            try:
                rows.append(measure(name, factory, frames, args.repeat))
            except Exception as e:  # a peer that cannot digest a frame is reported, not hidden
                rows.append({"name": name, "error": f"{type(e).__name__}: {e}"[:80]})
        results.append((sname, len(frames), rows))
    mem = memory_growth(args.synthetic_frames) if args.full else {}
    if args.json:
        print(json.dumps({"streams": [{"stream": s, "frames": n, "rows": r} for s, n, r in results], "memory": mem}))
        return 0
    for sname, n, rows in results:
        floor = next(r for r in rows if r["name"].startswith("orjson"))
        peers = [r for r in rows if r.get("fps") and (r["name"].startswith("pybit") or r["name"].startswith("cryptofeed"))]
        best_peer = max((r["fps"] for r in peers), default=None)
        print(f"\n{sname}: {n:,} frames")
        print(f"{'subject':32} {'frames/s':>12} {'p50 us':>9} {'p99 us':>9} {'p99.9 us':>9} {'time/floor':>11} {'x best peer':>12}")
        for r in rows:
            if r.get("missing"):
                print(f"{r['name']:32} {'(not installed: pip install -e .[bench])':>60}")
                continue
            if r.get("error"):
                print(f"{r['name']:32} failed: {r['error']}")
                continue
            ratio = floor["fps"] / r["fps"]
            vs = f"{r['fps'] / best_peer:.1f}x" if best_peer else "-"
            print(f"{r['name']:32} {r['fps']:12,.0f} {r['p50']:9.2f} {r['p99']:9.2f} {r['p999']:9.2f} {ratio:10.2f}x {vs:>12}")
    if mem:
        from daemon.paper.inventory import SEEN_MAX

        b, fl, n = mem["blocks"], mem["fills"], mem["frames_per_span"]
        print(f"\nwhole tick + paper memory, one continuous generated stream: allocated blocks after {n:,} / {2 * n:,} / "
              f"{3 * n:,} frames: {b[0]:,} / {b[1]:,} / {b[2]:,} ({b[1] - b[0]:+,}, {b[2] - b[1]:+,} = "
              f"{100 * (b[2] / b[1] - 1):+.2f}% in the last span); fills in those spans {fl[1] - fl[0]:,}, {fl[2] - fl[1]:,} "
              f"(each remembers its id for idempotence, up to {SEEN_MAX:,} ids)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
