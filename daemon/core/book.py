"""The verified local order book of one ``orderbook.{depth}.{symbol}`` topic (pure, no I/O).

Prices are ``int`` ticks and sizes ``int`` lots (see :mod:`daemon.core.instrument`). Each side is a
``dict`` price -> size plus a sorted price list (bids stored negated so both lists ascend and the
best level is index 0). A delta costs O(changed levels) dict work plus a ``bisect`` insert/delete
per added/removed level (a C ``memmove`` over at most ``depth`` ints).

State machine (``BookState``)::

    EMPTY --request_sync()--> SYNCING --snapshot--> LIVE --gap/crossed/stale/seq back--> RESYNCING
      ^                                                                                      |
      +-------------------------------- snapshot (or u == 1) --------------------------------+

Bybit rules implemented (../shared/bybit-v5/PROTOCOL.md §2.3-2.4):

* a ``snapshot`` (or any message with ``u == 1``, the service-restart reset) replaces the book;
* in a delta, size ``0`` deletes the level (absent level: ignored), any other size replaces it;
* a delta must have ``u == last_u + 1``; ``u <= last_u`` is a stale duplicate and is dropped;
  ``u > last_u + 1`` is a gap -> RESYNCING; a ``seq`` that goes backwards -> RESYNCING;
* the depth window: the stream keeps exactly ``depth`` levels a side; we trim to ``depth`` anyway;
* a crossed or locked book (best bid >= best ask) after an update -> RESYNCING;
* level 1 sends snapshots only and repeats the same ``u`` when the top does not change.

Nothing downstream may quote unless :attr:`OrderBook.live` is true.

Two implementations, one behaviour: :class:`PyOrderBook` below is the reference, and
``daemon/core/_fastbook.c`` is the same book in C (same API, state machine, reasons and results;
``tests/test_fastbook.py`` drives both with the same streams). :data:`OrderBook` is the C one when
the extension is built and ``MMD_PURE_PYTHON`` is not set, else the reference; :data:`FAST_PATH`
says which.
"""

from __future__ import annotations

from bisect import bisect_left
from enum import IntEnum

from daemon.core.events import BookUpdate
from daemon.native import load_native


class BookState(IntEnum):
    EMPTY = 0
    SYNCING = 1
    LIVE = 2
    RESYNCING = 3


class Applied(IntEnum):
    """Outcome of :meth:`OrderBook.apply`."""

    OK = 0  # applied, book LIVE
    SNAPSHOT = 1  # snapshot (or u == 1 reset) applied, book LIVE
    STALE = 2  # u <= last u: duplicate/old delta dropped, book unchanged
    IGNORED = 3  # delta while not synced: dropped, waiting for a snapshot
    GAP = 4  # u jumped: book -> RESYNCING
    CROSSED = 5  # best bid >= best ask after the update: book -> RESYNCING
    SEQ_BACK = 6  # seq went backwards: book -> RESYNCING


class PyOrderBook:
    """Order book for one topic (pure-Python reference). See module docstring for the rules."""

    __slots__ = (
        "symbol",
        "depth",
        "state",
        "bids",
        "asks",
        "_bid_keys",
        "_ask_keys",
        "last_u",
        "last_seq",
        "ts_ms",
        "cts_ms",
        "recv_ns",
        "reason",
        "updates",
    )

    def __init__(self, symbol: str, depth: int) -> None:
        self.symbol = symbol
        self.depth = depth
        self.state = BookState.EMPTY
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bid_keys: list[int] = []  # negated bid prices, ascending (best first)
        self._ask_keys: list[int] = []  # ask prices, ascending (best first)
        self.last_u = 0
        self.last_seq = 0
        self.ts_ms = 0
        self.cts_ms = 0
        self.recv_ns = 0
        self.reason = "empty"
        self.updates = 0

    # -- state ---------------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self.state == BookState.LIVE

    def request_sync(self, reason: str = "subscribing") -> None:
        """The shell has (re)subscribed: wait for the next snapshot."""
        self.state = BookState.SYNCING if self.state == BookState.EMPTY else BookState.RESYNCING
        self.reason = reason

    def invalidate(self, reason: str) -> None:
        """Mark the book unusable (e.g. disconnected, stale) until the next snapshot."""
        if self.state != BookState.EMPTY:
            self.state = BookState.RESYNCING
        self.reason = reason

    def check_stale(self, now_ns: int, max_age_ms: int) -> bool:
        """Invalidate a LIVE book whose last update was *received* more than ``max_age_ms`` ago.
        ``now_ns`` is the shell's receive clock (the same clock as ``BookUpdate.recv_ns``), so a
        recording's old exchange timestamps never look stale. Returns True when it invalidated."""
        if self.state == BookState.LIVE and now_ns - self.recv_ns > max_age_ms * 1_000_000:
            self.invalidate(f"stale: no update for {(now_ns - self.recv_ns) // 1_000_000} ms")
            return True
        return False

    # -- reads ---------------------------------------------------------------------------------

    @property
    def best_bid(self) -> int | None:
        k = self._bid_keys
        return -k[0] if k else None

    @property
    def best_ask(self) -> int | None:
        k = self._ask_keys
        return k[0] if k else None

    def best_bid_size(self) -> int:
        k = self._bid_keys
        return self.bids[-k[0]] if k else 0

    def best_ask_size(self) -> int:
        k = self._ask_keys
        return self.asks[k[0]] if k else 0

    def bid_levels(self, n: int | None = None) -> list[tuple[int, int]]:
        """Top ``n`` bid levels, best first, as ``(price_ticks, size_lots)``."""
        keys = self._bid_keys if n is None else self._bid_keys[:n]
        b = self.bids
        return [(-k, b[-k]) for k in keys]

    def ask_levels(self, n: int | None = None) -> list[tuple[int, int]]:
        """Top ``n`` ask levels, best first, as ``(price_ticks, size_lots)``."""
        keys = self._ask_keys if n is None else self._ask_keys[:n]
        a = self.asks
        return [(k, a[k]) for k in keys]

    def top_depth(self, k: int) -> tuple[int, int]:
        """Sizes (lots) summed over the top ``k`` levels of each side: ``(bid_lots, ask_lots)``.
        ``k`` is a level count: a negative one is a ``ValueError`` (as in the C book)."""
        if k < 0:
            raise ValueError("k must be >= 0 levels")
        b = self.bids
        a = self.asks
        vb = 0
        for p in self._bid_keys[:k]:
            vb += b[-p]
        va = 0
        for p in self._ask_keys[:k]:
            va += a[p]
        return vb, va

    def top_of_book(self, k: int) -> tuple:
        """``(best_bid, best_ask, bid_size, ask_size, bid_depth_k, ask_depth_k)`` in one call: best
        prices in ticks (None for an empty side), sizes at the best level and summed over the top
        ``k`` levels in lots (0 for an empty side)."""
        bk = self._bid_keys
        ak = self._ask_keys
        vb, va = self.top_depth(k)
        return (-bk[0] if bk else None, ak[0] if ak else None, self.bids[-bk[0]] if bk else 0,
                self.asks[ak[0]] if ak else 0, vb, va)

    def bid_prices(self) -> list[int]:
        """All bid prices, best first (a new list)."""
        return [-k for k in self._bid_keys]

    def ask_prices(self) -> list[int]:
        """All ask prices, best first (the internal list: do not mutate)."""
        return self._ask_keys

    def size_at(self, side: int, price: int) -> int:
        """Visible size in lots at ``price`` on ``side`` (+1 bids, -1 asks); 0 if no level."""
        return (self.bids if side > 0 else self.asks).get(price, 0)

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)

    # -- writes --------------------------------------------------------------------------------

    def apply(self, ev: BookUpdate) -> Applied:
        """Apply one book frame and return what happened. Never raises on bad sequencing."""
        if ev.snapshot or ev.u == 1:
            self._load(ev)
            return self._after(ev, Applied.SNAPSHOT)
        st = self.state
        if st != BookState.LIVE:
            return Applied.IGNORED
        u = ev.u
        last = self.last_u
        if u <= last:
            return Applied.STALE
        if u != last + 1:
            self.state = BookState.RESYNCING
            self.reason = f"gap: u {last} -> {u}"
            return Applied.GAP
        if ev.seq and ev.seq < self.last_seq:
            self.state = BookState.RESYNCING
            self.reason = f"seq went backwards: {self.last_seq} -> {ev.seq}"
            return Applied.SEQ_BACK
        _apply_side(self.bids, self._bid_keys, ev.bids, -1)
        _apply_side(self.asks, self._ask_keys, ev.asks, 1)
        depth = self.depth
        if len(self._bid_keys) > depth:
            self._trim(self.bids, self._bid_keys, -1)
        if len(self._ask_keys) > depth:
            self._trim(self.asks, self._ask_keys, 1)
        return self._after(ev, Applied.OK)

    def _after(self, ev: BookUpdate, ok: Applied) -> Applied:
        self.last_u = ev.u
        if ev.seq:
            self.last_seq = ev.seq
        self.ts_ms = ev.ts_ms
        self.cts_ms = ev.cts_ms
        self.recv_ns = ev.recv_ns
        self.updates += 1
        bk = self._bid_keys
        ak = self._ask_keys
        if bk and ak and -bk[0] >= ak[0]:
            self.state = BookState.RESYNCING
            self.reason = f"crossed: bid {-bk[0]} >= ask {ak[0]}"
            return Applied.CROSSED
        self.state = BookState.LIVE
        self.reason = "live"
        return ok

    def _load(self, ev: BookUpdate) -> None:
        bids = {p: s for p, s in ev.bids if s > 0}
        asks = {p: s for p, s in ev.asks if s > 0}
        bk = [-p for p in bids]
        bk.sort()
        ak = list(asks)
        ak.sort()
        if len(bk) > self.depth:
            self._trim(bids, bk, -1)
        if len(ak) > self.depth:
            self._trim(asks, ak, 1)
        self.bids, self.asks, self._bid_keys, self._ask_keys = bids, asks, bk, ak

    def _trim(self, levels: dict[int, int], keys: list[int], sign: int) -> None:
        """Drop the levels beyond ``depth`` (the worst ones, at the end of ``keys``)."""
        depth = self.depth
        for k in keys[depth:]:
            del levels[k * sign]
        del keys[depth:]


#: a delta with more changes than this is applied to the dict and the keys rebuilt by one sort
#: (O(n log n)) instead of one sorted insert each (O(n) each: quadratic for a hostile 250k-level delta)
BATCH_CHANGES = 64


def _apply_side(levels: dict[int, int], keys: list[int], changes: list, sign: int) -> None:
    """Upsert/delete ``(price, size)`` changes into one side. ``sign`` is -1 for bids (keys are
    negated prices) and +1 for asks. A price's last change in the delta decides it either way."""
    if len(changes) > BATCH_CHANGES:
        for p, s in changes:
            if s:
                levels[p] = s
            else:
                levels.pop(p, None)
        keys[:] = sorted(p * sign for p in levels)
        return
    for p, s in changes:
        if s:
            if p not in levels:
                k = p * sign
                keys.insert(bisect_left(keys, k), k)
            levels[p] = s
        elif p in levels:
            del levels[p]
            k = p * sign
            del keys[bisect_left(keys, k)]


fastbook = load_native("daemon.core._fastbook")
if fastbook is not None:
    fastbook.init_enums(list(BookState), list(Applied))
#: True when :data:`OrderBook` (and the frame parser's orderbook scanner) run in C
FAST_PATH: bool = fastbook is not None
#: the order book class in use: the C book when available, else :class:`PyOrderBook`
OrderBook = fastbook.OrderBook if fastbook is not None else PyOrderBook
