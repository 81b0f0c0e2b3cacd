"""The paper stack on the real BTCUSDT recording: parser -> book -> touch quoter -> risk gate -> venue
-> inventory -> SQLite ledger -> report. Checks fill-model invariants on real data, determinism of
the ledger across runs, exact restore, and the report / resume commands end to end."""

from __future__ import annotations

import gzip
import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

from daemon.bybit.messages import FrameParser
from daemon.cli import main as mmd_main
from daemon.core.book import OrderBook
from daemon.core.events import BUY, SELL, BookUpdate, Fill, Quote, Trade
from daemon.core.instrument import btcusdt_linear
from daemon.risk import RiskEvent, RiskGate, SymbolRisk
from daemon.paper.inventory import Funding, Inventory, Mark, MarkSampler
from daemon.paper.ledger import Ledger
from daemon.execution.models import ConstantLatency, ProbQueue
from daemon.execution.paper import PaperVenue
from daemon.execution.protocol import OrderEvent

REC = Path(__file__).resolve().parents[1] / "daemon" / "data" / "linear_BTCUSDT_2024-08-08_5min.bybit.gz"
INS = btcusdt_linear()
SYM = INS.symbol


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return gzip.open(REC, "rb").read().splitlines()


def drive(lines, ledger: Ledger | None):
    """A minimal engine: quote 2 lots at the touch (the side that adds to the position steps back
    one tick per 4 lots held), through the risk gate, into the venue; journal everything."""
    parser = FrameParser({SYM: INS})
    book = OrderBook(SYM, 50)
    venue = PaperVenue(INS, latency=ConstantLatency(20, 20), queue=ProbQueue(2.0))
    inv = Inventory({SYM: INS})
    gate = RiskGate(max_position=0.02, max_notional=10_000, max_total_notional=20_000, max_drawdown=500,
                    max_daily_loss=300, max_error_rate=5, stale_ms=5000)
    marks = MarkSampler(1000)
    trades: list[Trade] = []
    tops: dict[int, tuple] = {}  # book u -> (best bid, best ask) after that update
    fills: list[Fill] = []
    journal = []

    def put(recs):
        for r in recs:
            if isinstance(r, Fill):
                fills.append(r)
                r = inv.apply_fill(r)
                if r is None:
                    continue
            elif isinstance(r, Funding):
                inv.apply_funding(r)
            journal.append(r)
            if ledger is not None:
                ledger.append(r)

    pos = 0
    for line in lines:
        ns, frame = line.split(b" ", 1)
        evs = parser.parse(frame, int(ns))
        if not isinstance(evs, list):
            continue
        for ev in evs:
            pos += 1
            if isinstance(ev, BookUpdate):
                if ev.depth != 50:
                    continue
                if book.live:  # as the engine does: due orders reach the book as it was
                    put(venue.before_book(ev.ts_ms, book))
                book.apply(ev)
                tops[book.last_u] = (book.best_bid, book.best_ask)
                put(venue.on_book(book))
                if not book.live:
                    continue
                mid = (book.best_bid + book.best_ask) * 0.05  # ticks of 0.1 -> price
                put(inv.on_mid(SYM, ev.ts_ms, mid))
                d = gate.check(ev.ts_ms, [SymbolRisk(SYM, book.live, 0, inv.position_base(SYM), inv.notional(SYM))],
                               total_pnl=inv.total_pnl(), drawdown=inv.drawdown(), daily_pnl=inv.daily_pnl())
                put(d.events)
                skew = inv.position_lots(SYM) // 4
                q = Quote(SYM, book.best_bid - max(skew, 0), 2, book.best_ask - min(skew, 0), 2, ev.ts_ms)
                q = gate.filter_quote(q, d, inv.position_lots(SYM), 20)
                put(venue.on_quote(q, book))
                if marks.due(SYM, ev.ts_ms):
                    w = venue.working
                    put([Mark(f"mark:{SYM}:{ev.ts_ms}", SYM, ev.ts_ms, mid, w[BUY].price if w[BUY] else None,
                              w[SELL].price if w[SELL] else None, inv.position_lots(SYM), pos)])
            elif isinstance(ev, Trade):
                trades.append(ev)
                put(venue.on_trade(ev, book))
    return dict(venue=venue, inv=inv, trades=trades, fills=fills, journal=journal, gate=gate, tops=tops)


@pytest.fixture(scope="module")
def run1(lines, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("rec") / "ledger.sqlite")
    led = Ledger.open(path, "rec-1", "replay", instruments={SYM: INS}, meta={"recording": REC.name})
    out = drive(lines, led)
    assert led.flush(30) and led.healthy
    out["digest"] = led.journal_digest()
    led.close()
    out["path"] = path
    return out


def test_fill_model_invariants_on_real_trades(run1):
    fills, trades = run1["fills"], run1["trades"]
    assert len(fills) > 20, "a touch quoter on 345 s of BTCUSDT should be filled"
    by_trade = {t.trade_id: t for t in trades}
    used = defaultdict(int)
    ids = set()
    tops = run1["tops"]
    by_book = 0
    for f in fills:
        if f.trade_id.startswith("book:"):
            # executed by the book moving through our order: after that update the opposite best
            # was at or through our price
            bb, ba = tops[int(f.trade_id[5:])]
            assert (ba <= f.price) if f.side == BUY else (bb >= f.price), (f, bb, ba)
            by_book += 1
            assert f.fill_id not in ids
            ids.add(f.fill_id)
            continue
        t = by_trade[f.trade_id]
        assert t.side == -f.side  # only the opposite taker side fills us
        assert (t.price <= f.price) if f.side == BUY else (t.price >= f.price)  # at or through our price
        used[f.trade_id] += f.qty
        assert f.fill_id not in ids
        ids.add(f.fill_id)
        assert f.fee == pytest.approx(f.price * 0.1 * f.qty * 0.001 * 0.0002)
    assert all(used[k] <= by_trade[k].qty for k in used)  # a trade's volume fills us at most once
    # no fill before its order was live, none after its cancel took effect
    life = defaultdict(dict)
    for r in run1["journal"]:
        if isinstance(r, OrderEvent):
            life[r.order_id].setdefault(r.kind, r.ts_ms)
    for f in fills:
        lf = life[f.order_id]
        assert lf["live"] <= f.ts_ms
        if "cancelled" in lf:
            assert f.ts_ms <= lf["cancelled"]
    rejected = [r for r in run1["journal"] if isinstance(r, OrderEvent) and r.kind == "rejected"]
    assert all(r.reason == "post_only" for r in rejected)
    assert by_book < len(fills)  # most fills are still prints


def test_same_recording_gives_identical_ledger_and_exact_restore(run1, lines, tmp_path):
    path = str(tmp_path / "again.sqlite")
    with Ledger.open(path, "rec-1", "replay", instruments={SYM: INS}) as led:
        drive(lines, led)
        assert led.flush(30)
        assert led.journal_digest() == run1["digest"]
    with Ledger.open(run1["path"], "rec-1", "replay") as led:
        st = led.restore()
    assert st.inventory.state() == run1["inv"].state()
    assert st.next_order_n[SYM] == run1["venue"].next_order_n


def test_report_command_json_png_html(run1, tmp_path, capsys):
    png, page = str(tmp_path / "r.png"), str(tmp_path / "r.html")
    assert mmd_main(["report", run1["path"], "--json", "--png", png, "--html", page]) == 0
    out = json.loads(capsys.readouterr().out)
    row = out["symbols"][SYM]
    inv = run1["inv"]
    p = inv.pnl(SYM)
    assert out["run_id"] == "rec-1" and out["mode"] == "replay"
    assert row["fills"] == len(run1["fills"])
    assert row["position"] == pytest.approx(inv.position_base(SYM))
    assert row["pnl"]["fees"] == pytest.approx(p.fees)
    assert row["pnl"]["spread"] == pytest.approx(p.spread)
    pn = row["pnl"]
    assert pn["total"] == pytest.approx(pn["spread"] + pn["inventory"] - pn["fees"] - pn["funding"])
    assert row["markout_n"]["1s"] > 0 and row["markout_mean"]["1s"] is not None
    assert row["max_drawdown"] >= 0
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    html = open(page, encoding="utf-8").read()
    assert "<table>" in html and "data:image/png;base64," in html and SYM in html
    assert mmd_main(["report", run1["path"]]) == 0
    text = capsys.readouterr().out
    assert SYM in text and "total PnL" in text


def test_report_and_resume_refuse_foreign_files(tmp_path, capsys):
    p = tmp_path / "x.txt"
    p.write_bytes(b"hello")
    assert mmd_main(["report", str(p)]) == 2
    assert mmd_main(["resume", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "not an SQLite database" in err
    assert p.read_bytes() == b"hello"


def test_resume_command_clears_a_trip(tmp_path, capsys):
    path = str(tmp_path / "l.sqlite")
    with Ledger.open(path, "live-a", "live", instruments={SYM: INS}) as led:
        led.append(RiskEvent("risk:1:1", "trip", "max_drawdown", "*", 1, 600.0, 500.0, "max_drawdown"))
    assert mmd_main(["resume", path, "--reason", "checked"]) == 0
    assert "tripped before: live-a" in capsys.readouterr().out
    with Ledger.open(path, "live-a", "live") as led:
        assert not led.restore().risk_tripped
    assert os.path.exists(path)


def test_report_run_selection(tmp_path, capsys):
    path = str(tmp_path / "multi.sqlite")
    for run in ("first", "second"):
        with Ledger.open(path, run, "replay", instruments={SYM: INS}) as led:
            led.append(Mark(f"mark:{run}", SYM, 1, 60000.0, None, None, 0))
    assert mmd_main(["report", path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == "second" and out["runs"] == ["first", "second"]
    assert mmd_main(["report", path, "--json", "--run", "first"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == "first"
    assert mmd_main(["report", path, "--run", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
