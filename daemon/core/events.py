"""Typed core events (in) and actions (out).

The shell turns wire frames into these events; the pure core consumes them one at a time and
returns actions. Every event carries both the exchange time (``ts_ms``, milliseconds since the
epoch, from Bybit's ``ts``/``T``/``cts``) and the local receive time (``recv_ns``, nanoseconds since
the epoch, stamped by the shell). The core never reads a clock: time is what the events say.

Units everywhere in the core:

* prices are ``int`` ticks of the instrument's ``tickSize``;
* sizes are ``int`` lots of the instrument's ``qtyStep``;
* sides are ``BUY = +1`` / ``SELL = -1``. For :class:`Trade` the side is the **taker** side
  (Bybit ``publicTrade.S``): a ``BUY`` taker lifts asks and can only fill our resting asks.
"""

from __future__ import annotations

import msgspec

BUY = 1
SELL = -1


class BookUpdate(msgspec.Struct, gc=False):
    """One ``orderbook.{depth}.{symbol}`` frame.

    ``bids``/``asks`` are ``(price_ticks, size_lots)`` pairs; size ``0`` deletes a level in a delta.
    ``snapshot`` is true for ``type == "snapshot"``. ``u`` is the per-topic update id, ``seq`` the
    cross sequence. ``ts_ms`` is Bybit's system time, ``cts_ms`` the matching-engine time (0 when
    absent).
    """

    symbol: str
    depth: int
    snapshot: bool
    bids: list
    asks: list
    u: int
    seq: int
    ts_ms: int
    cts_ms: int
    recv_ns: int


class Trade(msgspec.Struct, gc=False):
    """One public trade (one element of a ``publicTrade`` frame's ``data`` array).

    ``side`` is the taker side (``BUY``/``SELL``); ``price`` in ticks, ``qty`` in lots;
    ``ts_ms`` is the fill time ``T``.
    """

    symbol: str
    side: int
    price: int
    qty: int
    trade_id: str
    seq: int
    ts_ms: int
    recv_ns: int
    block: bool = False


class TickerUpdate(msgspec.Struct, gc=False):
    """A ``tickers.{symbol}`` frame. ``data`` holds Bybit's raw string fields; a delta carries only
    the fields that changed (merge into the cached snapshot: a missing key means unchanged)."""

    symbol: str
    snapshot: bool
    data: dict
    ts_ms: int
    recv_ns: int


class Kline(msgspec.Struct, gc=False):
    """One candle of ``kline.{interval}.{symbol}`` (or a REST kline row).

    ``interval`` is Bybit's string (``"1"`` = 1 minute). ``start_ms``/``end_ms`` in ms.
    OHLC in ticks; ``volume`` in base-coin units (float). ``confirm`` true = the candle is closed.
    """

    symbol: str
    interval: str
    start_ms: int
    end_ms: int
    open: int
    high: int
    low: int
    close: int
    volume: float
    confirm: bool
    ts_ms: int
    recv_ns: int


class Timer(msgspec.Struct, gc=False):
    """A clock tick from the shell. ``ts_ms`` is the shell's wall clock in exchange-time units (ms);
    the core uses it for staleness checks and time-sampled features."""

    ts_ms: int
    recv_ns: int


class StreamState(msgspec.Struct, gc=False):
    """Connection lifecycle news from the shell: ``state`` is one of ``connected``,
    ``subscribed``, ``disconnected``, ``resubscribing``; ``symbols`` the symbols affected."""

    state: str
    symbols: tuple
    reason: str
    ts_ms: int
    recv_ns: int


Event = BookUpdate | Trade | TickerUpdate | Kline | Timer | StreamState


# ---------------------------------------------------------------------------------------------
# Actions (core -> shell / venue / ledger)
# ---------------------------------------------------------------------------------------------


class Quote(msgspec.Struct, gc=False):
    """The quoter's desired two-sided quote for one symbol after all rounding and gates.

    ``bid_px``/``ask_px`` in ticks, ``None`` when that side is not quoted; ``bid_qty``/``ask_qty``
    in lots. ``ts_ms`` is the time of the event that produced it.
    """

    symbol: str
    bid_px: int | None
    bid_qty: int
    ask_px: int | None
    ask_qty: int
    ts_ms: int
    reason: str = ""


class Fill(msgspec.Struct, gc=False):
    """A paper fill of one of our orders.

    ``side`` is OUR side (``BUY`` = our bid was hit). ``price`` in ticks, ``qty`` in lots,
    ``fee`` in quote currency (positive = paid, negative = rebate). ``fill_id`` is unique and
    deterministic (derived from order id and the public trade id), so booking is idempotent.
    """

    fill_id: str
    symbol: str
    order_id: str
    side: int
    price: int
    qty: int
    fee: float
    trade_id: str
    ts_ms: int
