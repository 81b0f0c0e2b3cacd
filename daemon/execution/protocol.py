"""The execution-venue seam: what the strategy runtime needs from anything that executes quotes.

The runtime (``daemon/runtime/``) talks to one :class:`ExecutionVenue` per symbol. Market events go
in (the venue may need them: a simulated venue matches against them, a real one ignores them or
uses them for its own bookkeeping); the desired quote goes in; order life-cycle records
(:class:`OrderEvent`) and fills (:class:`~daemon.core.events.Fill`) come out, as lists returned by
each call, in the order they happened. Every time is exchange time in ms carried by the call; a
venue never reads a clock.

The paper venue (:class:`daemon.execution.paper.PaperVenue`) implements it by simulation. A live
Bybit venue would implement the same calls by sending orders on the private websocket and turning
its execution/order streams into the same records: ``on_quote``/``cancel_all`` send and return the
``placed``/``cancel_requested`` records at once, and the confirmations (``live``, ``filled``,
``cancelled``, fills) come back from ``advance`` (driven by the private stream's events). Nothing
in the runtime assumes the venue is simulated.

What a venue does *not* own: position, cash, fees paid, PnL and funding -- the account
(:class:`daemon.paper.inventory.Inventory`) books fills and is the one owner of position.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from daemon.core.book import OrderBook
from daemon.core.events import Quote, Trade


class OrderEvent(msgspec.Struct, gc=False):
    """One order life-cycle record for the ledger.

    ``kind``: ``placed`` (sent; live after the entry latency), ``live`` (joined the queue;
    ``queue_ahead`` in lots), ``amended`` (size decreased in place), ``cancel_requested``,
    ``cancelled`` (cancel took effect), ``filled`` (fully filled), ``rejected`` (``reason``:
    ``post_only``, ``min_qty``, ``max_qty``, ``min_notional``, ``bad_price``). ``replaces`` names the
    order a ``placed`` order replaces (and ``reason == "replaced"`` on the old order's cancel).
    ``price`` ticks, ``qty``/``filled`` lots, ``ts_ms`` exchange ms (the effective time).
    """

    event_id: str
    symbol: str
    order_id: str
    kind: str
    side: int
    price: int
    qty: int
    filled: int
    ts_ms: int
    reason: str = ""
    replaces: str = ""
    queue_ahead: float = 0.0


class ExecutionVenue(Protocol):
    """One symbol's execution. Every method returns the records it produced (``OrderEvent``,
    ``Fill``), possibly none; ``book`` is the symbol's local book after the event (None: unknown or
    not LIVE)."""

    symbol: str
    #: the next order number (ids are ``{prefix}{symbol}-{n}``; restored after a restart)
    next_order_n: int

    def on_quote(self, quote: Quote, book: OrderBook | None = None, delay_ms: int = 0) -> list:
        """Make the working orders match ``quote`` (a side with no price or no size: none),
        decided on data stamped ``quote.ts_ms`` and sent ``delay_ms`` (the feed latency) later."""
        ...

    def cancel_all(self, ts_ms: int, reason: str = "cancel_all", book: OrderBook | None = None,
                   delay_ms: int = 0) -> list:
        """Cancel every working order (sent ``delay_ms`` after ``ts_ms``)."""
        ...

    def before_book(self, ts_ms: int, book: OrderBook | None) -> list:
        """Market data in: ``book`` is about to apply an update stamped ``ts_ms`` (it is still the
        book as it was): whatever became due by then happens against this book."""
        ...

    def on_book(self, book: OrderBook, ts_ms: int | None = None) -> list:
        """Market data in: the book after an applied update."""
        ...

    def on_trade(self, trade: Trade, book: OrderBook | None = None) -> list:
        """Market data in: one public trade."""
        ...

    def advance(self, ts_ms: int, book: OrderBook | None = None) -> list:
        """Time passed to ``ts_ms``: whatever became due (activations, amends, cancels)."""
        ...

    def drain(self, ts_ms: int) -> list:
        """Let every cancel requested at or before ``ts_ms`` take effect (shutdown): afterwards no
        order of this venue is open."""
        ...

    def working_prices(self) -> tuple[int | None, int | None]:
        """The prices (ticks) of the working bid and ask, None where a side has no order."""
        ...
