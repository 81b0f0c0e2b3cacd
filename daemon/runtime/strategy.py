"""One symbol's strategy: features -> adverse classifier -> quoter -> risk gate -> execution venue,
with the fills booked by the account (pure apart from the ledger's queue put; no clock).

The :class:`~daemon.core.engine.Engine` owns books and sequencing; it hands each market event,
after the book was updated, to the symbol's :class:`SymbolStrategy` (built and wired by
:class:`daemon.runtime.runtime.Runtime`, the composition root):

* ``on_book`` (primary depth, book LIVE): features, venue queue updates, mid for markouts and
  marks, then one quote decision (the tick: features -> ``p_adverse`` -> calibration -> quoter ->
  :func:`~daemon.models.quoting.finalize` -> risk gate -> venue);
* ``on_trade``: features, calibration, venue fills -> account (inventory) -> ledger;
* ``on_ticker``: funding rate / next funding time -> the account's funding settlement;
* ``on_kline``: Garman-Klass;
* ``on_book_lost``: cancel all paper orders (nothing quotes outside LIVE).

Determinism: every record is a function of the market events and their exchange timestamps, so a
replay of the frames a live run recorded rebuilds the same journal. (Shell-only happenings that are
not in a recording -- a socket drop, a silent-book timeout, a manual ``mmd resume`` -- produce
records only in the live journal.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon import wiring
from daemon.core.engine import SymbolCore
from daemon.core.events import BookUpdate, Kline, Quote, Trade
from daemon.execution.models import FeedLatency
from daemon.execution.protocol import ExecutionVenue
from daemon.features.state import FeatureState
from daemon.logging import get_logger
from daemon.models.calibration import Calibrator
from daemon.paper.inventory import Mark, MarkSampler
from daemon.paper.ledger import QuoteAudit

if TYPE_CHECKING:
    from daemon.runtime.runtime import Runtime

log = get_logger("mmd.strategy")


class SymbolStrategy:
    """Everything that decides and books for one symbol."""

    def __init__(self, rt: "Runtime", sc: SymbolCore, venue: ExecutionVenue, feed: FeedLatency) -> None:
        s = rt.settings
        inst = sc.inst
        self.rt = rt
        self.sc = sc
        self.symbol = sc.symbol
        self.tick = inst.price.step_float
        self.lot = inst.qty.step_float
        self.features = FeatureState(inst, wiring.feature_params(s))
        self.calib = Calibrator(wiring.calibration_params(s), self.tick)
        quoter = rt.make_quoter()
        self.spread_features = None
        if s.quoter.spread_model == "nn":
            # A-S reservation price with the neural network's total spread (docs/models.md).
            from daemon.models.spread_nn import NNSpreadAS, SpreadFeatures, SpreadModel

            self.spread_features = SpreadFeatures()
            quoter = NNSpreadAS(quoter, SpreadModel.load(s.quoter.spread_model_path), self.spread_features)
        # No [adverse] threshold configured: the gate uses the model file's own threshold.
        self.pipe = wiring.quoting_pipeline(s, inst, quoter, rt.adverse.threshold if rt.adverse is not None else None)
        self.venue = venue
        #: the feed-latency model and the latency (ms) of the latest book event decided on
        self.feed = feed
        self.delay_ms = 0
        self.marks = MarkSampler(s.ledger.mark_interval_ms)
        self.max_position_lots = max(1, int(s.risk.max_position / inst.qty.step_float + 1e-9))
        self.min_requote_ms = s.quoter.min_requote_ms
        self.audit_every = s.ops.audit_every_n
        self.last_quote: Quote | None = None
        self.last_quote_ms = -(1 << 62)
        self.p_bid = 0.0
        self.p_ask = 0.0
        self.decisions = 0
        self.quotes_sent = 0
        self.fills = 0
        self.fills_buy = 0  # of which our side was BUY (metrics split fills by side)
        self.volume_lots = 0
        self.mid = float("nan")
        self.pulled = ""

    # -- market events ---------------------------------------------------------------------------

    def before_book(self, ts_ms: int) -> None:
        """The book (still as it was) is about to apply an update stamped ``ts_ms``: the venue
        lets orders due by then reach it first."""
        recs = self.venue.before_book(ts_ms, self.sc.book)
        if recs:
            self.rt.put(recs)

    def on_book(self, ev: BookUpdate) -> None:
        rt = self.rt
        book = self.sc.book
        self.features.on_book(book, ev)
        if self.spread_features is not None:
            self.spread_features.on_book(book)
        rt.pos += 1
        put = rt.put
        recs = self.venue.on_book(book)
        if recs:
            put(recs)
        bb, ba = book.best_bid, book.best_ask
        if bb is None or ba is None:
            return
        ts = ev.ts_ms
        self.delay_ms = self.feed.delay_ms(ts, ev.recv_ns)
        mid = (bb + ba) * 0.5 * self.tick
        self.mid = mid
        recs = rt.inventory.on_mid(self.symbol, ts, mid)
        if recs:
            put(recs)
        self._decide(ts)
        if self.marks.due(self.symbol, ts):
            rt.on_mark(self.symbol, mid)
            bid_px, ask_px = self.venue.working_prices()
            put([Mark(f"mark:{self.symbol}:{ts}", self.symbol, ts, mid, bid_px, ask_px,
                      rt.inventory.position_lots(self.symbol), rt.pos)])

    def on_trade(self, tr: Trade) -> None:
        rt = self.rt
        rt.pos += 1
        self.features.on_trade(tr)
        if self.spread_features is not None:
            self.spread_features.on_trade(tr)
        mid = self.mid
        if mid == mid:
            self.calib.on_trade(tr.ts_ms, tr.price * self.tick, tr.qty * self.lot, mid, tr.side)
        book = self.sc.book
        recs = self.venue.on_trade(tr, book if book.live else None)
        if recs:
            rt.put(recs)

    def on_ticker(self, ticker: dict, ts_ms: int) -> None:
        self.rt.pos += 1
        self.rt.put(self.rt.inventory.on_ticker(self.symbol, ticker, ts_ms))

    def on_kline(self, k: Kline) -> None:
        self.rt.pos += 1
        self.features.on_kline(k)

    def on_timer(self, ts_ms: int) -> None:
        """Wall-clock timer (live only): nothing that reaches the journal happens here."""

    def on_book_lost(self, reason: str, ts_ms: int) -> None:
        self.features.reset_book()
        self.cancel_all(ts_ms, f"book not LIVE: {reason}")

    def cancel_all(self, ts_ms: int, reason: str) -> None:
        if self.rt.stopped:
            return
        self.rt.put(self.venue.cancel_all(ts_ms, reason, None, self.delay_ms))
        self.last_quote = None

    # -- the tick --------------------------------------------------------------------------------

    def _decide(self, ts: int) -> None:
        rt = self.rt
        book = self.sc.book
        f = self.features
        inv = rt.inventory
        sym = self.symbol
        gate = rt.gate
        venue = self.venue
        total_pnl, drawdown, daily_pnl = inv.pnl_path()
        notional = inv.notional(sym)
        position_lots = inv.position_lots(sym)
        d = gate.check_symbol(
            ts, sym, book.live, ts - book.ts_ms, inv.position_base(sym), notional,
            total_pnl, drawdown, daily_pnl, rt.errors_total(), rt.ledger_problem(),
            notional if len(rt.strategies) == 1 else inv.total_notional(),
        )
        if d.events:
            rt.on_risk_events(d.events)
        if d.cancel and sym in d.cancel:
            if d.halted:  # a hard trip stops every symbol now, not each at its own next tick
                for other in rt.strategies.values():
                    other.cancel_all(ts, "risk gate")
            else:
                self.cancel_all(ts, "risk gate")
        model = rt.adverse
        if model is not None:
            self.p_bid, self.p_ask = model.predict(f)
        calib = self.calib
        calib.set_sigma(f.sigma_price_per_s())
        cal = calib.on_timer(ts)
        q = self.pipe.step(
            ts_ms=ts, best_bid_ticks=book.best_bid, best_ask_ticks=book.best_ask,
            position_lots=position_lots, calibration=cal, ofi=f.ofi, imbalance=f.imbalance_top,
            vpin=f.vpin, p_adverse_bid=self.p_bid, p_adverse_ask=self.p_ask,
        )
        self.decisions += 1
        q = gate.filter_quote(q, d, position_lots, self.max_position_lots)
        self.pulled = q.reason
        if self.audit_every and self.decisions % self.audit_every == 0:
            rec = self.pipe.audit(f.as_dict())
            if rec is not None:
                log.info("quote_audit", **rec)  # rec carries "symbol" (passing it twice is a TypeError)
                rt.put([QuoteAudit(f"audit:{sym}:{ts}:{self.decisions}", sym, ts, rec)])
        last = self.last_quote
        if last is not None and last.bid_px == q.bid_px and last.ask_px == q.ask_px and last.bid_qty == q.bid_qty \
                and last.ask_qty == q.ask_qty:
            return  # nothing to change: the venue keeps the orders and their queue places
        if self.min_requote_ms and last is not None and ts - self.last_quote_ms < self.min_requote_ms:
            return
        self.last_quote = q
        self.last_quote_ms = ts
        self.quotes_sent += 1
        rt.quoted = True
        rt.put(venue.on_quote(q, book, self.delay_ms))


