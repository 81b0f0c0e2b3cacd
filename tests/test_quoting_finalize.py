"""finalize(): rounding, post-only, min spread, sizes, limits, adverse gate; the pipeline, audit
record and factory."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from daemon.config import Settings, load_settings
from daemon.core.instrument import Instrument, btcusdt_linear
from daemon.models.avellaneda import AvellanedaStoikov
from daemon.models.base import RawQuote
from daemon.models.calibration import Calibration
from daemon.models.glft import GLFT
from daemon.models.inventory import InventoryControl, InventoryDecision, InventoryParams
from daemon.models.quoting import (
    ROUND_EPS_REL,
    ROUND_EPS_TICKS,
    AdverseParams,
    SessionClock,
    finalize,
    order_size_lots,
)
from daemon.wiring import QuoterBuildError, make_quoter, quoting_pipeline

BTC = btcusdt_linear()
TICK = 0.1


def raw(bid, ask, mid=100.0):
    return RawQuote(bid, ask, 0.5 * ((bid or mid) + (ask or mid)),
                    mid - bid if bid is not None else math.nan, ask - mid if ask is not None else math.nan)


def fin(r, mid=100.0, bb=999, ba=1001, lots=100, **kw):
    return finalize(r, instrument=BTC, mid=mid, best_bid_ticks=bb, best_ask_ticks=ba, order_size_lots=lots, **kw)


def test_rounding_bid_down_ask_up():
    q, why = fin(raw(99.86, 100.14))
    assert (q.bid_px, q.ask_px) == (998, 1002)
    assert why.bid == "" and why.ask == "" and q.reason == ""
    # exact grid prices survive float noise (61800.2 / 0.1 = 618001.999...)
    q, _ = fin(raw(61800.2, 61800.5, mid=61800.35), mid=61800.35, bb=618000, ba=618010)
    assert (q.bid_px, q.ask_px) == (618002, 618005)


def test_post_only_clamp():
    # bid at/through the best ask -> best_ask - 1; ask at/through the best bid -> best_bid + 1
    q, why = fin(raw(100.3, 100.6), bb=999, ba=1001)
    assert q.bid_px == 1000 and "post_only" in why.bid and q.ask_px == 1006
    q, why = fin(raw(99.0, 99.85), bb=999, ba=1001)
    assert q.ask_px == 1000 and "post_only" in why.ask and q.bid_px == 990
    q, why = fin(raw(100.2, 99.9), bb=1000, ba=1001, mid=100.05)  # both through the book
    assert q.bid_px == 1000 and q.ask_px == 1001 and why.bid == "post_only" and why.ask == "post_only"


def test_min_spread_widens_outwards():
    q, why = fin(raw(100.0, 100.05), mid=100.025, bb=1000, ba=1001, min_spread_ticks=4)
    assert q.ask_px - q.bid_px == 4
    assert q.bid_px <= 1000 and q.ask_px >= 1001
    assert "min_spread" in why.ask


def test_one_sided_raw_and_missing_mid():
    q, why = fin(RawQuote(None, 100.2, 100.0, math.nan, 0.2, why="warmup"))
    assert q.bid_px is None and q.bid_qty == 0 and why.bid == "warmup" and q.ask_px == 1002
    q, why = fin(raw(99.9, 100.1), mid=math.nan)
    assert q.bid_px is None and q.ask_px is None and why.bid == "no_mid"


def test_nonpositive_bid_is_pulled():
    q, why = fin(raw(-3.0, 0.5, mid=0.2), mid=0.2, bb=1, ba=3)
    assert q.bid_px is None and "nonpositive" in why.bid and q.ask_px == 5


def test_sizes_min_qty_and_min_notional():
    # BTCUSDT: min notional 5 USDT. 1 lot at 100 USDT price = 0.1 USDT -> 50 lots
    q, why = fin(raw(99.9, 100.1), lots=1)
    assert q.bid_qty == 51 and q.ask_qty == 50  # bid at 99.9: 5/0.0999 = 50.05 -> 51
    assert why.bid == "size_notional" and why.ask == "size_notional"
    assert q.bid_qty * 99.9 * 0.001 >= 5.0 and q.ask_qty * 100.1 * 0.001 >= 5.0
    inst = Instrument("X", "linear", "0.01", "0.1", min_qty_lots=10, max_qty_lots=40, min_notional=0.0)
    q, why = finalize(raw(99.9, 100.1), instrument=inst, mid=100.0, best_bid_ticks=9990, best_ask_ticks=10010,
                      order_size_lots=3)
    assert q.bid_qty == 10 and why.bid == "size_min"
    q, why = finalize(raw(99.9, 100.1), instrument=inst, mid=100.0, best_bid_ticks=9990, best_ask_ticks=10010,
                      order_size_lots=100, ask_size_lots=20)
    assert q.bid_qty == 40 and why.bid == "size_max" and q.ask_qty == 20
    assert order_size_lots(BTC, 0.001) == 1 and order_size_lots(BTC, 0.0104) == 10
    with pytest.raises(ValueError):
        order_size_lots(BTC, 0.0)


def _decision(pos, limit, asym=False, q=None):
    return InventoryDecision(q=float(pos) if q is None else q, position_lots=pos, limit_lots=limit,
                             bid_room_lots=limit - pos, ask_room_lots=limit + pos, asymmetric=asym)


def test_limits_pull_the_right_side():
    q, why = fin(raw(99.5, 100.5), lots=100, inventory=_decision(pos=50, limit=50))
    assert q.bid_px is None and why.bid == "limit" and q.ask_px == 1005 and q.ask_qty == 100
    q, why = fin(raw(99.5, 100.5), lots=100, inventory=_decision(pos=-50, limit=50))
    assert q.ask_px is None and why.ask == "limit" and q.bid_px == 995
    q, why = fin(raw(99.5, 100.5), lots=100, inventory=_decision(pos=-49, limit=150))
    assert q.ask_px is not None and q.bid_px is not None
    # the notional bump is what breaches: 1 lot -> 51 lots > room 40
    q, why = fin(raw(99.9, 100.1), lots=1, inventory=_decision(pos=10, limit=50))
    assert q.bid_px is None and why.bid == "size_notional,limit" and q.ask_px is not None
    assert q.reason == "bid:size_notional,limit;ask:size_notional"


def test_limits_with_real_inventory_control():
    inv = InventoryControl(InventoryParams(max_position=0.05, max_notional=1e6), BTC, order_size=0.01)
    d = inv.decide(45, 61800.0)
    q, why = finalize(raw(61790.0, 61810.0, mid=61800.0), instrument=BTC, mid=61800.0, best_bid_ticks=617990,
                      best_ask_ticks=618010, order_size_lots=10, inventory=d)
    assert q.bid_px is None and why.bid == "limit" and q.ask_qty == 10


ADV_WIDEN = AdverseParams(threshold=0.6, action="widen", widen_factor=2.0)
ADV_PULL = AdverseParams(threshold=0.6, action="pull")


def test_adverse_gate_widens_the_right_side():
    q, why = fin(raw(99.5, 100.3), adverse=ADV_WIDEN, p_adverse_bid=0.7, p_adverse_ask=0.2)
    assert q.bid_px == 990 and why.bid == "adverse_widen"  # 0.5 from the mid -> 1.0
    assert q.ask_px == 1003 and why.ask == ""
    q, why = fin(raw(99.5, 100.3), adverse=ADV_WIDEN, p_adverse_bid=0.1, p_adverse_ask=0.9)
    assert q.bid_px == 995 and q.ask_px == 1006 and why.ask == "adverse_widen"
    # at the threshold exactly: not gated (strictly above)
    q, _ = fin(raw(99.5, 100.3), adverse=ADV_WIDEN, p_adverse_bid=0.6)
    assert q.bid_px == 995
    # threshold None or no adverse config: no gate
    q, _ = fin(raw(99.5, 100.3), adverse=AdverseParams(), p_adverse_bid=1.0)
    assert q.bid_px == 995


def test_adverse_gate_pulls_the_right_side():
    q, why = fin(raw(99.5, 100.3), adverse=ADV_PULL, p_adverse_bid=0.1, p_adverse_ask=0.61)
    assert q.ask_px is None and q.ask_qty == 0 and why.ask == "adverse_pull" and q.bid_px == 995
    q, why = fin(raw(99.5, 100.3), adverse=ADV_PULL, p_adverse_bid=0.99, p_adverse_ask=0.99)
    assert q.ask_px is None and q.bid_px is None


def test_adverse_widen_moves_a_quote_through_the_mid_outwards():
    # heavy short inventory: model bid above the mid (d = -0.3); widening must lower it, not raise it
    q0, _ = fin(raw(100.3, 101.0), bb=990, ba=1010)
    q1, why = fin(raw(100.3, 101.0), bb=990, ba=1010, adverse=ADV_WIDEN, p_adverse_bid=0.9)
    assert q1.bid_px < q0.bid_px and q1.bid_px == 1000  # d' = -0.3 + 1*0.3 = 0 -> at the mid


def test_asymmetric_penalty_in_finalize():
    # long (q>0): model ask 0.1 from the mid, bid 0.9: ask floored at the q=0 half spread 0.5
    d = _decision(pos=5, limit=500, asym=True, q=2.0)
    q, why = fin(raw(99.1, 100.1), inventory=d)
    assert q.bid_px == 991 and q.ask_px == 1005 and why.ask == "asym" and why.bid == ""
    d = _decision(pos=5, limit=500, asym=False, q=2.0)
    q, why = fin(raw(99.1, 100.1), inventory=d)
    assert q.ask_px == 1001 and why.ask == ""


book = st.integers(500, 2000).flatmap(lambda b: st.tuples(st.just(b), st.integers(b + 1, b + 20)))


@settings(max_examples=400, deadline=None)
@given(
    bb_ba=book,
    off_b=st.floats(-5.0, 5.0),
    off_a=st.floats(-5.0, 5.0),
    p_b=st.floats(0, 1),
    p_a=st.floats(0, 1),
    action=st.sampled_from(["widen", "pull"]),
    min_spread=st.integers(1, 6),
    lots=st.integers(0, 30),
    pos=st.integers(-60, 60),
    asym=st.booleans(),
)
# the draw that used to fail: a raw ask 1e-10 (price) above the grid price 78.3, within the
# documented float noise, rounds to it; the test once used a narrower tolerance than the code
@example(bb_ba=(773, 793), off_b=-1.0, off_a=1e-10, p_b=0.0, p_a=0.0, action="widen", min_spread=1, lots=10,
         pos=20, asym=False)  # pos 20: room for the ask after the min-notional bump (64 lots)
def test_property_final_quote_invariants(bb_ba, off_b, off_a, p_b, p_a, action, min_spread, lots, pos, asym):
    bb, ba = bb_ba
    mid = 0.5 * (bb + ba) * TICK
    rb, ra = mid + off_b, mid + off_a  # any raw quotes, crossed or through the book included
    r = RawQuote(rb, ra, 0.5 * (rb + ra), mid - rb, ra - mid)
    dec = _decision(pos=pos, limit=50, asym=asym, q=pos / 10)
    adv = AdverseParams(threshold=0.5, action=action, widen_factor=3.0)
    q, why = finalize(r, instrument=BTC, mid=mid, best_bid_ticks=bb, best_ask_ticks=ba, order_size_lots=lots,
                      inventory=dec, p_adverse_bid=p_b, p_adverse_ask=p_a, adverse=adv, min_spread_ticks=min_spread)
    if q.bid_px is not None:
        assert q.bid_px < ba  # never through the book
        x = rb / TICK  # never more aggressive than the model, beyond the documented float noise
        assert q.bid_px <= math.floor(x + ROUND_EPS_TICKS + ROUND_EPS_REL * abs(x))
        assert q.bid_px > 0
        assert q.bid_qty >= BTC.min_qty_lots and q.bid_qty * q.bid_px * TICK * 0.001 >= BTC.min_notional - 1e-9
        assert q.bid_qty <= dec.bid_room_lots
    else:
        assert q.bid_qty == 0 and why.bid
    if q.ask_px is not None:
        assert q.ask_px > bb
        x = ra / TICK
        assert q.ask_px >= math.ceil(x - ROUND_EPS_TICKS - ROUND_EPS_REL * abs(x))
        assert q.ask_qty >= BTC.min_qty_lots and q.ask_qty * q.ask_px * TICK * 0.001 >= BTC.min_notional - 1e-9
        assert q.ask_qty <= dec.ask_room_lots
    else:
        assert q.ask_qty == 0 and why.ask
    if q.bid_px is not None and q.ask_px is not None:
        assert q.ask_px - q.bid_px >= min_spread
    if action == "pull":
        if p_b > 0.5:
            assert q.bid_px is None
        if p_a > 0.5:
            assert q.ask_px is None
    if pos >= 50:
        assert q.bid_px is None
    if pos <= -50:
        assert q.ask_px is None


@settings(max_examples=200, deadline=None)
@given(bb_ba=book, off_b=st.floats(0.1, 3.0), off_a=st.floats(0.1, 3.0), p=st.floats(0.51, 1.0))
def test_property_widen_never_moves_a_side_inwards(bb_ba, off_b, off_a, p):
    bb, ba = bb_ba
    mid = 0.5 * (bb + ba) * TICK
    r = RawQuote(mid - off_b, mid + off_a, mid, off_b, off_a)
    kw = dict(instrument=BTC, mid=mid, best_bid_ticks=bb, best_ask_ticks=ba, order_size_lots=100)
    q0, _ = finalize(r, **kw)
    q1, _ = finalize(r, adverse=ADV_WIDEN, p_adverse_bid=p, p_adverse_ask=0.0, **kw)
    assert q1.bid_px <= q0.bid_px and q1.ask_px == q0.ask_px
    q2, _ = finalize(r, adverse=ADV_WIDEN, p_adverse_bid=0.0, p_adverse_ask=p, **kw)
    assert q2.ask_px >= q0.ask_px and q2.bid_px == q0.bid_px


# ------------------------------------------------------------------ pipeline, audit, factory
CAL = Calibration(sigma=2.0, A=1.0, kappa=2.0, r2=0.9, n=500, n_points=8, source="fit", sigma_source="features")


def _settings(**quoter):
    return load_settings(overrides={"quoter": {"gamma": 0.01, "horizon_s": 10.0, **quoter}})


def test_pipeline_two_sided_quote_and_audit():
    s = _settings()
    pipe = quoting_pipeline(s, BTC)
    q = pipe.step(ts_ms=1_000, best_bid_ticks=618000, best_ask_ticks=618001, position_lots=0, calibration=CAL,
                  ofi=1.5, imbalance=0.2, vpin=0.3, p_adverse_bid=0.1, p_adverse_ask=0.2)
    assert q.symbol == "BTCUSDT" and q.ts_ms == 1_000
    assert q.bid_px is not None and q.ask_px is not None
    assert q.bid_px <= 618000 and q.ask_px >= 618001
    # A-S by hand at q=0: half spread = (g*s^2*tau + (2/g)ln(1+g/k))/2 around the mid
    half = 0.5 * (0.01 * 4.0 * 10.0 + 200.0 * math.log1p(0.01 / 2.0))
    mid = 61800.05
    assert q.bid_px == math.floor((mid - half) / TICK + 1e-9)
    assert q.ask_px == math.ceil((mid + half) / TICK - 1e-9)
    assert q.bid_qty == 1 and q.ask_qty == 1
    rec = pipe.audit(features={"microprice": 61800.07})
    assert rec is not None
    orjson.dumps(rec)  # JSON-ready
    for key in ("features", "p_adverse_bid", "sigma", "A", "kappa", "q", "r", "delta_bid", "delta_ask",
                "raw_bid", "raw_ask", "bid_px", "ask_px", "bid_reason", "ask_reason"):
        assert key in rec
    assert rec["features"]["ofi"] == 1.5 and rec["features"]["microprice"] == 61800.07
    assert rec["bid_px"] == BTC.price.to_str(q.bid_px) and rec["quoter"] == "avellaneda"
    assert rec["calibration"]["source"] == "fit" and rec["inventory"]["limit_lots"] == 50
    assert rec["delta_bid"] == pytest.approx(half) and rec["q"] == 0.0


def test_pipeline_inventory_skew_and_limit():
    s = _settings()
    pipe = quoting_pipeline(s, BTC)
    kw = dict(ts_ms=1, best_bid_ticks=618000, best_ask_ticks=618001, calibration=CAL)
    flat = pipe.step(position_lots=0, **kw)
    long = pipe.step(position_lots=20, **kw)
    assert long.ask_px < flat.ask_px and long.bid_px < flat.bid_px  # quotes move down when long
    at_limit = pipe.step(position_lots=50, **kw)  # max_position 0.05 BTC = 50 lots
    assert at_limit.bid_px is None and "limit" in at_limit.reason and at_limit.ask_px is not None
    rec = pipe.audit()
    assert rec["bid_pulled"] and "limit" in rec["bid_reason"] and rec["q"] == 50.0


def test_pipeline_without_a_book_pulls_both():
    pipe = quoting_pipeline(_settings(), BTC)
    q = pipe.step(ts_ms=5, best_bid_ticks=None, best_ask_ticks=618001, position_lots=0, calibration=CAL)
    assert q.bid_px is None and q.ask_px is None and q.reason == "bid:no_book;ask:no_book"
    assert pipe.audit() is None
    q = pipe.step(ts_ms=5, best_bid_ticks=618001, best_ask_ticks=618001, position_lots=0, calibration=CAL)
    assert q.bid_px is None and q.ask_px is None


def test_pipeline_adverse_from_settings():
    s = load_settings(overrides={"quoter": {"kind": "glft", "gamma": 0.01},
                                 "adverse": {"threshold": 0.5, "action": "pull"}})
    pipe = quoting_pipeline(s, BTC)
    q = pipe.step(ts_ms=1, best_bid_ticks=618000, best_ask_ticks=618001, position_lots=0, calibration=CAL,
                  p_adverse_bid=0.9)
    assert q.bid_px is None and "adverse_pull" in q.reason and q.ask_px is not None
    assert pipe.audit()["quoter"] == "glft"


def test_session_clock_counts_down_and_restarts():
    c = SessionClock(10.0)
    assert c.t_left_s(1_000) == 10.0
    assert c.t_left_s(4_000) == 7.0
    assert c.t_left_s(10_999) == pytest.approx(0.001)
    assert c.t_left_s(11_000) == 10.0  # new session
    assert c.t_left_s(9_000) == 10.0  # older event: treated as the session start
    pipe = quoting_pipeline(_settings(horizon_mode="session"), BTC)
    kw = dict(best_bid_ticks=618000, best_ask_ticks=618001, position_lots=0, calibration=CAL)
    spreads = [(lambda q: q.ask_px - q.bid_px)(pipe.step(ts_ms=t, **kw)) for t in (0, 5_000, 9_900)]
    assert spreads[0] > spreads[1] > spreads[2]
    assert pipe.audit()["t_left_s"] == pytest.approx(0.1)


def test_factory_kinds():
    assert isinstance(make_quoter(Settings()), AvellanedaStoikov)
    q = make_quoter(load_settings(overrides={"quoter": {"kind": "glft", "gamma": 0.3}}))
    assert isinstance(q, GLFT) and q.gamma == 0.3
    a = make_quoter(load_settings(overrides={"quoter": {"horizon_mode": "session", "horizon_s": 60}}))
    assert a.mode == "session" and a.horizon_s == 60


def test_factory_rl_is_lazy_and_clear(tmp_path, monkeypatch):
    import importlib
    import importlib.util
    import sys

    s = load_settings(overrides={"quoter": {"kind": "rl", "rl_policy": str(tmp_path / "missing.json")}})
    real_import = importlib.import_module

    def no_rl(name, *a, **k):
        if name == "daemon.models.rl":
            raise ModuleNotFoundError("No module named 'daemon.models.rl'", name="daemon.models.rl")
        return real_import(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_rl)
    with pytest.raises(QuoterBuildError, match="daemon.models.rl is not available"):
        make_quoter(s)
    monkeypatch.setattr(importlib, "import_module", real_import)
    if "daemon.models.rl" in sys.modules or importlib.util.find_spec("daemon.models.rl") is not None:
        # with the real RL module present, a missing or broken policy file is a clear error too
        with pytest.raises(QuoterBuildError, match="missing.json"):
            make_quoter(s)
        bad = tmp_path / "bad.json"
        bad.write_text("{not a policy")
        s_bad = load_settings(overrides={"quoter": {"kind": "rl", "rl_policy": str(bad)}})
        with pytest.raises(QuoterBuildError, match="bad.json"):
            make_quoter(s_bad)


def test_exact_grid_prices_at_large_magnitudes():
    inst = Instrument("BIG", "linear", "0.01", "1", min_notional=0.0)
    for px in (987654.32, 123456.78, 0.07, 61800.2):
        t = round(px / 0.01)
        q, _ = finalize(RawQuote(px, px + 0.05, px, 0.0, 0.05), instrument=inst, mid=px + 0.02,
                        best_bid_ticks=t - 10, best_ask_ticks=t + 20, order_size_lots=1)
        assert q.bid_px == t and q.ask_px == t + 5


def test_factory_builds_the_rl_quoter_and_the_pipeline_runs_it(tmp_path):
    rl = pytest.importorskip("daemon.models.rl")
    path = tmp_path / "policy.npz"
    rl.QPolicy.empty(rl.TrainConfig()).save(path)
    s = load_settings(overrides={"quoter": {"kind": "rl", "rl_policy": str(path), "gamma": 0.01, "horizon_s": 30}})
    quoter = make_quoter(s)
    assert quoter.name == "rl" and quoter.gamma == 0.01 and quoter.horizon_s == 30
    pipe = quoting_pipeline(s, BTC, quoter)
    q = pipe.step(ts_ms=1, best_bid_ticks=618000, best_ask_ticks=618001, position_lots=3, calibration=CAL)
    assert q.bid_px is not None and q.ask_px is not None and q.bid_px <= 618000 < 618001 <= q.ask_px
    assert pipe.audit()["quoter"] == "rl"
