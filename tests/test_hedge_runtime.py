"""Hedge ratios are sampled by the runtime on the mark clock and exposed in the status (logs)."""

from __future__ import annotations

import math

from daemon.config import load_settings
from daemon.core.engine import Engine
from daemon.core.events import BookUpdate
from daemon.core.instrument import Instrument
from daemon.runtime.runtime import Runtime


def inst(sym):
    return Instrument(symbol=sym, category="linear", tick_size="0.10", qty_step="0.001")


def test_betas_and_suggested_hedge_follow_co_movement():
    s = load_settings(overrides={"market": {"symbols": ["AAAUSDT", "BBBUSDT"]},
                                 "inventory": {"hedge_symbols": ["AAAUSDT", "BBBUSDT"], "hedge_reference": "AAAUSDT"},
                                 "ledger": {"mark_interval_ms": 1000}})
    ins = {"AAAUSDT": inst("AAAUSDT"), "BBBUSDT": inst("BBBUSDT")}
    eng = Engine(ins, 50)
    rt = Runtime.replay(s, eng, ledger_path=None)
    u = {"AAAUSDT": 0, "BBBUSDT": 0}
    # BBB's log-returns are exactly twice AAA's: beta must be 2
    a = 100000.0
    for k in range(60):
        ts = 1_700_000_000_000 + k * 1000
        a *= math.exp(0.001 * (1 if (k * 7) % 3 else -1))
        b = 50000.0 * (a / 100000.0) ** 2
        for sym, px in (("BBBUSDT", b), ("AAAUSDT", a)):
            t = int(round(px * 10))
            u[sym] += 1
            eng.on_event(BookUpdate(sym, 50, True, [(t - 1, 5)], [(t + 1, 5)], u[sym], u[sym], ts, ts, 0))
    st = rt.symbol_status("BBBUSDT")
    assert abs(st["beta"] - 2.0) < 0.05
    assert rt.symbol_status("AAAUSDT")["beta"] == 1.0
    assert st["q_hedge"] == 0.0  # flat book: nothing to hedge
