"""Gueant-Lehalle-Fernandez-Tapia (2013) closed-form infinite-horizon quotes.

O. Gueant, C.-A. Lehalle, J. Fernandez-Tapia, "Dealing with the inventory risk: a solution to the
market making problem", Math. Financ. Econ. 7:477-507 (2013), arXiv:1105.3115, section 4
(asymptotic approximation of the optimal quotes)::

    delta_b(q) = (1/gamma) ln(1 + gamma/kappa) + (2q + 1)/2 * sqrt( sigma**2*gamma/(2*kappa*A) * (1 + gamma/kappa)**(1 + kappa/gamma) )
    delta_a(q) = (1/gamma) ln(1 + gamma/kappa) - (2q - 1)/2 * sqrt( ... same ... )

Written with order size Delta and xi as in Gueant (2017, arXiv:1605.01862, eqs. 4.6-4.7), which the
hftbacktest GLFT tutorial uses; with ``Delta = 1`` and ``xi = gamma`` it is exactly the 2013 form::

    c1 = 1/(xi*Delta) * ln(1 + xi*Delta/kappa)
    c2 = sqrt( gamma/(2*A*Delta*kappa) * (1 + xi*Delta/kappa)**(kappa/(xi*Delta) + 1) )
    delta_b = c1 + (Delta/2)*sigma*c2 + sigma*c2*q ;  delta_a = c1 + (Delta/2)*sigma*c2 - sigma*c2*q

Units: sigma in price/sqrt(s), A per second, kappa per price unit, q in order-size units. The quotes
do not depend on a horizon.
"""

from __future__ import annotations

import math

import numpy as np

from daemon.models.base import MarketState, RawQuote


def coefficients(gamma, kappa, A, xi=None, delta=1.0):
    """``(c1, c2)`` of Gueant (2017) eqs. 4.6-4.7; ``xi`` defaults to ``gamma`` (the CARA case)."""
    xi = gamma if xi is None else xi
    c1 = np.log1p(xi * delta / kappa) / (xi * delta)
    c2 = np.sqrt(gamma / (2.0 * A * delta * kappa) * (1.0 + xi * delta / kappa) ** (kappa / (xi * delta) + 1.0))
    return c1, c2


def deltas(q, gamma, sigma, kappa, A, xi=None, delta=1.0):
    """``(delta_b, delta_a)`` distances from the mid for inventory ``q``."""
    c1, c2 = coefficients(gamma, kappa, A, xi, delta)
    half = c1 + 0.5 * delta * sigma * c2
    skew = sigma * c2
    return half + skew * q, half - skew * q


def half_spread(gamma, sigma, kappa, A, xi=None, delta=1.0):
    """``c1 + (Delta/2)*sigma*c2`` (price units), independent of q."""
    c1, c2 = coefficients(gamma, kappa, A, xi, delta)
    return c1 + 0.5 * delta * sigma * c2


class GLFT:
    """GLFT infinite-horizon quoter; quotes are ``mid - delta_b`` and ``mid + delta_a``."""

    name = "glft"

    def __init__(self, gamma: float, xi: float | None = None, order_size_units: float = 1.0) -> None:
        if gamma <= 0:
            raise ValueError("gamma must be > 0")
        self.gamma = gamma
        self.xi = xi
        self.delta = order_size_units
        self._key: tuple[float, float] | None = None
        self._c = (0.0, 0.0)

    def _coeffs(self, kappa: float, A: float) -> tuple[float, float]:
        """``(c1, c2)`` with plain floats (the per-tick path; no numpy scalars), cached for the
        last ``(kappa, A)`` since calibration changes them only on a refit."""
        key = (kappa, A)
        if self._key == key:
            return self._c
        g = self.gamma
        xd = (g if self.xi is None else self.xi) * self.delta
        c1 = math.log1p(xd / kappa) / xd
        c2 = math.sqrt(g / (2.0 * A * self.delta * kappa) * (1.0 + xd / kappa) ** (kappa / xd + 1.0))
        self._key = key
        self._c = (c1, c2)
        return self._c

    def quote(self, state: MarketState) -> RawQuote:
        c1, c2 = self._coeffs(state.kappa, state.A)
        skew = state.sigma * c2
        half = c1 + 0.5 * self.delta * skew
        db = half + skew * state.q
        da = half - skew * state.q
        s = state.mid
        return RawQuote(bid=s - db, ask=s + da, reservation=s - 0.5 * (db - da), delta_bid=db, delta_ask=da)
