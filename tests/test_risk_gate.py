"""Risk gate: one test per trigger, soft vs hard behaviour, resume and cool-down."""

from __future__ import annotations

import pytest

from daemon.config import RiskConfig
from daemon.core.events import Quote
from daemon.risk import RiskGate, SymbolRisk


def gate(**kw):
    base = dict(
        max_position=0.1,
        max_notional=10_000.0,
        max_total_notional=15_000.0,
        max_drawdown=500.0,
        max_daily_loss=300.0,
        max_error_rate=5.0,
        stale_ms=5000,
        cooldown_s=None,
        error_window_s=10.0,
    )
    base.update(kw)
    return RiskGate(**base)


def sym(name="BTCUSDT", live=True, age=0, pos=0.0, notional=0.0):
    return SymbolRisk(name, live, age, pos, notional)


def check(g, ts, syms=None, pnl=0.0, dd=0.0, daily=0.0, errors=0):
    return g.check(ts, syms or [sym()], total_pnl=pnl, drawdown=dd, daily_pnl=daily, errors_total=errors)


def test_all_clear():
    g = gate()
    d = check(g, 1000)
    assert not d.halted and d.paused == frozenset() and d.cancel == frozenset() and d.events == []
    assert d.allows("BTCUSDT")


def test_book_not_live_is_soft_and_resumes_by_itself():
    g = gate()
    d = check(g, 1000, [sym(live=False), sym("ETHUSDT")])
    assert not d.halted and d.paused == {"BTCUSDT"} and d.cancel == {"BTCUSDT"}
    assert [(e.kind, e.check, e.symbol) for e in d.events] == [("pause", "book_not_live", "BTCUSDT")]
    assert not d.allows("BTCUSDT") and d.allows("ETHUSDT")
    d = check(g, 1100, [sym(live=False), sym("ETHUSDT")])
    assert d.events == [] and d.cancel == frozenset()  # no repeated events
    d = check(g, 1200, [sym(live=True), sym("ETHUSDT")])
    assert d.paused == frozenset() and [(e.kind, e.check) for e in d.events] == [("unpause", "book_not_live")]
    assert not g.tripped


def test_stale_book_is_soft():
    g = gate(stale_ms=5000)
    assert check(g, 1000, [sym(age=5000)]).paused == frozenset()
    d = check(g, 2000, [sym(age=5001)])
    assert d.paused == {"BTCUSDT"} and d.events[0].check == "book_stale" and d.events[0].value == 5001
    assert check(g, 3000, [sym(age=10)]).paused == frozenset()


def test_error_rate_pauses_all_and_clears():
    g = gate(max_error_rate=5.0, error_window_s=10.0)
    t = 0
    errors = 0
    for _ in range(10):  # 3 errors/s: fine
        t += 1000
        errors += 3
        assert check(g, t, errors=errors).paused == frozenset()
    evs = []
    for _ in range(10):  # 20 errors/s: storm
        t += 1000
        errors += 20
        d = check(g, t, [sym(), sym("ETHUSDT")], errors=errors)
        evs += d.events
    assert d.paused == {"BTCUSDT", "ETHUSDT"} and not d.halted and not g.tripped
    assert {(e.kind, e.check, e.symbol) for e in evs} == {("pause", "error_rate", "BTCUSDT"), ("pause", "error_rate", "ETHUSDT")}
    for _ in range(15):  # no more errors: clears once the storm left the window
        t += 1000
        d = check(g, t, [sym(), sym("ETHUSDT")], errors=errors)
    assert d.paused == frozenset()


@pytest.mark.parametrize(
    "kwargs,check_name",
    [
        (dict(syms=[sym(pos=0.11)]), "max_position"),
        (dict(syms=[sym(pos=-0.11)]), "max_position"),
        (dict(syms=[sym(notional=10_001.0)]), "max_notional"),
        (dict(syms=[sym(notional=8000.0), sym("ETHUSDT", notional=8000.0)]), "max_total_notional"),
        (dict(dd=500.5, pnl=-500.5), "max_drawdown"),
        (dict(daily=-300.5, pnl=-300.5), "max_daily_loss"),
    ],
)
def test_hard_trips(kwargs, check_name):
    g = gate()
    syms = kwargs.pop("syms", [sym()])
    d = check(g, 5000, syms, **kwargs)
    assert d.halted and g.tripped and g.since_ms == 5000 and check_name in g.reason
    trips = [e for e in d.events if e.kind == "trip"]
    assert len(trips) == 1 and trips[0].check == check_name
    assert d.cancel == {s.symbol for s in syms}  # cancel everything
    assert not d.allows("BTCUSDT")
    # stays tripped even when the condition clears (hard), no new events, nothing more to cancel
    d2 = check(g, 6000)
    assert d2.halted and d2.events == [] and d2.cancel == frozenset()
    q = g.filter_quote(Quote("BTCUSDT", 100, 1, 101, 1, 6000), d2, 0, None)
    assert q.bid_px is None and q.ask_px is None


def test_limits_at_exactly_the_limit_do_not_trip():
    g = gate()
    d = check(g, 1, [sym(pos=0.1, notional=10_000.0)], dd=500.0, daily=-300.0)
    assert not d.halted


def test_manual_resume_rebases_losses_and_rearms_limits():
    g = gate()
    d = check(g, 1000, dd=600.0, pnl=-600.0)
    assert d.halted
    ev = g.resume(2000, "manual", total_pnl=-600.0, symbols=[sym()])
    assert ev.kind == "resume" and ev.check == "manual" and not g.tripped
    # the same loss no longer trips (re-based), a further 500 of drawdown does
    assert not check(g, 3000, dd=600.0, pnl=-600.0).halted
    assert not check(g, 3100, dd=900.0, pnl=-900.0).halted
    assert check(g, 3200, dd=1101.0, pnl=-1101.0).halted
    assert g.resume(3300) is not None and g.resume(3400) is None  # not tripped any more


def test_position_breach_after_resume_is_disarmed_until_back_within():
    g = gate()
    assert check(g, 1000, [sym(pos=0.2)]).halted
    g.resume(2000, "manual", symbols=[sym(pos=0.2)])
    assert not check(g, 3000, [sym(pos=0.2)]).halted  # still breached: disarmed
    assert not check(g, 4000, [sym(pos=0.05)]).halted  # back within: re-armed
    assert check(g, 5000, [sym(pos=0.15)]).halted


def test_cooldown_resume():
    g = gate(cooldown_s=60.0)
    assert check(g, 1000, [sym(pos=0.2)]).halted
    assert check(g, 60_999, [sym(pos=0.05)]).halted
    d = check(g, 61_000, [sym(pos=0.05)])
    assert not d.halted and [(e.kind, e.check) for e in d.events] == [("resume", "cooldown")]


def test_manual_only_without_cooldown():
    g = gate(cooldown_s=None)
    check(g, 0, [sym(pos=0.2)])
    assert check(g, 10**9, [sym()]).halted


def test_restore_from_ledger_state():
    g = gate()
    g.restore(True, "max_drawdown *: 600 > 500", 1234)
    d = check(g, 2000)
    assert d.halted and g.metrics()["tripped"] == 1 and g.metrics()["since_ms"] == 1234


def test_filter_quote_drops_the_side_that_would_breach():
    g = gate()
    d = check(g, 0)
    q = Quote("BTCUSDT", 100, 3, 101, 3, 0)
    # max position 10 lots, long 8: a 3-lot bid fill would make 11 -> bid dropped, ask kept
    out = g.filter_quote(q, d, position_lots=8, max_position_lots=10)
    assert out.bid_px is None and out.ask_px == 101
    out = g.filter_quote(q, d, position_lots=-8, max_position_lots=10)
    assert out.ask_px is None and out.bid_px == 100
    assert g.filter_quote(q, d, position_lots=0, max_position_lots=10) is q


def test_event_ids_unique_and_deterministic():
    def run():
        g = gate(cooldown_s=1.0)
        evs = []
        for t, s in [(0, sym(live=False)), (1, sym()), (2, sym(pos=1.0)), (2000, sym()), (2001, sym(live=False))]:
            evs += check(g, t, [s]).events
        return evs

    a, b = run(), run()
    assert a == b and len({e.risk_id for e in a}) == len(a) == 5
    assert [e.kind for e in a] == ["pause", "unpause", "trip", "resume", "pause"]


def test_from_config():
    g = RiskGate.from_config(RiskConfig(), id_prefix="x:")
    assert g.max_position == 0.1 and g.error_window_ms == 10_000
    assert check(g, 1, [sym(pos=1.0)]).events[0].risk_id.startswith("x:risk:")


def test_ledger_error_pauses_all_symbols_until_healthy():
    g = gate()
    d = g.check(1, [sym(), sym("ETHUSDT")], total_pnl=0, drawdown=0, daily_pnl=0, ledger_error="OperationalError: database or disk is full")
    assert d.paused == {"BTCUSDT", "ETHUSDT"} and d.cancel == {"BTCUSDT", "ETHUSDT"} and not d.halted
    assert all(e.check == "ledger_error" and "disk is full" in e.detail for e in d.events)
    d = g.check(2, [sym(), sym("ETHUSDT")], total_pnl=0, drawdown=0, daily_pnl=0, ledger_error=None)
    assert d.paused == frozenset() and [e.kind for e in d.events] == ["unpause", "unpause"]


# -- check_symbol (the strategy's per-tick call) is check() for one symbol --------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_step = st.tuples(
    st.integers(0, 3000),  # ms since the previous step
    st.booleans(),  # book live
    st.sampled_from([0, 100, 6000]),  # book age ms
    st.sampled_from([0.0, 0.05, -0.2]),  # position
    st.sampled_from([0.0, 9_000.0, 12_000.0, 16_000.0]),  # notional
    st.sampled_from([0.0, -100.0, -400.0, 50.0]),  # total pnl
    st.sampled_from([0.0, 200.0, 600.0]),  # drawdown
    st.sampled_from([0.0, -350.0]),  # daily pnl
    st.integers(0, 3),  # new errors
    st.sampled_from([None, None, "disk full"]),  # ledger error
    st.sampled_from([None, None, None, "resume"]),  # a manual resume before the step
)


def _snap(d):
    ev = [(e.kind, e.check, e.symbol, e.ts_ms, e.value, e.limit, e.detail) for e in d.events]
    return d.halted, d.paused, d.cancel, ev


@settings(max_examples=400, deadline=None)
@given(st.lists(_step, min_size=1, max_size=30), st.sampled_from([None, 2.0]))
def test_check_symbol_equals_check_for_one_symbol(steps, cooldown):
    a, b = gate(cooldown_s=cooldown), gate(cooldown_s=cooldown)
    ts, errors = 1000, 0
    for dt, live, age, pos, notional, pnl, dd, daily, new_err, led, resume in steps:
        ts += dt
        errors += new_err
        if resume:
            ra = a.resume(ts, "test", pnl)
            rb = b.resume(ts, "test", pnl)
            assert (ra is None) == (rb is None)
        da = a.check(ts, [sym(live=live, age=age, pos=pos, notional=notional)], total_pnl=pnl, drawdown=dd,
                     daily_pnl=daily, errors_total=errors, ledger_error=led)
        db = b.check_symbol(ts, "BTCUSDT", live, age, pos, notional, pnl, dd, daily, errors, led)
        assert _snap(da) == _snap(db)
        assert (a.tripped, a.reason, a.since_ms, a.trips, dict(a.paused)) == (b.tripped, b.reason, b.since_ms, b.trips,
                                                                             dict(b.paused))


def test_total_notional_counts_every_symbol_and_a_trip_stops_them_all():
    """Two symbols each under max_notional but together over max_total_notional: the per-tick
    check trips on the total, and every symbol's paper orders are cancelled at that tick."""
    from daemon.config import load_settings
    from daemon.core.engine import Engine
    from daemon.core.events import BookUpdate, Fill
    from daemon.core.instrument import Instrument
    from daemon.runtime.runtime import Runtime

    s = load_settings(overrides={"market": {"symbols": ["AAAUSDT", "BBBUSDT"]},
                                 "risk": {"max_position": 1.0, "max_notional": 10_000.0, "max_total_notional": 15_000.0,
                                          "max_drawdown": 1e9, "max_daily_loss": 1e9},
                                 "inventory": {"max_position": 1.0, "max_notional": 1e9}})
    ins = {x: Instrument(symbol=x, category="linear", tick_size="0.10", qty_step="0.001") for x in ("AAAUSDT", "BBBUSDT")}
    eng = Engine(ins, 50)
    rt = Runtime.replay(s, eng, ledger_path=None)
    recs = []
    rt.ledger = type("L", (), {"append": lambda self, r: recs.append(r), "backlog": 0, "problem": None})()
    ts = 1_700_000_000_000

    def book(sym, u, t):
        eng.on_event(BookUpdate(sym, 50, True, [(999_990, 5000)], [(1_000_010, 5000)], u, u, t, t, 0))

    book("AAAUSDT", 1, ts)
    book("BBBUSDT", 1, ts)
    assert not rt.gate.tripped
    assert all(st.venue.orders for st in rt.strategies.values())  # both symbols quote
    # 0.08 of each at ~100,000: 8,000 notional each (< 10,000), 16,000 together (> 15,000)
    rt.put([Fill("f:a", "AAAUSDT", "o:a", 1, 1_000_000, 80, 0.0, "t:a", ts + 1),
            Fill("f:b", "BBBUSDT", "o:b", 1, 1_000_000, 80, 0.0, "t:b", ts + 1)])
    for st in rt.strategies.values():
        st.venue.position_lots = 80
    book("AAAUSDT", 2, ts + 100)
    assert rt.gate.tripped and "max_total_notional" in rt.gate.reason, rt.gate.reason
    trip_at = next(i for i, r in enumerate(recs) if type(r).__name__ == "RiskEvent" and r.kind == "trip")
    cancels = {r.symbol for r in recs[trip_at:] if type(r).__name__ == "OrderEvent" and r.kind == "cancel_requested"}
    assert cancels == {"AAAUSDT", "BBBUSDT"}  # BBB's orders too, at the same tick
