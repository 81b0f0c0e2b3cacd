"""The pure core: events in, actions out (sync, deterministic, no I/O, no clock).

One :class:`SymbolCore` per symbol holds the verified book(s), the merged ticker, recent klines, and
(when a strategy is attached) the feature state, calibration, quoter, risk gate, paper venue and
inventory. :class:`Engine` routes each event to its symbol and collects the resulting actions in
``engine.out`` for the shell to carry out (resubscribe, log a state change, journal a record).

Live, ``replay`` and tests all drive this same object, so a replay of a recording gives the same
ledger as the live run that recorded it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec

from daemon.core.book import Applied, BookState, OrderBook
from daemon.core.events import BookUpdate, Kline, StreamState, TickerUpdate, Timer, Trade
from daemon.core.instrument import Instrument


class Resubscribe(msgspec.Struct, gc=False):
    """Ask the shell to resubscribe ``topics`` (a fresh snapshot is needed)."""

    topics: list
    reason: str


class BookStateChanged(msgspec.Struct, gc=False):
    """A book moved between EMPTY/SYNCING/LIVE/RESYNCING (one log line per change)."""

    symbol: str
    topic: str
    old: str
    new: str
    reason: str
    ts_ms: int


_BAD = (Applied.GAP, Applied.CROSSED, Applied.SEQ_BACK)


class SymbolCore:
    """All per-symbol state. ``strategy`` (optional) receives the market events after the book
    has been updated, and ``before_book(ts_ms)`` just before a LIVE book applies an update; see
    :class:`daemon.runtime.strategy.SymbolStrategy`."""

    def __init__(self, inst: Instrument, depth: int, kline_keep: int = 300) -> None:
        self.inst = inst
        self.symbol = inst.symbol
        self.book = OrderBook(inst.symbol, depth)
        self.topic = f"orderbook.{depth}.{inst.symbol}"
        self.ticker: dict[str, Any] = {}
        self.ticker_ts_ms = 0
        self.klines: deque[Kline] = deque(maxlen=kline_keep)
        self.last_trade: Trade | None = None
        self.trades = 0
        self.strategy: Any = None
        #: receive time (ns) since which the book has been waiting for a snapshot (None = not waiting)
        self.waiting_since_ns: int | None = None

    @property
    def mid_ticks2(self) -> int | None:
        """Twice the mid in ticks (an exact int), or None if a side is empty."""
        b, a = self.book.best_bid, self.book.best_ask
        return None if b is None or a is None else b + a


class Engine:
    """Routes events to per-symbol cores; collects actions in :attr:`out`."""

    def __init__(self, instruments: dict[str, Instrument], depth: int, *, book_stale_ms: int = 30_000) -> None:
        self.instruments = instruments
        self.depth = depth
        self.book_stale_ms = book_stale_ms
        self.symbols: dict[str, SymbolCore] = {s: SymbolCore(i, depth) for s, i in instruments.items()}
        self.out: list[Any] = []
        self.now_ms = 0
        self.counts: dict[str, int] = {"book": 0, "trade": 0, "ticker": 0, "kline": 0, "timer": 0, "resync": 0}

    # -- dispatch ------------------------------------------------------------------------------

    def on_events(self, events: list) -> None:
        for ev in events:
            self.on_event(ev)

    def on_event(self, ev: Any) -> None:
        t = type(ev)
        if t is BookUpdate:
            self._on_book(ev)
        elif t is Trade:
            self._on_trade(ev)
        elif t is TickerUpdate:
            self._on_ticker(ev)
        elif t is Kline:
            self._on_kline(ev)
        elif t is Timer:
            self._on_timer(ev)
        elif t is StreamState:
            self._on_stream(ev)
        else:  # pragma: no cover
            raise TypeError(f"unknown event {t.__name__}")

    # -- handlers ------------------------------------------------------------------------------

    def _on_book(self, ev: BookUpdate) -> None:
        sc = self.symbols.get(ev.symbol)
        if sc is None or ev.depth != self.depth:
            return  # other depths (e.g. orderbook.1) are not the primary book
        self.counts["book"] += 1
        if ev.ts_ms > self.now_ms:
            self.now_ms = ev.ts_ms
        book = sc.book
        before = book.state
        if sc.strategy is not None and before == BookState.LIVE:
            # time passes on the book as it was: orders that reached the venue before this update
            # join the queue they arrived at (their post-only check too), not the updated one
            sc.strategy.before_book(ev.ts_ms)
        r = book.apply(ev)
        if r in _BAD:
            self.counts["resync"] += 1
            self.out.append(Resubscribe([sc.topic], book.reason))
        if book.state != before:
            self._changed(sc, before, ev.ts_ms)
        if sc.strategy is not None and book.state == BookState.LIVE and r != Applied.STALE:
            sc.strategy.on_book(ev)

    def _on_trade(self, ev: Trade) -> None:
        sc = self.symbols.get(ev.symbol)
        if sc is None:
            return
        self.counts["trade"] += 1
        if ev.ts_ms > self.now_ms:
            self.now_ms = ev.ts_ms
        sc.last_trade = ev
        sc.trades += 1
        if sc.strategy is not None:
            sc.strategy.on_trade(ev)

    def _on_ticker(self, ev: TickerUpdate) -> None:
        sc = self.symbols.get(ev.symbol)
        if sc is None:
            return
        self.counts["ticker"] += 1
        if ev.snapshot:
            sc.ticker = dict(ev.data)
        else:
            sc.ticker.update(ev.data)
        sc.ticker_ts_ms = ev.ts_ms
        if sc.strategy is not None:
            sc.strategy.on_ticker(sc.ticker, ev.ts_ms)

    def _on_kline(self, ev: Kline) -> None:
        sc = self.symbols.get(ev.symbol)
        if sc is None:
            return
        self.counts["kline"] += 1
        if not ev.confirm:
            return  # act only on closed candles (PROTOCOL.md §5)
        if sc.klines and sc.klines[-1].start_ms >= ev.start_ms:
            return  # duplicate / out of order (REST history overlapping the stream)
        sc.klines.append(ev)
        if sc.strategy is not None:
            sc.strategy.on_kline(ev)

    def _on_timer(self, ev: Timer) -> None:
        self.counts["timer"] += 1
        # now_ms stays market time (the max exchange ts seen): the timer's wall clock is only for
        # the receive-clock staleness check, never for anything that reaches the ledger.
        stale_ns = self.book_stale_ms * 1_000_000
        for sc in self.symbols.values():
            book = sc.book
            before = book.state
            if book.check_stale(ev.recv_ns, self.book_stale_ms):
                self.counts["resync"] += 1
                self.out.append(Resubscribe([sc.topic], book.reason))
                self._changed(sc, before, ev.ts_ms)
            # A book that waits for a snapshot (SYNCING/RESYNCING) longer than the stale limit asks
            # again: a resubscribe whose snapshot never came must not leave it stuck for good.
            if book.state == BookState.LIVE or book.state == BookState.EMPTY:
                sc.waiting_since_ns = None
            elif sc.waiting_since_ns is None:
                sc.waiting_since_ns = ev.recv_ns
            elif ev.recv_ns - sc.waiting_since_ns > stale_ns:
                sc.waiting_since_ns = ev.recv_ns
                self.counts["resync"] += 1
                self.out.append(Resubscribe([sc.topic], f"no snapshot for {self.book_stale_ms} ms ({book.reason})"))
            if sc.strategy is not None:
                sc.strategy.on_timer(ev.ts_ms)

    def _on_stream(self, ev: StreamState) -> None:
        if ev.state == "disconnected":
            for s in ev.symbols or tuple(self.symbols):
                sc = self.symbols.get(s)
                if sc is None:
                    continue
                before = sc.book.state
                sc.book.invalidate(f"disconnected: {ev.reason}")
                if sc.book.state != before:
                    self._changed(sc, before, ev.ts_ms)
        elif ev.state == "connected":
            for s in ev.symbols or tuple(self.symbols):
                sc = self.symbols.get(s)
                if sc is not None and sc.book.state in (BookState.EMPTY, BookState.RESYNCING):
                    before = sc.book.state
                    sc.book.request_sync("subscribing")
                    if sc.book.state != before:
                        self._changed(sc, before, ev.ts_ms)

    def _changed(self, sc: SymbolCore, before: BookState, ts_ms: int) -> None:
        """One log-worthy state change; a book that stops being LIVE cancels its paper orders,
        stamped with market time (``now_ms``), never the wall clock of a timer or socket event."""
        book = sc.book
        self.out.append(BookStateChanged(sc.symbol, sc.topic, before.name, book.state.name, book.reason, ts_ms))
        if sc.strategy is not None and before == BookState.LIVE:
            sc.strategy.on_book_lost(book.reason, self.now_ms)

    # -- reads ---------------------------------------------------------------------------------

    def all_live(self) -> bool:
        return all(sc.book.live for sc in self.symbols.values())

    def drain(self) -> list:
        out, self.out = self.out, []
        return out
