"""Synthetic market stream in the recording format (``<recv_ns> <frame json>`` lines), for benches.

A seeded random-walk book for one symbol: an ``orderbook.{depth}`` snapshot, then deltas and
``publicTrade`` batches. Guarantees (checked by tests): ``u`` goes up by exactly 1 per book message,
the book holds exactly ``depth`` levels per side after every message (levels leaving the window are
sent as size ``"0"``, new ones fill in at the far end), it is never crossed, every trade is at or
through the top of book on the side it takes (a ``Buy`` lifts asks, a ``Sell`` hits bids) and is
followed by the book delta that removes the liquidity it took. ``ts``/``T``/``seq`` increase; trade
ids are unique. Same ``seed`` -> byte-identical output.

Prices and sizes are integer ticks/lots internally and formatted to the grid (``tick="0.10"``,
``qty_step="0.001"``), so the output is always on-grid.
"""

from __future__ import annotations

import gzip
import random
from bisect import insort
from collections.abc import Iterator
from pathlib import Path

import orjson


def _fmt(n: int, dec: int) -> str:
    """Integer count of 10**-dec as a fixed-point string with ``dec`` decimals."""
    if dec == 0:
        return str(n)
    s = str(n).rjust(dec + 1, "0")
    return f"{s[:-dec]}.{s[-dec:]}"


def _dec_units(step: str) -> tuple[int, int]:
    """``"0.10"`` -> (decimals=2, units=10)."""
    dec = len(step.split(".")[1]) if "." in step else 0
    return dec, int(step.replace(".", ""))


def synth_frames(
    n_frames: int,
    seed: int = 0,
    symbol: str = "BTCUSDT",
    depth: int = 50,
    start_price_ticks: int = 618_000,
    tick: str = "0.10",
    qty_step: str = "0.001",
    start_ts_ms: int = 1_723_161_256_000,
    trade_prob: float = 0.35,
) -> Iterator[tuple[int, dict]]:
    """Yield ``(recv_ns, frame_dict)`` for ``n_frames`` frames (the first is the book snapshot)."""
    rnd = random.Random(seed)
    pdec, punits = _dec_units(tick)
    qdec, qunits = _dec_units(qty_step)

    def P(t: int) -> str:
        return _fmt(t * punits, pdec)

    def Q(lots: int) -> str:
        return _fmt(lots * qunits, qdec)

    def rand_lots() -> int:
        return max(1, int(rnd.expovariate(1 / 400)))

    topic = f"orderbook.{depth}.{symbol}"
    trade_topic = f"publicTrade.{symbol}"
    # prices ascending for both sides; bids best = last, asks best = first
    bid_p = [start_price_ticks - 1 - i for i in range(depth)][::-1]
    ask_p = [start_price_ticks + i for i in range(depth)]
    bids = {p: rand_lots() for p in bid_p}
    asks = {p: rand_lots() for p in ask_p}
    ts = start_ts_ms
    seq = 10_000_000_000
    u = 1
    tid = 0
    frame = {"topic": topic, "type": "snapshot", "ts": ts,
             "data": {"s": symbol, "b": [[P(p), Q(bids[p])] for p in reversed(bid_p)],
                      "a": [[P(p), Q(asks[p])] for p in ask_p], "u": u, "seq": seq}, "cts": ts}
    yield ts * 1_000_000 + 1_000_000, frame
    produced = 1
    while produced < n_frames:
        ts += rnd.randint(1, 25)
        seq += rnd.randint(1, 40)
        db: dict[int, str] = {}  # tick -> size string; last write wins (no duplicate prices in a delta)
        da: dict[int, str] = {}
        if rnd.random() < trade_prob and produced + 1 < n_frames:
            # a taker sweeps 1..3 levels of one side, the last one possibly partially
            buy = rnd.random() < 0.5
            side_p, side = (ask_p, asks) if buy else (bid_p, bids)
            levels = rnd.choice((1, 1, 1, 2, 3))
            trades = []
            for k in range(levels):
                p = side_p[0] if buy else side_p[-1]
                full = k < levels - 1 or rnd.random() < 0.4
                take = side[p] if full else rnd.randint(1, side[p])
                tid += 1
                trades.append({"T": ts, "s": symbol, "S": "Buy" if buy else "Sell", "v": Q(take), "p": P(p),
                               "L": "PlusTick" if buy else "MinusTick", "i": f"synth-{seed}-{tid}", "BT": False,
                               "RPI": False, "seq": seq})
                upd = db if not buy else da
                if take == side[p]:
                    del side[p]
                    if buy:
                        side_p.pop(0)
                        newp = side_p[-1] + rnd.randint(1, 3)
                        side_p.append(newp)
                    else:
                        side_p.pop()
                        newp = side_p[0] - rnd.randint(1, 3)
                        side_p.insert(0, newp)
                    side[newp] = rand_lots()
                    upd[p] = "0"
                    upd[newp] = Q(side[newp])
                else:
                    side[p] -= take
                    upd[p] = Q(side[p])
                    break
            yield ts * 1_000_000 + 1_000_000, {"topic": trade_topic, "type": "snapshot", "ts": ts, "data": trades}
            produced += 1
            ts += 1
            seq += 1
        else:
            r = rnd.random()
            bid_side = rnd.random() < 0.5
            side_p, side, upd = (bid_p, bids, db) if bid_side else (ask_p, asks, da)
            best_b, best_a = bid_p[-1], ask_p[0]
            if r < 0.25 and best_a - best_b > 1:
                # improve the touch inside the spread; the worst level leaves the window
                p = rnd.randint(best_b + 1, best_a - 1)
                if bid_side:
                    worst = side_p.pop(0)
                else:
                    worst = side_p.pop()
                del side[worst]
                upd[worst] = "0"
                insort(side_p, p)
                side[p] = rand_lots()
                upd[p] = Q(side[p])
            elif r < 0.45:
                # cancel a whole level; a new one enters at the far end
                i = rnd.randrange(depth)
                p = side_p.pop(i)
                del side[p]
                upd[p] = "0"
                if bid_side:
                    newp = side_p[0] - rnd.randint(1, 3)
                    side_p.insert(0, newp)
                else:
                    newp = side_p[-1] + rnd.randint(1, 3)
                    side_p.append(newp)
                side[newp] = rand_lots()
                upd[newp] = Q(side[newp])
            else:
                # resize 1..3 levels (biased towards the top)
                for _ in range(rnd.randint(1, 3)):
                    i = min(depth - 1, int(rnd.expovariate(1 / 6)))
                    p = side_p[-1 - i] if bid_side else side_p[i]
                    side[p] = rand_lots()
                    upd[p] = Q(side[p])
        u += 1
        ob = [[P(p), db[p]] for p in sorted(db, reverse=True)]
        oa = [[P(p), da[p]] for p in sorted(da)]
        yield ts * 1_000_000 + 1_000_000, {"topic": topic, "type": "delta", "ts": ts,
                                           "data": {"s": symbol, "b": ob, "a": oa, "u": u, "seq": seq}, "cts": ts}
        produced += 1


def synth_lines(n_frames: int, seed: int = 0, **kw: object) -> Iterator[bytes]:
    """Recording lines (bytes, with trailing newline) for :func:`synth_frames`."""
    dumps = orjson.dumps
    for ns, frame in synth_frames(n_frames, seed, **kw):  # type: ignore[arg-type]
        yield b"%d %s\n" % (ns, dumps(frame))


def write_synth(path: str | Path, n_frames: int, seed: int = 0, **kw: object) -> int:
    """Write a synthetic recording (gzip if ``path`` ends with .gz); returns the number of frames."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    n = 0
    with opener(p, "wb") as fh:
        buf: list[bytes] = []
        for line in synth_lines(n_frames, seed, **kw):
            buf.append(line)
            n += 1
            if len(buf) >= 4096:
                fh.write(b"".join(buf))
                buf.clear()
        fh.write(b"".join(buf))
    return n
