"""A-S (2008) and GLFT (2013) quoters against the hand-computed vectors of papers.md §2-3,
against the paper formulas written out by hand, and hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from daemon.models import avellaneda as AS
from daemon.models import glft as GL
from daemon.models.avellaneda import AvellanedaStoikov
from daemon.models.base import MarketState
from daemon.models.glft import GLFT


def _state(mid=100.0, q=0.0, sigma=2.0, A=140.0, kappa=1.5, t_left_s=math.inf) -> MarketState:
    return MarketState(
        ts_ms=0, mid=mid, best_bid=mid - 0.05, best_ask=mid + 0.05, tick=0.1, q=q, sigma=sigma, A=A,
        kappa=kappa, t_left_s=t_left_s,
    )


# ------------------------------------------------------------------ papers.md §2 test vector
# s=100, q=2, t=0.5, T=1, gamma=0.1, sigma=2, k=1.5
AS_VEC = dict(s=100.0, q=2.0, gamma=0.1, sigma=2.0, tau=0.5, kappa=1.5)


def test_as_vector_functions():
    s, q, g, sg, tau, k = AS_VEC.values()
    assert AS.reservation_price(s, q, g, sg, tau) == pytest.approx(99.6, abs=1e-9)
    assert AS.total_spread(g, sg, tau, k) == pytest.approx(1.490770, abs=5e-7)
    db, da = AS.deltas(s, q, g, sg, tau, k)
    assert db == pytest.approx(1.145385, abs=5e-7)
    assert da == pytest.approx(0.345385, abs=5e-7)
    bid, ask = AS.quotes(s, q, g, sg, tau, k)
    assert bid == pytest.approx(98.854615, abs=5e-7)
    assert ask == pytest.approx(100.345385, abs=5e-7)


def test_as_vector_quoter_session_mode():
    """T=1, t=0.5: the session quoter with horizon 1 s and 0.5 s left gives the same vector."""
    quoter = AvellanedaStoikov(0.1, horizon_s=1.0, mode="session")
    raw = quoter.quote(_state(q=2.0, t_left_s=0.5))
    assert raw.reservation == pytest.approx(99.6, abs=1e-9)
    assert raw.bid == pytest.approx(98.854615, abs=5e-7)
    assert raw.ask == pytest.approx(100.345385, abs=5e-7)
    assert raw.delta_bid == pytest.approx(1.145385, abs=5e-7)
    assert raw.delta_ask == pytest.approx(0.345385, abs=5e-7)
    assert raw.ask - raw.bid == pytest.approx(1.490770, abs=5e-7)


def test_as_rolling_mode_ignores_time_left():
    quoter = AvellanedaStoikov(0.1, horizon_s=0.5, mode="rolling")
    a = quoter.quote(_state(q=2.0, t_left_s=0.01))
    b = quoter.quote(_state(q=2.0, t_left_s=math.inf))
    assert a == b
    assert a.bid == pytest.approx(98.854615, abs=5e-7)


def test_as_session_mode_horizon_shrinks_to_zero():
    """Session mode: tau = clip(t_left, 0, T). At the end only the (2/gamma)ln(1+gamma/k) spread
    is left and the reservation price equals the mid; tau never exceeds the horizon."""
    quoter = AvellanedaStoikov(0.1, horizon_s=1.0, mode="session")
    end = quoter.quote(_state(q=3.0, t_left_s=0.0))
    assert end.reservation == pytest.approx(100.0)
    assert end.ask - end.bid == pytest.approx(20.0 * math.log(1 + 0.1 / 1.5))
    over = quoter.quote(_state(q=3.0, t_left_s=50.0))
    full = quoter.quote(_state(q=3.0, t_left_s=1.0))
    assert over == full
    neg = quoter.quote(_state(q=3.0, t_left_s=-5.0))
    assert neg == end
    spreads = [(lambda r: r.ask - r.bid)(quoter.quote(_state(q=1.0, t_left_s=t))) for t in (1.0, 0.75, 0.5, 0.25, 0.0)]
    assert all(x > y for x, y in zip(spreads, spreads[1:]))


def test_as_bad_parameters():
    with pytest.raises(ValueError):
        AvellanedaStoikov(0.0)
    with pytest.raises(ValueError):
        AvellanedaStoikov(0.1, mode="forever")


def _as_by_hand(s, q, gamma, sigma, tau, k):
    """Eqs. (29)-(30) written out independently of the module."""
    r = s - q * gamma * sigma**2 * tau
    spread = gamma * sigma**2 * tau + (2 / gamma) * math.log(1 + gamma / k)
    return r - spread / 2, r + spread / 2, r


@pytest.mark.parametrize(
    "s,q,gamma,sigma,tau,k",
    [(61800.0, -3.0, 0.05, 4.0, 300.0, 2.0), (100.0, 0.0, 1.0, 2.0, 1.0, 1.5), (3000.0, 7.5, 0.01, 0.3, 60.0, 0.2)],
)
def test_as_against_hand_formula(s, q, gamma, sigma, tau, k):
    bid, ask, r = _as_by_hand(s, q, gamma, sigma, tau, k)
    raw = AvellanedaStoikov(gamma, horizon_s=tau, mode="rolling").quote(_state(mid=s, q=q, sigma=sigma, kappa=k))
    assert raw.bid == pytest.approx(bid, rel=1e-12)
    assert raw.ask == pytest.approx(ask, rel=1e-12)
    assert raw.reservation == pytest.approx(r, rel=1e-12)
    # and the paper's "measured from the mid" form of papers.md §2
    h = (1 / gamma) * math.log(1 + gamma / k)
    assert raw.delta_bid == pytest.approx((1 + 2 * q) / 2 * gamma * sigma**2 * tau + h, rel=1e-9, abs=1e-9)
    assert raw.delta_ask == pytest.approx((1 - 2 * q) / 2 * gamma * sigma**2 * tau + h, rel=1e-9, abs=1e-9)


# ------------------------------------------------------------------ papers.md §3 GLFT table
GLFT_ROWS = [
    # gamma, k, A, sigma, c1, c2, half_spread, skew
    (0.1, 1.5, 140.0, 2.0, 0.645385, 0.025859, 0.671244, 0.051717),
    (0.05, 1.0, 10.0, 1.0, 0.975803, 0.083456, 1.017531, 0.083456),
    (0.01, 0.3, 0.9, 0.3, 3.278982, 0.226219, 3.312915, 0.067866),
]


@pytest.mark.parametrize("g,k,A,sigma,c1,c2,half,skew", GLFT_ROWS)
def test_glft_table(g, k, A, sigma, c1, c2, half, skew):
    got1, got2 = GL.coefficients(g, k, A)
    assert got1 == pytest.approx(c1, abs=5e-7)
    assert got2 == pytest.approx(c2, abs=5e-7)
    assert GL.half_spread(g, sigma, k, A) == pytest.approx(half, abs=5e-7)
    raw = GLFT(g).quote(_state(q=0.0, sigma=sigma, A=A, kappa=k))
    assert raw.delta_bid == pytest.approx(half, abs=5e-7)
    assert raw.delta_ask == pytest.approx(half, abs=5e-7)
    # skew = sigma*c2: one unit of inventory moves each quote by it
    r1 = GLFT(g).quote(_state(q=1.0, sigma=sigma, A=A, kappa=k))
    assert r1.delta_bid - raw.delta_bid == pytest.approx(skew, abs=5e-7)
    assert raw.delta_ask - r1.delta_ask == pytest.approx(skew, abs=5e-7)


def test_glft_q1_row():
    raw = GLFT(0.1).quote(_state(q=1.0, sigma=2.0, A=140.0, kappa=1.5))
    assert raw.delta_bid == pytest.approx(0.722961, abs=5e-7)
    assert raw.delta_ask == pytest.approx(0.619527, abs=5e-7)
    assert raw.bid == pytest.approx(100 - 0.722961, abs=5e-7)
    assert raw.ask == pytest.approx(100 + 0.619527, abs=5e-7)
    db, da = GL.deltas(1.0, 0.1, 2.0, 1.5, 140.0)
    assert float(db) == pytest.approx(0.722961, abs=5e-7)
    assert float(da) == pytest.approx(0.619527, abs=5e-7)


def _glft_2013_by_hand(q, gamma, sigma, k, A):
    """GLFT 2013 §4 written out: delta_b = (1/g)ln(1+g/k) + (2q+1)/2 * sqrt(s^2 g/(2kA) (1+g/k)^(1+k/g))."""
    base = (1 / gamma) * math.log(1 + gamma / k)
    root = math.sqrt(sigma**2 * gamma / (2 * k * A) * (1 + gamma / k) ** (1 + k / gamma))
    return base + (2 * q + 1) / 2 * root, base - (2 * q - 1) / 2 * root


@pytest.mark.parametrize("q", [-4.0, -1.0, 0.0, 0.5, 3.0])
def test_glft_against_2013_hand_formula(q):
    db, da = _glft_2013_by_hand(q, 0.05, 3.0, 0.8, 2.5)
    raw = GLFT(0.05).quote(_state(mid=500.0, q=q, sigma=3.0, A=2.5, kappa=0.8))
    assert raw.delta_bid == pytest.approx(db, rel=1e-12)
    assert raw.delta_ask == pytest.approx(da, rel=1e-12)
    assert type(raw.bid) is float and type(raw.ask) is float  # no numpy scalars on the per-tick path


def test_glft_coefficient_cache_follows_calibration():
    quoter = GLFT(0.1)
    a = quoter.quote(_state(A=140.0, kappa=1.5))
    b = quoter.quote(_state(A=10.0, kappa=1.0))
    c = quoter.quote(_state(A=140.0, kappa=1.5))
    assert a == c and a != b
    db, _ = _glft_2013_by_hand(0.0, 0.1, 2.0, 1.0, 10.0)
    assert b.delta_bid == pytest.approx(db, rel=1e-12)


def test_glft_vectorised_functions_accept_arrays():
    q = np.array([-1.0, 0.0, 1.0])
    db, da = GL.deltas(q, 0.1, 2.0, 1.5, 140.0)
    assert db[2] == pytest.approx(0.722961, abs=5e-7) and da[2] == pytest.approx(0.619527, abs=5e-7)
    b, a = AS.deltas(100.0, q, 0.1, 2.0, 0.5, 1.5)
    assert np.allclose(b + a, 1.4907704227514234)


# ------------------------------------------------------------------ properties
params = dict(
    q=st.floats(-20, 20, allow_nan=False).filter(lambda x: abs(x) > 1e-6),
    gamma=st.floats(0.001, 2.0),
    sigma=st.floats(0.01, 10.0),
    kappa=st.floats(0.05, 20.0),
    A=st.floats(0.1, 500.0),
    tau=st.floats(0.01, 600.0),
)


@settings(max_examples=150, deadline=None)
@given(**params)
def test_property_inventory_skews_towards_unwinding(q, gamma, sigma, kappa, A, tau):
    """Long inventory puts the ask nearer the mid than the bid (and short the reverse), both models."""
    st_ = _state(mid=1000.0, q=q, sigma=sigma, A=A, kappa=kappa)
    _, c2 = GL.coefficients(gamma, kappa, A)
    # exact-arithmetic skew delta_bid - delta_ask of each model (A-S: 2q*gamma*sigma^2*tau; GLFT: 2q*sigma*c2)
    skews = (2 * q * gamma * sigma * sigma * tau, 2 * q * sigma * float(c2))
    # A skew below double resolution at a mid of 1000 (~1e-13) cannot show in the prices: such draws
    # (e.g. q=5e-5, gamma=1e-3, sigma=0.01, tau=0.01 -> 1e-14) only need the non-strict order.
    assume(max(abs(x) for x in skews) > 1e-9)
    for raw, skew in zip((AvellanedaStoikov(gamma, horizon_s=tau).quote(st_), GLFT(gamma).quote(st_)), skews):
        if abs(skew) <= 1e-9:
            assert (raw.delta_ask <= raw.delta_bid) if q > 0 else (raw.delta_bid <= raw.delta_ask)
            continue
        if q > 0:
            assert raw.delta_ask < raw.delta_bid
            assert raw.reservation < 1000.0
        else:
            assert raw.delta_bid < raw.delta_ask
            assert raw.reservation > 1000.0


@settings(max_examples=150, deadline=None)
@given(q1=params["q"], q2=params["q"], gamma=params["gamma"], sigma=params["sigma"], kappa=params["kappa"],
       A=params["A"], tau=params["tau"])
def test_property_spread_independent_of_q(q1, q2, gamma, sigma, kappa, A, tau):
    as_ = AvellanedaStoikov(gamma, horizon_s=tau)
    gl = GLFT(gamma)
    for quoter in (as_, gl):
        r1 = quoter.quote(_state(q=q1, sigma=sigma, A=A, kappa=kappa))
        r2 = quoter.quote(_state(q=q2, sigma=sigma, A=A, kappa=kappa))
        s1, s2 = r1.ask - r1.bid, r2.ask - r2.bid
        assert s1 == pytest.approx(s2, rel=1e-9, abs=1e-9)
        assert s1 > 0
    # A-S total spread is eq. (30) exactly
    r = as_.quote(_state(q=q1, sigma=sigma, A=A, kappa=kappa))
    assert r.ask - r.bid == pytest.approx(gamma * sigma**2 * tau + (2 / gamma) * math.log1p(gamma / kappa), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(q=params["q"], gamma=params["gamma"], sigma=params["sigma"], kappa=params["kappa"], tau=params["tau"])
def test_property_as_quotes_centred_on_reservation(q, gamma, sigma, kappa, tau):
    raw = AvellanedaStoikov(gamma, horizon_s=tau).quote(_state(q=q, sigma=sigma, kappa=kappa))
    assert 0.5 * (raw.bid + raw.ask) == pytest.approx(raw.reservation, rel=1e-12, abs=1e-9)
    assert raw.delta_bid == pytest.approx(100.0 - raw.bid, abs=1e-9)
    assert raw.delta_ask == pytest.approx(raw.ask - 100.0, abs=1e-9)
