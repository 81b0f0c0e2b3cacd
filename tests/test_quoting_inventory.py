"""Inventory control: the quadratic penalty, limits in base units and notional, vol scaling, the
asymmetric penalty mode, rolling hedge betas (against numpy written independently)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.config import Settings, load_settings
from daemon.core.instrument import btcusdt_linear
from daemon.models.inventory import (
    HedgeRatios,
    InventoryControl,
    InventoryParams,
    asymmetric_deltas,
    inventory_penalty,
    marginal_inventory_penalty,
    vol_scale,
)
from daemon.wiring import hedge_ratios

BTC = btcusdt_linear()


def test_penalty_by_hand():
    assert inventory_penalty(0.1, 2.0, 2.0, 0.5) == pytest.approx(0.1 * 4 * 4 * 0.5)
    assert inventory_penalty(0.1, -2.0, 2.0, 0.5) == inventory_penalty(0.1, 2.0, 2.0, 0.5)
    assert inventory_penalty(0.1, 0.0, 2.0, 0.5) == 0.0
    for q in (-3.0, -0.5, 0.0, 2.0):
        for side in (1, -1):
            want = inventory_penalty(0.2, q + side, 1.5, 0.1) - inventory_penalty(0.2, q, 1.5, 0.1)
            assert marginal_inventory_penalty(0.2, q, side, 1.5, 0.1) == pytest.approx(want)
    # a buy when long costs more than a sell
    assert marginal_inventory_penalty(0.1, 3.0, 1, 2.0, 1.0) > 0 > marginal_inventory_penalty(0.1, 3.0, -1, 2.0, 1.0)


def test_limits_position_binding():
    # 0.05 BTC = 50 lots; 5000 USDT at 60000 = 83 lots -> 50
    inv = InventoryControl(InventoryParams(max_position=0.05, max_notional=5000.0), BTC, order_size=0.001)
    d = inv.decide(0, 60000.0)
    assert d.limit_lots == 50 and d.bid_room_lots == 50 and d.ask_room_lots == 50
    assert d.q == 0.0
    d = inv.decide(50, 60000.0)  # long at the limit
    assert d.q == pytest.approx(50.0)
    assert not d.allows(+1, 1) and d.allows(-1, 1) and d.allows(-1, 100)
    assert not d.allows(-1, 101)
    d = inv.decide(-49, 60000.0)
    assert d.allows(-1, 1) and not d.allows(-1, 2) and d.allows(+1, 99)


def test_limits_notional_binding():
    inv = InventoryControl(InventoryParams(max_position=1.0, max_notional=5000.0), BTC, order_size=0.002)
    d = inv.decide(10, 200000.0)  # 5000 / (200000*0.001) = 25 lots
    assert d.limit_lots == 25
    assert d.bid_room_lots == 15 and d.ask_room_lots == 35
    assert d.q == pytest.approx(5.0)  # 10 lots = 0.01 BTC = 5 order sizes of 0.002
    assert inv.decide(0, math.nan).limit_lots == 0  # no price: nothing may add exposure
    assert inv.decide(7, math.nan).ask_room_lots == 7  # ...but the long may be sold down to flat


def test_vol_scaling_formula():
    assert vol_scale(0.0, 10.0, 1.0) == 1.0
    assert vol_scale(1.0, 0.5, 1.0) == 1.0  # below the reference: unchanged
    assert vol_scale(1.0, 2.0, 1.0) == pytest.approx(0.5)
    assert vol_scale(2.0, 3.0, 1.5) == pytest.approx(1.0 / 3.0)
    assert vol_scale(1.0, None, 1.0) == 1.0 and vol_scale(1.0, 2.0, None) == 1.0
    assert vol_scale(1.0, math.nan, 1.0) == 1.0 and vol_scale(1.0, 2.0, 0.0) == 1.0
    cfg = InventoryParams(max_position=0.05, max_notional=1e9, vol_scaling=1.0, vol_ref=2.0)
    inv = InventoryControl(cfg, BTC, order_size=0.001)
    assert inv.decide(0, 60000.0, sigma=2.0).limit_lots == 50
    d = inv.decide(30, 60000.0, sigma=4.0)  # twice the reference: limits halve
    assert d.scale == pytest.approx(0.5) and d.limit_lots == 25
    assert not d.allows(+1, 1)  # long 30 > 25: no more buying
    assert d.allows(-1, 1) and d.ask_room_lots == 55  # reducing stays allowed
    # an explicit reference beats the config one
    assert inv.decide(0, 60000.0, sigma=4.0, sigma_ref=4.0).limit_lots == 50


@settings(max_examples=200, deadline=None)
@given(
    pos=st.integers(-200, 200),
    lots=st.integers(1, 100),
    mid=st.floats(100.0, 200000.0),
    sigma=st.floats(0.1, 50.0),
)
def test_property_side_allowed_iff_fill_stays_within_limits(pos, lots, mid, sigma):
    """Allowed iff after a full fill ``side * new_position <= L`` (L the effective limit in lots):
    a fill that increases exposure must end within both limits; one that only reduces it (or
    crosses to the other side within the limit) is always allowed."""
    cfg = InventoryParams(max_position=0.08, max_notional=4000.0, vol_scaling=0.5, vol_ref=5.0)
    inv = InventoryControl(cfg, BTC, order_size=0.001)
    d = inv.decide(pos, mid, sigma=sigma)
    scale = 1.0 / (1.0 + 0.5 * max(0.0, sigma / 5.0 - 1.0))
    L = min(math.floor(0.08 * scale / 0.001 + 1e-9), math.floor(4000.0 * scale / (mid * 0.001) + 1e-9))
    assert d.limit_lots == L
    for side in (1, -1):
        new = pos + side * lots
        assert d.allows(side, lots) == (side * new <= L)
        if d.allows(side, lots) and abs(new) > abs(pos):
            assert abs(new) * 0.001 <= 0.08 * scale + 1e-12
            assert abs(new) * 0.001 * mid <= 4000.0 * scale * (1 + 1e-9)
    if pos >= L:
        assert not d.allows(+1, lots)  # long at (or beyond) the limit: no bid
    if pos <= -L:
        assert not d.allows(-1, lots)


def test_asymmetric_deltas():
    # long: the ask reduces |q|; it is not tightened below the q=0 half spread (0.75)
    assert asymmetric_deltas(1.2, 0.3, 2.0) == (1.2, 0.75)
    assert asymmetric_deltas(0.3, 1.2, -2.0) == (0.75, 1.2)
    assert asymmetric_deltas(0.7, 0.7, 0.0) == (0.7, 0.7)
    assert asymmetric_deltas(1.5, -0.5, 4.0) == (1.5, 0.5)  # ask through the mid -> back to h0


@settings(max_examples=200, deadline=None)
@given(db=st.floats(-5, 5), da=st.floats(-5, 5), q=st.floats(-10, 10))
def test_property_asymmetric_never_tightens_and_keeps_the_increasing_side(db, da, q):
    nb, na = asymmetric_deltas(db, da, q)
    assert nb >= db and na >= da
    if q > 0:
        assert nb == db
    elif q < 0:
        assert na == da
    else:
        assert (nb, na) == (db, da)


def _hedge_paths(seed: int, n: int, beta: float, noise: float):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1e-3, n)
    y = beta * x + rng.normal(0, noise, n)
    p_ref = 60000.0 * np.exp(np.cumsum(x))
    p_sym = 3000.0 * np.exp(np.cumsum(y))
    return p_ref, p_sym


def test_hedge_beta_matches_numpy_rolling_ols():
    p_ref, p_eth = _hedge_paths(1, 1000, 1.4, 3e-4)
    h = HedgeRatios("BTCUSDT", ["BTCUSDT", "ETHUSDT"], window=200)
    assert h.beta("ETHUSDT") is None and h.beta("BTCUSDT") == 1.0
    for a, b in zip(p_ref, p_eth):
        h.on_mids({"BTCUSDT": float(a), "ETHUSDT": float(b)})
    rx = np.diff(np.log(p_ref))[-200:]
    ry = np.diff(np.log(p_eth))[-200:]
    ref_beta = np.polyfit(rx, ry, 1)[0]
    assert h.beta("ETHUSDT") == pytest.approx(ref_beta, rel=1e-9)
    assert h.beta("ETHUSDT") == pytest.approx(1.4, abs=0.1)


def test_hedge_quantity_formula():
    p_ref, p_eth = _hedge_paths(2, 400, 0.8, 1e-5)
    h = hedge_ratios(load_settings(overrides={"inventory": {"hedge_symbols": ["BTCUSDT", "ETHUSDT"], "hedge_window": 300}}))
    assert h is not None and h.reference == "BTCUSDT"
    for a, b in zip(p_ref, p_eth):
        h.on_mids({"BTCUSDT": float(a), "ETHUSDT": float(b)})
    beta = h.beta("ETHUSDT")
    mids = {"BTCUSDT": float(p_ref[-1]), "ETHUSDT": float(p_eth[-1])}
    pos = {"ETHUSDT": 2.0, "BTCUSDT": 0.01}
    want = -(beta * 2.0 * mids["ETHUSDT"] / mids["BTCUSDT"] + 1.0 * 0.01)
    assert h.hedge_qty(pos, mids) == pytest.approx(want, rel=1e-12)
    assert h.hedge_notional({"ETHUSDT": 1000.0}) == pytest.approx(-beta * 1000.0)
    assert h.hedge_qty(pos, {"ETHUSDT": 3000.0}) is None
    assert hedge_ratios(Settings()) is None


def test_hedge_missing_samples_and_no_drift():
    p_ref, p_eth = _hedge_paths(3, 3001, 1.1, 2e-4)
    h = HedgeRatios("BTCUSDT", ["ETHUSDT"], window=100)
    xs, ys = [], []
    prev = None
    for i, (a, b) in enumerate(zip(p_ref, p_eth)):
        mids = {"BTCUSDT": float(a)} if i % 7 == 3 else {"BTCUSDT": float(a), "ETHUSDT": float(b)}
        h.on_mids(mids)
        if prev is not None and "ETHUSDT" in mids and "ETHUSDT" in prev:
            xs.append(math.log(a / prev["BTCUSDT"]))
            ys.append(math.log(b / prev["ETHUSDT"]))
        prev = mids
    want = np.polyfit(xs[-100:], ys[-100:], 1)[0]
    assert h.beta("ETHUSDT") == pytest.approx(want, rel=1e-9)


def test_hedge_flat_reference_has_no_beta():
    h = HedgeRatios("BTCUSDT", ["ETHUSDT"], window=20)
    for i in range(50):
        h.on_mids({"BTCUSDT": 60000.0, "ETHUSDT": 3000.0 + i})
    assert h.beta("ETHUSDT") is None
    assert h.hedge_notional({"ETHUSDT": 100.0}) == 0.0


def test_order_size_validation():
    with pytest.raises(ValueError):
        InventoryControl(InventoryParams(), BTC, order_size=0.0)
    with pytest.raises(ValueError):
        HedgeRatios("A", ["B"], window=2)


def test_hedge_bad_mids_do_not_poison_the_sums():
    p_ref, p_eth = _hedge_paths(4, 300, 0.9, 1e-4)
    h = HedgeRatios("BTCUSDT", ["ETHUSDT"], window=50)
    for i, (a, b) in enumerate(zip(p_ref, p_eth)):
        eth = math.nan if i == 150 else (-1.0 if i == 160 else math.inf if i == 170 else float(b))
        h.on_mids({"BTCUSDT": float(a), "ETHUSDT": eth})
    beta = h.beta("ETHUSDT")
    assert beta is not None and math.isfinite(beta) and beta == pytest.approx(0.9, abs=0.2)
