"""Replay the real BTCUSDT recording through parser + book and check it against an independent
recomputation made here from the raw JSON with the standard library (Decimal keys, full sorts)."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.bybit.messages import FrameParser
from daemon.core.book import Applied, PyOrderBook, fastbook
from daemon.core.events import BookUpdate, Trade
from daemon.core.instrument import btcusdt_linear

REC = Path(__file__).resolve().parents[1] / "daemon" / "data" / "linear_BTCUSDT_2024-08-08_5min.bybit.gz"


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return gzip.open(REC, "rb").read().splitlines()


@pytest.mark.parametrize("OrderBook", [PyOrderBook] + ([fastbook.OrderBook] if fastbook else []), ids=["python", "c"][: 1 + bool(fastbook)])
def test_recording_through_book_matches_independent_recomputation(lines, OrderBook):
    inst = btcusdt_linear()
    parser = FrameParser({"BTCUSDT": inst})
    book = OrderBook("BTCUSDT", 50)
    ref_b: dict[Decimal, Decimal] = {}
    ref_a: dict[Decimal, Decimal] = {}
    n50 = 0
    checkpoints = 0
    trades = 0
    for i, line in enumerate(lines):
        ns, frame = line.split(b" ", 1)
        evs = parser.parse(frame, int(ns))
        for ev in evs:
            if isinstance(ev, Trade):
                trades += 1
        if not frame.startswith(b'{"topic":"orderbook.50.'):
            continue
        (ev,) = evs
        assert isinstance(ev, BookUpdate)
        r = book.apply(ev)
        assert r in (Applied.OK, Applied.SNAPSHOT), (i, r, book.reason)
        n50 += 1
        # independent reference
        msg = json.loads(frame)
        d = msg["data"]
        if msg["type"] == "snapshot":
            ref_b.clear()
            ref_a.clear()
        for side, ref in (("b", ref_b), ("a", ref_a)):
            for p, s in d[side]:
                if Decimal(s) == 0:
                    ref.pop(Decimal(p), None)
                else:
                    ref[Decimal(p)] = Decimal(s)
        assert book.live
        assert len(book.bid_prices()) == 50 and len(book.ask_prices()) == 50, i
        assert book.best_bid < book.best_ask
        if n50 % 97 == 0 or n50 == 6352:
            checkpoints += 1
            rb = sorted(ref_b.items(), reverse=True)
            ra = sorted(ref_a.items())
            assert len(rb) == 50 and len(ra) == 50
            tick, step = Decimal("0.1"), Decimal("0.001")
            got_b = [(Decimal(p) * tick, Decimal(s) * step) for p, s in book.bid_levels()]
            got_a = [(Decimal(p) * tick, Decimal(s) * step) for p, s in book.ask_levels()]
            assert got_b == rb
            assert got_a == ra
    assert n50 == 6352
    assert checkpoints >= 60
    assert trades == 21313
    assert sum(parser.errors.values()) == 0
    # final top of book of the recording (independently known: PROTOCOL/SOURCES say uncrossed)
    assert inst.price.to_str(book.best_bid) == str(max(ref_b).quantize(Decimal("0.01")))
