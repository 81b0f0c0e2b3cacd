"""Integration on the real 345 s BTCUSDT recording: parser -> book -> features -> calibrator ->
quoting pipeline (no mocks). Every quote respects the book and the limits; calibration warms up
from the fallback to a fit."""

from __future__ import annotations

import gzip
import math
from importlib import resources

import pytest

from daemon.bybit.messages import FrameParser
from daemon.config import load_settings
from daemon.core.book import OrderBook
from daemon.core.events import BookUpdate, Trade
from daemon.core.instrument import btcusdt_linear
from daemon.features.state import FeatureState
from daemon.models.calibration import Calibrator
from daemon.wiring import calibration_params, quoting_pipeline

INST = btcusdt_linear()


def _events():
    path = resources.files("daemon") / "data" / "linear_BTCUSDT_2024-08-08_5min.bybit.gz"
    parser = FrameParser({"BTCUSDT": INST})
    with gzip.open(path, "rt") as f:
        for line in f:
            recv, frame = line.split(" ", 1)
            evs = parser.parse(frame, int(recv))
            if isinstance(evs, list):
                yield from evs


@pytest.fixture(scope="module")
def replay():
    """Run both quoters over the recording once; collect what the tests check."""
    s = load_settings(overrides={"quoter": {"gamma": 0.001, "min_spread_ticks": 2},
                                 "adverse": {"threshold": 0.8, "action": "widen"},
                                 "inventory": {"max_position": 0.03, "penalty": "asymmetric"}})
    s_glft = load_settings(overrides={"quoter": {"kind": "glft", "gamma": 0.01},
                                      "adverse": {"threshold": 0.8, "action": "pull"}})
    book = OrderBook("BTCUSDT", 50)
    book.request_sync()
    fs = FeatureState(INST)
    cal = Calibrator(calibration_params(s), INST.price.step_float)
    pipes = [quoting_pipeline(s, INST), quoting_pipeline(s_glft, INST)]
    out = {"violations": [], "quotes": 0, "estimates": [], "pulled_limit": 0, "trades": 0, "audits": 0}
    last_fit_ms = None
    i = 0
    for ev in _events():
        if isinstance(ev, Trade):
            fs.on_trade(ev)
            if book.live:
                out["trades"] += 1
                mid = (book.best_bid + book.best_ask) * 0.5 * INST.price.step_float
                assert cal.on_trade(ev.ts_ms, INST.price.to_float(ev.price), INST.qty.to_float(ev.qty), mid, ev.side)
            continue
        if not isinstance(ev, BookUpdate) or ev.depth != 50:
            continue
        book.apply(ev)
        if not book.live:
            continue
        fs.on_book(book, ev)
        if last_fit_ms is None or ev.ts_ms - last_fit_ms >= 1000:
            cal.set_sigma(fs.sigma_price_per_s())
            out["estimates"].append(cal.on_timer(ev.ts_ms))
            last_fit_ms = ev.ts_ms
        i += 1
        pos = ((i // 7) % 81) - 40  # sweep the position through -40..40 lots (limit 30)
        p_b = (i * 37 % 100) / 100.0
        p_a = (i * 61 % 100) / 100.0
        bb, ba = book.best_bid, book.best_ask
        for pipe in pipes:
            q = pipe.step(ts_ms=ev.ts_ms, best_bid_ticks=bb, best_ask_ticks=ba, position_lots=pos,
                          calibration=cal.estimate(), ofi=fs.ofi, imbalance=fs.imbalance_top, vpin=fs.vpin,
                          p_adverse_bid=p_b, p_adverse_ask=p_a)
            out["quotes"] += 1
            lim = pipe.inventory.decide(pos, (bb + ba) * 0.05).limit_lots
            bad = (
                (q.bid_px is not None and (q.bid_px >= ba or q.bid_qty < 1))
                or (q.ask_px is not None and (q.ask_px <= bb or q.ask_qty < 1))
                or (q.bid_px is not None and q.ask_px is not None and q.ask_px - q.bid_px < pipe.min_spread_ticks)
                or (q.bid_px is not None and pos + q.bid_qty > lim)
                or (q.ask_px is not None and pos - q.ask_qty < -lim)
            )
            if bad:
                out["violations"].append((ev.ts_ms, bb, ba, pos, q))
            if "limit" in q.reason:
                out["pulled_limit"] += 1
            if i % 500 == 0:
                rec = pipe.audit()
                assert rec is not None and rec["symbol"] == "BTCUSDT"
                out["audits"] += 1
    out["cal"] = cal
    return out


def test_no_quote_crosses_the_book_or_breaches_limits(replay):
    assert replay["quotes"] > 10_000
    assert replay["violations"] == []
    assert replay["pulled_limit"] > 0  # the position sweep did hit the limits
    assert replay["audits"] > 10


def test_calibration_warms_up_from_fallback_to_fit(replay):
    ests = replay["estimates"]
    assert ests[0].source == "fallback"
    fits = [e for e in ests if e.source == "fit"]
    assert len(fits) > 0.9 * len(ests)
    lo_A, hi_A = load_settings().calibration.A_bounds
    for e in fits:
        assert lo_A <= e.A <= hi_A and e.kappa > 0 and math.isfinite(e.kappa)
        assert e.r2 >= load_settings().calibration.min_r2
    assert any(e.sigma_source == "features" for e in ests)
    cal = replay["cal"]
    assert cal.rejected == {}
    # sweeps were folded: fewer arrivals than prints
    assert cal.merged > 0 and cal.n_trades + cal.merged <= replay["trades"]
