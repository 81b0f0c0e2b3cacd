"""Property tests of the paper venue on random event sequences (hypothesis)."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.core.book import OrderBook
from daemon.core.events import BUY, SELL, BookUpdate, Fill, Quote, Trade
from daemon.core.instrument import Instrument
from daemon.execution.models import ConstantLatency, MakerTakerFees, queue_model
from daemon.execution.paper import PaperVenue
from daemon.execution.protocol import OrderEvent

SYM = "TEST"
INS = Instrument(SYM, "linear", "1", "1", min_qty_lots=1, min_notional=0.0)

event = st.one_of(
    st.tuples(st.just("book"), st.integers(-2, 2), st.integers(0, 9), st.integers(0, 9)),
    st.tuples(st.just("trade"), st.sampled_from((BUY, SELL)), st.integers(-3, 3), st.integers(1, 8)),
    st.tuples(st.just("quote"), st.integers(-2, 1), st.integers(0, 4), st.integers(0, 4)),
    st.tuples(st.just("dup"), st.just(0), st.just(0), st.just(0)),
)


def run(events, model, entry, cancel):
    book = OrderBook(SYM, 50)
    mid = 1000
    book.apply(BookUpdate(SYM, 50, True, [(mid - 1, 5)], [(mid + 1, 5)], 1, 1, 0, 0, 0))
    v = PaperVenue(INS, latency=ConstantLatency(entry, cancel), fees=MakerTakerFees(0.0), queue=queue_model(model))
    out = []
    trades = {}
    tops = {}  # book u -> (best bid, best ask) after the update
    t = 0
    u = 1
    last_trade = None
    for i, (kind, a, b, c) in enumerate(events):
        t += 7
        if kind == "book":
            mid += a
            u += 1
            out += v.before_book(t, book)  # the engine's protocol: due orders reach the old book
            book.apply(BookUpdate(SYM, 50, True, [(mid - 1, b)], [(mid + 1, c)], u, u, t, 0, 0))
            out += v.on_book(book)
            tops[u] = (book.best_bid, book.best_ask)
            for o in v.open_orders():  # nothing rests crossed once the venue saw the update
                if o.status == "live":
                    assert not (o.side == BUY and book.best_ask is not None and book.best_ask <= o.price)
                    assert not (o.side == SELL and book.best_bid is not None and book.best_bid >= o.price)
        elif kind == "trade":
            px = mid + b
            tr = Trade(SYM, a, px, c, f"t{i}", i, t, 0)
            trades[tr.trade_id] = tr
            last_trade = tr
            out += v.on_trade(tr, book)
        elif kind == "dup" and last_trade is not None:
            out += v.on_trade(last_trade, book)
        elif kind == "quote":
            bid = mid - 1 + a if b else None
            ask = mid + 1 - a if c else None
            out += v.on_quote(Quote(SYM, bid, b, ask, c, t), book)
    out += v.advance(t + 1000, book)
    trades["tops"] = tops
    return v, out, trades


@settings(max_examples=400, deadline=None)
@given(
    st.lists(event, max_size=60),
    st.sampled_from(("conservative", "prob_linear", "prob_power")),
    st.integers(0, 20),
    st.integers(0, 20),
)
def test_venue_invariants(events, model, entry, cancel):
    v, out, trades = run(events, model, entry, cancel)
    fills = [r for r in out if isinstance(r, Fill)]
    used = defaultdict(int)
    per_order = defaultdict(int)
    placed = {}
    life = defaultdict(dict)
    for r in out:
        if isinstance(r, OrderEvent):
            life[r.order_id].setdefault(r.kind, r.ts_ms)
            if r.kind == "placed":
                placed[r.order_id] = r
    for f in fills:
        per_order[f.order_id] += f.qty
        if f.trade_id.startswith("book:"):  # executed by the book reaching our price
            bb, ba = trades["tops"][int(f.trade_id[5:])]
            assert (ba <= f.price) if f.side == BUY else (bb >= f.price)
        else:
            t = trades[f.trade_id]
            assert t.side == -f.side  # only the opposite taker side
            assert (t.price <= f.price) if f.side == BUY else (t.price >= f.price)
            used[f.trade_id] += f.qty
        assert life[f.order_id]["live"] <= f.ts_ms  # never before the order is live
        if "cancelled" in life[f.order_id]:
            assert f.ts_ms <= life[f.order_id]["cancelled"]
    for tid, q in used.items():
        assert q <= trades[tid].qty  # a trade's volume fills us at most once
    for oid, q in per_order.items():
        assert q <= placed[oid].qty  # never overfilled
    assert len({f.fill_id for f in fills}) == len(fills)
    for o in v.open_orders():
        assert o.queue_ahead >= 0
    ids = [r.event_id for r in out if isinstance(r, OrderEvent)]
    assert len(ids) == len(set(ids))
    # deterministic
    v2, out2, _ = run(events, model, entry, cancel)
    assert out2 == out
