"""Hand-computed cases for single features, Garman-Klass on synthetic candles, edge cases and bad
input handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.config import ConfigError, load_settings
from daemon.core.book import OrderBook
from daemon.core.events import BookUpdate, Kline, Trade
from daemon.core.instrument import btcusdt_linear
from daemon.features import FEATURE_NAMES, FeatureParams, FeatureState
from daemon.features.volatility import garman_klass_var
from daemon.features.vpin import Vpin, norm_cdf
from daemon.features.windows import FloatRollingMoments, IntRollingMoments, TimeWindowSum

INST = btcusdt_linear()


def _book_ev(u, bids, asks, ts, snapshot=False, depth=50):
    return BookUpdate("BTCUSDT", depth, snapshot, bids, asks, u, 0, ts, 0, 0)


def _feed_books(fs, evs, depth=50):
    book = OrderBook("BTCUSDT", depth)
    for ev in evs:
        book.apply(ev)
        assert book.live
        fs.on_book(book, ev)
    return book


def test_book_features_hand_computed():
    fs = FeatureState(INST, FeatureParams(top_k=2))
    _feed_books(fs, [_book_ev(1, [(1000, 3), (999, 5), (998, 100)], [(1002, 1), (1003, 1)], 1_000, True)])
    assert fs.mid == pytest.approx(100.1)
    # weighted mid = (Va*Pb + Vb*Pa)/(Vb+Va) = (1*100.0 + 3*100.2)/4
    assert fs.weighted_mid == pytest.approx((100.0 + 3 * 100.2) / 4, rel=1e-12)
    assert fs.wmid_lean_ticks == pytest.approx(0.5)  # (2 ticks)(3-1)/(2*4)
    assert fs.imbalance_top == pytest.approx(0.5)  # (3-1)/(3+1)
    assert fs.imbalance_k == pytest.approx((8 - 2) / 10)  # top-2: 3+5 vs 1+1
    assert fs.depth_ratio == pytest.approx(4 / 10)
    assert fs.bid_depth_k == pytest.approx(0.008) and fs.ask_depth_k == pytest.approx(0.002)
    assert fs.spread_ticks == 2 and fs.spread_bps == pytest.approx(0.2 / 100.1 * 1e4)


def test_ofi_weak_inequalities_hand_computed():
    """Cont-Kukanov-Stoikov e_n case by case (papers.md section 6)."""
    fs = FeatureState(INST, FeatureParams(ofi_window_s=100.0))
    b = [
        _book_ev(1, [(100, 5)], [(102, 4)], 1_000, True),
        _book_ev(2, [(100, 7)], [], 1_001),  # bid same price: +7-5 = +2; ask same: 0
        _book_ev(3, [(101, 3)], [], 1_002),  # bid up: +3
        _book_ev(4, [(101, 0)], [], 1_003),  # bid down to 100 (size 7): -3
        _book_ev(5, [], [(102, 1)], 1_004),  # ask same price 4 -> 1: -(1) + 4 = +3
        _book_ev(6, [], [(101, 2)], 1_005),  # ask down: -2
        _book_ev(7, [], [(101, 0)], 1_006),  # ask up to 102 (size 1): +2
    ]
    _feed_books(fs, b)
    assert fs.ofi_lots == 2 + 3 - 3 + 3 - 2 + 2
    # the strict-inequality variant would drop the same-price size changes (+2 and +3)
    # queue pressure: bid same-price changes +2, ask same-price changes -3 over a 100 s window
    assert fs.queue_pressure_bid == pytest.approx(2 * 0.001 / 100)
    assert fs.queue_pressure_ask == pytest.approx(-3 * 0.001 / 100)
    assert fs.queue_pressure == pytest.approx(5 * 0.001 / 100)


def test_ofi_window_eviction_and_resubscription():
    fs = FeatureState(INST, FeatureParams(ofi_window_s=1.0))
    book = _feed_books(fs, [_book_ev(1, [(100, 5)], [(102, 4)], 1_000, True), _book_ev(2, [(101, 2)], [], 1_500)])
    assert fs.ofi_lots == 2
    fs.on_timer(2_499)
    assert fs.ofi_lots == 2  # entry at 1500 is inside (1499, 2499]
    fs.on_timer(2_500)
    assert fs.ofi_lots == 0
    # a depth-50 snapshot (resubscription) does not contribute, even with a different top
    ev = _book_ev(1, [(90, 9)], [(95, 9)], 2_600, True)
    book.apply(ev)
    fs.on_book(book, ev)
    assert fs.ofi_lots == 0
    # reset_book: the next update starts fresh
    fs.reset_book()
    ev = _book_ev(2, [(91, 1)], [], 2_700)
    book.apply(ev)
    fs.on_book(book, ev)
    assert fs.ofi_lots == 0


def test_depth1_snapshots_are_updates_for_ofi():
    """orderbook.1 sends only snapshots: each one is an ordinary best-quote update."""
    fs = FeatureState(INST)
    book = OrderBook("BTCUSDT", 1)
    for u, (bq, aq) in enumerate([(5, 5), (8, 5), (8, 2)], start=1):
        ev = BookUpdate("BTCUSDT", 1, True, [(100, bq)], [(101, aq)], u, 0, 1000 + u, 0, 0)
        book.apply(ev)
        fs.on_book(book, ev)
    assert fs.ofi_lots == 3 + 3


def test_empty_side_and_empty_book():
    fs = FeatureState(INST, FeatureParams(top_k=3))
    assert math.isnan(fs.mid) and math.isnan(fs.spread_bps) and math.isnan(fs.vpin)
    assert fs.imbalance_top == 0.0 and fs.depth_ratio == 0.0 and fs.spread_z == 0.0
    assert math.isnan(fs.sigma_price_per_s())
    _feed_books(fs, [_book_ev(1, [(100, 2)], [], 1_000, True)])
    assert fs.imbalance_top == 1.0 and fs.imbalance_k == 1.0
    assert math.isnan(fs.mid)  # no two-sided book yet
    fs2 = FeatureState(INST)
    book = _feed_books(fs2, [_book_ev(1, [(100, 2)], [(101, 2)], 1_000, True)])
    ev = _book_ev(2, [], [(101, 0)], 1_100)
    book.apply(ev)
    fs2.on_book(book, ev)
    assert fs2.imbalance_top == 1.0
    assert fs2.mid == pytest.approx(10.05)  # last two-sided mid is kept
    # every feature is a float and vector() follows the names
    d = fs2.as_dict()
    assert list(d) == list(FEATURE_NAMES)
    assert list(fs2.vector(["imbalance_top", "mid"])) == [d["imbalance_top"], d["mid"]]


def _trade(side, qty, price=1000, ts=1000, block=False):
    return Trade("BTCUSDT", side, price, qty, "id", 0, ts, 0, block)


def test_trade_flow_hand_computed_and_bad_input():
    fs = FeatureState(INST, FeatureParams(trade_window_s=2.0))
    fs.on_trade(_trade(1, 10, ts=1_000))
    fs.on_trade(_trade(-1, 4, ts=1_500))
    fs.on_trade(_trade(1, 0, ts=1_600))  # bad: zero size
    fs.on_trade(_trade(0, 3, ts=1_600))  # bad: no side
    fs.on_trade(_trade(1, 50, ts=1_700, block=True))  # block trade: counted, not used
    assert fs.errors["bad_trade"] == 2 and fs.counts["block_trades"] == 1
    assert fs.cum_delta == pytest.approx(0.006)
    assert fs.volume == pytest.approx(0.014) and fs.delta_window == pytest.approx(0.006)
    assert fs.trade_rate == pytest.approx(1.0)  # 2 trades / 2 s
    assert fs.avg_trade_size == pytest.approx(0.007)
    fs.on_timer(3_000)  # (1000, 3000]: the first trade left
    assert fs.volume == pytest.approx(0.004) and fs.trade_rate == pytest.approx(0.5)
    assert fs.cum_delta == pytest.approx(0.006)  # cumulative, not windowed
    fs.on_timer(10_000)
    assert fs.volume == 0.0 and fs.avg_trade_size == 0.0 and fs.trade_rate == 0.0


def test_late_events_are_stamped_with_the_clock():
    fs = FeatureState(INST, FeatureParams(trade_window_s=1.0))
    fs.on_trade(_trade(1, 1, ts=5_000))
    fs.on_trade(_trade(1, 2, ts=3_000))  # late: counts as now (5000)
    assert fs.counts["late_events"] == 1
    fs.on_timer(5_999)
    assert fs.volume == pytest.approx(0.003)
    fs.on_timer(6_000)
    assert fs.volume == 0.0


def test_vpin_hand_computed():
    """Bars 1 s, bucket 10 lots, window 2 buckets; Z by hand."""
    v = Vpin(bar_ms=1000, n_buckets=2, bucket_lots=10, sigma_bars=10, derive_ms=0)
    v.on_trade(0, 100, 4)  # bar 0: open 100, close 101, vol 6 -> dP = 1 (first bar: close-open)
    v.on_trade(500, 101, 2)
    v.on_trade(1_200, 103, 8)  # bar 1: close 103, vol 8, dP = 2
    v.on_trade(2_100, 102, 10)  # bar 2: dP = -1
    v.advance(3_000)
    assert v.bars == 3
    # sigma: bar0 alone -> undefined -> Z = 1 (dP > 0); bar1: std(1,2); bar2: std(1,2,-1)
    z0 = 1.0
    z1 = norm_cdf(2 / np.std([1, 2], ddof=1))
    z2 = norm_cdf(-1 / np.std([1, 2, -1], ddof=1))
    # bucket 1: 6 lots of bar0 + 4 of bar1; bucket 2: 4 of bar1 + 6 of bar2; bar2 leftover 4 lots
    oi1 = abs(6 * (1 - 2 * z0) + 4 * (1 - 2 * z1))
    oi2 = abs(4 * (1 - 2 * z1) + 6 * (1 - 2 * z2))
    assert v.buckets == 2
    assert v.value == pytest.approx((oi1 + oi2) / (2 * 10), rel=1e-12)
    assert 0.0 <= v.value <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-30, 30), st.integers(1, 400)), min_size=50, max_size=600),
       st.integers(1, 8), st.integers(1, 60))
def test_vpin_running_sum_tracks_the_exact_sum(steps, n_buckets, bucket_lots):
    """The O(1) read keeps a running sum of the window's OI (re-summed exactly every n buckets):
    at every bar it equals the exactly summed window to 1e-12 and stays in [0, 1]."""
    v = Vpin(bar_ms=1000, n_buckets=n_buckets, bucket_lots=bucket_lots, sigma_bars=20, derive_ms=0)
    px = 10_000
    for k, (dp, lots) in enumerate(steps):
        px += dp
        v.on_trade(k * 1000, px, lots)
        v.advance((k + 1) * 1000)
        if v.buckets:
            window = list(v._ois)
            exact = math.fsum(window) / (len(window) * bucket_lots)
            assert v.value == pytest.approx(exact, rel=1e-12, abs=1e-15)
            assert 0.0 <= v.value <= 1.0
    assert v.buckets == sum(lots for _, lots in steps) // bucket_lots


def test_vpin_derived_bucket_size_loses_no_volume():
    v = Vpin(bar_ms=1000, n_buckets=4, bucket_lots=0, sigma_bars=10, derive_ms=3000)
    for k in range(3):
        v.on_trade(k * 1000, 100 + k, 10)
    v.advance(2_999)
    assert v.bucket_lots == 0 and v.buckets == 0  # still deriving
    v.advance(3_000)
    assert v.bucket_lots == round(30 / 4)  # 8 lots, fixed from now on
    assert v.buckets == 3  # 30 lots held during warm-up -> 3 full buckets of 8, 6 lots pending


def test_garman_klass_matches_formula_on_synthetic_candles():
    fs = FeatureState(INST, FeatureParams(gk_window=3))
    candles = [(600_000, 600_500, 599_000, 600_100), (600_100, 600_900, 599_900, 600_800),
               (600_800, 600_800, 600_000, 600_000), (600_000, 601_000, 600_000, 601_000)]
    per_s = []
    for j, (o, h, lo, c) in enumerate(candles):
        start = 60_000 * (j + 1)
        k = Kline("BTCUSDT", "1", start, start + 59_999, o, h, lo, c, 1.0, True, start, 0)
        fs.on_kline(k)
        hl, co = math.log(h / lo), math.log(c / o)
        per_s.append((0.5 * hl**2 - (2 * math.log(2) - 1) * co**2) / 60.0)
    expect = math.sqrt(np.mean(per_s[-3:]))
    assert fs.gk_vol_per_s == pytest.approx(expect, rel=1e-12)
    assert garman_klass_var(100, 100, 100, 100) == 0.0
    # unconfirmed, duplicate and inconsistent candles
    fs.on_kline(Kline("BTCUSDT", "1", 600_000, 659_999, 1, 2, 1, 2, 1.0, False, 0, 0))
    fs.on_kline(Kline("BTCUSDT", "1", 60_000, 119_999, 1, 2, 1, 2, 1.0, True, 0, 0))
    fs.on_kline(Kline("BTCUSDT", "1", 900_000, 959_999, 10, 5, 8, 9, 1.0, True, 0, 0))  # high < low
    assert fs.counts["duplicate_klines"] == 1 and fs.errors["bad_kline"] == 1
    assert fs.gk_vol_per_s == pytest.approx(expect, rel=1e-12)


def test_sigma_units_on_a_known_path():
    """Mid alternates between two levels every sample: per-sample log-return std is known."""
    cfg = FeatureParams(vol_sample_s=0.5, vol_window=50)
    fs = FeatureState(INST, cfg)
    book = OrderBook("BTCUSDT", 50)
    mids = []
    for u in range(1, 42):
        b = 600_000 if u % 2 else 600_010
        ev = BookUpdate("BTCUSDT", 50, True, [(b, 1)], [(b + 1, 1)], u, 0, 1_000 + 500 * u, 0, 0)
        book.apply(ev)
        fs.on_book(book, ev)
        mids.append(b + 0.5)
    # grid starts strictly after the first book (1500): samples at 2000..21000 = mids[1:-1]
    m = np.array(mids[1:-1])
    r = np.diff(np.log(m))
    sd = np.std(r, ddof=1)
    assert fs.realized_vol == pytest.approx(sd, rel=1e-9)
    assert fs.realized_vol_per_s == pytest.approx(sd / math.sqrt(0.5), rel=1e-9)
    assert fs.sigma_price_per_s() == pytest.approx(m[-1] * 0.1 * sd / math.sqrt(0.5), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e-2, 1e-2, allow_nan=False), min_size=1, max_size=80), st.integers(2, 12))
def test_float_rolling_moments_match_numpy(xs, n):
    m = FloatRollingMoments(n)
    for j, x in enumerate(xs):
        m.push(x)
        last = np.array(xs[max(0, j + 1 - n) : j + 1])
        if len(last) >= 2:
            ref = float(np.var(last, ddof=1))
            assert math.isclose(m.var(), ref, rel_tol=1e-9, abs_tol=1e-24)
            # the mean is K + s1/m around a shift K (a value of the window): error ~ eps * |K|
            assert math.isclose(m.mean(), float(last.mean()), rel_tol=1e-9, abs_tol=1e-15)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-5, 50), min_size=1, max_size=60), st.integers(2, 9))
def test_int_rolling_moments_exact(xs, n):
    m = IntRollingMoments(n)
    for j, x in enumerate(xs):
        m.push(x)
        last = xs[max(0, j + 1 - n) : j + 1]
        if len(last) >= 2:
            assert math.isclose(m.var(), float(np.var(last, ddof=1)), rel_tol=1e-12, abs_tol=1e-12)
            if len(set(last)) == 1:
                assert m.var() == 0.0


def test_time_window_sum_bounds():
    w = TimeWindowSum(100, 2)
    for t in range(0, 1000, 10):
        w.push(t, 1, t)
        w.evict(t)
    assert w.count == 10 and w.sums == [10, sum(range(900, 1000, 10))]
    with pytest.raises(ValueError):
        TimeWindowSum(0)


def test_config_rejects_sub_millisecond_windows():
    with pytest.raises(ConfigError, match="features.vol_sample_s"):
        load_settings(overrides={"features": {"vol_sample_s": 0.0005}})
    with pytest.raises(ValueError, match="below one lot"):
        FeatureState(INST, FeatureParams(vpin_bucket_volume=0.0001))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(90, 110), st.integers(90, 110), st.integers(90, 110),
                          st.integers(90, 110), st.booleans()), max_size=25), st.integers(1, 5))
def test_garman_klass_batch_equivalence(candles, window):
    """Random candles (some unconfirmed, duplicate, out of order or inconsistent): the estimator
    equals a batch mean over the accepted ones, recomputed from scratch."""
    fs = FeatureState(INST, FeatureParams(gk_window=window))
    accepted, last = [], -1
    for j, (step, o, h, lo, c, confirm) in enumerate(candles):
        start = 60_000 * (j - step)  # step > 0 moves the start back: duplicates / stale candles
        fs.on_kline(Kline("BTCUSDT", "1", start, start + 59_999, o, h, lo, c, 1.0, confirm, 0, 0))
        if not confirm or start <= last:
            continue
        if not (lo <= o <= h and lo <= c <= h):
            continue
        last = start
        accepted.append(0.5 * math.log(h / lo) ** 2 - (2 * math.log(2) - 1) * math.log(c / o) ** 2)
    if not accepted:
        assert math.isnan(fs.gk_vol_per_s)
        return
    v = float(np.mean(np.array(accepted[-window:]) / 60.0))
    assert math.isclose(fs.gk_vol_per_s, math.sqrt(max(v, 0.0)), rel_tol=1e-9, abs_tol=1e-15)
