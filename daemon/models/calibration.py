"""Online calibration of the quoters' market parameters: ``sigma``, ``A`` and ``kappa``.

Pure and incremental: the engine feeds public trades (with the mid at the time of the trade) and
timer ticks; no clock, no I/O. Units follow :mod:`daemon.models.base`:

* ``sigma``: std of the mid in **price units per sqrt(second)**. It is *not* estimated here: the
  features layer owns realized volatility and passes it in with :meth:`Calibrator.set_sigma`
  (a float). A missing / non-finite / non-positive value falls back to ``sigma_fallback``.
* ``A``: fill intensity at zero distance, **per second**; ``kappa``: its decay **per price unit**;
  the model is ``lambda(delta) = A * exp(-kappa * delta)`` (Avellaneda-Stoikov 2008 eq. 12).

How A and kappa are fitted (the hftbacktest GLFT tutorial way)
--------------------------------------------------------------
For each public trade we record ``delta = |trade price - mid at that time|`` (price units) and put
it in a depth bucket ``floor(delta / w)`` with ``w = bucket_ticks * tick``. Over the rolling window
of ``window_s`` seconds we count, for every threshold ``d_i = i*w``, the number of trades that
reached **at least** that depth, ``N_i = #{delta >= d_i}``, and turn it into a rate per second
``lambda_i = N_i / span_s``. Then ordinary least squares on::

    ln lambda_i = ln A - kappa * d_i

gives ``kappa = -slope`` and ``A = exp(intercept)``.

*Weighting* (``fit_weighting``). ``"counts"`` (default) weights each point by its count ``N_i``,
because ``var(ln N_i) ~ 1/N_i`` (Poisson, delta method); ``"none"`` is the tutorial's plain OLS.
Unweighted, the deep thresholds with a handful of trades carry as much weight as the touch and
dominate the error: on synthetic Poisson arrivals (A = 20/s, kappa = 5, 600 s, N ~ 12000 trades)
the relative std of A is ~8.8/sqrt(N) unweighted vs ~1.2/sqrt(N) weighted (kappa: 4.2 vs 1.2), the
latter close to the maximum-likelihood bound 1/sqrt(N).

*Why cumulative "depth >= delta" rates and not per-bucket rates.* ``lambda(delta)`` in the model is
the rate at which a resting quote at distance ``delta`` gets executed, and a market order executes
that quote iff it walks at least ``delta`` away from the mid. So ``N_i / span`` estimates
``lambda(d_i)`` itself, intercept and slope both. A per-bucket count estimates the density
``-d lambda / d delta * w = kappa * A * w * exp(-kappa*delta)``: the same slope but an intercept of
``ln(kappa*A*w)``, which would need a correction and is noisier (each bucket holds fewer trades).
The cumulative points are not independent (each contains the deeper ones), so the reported ``r2`` is
optimistic: it is a sanity gate (a decaying, roughly exponential profile), not a test statistic.

*Arrivals, not prints.* One aggressive order that walks several levels prints one trade per level
(same timestamp, same taker side). Counted print by print, a single sweep would add several
"fills" at the shallow depths, while a resting quote there is filled once. With ``merge_sweeps``
(and the taker ``side`` given to :meth:`Calibrator.on_trade`) consecutive prints with the same
``ts_ms`` and side are folded into one arrival at the deepest depth reached (hftbacktest measures
the deepest trade depth per time step for the same reason). ``A`` is then a rate of taker
orders per second.

Only thresholds with at least ``min_bucket_trades`` trades enter the fit (``N_i`` is non-increasing
in ``i``, so these form a prefix ``i = 0..m-1``); trades deeper than ``max_depth_ticks`` count in
the last bucket (they did reach every shallower threshold).

Fallback. While the window holds fewer than ``min_trades`` trades, fewer than ``min_points`` usable
thresholds, a non-decaying profile (``kappa <= 0``) or ``r2 < min_r2``, the estimate is the
configured ``A_fallback`` / ``kappa_fallback`` with ``source = "fallback"`` and a ``reason``, so a
quiet symbol never fails to warm up. A successful fit is clamped into ``A_bounds`` / ``kappa_bounds``
(``clamped = True`` when that changed a value).

Cost: ``on_trade`` is O(1) (append + one counter); eviction is O(1) amortised per trade; the fit is
O(max_depth_ticks / bucket_ticks) and runs only from :meth:`Calibrator.on_timer`, at most every
``refit_interval_s``. Memory is bounded by ``max_trades`` (oldest dropped first; the rate span then
starts at the newest dropped trade so the rate stays unbiased).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import msgspec

from daemon.native import load_native

_EPS_BUCKET = 1e-6  # in bucket units: 1 tick computed as 0.0999999 from floats is still 1 tick


class Calibration(msgspec.Struct, gc=False):
    """One calibration estimate (units in the module docstring).

    ``source`` is ``"fit"`` or ``"fallback"`` for ``A``/``kappa``; ``sigma_source`` is
    ``"features"`` or ``"fallback"``. ``n`` = trades in the window, ``n_points`` = depth thresholds
    used by the fit, ``r2`` the fit's coefficient of determination (``nan`` if no fit was tried),
    ``reason`` why the fallback is in force (``""`` for a fit)."""

    sigma: float
    A: float
    kappa: float
    r2: float
    n: int
    n_points: int
    source: str
    sigma_source: str = "fallback"
    clamped: bool = False
    reason: str = ""
    ts_ms: int = 0


@dataclass(frozen=True, slots=True)
class CalibrationParams:
    """Calibration window, fit gates and fallbacks (the defaults are ``[calibration]``'s;
    :mod:`daemon.wiring` maps the config).

    ``window_s``: rolling trade window (seconds); ``min_trades``: trades needed before a fit;
    ``sigma_fallback``: price/sqrt(s); ``A_fallback``: per second; ``kappa_fallback``: per price
    unit; ``A_bounds``, ``kappa_bounds``, ``sigma_bounds``: clamps (same units); ``bucket_ticks``:
    depth bucket width (ticks); ``max_depth_ticks``: deepest threshold (ticks);
    ``min_bucket_trades``: trades a threshold needs to enter the fit; ``min_points``: thresholds a
    fit needs; ``min_r2``: fit quality gate; ``max_trades``: memory cap on the window;
    ``refit_interval_s``: seconds of event time between refits; ``fit_weighting``: ``"counts"`` or
    ``"none"``; ``merge_sweeps``: fold one taker order's prints into one arrival."""

    window_s: float = 300.0
    min_trades: int = 50
    sigma_fallback: float = 5.0
    A_fallback: float = 1.0
    kappa_fallback: float = 0.5
    A_bounds: tuple[float, float] = (1e-4, 1e4)
    kappa_bounds: tuple[float, float] = (1e-4, 1e3)
    sigma_bounds: tuple[float, float] = (1e-6, 1e6)
    bucket_ticks: int = 1
    max_depth_ticks: int = 200
    min_bucket_trades: int = 5
    min_points: int = 3
    min_r2: float = 0.5
    max_trades: int = 200_000
    refit_interval_s: float = 1.0
    fit_weighting: str = "counts"
    merge_sweeps: bool = True


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def fit_exponential_intensity(
    depths: list[float], rates: list[float], weights: list[float] | None = None
) -> tuple[float, float, float]:
    """(Weighted) least squares of ``ln rate = ln A - kappa * depth``. Returns ``(A, kappa, r2)``.

    ``depths`` in price units, ``rates`` per second (all > 0), at least 2 points; ``weights``
    optional (``None`` = ordinary least squares). ``r2`` is the (weighted) coefficient of
    determination, 0 when the log-rates have no variance. Plain floats (a few hundred points),
    summed left to right (explicit loops, not ``sum()``, whose float algorithm changed in Python
    3.12): ``daemon/models/_fastmodels.c`` does the same operations and must stay bit-identical."""
    n = len(depths)
    if n < 2 or n != len(rates) or (weights is not None and len(weights) != n):
        raise ValueError("need at least 2 (depth, rate[, weight]) points of equal length")
    ys = list(map(math.log, rates))
    ws = weights if weights is not None else [1.0] * n
    sw = 0.0
    for w in ws:
        sw += w
    if not sw > 0:
        raise ValueError("weights must sum to a positive number")
    sx = 0.0
    for w, x in zip(ws, depths):
        sx += w * x
    sy = 0.0
    for w, y in zip(ws, ys):
        sy += w * y
    mx = sx / sw
    my = sy / sw
    sxx = sxy = syy = 0.0
    for w, x, y in zip(ws, depths, ys):
        dx = x - mx
        dy = y - my
        wdx = w * dx
        sxx += wdx * dx  # w * dx * dx
        sxy += wdx * dy  # w * dx * dy
        syy += w * dy * dy
    if sxx <= 0.0:
        raise ValueError("depths must not all be equal")
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_res = syy - slope * sxy
    r2 = 0.0 if syy <= 0.0 else max(0.0, 1.0 - ss_res / syy)
    return math.exp(intercept), -slope, r2


def intensity_fit_py(counts: list[int], n: int, span_s: float, min_n: int, min_points: int, width: float,
                     weighted: bool) -> tuple[int, float, float, float]:
    """The fit of one refit, from the window's depth-bucket ``counts`` (see the module docstring):
    ``N_0 = n``, ``N_i = N_{i-1} - counts[i-1]``; points ``(i * width, N_i / span_s)`` while
    ``N_i >= min_n``; weights ``N_i`` (``weighted``) or 1. Returns ``(m, A, kappa, r2)``: ``m``
    points; ``A``, ``kappa``, ``r2`` NaN when ``m < min_points`` (no fit). Pure-Python reference of
    :data:`intensity_fit` (the C one when built)."""
    rates: list[float] = []
    cum = n
    for i in range(len(counts)):
        if i:
            cum -= counts[i - 1]
        if cum < min_n:
            break
        rates.append(cum / span_s)
    m = len(rates)
    if m < min_points or m < 2:
        return m, math.nan, math.nan, math.nan
    depths = [i * width for i in range(m)]
    weights = [r * span_s for r in rates] if weighted else None
    A, kappa, r2 = fit_exponential_intensity(depths, rates, weights)
    return m, A, kappa, r2


#: the refit's fit: C (``_fastmodels``) when built and ``MMD_PURE_PYTHON`` is unset, else the reference
_fastmodels = load_native("daemon.models._fastmodels")
intensity_fit = _fastmodels.intensity_fit if _fastmodels is not None else intensity_fit_py


class Calibrator:
    """Rolling-window calibration of ``A``/``kappa`` from public trades, plus the ``sigma`` input.

    ``tick`` is the instrument's tick size in price units (float). Use::

        cal = Calibrator(CalibrationParams(), tick=0.1)   # daemon.wiring.calibration_params(settings)
        cal.on_trade(ts_ms, price, qty, mid)      # every public trade (floats, price units)
        cal.set_sigma(features_sigma)             # price/sqrt(s), whenever the features update it
        cal.on_timer(ts_ms)                       # evicts old trades, refits at most every refit_interval_s
        c = cal.estimate()                        # O(1): the latest Calibration

    Bad input (non-finite or negative price/mid/qty) is rejected: ``on_trade`` returns False and
    ``rejected[reason]`` counts it (the engine logs the counters). A trade older than the newest
    one seen is kept, timed at the newest time (``late`` counts these), so no data is lost.
    """

    __slots__ = (
        "params", "tick", "width", "nb", "window_ms", "_trades", "_counts", "_first_ms", "_floor_ms",
        "_last_ms", "_last_fit_ms", "_sigma", "_sigma_source", "_est", "rejected", "late", "merged",
        "_sweep", "_sigma_in", "_refit_ms",
    )

    def __init__(self, params: CalibrationParams, tick: float) -> None:
        if not (tick > 0 and math.isfinite(tick)):
            raise ValueError(f"tick must be a positive finite price, got {tick!r}")
        self.params = params
        cfg = params
        self.tick = float(tick)
        self.width = cfg.bucket_ticks * self.tick
        self.nb = max(2, cfg.max_depth_ticks // cfg.bucket_ticks + 1)
        self.window_ms = int(round(cfg.window_s * 1000.0))
        self._trades: deque[tuple[int, int]] = deque()  # (ts_ms, bucket)
        self._counts = [0] * self.nb
        self._first_ms: int | None = None  # first event seen (trade or timer): start of observation
        self._floor_ms: int | None = None  # time of the newest trade dropped by the memory cap
        self._last_ms: int | None = None
        self._last_fit_ms: int | None = None
        self._sigma = float(_clamp(cfg.sigma_fallback, *cfg.sigma_bounds))
        self._sigma_source = "fallback"
        self._sigma_in: float | None = None  # the last usable set_sigma input (repeating it is a no-op)
        self._refit_ms = cfg.refit_interval_s * 1000.0
        self.rejected: dict[str, int] = {}
        self.late = 0
        self.merged = 0  # prints folded into the previous arrival (same taker order)
        self._sweep: tuple[int, int] | None = None
        self._est = Calibration(
            sigma=self._sigma, A=cfg.A_fallback, kappa=cfg.kappa_fallback, r2=math.nan, n=0,
            n_points=0, source="fallback", sigma_source="fallback", reason="no data",
        )

    # ------------------------------------------------------------------ input
    def _reject(self, why: str) -> bool:
        self.rejected[why] = self.rejected.get(why, 0) + 1
        return False

    def on_trade(self, ts_ms: int, price: float, qty: float, mid: float, side: int = 0) -> bool:
        """Record one public trade at ``price`` (price units) when the mid was ``mid``. ``qty`` is
        only validated (arrivals are counted, not weighted by size). ``side`` is the taker side
        (+1 buy / -1 sell, 0 unknown): with ``merge_sweeps`` consecutive prints of the same side and
        the same ``ts_ms`` are one taker order walking the book and count as **one** arrival at
        the deepest depth it reached. Returns False if rejected."""
        if not (math.isfinite(price) and price > 0):
            return self._reject("bad_price")
        if not (math.isfinite(mid) and mid > 0):
            return self._reject("bad_mid")
        if not (math.isfinite(qty) and qty >= 0):
            return self._reject("bad_qty")
        orig_ts = ts_ms = int(ts_ms)
        if self._last_ms is not None and ts_ms < self._last_ms:
            self.late += 1
            ts_ms = self._last_ms
        if self._first_ms is None:
            self._first_ms = ts_ms
        self._last_ms = ts_ms
        b = int(abs(price - mid) / self.width + _EPS_BUCKET)
        if b >= self.nb:
            b = self.nb - 1
        trades = self._trades
        if trades and trades[0][0] < ts_ms - self.window_ms:
            self._evict(ts_ms)  # keeps memory bounded by the window even without timer ticks
        if side and self.params.merge_sweeps:
            key = (orig_ts, side)  # the exchange time of the print, not the re-stamped one
            if key == self._sweep and trades:  # _sweep always names the newest entry
                b0 = trades[-1][1]
                if b > b0:
                    self._counts[b0] -= 1
                    self._counts[b] += 1
                    trades[-1] = (ts_ms, b)
                self.merged += 1
                return True
            self._sweep = key
        else:
            self._sweep = None
        if len(trades) >= self.params.max_trades:
            t0, b0 = trades.popleft()
            self._counts[b0] -= 1
            self._floor_ms = t0
        trades.append((ts_ms, b))
        self._counts[b] += 1
        return True

    def set_sigma(self, sigma: float | None) -> None:
        """Volatility from the feature state, price units per sqrt(second). ``None`` / non-finite /
        ``<= 0`` means "not available yet": the fallback is used. Clamped to ``sigma_bounds``."""
        if sigma is not None and sigma == self._sigma_in:
            return  # already set from this very input (the features' sigma changes once per sample)
        self._sigma_in = None
        if sigma is not None and math.isfinite(sigma) and sigma > 0:
            self._sigma_in = sigma
            self._sigma = _clamp(float(sigma), *self.params.sigma_bounds)
            self._sigma_source = "features"
        else:
            self._sigma = _clamp(self.params.sigma_fallback, *self.params.sigma_bounds)
            self._sigma_source = "fallback"
        est = self._est
        if est.sigma != self._sigma or est.sigma_source != self._sigma_source:
            self._est = msgspec.structs.replace(est, sigma=self._sigma, sigma_source=self._sigma_source)

    def _evict(self, now_ms: int) -> None:
        cutoff = now_ms - self.window_ms
        trades = self._trades
        counts = self._counts
        while trades and trades[0][0] < cutoff:
            _, b = trades.popleft()
            counts[b] -= 1
    
    def on_timer(self, ts_ms: int) -> Calibration:
        """Advance event time to ``ts_ms``: evict trades older than ``window_s`` and refit if
        ``refit_interval_s`` has passed since the last fit. Returns :meth:`estimate`."""
        ts_ms = int(ts_ms)
        if self._last_ms is None or ts_ms > self._last_ms:
            self._last_ms = ts_ms
        if self._first_ms is None:
            self._first_ms = ts_ms
        now = self._last_ms
        trades = self._trades
        if trades and trades[0][0] < now - self.window_ms:
            self._evict(now)
        if self._last_fit_ms is None or now - self._last_fit_ms >= self._refit_ms:
            self._refit(now)
        return self._est

    def estimate(self) -> Calibration:
        """The latest estimate (O(1); refits happen in :meth:`on_timer` or :meth:`refit`)."""
        return self._est

    @property
    def n_trades(self) -> int:
        return len(self._trades)

    def depth_rates(self, now_ms: int | None = None) -> tuple[list[float], list[float], float]:
        """``(depths, rates, span_s)``: every threshold ``d_i = i*w`` (price units) with its rate of
        trades reaching depth ``>= d_i`` (per second) over the observed span. For audits/plots."""
        now = self._last_ms if now_ms is None else int(now_ms)
        if now is None:
            return [], [], 0.0
        span_s = self._span_s(now)
        depths: list[float] = []
        rates: list[float] = []
        if span_s <= 0:
            return depths, rates, span_s
        cum = 0
        cums = [0] * self.nb
        for i in range(self.nb - 1, -1, -1):
            cum += self._counts[i]
            cums[i] = cum
        for i in range(self.nb):
            depths.append(i * self.width)
            rates.append(cums[i] / span_s)
        return depths, rates, span_s

    def _span_s(self, now: int) -> float:
        start = now - self.window_ms
        if self._first_ms is not None and self._first_ms > start:
            start = self._first_ms
        if self._floor_ms is not None and self._floor_ms > start:
            start = self._floor_ms
        return (now - start) / 1000.0

    # ------------------------------------------------------------------ fit
    def refit(self, now_ms: int | None = None) -> Calibration:
        """Force a refit now (event time ``now_ms``, default the newest time seen)."""
        now = self._last_ms if now_ms is None else int(now_ms)
        if now is None:
            return self._est
        self._evict(now)
        self._refit(now)
        return self._est

    def _fallback(self, now: int, n: int, n_points: int, r2: float, reason: str) -> Calibration:
        cfg = self.params
        return Calibration(
            sigma=self._sigma, A=cfg.A_fallback, kappa=cfg.kappa_fallback, r2=r2, n=n,
            n_points=n_points, source="fallback", sigma_source=self._sigma_source, reason=reason,
            ts_ms=now,
        )

    def _refit(self, now: int) -> None:
        cfg = self.params
        self._last_fit_ms = now
        n = len(self._trades)
        if n < cfg.min_trades:
            self._est = self._fallback(now, n, 0, math.nan, f"thin: {n} < min_trades {cfg.min_trades} trades")
            return
        span_s = self._span_s(now)
        if span_s <= 0:
            self._est = self._fallback(now, n, 0, math.nan, "thin: zero time span")
            return
        m, A, kappa, r2 = intensity_fit(self._counts, n, span_s, cfg.min_bucket_trades, cfg.min_points, self.width,
                                        cfg.fit_weighting == "counts")
        if m < cfg.min_points:
            self._est = self._fallback(now, n, m, math.nan, f"thin: {m} < min_points {cfg.min_points} depths")
            return
        if not (kappa > 0 and math.isfinite(kappa) and math.isfinite(A)):
            self._est = self._fallback(now, n, m, r2, f"poor fit: kappa {kappa:.4g} <= 0")
            return
        if r2 < cfg.min_r2:
            self._est = self._fallback(now, n, m, r2, f"poor fit: r2 {r2:.3f} < {cfg.min_r2}")
            return
        A_c = _clamp(A, *cfg.A_bounds)
        k_c = _clamp(kappa, *cfg.kappa_bounds)
        self._est = Calibration(
            sigma=self._sigma, A=A_c, kappa=k_c, r2=r2, n=n, n_points=m, source="fit",
            sigma_source=self._sigma_source, clamped=(A_c != A or k_c != kappa), ts_ms=now,
        )
