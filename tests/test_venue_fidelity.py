"""Where the paper venue used to flatter us (issue "A paper venue as honest as hftbacktest"): each
case is a hand-built event sequence whose right answer comes from the market's mechanics and
hftbacktest's documented behaviour (nkaz001/hftbacktest ``NoPartialFillExchange``, ``ProbQueueModel``),
worked out by hand in the comments. The engine's call protocol is followed: ``before_book(ts, book)``
before an update is applied to the book, ``on_book(book)`` after it, ``on_trade`` per print."""

from __future__ import annotations

from daemon.core.book import OrderBook
from daemon.core.events import BUY, SELL, BookUpdate, Fill, Quote, Trade
from daemon.core.instrument import Instrument
from daemon.execution.models import ConstantLatency, MakerTakerFees, ProbQueue
from daemon.execution.paper import PaperVenue
from daemon.execution.protocol import OrderEvent

SYM = "TEST"
INS = Instrument(SYM, "linear", "1", "1", min_qty_lots=1, min_notional=0.0)  # tick 1, lot 1


def mkbook(bids, asks, ts=0):
    b = OrderBook(SYM, 50)
    b.apply(BookUpdate(SYM, 50, True, list(bids), list(asks), 1, 1, ts, 0, 0))
    return b


def venue(entry=0, cancel=0, power=2.0):
    return PaperVenue(INS, queue=ProbQueue(power), latency=ConstantLatency(entry, cancel), fees=MakerTakerFees(0.0))


def update(v, book, ts, bids=(), asks=()):
    """One book delta the way the engine delivers it: the venue sees time pass on the book as it
    was, then the applied update."""
    out = v.before_book(ts, book)
    book.apply(BookUpdate(SYM, 50, False, list(bids), list(asks), book.last_u + 1, 0, ts, 0, 0))
    return out + v.on_book(book)


def fills(recs):
    return [(r.ts_ms, r.side, r.price, r.qty) for r in recs if isinstance(r, Fill)]


def test_book_moving_through_a_resting_bid_fills_it_without_a_print():
    """Cause 1. Our bid rests at 100; the ask side drops to 100 (then 99) with no trade printed.
    A book cannot move past a resting order without executing it: the bid is filled, at our price,
    on that update (hftbacktest fills on the best-price update)."""
    b = mkbook([(100, 5), (99, 5)], [(101, 5)])
    v = venue()
    v.on_quote(Quote(SYM, 100, 2, None, 0, 0), b)
    # the public bids at 100 leave and an ask appears at 100 == our bid (no print)
    out = update(v, b, 10, bids=[(100, 0)], asks=[(101, 0), (100, 3)])
    assert fills(out) == [(10, BUY, 100, 2)]
    assert [r.kind for r in out if isinstance(r, OrderEvent)] == ["filled"]
    # and the same for an ask the bids move through
    b = mkbook([(100, 5)], [(101, 5), (102, 5)])
    v = venue()
    v.on_quote(Quote(SYM, None, 0, 101, 1, 0), b)
    assert fills(update(v, b, 10, bids=[(102, 4)], asks=[(101, 0), (102, 0), (103, 1)])) == [(10, SELL, 101, 1)]
    # an order whose cancel is still in flight can still be executed by the book
    b = mkbook([(100, 5), (98, 5)], [(101, 5)])
    v = venue(cancel=50)
    v.on_quote(Quote(SYM, 100, 1, None, 0, 0), b)
    v.cancel_all(5, "test", b)
    assert fills(update(v, b, 10, bids=[(100, 0)], asks=[(101, 0), (99, 1)])) == [(10, BUY, 100, 1)]


def test_an_order_due_before_an_update_joins_the_queue_of_the_book_it_arrived_at():
    """Cause 2 (the issue's reproduction). Bid (100,5)/ask (101,5); entry latency 20 ms; a 1-lot
    bid at 100 sent at t=10 reaches the book at t=30, behind the 5 lots there then. The next update
    (t=40) adds 10 lots at 100 behind us. A sell print of 6 at 100 (t=50) trades through the 5 ahead
    and fills our 1 lot (hftbacktest: 1 lot). Activated after the t=40 update, the order would sit
    behind 15 and fill nothing."""
    b = mkbook([(100, 5)], [(101, 5)])
    v = venue(entry=20)
    v.on_quote(Quote(SYM, 100, 1, None, 0, 10), b)
    out = update(v, b, 40, bids=[(100, 15)])
    live = [r for r in out if isinstance(r, OrderEvent) and r.kind == "live"]
    assert [(r.ts_ms, r.queue_ahead) for r in live] == [(30, 5.0)]
    assert fills(v.on_trade(Trade(SYM, SELL, 100, 6, "t1", 0, 50, 0), b)) == [(50, BUY, 100, 1)]


def test_post_only_check_sees_the_book_at_arrival():
    """Cause 2, the post-only side: at arrival (t=30) our bid at 100 is below the ask (101): it
    rests. Only the later update (t=40) moves the ask to 100, which then executes it (cause 1), not
    a post-only reject against a book the order never saw."""
    b = mkbook([(99, 5)], [(101, 5)])
    v = venue(entry=20)
    v.on_quote(Quote(SYM, 100, 1, None, 0, 10), b)
    out = update(v, b, 40, asks=[(101, 0), (100, 2)])
    kinds = [r.kind for r in out if isinstance(r, OrderEvent)]
    assert "rejected" not in kinds and kinds == ["live", "filled"]
    assert fills(out) == [(40, BUY, 100, 1)]


def test_a_trade_is_not_counted_again_as_a_cancel_after_an_unrelated_update():
    """Cause 3 (the issue's reproduction). Bid (100,10); our 1-lot bid at 100, zero latency: 10
    ahead. The level grows to 14 (4 behind us). A sell print of 3 at 100: 7 ahead. An unrelated
    update at the ask (102). Then the level shows 11: that is the print (14 - 3), no cancel, so the
    queue stays at 7.0 (it became 5.5 when the print was forgotten on the unrelated update and its
    3 lots were taken for cancels, shared front/back by the power-2 model)."""
    b = mkbook([(100, 10)], [(101, 5)])
    v = venue()
    v.on_quote(Quote(SYM, 100, 1, None, 0, 0), b)
    update(v, b, 1, bids=[(100, 14)])
    assert v.working[BUY].queue_ahead == 10.0
    assert fills(v.on_trade(Trade(SYM, SELL, 100, 3, "t1", 0, 2, 0), b)) == []
    assert v.working[BUY].queue_ahead == 7.0
    update(v, b, 3, asks=[(102, 7)])
    update(v, b, 4, bids=[(100, 11)])
    assert v.working[BUY].queue_ahead == 7.0


def test_executable_lots_beyond_the_queue_round_like_hftbacktest():
    """hftbacktest's prob queue fills ``round(traded - ahead)`` lots (half away from zero) once the
    print goes beyond the queue; mmd used to floor, so 0.5 lot of estimated queue could block a
    whole lot. Queue 2.5 ahead (after a cancel split by the linear model), a print of 3 lots: 0.5
    beyond -> 1 lot filled."""
    b = mkbook([(100, 4)], [(101, 5)])
    v = venue(power=1.0)
    v.on_quote(Quote(SYM, 100, 2, None, 0, 0), b)  # 4 ahead
    update(v, b, 1, bids=[(100, 8)])  # 4 behind us
    update(v, b, 2, bids=[(100, 5)])  # 3 cancelled: p(behind) = 4/8 -> front 4 - 1.5 = 2.5
    assert v.working[BUY].queue_ahead == 2.5
    assert fills(v.on_trade(Trade(SYM, SELL, 100, 3, "t1", 0, 3, 0), b)) == [(3, BUY, 100, 1)]


def test_feed_latency_delays_what_reaches_the_venue():
    """A quote decided on data stamped t=10 with a 15 ms feed latency and 20 ms entry latency
    reaches the book at 45; its replacement's cancel likewise lands 15 + cancel latency later."""
    b = mkbook([(100, 5)], [(101, 5)])
    v = venue(entry=20, cancel=5)
    recs = v.on_quote(Quote(SYM, 100, 1, None, 0, 10), b, delay_ms=15)
    assert [(r.kind, r.ts_ms) for r in recs if isinstance(r, OrderEvent)] == [("placed", 10)]
    assert [(r.kind, r.ts_ms) for r in v.advance(44, b)] == []
    assert [(r.kind, r.ts_ms) for r in v.advance(45, b)] == [("live", 45)]
    recs = v.cancel_all(50, "test", b, delay_ms=15)
    assert [(r.kind, r.ts_ms) for r in recs] == [("cancel_requested", 50)]
    assert v.advance(69, b) == [] and [(r.kind, r.ts_ms) for r in v.advance(70, b)] == [("cancelled", 70)]


def test_feed_latency_models_by_hand():
    from daemon.execution.models import ConstantFeed, RecordedFeed, ZeroFeed, feed_latency

    assert ZeroFeed().delay_ms(5, 123) == 0 and ConstantFeed(7).delay_ms(5, 0) == 7
    r = RecordedFeed(base_ms=3)
    # recv - ts: -1270 (the recorder's clock is 1.27 s behind), -1265, -1272 (a new minimum), -1240
    t0 = 1_723_100_000_000
    stamps = [(t0 + 1000, (t0 + 1000 - 1270) * 10**6), (t0 + 2000, (t0 + 2000 - 1265) * 10**6),
              (t0 + 3000, (t0 + 3000 - 1272) * 10**6), (t0 + 4000, (t0 + 4000 - 1240) * 10**6)]
    assert [r.delay_ms(ts, ns) for ts, ns in stamps] == [3, 3 + 5, 3, 3 + 32]
    assert r.delay_ms(5000, 0) == 3  # no receive stamp
    assert isinstance(feed_latency("recorded", 2), RecordedFeed)


def test_the_engine_lets_due_orders_arrive_before_it_applies_an_update():
    """Cause 2 through the real Engine: the engine calls ``before_book`` on a LIVE book before it
    applies the update, so the order due at t=30 queues behind 5 (not 15) and the print fills it."""
    from daemon.core.engine import Engine

    class Probe:  # the smallest strategy: hands the engine's calls to a real PaperVenue
        def __init__(self, sc):
            self.sc, self.venue, self.recs = sc, venue(entry=20), []

        def before_book(self, ts_ms):
            self.recs += self.venue.before_book(ts_ms, self.sc.book)

        def on_book(self, ev):
            self.recs += self.venue.on_book(self.sc.book)

        def on_trade(self, tr):
            self.recs += self.venue.on_trade(tr, self.sc.book)

        def on_book_lost(self, reason, ts_ms):
            pass

    eng = Engine({SYM: INS}, 50)
    sc = eng.symbols[SYM]
    probe = sc.strategy = Probe(sc)
    eng.on_event(BookUpdate(SYM, 50, True, [(100, 5)], [(101, 5)], 1, 1, 0, 0, 0))
    probe.recs += probe.venue.on_quote(Quote(SYM, 100, 1, None, 0, 10), sc.book)
    eng.on_event(BookUpdate(SYM, 50, False, [(100, 15)], [], 2, 2, 40, 0, 0))
    eng.on_event(Trade(SYM, SELL, 100, 6, "t1", 0, 50, 0))
    assert [(r.ts_ms, r.queue_ahead) for r in probe.recs if isinstance(r, OrderEvent) and r.kind == "live"] == [(30, 5.0)]
    assert fills(probe.recs) == [(50, BUY, 100, 1)]
