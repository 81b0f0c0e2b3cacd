"""The one quoter interface: market state in, raw bid/ask prices out.

Every quoter (Avellaneda-Stoikov, GLFT, the RL policy, ...) implements :class:`Quoter`. The engine
builds a :class:`MarketState` on every tick from the book, the feature state, the calibration and the
inventory; the quoter returns a :class:`RawQuote` in *price units* (floats, not yet on the tick grid);
:func:`daemon.models.quoting.finalize` (rounding, post-only clamp, sizes, limits) turns it into the
integer :class:`daemon.core.events.Quote` the risk gate and the paper venue see.

Units (all quoters):

* prices in quote currency per base unit (USDT per BTC), floats;
* ``q`` is the inventory in **quote units of order size** (position / order size, signed), as in
  Avellaneda-Stoikov 2008 where each fill moves the inventory by one;
* ``sigma`` is the standard deviation of the mid **in price units per sqrt(second)**; so ``sigma**2``
  is a variance per second and every horizon ``T - t`` is in **seconds**;
* ``A`` is the fill intensity at zero distance **per second**, ``kappa`` its decay **per price unit**
  (``lambda(delta) = A * exp(-kappa * delta)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(init=False)
class MarketState:
    """What a quoter sees at one decision (see module docstring for units).

    A dataclass for ``==`` and ``repr``, with its own ``__init__``: built once per tick, and mypyc
    (setup.py) compiles a written ``__init__`` natively, not the one ``@dataclass`` generates at
    import (``bench/bench_compiled.py``: the quote step is about 2.5x slower with that one; and
    ``slots=True`` replaces the native class with a plain one)."""

    ts_ms: int
    mid: float
    best_bid: float
    best_ask: float
    tick: float
    q: float
    sigma: float
    A: float
    kappa: float
    t_left_s: float
    ofi: float
    imbalance: float
    vpin: float
    spread: float
    p_adverse_bid: float
    p_adverse_ask: float

    def __init__(self, ts_ms: int, mid: float, best_bid: float, best_ask: float, tick: float, q: float, sigma: float,
                 A: float, kappa: float, t_left_s: float = float("inf"), ofi: float = 0.0, imbalance: float = 0.0,
                 vpin: float = 0.0, spread: float = 0.0, p_adverse_bid: float = 0.0, p_adverse_ask: float = 0.0) -> None:
        self.ts_ms = ts_ms
        self.mid = mid
        self.best_bid = best_bid
        self.best_ask = best_ask
        self.tick = tick
        self.q = q
        self.sigma = sigma
        self.A = A
        self.kappa = kappa
        self.t_left_s = t_left_s
        self.ofi = ofi
        self.imbalance = imbalance
        self.vpin = vpin
        self.spread = spread
        self.p_adverse_bid = p_adverse_bid
        self.p_adverse_ask = p_adverse_ask


@dataclass(init=False)
class RawQuote:
    """A quoter's answer in price units. ``bid``/``ask`` are ``None`` for a side not quoted.
    ``reservation`` is the price the quotes are centred on; ``delta_bid = mid - bid`` and
    ``delta_ask = ask - mid`` (price units). Its own ``__init__`` as :class:`MarketState`'s."""

    bid: float | None
    ask: float | None
    reservation: float
    delta_bid: float
    delta_ask: float
    why: str

    def __init__(self, bid: float | None, ask: float | None, reservation: float, delta_bid: float, delta_ask: float,
                 why: str = "") -> None:
        self.bid = bid
        self.ask = ask
        self.reservation = reservation
        self.delta_bid = delta_bid
        self.delta_ask = delta_ask
        self.why = why


class Quoter(Protocol):
    """A quoting policy. ``quote`` must be a pure function of ``state`` (and the quoter's fixed
    parameters): no clock, no I/O."""

    name: str

    def quote(self, state: MarketState) -> RawQuote: ...
