"""Prometheus metrics of the daemon, on a private :class:`~prometheus_client.CollectorRegistry`.

Every metric name starts with ``mmd_``; counters are exported with the ``_total`` suffix that
prometheus-client appends. A private registry (not the process-global one) means tests, ``replay``
and several engines in one process each get their own set.

Hot path: per-symbol and per-topic label children are bound once (:meth:`Metrics.symbol`,
:meth:`Metrics.topic`) and cached; a tick then costs one dict lookup plus ``.inc()``/``.set()``/
``.observe()`` on a pre-bound child (no label resolution, no allocation).

Catalogue (units in the name; all times in seconds):

========================================  =========  ==========================  ======================================
name                                      type       labels                      meaning
========================================  =========  ==========================  ======================================
mmd_frames_total                          counter    topic                       websocket frames received
mmd_messages_total                        counter    topic                       events produced by the parser
mmd_parse_errors_total                    counter    kind                        frames rejected by the parser
mmd_ws_reconnects_total                   counter    -                           websocket reconnects
mmd_book_resyncs_total                    counter    symbol, reason              book -> RESYNCING (gap, crossed, ...)
mmd_book_state                            gauge      symbol                      0 EMPTY, 1 SYNCING, 2 LIVE, 3 RESYNCING
mmd_feed_lag_seconds                      histogram  topic                       local receive time - exchange ts
mmd_tick_to_quote_seconds                 histogram  -                           event received -> quote decided
mmd_quotes_total                          counter    symbol                      quote decisions published
mmd_fills_total                           counter    symbol, side                paper fills (side: buy/sell, ours)
mmd_position                              gauge      symbol                      position, base units (BTC), signed
mmd_pnl                                   gauge      symbol, component           quote currency (USDT); components
                                                                                 spread, inventory, fees, funding, total
mmd_p_adverse                             gauge      symbol, side                adverse-selection probability (bid/ask)
mmd_risk_tripped                          gauge      -                           1 while the risk gate is tripped
mmd_risk_gate_info                        info       reason                      why the gate tripped ("" when clear)
mmd_ledger_queue_depth                    gauge      -                           records waiting to be written
mmd_ledger_durable_lag_seconds            gauge      -                           age of the oldest unwritten record
mmd_event_loop_lag_last_seconds           gauge      -                           last event-loop lag sample
mmd_event_loop_lag_seconds                histogram  -                           event-loop lag samples
mmd_start_time_seconds                    gauge      -                           process start, unix seconds
mmd_build_info                            info       version                     package version
========================================  =========  ==========================  ======================================
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: tick-to-quote buckets, seconds: 5 us .. 50 ms (fine resolution where a Python hot path lives).
TICK_TO_QUOTE_BUCKETS: tuple[float, ...] = (
    5e-6, 10e-6, 15e-6, 20e-6, 30e-6, 50e-6, 75e-6,
    100e-6, 150e-6, 200e-6, 300e-6, 500e-6, 750e-6,
    1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 7.5e-3, 10e-3, 20e-3, 50e-3,
)  # fmt: skip

#: feed-lag buckets, seconds: 1 ms .. 10 s (network + exchange-side delay; negative = clock skew,
#: counted in the first bucket).
FEED_LAG_BUCKETS: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip

#: event-loop lag buckets, seconds.
LOOP_LAG_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

PNL_COMPONENTS: tuple[str, ...] = ("spread", "inventory", "fees", "funding", "total")

_SIDE_NAMES = {1: "buy", -1: "sell", "buy": "buy", "sell": "sell", "Buy": "buy", "Sell": "sell"}
_QUOTE_SIDES = {"bid": "bid", "ask": "ask", 1: "bid", -1: "ask"}


class TopicMetrics:
    """Pre-bound children for one topic (e.g. ``orderbook.50.BTCUSDT``)."""

    __slots__ = ("frames", "messages", "feed_lag")

    def __init__(self, m: "Metrics", topic: str) -> None:
        self.frames = m.frames.labels(topic=topic)
        self.messages = m.messages.labels(topic=topic)
        self.feed_lag = m.feed_lag.labels(topic=topic)

    def on_frame(self, n_messages: int = 1, lag_s: float | None = None) -> None:
        """One frame that produced ``n_messages`` events; ``lag_s`` = recv time - exchange ts, seconds."""
        self.frames.inc()
        if n_messages:
            self.messages.inc(n_messages)
        if lag_s is not None:
            self.feed_lag.observe(lag_s)


class SymbolMetrics:
    """Pre-bound children for one symbol. All methods are O(1) and allocation-free."""

    __slots__ = (
        "symbol", "_m", "quotes", "fill_buy", "fill_sell", "position", "book_state",
        "pnl_spread", "pnl_inventory", "pnl_fees", "pnl_funding", "pnl_total",
        "p_adverse_bid", "p_adverse_ask", "_resyncs",
    )  # fmt: skip

    def __init__(self, m: "Metrics", symbol: str) -> None:
        self.symbol = symbol
        self._m = m
        self.quotes = m.quotes.labels(symbol=symbol)
        self.fill_buy = m.fills.labels(symbol=symbol, side="buy")
        self.fill_sell = m.fills.labels(symbol=symbol, side="sell")
        self.position = m.position.labels(symbol=symbol)
        self.book_state = m.book_state.labels(symbol=symbol)
        self.pnl_spread = m.pnl.labels(symbol=symbol, component="spread")
        self.pnl_inventory = m.pnl.labels(symbol=symbol, component="inventory")
        self.pnl_fees = m.pnl.labels(symbol=symbol, component="fees")
        self.pnl_funding = m.pnl.labels(symbol=symbol, component="funding")
        self.pnl_total = m.pnl.labels(symbol=symbol, component="total")
        self.p_adverse_bid = m.p_adverse.labels(symbol=symbol, side="bid")
        self.p_adverse_ask = m.p_adverse.labels(symbol=symbol, side="ask")
        self._resyncs: dict[str, object] = {}

    def on_quote(self) -> None:
        self.quotes.inc()

    def on_fill(self, side: int | str) -> None:
        """``side``: ours, +1/-1 (``BUY``/``SELL`` of :mod:`daemon.core.events`) or ``"buy"``/``"sell"``."""
        s = _SIDE_NAMES.get(side)
        if s == "buy":
            self.fill_buy.inc()
        elif s == "sell":
            self.fill_sell.inc()
        else:
            raise ValueError(f"fill side must be +1/-1 or 'buy'/'sell', got {side!r}")

    def set_position(self, base_units: float) -> None:
        """Signed position in base units (BTC for BTCUSDT)."""
        self.position.set(base_units)

    def set_book_state(self, state: int) -> None:
        """``state``: :class:`daemon.core.book.BookState` (0 EMPTY, 1 SYNCING, 2 LIVE, 3 RESYNCING)."""
        self.book_state.set(int(state))

    def set_pnl(self, spread: float, inventory: float, fees: float, funding: float, total: float | None = None) -> None:
        """PnL components in quote currency; ``total`` defaults to the sum of the four."""
        self.pnl_spread.set(spread)
        self.pnl_inventory.set(inventory)
        self.pnl_fees.set(fees)
        self.pnl_funding.set(funding)
        self.pnl_total.set(spread + inventory + fees + funding if total is None else total)

    def set_p_adverse(self, bid: float | None = None, ask: float | None = None) -> None:
        """Probability (0..1) that a fill of our bid/ask is adverse; ``None`` leaves a side unchanged."""
        if bid is not None:
            self.p_adverse_bid.set(bid)
        if ask is not None:
            self.p_adverse_ask.set(ask)

    def on_resync(self, reason: str) -> None:
        """The book went to RESYNCING; ``reason`` e.g. ``gap``, ``crossed``, ``seq_back``, ``stale``, ``reconnect``."""
        child = self._resyncs.get(reason)
        if child is None:
            child = self._resyncs[reason] = self._m.resyncs.labels(symbol=self.symbol, reason=reason)
        child.inc()  # type: ignore[attr-defined]


class Metrics:
    """All daemon metrics on one private registry. Create one per engine/process.

    Typical wiring (shell)::

        m = Metrics()
        btc = m.symbol("BTCUSDT")          # once per symbol
        book_topic = m.topic("orderbook.50.BTCUSDT")
        ...
        book_topic.on_frame(len(events), lag_s=(recv_ns / 1e9) - ts_ms / 1e3)
        btc.set_book_state(book.state)
        m.tick_to_quote.observe((time.perf_counter_ns() - t0) / 1e9)
        btc.on_quote()
    """

    def __init__(self, registry: CollectorRegistry | None = None, version: str | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.frames = Counter("mmd_frames", "Websocket frames received, by topic", ["topic"], registry=r)
        self.messages = Counter("mmd_messages", "Events produced by the frame parser, by topic", ["topic"], registry=r)
        self.parse_errors = Counter("mmd_parse_errors", "Frames rejected by the parser, by kind", ["kind"], registry=r)
        self.reconnects = Counter("mmd_ws_reconnects", "Websocket reconnects", registry=r)
        self.resyncs = Counter(
            "mmd_book_resyncs", "Order book resyncs (-> RESYNCING), by symbol and reason", ["symbol", "reason"], registry=r
        )
        self.book_state = Gauge(
            "mmd_book_state", "Order book state: 0 EMPTY, 1 SYNCING, 2 LIVE, 3 RESYNCING", ["symbol"], registry=r
        )
        self.feed_lag = Histogram(
            "mmd_feed_lag_seconds",
            "Local receive time minus exchange timestamp, seconds",
            ["topic"],
            buckets=FEED_LAG_BUCKETS,
            registry=r,
        )
        self.tick_to_quote = Histogram(
            "mmd_tick_to_quote_seconds",
            "Time from market event received to quote decided, seconds",
            buckets=TICK_TO_QUOTE_BUCKETS,
            registry=r,
        )
        self.quotes = Counter("mmd_quotes", "Quote decisions published, by symbol", ["symbol"], registry=r)
        self.fills = Counter("mmd_fills", "Paper fills, by symbol and our side", ["symbol", "side"], registry=r)
        self.position = Gauge("mmd_position", "Signed position, base units", ["symbol"], registry=r)
        self.pnl = Gauge("mmd_pnl", "PnL by component, quote currency", ["symbol", "component"], registry=r)
        self.p_adverse = Gauge(
            "mmd_p_adverse", "Adverse-selection probability of a fill, by symbol and quote side", ["symbol", "side"], registry=r
        )
        self.risk_tripped = Gauge("mmd_risk_tripped", "1 while the risk gate is tripped (quoting halted)", registry=r)
        self.risk_gate = Info("mmd_risk_gate", "Why the risk gate tripped (empty reason when clear)", registry=r)
        self.ledger_queue_depth = Gauge("mmd_ledger_queue_depth", "Ledger records waiting to be written", registry=r)
        self.ledger_durable_lag = Gauge(
            "mmd_ledger_durable_lag_seconds", "Age of the oldest ledger record not yet durable, seconds", registry=r
        )
        self.loop_lag = Gauge("mmd_event_loop_lag_last_seconds", "Last event-loop lag sample, seconds", registry=r)
        self.loop_lag_hist = Histogram(
            "mmd_event_loop_lag_seconds", "Event-loop lag samples, seconds", buckets=LOOP_LAG_BUCKETS, registry=r
        )
        self.start_time = Gauge("mmd_start_time_seconds", "Process start time, unix seconds", registry=r)
        self.build = Info("mmd_build", "Build information", registry=r)

        self.start_time.set(time.time())
        self.build.info({"version": version or _version()})
        self.risk_gate.info({"reason": ""})
        self._reconnects = self.reconnects  # no labels: already a child
        self._parse_errors: dict[str, object] = {}
        self._symbols: dict[str, SymbolMetrics] = {}
        self._topics: dict[str, TopicMetrics] = {}

    # ---- binding -------------------------------------------------------------------------------
    def symbol(self, symbol: str) -> SymbolMetrics:
        """Pre-bound children for ``symbol`` (created once, then cached)."""
        sm = self._symbols.get(symbol)
        if sm is None:
            sm = self._symbols[symbol] = SymbolMetrics(self, symbol)
        return sm

    def topic(self, topic: str) -> TopicMetrics:
        """Pre-bound children for ``topic`` (created once, then cached)."""
        tm = self._topics.get(topic)
        if tm is None:
            tm = self._topics[topic] = TopicMetrics(self, topic)
        return tm

    def bind_symbols(self, symbols: Iterable[str]) -> None:
        """Create the children of every configured symbol up front so dashboards show zeros, not gaps."""
        for s in symbols:
            self.symbol(s).set_book_state(0)

    # ---- shell-level events --------------------------------------------------------------------
    def on_frame(self, topic: str, n_messages: int = 1, lag_s: float | None = None) -> None:
        self.topic(topic).on_frame(n_messages, lag_s)

    def on_parse_error(self, kind: str) -> None:
        """``kind``: short class of error (``json``, ``schema``, ``oversize``, ``unknown_topic``, ...)."""
        child = self._parse_errors.get(kind)
        if child is None:
            child = self._parse_errors[kind] = self.parse_errors.labels(kind=kind)
        child.inc()  # type: ignore[attr-defined]

    def on_reconnect(self) -> None:
        self._reconnects.inc()

    def observe_tick_to_quote(self, seconds: float) -> None:
        self.tick_to_quote.observe(seconds)

    def set_risk(self, tripped: bool, reason: str = "") -> None:
        """Risk gate state; ``reason`` is shown by ``mmd_risk_gate_info`` (cleared when not tripped)."""
        self.risk_tripped.set(1 if tripped else 0)
        self.risk_gate.info({"reason": reason if tripped else ""})

    def set_ledger(self, queue_depth: int, durable_lag_s: float) -> None:
        """Ledger writer backlog: records queued, and age (seconds) of the oldest one not yet committed."""
        self.ledger_queue_depth.set(queue_depth)
        self.ledger_durable_lag.set(durable_lag_s)

    def observe_loop_lag(self, lag_s: float) -> None:
        """Sink for :class:`daemon.ops.looplag.LoopLagMonitor` (``on_sample=metrics.observe_loop_lag``)."""
        self.loop_lag.set(lag_s)
        self.loop_lag_hist.observe(lag_s)

    # ---- exposition ----------------------------------------------------------------------------
    def render(self) -> bytes:
        """The registry in Prometheus text exposition format 0.0.4."""
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST

    def metric_names(self) -> set[str]:
        """Every sample name this registry exports (``mmd_frames_total``, ``..._bucket``, ...), i.e.
        the names PromQL can use; counter and info family names without suffix are not included."""
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "info": ("_info",),
        }
        names: set[str] = set()
        for fam in self.registry.collect():
            names.update(fam.name + s for s in suffixes.get(fam.type, ("",)))
        return names


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mmd")
    except Exception:
        return "unknown"
