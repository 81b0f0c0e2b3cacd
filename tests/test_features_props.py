"""Property tests: on random event streams with edge cases (empty sides, one-level books, zero and
bad trade sizes, late timestamps, multi-sample clock gaps, block trades, resubscription
snapshots) the incremental features equal the independent batch reference after every event."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.core.book import OrderBook
from daemon.core.events import BookUpdate, Trade
from daemon.core.instrument import btcusdt_linear
from daemon.features import FEATURE_NAMES, FeatureParams, FeatureState

from test_features_batchref import build_tape, columns, compare, ref_features

INST = btcusdt_linear()
TICK, LOT = INST.price.to_float(1), INST.qty.to_float(1)
CFG = FeatureParams(
    top_k=2, ofi_window_s=0.3, trade_window_s=0.5, vol_sample_s=0.1, vol_window=5,
    vol_ewma_halflife_s=0.4, vpin_bucket_volume=0.005, vpin_buckets=3, vpin_bar_s=0.2,
    vpin_sigma_bars=4, spread_window=4, gk_window=3,
)
DEPTH = 4

level = st.tuples(st.integers(1, 3), st.integers(0, 4))  # (distance from 100 000 ticks, size)


@st.composite
def streams(draw):
    """A list of events; book updates keep bids <= 99 999 and asks >= 100 000 (never crossed)."""
    n = draw(st.integers(1, 40))
    ts = 1_000_000
    u = 0
    events = []
    for _ in range(n):
        kind = draw(st.sampled_from(["book", "book", "book", "trade", "trade", "timer"]))
        dt = draw(st.sampled_from([0, 1, 7, 50, 99, 100, 101, 250, 1000, 5000, -30]))
        ts = max(0, ts + dt)
        if kind == "book":
            u += 1
            snap = u == 1 or draw(st.integers(0, 9)) == 0
            bids = [(100_000 - d, s) for d, s in draw(st.lists(level, max_size=4))]
            asks = [(100_000 + d - 1, s) for d, s in draw(st.lists(level, max_size=4))]
            if snap:
                bids = [(p, s) for p, s in bids if s > 0]
                asks = [(p, s) for p, s in asks if s > 0]
            depth = draw(st.sampled_from([DEPTH, 1])) if snap else DEPTH
            events.append(BookUpdate("BTCUSDT", depth, snap, bids, asks, u, 0, ts, ts, 0))
        elif kind == "trade":
            side = draw(st.sampled_from([1, -1, 1, -1, 0]))
            qty = draw(st.integers(-1, 6))
            price = draw(st.integers(99_995, 100_005))
            block = draw(st.integers(0, 15)) == 0
            events.append(Trade("BTCUSDT", side, price, qty, "t", 0, ts, 0, block))
        else:
            events.append(("timer", ts))
    return events


def _feed(fs: FeatureState, book: OrderBook, ev) -> bool:
    """Feed one event the way the engine does; False when the book did not accept it (skipped)."""
    if isinstance(ev, BookUpdate):
        book.apply(ev)
        if not book.live:  # pragma: no cover - the generator never crosses the book
            return False
        fs.on_book(book, ev)
    elif isinstance(ev, Trade):
        fs.on_trade(ev)
    else:
        fs.on_timer(ev[1])
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_incremental_equals_batch_after_every_event(events):
    fs = FeatureState(INST, CFG)
    book = OrderBook("BTCUSDT", DEPTH)
    fed = []
    got = []
    for ev in events:
        assert _feed(fs, book, ev)
        fed.append(ev)
        d = fs.as_dict()
        d["sigma_price_per_s"] = fs.sigma_price_per_s()
        got.append(d)
    tape = build_tape(fed, DEPTH, CFG.top_k)
    cols = columns(tape)
    names = [n for n in FEATURE_NAMES if n != "gk_vol_per_s"] + ["sigma_price_per_s"]
    for i, d in enumerate(got):
        ref = ref_features(tape, i, CFG, TICK, LOT, cols)
        bad = compare(d, ref, names)
        assert not bad, (i, bad)
        # invariants
        assert -1.0 <= d["imbalance_top"] <= 1.0 and -1.0 <= d["imbalance_k"] <= 1.0
        assert 0.0 <= d["depth_ratio"] <= 1.0
        v = d["vpin"]
        assert math.isnan(v) or 0.0 <= v <= 1.0 + 1e-12
        assert d["trade_rate"] >= 0 and d["volume"] >= 0
    # bad trades were counted, never used
    n_bad = sum(1 for e in fed if isinstance(e, Trade) and (e.qty <= 0 or e.side == 0))
    assert fs.errors["bad_trade"] == n_bad


@settings(max_examples=60, deadline=None)
@given(gap=st.integers(0, 40), step_ms=st.sampled_from([100, 250, 1000]), window=st.integers(2, 8))
def test_clock_gap_is_deterministic_and_equals_repeated_samples(gap, step_ms, window):
    """A jump over G grid points gives the same state as G single-step timer ticks."""
    cfg = FeatureParams(vol_sample_s=step_ms / 1000, vol_window=window, spread_window=window)

    def run(timers):
        fs = FeatureState(INST, cfg)
        book = OrderBook("BTCUSDT", 50)
        t0 = 10_000_000
        for j, (b, a) in enumerate([(600_000, 600_001), (600_003, 600_005), (599_990, 599_992)]):
            ev = BookUpdate("BTCUSDT", 50, True, [(b, 1)], [(a, 2)], j + 1, 0, t0 + j * step_ms, 0, 0)
            book.apply(ev)
            fs.on_book(book, ev)
        for ts in timers(t0 + 2 * step_ms):
            fs.on_timer(ts)
        return fs

    jump = run(lambda t: [t + gap * step_ms + 1])
    steps = run(lambda t: [t + k * step_ms + 1 for k in range(gap + 1)])
    assert jump.vol_returns == steps.vol_returns
    for name in ("realized_vol", "ewma_vol", "spread_z"):
        a, b = getattr(jump, name), getattr(steps, name)
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), name
