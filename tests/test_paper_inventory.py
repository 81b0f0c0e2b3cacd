"""Inventory accounting, PnL attribution and markouts against hand-computed numbers."""

from __future__ import annotations

import pytest

from daemon.core.events import BUY, SELL, Fill
from daemon.core.instrument import Instrument
from daemon.paper.inventory import DAY_MS, Funding, Inventory, MarkSampler

# tick 0.5 USDT, lot 0.01 base: prices/sizes below are chosen so the floats are exact
INS = Instrument("X", "linear", "0.5", "0.01", min_qty_lots=1)


def fill(fid, side, px, qty_lots, ts, fee=0.0):
    return Fill(fid, "X", "o", side, int(px / 0.5), qty_lots, fee, fid, ts)


def test_avg_cost_realized_unrealized_and_identities():
    inv = Inventory({"X": INS})
    inv.on_mid("X", 0, 100.25)
    inv.apply_fill(fill("a", BUY, 100.0, 100, 1, fee=0.5))  # long 1.0 @ 100
    inv.on_mid("X", 2, 101.25)
    inv.apply_fill(fill("b", BUY, 101.0, 100, 3, fee=0.5))  # long 2.0 @ 100.5
    b = inv.books["X"]
    assert b.position_lots == 200 and b.avg_entry == pytest.approx(100.5)
    inv.on_mid("X", 4, 102.0)
    inv.apply_fill(fill("c", SELL, 102.5, 300, 5))  # sell 3.0: close 2 @ +2.0 each, short 1.0 @ 102.5
    assert b.position_lots == -100 and b.avg_entry == pytest.approx(102.5)
    assert b.realized == pytest.approx(2.0 * 2.0)
    inv.on_mid("X", 6, 103.0)
    p = inv.pnl("X")
    assert p.unrealized == pytest.approx(-1.0 * (103.0 - 102.5))
    # spread: side * (mid at fill - price) * qty
    assert p.spread == pytest.approx(0.25 * 1 + 0.25 * 1 + (102.5 - 102.0) * 3)
    assert p.fees == pytest.approx(1.0)
    assert p.total == pytest.approx(p.realized + p.unrealized - p.fees - p.funding)
    assert p.total == pytest.approx(p.spread + p.inventory - p.fees - p.funding)
    # the total also equals cash + position * mid
    assert p.total == pytest.approx(b.cash + (-1.0) * 103.0)
    # inventory PnL = sum of position * d(mid): 1*(101.25-100.25) + 2*(102-101.25) + (-1)*(103-102)
    assert p.inventory == pytest.approx(1.0 + 1.5 - 1.0)


def test_markouts_use_the_prevailing_mid_at_each_horizon():
    inv = Inventory({"X": INS}, horizons_ms=(1000, 5000))
    inv.on_mid("X", 0, 100.0)
    inv.apply_fill(fill("a", BUY, 99.5, 100, 10))  # bought 1.0 at 99.5
    assert inv.on_mid("X", 500, 100.5) == []
    out = inv.on_mid("X", 1200, 98.0)  # due at 1010: the mid then was 100.5 (set at 500)
    assert [(m.horizon_ms, m.ts_ms, m.mid, m.value) for m in out] == [(1000, 1010, 100.5, 1.0)]
    assert out[0].markout_id == "a:mo1000" and out[0].pnl == pytest.approx(1.0)
    out = inv.on_mid("X", 5010, 97.0)  # exactly at the due time: this mid
    assert [(m.horizon_ms, m.mid, m.value) for m in out] == [(5000, 97.0, -2.5)]
    # a sell is signed the other way
    inv.apply_fill(fill("b", SELL, 97.5, 100, 6000))
    out = inv.on_mid("X", 7000, 96.0)
    assert [(m.fill_id, m.value) for m in out] == [("b", 1.5)]
    assert inv.markout_means("X")[1000] == pytest.approx((1.0 + 1.5) / 2)


def test_funding_and_duplicates():
    inv = Inventory({"X": INS})
    inv.on_mid("X", 0, 100.0)
    inv.apply_fill(fill("a", BUY, 100.0, 200, 1))
    f = Funding("funding:X:8", "X", 8, 0.0001, 100.0, 200, 2.0 * 100.0 * 0.0001)
    assert inv.apply_funding(f) and not inv.apply_funding(f)
    p = inv.pnl("X")
    assert p.funding == pytest.approx(0.02) and p.total == pytest.approx(-0.02)
    assert inv.apply_fill(fill("a", BUY, 100.0, 200, 1)) is None and inv.duplicates == 2
    assert inv.books["X"].position_lots == 200


def test_drawdown_and_daily_pnl():
    inv = Inventory({"X": INS})
    t0 = 5 * DAY_MS
    inv.on_mid("X", t0, 100.0)
    inv.apply_fill(fill("a", BUY, 100.0, 100, t0 + 1))
    inv.on_mid("X", t0 + 2, 110.0)  # +10
    inv.on_mid("X", t0 + 3, 95.0)  # -5: drawdown 15
    assert inv.max_drawdown == pytest.approx(15.0) and inv.drawdown() == pytest.approx(15.0)
    assert inv.daily_pnl() == pytest.approx(-5.0)
    inv.on_mid("X", t0 + DAY_MS, 96.0)  # a new UTC day starts from the total at its first event
    assert inv.daily_pnl() == pytest.approx(0.0)
    inv.on_mid("X", t0 + DAY_MS + 1, 90.0)
    assert inv.daily_pnl() == pytest.approx(-6.0)
    assert inv.notional("X") == pytest.approx(90.0)


def test_mark_sampler():
    s = MarkSampler(1000)
    assert s.due("X", 1500) and not s.due("X", 1999) and s.due("X", 2000) and not s.due("X", 2500)
    assert s.due("Y", 2500)
    with pytest.raises(ValueError):
        MarkSampler(0)


def test_fill_id_memory_is_bounded(monkeypatch):
    import daemon.paper.inventory as invmod
    from daemon.core.events import BUY, Fill
    from daemon.core.instrument import btcusdt_linear

    monkeypatch.setattr(invmod, "SEEN_MAX", 5)
    ins = btcusdt_linear()
    inv = invmod.Inventory({ins.symbol: ins})
    inv.on_mid(ins.symbol, 1, 60000.0)
    for k in range(8):
        assert inv.apply_fill(Fill(f"f{k}", ins.symbol, "o", BUY, 600000, 1, 0.0, f"t{k}", 2 + k)) is not None
    assert len(inv._seen) == 5
    assert inv.apply_fill(Fill("f7", ins.symbol, "o", BUY, 600000, 1, 0.0, "t7", 20)) is None  # recent: still a duplicate
    assert inv.books[ins.symbol].position_lots == 8


def test_funding_settles_once_with_sign_on_the_accounts_position():
    """The account settles funding (hand-computed payments): the rate announced before the
    funding time applies to the position held at it; longs pay a positive rate, shorts receive;
    once per funding time. The position comes from the fills the account booked (its one owner)."""
    inv = Inventory({"X": INS})
    inv.on_mid("X", 0, 100.25)
    inv.apply_fill(fill("a", BUY, 100.0, 4, 1))  # long 0.04 base
    t0 = 28_800_000
    assert inv.on_ticker("X", {"fundingRate": "0.0001", "nextFundingTime": str(t0), "markPrice": "100.5"}, 2) == []
    assert inv.on_ticker("X", {"markPrice": "101"}, t0 - 1) == []  # a delta: other fields unchanged
    out = inv.on_ticker("X", {"fundingRate": "0.0002", "nextFundingTime": str(2 * t0)}, t0 + 5)
    assert len(out) == 1 and isinstance(out[0], Funding)
    f = out[0]
    assert (f.ts_ms, f.rate, f.mark, f.position_lots) == (t0, 0.0001, 101.0, 4)
    assert f.payment == pytest.approx(0.04 * 101.0 * 0.0001) and f.payment > 0
    assert inv.apply_funding(f) and not inv.apply_funding(f)  # booked once
    assert inv.books["X"].funding == pytest.approx(f.payment)
    assert inv.on_ticker("X", {}, t0 + 10) == []  # once per funding time
    inv.apply_fill(fill("b", SELL, 101.0, 10, t0 + 21))  # short 0.06 base
    assert inv.position_lots("X") == -6
    (f2,) = inv.on_ticker("X", {}, 2 * t0)
    assert f2.payment == pytest.approx(-0.06 * 101.0 * 0.0002) and f2.payment < 0
    assert f2.funding_id == f"funding:X:{2 * t0}"
    # no rate or mark known: nothing to settle, but the time is marked settled
    inv2 = Inventory({"X": INS})
    assert inv2.on_ticker("X", {"nextFundingTime": "5"}, 1) == [] and inv2.on_ticker("X", {}, 6) == []
