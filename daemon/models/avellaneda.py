"""Avellaneda-Stoikov (2008) optimal quotes, exactly as the paper.

M. Avellaneda, S. Stoikov, "High-frequency trading in a limit order book", Quantitative Finance
8(3):217-224, 2008.

* reservation (indifference) price, eq. (29):  ``r = s - q * gamma * sigma**2 * (T - t)``
* total spread, eq. (30): ``delta_a + delta_b = gamma * sigma**2 * (T - t) + (2/gamma) * ln(1 + gamma/kappa)``
  centred on ``r`` (not on the mid ``s``). Hence, measured from the mid::

      delta_b = s - p_b = (1 + 2q)/2 * gamma*sigma**2*(T-t) + (1/gamma) ln(1 + gamma/kappa)
      delta_a = p_a - s = (1 - 2q)/2 * gamma*sigma**2*(T-t) + (1/gamma) ln(1 + gamma/kappa)

Units: ``sigma**2`` is a variance of the mid per unit of the time in which ``T - t`` is measured
(the daemon uses seconds: sigma in price/sqrt(s)); ``kappa`` per price unit; ``q`` in order-size units.

**Where the seed chapter differs.** The seed text gives ``delta_b = delta_a = (1/gamma) ln(1+gamma/kappa)
+ gamma*sigma**2*(T-t)*q/2``: no skew (quotes centred on the mid), ``q`` multiplying the half-spread
term, so the total spread goes wrong and turns negative for ``q < 0``. The paper wins; this module
implements eqs. (29)-(30) and the seed formula is not used anywhere.

All functions accept floats or numpy arrays (vectorised simulation uses them on arrays of paths).
"""

from __future__ import annotations

import math

import numpy as np

from daemon.models.base import MarketState, RawQuote


def reservation_price(s, q, gamma, sigma, tau):
    """Eq. (29): ``r = s - q*gamma*sigma**2*tau`` with ``tau = T - t`` (same time unit as sigma**2)."""
    return s - q * gamma * sigma * sigma * tau


def total_spread(gamma, sigma, tau, kappa):
    """Eq. (30): ``gamma*sigma**2*tau + (2/gamma)*ln(1 + gamma/kappa)`` (price units)."""
    return gamma * sigma * sigma * tau + (2.0 / gamma) * np.log1p(gamma / kappa)


def half_spread(gamma, sigma, tau, kappa):
    """Half of :func:`total_spread`: the distance of each quote from the reservation price."""
    return 0.5 * total_spread(gamma, sigma, tau, kappa)


def quotes(s, q, gamma, sigma, tau, kappa):
    """Bid and ask prices ``r -/+ total_spread/2``. Returns ``(bid, ask)``."""
    r = reservation_price(s, q, gamma, sigma, tau)
    h = half_spread(gamma, sigma, tau, kappa)
    return r - h, r + h


def deltas(s, q, gamma, sigma, tau, kappa):
    """``(delta_b, delta_a)``: distances of bid and ask from the mid ``s`` (may be negative for a
    large inventory: the quote then sits on the other side of the mid)."""
    bid, ask = quotes(s, q, gamma, sigma, tau, kappa)
    return s - bid, ask - s


class AvellanedaStoikov:
    """The A-S quoter with a finite session horizon or a rolling horizon.

    ``horizon_s`` is ``T`` in seconds. ``mode = "session"``: ``T - t`` is ``state.t_left_s``
    (the engine counts down to the session end, then restarts the session). ``mode = "rolling"``:
    ``T - t`` is fixed at ``horizon_s`` on every tick (a stationary approximation).
    """

    name = "avellaneda"

    def __init__(self, gamma: float, horizon_s: float = 300.0, mode: str = "rolling") -> None:
        if gamma <= 0:
            raise ValueError("gamma must be > 0")
        if mode not in ("session", "rolling"):
            raise ValueError("mode must be 'session' or 'rolling'")
        self.gamma = gamma
        self.horizon_s = horizon_s
        self.mode = mode

    def tau(self, state: MarketState) -> float:
        if self.mode == "rolling":
            return self.horizon_s
        return max(0.0, min(self.horizon_s, state.t_left_s))

    def quote(self, state: MarketState) -> RawQuote:
        tau = self.tau(state)
        g = self.gamma
        s = state.mid
        var = state.sigma * state.sigma
        r = s - state.q * g * var * tau
        h = 0.5 * (g * var * tau + (2.0 / g) * math.log1p(g / state.kappa))
        bid, ask = r - h, r + h
        return RawQuote(bid=bid, ask=ask, reservation=r, delta_bid=s - bid, delta_ask=ask - s)
