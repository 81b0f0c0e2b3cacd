"""Risk gate between the quoter and the paper venue (pure: no clock, no I/O).

The engine calls :meth:`RiskGate.check` on every decision with the exchange time and what it knows
(book state/age per symbol, positions and notionals, the inventory's PnL path, the cumulative
parse-error count), then passes each quote through :meth:`RiskGate.filter_quote`.

Gates (units: positions in base units, notionals and PnL in quote currency, times in ms):

* **soft, per symbol, clears by itself**: the book is not LIVE, or its last update is older than
  ``stale_ms``; the parse-error rate over ``error_window_s`` exceeds ``max_error_rate`` per second
  (a garbage storm is not a loss: it pauses every symbol and resumes when the rate falls); the
  ledger writer is in an error state (disk full, I/O error: fills could not be journalled durably,
  so every symbol pauses until the writer recovers).
  While paused a symbol gets no quotes and its orders are cancelled.
* **hard, global**: ``|position| > max_position`` or ``notional > max_notional`` for a symbol, total
  notional ``> max_total_notional``, drawdown from the equity peak ``> max_drawdown``, or today's
  (UTC) loss ``> max_daily_loss``. A hard trip cancels all paper orders and stops quoting until
  :meth:`RiskGate.resume` (manual: ``mmd resume LEDGER`` writes a resume record the engine honours;
  or a restart flag) or, when ``cooldown_s`` is set, automatically after the cool-down.

After a resume the loss references are re-based (the operator accepted the loss so far: drawdown and
daily loss are measured from the equity at resume) and a position/notional limit that is still
breached does not trip again until it has been back within the limit (edge-triggered re-arm);
meanwhile :meth:`filter_quote` keeps refusing the side that would grow the position (pre-trade check:
a side whose fill of the quoted size would exceed ``max_position`` is not quoted).

Every transition returns a :class:`RiskEvent` (for the ledger and the logs) with a deterministic id;
:attr:`RiskGate.tripped`, :attr:`RiskGate.reason`, :attr:`RiskGate.since_ms` feed the metrics.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import msgspec

from daemon.core.events import Quote


class RiskEvent(msgspec.Struct, gc=False):
    """A risk-gate transition. ``kind``: ``trip`` (hard), ``resume``, ``pause`` / ``unpause``
    (soft, per symbol; ``symbol == "*"`` = all). ``check`` names the rule (``max_position``,
    ``max_notional``, ``max_total_notional``, ``max_drawdown``, ``max_daily_loss``, ``book_not_live``,
    ``book_stale``, ``error_rate``, ``manual``, ``cooldown``, ``restart``); ``value``/``limit`` the
    numbers compared."""

    risk_id: str
    kind: str
    check: str
    symbol: str
    ts_ms: int
    value: float = 0.0
    limit: float = 0.0
    detail: str = ""


@dataclass
class SymbolRisk:
    """What the engine knows about one symbol at a decision. ``book_age_ms`` = decision time minus
    the book's last update time (exchange ms). ``position`` base units (signed), ``notional`` quote."""

    symbol: str
    book_live: bool
    book_age_ms: int
    position: float
    notional: float


@dataclass
class RiskDecision:
    """The gate's answer. ``halted``: hard trip active (quote nothing). ``paused``: symbols with a
    soft gate. ``cancel``: symbols whose paper orders must be cancelled now (newly halted/paused).
    ``events``: transitions to journal and log (an empty tuple in the shared "nothing happened"
    decisions :meth:`RiskGate.check_symbol` returns: treat a decision as read-only)."""

    halted: bool
    paused: frozenset
    cancel: frozenset
    events: list | tuple = field(default_factory=list)

    def allows(self, symbol: str) -> bool:
        return not self.halted and symbol not in self.paused


class RiskGate:
    """Stateful, pure risk gate. Limits as in :class:`daemon.config.RiskConfig` (see module doc)."""

    HARD = ("max_position", "max_notional", "max_total_notional", "max_drawdown", "max_daily_loss")

    def __init__(
        self,
        *,
        max_position: float,
        max_notional: float,
        max_total_notional: float,
        max_drawdown: float,
        max_daily_loss: float,
        max_error_rate: float,
        stale_ms: int,
        cooldown_s: float | None = None,
        error_window_s: float = 10.0,
        id_prefix: str = "",
    ) -> None:
        self.max_position = max_position
        self.max_notional = max_notional
        self.max_total_notional = max_total_notional
        self.max_drawdown = max_drawdown
        self.max_daily_loss = max_daily_loss
        self.max_error_rate = max_error_rate
        self.stale_ms = stale_ms
        self.cooldown_s = cooldown_s
        self.error_window_ms = int(error_window_s * 1000)
        self.id_prefix = id_prefix
        self.tripped = False
        self.reason = ""
        self.since_ms = 0
        self.paused: dict[str, str] = {}  # symbol -> soft reason
        self._errors: deque[tuple[int, int]] = deque()
        self._n = 0
        self._equity_base: float | None = None  # equity at the last resume (re-based loss refs)
        self._peak_since_resume = float("-inf")
        self._disarmed: set[tuple[str, str]] = set()  # (check, symbol) breached at resume time
        self.trips = 0
        # the answers of a quiet decision (no event, no cancel, nothing paused), built once
        self._quiet = RiskDecision(False, frozenset(), frozenset(), ())
        self._quiet_halted = RiskDecision(True, frozenset(), frozenset(), ())

    @classmethod
    def from_config(cls, cfg, id_prefix: str = "") -> "RiskGate":
        """Build from a :class:`daemon.config.RiskConfig`."""
        return cls(
            max_position=cfg.max_position,
            max_notional=cfg.max_notional,
            max_total_notional=cfg.max_total_notional,
            max_drawdown=cfg.max_drawdown,
            max_daily_loss=cfg.max_daily_loss,
            max_error_rate=cfg.max_error_rate,
            stale_ms=cfg.stale_ms,
            cooldown_s=cfg.cooldown_s,
            error_window_s=getattr(cfg, "error_window_s", 10.0),
            id_prefix=id_prefix,
        )

    def _event(self, kind: str, check: str, symbol: str, ts: int, value: float = 0.0, limit: float = 0.0, detail: str = "") -> RiskEvent:
        self._n += 1
        return RiskEvent(f"{self.id_prefix}risk:{ts}:{self._n}", kind, check, symbol, ts, value, limit, detail)

    # ------------------------------------------------------------------------------------------

    def check(
        self,
        ts_ms: int,
        symbols: list[SymbolRisk],
        *,
        total_pnl: float,
        drawdown: float,
        daily_pnl: float,
        errors_total: int = 0,
        ledger_error: str | None = None,
    ) -> RiskDecision:
        """Evaluate every rule at ``ts_ms``. ``drawdown`` (>= 0) and ``daily_pnl`` come from the
        inventory (quote currency); ``errors_total`` is the cumulative parse-error count;
        ``ledger_error`` is :attr:`daemon.paper.ledger.Ledger.error` (``None`` = healthy)."""
        events: list[RiskEvent] = []
        cancel: set[str] = set()
        was_halted = self.tripped

        # cool-down auto resume
        if self.tripped and self.cooldown_s is not None and ts_ms - self.since_ms >= self.cooldown_s * 1000:
            events.append(self._resume(ts_ms, "cooldown", total_pnl, symbols))

        # ---- soft gates ----
        rate = self._error_rate(ts_ms, errors_total)
        for s in symbols:
            change = self._soft(ts_ms, s.symbol, s.book_live, s.book_age_ms, rate, ledger_error)
            if change is not None:
                ev, starts = change
                if starts:
                    cancel.add(s.symbol)
                events.append(ev)

        # ---- hard limits ----
        if not self.tripped:
            trip = self._hard(symbols, total_pnl, drawdown, daily_pnl)
            if trip is not None:
                events.append(self._trip(ts_ms, trip))
        if self.tripped and not was_halted:
            cancel.update(s.symbol for s in symbols)
        return RiskDecision(self.tripped, frozenset(self.paused), frozenset(cancel), events)

    def check_symbol(
        self,
        ts_ms: int,
        symbol: str,
        book_live: bool,
        book_age_ms: int,
        position: float,
        notional: float,
        total_pnl: float,
        drawdown: float,
        daily_pnl: float,
        errors_total: int = 0,
        ledger_error: str | None = None,
        total_notional: float | None = None,
    ) -> RiskDecision:
        """:meth:`check` for one symbol (the per-tick call of the strategy), without building a
        :class:`SymbolRisk`, a decision or sets when nothing happens. Same rules in the same order,
        same events and state: ``check_symbol(ts, s.symbol, s.book_live, s.book_age_ms, s.position,
        s.notional, ...)`` is ``check(ts, [s], ...)``. Units as in :class:`SymbolRisk`. The
        returned decision is shared when quiet (no event, no cancel, nothing paused): read-only.
        ``total_notional`` is the notional of *all* symbols for ``max_total_notional`` (default:
        this symbol's ``notional``, which is what ``check`` sums for a one-symbol list)."""
        events: list[RiskEvent] | None = None
        cancel = False
        was_halted = self.tripped

        # cool-down auto resume
        if was_halted and self.cooldown_s is not None and ts_ms - self.since_ms >= self.cooldown_s * 1000:
            s = SymbolRisk(symbol, book_live, book_age_ms, position, notional)
            events = [self._resume(ts_ms, "cooldown", total_pnl, [s])]

        # ---- soft gates (the same rule as check's) ----
        rate = self._error_rate(ts_ms, errors_total)
        change = self._soft(ts_ms, symbol, book_live, book_age_ms, rate, ledger_error)
        if change is not None:
            ev, cancel = change
            if events is None:
                events = [ev]
            else:
                events.append(ev)

        # ---- hard limits ----
        if not self.tripped:
            trip = self._hard_symbol(symbol, position, notional, total_pnl, drawdown, daily_pnl,
                                     notional if total_notional is None else total_notional)
            if trip is not None:
                ev = self._trip(ts_ms, trip)
                if events is None:
                    events = [ev]
                else:
                    events.append(ev)
        if self.tripped and not was_halted:
            cancel = True
        paused = self.paused
        if events is None and not cancel and not paused:
            return self._quiet_halted if self.tripped else self._quiet
        return RiskDecision(self.tripped, frozenset(paused), frozenset((symbol,)) if cancel else frozenset(),
                            events if events is not None else [])

    def _soft(self, ts_ms: int, symbol: str, book_live: bool, book_age_ms: int, rate: float,
              ledger_error: str | None) -> tuple[RiskEvent, bool] | None:
        """The soft gate of one symbol: pause (first reason that applies, in this order), change of
        pause reason, or unpause. Returns ``(event, starts_pause)`` (``starts_pause``: a pause
        began, so the symbol's orders must be cancelled), or None when nothing changed."""
        if not book_live:
            why = "book_not_live"
        elif book_age_ms > self.stale_ms:
            why = "book_stale"
        elif rate > self.max_error_rate:
            why = "error_rate"
        elif ledger_error is not None:
            why = "ledger_error"
        else:
            why = ""
        paused = self.paused
        old = paused.get(symbol) if paused else None
        if why and old != why:
            paused[symbol] = why
            val, lim = (rate, self.max_error_rate) if why == "error_rate" else (float(book_age_ms), float(self.stale_ms))
            detail = ledger_error[:200] if why == "ledger_error" and ledger_error else ""
            return self._event("pause", why, symbol, ts_ms, val, lim, detail), old is None
        if not why and old is not None:
            del paused[symbol]
            return self._event("unpause", old, symbol, ts_ms), False
        return None

    def _trip(self, ts_ms: int, trip: tuple) -> RiskEvent:
        """Trip the hard gate on ``trip = (check, symbol, value, limit)``; returns the event."""
        check, sym, val, lim = trip
        self.tripped = True
        self.reason = f"{check} {sym}: {val:.6g} > {lim:.6g}"
        self.since_ms = ts_ms
        self.trips += 1
        return self._event("trip", check, sym, ts_ms, val, lim, self.reason)

    def _dd_loss(self, total_pnl: float, drawdown: float, daily_pnl: float) -> tuple[float, float]:
        """Drawdown and loss the limits see: the inventory's, or re-based at the last resume."""
        if self._equity_base is None:
            return drawdown, -daily_pnl
        self._peak_since_resume = max(self._peak_since_resume, total_pnl)
        return self._peak_since_resume - total_pnl, min(self._equity_base - total_pnl, -daily_pnl)

    def _hard_symbol(self, symbol: str, position: float, notional: float, total_pnl: float, drawdown: float,
                     daily_pnl: float, total_notional: float):
        """:meth:`_hard` for one symbol (and the all-symbol ``total_notional``), without building
        the list of breaches."""
        if self._disarmed:  # some limit is disarmed until it recovers: the general path re-arms
            return self._hard([SymbolRisk(symbol, True, 0, position, notional)], total_pnl, drawdown, daily_pnl,
                              total_notional)
        total_notional = float(total_notional)  # the events carry a float, as the sum _hard forms
        dd, loss = self._dd_loss(total_pnl, drawdown, daily_pnl)
        ap = abs(position)
        if ap > self.max_position:
            return ("max_position", symbol, ap, self.max_position)
        if notional > self.max_notional:
            return ("max_notional", symbol, notional, self.max_notional)
        if total_notional > self.max_total_notional:
            return ("max_total_notional", "*", total_notional, self.max_total_notional)
        if dd > self.max_drawdown:
            return ("max_drawdown", "*", dd, self.max_drawdown)
        if loss > self.max_daily_loss:
            return ("max_daily_loss", "*", loss, self.max_daily_loss)
        return None

    def _hard(self, symbols: list[SymbolRisk], total_pnl: float, drawdown: float, daily_pnl: float,
              total_notional_all: float | None = None):
        """The first hard limit breached (and not disarmed), or None. ``total_notional_all``
        overrides the sum of ``symbols``' notionals (the per-tick one-symbol check passes the total
        over all symbols)."""
        breaches = []
        total_notional = 0.0
        for s in symbols:
            total_notional += s.notional
            breaches.append(("max_position", s.symbol, abs(s.position), self.max_position))
            breaches.append(("max_notional", s.symbol, s.notional, self.max_notional))
        if total_notional_all is not None:
            total_notional = float(total_notional_all)
        breaches.append(("max_total_notional", "*", total_notional, self.max_total_notional))
        dd, loss = self._dd_loss(total_pnl, drawdown, daily_pnl)
        breaches.append(("max_drawdown", "*", dd, self.max_drawdown))
        breaches.append(("max_daily_loss", "*", loss, self.max_daily_loss))
        hit = None
        for check, sym, val, lim in breaches:
            key = (check, sym)
            if val > lim:
                if key in self._disarmed:
                    continue
                if hit is None:
                    hit = (check, sym, val, lim)
            else:
                self._disarmed.discard(key)  # back within the limit: re-armed
        return hit

    def _error_rate(self, ts_ms: int, errors_total: int) -> float:
        """Parse errors per second over the window, from cumulative counts sampled at decisions."""
        dq = self._errors
        dq.append((ts_ms, errors_total))
        lo = ts_ms - self.error_window_ms
        while len(dq) > 1 and dq[1][0] <= lo:
            dq.popleft()
        t0, c0 = dq[0]
        span = ts_ms - max(t0, lo)  # = the window once a baseline sample is at/before its start
        return (errors_total - c0) * 1000.0 / max(span, 1000)

    # ------------------------------------------------------------------------------------------

    def resume(self, ts_ms: int, source: str = "manual", total_pnl: float = 0.0, symbols: list[SymbolRisk] | None = None) -> RiskEvent | None:
        """Clear a hard trip (``source``: ``manual`` | ``restart`` | ``cooldown``). Returns the event,
        or ``None`` when not tripped. ``total_pnl`` re-bases the loss references; limits still
        breached in ``symbols`` are disarmed until they recover."""
        if not self.tripped:
            return None
        return self._resume(ts_ms, source, total_pnl, symbols or [])

    def _resume(self, ts_ms: int, source: str, total_pnl: float, symbols: list[SymbolRisk]) -> RiskEvent:
        ev = self._event("resume", source, "*", ts_ms, detail=f"was: {self.reason}")
        self.tripped = False
        self.reason = ""
        self.since_ms = ts_ms
        self._equity_base = total_pnl
        self._peak_since_resume = total_pnl
        total = 0.0
        for s in symbols:
            total += s.notional
            if abs(s.position) > self.max_position:
                self._disarmed.add(("max_position", s.symbol))
            if s.notional > self.max_notional:
                self._disarmed.add(("max_notional", s.symbol))
        if total > self.max_total_notional:
            self._disarmed.add(("max_total_notional", "*"))
        return ev

    def restore(self, tripped: bool, reason: str, since_ms: int) -> None:
        """Re-enter a hard trip found unresolved in the ledger at start-up."""
        self.tripped = tripped
        self.reason = reason
        self.since_ms = since_ms

    def filter_quote(self, quote: Quote, decision: RiskDecision, position_lots: int, max_position_lots: int | None) -> Quote:
        """Apply the decision to one quote: nothing when halted/paused; otherwise drop a side whose
        full fill would take ``|position|`` beyond ``max_position_lots`` (lots; ``None`` = no check)."""
        if not decision.allows(quote.symbol):
            return Quote(quote.symbol, None, 0, None, 0, quote.ts_ms, "risk")
        bid_px, bid_qty, ask_px, ask_qty = quote.bid_px, quote.bid_qty, quote.ask_px, quote.ask_qty
        if max_position_lots is not None:
            if bid_px is not None and position_lots + bid_qty > max_position_lots:
                bid_px, bid_qty = None, 0
            if ask_px is not None and position_lots - ask_qty < -max_position_lots:
                ask_px, ask_qty = None, 0
        if bid_px is quote.bid_px and ask_px is quote.ask_px:
            return quote
        return Quote(quote.symbol, bid_px, bid_qty, ask_px, ask_qty, quote.ts_ms, quote.reason or "risk_side")

    def metrics(self) -> dict:
        """State for metrics: ``tripped`` (0/1), ``reason``, ``since_ms``, ``paused`` symbols."""
        return {"tripped": int(self.tripped), "reason": self.reason, "since_ms": self.since_ms, "paused": dict(self.paused), "trips": self.trips}
