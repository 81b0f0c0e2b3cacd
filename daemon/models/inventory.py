"""Inventory control: position limits, the quadratic inventory penalty, hedge ratios.

Pure functions of their inputs (no clock, no I/O). Units:

* positions are ``int`` lots of the instrument's ``qty_step`` inside the core; limits in the config
  are base units (``max_position``, e.g. BTC) and quote notional (``max_notional``, USDT);
* ``q`` is the inventory in **order-size units** (``position / order_size``, signed), as in
  :mod:`daemon.models.base`; ``sigma`` in price/sqrt(s); ``dt`` in seconds.

Position limits
---------------
The effective limit in lots is ``L = min(floor(max_position_eff / qty_step),
floor(max_notional_eff / (mid * qty_step)))``. The room on each side is how many lots a full fill
may add before breaching it: ``bid_room = L - position`` (buying), ``ask_room = L + position``
(selling). A side whose order size exceeds its room is **not quoted** (:func:`daemon.models.quoting.finalize`
pulls it with reason ``limit``): "position + order size beyond max_position or max_notional". A side
that only reduces ``|position|`` always has room (e.g. long beyond a shrunken limit: the ask stays).

Volatility-regime scaling (``vol_scaling = c >= 0``, reference ``sigma_ref``)::

    scale = 1 / (1 + c * max(0, sigma / sigma_ref - 1))      in (0, 1]
    max_position_eff = scale * max_position ;  max_notional_eff = scale * max_notional

``c = 0`` disables it; below the reference volatility the limits are the configured ones; with
``c = 1`` the limits halve at twice the reference volatility.

Penalty modes (``InventoryParams.penalty``)
-------------------------------------------
* ``symmetric``: the quoter's own quadratic penalty (A-S reservation shift ``q*gamma*sigma^2*(T-t)``,
  GLFT skew ``sigma*c2*q``) moves *both* quotes by the same amount: the side that increases ``|q|``
  is widened and the side that reduces it is tightened by the same distance. Nothing is added.
* ``asymmetric``: penalise only the side that increases ``|q|``. The widening of that side is kept,
  but the reducing side is not tightened: its distance from the mid is floored at the model's
  ``q = 0`` half-spread ``(delta_bid + delta_ask) / 2`` (exact for A-S and GLFT, whose total spread
  does not depend on ``q``). This stops the quoter from crossing the spread to dump inventory
  (it never pays more than the flat quote to reduce) while keeping the deterrent against growing it.
  Applied by :func:`asymmetric_deltas` (``finalize`` calls it when ``decision.asymmetric``).

Hedge ratios
------------
:class:`HedgeRatios` keeps a rolling OLS beta of each symbol's log-returns on a reference symbol's
log-returns over the last ``hedge_window`` synchronous samples: ``beta_i = cov(r_i, r_ref) /
var(r_ref)``. The suggested hedge in the reference symbol, making the book beta-neutral, is::

    notional_hedge = -sum_i beta_i * N_i      (N_i = q_i * P_i, signed notional of symbol i)
    q_hedge        = notional_hedge / P_ref = -sum_i beta$_i * q_i,  beta$_i = beta_i * P_i / P_ref

(``beta$`` is the "dollar beta" of price changes; the reference symbol has ``beta = 1``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from daemon.core.instrument import Instrument


def inventory_penalty(gamma: float, q: float, sigma: float, dt: float) -> float:
    """Quadratic running inventory penalty ``gamma * q**2 * sigma**2 * dt`` (price units x q units).

    ``sigma`` per sqrt(second), ``dt`` seconds. It is the variance cost of holding ``q`` for ``dt``
    that underlies the A-S reservation price (``d/dq`` of ``gamma*q^2*sigma^2*tau/2`` is the
    reservation shift ``q*gamma*sigma^2*tau``). Used by the RL reward and logs."""
    return gamma * q * q * sigma * sigma * dt


def marginal_inventory_penalty(gamma: float, q: float, side: int, sigma: float, dt: float) -> float:
    """Change of :func:`inventory_penalty` if one fill on ``side`` (+1 buy, -1 sell) moves ``q`` by
    ``side``: ``gamma*sigma^2*dt*(2*side*q + 1)``. Positive when the fill increases ``|q|``
    (for ``|q| >= 1/2``)."""
    return gamma * sigma * sigma * dt * (2.0 * side * q + 1.0)


def vol_scale(vol_scaling: float, sigma: float | None, sigma_ref: float | None) -> float:
    """Limit multiplier ``1 / (1 + c*max(0, sigma/sigma_ref - 1))`` (see module docstring).
    Returns 1.0 when ``c == 0`` or either volatility is missing / non-positive / non-finite."""
    if vol_scaling <= 0 or sigma is None or sigma_ref is None:
        return 1.0
    if not (math.isfinite(sigma) and math.isfinite(sigma_ref)) or sigma_ref <= 0 or sigma < 0:
        return 1.0
    excess = sigma / sigma_ref - 1.0
    if excess <= 0:
        return 1.0
    return 1.0 / (1.0 + vol_scaling * excess)


def asymmetric_deltas(delta_bid: float, delta_ask: float, q: float) -> tuple[float, float]:
    """Asymmetric penalty mode: floor the distance of the side that *reduces* ``|q|`` at the
    ``q = 0`` half-spread ``(delta_bid + delta_ask)/2``; the side that increases ``|q|`` keeps its
    model distance. Long (``q > 0``): the ask is the reducing side; short: the bid."""
    h0 = 0.5 * (delta_bid + delta_ask)
    if q > 0 and delta_ask < h0:
        return delta_bid, h0
    if q < 0 and delta_bid < h0:
        return h0, delta_ask
    return delta_bid, delta_ask


@dataclass(init=False)
class InventoryDecision:
    """Limits and penalty mode for one decision.

    ``q`` order-size units; ``position_lots`` lots; ``limit_lots`` the effective limit in lots;
    ``bid_room_lots``/``ask_room_lots`` how many lots a buy/sell fill may add before breaching it
    (may be negative); ``scale`` the vol-scaling multiplier; ``asymmetric`` the penalty mode.
    Its own ``__init__`` as :class:`daemon.models.base.MarketState`'s (built on the per-tick path)."""

    q: float
    position_lots: int
    limit_lots: int
    bid_room_lots: int
    ask_room_lots: int
    scale: float
    asymmetric: bool

    def __init__(self, q: float, position_lots: int, limit_lots: int, bid_room_lots: int, ask_room_lots: int,
                 scale: float = 1.0, asymmetric: bool = False) -> None:
        self.q = q
        self.position_lots = position_lots
        self.limit_lots = limit_lots
        self.bid_room_lots = bid_room_lots
        self.ask_room_lots = ask_room_lots
        self.scale = scale
        self.asymmetric = asymmetric

    def allows(self, side: int, qty_lots: int) -> bool:
        """Would a full fill of ``qty_lots`` on ``side`` (+1 bid / -1 ask) stay within the limits?"""
        room = self.bid_room_lots if side > 0 else self.ask_room_lots
        return qty_lots <= room


@dataclass(frozen=True, slots=True)
class InventoryParams:
    """Position limits (the defaults are ``[inventory]``'s; :mod:`daemon.wiring` maps the config).

    ``max_position``: base units (e.g. BTC); ``max_notional``: quote currency (e.g. USDT);
    ``penalty``: ``"symmetric"`` or ``"asymmetric"`` (module docstring); ``vol_scaling``: the
    coefficient ``c >= 0`` of the volatility-regime scaling (0 = off); ``vol_ref``: its reference
    sigma in price/sqrt(s) (``None``: the caller passes one, or no scaling)."""

    max_position: float = 0.05
    max_notional: float = 5000.0
    penalty: str = "symmetric"
    vol_scaling: float = 0.0
    vol_ref: float | None = None


class InventoryControl:
    """Per-symbol limits from :class:`InventoryParams` for one instrument.

    ``order_size`` (base units) defines ``q = position / order_size``. ``decide`` is O(1)."""

    __slots__ = ("params", "instrument", "order_size", "step", "asymmetric", "_pos_lots")

    def __init__(self, params: InventoryParams, instrument: Instrument, order_size: float) -> None:
        if not (order_size > 0 and math.isfinite(order_size)):
            raise ValueError(f"order_size must be a positive base quantity, got {order_size!r}")
        self.params = params
        self.instrument = instrument
        self.order_size = float(order_size)
        self.step = instrument.qty.step_float
        self.asymmetric = params.penalty == "asymmetric"
        self._pos_lots = math.floor(params.max_position / self.step + 1e-9)

    def q_of(self, position_lots: int) -> float:
        """Inventory in order-size units."""
        return position_lots * self.step / self.order_size

    def decide(
        self, position_lots: int, mid: float, sigma: float | None = None, sigma_ref: float | None = None
    ) -> InventoryDecision:
        """Limits for the current ``position_lots`` at price ``mid`` (price units).
        ``sigma``/``sigma_ref`` (price/sqrt(s)) drive vol scaling; ``sigma_ref`` defaults to
        ``params.vol_ref``."""
        p = self.params
        ref = p.vol_ref if sigma_ref is None else sigma_ref
        scale = vol_scale(p.vol_scaling, sigma, ref)
        step = self.step
        lim = math.floor(scale * p.max_position / step + 1e-9) if scale != 1.0 else self._pos_lots
        if mid > 0 and math.isfinite(mid):
            lim_n = math.floor(scale * p.max_notional / (mid * step) + 1e-9)
            if lim_n < lim:
                lim = lim_n
        else:
            lim = 0  # no usable price: nothing may increase |position|
        return InventoryDecision(
            q=position_lots * step / self.order_size,
            position_lots=position_lots,
            limit_lots=lim,
            bid_room_lots=lim - position_lots,
            ask_room_lots=lim + position_lots,
            scale=scale,
            asymmetric=self.asymmetric,
        )


class HedgeRatios:
    """Rolling OLS betas of symbols' log-returns on a reference symbol's log-returns.

    Feed synchronous mids with :meth:`on_mids` at a fixed sampling interval (the engine's timer).
    A symbol missing from a sample (or the reference missing) simply contributes no return pair for
    that step. O(number of symbols) per sample, memory ``window`` pairs per symbol. The running sums
    are recomputed from the buffer (``math.fsum``) every ``window`` samples to stop floating-point drift.
    """

    def __init__(self, reference: str, symbols: list[str], window: int = 300, min_samples: int = 10) -> None:
        if window < 3:
            raise ValueError("window must be >= 3 samples")
        self.reference = reference
        self.symbols = [s for s in symbols if s != reference]
        self.window = window
        self.min_samples = max(3, min(min_samples, window))
        self._prev: dict[str, float] = {}
        self._buf: dict[str, deque[tuple[float, float]]] = {s: deque() for s in self.symbols}
        self._sums: dict[str, list[float]] = {s: [0.0, 0.0, 0.0, 0.0] for s in self.symbols}  # sx, sy, sxx, sxy
        self._since_resum: dict[str, int] = {s: 0 for s in self.symbols}

    def on_mids(self, mids: Mapping[str, float]) -> None:
        """One synchronous sample of mids (price units) keyed by symbol. A return pair is formed
        only from two consecutive samples that both contain the symbol and the reference."""
        ref_now = mids.get(self.reference)
        ref_prev = self._prev.get(self.reference)
        x = None
        if ref_now is not None and ref_prev is not None and 0 < ref_now < math.inf and ref_prev > 0:
            x = math.log(ref_now / ref_prev)
        for s in self.symbols:
            p_now = mids.get(s)
            p_prev = self._prev.get(s)
            if x is None or p_now is None or p_prev is None or not (0 < p_now < math.inf) or p_prev <= 0:
                continue
            y = math.log(p_now / p_prev)
            self._push(s, x, y)
        # a symbol absent from this sample has no previous mid next time: returns are only ever
        # taken over one sampling step, in step with the reference's
        self._prev = {s: p for s, p in mids.items() if p is not None and p > 0 and math.isfinite(p)}

    def _push(self, s: str, x: float, y: float) -> None:
        buf = self._buf[s]
        sm = self._sums[s]
        buf.append((x, y))
        sm[0] += x
        sm[1] += y
        sm[2] += x * x
        sm[3] += x * y
        if len(buf) > self.window:
            ox, oy = buf.popleft()
            sm[0] -= ox
            sm[1] -= oy
            sm[2] -= ox * ox
            sm[3] -= ox * oy
        self._since_resum[s] += 1
        if self._since_resum[s] >= self.window:
            self._since_resum[s] = 0
            # math.fsum: correctly rounded, so the re-summed betas are the same on every Python
            # (builtin sum() over floats became compensated in 3.12)
            sm[0] = math.fsum([a for a, _ in buf])
            sm[1] = math.fsum([b for _, b in buf])
            sm[2] = math.fsum([a * a for a, _ in buf])
            sm[3] = math.fsum([a * b for a, b in buf])

    def beta(self, symbol: str) -> float | None:
        """OLS slope of ``symbol``'s returns on the reference's; 1.0 for the reference itself;
        ``None`` until ``min_samples`` pairs or when the reference did not move."""
        if symbol == self.reference:
            return 1.0
        buf = self._buf.get(symbol)
        if buf is None or len(buf) < self.min_samples:
            return None
        n = len(buf)
        sx, sy, sxx, sxy = self._sums[symbol]
        var = n * sxx - sx * sx
        if var <= 1e-30 * max(1.0, n * sxx):
            return None
        return (n * sxy - sx * sy) / var

    def hedge_notional(self, notionals: Mapping[str, float]) -> float:
        """``-sum beta_i * N_i`` over symbols with a known beta (quote currency; trade it in the
        reference symbol). Symbols without a beta yet are skipped."""
        h = 0.0
        for s, n in notionals.items():
            b = self.beta(s)
            if b is not None:
                h -= b * n
        return h

    def hedge_qty(self, positions: Mapping[str, float], mids: Mapping[str, float]) -> float | None:
        """Suggested hedge in reference base units, ``q_hedge = -sum beta$_i * q_i`` with
        ``beta$_i = beta_i * P_i / P_ref`` (positions in base units, mids in price units).
        ``None`` without a reference price."""
        p_ref = mids.get(self.reference)
        if not p_ref or p_ref <= 0:
            return None
        notionals = {s: q * mids[s] for s, q in positions.items() if s in mids and mids[s] > 0}
        return self.hedge_notional(notionals) / p_ref
