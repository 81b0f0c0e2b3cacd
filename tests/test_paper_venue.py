"""Fill model of the paper venue on hand-built event sequences."""

from __future__ import annotations

import math

import pytest

from daemon.core.book import OrderBook
from daemon.core.events import BUY, SELL, BookUpdate, Fill, Quote, Trade
from daemon.core.instrument import Instrument, btcusdt_linear
from daemon.config import VenueConfig
from daemon.execution.models import ConstantLatency, MakerTakerFees
from daemon.execution.paper import PaperVenue
from daemon.execution.protocol import OrderEvent
from daemon.wiring import paper_venue

SYM = "TEST"
INS = Instrument(SYM, "linear", "1", "1", min_qty_lots=1, min_notional=0.0)


def mkbook(bids, asks, ts=0, depth=50):
    b = OrderBook(SYM, depth)
    b.apply(BookUpdate(SYM, depth, True, list(bids), list(asks), 1, 1, ts, 0, 0))
    return b


def delta(book, bids=(), asks=(), ts=0):
    book.apply(BookUpdate(SYM, book.depth, False, list(bids), list(asks), book.last_u + 1, 0, ts, 0, 0))
    return book


def trade(side, px, qty, tid, ts):
    return Trade(SYM, side, px, qty, tid, 0, ts, 0)


def venue(**kw):
    """The venue a ``[venue]`` config section builds (the runtime's own wiring), zero latency,
    zero fee and the conservative queue unless a test says otherwise."""
    kw.setdefault("entry_latency_ms", 0)
    kw.setdefault("cancel_latency_ms", 0)
    kw.setdefault("maker_fee", 0.0)
    kw.setdefault("queue_model", "conservative")
    return paper_venue(VenueConfig(**kw), INS)


def fills(recs):
    return [r for r in recs if isinstance(r, Fill)]


def kinds(recs):
    return [r.kind for r in recs if isinstance(r, OrderEvent)]


def quote(bid=None, bq=0, ask=None, aq=0, ts=0):
    return Quote(SYM, bid, bq, ask, aq, ts)


# --------------------------------------------------------------------------------------------


def test_queue_ahead_is_consumed_before_we_fill():
    b = mkbook([(100, 5)], [(101, 5)])
    v = venue()
    recs = v.on_quote(quote(100, 4), b)
    assert kinds(recs) == ["placed", "live"]
    assert recs[-1].queue_ahead == 5
    assert fills(v.on_trade(trade(SELL, 100, 3, "a", 1), b)) == []  # 5 -> 2 ahead
    assert v.working[BUY].queue_ahead == 2
    assert fills(v.on_trade(trade(SELL, 100, 2, "b", 2), b)) == []  # 2 -> 0 ahead, nothing left
    f = fills(v.on_trade(trade(SELL, 100, 3, "c", 3), b))
    assert [(x.side, x.price, x.qty) for x in f] == [(BUY, 100, 3)]
    # only the part of a trade beyond the queue fills us
    v2 = venue()
    v2.on_quote(quote(100, 4), mkbook([(100, 5)], [(101, 5)]))
    f = fills(v2.on_trade(trade(SELL, 100, 7, "x", 1), b))
    assert [x.qty for x in f] == [2]


def test_partial_fills_then_filled():
    b = mkbook([(100, 0)], [(101, 5)])
    v = venue()
    v.on_quote(quote(100, 10), b)  # improves: empty level -> no queue ahead
    assert v.working[BUY].queue_ahead == 0
    f1 = v.on_trade(trade(SELL, 100, 3, "a", 1), b)
    assert [x.qty for x in fills(f1)] == [3] and "filled" not in kinds(f1)
    f2 = v.on_trade(trade(SELL, 100, 20, "b", 2), b)
    assert [x.qty for x in fills(f2)] == [7]
    assert kinds(f2) == ["filled"]
    assert v.working[BUY] is None and v.open_orders() == []
    # nothing left to fill
    assert fills(v.on_trade(trade(SELL, 100, 5, "c", 3), b)) == []


def test_trade_through_our_price_fills_despite_queue():
    b = mkbook([(100, 50)], [(101, 50)])
    v = venue()
    v.on_quote(quote(100, 5, 101, 5), b)
    f = fills(v.on_trade(trade(SELL, 99, 3, "a", 1), b))  # printed through our bid
    assert [(x.side, x.price, x.qty) for x in f] == [(BUY, 100, 3)]  # filled at OUR price
    f = fills(v.on_trade(trade(BUY, 103, 9, "b", 2), b))  # through our ask
    assert [(x.side, x.price, x.qty) for x in f] == [(SELL, 101, 5)]


def test_same_side_taker_never_fills_us():
    b = mkbook([(100, 0)], [(101, 0)])
    v = venue()
    v.on_quote(quote(100, 5, 101, 5), b)
    out = []
    out += v.on_trade(trade(BUY, 100, 50, "a", 1), b)  # buy taker at our bid price
    out += v.on_trade(trade(BUY, 99, 50, "b", 2), b)  # buy taker below our bid
    out += v.on_trade(trade(SELL, 101, 50, "c", 3), b)  # sell taker at our ask price
    out += v.on_trade(trade(SELL, 102, 50, "d", 4), b)  # sell taker above our ask
    assert fills(out) == []


def test_entry_latency_delays_placement():
    b = mkbook([(100, 0)], [(101, 5)])
    v = venue(entry_latency_ms=50)
    recs = v.on_quote(quote(100, 5, ts=1000), b)
    assert kinds(recs) == ["placed"]
    assert fills(v.on_trade(trade(SELL, 99, 5, "early", 1049), b)) == []  # not live yet
    out = v.on_trade(trade(SELL, 99, 2, "late", 1050), b)
    assert kinds(out)[:1] == ["live"]
    assert [x.qty for x in fills(out)] == [2]
    live = [r for r in out if isinstance(r, OrderEvent) and r.kind == "live"][0]
    assert live.ts_ms == 1050


def test_queue_joined_at_live_time_not_at_send_time():
    b = mkbook([(100, 2)], [(101, 5)])
    v = venue(entry_latency_ms=100)
    v.on_quote(quote(100, 5, ts=0), b)
    delta(b, bids=[(100, 9)], ts=50)  # others join before our order lands
    v.on_book(b)
    out = v.advance(100, b)
    assert kinds(out) == ["live"] and out[0].queue_ahead == 9


def test_cancelled_order_fills_until_the_cancel_lands():
    b = mkbook([(100, 0)], [(101, 5)])
    v = venue(cancel_latency_ms=30)
    v.on_quote(quote(100, 5, ts=0), b)
    recs = v.on_quote(quote(None, 0, ts=100), b)
    assert kinds(recs) == ["cancel_requested"]
    f = fills(v.on_trade(trade(SELL, 100, 2, "a", 120), b))  # cancel in flight: still fills
    assert [x.qty for x in f] == [2]
    out = v.on_trade(trade(SELL, 100, 2, "b", 130), b)  # cancel effective at 130
    assert fills(out) == [] and kinds(out) == ["cancelled"]
    assert v.open_orders() == []


def test_replace_old_order_fills_until_cancel_and_shares_trade_volume():
    b = mkbook([(100, 0), (99, 0)], [(101, 5)])
    v = venue(entry_latency_ms=10, cancel_latency_ms=40)
    v.on_quote(quote(100, 5, ts=0), b)
    v.advance(10, b)
    recs = v.on_quote(quote(99, 5, ts=20), b)  # replace 100 -> 99
    assert kinds(recs) == ["cancel_requested", "placed"]
    new = [r for r in recs if r.kind == "placed"][0]
    old_id = [r for r in recs if r.kind == "cancel_requested"][0].order_id
    assert new.replaces == old_id
    # at 35 both are live (old until 60); a 6-lot sell sweeps through 99: old (better px) first
    f = fills(v.on_trade(trade(SELL, 98, 6, "t", 35), b))
    assert [(x.order_id, x.price, x.qty) for x in f] == [(old_id, 100, 5), (new.order_id, 99, 1)]
    assert sum(x.qty for x in f) == 6  # never more than the trade's volume


def test_same_trade_never_fills_twice():
    b = mkbook([(100, 0)], [(101, 5)])
    v = venue()
    v.on_quote(quote(100, 10), b)
    t = trade(SELL, 100, 3, "dup", 1)
    assert [x.qty for x in fills(v.on_trade(t, b))] == [3]
    assert fills(v.on_trade(t, b)) == []
    assert v.dup_trades == 1
    # also after a requote to a new order at the same level
    v.on_quote(quote(100, 20, ts=2), b)
    assert fills(v.on_trade(t, b)) == []


def test_fill_ids_are_deterministic_and_unique():
    def run():
        b = mkbook([(100, 1)], [(101, 1)])
        v = venue(entry_latency_ms=5, cancel_latency_ms=5, queue_model="prob_power")
        out = v.on_quote(quote(100, 5, 101, 5, ts=0), b)
        out += v.advance(5, b)
        for i in range(6):
            out += v.on_trade(trade(SELL if i % 2 else BUY, 99 if i % 2 else 102, 2, f"t{i}", 10 + i), b)
        out += v.on_quote(quote(99, 5, 102, 5, ts=20), b)
        return out

    a, c = run(), run()
    assert a == c
    ids = [x.fill_id for x in fills(a)]
    assert len(ids) == len(set(ids)) and ids
    ev_ids = [r.event_id for r in a if isinstance(r, OrderEvent)]
    assert len(ev_ids) == len(set(ev_ids))


def test_post_only_rejected_when_crossing_at_live_time():
    b = mkbook([(100, 5)], [(102, 5)])
    v = venue(entry_latency_ms=10)
    v.on_quote(quote(101, 5, ts=0), b)  # fine when sent
    delta(b, asks=[(102, 0), (101, 3)], ts=5)  # the ask comes down to our bid price
    out = v.on_book(b) + v.advance(10, b)
    rej = [r for r in out if isinstance(r, OrderEvent) and r.kind == "rejected"]
    assert len(rej) == 1 and rej[0].reason == "post_only"
    assert v.open_orders() == []
    # a crossing trade afterwards cannot fill it
    assert fills(v.on_trade(trade(SELL, 100, 10, "x", 11), b)) == []
    # an ask at the best bid is rejected too (checked when it lands)
    out = v.on_quote(quote(None, 0, 100, 5, ts=12), b) + v.advance(22, b)
    assert kinds(out) == ["placed", "rejected"]


def test_instrument_rules_reject_small_orders_once():
    ins = btcusdt_linear()  # min 1 lot, min notional 5 USDT
    b = OrderBook("BTCUSDT", 50)
    b.apply(BookUpdate("BTCUSDT", 50, True, [(600000, 5)], [(600001, 5)], 1, 1, 0, 0, 0))
    v = PaperVenue(ins, latency=ConstantLatency(0, 0))
    out = v.on_quote(Quote("BTCUSDT", 600000, 0, 600001, 0, 0), b)  # qty 0: not quoting
    assert out == []
    # 1 lot = 0.001 BTC at 60000 = 60 USDT: ok; at price 4000.0 it is 4 USDT < 5 -> rejected
    out = v.on_quote(Quote("BTCUSDT", 40000, 1, None, 0, 1), b)
    assert [(r.kind, r.reason) for r in out] == [("rejected", "min_notional")]
    assert v.on_quote(Quote("BTCUSDT", 40000, 1, None, 0, 2), b) == []  # same refusal recorded once
    out = v.on_quote(Quote("BTCUSDT", 600000, 1, None, 0, 3), b)
    assert kinds(out) == ["placed", "live"]
    out = v.on_quote(Quote("BTCUSDT", -5, 1, None, 0, 4), b)
    assert ("rejected", "bad_price") in [(r.kind, r.reason) for r in out]


def test_requote_same_price_keeps_order_and_queue_shrink_keeps_increase_loses():
    b = mkbook([(100, 5)], [(101, 5)])
    v = venue(entry_latency_ms=0)
    v.on_quote(quote(100, 10), b)
    o = v.working[BUY]
    v.on_trade(trade(SELL, 100, 3, "a", 1), b)  # 5 -> 2 ahead
    assert v.on_quote(quote(100, 10, ts=2), b) == []  # unchanged: nothing happens
    out = v.on_quote(quote(100, 6, ts=3), b)  # shrink: amend in place
    assert kinds(out) == ["amended"]
    assert v.working[BUY] is o and o.qty == 6 and o.queue_ahead == 2
    out = v.on_quote(quote(100, 8, ts=4), b)  # grow: cancel + new order at the back
    assert kinds(out) == ["cancel_requested", "placed", "cancelled", "live"]
    assert v.working[BUY] is not o and v.working[BUY].queue_ahead == b.size_at(BUY, 100)


@pytest.mark.parametrize("model", ["conservative", "prob_linear", "prob_power"])
def test_size_decrease_queue_models(model):
    b = mkbook([(100, 10)], [(101, 5)])
    v = venue(queue_model=model, queue_power=2.0)
    v.on_quote(quote(100, 1), b)
    assert v.working[BUY].queue_ahead == 10
    for i in range(4):  # 6 more lots join behind us: level 16, front 10, back 6
        delta(b, bids=[(100, 11 + i + (i == 3) * 2)], ts=i + 1)
        v.on_book(b)
    assert b.size_at(BUY, 100) == 16 and v.working[BUY].queue_ahead == 10
    delta(b, bids=[(100, 12)], ts=10)  # 4 lots cancelled somewhere in the queue
    v.on_book(b)
    front, back, chg = 10.0, 6.0, 4.0
    if model == "conservative":
        exp = 10.0
    else:
        n = 1.0 if model == "prob_linear" else 2.0
        p = back**n / (back**n + front**n)
        exp = min(front - (1 - p) * chg + min(back - p * chg, 0.0), 12.0)
    assert v.working[BUY].queue_ahead == pytest.approx(exp)
    if model != "conservative":
        assert v.working[BUY].queue_ahead < 10.0
    # the level shrinks below our estimate: the queue ahead can never exceed the visible size
    delta(b, bids=[(100, 3)], ts=11)
    v.on_book(b)
    assert v.working[BUY].queue_ahead <= 3.0


def test_trades_are_not_counted_twice_by_the_following_book_update():
    b = mkbook([(100, 10)], [(101, 5)])
    v = venue(queue_model="prob_linear")
    v.on_quote(quote(100, 1), b)
    delta(b, bids=[(100, 14)], ts=1)  # 4 behind us
    v.on_book(b)
    v.on_trade(trade(SELL, 100, 3, "a", 2), b)  # front 10 -> 7
    delta(b, bids=[(100, 11)], ts=3)  # the book shows the trade: 14 -> 11, no cancel
    v.on_book(b)
    assert v.working[BUY].queue_ahead == pytest.approx(7.0)


def test_level_beyond_depth_window_keeps_estimate():
    b = mkbook([(100, 5), (99, 5)], [(103, 5)], depth=2)
    v = venue(queue_model="prob_linear")
    v.on_quote(quote(99, 1), b)
    assert v.working[BUY].queue_ahead == 5
    delta(b, bids=[(101, 4)], ts=1)  # 99 leaves the 2-level window: size unknown, not zero
    v.on_book(b)
    assert b.size_at(BUY, 99) == 0 and v.working[BUY].queue_ahead == 5


def test_maker_fee_and_rebate():
    ins = btcusdt_linear()
    for rate in (0.0002, -0.0001):
        b = OrderBook("BTCUSDT", 50)
        b.apply(BookUpdate("BTCUSDT", 50, True, [(600000, 0)], [(600010, 5)], 1, 1, 0, 0, 0))
        v = PaperVenue(ins, latency=ConstantLatency(0, 0), fees=MakerTakerFees(rate))
        v.on_quote(Quote("BTCUSDT", 600000, 20, None, 0, 0), b)
        f = fills(v.on_trade(Trade("BTCUSDT", SELL, 600000, 20, "t", 0, 1, 0), b))[0]
        assert f.fee == pytest.approx(60000.0 * 0.020 * rate)
        assert math.copysign(1, f.fee) == math.copysign(1, rate)


def test_cancel_all_and_bad_config():
    b = mkbook([(100, 0)], [(101, 0)])
    v = venue(cancel_latency_ms=10)
    v.on_quote(quote(100, 1, 101, 1), b)
    out = v.cancel_all(5, "risk", b)
    assert kinds(out) == ["cancel_requested", "cancel_requested"]
    assert kinds(v.advance(15, b)) == ["cancelled", "cancelled"]
    with pytest.raises(ValueError):
        venue(queue_model="fifo")
    with pytest.raises(ValueError):
        venue(entry_latency_ms=-1)


def test_amend_to_a_refused_size_cancels_the_order():
    ins = btcusdt_linear()  # min notional 5 USDT
    b = OrderBook("BTCUSDT", 50)
    b.apply(BookUpdate("BTCUSDT", 50, True, [(600000, 5)], [(600001, 5)], 1, 1, 0, 0, 0))
    v = PaperVenue(ins, latency=ConstantLatency(0, 0))
    v.on_quote(Quote("BTCUSDT", 600000, 1, None, 0, 0), b)  # 60 USDT
    ins2 = Instrument("BTCUSDT", "linear", "0.10", "0.001", min_qty_lots=2, min_notional=5.0)
    v.instrument = ins2  # now 2 lots minimum: an amend down to 1 lot is refused
    v.on_quote(Quote("BTCUSDT", 600000, 3, None, 0, 1), b)  # grow (replace) to 3 lots
    out = v.on_quote(Quote("BTCUSDT", 600000, 1, None, 0, 2), b)  # shrink below min qty
    assert [(r.kind, r.reason) for r in out][:2] == [("rejected", "min_qty"), ("cancel_requested", "unquoted")]
    assert v.working[BUY] is None
