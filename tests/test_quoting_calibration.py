"""Online calibration: recovery of A and kappa from synthetic Poisson arrivals, the fit against an
independent numpy reference, fallbacks, clamps, window, memory cap, bad input, sigma input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daemon.models.calibration import CalibrationParams, Calibrator, fit_exponential_intensity

MID = 1000.0
TICK = 0.1


def _poisson_trades(seed: int, A: float, kappa: float, T: float):
    """Trades over [0, T] s: arrivals at total rate A (depth >= 0) and depth ~ Exp(kappa) (price
    units), so the rate of trades reaching depth >= d is exactly A*exp(-kappa*d). Random side."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(A * T)
    ts = np.sort(rng.uniform(0.0, T, n))
    depth = rng.exponential(1.0 / kappa, n)
    side = rng.choice([-1.0, 1.0], n)
    return [(int(t * 1000), MID + s * d) for t, d, s in zip(ts, depth, side)]


def _fed(cfg: CalibrationParams, trades, end_ms: int, start_ms: int = 0) -> Calibrator:
    cal = Calibrator(cfg, TICK)
    cal.on_timer(start_ms)
    for ts, px in trades:
        assert cal.on_trade(ts, px, 0.001, MID)
    cal.on_timer(end_ms)
    return cal


@pytest.mark.parametrize("seed,A,kappa", [(1, 20.0, 5.0), (2, 8.0, 2.0), (3, 30.0, 12.0)])
def test_recovers_A_kappa_from_poisson_arrivals(seed, A, kappa):
    """Count-weighted fit: relative std ~1.2/sqrt(N) for both A and kappa (300-seed Monte Carlo,
    see the module docstring); the tolerance 5/sqrt(N) is about 4 standard deviations."""
    T = 600.0
    trades = _poisson_trades(seed, A, kappa, T)
    cfg = CalibrationParams(window_s=T + 1, min_trades=50)
    est = _fed(cfg, trades, int(T * 1000)).estimate()
    n = len(trades)
    tol = 5.0 / math.sqrt(n)
    assert est.source == "fit", est.reason
    assert est.n == n and est.n_points >= 5
    assert est.A == pytest.approx(A, rel=tol)
    assert est.kappa == pytest.approx(kappa, rel=tol)
    assert est.r2 > 0.95
    assert not est.clamped


def test_unweighted_mode_still_recovers_with_a_wider_tolerance():
    T = 600.0
    trades = _poisson_trades(7, 20.0, 5.0, T)
    cfg = CalibrationParams(window_s=T + 1, fit_weighting="none")
    est = _fed(cfg, trades, int(T * 1000)).estimate()
    tol = 4 * 8.8 / math.sqrt(len(trades))  # plain OLS: rel. std ~8.8/sqrt(N) for A
    assert est.source == "fit"
    assert est.A == pytest.approx(20.0, rel=tol)
    assert est.kappa == pytest.approx(5.0, rel=tol)


@pytest.mark.parametrize("weighting", ["counts", "none"])
def test_fit_matches_numpy_polyfit_reference(weighting):
    """The same points through numpy's (weighted) polyfit, written independently."""
    T = 300.0
    trades = _poisson_trades(11, 10.0, 4.0, T)
    cfg = CalibrationParams(window_s=T + 1, fit_weighting=weighting, min_bucket_trades=5)
    cal = _fed(cfg, trades, int(T * 1000))
    est = cal.estimate()
    # reference: count trades with depth >= i*tick by brute force
    depth = np.abs(np.array([px for _, px in trades]) - MID)
    xs, ys, ws = [], [], []
    for i in range(cfg.max_depth_ticks + 1):
        N = int(np.sum(depth >= i * TICK - 1e-9))
        if N < 5:
            break
        xs.append(i * TICK)
        ys.append(math.log(N / T))
        ws.append(N)
    w = np.sqrt(ws) if weighting == "counts" else None  # polyfit weights multiply residuals
    slope, intercept = np.polyfit(xs, ys, 1, w=w)
    assert est.n_points == len(xs)
    assert est.kappa == pytest.approx(-slope, rel=1e-9)
    assert est.A == pytest.approx(math.exp(intercept), rel=1e-9)


def test_fit_function_exact_on_exact_data():
    xs = [0.0, 0.1, 0.2, 0.3, 0.4]
    rates = [3.0 * math.exp(-7.0 * x) for x in xs]
    A, k, r2 = fit_exponential_intensity(xs, rates)
    assert A == pytest.approx(3.0) and k == pytest.approx(7.0) and r2 == pytest.approx(1.0)
    A, k, r2 = fit_exponential_intensity(xs, rates, [1, 2, 3, 4, 5])
    assert A == pytest.approx(3.0) and k == pytest.approx(7.0)
    with pytest.raises(ValueError):
        fit_exponential_intensity([0.0], [1.0])
    with pytest.raises(ValueError):
        fit_exponential_intensity([0.1, 0.1], [1.0, 2.0])


def test_fallback_while_thin_then_fit():
    cfg = CalibrationParams(window_s=600, min_trades=200, A_fallback=1.5, kappa_fallback=0.7)
    cal = Calibrator(cfg, TICK)
    est = cal.estimate()
    assert (est.source, est.A, est.kappa, est.n) == ("fallback", 1.5, 0.7, 0)
    trades = _poisson_trades(5, 20.0, 5.0, 300.0)
    cal.on_timer(0)
    for ts, px in trades[:150]:
        cal.on_trade(ts, px, 0.001, MID)
    est = cal.on_timer(trades[149][0])
    assert est.source == "fallback" and est.A == 1.5 and est.kappa == 0.7
    assert est.n == 150 and "min_trades" in est.reason
    for ts, px in trades[150:]:
        cal.on_trade(ts, px, 0.001, MID)
    est = cal.on_timer(300_000)
    assert est.source == "fit" and est.reason == ""
    assert est.A != 1.5


def test_fallback_when_too_few_depths():
    """All trades at the touch: a single usable depth -> fallback, not a crash."""
    cfg = CalibrationParams(min_trades=10, min_points=3)
    cal = Calibrator(cfg, TICK)
    cal.on_timer(0)
    for i in range(100):
        cal.on_trade(i * 100, MID + 0.05, 0.001, MID)
    est = cal.on_timer(10_000)
    assert est.source == "fallback" and est.n_points == 1 and "min_points" in est.reason


def test_fallback_when_profile_does_not_decay():
    """Every trade 5 ticks away: the rate is flat over 0..5 ticks (kappa = 0) -> fallback."""
    cfg = CalibrationParams(min_trades=10, min_points=3)
    cal = Calibrator(cfg, TICK)
    cal.on_timer(0)
    for i in range(100):
        cal.on_trade(i * 100, MID - 0.5, 0.001, MID)
    est = cal.on_timer(10_000)
    assert est.source == "fallback" and "kappa" in est.reason
    assert est.A == cfg.A_fallback and est.kappa == cfg.kappa_fallback


def test_fallback_on_poor_fit():
    """Half the trades at the touch, half 30 ticks deep: a step, not an exponential."""
    cfg = CalibrationParams(min_trades=10, min_points=3, min_r2=0.8)
    cal = Calibrator(cfg, TICK)
    cal.on_timer(0)
    for i in range(200):
        cal.on_trade(i * 50, MID + (0.05 if i % 2 else 3.05), 0.001, MID)
    est = cal.on_timer(10_000)
    assert est.source == "fallback" and "r2" in est.reason and est.r2 < 0.8


def test_clamps_to_bounds():
    T = 300.0
    trades = _poisson_trades(3, 20.0, 5.0, T)
    cfg = CalibrationParams(window_s=T + 1, kappa_bounds=(0.1, 2.0), A_bounds=(50.0, 100.0))
    est = _fed(cfg, trades, int(T * 1000)).estimate()
    assert est.source == "fit" and est.clamped
    assert est.kappa == 2.0 and est.A == 50.0


def test_window_eviction_and_return_to_fallback():
    cfg = CalibrationParams(window_s=60, min_trades=50, refit_interval_s=0)
    trades = _poisson_trades(9, 20.0, 5.0, 60.0)
    cal = _fed(cfg, trades, 60_000)
    assert cal.estimate().source == "fit"
    # 30 s later about half the trades are older than the window
    est = cal.on_timer(90_000)
    n_expected = sum(1 for ts, _ in trades if ts >= 30_000)
    assert est.n == cal.n_trades == n_expected
    est = cal.on_timer(121_000)
    assert est.n == 0 and est.source == "fallback"


def test_rate_uses_observed_span_during_warmup():
    """20 s of data in a 300 s window: rates are per observed second, not per window second."""
    trades = _poisson_trades(4, 50.0, 5.0, 20.0)
    cfg = CalibrationParams(window_s=300, min_trades=50)
    est = _fed(cfg, trades, 20_000).estimate()
    assert est.source == "fit"
    assert est.A == pytest.approx(50.0, rel=5.0 / math.sqrt(len(trades)))


def test_memory_cap_keeps_counts_consistent_and_rate_unbiased():
    T = 300.0
    trades = _poisson_trades(8, 20.0, 5.0, T)
    cfg = CalibrationParams(window_s=T + 1, max_trades=2000)
    cal = _fed(cfg, trades, int(T * 1000))
    assert cal.n_trades == 2000
    assert sum(cal._counts) == 2000
    est = cal.estimate()
    assert est.source == "fit" and est.n == 2000
    assert est.A == pytest.approx(20.0, rel=5.0 / math.sqrt(2000))
    _, rates, span = cal.depth_rates()
    assert span < T and rates[0] == pytest.approx(2000 / span)


def test_bad_input_is_rejected_counted_and_late_trades_kept():
    cal = Calibrator(CalibrationParams(), TICK)
    assert not cal.on_trade(1000, math.nan, 0.001, MID)
    assert not cal.on_trade(1000, 1000.1, 0.001, math.inf)
    assert not cal.on_trade(1000, -5.0, 0.001, MID)
    assert not cal.on_trade(1000, 1000.1, -1.0, MID)
    assert cal.rejected == {"bad_price": 2, "bad_mid": 1, "bad_qty": 1}
    assert cal.n_trades == 0
    assert cal.on_trade(2000, 1000.1, 0.001, MID)
    assert cal.on_trade(1500, 1000.1, 0.001, MID)  # late: kept at the newest time
    assert cal.late == 1 and cal.n_trades == 2
    with pytest.raises(ValueError):
        Calibrator(CalibrationParams(), 0.0)


def test_depth_buckets_are_exact_on_the_tick_grid():
    """1 tick computed from floats (1000.1 - 1000.0 = 0.09999...) is depth 1 tick, not 0."""
    cal = Calibrator(CalibrationParams(), TICK)
    cal.on_trade(0, 1000.1, 0.001, 1000.0)
    cal.on_trade(0, 61800.3, 0.001, 61800.2)
    cal.on_trade(0, 61800.25, 0.001, 61800.2)  # half a tick: the touch with a 1-tick spread
    assert cal._counts[1] == 2 and cal._counts[0] == 1
    cal.on_trade(0, 2000.0, 0.001, 1000.0)  # beyond max depth -> last bucket
    assert cal._counts[-1] == 1


def test_sigma_input_fallback_and_clamp():
    cfg = CalibrationParams(sigma_fallback=4.0, sigma_bounds=(0.5, 100.0))
    cal = Calibrator(cfg, TICK)
    assert cal.estimate().sigma == 4.0 and cal.estimate().sigma_source == "fallback"
    cal.set_sigma(2.5)
    assert cal.estimate().sigma == 2.5 and cal.estimate().sigma_source == "features"
    cal.set_sigma(1e9)
    assert cal.estimate().sigma == 100.0
    cal.set_sigma(0.01)
    assert cal.estimate().sigma == 0.5
    for bad in (None, math.nan, 0.0, -1.0):
        cal.set_sigma(bad)
        assert cal.estimate().sigma == 4.0 and cal.estimate().sigma_source == "fallback"
    cal.set_sigma(3.0)
    est = cal.on_timer(1000)  # a refit keeps the sigma
    assert est.sigma == 3.0 and est.sigma_source == "features"


def test_refit_interval():
    cfg = CalibrationParams(window_s=600, min_trades=50, refit_interval_s=5.0)
    trades = _poisson_trades(2, 20.0, 5.0, 60.0)
    cal = Calibrator(cfg, TICK)
    cal.on_timer(0)
    for ts, px in trades:
        cal.on_trade(ts, px, 0.001, MID)
    fitted = cal.on_timer(60_000)
    assert fitted.source == "fit" and fitted.ts_ms == 60_000
    cal.on_trade(61_000, MID + 0.35, 0.001, MID)
    assert cal.on_timer(64_000) is fitted  # no refit within 5 s
    refit = cal.on_timer(65_000)
    assert refit is not fitted and refit.n == fitted.n + 1 and refit.ts_ms == 65_000
    assert cal.refit().ts_ms == 65_000


def test_sweeps_fold_into_one_arrival_at_the_deepest_depth():
    cal = Calibrator(CalibrationParams(), TICK)
    # one buy order walking 0.5 -> 2.5 -> 1.5 ticks (prints can arrive in any order) at t=1000
    for px in (1000.05, 1000.25, 1000.15):
        assert cal.on_trade(1000, px, 0.001, MID, side=1)
    assert cal.n_trades == 1 and cal.merged == 2
    assert cal._counts[2] == 1 and sum(cal._counts) == 1
    cal.on_trade(1000, 999.95, 0.001, MID, side=-1)  # the other side: a new arrival
    cal.on_trade(1000, 1000.05, 0.001, MID, side=1)  # same ts, but not consecutive: new arrival
    cal.on_trade(1001, 1000.35, 0.001, MID, side=1)  # new ts: new arrival
    cal.on_trade(1001, 1000.35, 0.001, MID)  # side unknown: never merged
    assert cal.n_trades == 5 and cal.merged == 2
    off = Calibrator(CalibrationParams(merge_sweeps=False), TICK)
    for px in (1000.05, 1000.25, 1000.15):
        off.on_trade(1000, px, 0.001, MID, side=1)
    assert off.n_trades == 3 and off.merged == 0


def test_late_prints_of_different_orders_are_not_merged():
    """After a timer ran ahead of the trade clock, prints are re-stamped to the newest time; two
    different orders (different exchange times) must still count as two arrivals."""
    cal = Calibrator(CalibrationParams(), TICK)
    cal.on_timer(5_000)
    cal.on_trade(4_990, 1000.05, 0.001, MID, side=1)
    cal.on_trade(4_995, 1000.15, 0.001, MID, side=1)
    cal.on_trade(4_995, 1000.25, 0.001, MID, side=1)  # same order as the previous print
    assert cal.n_trades == 2 and cal.merged == 1 and cal.late == 3


def test_window_is_enforced_by_trades_alone():
    cal = Calibrator(CalibrationParams(window_s=10), TICK)
    for i in range(1000):
        cal.on_trade(i * 100, 1000.05, 0.001, MID)
    assert cal.n_trades == 101  # trades within [89.9 s, 99.9 s]
    assert sum(cal._counts) == 101
