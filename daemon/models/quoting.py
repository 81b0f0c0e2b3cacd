"""From a quoter's raw float prices to the integer :class:`~daemon.core.events.Quote`, plus the audit.

:func:`finalize` applies, per side and in this order (each change/pull gets a short reason):

1. ``model``   : the quoter did not quote the side (``RawQuote.bid/ask is None``).
2. ``asym``    : asymmetric inventory penalty: the side reducing ``|q|`` is not tightened below
   the ``q = 0`` half-spread (:func:`daemon.models.inventory.asymmetric_deltas`).
3. ``adverse_widen`` / ``adverse_pull``: when ``p_adverse`` of a side exceeds
   ``AdverseParams.threshold``; *widen* moves the side away from the mid,
   ``d' = d + (widen_factor - 1) * max(|d|, tick)`` (``= widen_factor * d`` for a normal ``d > 0``;
   a quote already through the mid, ``d <= 0``, is still moved outwards, never inwards).
4. rounding to the tick grid: bid **down** (floor), ask **up** (ceil) - never more aggressive than
   the model.
5. ``post_only``: never through the book: a bid ``>= best_ask`` becomes ``best_ask - 1`` tick, an
   ask ``<= best_bid`` becomes ``best_bid + 1`` tick.
6. ``min_spread``: with both sides quoted, ``ask - bid >= min_spread_ticks`` (>= 1) by moving the
   quotes *outwards* (bid down by half the shortfall, ask up by the rest), so this never crosses the
   book either. ``nonpositive``: a bid at or below price 0 is pulled.
7. sizes: ``order_size_lots`` raised to the instrument's minimum quantity (``size_min``) and to the
   minimum notional at the quote's price (``size_notional``), capped at the maximum quantity.
8. ``limit``: a side whose final size exceeds the inventory room (position + order size beyond
   ``max_position``/``max_notional``) is pulled: long at the limit -> no bid.

Invariants of the result (tested): ``bid_px < best_ask``, ``ask_px > best_bid``, ``bid_px < ask_px``,
``bid_px <= floor(raw bid)``, ``ask_px >= ceil(raw ask)``, sizes ``>= min_qty_lots`` and notional
``>= min_notional``.

:class:`QuotingPipeline` runs book -> :class:`MarketState` -> quoter -> inventory -> finalize in one
call per tick (plain floats, no numpy), and keeps what it needs to build the audit record lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from daemon.core.events import Quote
from daemon.core.instrument import Instrument
from daemon.models.base import MarketState, Quoter, RawQuote
from daemon.models.calibration import Calibration
from daemon.models.inventory import InventoryControl, InventoryDecision, InventoryParams, asymmetric_deltas

#: rounding to the grid tolerates this much float noise, in ticks: ROUND_EPS_TICKS + ROUND_EPS_REL * |x|
#: (an exact grid price divided by the tick is not exact: 61800.2 / 0.1 = 618001.9999...). A raw
#: bid that far *below* a grid price, or a raw ask that far *above* one, rounds to it; farther, it
#: rounds away (never more aggressive than the model by more than the noise).
ROUND_EPS_TICKS = 1e-9
ROUND_EPS_REL = 1e-12


@dataclass(frozen=True, slots=True)
class AdverseParams:
    """The adverse-selection gate of :func:`finalize` (``[adverse]``; :mod:`daemon.wiring` maps it).

    ``threshold``: the ``p_adverse`` (a probability) above which a side is widened or pulled,
    ``None`` = gate off; ``action``: ``"widen"`` or ``"pull"``; ``widen_factor`` (>= 1): how far
    a widened side moves out, as a multiple of its distance from the mid."""

    threshold: float | None = None
    action: str = "widen"
    widen_factor: float = 2.0


@dataclass(frozen=True, slots=True)
class QuotingParams:
    """What :class:`QuotingPipeline` needs from ``[quoter]`` (:mod:`daemon.wiring` maps it).

    ``order_size``: base units per quote (``q`` fed to the quoter is position / order_size);
    ``min_spread_ticks``: minimum ask - bid in ticks; ``horizon_s``: seconds; ``horizon_mode``:
    ``"rolling"`` (``t_left_s`` infinite for the pipeline: the quoter keeps ``T - t = horizon_s``)
    or ``"session"`` (a :class:`SessionClock` counts each session down)."""

    order_size: float = 0.001
    min_spread_ticks: int = 1
    horizon_s: float = 300.0
    horizon_mode: str = "rolling"


@dataclass(init=False)
class QuoteReasons:
    """Why each side was changed or pulled: comma-separated short codes, ``""`` when untouched.
    Its own ``__init__`` as :class:`~daemon.models.base.MarketState`'s (built on every tick)."""

    bid: str
    ask: str

    def __init__(self, bid: str = "", ask: str = "") -> None:
        self.bid = bid
        self.ask = ask

    def text(self) -> str:
        """``"bid:limit;ask:post_only"`` style summary (``""`` if nothing happened)."""
        parts = []
        if self.bid:
            parts.append("bid:" + self.bid)
        if self.ask:
            parts.append("ask:" + self.ask)
        return ";".join(parts)


def _add(r: str, code: str) -> str:
    return code if not r else r + "," + code


def order_size_lots(instrument: Instrument, qty: float) -> int:
    """Order size in base units -> lots (nearest lot; at least the instrument's minimum)."""
    if not (qty > 0 and math.isfinite(qty)):
        raise ValueError(f"order size must be a positive base quantity, got {qty!r}")
    lots = int(round(qty / instrument.qty.step_float))
    return max(lots, instrument.min_qty_lots)


def _widen(d: float, factor: float, tick: float) -> float:
    a = abs(d)
    return d + (factor - 1.0) * (a if a > tick else tick)


def _size(instrument: Instrument, lots: int, px_ticks: int) -> tuple[int, str]:
    """Size in lots for a quote at ``px_ticks``: min qty, min notional, max qty. Returns (lots, code)."""
    code = ""
    if lots < instrument.min_qty_lots:
        lots = instrument.min_qty_lots
        code = "size_min"
    mn = instrument.min_notional
    if mn > 0:
        unit = instrument.price.to_float(px_ticks) * instrument.qty.step_float  # notional of one lot
        if lots * unit < mn * (1.0 - 1e-12):
            lots = math.ceil(mn / unit - 1e-9)
            code = _add(code, "size_notional")
    if lots > instrument.max_qty_lots:
        lots = instrument.max_qty_lots
        code = _add(code, "size_max")
    return lots, code


def finalize(
    raw: RawQuote,
    *,
    instrument: Instrument,
    mid: float,
    best_bid_ticks: int | None,
    best_ask_ticks: int | None,
    order_size_lots: int,
    ts_ms: int = 0,
    inventory: InventoryDecision | None = None,
    p_adverse_bid: float = 0.0,
    p_adverse_ask: float = 0.0,
    adverse: AdverseParams | None = None,
    min_spread_ticks: int = 1,
    bid_size_lots: int | None = None,
    ask_size_lots: int | None = None,
) -> tuple[Quote, QuoteReasons]:
    """Turn ``raw`` (price units) into an integer :class:`Quote` (ticks, lots); see the module
    docstring for the steps. ``mid`` in price units (distances for the adverse gate and the
    asymmetric penalty are measured from it); ``best_*_ticks`` the current touch (``None`` = side
    empty, no clamp); ``order_size_lots`` the size of both sides unless ``bid_size_lots`` /
    ``ask_size_lots`` override it. ``adverse`` ``None`` or ``threshold None`` disables the gate."""
    tick = instrument.price.step_float
    rb = ""
    ra = ""
    if not math.isfinite(mid) or mid <= 0:
        reasons = QuoteReasons(bid="no_mid", ask="no_mid")
        return Quote(instrument.symbol, None, 0, None, 0, ts_ms, reasons.text()), reasons

    bid = raw.bid
    ask = raw.ask
    if bid is None or not math.isfinite(bid):
        bid = None
        rb = raw.why or "model"
    if ask is None or not math.isfinite(ask):
        ask = None
        ra = raw.why or "model"
    db = mid - bid if bid is not None else raw.delta_bid
    da = ask - mid if ask is not None else raw.delta_ask

    # 2. asymmetric inventory penalty
    if inventory is not None and inventory.asymmetric and math.isfinite(db) and math.isfinite(da):
        nb, na = asymmetric_deltas(db, da, inventory.q)
        if nb != db and bid is not None:
            db = nb
            rb = _add(rb, "asym")
        if na != da and ask is not None:
            da = na
            ra = _add(ra, "asym")

    # 3. adverse-selection gate
    if adverse is not None and adverse.threshold is not None:
        thr = adverse.threshold
        pull = adverse.action == "pull"
        if bid is not None and p_adverse_bid > thr:
            if pull:
                bid = None
                rb = _add(rb, "adverse_pull")
            else:
                db = _widen(db, adverse.widen_factor, tick)
                rb = _add(rb, "adverse_widen")
        if ask is not None and p_adverse_ask > thr:
            if pull:
                ask = None
                ra = _add(ra, "adverse_pull")
            else:
                da = _widen(da, adverse.widen_factor, tick)
                ra = _add(ra, "adverse_widen")

    # 4. round: bid down, ask up (an untouched side rounds the model's own price, not mid - d)
    bpx = None
    apx = None
    if bid is not None:
        x = (bid if db == mid - bid else mid - db) / tick
        bpx = math.floor(x + ROUND_EPS_TICKS + ROUND_EPS_REL * abs(x))
    if ask is not None:
        x = (ask if da == ask - mid else mid + da) / tick
        apx = math.ceil(x - ROUND_EPS_TICKS - ROUND_EPS_REL * abs(x))

    # 5. post-only clamp
    if bpx is not None and best_ask_ticks is not None and bpx >= best_ask_ticks:
        bpx = best_ask_ticks - 1
        rb = _add(rb, "post_only")
    if apx is not None and best_bid_ticks is not None and apx <= best_bid_ticks:
        apx = best_bid_ticks + 1
        ra = _add(ra, "post_only")

    # 6. minimum spread, outwards
    ms = min_spread_ticks if min_spread_ticks > 1 else 1
    if bpx is not None and apx is not None and apx - bpx < ms:
        short = ms - (apx - bpx)
        down = short // 2
        up = short - down
        if down:
            bpx -= down
            rb = _add(rb, "min_spread")
        apx += up
        ra = _add(ra, "min_spread")
    if bpx is not None and bpx <= 0:
        bpx = None
        rb = _add(rb, "nonpositive")

    # 7. sizes, 8. limits
    bq = 0
    aq = 0
    if bpx is not None:
        bpx, bq, rb = _size_within(instrument, order_size_lots if bid_size_lots is None else bid_size_lots, bpx,
                                   inventory.bid_room_lots if inventory is not None else None, rb)
    if apx is not None:
        apx, aq, ra = _size_within(instrument, order_size_lots if ask_size_lots is None else ask_size_lots, apx,
                                   inventory.ask_room_lots if inventory is not None else None, ra)

    reasons = QuoteReasons(bid=rb, ask=ra)
    return Quote(instrument.symbol, bpx, bq, apx, aq, ts_ms, reasons.text() if rb or ra else ""), reasons


def _size_within(instrument: Instrument, lots: int, px_ticks: int, room_lots: int | None,
                 why: str) -> tuple[int | None, int, str]:
    """Steps 7-8 for one side: size it (:func:`_size`), then pull it (``None``, size 0, reason
    ``limit``) if the size exceeds the inventory room (``None`` = no limit). Returns
    ``(price_ticks, size_lots, reasons)``."""
    q, code = _size(instrument, lots, px_ticks)
    if code:
        why = _add(why, code)
    if room_lots is not None and q > room_lots:
        return None, 0, _add(why, "limit")
    return px_ticks, q, why


def audit_record(
    *,
    instrument: Instrument,
    quoter_name: str,
    state: MarketState,
    raw: RawQuote,
    quote: Quote,
    reasons: QuoteReasons,
    calibration: Calibration | None = None,
    inventory: InventoryDecision | None = None,
    features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The explainable decision record (a JSON-ready dict). Build it only when it will be logged.

    Prices: ``raw_*``, ``r``, ``delta_*`` in price units (floats); ``bid_px``/``ask_px`` final, as
    exact decimal strings; sizes as decimal strings of base quantity."""
    pg = instrument.price
    qg = instrument.qty
    feats: dict[str, Any] = {
        "ofi": state.ofi,
        "imbalance": state.imbalance,
        "vpin": state.vpin,
        "spread": state.spread,
    }
    if features:
        feats.update(features)
    rec: dict[str, Any] = {
        "ts_ms": state.ts_ms,
        "symbol": instrument.symbol,
        "quoter": quoter_name,
        "mid": state.mid,
        "best_bid": state.best_bid,
        "best_ask": state.best_ask,
        "features": feats,
        "p_adverse_bid": state.p_adverse_bid,
        "p_adverse_ask": state.p_adverse_ask,
        "sigma": state.sigma,
        "A": state.A,
        "kappa": state.kappa,
        "t_left_s": state.t_left_s if math.isfinite(state.t_left_s) else None,
        "q": state.q,
        "r": raw.reservation,
        "delta_bid": raw.delta_bid,
        "delta_ask": raw.delta_ask,
        "raw_bid": raw.bid,
        "raw_ask": raw.ask,
        "bid_px": pg.to_str(quote.bid_px) if quote.bid_px is not None else None,
        "ask_px": pg.to_str(quote.ask_px) if quote.ask_px is not None else None,
        "bid_qty": qg.to_str(quote.bid_qty) if quote.bid_px is not None else None,
        "ask_qty": qg.to_str(quote.ask_qty) if quote.ask_px is not None else None,
        "bid_reason": reasons.bid,
        "ask_reason": reasons.ask,
        "bid_pulled": quote.bid_px is None,
        "ask_pulled": quote.ask_px is None,
    }
    if raw.why:
        rec["model_why"] = raw.why
    if calibration is not None:
        rec["calibration"] = {
            "source": calibration.source,
            "sigma_source": calibration.sigma_source,
            "r2": calibration.r2 if math.isfinite(calibration.r2) else None,
            "n": calibration.n,
            "n_points": calibration.n_points,
            "clamped": calibration.clamped,
            "reason": calibration.reason,
        }
    if inventory is not None:
        rec["inventory"] = {
            "position_lots": inventory.position_lots,
            "limit_lots": inventory.limit_lots,
            "bid_room_lots": inventory.bid_room_lots,
            "ask_room_lots": inventory.ask_room_lots,
            "vol_scale": inventory.scale,
            "penalty": "asymmetric" if inventory.asymmetric else "symmetric",
        }
    return rec


class SessionClock:
    """Finite-horizon sessions for A-S ``mode = "session"``: ``t_left_s(ts_ms)`` counts down from
    ``horizon_s`` to 0 (seconds); the first event at or after the session end starts a new session
    at that event's time. Pure: time comes from the events."""

    __slots__ = ("horizon_ms", "start_ms")

    def __init__(self, horizon_s: float) -> None:
        if not horizon_s > 0:
            raise ValueError("horizon_s must be > 0")
        self.horizon_ms = horizon_s * 1000.0
        self.start_ms: int | None = None

    def t_left_s(self, ts_ms: int) -> float:
        if self.start_ms is None or ts_ms - self.start_ms >= self.horizon_ms:
            self.start_ms = ts_ms
        elapsed = ts_ms - self.start_ms
        if elapsed < 0:  # an event older than the session start: treat as the start
            elapsed = 0
        return (self.horizon_ms - elapsed) / 1000.0


class QuotingPipeline:
    """One call per tick: touch + calibration + inventory + adverse probabilities -> :class:`Quote`.

    Pure and cheap (plain floats and ints; no numpy). The engine owns one per symbol::

        pipe = QuotingPipeline(quoter, instrument, QuotingParams(...), InventoryParams(...), AdverseParams(...))
        # (from the config: daemon.wiring.quoting_pipeline(settings, instrument))
        quote = pipe.step(ts_ms=..., best_bid_ticks=..., best_ask_ticks=..., position_lots=...,
                          calibration=cal.estimate(), ofi=..., p_adverse_bid=..., ...)
        if want_audit: log.info("quote_audit", **pipe.audit())

    ``q`` fed to the quoter is ``position / order_size`` (order-size units). ``sigma_ref`` (price/
    sqrt(s)) drives the volatility scaling of the limits (default ``InventoryParams.vol_ref``).
    """

    def __init__(
        self,
        quoter: Quoter,
        instrument: Instrument,
        params: QuotingParams,
        inventory: InventoryParams,
        adverse: AdverseParams | None = None,
    ) -> None:
        self.quoter = quoter
        self.instrument = instrument
        self.params = params
        self.adverse = adverse
        self.tick = instrument.price.step_float
        self.order_lots = order_size_lots(instrument, params.order_size)
        # q in order-size units of the *configured* size (before min-notional bumps)
        self.inventory = InventoryControl(inventory, instrument, params.order_size)
        self.session = SessionClock(params.horizon_s) if params.horizon_mode == "session" else None
        self.min_spread_ticks = params.min_spread_ticks
        self._last: tuple | None = None
        # InventoryControl.decide is a pure function of its inputs: the last call's, and its answer
        self._inv_key: tuple | None = None
        self._inv_decision: InventoryDecision | None = None

    def step(
        self,
        *,
        ts_ms: int,
        best_bid_ticks: int | None,
        best_ask_ticks: int | None,
        position_lots: int,
        calibration: Calibration,
        ofi: float = 0.0,
        imbalance: float = 0.0,
        vpin: float = 0.0,
        p_adverse_bid: float = 0.0,
        p_adverse_ask: float = 0.0,
        sigma_ref: float | None = None,
    ) -> Quote:
        """Decide the quote for this tick. Without a two-sided uncrossed touch both sides are
        pulled (reason ``no_book``)."""
        inst = self.instrument
        if best_bid_ticks is None or best_ask_ticks is None or best_bid_ticks >= best_ask_ticks:
            self._last = None
            return Quote(inst.symbol, None, 0, None, 0, ts_ms, "bid:no_book;ask:no_book")
        tick = self.tick
        bb = best_bid_ticks * tick
        ba = best_ask_ticks * tick
        mid = 0.5 * (bb + ba)
        t_left = self.session.t_left_s(ts_ms) if self.session is not None else math.inf
        sigma = calibration.sigma
        key = (position_lots, mid, sigma, sigma_ref)
        decision = self._inv_decision
        if decision is None or key != self._inv_key:
            decision = self.inventory.decide(position_lots, mid, sigma, sigma_ref)
            self._inv_key = key
            self._inv_decision = decision
        state = MarketState(
            ts_ms=ts_ms, mid=mid, best_bid=bb, best_ask=ba, tick=tick, q=decision.q, sigma=sigma,
            A=calibration.A, kappa=calibration.kappa, t_left_s=t_left, ofi=ofi, imbalance=imbalance, vpin=vpin,
            spread=ba - bb, p_adverse_bid=p_adverse_bid, p_adverse_ask=p_adverse_ask,
        )
        raw = self.quoter.quote(state)
        quote, reasons = finalize(
            raw, instrument=inst, mid=mid, best_bid_ticks=best_bid_ticks, best_ask_ticks=best_ask_ticks,
            order_size_lots=self.order_lots, ts_ms=ts_ms, inventory=decision, p_adverse_bid=p_adverse_bid,
            p_adverse_ask=p_adverse_ask, adverse=self.adverse, min_spread_ticks=self.min_spread_ticks,
        )
        self._last = (state, raw, quote, reasons, calibration, decision)
        return quote

    def audit(self, features: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Audit record of the last :meth:`step` (``None`` if it had no book). Call it at the
        configured audit rate only: this is where the dict is built."""
        if self._last is None:
            return None
        state, raw, quote, reasons, cal, decision = self._last
        return audit_record(
            instrument=self.instrument, quoter_name=getattr(self.quoter, "name", type(self.quoter).__name__),
            state=state, raw=raw, quote=quote, reasons=reasons, calibration=cal, inventory=decision,
            features=features,
        )
