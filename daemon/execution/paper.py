"""Paper venue: simulated post-only limit orders filled against public trades (pure, no clock, no I/O).

An :class:`~daemon.execution.protocol.ExecutionVenue`, built from three injected models
(:mod:`daemon.execution.models`): a queue model, a latency model and a fee model. The runtime
drives one :class:`PaperVenue` per symbol with these calls, all timed by the events' exchange time
``ts_ms`` (milliseconds):

* :meth:`PaperVenue.on_quote` -- the desired two-sided :class:`~daemon.core.events.Quote` (after the risk
  gate); places, keeps, amends or replaces one order per side;
* :meth:`PaperVenue.on_book` -- after the engine applied a ``BookUpdate`` to the
  :class:`~daemon.core.book.OrderBook`; moves queue positions with size changes at our levels;
* :meth:`PaperVenue.on_trade` -- one public :class:`~daemon.core.events.Trade`; may fill us;
* :meth:`PaperVenue.advance` / :meth:`PaperVenue.drain` -- time passed (activations, cancels).

Each call returns a list of records for the ledger: :class:`~daemon.execution.protocol.OrderEvent`
(order lifecycle) and :class:`~daemon.core.events.Fill`. The venue never reads a clock, and holds
no position: the account (:class:`daemon.paper.inventory.Inventory`) books the fills.

Order life cycle and latency
----------------------------
The latency model (:class:`~daemon.execution.models.ConstantLatency`: ``entry_latency_ms`` and
``cancel_latency_ms``) times every request. A new order is *pending* until ``ts + entry_latency_ms``;
the first event at or after that time makes it *live* (it joins the queue then). A cancel takes
effect at ``ts + cancel_latency_ms``; until then
the order keeps its queue place and **can still fill**. Requote tolerance: an unchanged price and size
keeps the order; the same price with a *smaller* size is an in-place amend that keeps the queue place
(as on Bybit and most venues, a size decrease keeps priority) and takes effect after
``entry_latency_ms``; the same price with a *larger* size, or a new price, is a replace: the old order
is cancelled (still fillable until the cancel lands) and a new order placed (queue at the back).

Post-only
---------
When an order goes live it is rejected (``OrderEvent.kind == "rejected"``, reason ``post_only``) if it
would cross the book at that moment: a bid ``>=`` best ask or an ask ``<=`` best bid. It never fills as a
taker. Orders below the instrument's ``min_qty_lots`` or ``min_notional`` (quote currency), or at a
non-positive price, are rejected at placement.

Queue position (hftbacktest's queue models, nkaz001/hftbacktest ``models/queue.rs``)
------------------------------------------------------------------------------------
On arrival the order joins behind the visible size at its price (``queue_ahead = size_at(price)``;
0 when it improves the best price) in the book *as it was when the order arrived*: the engine calls
:meth:`PaperVenue.before_book` before it applies an update, so an order due at t=30 never queues
behind (or is post-only-checked against) volume of an update stamped t=40. Our paper order is *not*
in the public book, so the visible size at our level is exactly the volume ahead of us plus the
volume that arrived behind us.

* A public trade of the opposite taker side (a BUY taker can only fill our asks) at **our price**
  first consumes the queue ahead; the volume beyond it fills us, in whole lots rounded half away
  from zero like hftbacktest's prob queue models (``round(traded - ahead)``). A trade at a price
  strictly **better than ours** (through our price) fills us up to its full volume: the taker swept
  our level.
* **The book moving through us executes us.** When, after an update, the opposite best price is at
  or through our resting price (best ask <= our bid, best bid >= our ask), the remaining size fills
  at our price on that update, print or no print (hftbacktest fills on the best-price update; a
  book cannot move past a resting order without executing it). The fill's ``trade_id`` is
  ``book:{u}`` (the update's ``u``).
* Size *decreases* at our level that are not explained by trades (cancels) move us as the injected
  queue model says (:mod:`daemon.execution.models`): ``conservative`` (never advances us,
  hftbacktest ``RiskAdverseQueueModel``), ``prob_linear`` / ``prob_power`` (a cancel happened behind
  us with probability ``p = f(back) / (f(back) + f(front))``, ``f(x) = x ** power``, hftbacktest
  ``ProbQueueModel``). The venue computes ``chg = prev - new - traded`` where ``traded`` is the
  volume printed at our price since the level last *changed* (an update elsewhere in the book keeps
  it, so a print is never counted again as a cancel), hands it to the model, and resets ``traded``.
  A level that left the depth window (price beyond the worst visible level) keeps its estimate.
* Partial fills are normal; an order is ``filled`` when its remaining size reaches 0.
* One public trade's volume fills us at most once in total: the venue tracks the volume of each
  trade id already given to our orders (two of our orders, e.g. an old one pending cancel and its
  replacement, share one trade's volume; the better-priced one first). A trade id seen before is
  ignored entirely (idempotent; counted in :attr:`PaperVenue.dup_trades`).

Where it still differs from hftbacktest by design: fills are partial (hftbacktest's
``partial_fill_exchange`` aborts on an exactly-filled order, so its reference runs use
``no_partial_fill_exchange``, which fills the whole order at once; with 1-lot orders the two agree),
one print's volume is shared among our orders rather than given to each, and there is no response
leg (records are stamped when the venue acts).

Feed latency
------------
``on_quote`` / ``cancel_all`` take ``delay_ms``, the feed latency of the data the decision was
taken on (:class:`~daemon.execution.models.FeedLatency`: ``zero`` by default, ``constant``,
``recorded``): a request reaches the venue ``delay_ms`` + its latency after the data's exchange
time.

Fees
----
The fee model prices each fill (:class:`~daemon.execution.models.MakerTakerFees`: maker fee in
quote currency ``= price * qty * maker_fee``, prices/sizes as floats of the instrument grid; a
negative rate is a rebate). Funding is the account's business, not the venue's
(:meth:`daemon.paper.inventory.Inventory.on_ticker`).

Deterministic ids
-----------------
Order ids are ``{prefix}{symbol}-{n}`` with a per-symbol counter (restorable with ``next_order_n``);
``fill_id = {order_id}:{trade_id}``; order-event ids ``{order_id}:{k}`` (``k`` counts that order's
events). A replay of the same events gives the
same records, so a ledger keyed on these ids is idempotent.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from daemon.core.book import OrderBook
from daemon.core.events import BUY, SELL, Fill, Quote, Trade
from daemon.core.instrument import Instrument
from daemon.execution.models import (
    ConstantLatency,
    FeeModel,
    LatencyModel,
    MakerTakerFees,
    ProbQueue,
    QueueModel,
)
from daemon.execution.protocol import OrderEvent

_NEVER = float("inf")  # no scheduled order time

# order status
PENDING = "pending"
LIVE = "live"
DONE = "done"


class PaperOrder:
    """A simulated resting order (mutable, venue-internal). Sizes in lots, prices in ticks."""

    __slots__ = (
        "order_id",
        "side",
        "price",
        "qty",
        "filled",
        "status",
        "live_ms",
        "cancel_ms",
        "cancel_reason",
        "amend_qty",
        "amend_ms",
        "queue_ahead",
        "level_qty",
        "traded_at_level",
        "n_events",
        "replaces",
    )

    def __init__(self, order_id: str, side: int, price: int, qty: int, live_ms: int, replaces: str) -> None:
        self.order_id = order_id
        self.side = side
        self.price = price
        self.qty = qty
        self.filled = 0
        self.status = PENDING
        self.live_ms = live_ms
        self.cancel_ms: int | None = None
        self.cancel_reason = ""
        self.amend_qty: int | None = None
        self.amend_ms = 0
        self.queue_ahead = 0.0
        self.level_qty = 0
        self.traded_at_level = 0.0
        self.n_events = 0
        self.replaces = replaces

    @property
    def remaining(self) -> int:
        return self.qty - self.filled

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (
            f"PaperOrder({self.order_id} side={self.side} px={self.price} qty={self.qty} "
            f"filled={self.filled} {self.status} q_ahead={self.queue_ahead:.2f})"
        )


class PaperVenue:
    """Queue-aware paper venue for one symbol (an :class:`~daemon.execution.protocol.ExecutionVenue`).
    See the module docstring for the model.

    ``queue`` (default :class:`~daemon.execution.models.ProbQueue` with power 2), ``latency``
    (default 20 ms entry and cancel) and ``fees`` (default 2 bp maker) are the injected models.
    ``next_order_n`` restores the order counter after a restart. ``trade_memory`` bounds the trade
    ids remembered for idempotence (the most recent ones; a duplicate older than that many trades
    would not be recognised).
    """

    def __init__(
        self,
        instrument: Instrument,
        *,
        queue: QueueModel | None = None,
        latency: LatencyModel | None = None,
        fees: FeeModel | None = None,
        id_prefix: str = "",
        next_order_n: int = 1,
        trade_memory: int = 20_000,
    ) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.queue = queue if queue is not None else ProbQueue(2.0)
        self.latency = latency if latency is not None else ConstantLatency(20, 20)
        self.fees = fees if fees is not None else MakerTakerFees()
        self.id_prefix = id_prefix
        self.next_order_n = next_order_n
        self._px = instrument.price.to_float
        self._qty = instrument.qty.to_float
        #: working order per side (the latest one we want), BUY/SELL -> order
        self.working: dict[int, PaperOrder | None] = {BUY: None, SELL: None}
        #: every order not yet done (working ones and replaced ones waiting for their cancel)
        self.orders: list[PaperOrder] = []
        #: a time (ms) at or before the earliest scheduled activation / amend / cancel of an order
        #: (inf: none): :meth:`_advance` before it has nothing to do. Lowered whenever a time is
        #: scheduled, recomputed after each pass.
        self._due_ms: float = _NEVER
        #: trade id -> lots of that trade already given to our orders (bounded LRU)
        self._trade_used: OrderedDict[str, int] = OrderedDict()
        self._trade_memory = trade_memory
        self._last_reject: dict[int, tuple] = {}
        #: feed latency (ms) of the request being handled: set by on_quote / cancel_all
        self._delay = 0
        # counters (for metrics)
        self.dup_trades = 0
        self.rejected = 0
        self.fills = 0

    def working_prices(self) -> tuple[int | None, int | None]:
        """Prices (ticks) of the working bid and ask; None where a side has no order."""
        b, a = self.working[BUY], self.working[SELL]
        return (b.price if b is not None else None, a.price if a is not None else None)

    def before_book(self, ts_ms: int, book: OrderBook | None) -> list:
        """Time passed to ``ts_ms`` on ``book`` as it is *before* the update stamped ``ts_ms`` is
        applied: orders that reached the venue by then join the queue (and face the post-only
        check) of the book they arrived at, not of a later one. For the paper venue that is
        :meth:`advance` on the old book; the protocol names the moment for venues it differs for."""
        return self.advance(ts_ms, book)

    def drain(self, ts_ms: int) -> list:
        """Let every cancel requested at or before ``ts_ms`` land (``ts_ms`` + cancel latency)."""
        return self.advance(self.latency.cancel_ms(ts_ms) + self._delay, None)

    # ------------------------------------------------------------------------------------------
    # quotes
    # ------------------------------------------------------------------------------------------

    def on_quote(self, quote: Quote, book: OrderBook | None = None, delay_ms: int = 0) -> list:
        """Apply the desired quote, decided on data stamped ``quote.ts_ms``. ``delay_ms`` is the
        feed latency (the decision was taken that much later than the data's exchange time, see
        :mod:`daemon.execution.models`): requests reach the venue ``delay_ms`` + their latency
        after ``quote.ts_ms``. Returns ledger records."""
        ts = quote.ts_ms
        self._delay = delay_ms
        out: list = []
        self._advance(ts, book, out)
        self._set_side(BUY, quote.bid_px, quote.bid_qty, ts, out)
        self._set_side(SELL, quote.ask_px, quote.ask_qty, ts, out)
        if book is not None:
            self._advance(ts, book, out)  # zero latency: new orders go live now
        return out

    def cancel_all(self, ts_ms: int, reason: str = "cancel_all", book: OrderBook | None = None,
                   delay_ms: int = 0) -> list:
        """Cancel every open order (effective ``delay_ms`` + the cancel latency after ``ts_ms``).
        Returns records."""
        self._delay = delay_ms
        out: list = []
        self._advance(ts_ms, book, out)
        for side in (BUY, SELL):
            o = self.working[side]
            if o is not None:
                self._request_cancel(o, ts_ms, reason, out)
                self.working[side] = None
        if book is not None:
            self._advance(ts_ms, book, out)
        return out

    def _set_side(self, side: int, px: int | None, qty: int, ts: int, out: list) -> None:
        cur = self.working[side]
        if px is None or qty <= 0:
            if cur is not None:
                self._request_cancel(cur, ts, "unquoted", out)
                self.working[side] = None
            return
        if cur is not None and cur.price == px:
            want = cur.amend_qty if cur.amend_qty is not None else cur.qty
            if qty == want:
                return  # keep order and queue place
            if qty < want:
                # in-place size decrease keeps priority; effective after the entry latency
                if qty <= cur.filled:
                    self._request_cancel(cur, ts, "amended_below_filled", out)
                    self.working[side] = None
                    return
                if self._check_rules(side, px, qty, ts, out):
                    cur.amend_qty = qty
                    cur.amend_ms = self.latency.entry_ms(ts) + self._delay
                    if cur.amend_ms < self._due_ms:
                        self._due_ms = cur.amend_ms
                else:  # the smaller size is not allowed: do not leave the larger one working
                    self._request_cancel(cur, ts, "unquoted", out)
                    self.working[side] = None
                return
        reason = self._rule_violation(px, qty)
        if reason:
            self._reject_new(side, px, qty, ts, reason, out)
            if cur is not None:
                self._request_cancel(cur, ts, "unquoted", out)
                self.working[side] = None
            return
        replaces = ""
        if cur is not None:
            self._request_cancel(cur, ts, "replaced", out)
            replaces = cur.order_id
        oid = f"{self.id_prefix}{self.symbol}-{self.next_order_n}"
        self.next_order_n += 1
        o = PaperOrder(oid, side, px, qty, self.latency.entry_ms(ts) + self._delay, replaces)
        self.working[side] = o
        self.orders.append(o)
        if o.live_ms < self._due_ms:
            self._due_ms = o.live_ms
        self._last_reject.pop(side, None)
        self._emit(o, "placed", ts, out, replaces=replaces)

    def _rule_violation(self, px: int, qty: int) -> str:
        ins = self.instrument
        if px <= 0:
            return "bad_price"
        if qty < ins.min_qty_lots:
            return "min_qty"
        if qty > ins.max_qty_lots:
            return "max_qty"
        if ins.min_notional and self._px(px) * self._qty(qty) < ins.min_notional - 1e-9:
            return "min_notional"
        return ""

    def _check_rules(self, side: int, px: int, qty: int, ts: int, out: list) -> bool:
        reason = self._rule_violation(px, qty)
        if reason:
            self._reject_new(side, px, qty, ts, reason, out)
            return False
        return True

    def _reject_new(self, side: int, px: int, qty: int, ts: int, reason: str, out: list) -> None:
        key = (px, qty, reason)
        if self._last_reject.get(side) == key:
            return  # the same refused quote repeated: recorded once
        self._last_reject[side] = key
        self.rejected += 1
        oid = f"{self.id_prefix}{self.symbol}-{self.next_order_n}"
        self.next_order_n += 1
        out.append(OrderEvent(f"{oid}:0", self.symbol, oid, "rejected", side, px, qty, 0, ts, reason))

    def _request_cancel(self, o: PaperOrder, ts: int, reason: str, out: list) -> None:
        if o.cancel_ms is not None or o.status == DONE:
            return
        o.cancel_ms = self.latency.cancel_ms(ts) + self._delay
        o.cancel_reason = reason
        if o.cancel_ms < self._due_ms:
            self._due_ms = o.cancel_ms
        self._emit(o, "cancel_requested", ts, out, reason=reason)

    def _emit(self, o: PaperOrder, kind: str, ts: int, out: list, reason: str = "", replaces: str = "") -> None:
        out.append(
            OrderEvent(
                f"{o.order_id}:{o.n_events}",
                self.symbol,
                o.order_id,
                kind,
                o.side,
                o.price,
                o.qty,
                o.filled,
                ts,
                reason,
                replaces,
                o.queue_ahead,
            )
        )
        o.n_events += 1

    # ------------------------------------------------------------------------------------------
    # time: activations, amends, cancels
    # ------------------------------------------------------------------------------------------

    def advance(self, ts_ms: int, book: OrderBook | None = None) -> list:
        """Process pending activations/amends/cancels due at or before ``ts_ms`` (e.g. on a Timer)."""
        out: list = []
        self._advance(ts_ms, book, out)
        return out

    def _advance(self, ts: int, book: OrderBook | None, out: list) -> None:
        orders = self.orders
        if not orders or ts < self._due_ms:
            return  # nothing scheduled at or before ts
        changed = False
        for o in orders:
            if o.status == PENDING and o.live_ms <= ts:
                if o.cancel_ms is not None and o.cancel_ms <= o.live_ms:
                    # cancelled before it ever reached the book
                    o.status = DONE
                    self._emit(o, "cancelled", max(o.cancel_ms, o.live_ms), out, reason=o.cancel_reason)
                    changed = True
                    continue
                self._activate(o, book, out)
                if o.status == DONE:
                    changed = True
                    continue
            if o.amend_qty is not None and o.amend_ms <= ts and o.status != DONE:
                o.qty = o.amend_qty
                o.amend_qty = None
                self._emit(o, "amended", o.amend_ms, out)
                if o.remaining <= 0:
                    o.status = DONE
                    self._emit(o, "filled", o.amend_ms, out)
                    changed = True
            if o.cancel_ms is not None and o.cancel_ms <= ts and o.status != DONE:
                o.status = DONE
                self._emit(o, "cancelled", o.cancel_ms, out, reason=o.cancel_reason)
                changed = True
        if changed:
            self._drop_done()
        self._due_ms = self._next_due()

    def _next_due(self) -> float:
        """The earliest activation / amend / cancel time still scheduled (ms; inf: none)."""
        due = _NEVER
        for o in self.orders:
            if o.status == DONE:
                continue
            if o.status == PENDING and o.live_ms < due:
                due = o.live_ms
            if o.amend_qty is not None and o.amend_ms < due:
                due = o.amend_ms
            if o.cancel_ms is not None and o.cancel_ms < due:
                due = o.cancel_ms
        return due

    def _drop_done(self) -> None:
        self.orders = [o for o in self.orders if o.status != DONE]
        for side in (BUY, SELL):
            w = self.working[side]
            if w is not None and w.status == DONE:
                self.working[side] = None

    def _activate(self, o: PaperOrder, book: OrderBook | None, out: list) -> None:
        ts = o.live_ms
        if book is not None:
            bb, ba = book.best_bid, book.best_ask
            if (o.side == BUY and ba is not None and o.price >= ba) or (
                o.side == SELL and bb is not None and o.price <= bb
            ):
                o.status = DONE
                self.rejected += 1
                self._emit(o, "rejected", ts, out, reason="post_only")
                return
            lvl = book.size_at(o.side, o.price)
        else:
            lvl = 0
        o.status = LIVE
        o.queue_ahead = float(lvl)
        o.level_qty = lvl
        o.traded_at_level = 0.0
        self._emit(o, "live", ts, out)

    # ------------------------------------------------------------------------------------------
    # market data
    # ------------------------------------------------------------------------------------------

    def on_book(self, book: OrderBook, ts_ms: int | None = None) -> list:
        """Call after each applied ``BookUpdate``: activations due by then, then queue updates from
        size changes at our levels (O(open orders))."""
        ts = book.ts_ms if ts_ms is None else ts_ms
        out: list = []
        orders = self.orders
        if not orders:
            return out
        self._advance(ts, book, out)
        if not book.live:
            return out  # sizes of a book that is not LIVE say nothing about our queue
        bb, ba = book.best_bid, book.best_ask
        crossed = False
        for o in self.orders:
            if o.status != LIVE:
                continue
            if (ba is not None and o.side == BUY and ba <= o.price) or (bb is not None and o.side == SELL and bb >= o.price):
                # the opposite side reached our price: the book cannot have moved past a resting
                # order without executing it, print or no print (hftbacktest fills on the
                # best-price update). All that is left fills, at our price, as a maker.
                self._fill(o, o.remaining, f"book:{book.last_u}", ts, out)
                crossed = True
            else:
                self._depth(o, book)
        if crossed:
            self._drop_done()
        return out

    def _depth(self, o: PaperOrder, book: OrderBook) -> None:
        new = book.size_at(o.side, o.price)
        prev = o.level_qty
        if new == prev:
            # nothing changed at our price (tested first: it also covers a level outside the
            # window). Prints at our level since the last change stay in traded_at_level until a
            # change at this price shows them, so they are never counted again as cancels.
            return
        if new == 0 and _beyond_window(book, o.side, o.price):
            return  # level outside the visible window: keep the estimate
        o.level_qty = new
        chg = prev - new - o.traded_at_level
        o.traded_at_level = 0.0
        o.queue_ahead = self.queue.after_depth_change(o.queue_ahead, prev, new, chg)

    def on_trade(self, trade: Trade, book: OrderBook | None = None) -> list:
        """One public trade (``trade.side`` = taker side). Returns fills and order records."""
        out: list = []
        tid = trade.trade_id
        used_map = self._trade_used
        if tid in used_map:
            self.dup_trades += 1
            return out
        self._advance(trade.ts_ms, book, out)
        if not self.orders:  # nothing to fill: remember the trade id only
            used_map[tid] = 0
            if len(used_map) > self._trade_memory:
                used_map.popitem(last=False)
            return out
        used = 0
        # Our orders the taker can hit, best for the taker first (lowest ask / highest bid).
        our_side = -trade.side
        cands = [o for o in self.orders if o.status == LIVE and o.side == our_side]
        if len(cands) > 1:
            cands.sort(key=lambda o: o.price if our_side == SELL else -o.price)
        px = trade.price
        for o in cands:
            avail = trade.qty - used
            if avail <= 0:
                break
            if our_side == SELL:
                through = px > o.price
                at = px == o.price
            else:
                through = px < o.price
                at = px == o.price
            if through:
                q = min(avail, o.remaining)
            elif at:
                front = o.queue_ahead
                o.traded_at_level += avail
                if front >= avail:
                    o.queue_ahead = front - avail
                    continue
                # whole lots beyond the queue, rounded half away from zero like hftbacktest's
                # prob queue models (``(-front_q_qty).round()``), not floored
                q = min(int(math.floor(avail - front + 0.5)), o.remaining)
                o.queue_ahead = 0.0
            else:
                continue
            if q <= 0:
                continue
            used += q
            self._fill(o, q, trade.trade_id, trade.ts_ms, out)
        used_map[tid] = used
        if len(used_map) > self._trade_memory:
            used_map.popitem(last=False)
        if used and any(o.status == DONE for o in self.orders):  # (only a fill finishes an order here)
            self._drop_done()
        return out

    def _fill(self, o: PaperOrder, q: int, trade_id: str, ts: int, out: list) -> None:
        """Fill ``q`` lots of ``o`` at its price at ``ts`` (``trade_id``: the print, or
        ``book:{u}`` for an execution by the book moving through the order)."""
        o.filled += q
        self.fills += 1
        fee = self.fees.maker_fee(self._px(o.price), self._qty(q))
        out.append(Fill(f"{o.order_id}:{trade_id}", self.symbol, o.order_id, o.side, o.price, q, fee, trade_id, ts))
        if o.remaining <= 0:
            o.status = DONE
            self._emit(o, "filled", ts, out)

    # ------------------------------------------------------------------------------------------

    def open_orders(self) -> list[PaperOrder]:
        """Orders not yet done (pending, live, or waiting for their cancel)."""
        return list(self.orders)


def _beyond_window(book: OrderBook, side: int, price: int) -> bool:
    """True when ``price`` lies beyond the worst visible level on ``side`` (size unknown there)."""
    if side == BUY:
        levels = book.bid_levels()
        return not levels or price < levels[-1][0]
    levels = book.ask_levels()
    return not levels or price > levels[-1][0]
