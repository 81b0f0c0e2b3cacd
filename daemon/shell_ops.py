"""Glue between the daemon shell (:mod:`daemon.app`) and the ops layer (:mod:`daemon.ops`):
metrics per frame, book states, readiness, systemd READY/STATUS, status lines.

Per frame the shell calls :meth:`AppOps.before` (stamps the start of the tick) and
:meth:`AppOps.after` (counts the frame, observes feed lag and tick-to-quote latency). Both are
cheap: pre-bound metric children, no allocation beyond the histogram observation.
"""

from __future__ import annotations

import time
from typing import Any

from daemon.core.events import BookUpdate, Kline, TickerUpdate, Trade
from daemon.ops.health import books_and_ledger_ready
from daemon.ops.metrics import Metrics
from daemon.ops.runtime import OpsRuntime

_TOPIC = {BookUpdate: "orderbook", Trade: "publicTrade", TickerUpdate: "tickers", Kline: "kline"}


class AppOps:
    def __init__(self, settings: Any, app: Any) -> None:
        self.app = app
        self.metrics = Metrics()
        self.metrics.bind_symbols(settings.market.symbols)
        self._topics = {name: self.metrics.topic(name) for name in _TOPIC.values()}
        self._t0 = 0
        self._errors_seen: dict[str, int] = {}
        self._records_seen = -1
        self._counts_seen: dict[str, list[int]] = {}  # symbol -> [quotes, fills buy, fills sell] exported
        self._books_and_ledger = books_and_ledger_ready(self._book_states, self._ledger_ok)
        self.runtime = OpsRuntime(
            settings.ops,
            self.metrics,
            self._ready,
            alive=lambda: True,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> int:
        return await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop("shutdown")

    @property
    def port(self) -> int:
        return self.runtime.port

    # -- readiness -----------------------------------------------------------------------------

    def _ready(self) -> tuple[bool, dict]:
        """Every book LIVE and the ledger writable; while start-up is still retrying, not ready
        with the reason (e.g. the REST endpoint unreachable) first."""
        ok, details = self._books_and_ledger()
        problem = getattr(self.app, "startup_problem", None)
        if problem:
            details["reasons"] = [f"starting: {problem}", *details["reasons"]]
            return False, details
        return ok, details

    def _book_states(self) -> dict[str, int]:
        eng = self.app.engine
        if eng is None:
            return {}
        return {s: int(sc.book.state) for s, sc in eng.symbols.items()}

    def _ledger_ok(self) -> bool:
        rt = self.app.runtime
        return True if rt is None else bool(rt.ledger_writable())

    # -- per frame -----------------------------------------------------------------------------

    def before(self, events: list) -> None:
        self._t0 = time.perf_counter_ns()

    def after(self, events: list) -> None:
        if not events:
            return
        ev = events[0]
        tm = self._topics.get(_TOPIC.get(type(ev), ""))
        if tm is None:
            return
        ts = getattr(ev, "ts_ms", 0)
        lag = (ev.recv_ns / 1e9 - ts / 1e3) if ts else None
        tm.on_frame(len(events), lag)
        rt = self.app.runtime
        if rt is not None:
            if rt.quoted_since_check():
                self.metrics.observe_tick_to_quote((time.perf_counter_ns() - self._t0) / 1e9)
            if rt.records != self._records_seen:  # a quote or a fill journalled something
                self._records_seen = rt.records
                self._export_counts(rt)

    def _export_counts(self, rt: Any) -> None:
        """Advance ``mmd_quotes_total`` / ``mmd_fills_total`` to the strategies' own counters."""
        for sym, st in rt.strategies.items():
            seen = self._counts_seen.get(sym)
            if seen is None:
                seen = self._counts_seen[sym] = [0, 0, 0]
            sm = self.metrics.symbol(sym)
            n = st.quotes_sent - seen[0]
            if n > 0:
                sm.quotes.inc(n)
                seen[0] = st.quotes_sent
            n = st.fills_buy - seen[1]
            if n > 0:
                sm.fill_buy.inc(n)
                seen[1] = st.fills_buy
            n = st.fills - st.fills_buy - seen[2]
            if n > 0:
                sm.fill_sell.inc(n)
                seen[2] = st.fills - st.fills_buy

    # -- state changes -------------------------------------------------------------------------

    def on_book_state(self, act: Any) -> None:
        from daemon.core.book import BookState

        sm = self.metrics.symbol(act.symbol)
        sm.set_book_state(int(BookState[act.new]))
        if act.new == "RESYNCING":
            sm.on_resync(act.reason.split(":")[0])

    def on_stream_state(self, state: str, reason: str) -> None:
        if state == "disconnected" and reason != "stopped":
            self.metrics.on_reconnect()

    def on_ready(self) -> None:
        eng = self.app.engine
        self.runtime.ready(f"quoting {','.join(eng.symbols)}" if eng else None)

    def on_status(self, st: dict[str, Any]) -> None:
        parser = self.app.parser
        if parser is not None:
            for kind, n in parser.errors.items():
                seen = self._errors_seen.get(kind, 0)
                for _ in range(n - seen):
                    self.metrics.on_parse_error(kind)
                self._errors_seen[kind] = n
        rt = self.app.runtime
        if rt is not None:
            rt.export_metrics(self.metrics)
            self._export_counts(rt)
        parts = []
        for sym, row in st.get("symbols", {}).items():
            parts.append(f"{sym} {row.get('book')} {row.get('bid')}/{row.get('ask')}")
        self.runtime.status("; ".join(parts)[:200])
