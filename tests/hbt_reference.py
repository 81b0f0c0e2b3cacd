"""Reference check of the paper venue against hftbacktest (PyPI ``hftbacktest`` 2.4.4).

A helper module for ``tests/test_venue_vs_hftbacktest.py`` and ``bench/bench_venue_reference.py``
(the daemon never imports hftbacktest). It runs one fixed quoting policy over the bundled real
BTCUSDT recording twice:

* in hftbacktest (:func:`run_hftbacktest`): its ``NoPartialFillExchange`` with the
  ``PowerProbQueueFunc`` queue model, fed the recording converted to its event array
  (:func:`hbt_events`);
* through mmd's :class:`~daemon.execution.paper.PaperVenue` (:func:`run_paper_venue`), driven the way
  the engine and ``daemon/runtime/strategy.py`` drive it (``before_book`` before and ``on_book``
  after each applied update, ``on_trade`` per trade).

The policy: every ``STEP_MS`` of market time (a grid ``t = k * STEP_MS``; the step at ``t`` sees every
event stamped ``<= t`` and none stamped later), post a post-only 1-lot bid at the best bid and a
1-lot ask at the best ask, skipping a side whose fill would take ``|position|`` above
``MAX_POSITION_LOTS``. ``requote="always"`` cancels every open order first and posts new ones (every
order joins the back of the queue); ``requote="on_change"`` keeps an open order that is already at
the wanted price (its queue position then carries over steps, so the queue model matters).

Both engines get the same models: maker fee 2 bp, probabilistic queue ``f(x) = x ** 2``, constant
order latency ``L`` for entry and for cancel. Each run returns a :class:`Run`: the fills as
``(exchange ms, side +1/-1, price ticks, qty lots)`` in a canonical order, the best bid/ask each
policy step saw, and totals. Everything that is *not* the venue's fill logic is made to mean the
same in both harnesses (event order, time units, latency edges, the response leg); each such choice
is commented where it is made.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.bybit.messages import FrameParser
from daemon.core.book import Applied, OrderBook
from daemon.core.events import BUY, SELL, BookUpdate, Fill, Quote, Trade
from daemon.core.instrument import Instrument
from daemon.execution.models import ConstantLatency, MakerTakerFees, ProbQueue
from daemon.execution.paper import PaperVenue
from daemon.recording import bundled_recording, load_instruments, read_frames

SYMBOL = "BTCUSDT"
DEPTH = 50  # the orderbook.50 topic only (the recording also has orderbook.1: not used)
STEP_MS = 100
ORDER_LOTS = 1
MAX_POSITION_LOTS = 10
MAKER_FEE = 0.0002
QUEUE_POWER = 2.0
REQUOTE_MODES = ("always", "on_change")

MS = 1_000_000  # hftbacktest timestamps are ns; mmd's are ms (every recorded time is a whole ms)


# ------------------------------------------------------------------------------------------------
# the market: one event sequence for both engines
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Market:
    """The recording's depth-50 book updates and trades in the one order both engines process.

    ``final_bid``/``final_ask``: the best prices (ticks) of mmd's book after the last update."""

    instrument: Instrument
    events: list  # BookUpdate (depth 50) | Trade, sorted by ts_ms (stable: recording order on ties)
    final_bid: int | None
    final_ask: int | None

    @property
    def first_ms(self) -> int:
        return self.events[0].ts_ms

    @property
    def last_ms(self) -> int:
        return self.events[-1].ts_ms

    @property
    def first_step_ms(self) -> int:
        """The first policy step: the first grid time at or after the first event."""
        return -(-self.first_ms // STEP_MS) * STEP_MS


def load_market(path: str | Path | None = None) -> Market:
    """Parse a recording (default: the bundled one) into a :class:`Market`.

    Event order: hftbacktest processes the exchange side strictly by exchange timestamp, while the
    recording is in arrival order (a trade's ``T`` can be earlier than the ``ts`` of a book update
    received before it). Both engines therefore get the same list, sorted by exchange ms with the
    recording order kept among equal stamps (a stable sort) -- one order, so ties cannot differ.

    Every book update must apply cleanly to mmd's book (snapshot first, ``u`` contiguous, never
    crossed): a recording that needs a resync is not a fair comparison, so it raises."""
    path = Path(path) if path is not None else bundled_recording()
    inst = load_instruments([path], [SYMBOL])[SYMBOL]
    parser = FrameParser({SYMBOL: inst})
    book = OrderBook(SYMBOL, DEPTH)
    book.request_sync("replay")
    events: list = []
    for recv_ns, raw in read_frames([path]):
        out = parser.parse(raw, recv_ns)
        if not isinstance(out, list):
            continue  # a control frame (subscription ack, pong)
        for ev in out:
            if isinstance(ev, BookUpdate):
                if ev.depth != DEPTH:
                    continue
                res = book.apply(ev)
                if res not in (Applied.OK, Applied.SNAPSHOT):
                    raise ValueError(f"{path}: book update u={ev.u} does not apply cleanly: {res!r} ({book.reason})")
                events.append(ev)
            elif isinstance(ev, Trade):
                if book.live:  # mmd's book ignores everything before the first snapshot; so do we
                    events.append(ev)
    if not events:
        raise ValueError(f"{path}: no {DEPTH}-level book updates")
    events.sort(key=lambda e: e.ts_ms)
    return Market(inst, events, book.best_bid, book.best_ask)


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One engine's run of the policy.

    ``fills``: ``(ts_ms, side, price_ticks, qty_lots)`` sorted (a canonical order: hftbacktest
    reports fills per policy step from a hash map). ``tops``: ``(t_ms, best_bid, best_ask)`` seen by
    each policy step (None: empty side). ``fees``: the engine's own fee accounting (USDT)."""

    engine: str
    latency_ms: int
    requote: str
    fills: list[tuple[int, int, int, int]]
    tops: list[tuple[int, int | None, int | None]]
    fees: float
    extra: dict = field(default_factory=dict)

    @property
    def buys(self) -> int:
        return sum(q for _, s, _, q in self.fills if s == BUY)

    @property
    def sells(self) -> int:
        return sum(q for _, s, _, q in self.fills if s == SELL)

    @property
    def position_lots(self) -> int:
        return self.buys - self.sells

    def cash(self, inst: Instrument) -> float:
        """Quote currency paid/received by the fills (before fees)."""
        tick, lot = inst.price.step_float, inst.qty.step_float
        return -sum(s * p * tick * q * lot for _, s, p, q in self.fills)


def _wanted(bid: int | None, ask: int | None, position: int) -> tuple[int | None, int | None]:
    """The policy: bid at the best bid and ask at the best ask, each only while a fill keeps
    ``|position| <= MAX_POSITION_LOTS`` (None: no order on that side)."""
    want_bid = bid if bid is not None and position + ORDER_LOTS <= MAX_POSITION_LOTS else None
    want_ask = ask if ask is not None and position - ORDER_LOTS >= -MAX_POSITION_LOTS else None
    return want_bid, want_ask


# ------------------------------------------------------------------------------------------------
# mmd's paper venue
# ------------------------------------------------------------------------------------------------


def run_paper_venue(market: Market, latency_ms: int, requote: str = "always") -> Run:
    """The policy driven through :class:`PaperVenue` with ``ConstantLatency(L, L)``.

    The venue is driven as the runtime drives it: ``before_book`` on the book as it was, then the
    update is applied and ``on_book``; each trade goes to ``on_trade``. The policy step at grid time ``t`` runs before the
    first event stamped later than ``t`` (so after every event stamped ``<= t``): ``advance(t)``,
    then (``requote="always"``) ``cancel_all``, then ``on_quote``. The venue holds no position: the
    position is the running sum of the fills."""
    if requote not in REQUOTE_MODES:
        raise ValueError(f"requote {requote!r}: allowed {REQUOTE_MODES}")
    inst = market.instrument
    venue = PaperVenue(inst, queue=ProbQueue(QUEUE_POWER), latency=ConstantLatency(latency_ms, latency_ms),
                       fees=MakerTakerFees(MAKER_FEE))
    book = OrderBook(SYMBOL, DEPTH)
    book.request_sync("replay")
    fills: list[tuple[int, int, int, int]] = []
    tops: list[tuple[int, int | None, int | None]] = []
    fees = 0.0
    position = 0

    def take(recs: list) -> None:
        nonlocal fees, position
        for r in recs:
            if isinstance(r, Fill):
                fills.append((r.ts_ms, r.side, r.price, r.qty))
                fees += r.fee
                position += r.side * r.qty

    def step(t: int) -> None:
        bb, ba = book.best_bid, book.best_ask
        tops.append((t, bb, ba))
        take(venue.advance(t, book))
        if requote == "always":
            take(venue.cancel_all(t, "policy", book))
        want_bid, want_ask = _wanted(bb, ba, position)
        q = Quote(SYMBOL, want_bid, ORDER_LOTS if want_bid is not None else 0,
                  want_ask, ORDER_LOTS if want_ask is not None else 0, t)
        take(venue.on_quote(q, book))

    t = market.first_step_ms
    for ev in market.events:
        while ev.ts_ms > t:
            step(t)
            t += STEP_MS
        if isinstance(ev, BookUpdate):
            if book.live:  # the engine's protocol: due orders reach the book as it was
                take(venue.before_book(ev.ts_ms, book))
            book.apply(ev)
            take(venue.on_book(book))
        else:
            take(venue.on_trade(ev, book))
    fills.sort()
    return Run("mmd", latency_ms, requote, fills, tops, fees,
               {"orders": venue.next_order_n - 1, "rejected": venue.rejected})


# ------------------------------------------------------------------------------------------------
# hftbacktest
# ------------------------------------------------------------------------------------------------


def hbt_events(market: Market) -> np.ndarray:
    """The market as hftbacktest's event array (``hftbacktest.types.event_dtype``).

    One row per book level and per trade, each an exchange *and* a local event (``EXCH_EVENT |
    LOCAL_EVENT``) with ``local_ts == exch_ts``: no feed latency, so the policy at ``t`` sees the
    book as of exchange time ``t``, as mmd's harness does. Timestamps in ns (``ms * 1e6``).

    * a snapshot: one ``DEPTH_CLEAR_EVENT`` without side (clears both sides: a Bybit snapshot
      replaces the book) then a ``DEPTH_SNAPSHOT_EVENT`` row per level;
    * a delta: a ``DEPTH_EVENT`` row per level, bids then asks (Bybit's order; size 0 deletes);
    * a trade: ``TRADE_EVENT`` with ``BUY_EVENT`` for a buy taker (it can fill our asks) or
      ``SELL_EVENT`` for a sell taker.

    ``BUY_EVENT`` on a depth row means the bid side, ``SELL_EVENT`` the ask side. Prices and sizes
    are floats of the instrument's grid (``ticks * tick_size``, ``lots * qty_step``); hftbacktest
    turns them back with ``round(px / tick_size)`` / ``round(qty / lot_size)``, checked exact here."""
    from hftbacktest import (
        BUY_EVENT,
        DEPTH_CLEAR_EVENT,
        DEPTH_EVENT,
        DEPTH_SNAPSHOT_EVENT,
        EXCH_EVENT,
        LOCAL_EVENT,
        SELL_EVENT,
        TRADE_EVENT,
    )
    from hftbacktest.types import event_dtype

    both = EXCH_EVENT | LOCAL_EVENT
    ev_col: list[int] = []
    ts_col: list[int] = []
    px_col: list[int] = []  # ticks
    qty_col: list[int] = []  # lots
    for ev in market.events:
        ts = ev.ts_ms * MS
        if isinstance(ev, BookUpdate):
            if ev.snapshot:
                ev_col.append(DEPTH_CLEAR_EVENT | both)
                ts_col.append(ts)
                px_col.append(0)
                qty_col.append(0)
            kind = (DEPTH_SNAPSHOT_EVENT if ev.snapshot else DEPTH_EVENT) | both
            for levels, side in ((ev.bids, BUY_EVENT), (ev.asks, SELL_EVENT)):
                for p, q in levels:
                    ev_col.append(kind | side)
                    ts_col.append(ts)
                    px_col.append(p)
                    qty_col.append(q)
        else:
            ev_col.append(TRADE_EVENT | (BUY_EVENT if ev.side == BUY else SELL_EVENT) | both)
            ts_col.append(ts)
            px_col.append(ev.price)
            qty_col.append(ev.qty)
    tick, lot = _grid(market.instrument)
    ticks = np.asarray(px_col, dtype=np.int64)
    lots = np.asarray(qty_col, dtype=np.int64)
    data = np.zeros(len(ev_col), dtype=event_dtype)
    data["ev"] = np.asarray(ev_col, dtype=np.uint64)
    data["exch_ts"] = ts_col
    data["local_ts"] = ts_col
    data["px"] = ticks * tick
    data["qty"] = lots * lot
    # the float grid maps back exactly to the integer ticks/lots
    assert (np.rint(data["px"] / tick).astype(np.int64) == ticks).all()
    assert (np.rint(data["qty"] / lot).astype(np.int64) == lots).all()
    assert (np.diff(data["exch_ts"]) >= 0).all()
    return data


def _grid(inst: Instrument) -> tuple[float, float]:
    return inst.price.step_float, inst.qty.step_float


def hbt_latency_ns(latency_ms: int) -> int:
    """hftbacktest's entry (and cancel) latency for mmd's ``L`` ms.

    Same-timestamp order: hftbacktest processes a request that reaches the exchange at the same
    timestamp as market data *after* that data (its event set breaks ties ExchData before
    ExchOrder). mmd's venue documents the other convention: a request due at ``t + L`` is in effect
    for the first event at or after ``t + L`` (a cancel due at ``T`` stops a trade stamped ``T``
    from filling; an order due at ``T`` may be filled by it). Market times are whole ms, so 1 ns
    less than ``L`` puts the request before every event stamped ``t + L`` and after every event
    stamped earlier: mmd's convention, no other change. ``L = 0`` stays 0: the policy step at ``t``
    runs after the events stamped ``t`` in both harnesses, and the order takes effect before the
    next event (a negative latency would mean "rejected" in hftbacktest)."""
    return max(latency_ms * MS - 1, 0)


_POLICY = None


def _hbt_policy():
    """The policy as a numba function (compiled once per process: the dispatcher caches it)."""
    global _POLICY
    if _POLICY is not None:
        return _POLICY
    from hftbacktest import BUY as HBT_BUY
    from hftbacktest import EXPIRED, FILLED, GTX, LIMIT, NEW, NONE
    from numba import njit

    invalid_min = np.iinfo(np.int64).min  # hftbacktest's INVALID_MIN / INVALID_MAX: an empty side
    invalid_max = np.iinfo(np.int64).max

    @njit
    def policy(hbt, first_elapse_ns, step_ns, end_ns, qty_lots, max_pos, keep, fills, tops, counts):
        depth = hbt.depth(0)
        tick = depth.tick_size
        lot = depth.lot_size
        nf = 0
        nt = 0
        oid = 0
        expired = 0
        dur = first_elapse_ns
        while True:
            r = hbt.elapse(dur)
            dur = step_ns
            if r != 0 and r != 1:
                return r  # 0: elapsed, 1: end of data, else an error
            # every fill since the last step: the response leg is instant (see run_hftbacktest), so
            # a filled order is in the local order dict by now; clear_inactive_orders then drops it
            values = hbt.orders(0).values()
            while values.has_next():
                o = values.get()
                if o.status == FILLED:
                    if nf == fills.shape[0]:
                        return -1  # (numba does not check bounds)
                    fills[nf, 0] = o.exch_timestamp
                    fills[nf, 1] = 1 if o.side == HBT_BUY else -1
                    fills[nf, 2] = o.price_tick
                    fills[nf, 3] = round(o.exec_qty / lot)
                    nf += 1
                elif o.status == EXPIRED:
                    expired += 1  # a GTX order that would have crossed on arrival (post-only reject)
            hbt.clear_inactive_orders(0)
            if r != 0:
                break
            t = hbt.current_timestamp
            if t >= end_ns:
                continue  # no event after t: mmd's harness has no step here (nothing could fill)
            bb = depth.best_bid_tick
            ba = depth.best_ask_tick
            if nt == tops.shape[0]:
                return -1
            tops[nt, 0] = t
            tops[nt, 1] = bb
            tops[nt, 2] = ba
            nt += 1
            position = round(hbt.position(0) / lot)
            want_bid = bb != invalid_min and position + qty_lots <= max_pos
            want_ask = ba != invalid_max and position - qty_lots >= -max_pos
            have_bid = False
            have_ask = False
            values = hbt.orders(0).values()
            while values.has_next():
                o = values.get()
                if o.status != NEW or o.req != NONE:
                    continue  # (none at a step: every request lands within L <= STEP_MS)
                if o.side == HBT_BUY:
                    if keep and want_bid and o.price_tick == bb and not have_bid:
                        have_bid = True
                        continue
                else:
                    if keep and want_ask and o.price_tick == ba and not have_ask:
                        have_ask = True
                        continue
                hbt.cancel(0, o.order_id, False)
            # cancels first, then the new orders: the same order of requests as mmd's harness
            if want_bid and not have_bid:
                oid += 1
                hbt.submit_buy_order(0, oid, bb * tick, qty_lots * lot, GTX, LIMIT, False)
            if want_ask and not have_ask:
                oid += 1
                hbt.submit_sell_order(0, oid, ba * tick, qty_lots * lot, GTX, LIMIT, False)
        counts[0] = nf
        counts[1] = nt
        counts[2] = oid
        counts[3] = expired
        counts[4] = depth.best_bid_tick
        counts[5] = depth.best_ask_tick
        return 0

    _POLICY = policy
    return policy


def run_hftbacktest(market: Market, latency_ms: int, requote: str = "always", data: np.ndarray | None = None) -> Run:
    """The policy in hftbacktest: ``HashMapMarketDepthBacktest`` over :func:`hbt_events`, linear
    asset, ``no_partial_fill_exchange`` (its ``partial_fill_exchange`` aborts on an order filled
    exactly: nkaz001/hftbacktest#301, #312; our orders are 1 lot, so a fill is always whole anyway),
    ``power_prob_queue_model(2)``, ``trading_value_fee_model(maker 2 bp)``, and
    ``constant_order_latency(entry, response)``:

    * entry = :func:`hbt_latency_ns` ``(L)``: hftbacktest applies the entry latency to every request,
      new orders and cancels alike, so an order or cancel sent at ``t`` takes effect at the exchange
      at ``t + L`` (ordered before the market data stamped ``t + L``: see there);
    * response = 0: the response leg only carries the exchange's answers (acks, fills, expiries)
      back to the local side; the exchange never waits for it, so it changes nothing the exchange
      sees. At 0 the policy knows at ``t`` every fill and ack that happened at the exchange by
      ``t``, as mmd's harness does (the venue answers synchronously); the position check and
      "cancel the open orders" then act on the same state in both harnesses.

    ``data`` is :func:`hbt_events` of ``market`` (pass it to convert once for several runs)."""
    if requote not in REQUOTE_MODES:
        raise ValueError(f"requote {requote!r}: allowed {REQUOTE_MODES}")
    if not 0 <= latency_ms <= STEP_MS:
        # hftbacktest cannot cancel an order whose request is still in flight; mmd's venue can.
        raise ValueError(f"latency {latency_ms} ms: the policy needs 0 <= L <= {STEP_MS} ms")
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

    if data is None:
        data = hbt_events(market)
    tick, lot = _grid(market.instrument)
    lat = hbt_latency_ns(latency_ms)
    asset = (
        BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .constant_order_latency(lat, 0)
        .power_prob_queue_model(QUEUE_POWER)
        .no_partial_fill_exchange()
        .trading_value_fee_model(MAKER_FEE, MAKER_FEE)  # (maker, taker): a GTX order never takes
        .tick_size(tick)
        .lot_size(lot)
    )
    hbt = HashMapMarketDepthBacktest([asset])
    n_steps = (market.last_ms - market.first_step_ms) // STEP_MS + 2
    fills = np.zeros((2 * n_steps, 4), dtype=np.int64)  # each step places at most 2 orders, each fills once
    tops = np.zeros((n_steps, 3), dtype=np.int64)
    counts = np.zeros(6, dtype=np.int64)
    first_elapse = (market.first_step_ms - market.first_ms) * MS
    rc = _hbt_policy()(hbt, first_elapse, STEP_MS * MS, market.last_ms * MS, ORDER_LOTS, MAX_POSITION_LOTS,
                  requote == "on_change", fills, tops, counts)
    sv = hbt.state_values(0)  # (a view into the backtest: read before close)
    fees = float(sv.fee)
    num_trades, position_btc = int(sv.num_trades), float(sv.position)
    hbt.close()
    if rc != 0:
        raise RuntimeError(f"hftbacktest policy run failed ({rc}: -1 output full, else an elapse error)")
    nf, nt = int(counts[0]), int(counts[1])
    imin, imax = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    extra = {"orders": int(counts[2]), "rejected": int(counts[3]), "num_trades": num_trades,
             "position_btc": position_btc, "final_bid": None if counts[4] == imin else int(counts[4]),
             "final_ask": None if counts[5] == imax else int(counts[5])}
    out_fills = []
    for ts_ns, side, px, qty in fills[:nf].tolist():
        assert ts_ns % MS == 0, ts_ns  # fills happen on market events: whole ms
        out_fills.append((ts_ns // MS, side, px, qty))
    out_fills.sort()
    out_tops = [(t // MS, None if b == imin else b, None if a == imax else a) for t, b, a in tops[:nt].tolist()]
    return Run("hftbacktest", latency_ms, requote, out_fills, out_tops, fees, extra)


def first_differences(a: list, b: list, n: int = 5) -> list[tuple]:
    """Up to ``n`` items in only one of two sorted lists, as ``(which, item)`` (``which`` 'a' or 'b'),
    earliest first: where two fill lists part."""
    ca, cb = Counter(a), Counter(b)
    only = [("a", x) for x in (ca - cb).elements()] + [("b", x) for x in (cb - ca).elements()]
    only.sort(key=lambda w: w[1])
    return only[:n]


__all__ = [
    "MAKER_FEE", "MAX_POSITION_LOTS", "Market", "REQUOTE_MODES", "Run", "STEP_MS", "first_differences",
    "hbt_events", "hbt_latency_ns", "load_market", "run_hftbacktest", "run_paper_venue",
]

