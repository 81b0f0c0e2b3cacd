"""Volatility features: realized volatility of mid log-returns on a fixed sampling clock, its EWMA
version, and the Garman-Klass estimator from closed candles.

Units
-----
* ``vol_sample_s`` (seconds) is the sampling step ``dt``; samples sit on the grid
  ``t_k = k * dt`` (ms since the epoch, so two processes agree on the grid).
* A return is ``r_k = ln(M_k / M_{k-1})`` with ``M_k`` the mid *after all events whose (clock) time
  is <= t_k* (previous-tick sampling). Returns are dimensionless, **per sample**.
* ``*_per_s`` values are per-sample stds divided by ``sqrt(dt)``: log-return std per sqrt(second).
* :meth:`RealizedVol.sigma_price_per_s` is ``mid * per-second log-return std``: the quoters' sigma in
  **price units per sqrt(second)** (see :mod:`daemon.models.base`).

Clock gaps: when time jumps over ``G`` grid points at once, the first of them receives the
pre-event mid (its return can be non-zero) and the other ``G - 1`` repeat that mid (zero returns).
The rolling window takes at most ``vol_window`` of those zeros; the EWMA decays in closed form by
``lambda**(G-1)``. Both are deterministic functions of the event times.

Garman & Klass (1980), "On the Estimation of Security Price Volatilities from Historical Data",
J. Business 53(1), eq. for the "best analytic scale-invariant" estimator as quoted in the seed:
``sigma^2_GK = 0.5 * (ln H/L)^2 - (2 ln 2 - 1) * (ln C/O)^2`` -- a variance of log price **per
candle**. We divide by the candle duration (s) to get a per-second variance and average the last
``gk_window`` closed candles.
"""

from __future__ import annotations

import math
from collections import deque

from daemon.features.windows import FloatRollingMoments, IntRollingMoments

_GK_C = 2.0 * math.log(2.0) - 1.0


class SampleClock:
    """The fixed sampling grid ``k * step_ms``. ``due(now_ms)`` returns how many grid points are
    strictly before ``now_ms`` and not yet emitted, and advances past them. The grid starts at
    the first grid point strictly after :meth:`start`'s time."""

    __slots__ = ("step_ms", "next_ms", "started")

    def __init__(self, step_ms: int) -> None:
        if step_ms <= 0:
            raise ValueError(f"step_ms must be > 0, got {step_ms}")
        self.step_ms = step_ms
        self.next_ms = 0
        self.started = False

    def start(self, now_ms: int) -> None:
        self.next_ms = (now_ms // self.step_ms + 1) * self.step_ms
        self.started = True

    def due(self, now_ms: int) -> int:
        """Number of grid points ``t`` with ``next_ms <= t < now_ms`` (emitted now)."""
        if not self.started or now_ms <= self.next_ms:
            return 0
        g = (now_ms - self.next_ms - 1) // self.step_ms + 1
        self.next_ms += g * self.step_ms
        return g


class RealizedVol:
    """Rolling and EWMA std of mid log-returns sampled every ``sample_s`` seconds.

    ``window`` returns in the rolling window (sample std, ddof = 1, as the seed's
    ``sqrt(1/(n-1) * sum (r - rbar)^2)``). The EWMA is RiskMetrics-style on squared returns
    (zero mean): ``v_k = lam * v_{k-1} + (1 - lam) * r_k^2`` with ``lam = 0.5**(sample_s / halflife_s)``,
    initialised with the first squared return.

    Update it only through :meth:`sample` (the per-second rolling std is cached until the next
    sample).
    """

    __slots__ = ("sample_s", "lam", "roll", "ewma_var", "n_returns", "last_mid2", "mid", "_rv_per_s")

    def __init__(self, sample_s: float, window: int, halflife_s: float) -> None:
        self.sample_s = sample_s
        self.lam = 0.5 ** (sample_s / halflife_s)
        self.roll = FloatRollingMoments(window)
        self.ewma_var = math.nan
        self.n_returns = 0
        self.last_mid2 = 0  # previous sample's (bid + ask) in ticks, 0 = none yet
        self.mid = math.nan  # last sampled mid, price units
        self._rv_per_s: float | None = None  # cached realized_vol_per_s (None: recompute)

    def sample(self, mid2: int, mid: float, times: int = 1) -> None:
        """Record ``times`` consecutive grid samples of the mid (``mid2 = bid + ask`` in ticks,
        exact; ``mid`` in price units)."""
        if times <= 0:
            return
        self._rv_per_s = None
        self.mid = mid
        if self.last_mid2 == 0:
            self.last_mid2 = mid2
            times -= 1
            if times <= 0:
                return
            r = 0.0
        else:
            r = math.log(mid2 / self.last_mid2)
            self.last_mid2 = mid2
        self._push(r)
        if times > 1:
            zeros = times - 1
            self.roll.push_repeat(0.0, zeros)
            self.ewma_var *= self.lam**zeros
            self.n_returns += zeros

    def _push(self, r: float) -> None:
        self.roll.push(r)
        if self.n_returns == 0:
            self.ewma_var = r * r
        else:
            self.ewma_var = self.lam * self.ewma_var + (1.0 - self.lam) * r * r
        self.n_returns += 1

    # -- reads ---------------------------------------------------------------------------------

    @property
    def realized_vol(self) -> float:
        """Rolling std of per-sample log-returns (dimensionless per sample); NaN before 2 returns."""
        return self.roll.std()

    @property
    def realized_vol_per_s(self) -> float:
        """Rolling log-return std per sqrt(second) (cached between samples)."""
        v = self._rv_per_s
        if v is None:
            v = self._rv_per_s = self.roll.std() / math.sqrt(self.sample_s)
        return v

    @property
    def ewma_vol(self) -> float:
        """EWMA std of per-sample log-returns; NaN before the first return."""
        v = self.ewma_var
        return math.sqrt(v) if v == v else math.nan

    @property
    def ewma_vol_per_s(self) -> float:
        return self.ewma_vol / math.sqrt(self.sample_s)

    def sigma_price_per_s(self, ewma: bool = False) -> float:
        """Quoter sigma: last sampled mid (price) times the per-second log-return std, in price
        units per sqrt(second). NaN while there is not enough data (callers fall back)."""
        s = self.ewma_vol_per_s if ewma else self.realized_vol_per_s
        return self.mid * s


class SpreadStats:
    """Spread z-score: the current spread (ticks) against the rolling distribution of the spread
    sampled on the fixed clock (last ``window`` samples, exact integer moments, ddof = 1).
    ``z = (s - mean) / std``; 0 when the std is 0 (a spread pinned at one tick) or unknown.
    Update it only through :meth:`sample` (mean and std are cached until the next sample)."""

    __slots__ = ("mom", "_mean", "_sd")

    def __init__(self, window: int) -> None:
        self.mom = IntRollingMoments(window)
        self._mean = 0.0
        self._sd: float | None = None  # cached sqrt(var) (0.0: var not > 0; None: recompute)

    def sample(self, spread_ticks: int, times: int = 1) -> None:
        self._sd = None
        for _ in range(min(times, self.mom.n)):
            self.mom.push(spread_ticks)

    def z(self, spread_ticks: int) -> float:
        sd = self._sd
        if sd is None:
            m = self.mom
            v = m.var()
            if v > 0.0:
                self._mean = m.mean()
                sd = math.sqrt(v)
            else:
                sd = 0.0
            self._sd = sd
        if sd == 0.0:
            return 0.0
        return (spread_ticks - self._mean) / sd


def garman_klass_var(o: float, h: float, lo: float, c: float) -> float:
    """Garman-Klass variance of log price for one candle (dimensionless, per candle):
    ``0.5 * ln(H/L)^2 - (2 ln 2 - 1) * ln(C/O)^2``. Prices must be > 0 (any consistent unit)."""
    hl = math.log(h / lo)
    co = math.log(c / o)
    return 0.5 * hl * hl - _GK_C * co * co


class GarmanKlass:
    """Average Garman-Klass variance **per second** over the last ``window`` closed candles.

    Only ``confirm = True`` candles count; a candle whose ``start_ms`` is not later than the last
    accepted one is a duplicate (REST history overlapping the stream) and is skipped. An
    inconsistent candle (non-positive price, ``high < low``, open/close outside ``[low, high]``,
    non-positive duration) raises ``ValueError`` (the caller counts it).
    """

    __slots__ = ("window", "_q", "last_start_ms", "var_per_s")

    def __init__(self, window: int) -> None:
        self.window = window
        self._q: deque[float] = deque(maxlen=window)
        self.last_start_ms = -1
        self.var_per_s = math.nan

    def add(self, start_ms: int, end_ms: int, o: int, h: int, lo: int, c: int) -> bool:
        """Add one closed candle (OHLC in ticks). Returns False for a duplicate."""
        if start_ms <= self.last_start_ms:
            return False
        if lo <= 0 or h < lo or not (lo <= o <= h) or not (lo <= c <= h):
            raise ValueError(f"inconsistent candle O={o} H={h} L={lo} C={c} (ticks)")
        dur_s = (end_ms - start_ms + 1) / 1000.0  # Bybit: end = start + interval - 1 ms
        if dur_s <= 0:
            raise ValueError(f"candle end {end_ms} before start {start_ms}")
        self.last_start_ms = start_ms
        self._q.append(garman_klass_var(o, h, lo, c) / dur_s)
        self.var_per_s = math.fsum(self._q) / len(self._q)
        return True

    def __len__(self) -> int:
        return len(self._q)

    @property
    def vol_per_s(self) -> float:
        """sqrt of the average per-second GK variance (log-price std per sqrt(second)); NaN before
        the first candle. A negative average (possible for GK on tiny samples) gives 0."""
        v = self.var_per_s
        if v != v:
            return math.nan
        return math.sqrt(v) if v > 0.0 else 0.0
