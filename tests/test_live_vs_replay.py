"""The ledger of a replay equals the ledger of the live run that recorded the frames.

A live daemon (:class:`daemon.app.App`: REST bootstrap, websocket, book, features, quoter, risk gate,
paper venue, SQLite ledger) runs against the embedded exchange and records every raw frame with
``--record``; then ``replay`` drives the same core from that recording into a fresh ledger with the
same config. The two journals must be record-for-record identical (``journal_digest``), and both
must contain fills.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

from daemon.app import App
from daemon.config import load_settings
from daemon.exchange.server import ExchangeServer
from daemon.paper.ledger import journal_digest
from daemon.replay import replay

SYM = "BTCUSDT"


def _settings(ex, ledger):
    return load_settings(overrides={
        "market": {"rest_url": ex.rest_url if ex else "http://127.0.0.1:9", "ws_url": ex.ws_url if ex else "ws://127.0.0.1:9",
                   "symbols": [SYM], "topics": ["publicTrade", "tickers", "kline"], "kline_history": 50},
        "quoter": {"gamma": 0.0001},
        "ledger": {"path": str(ledger)},
        "ops": {"metrics_port": 0, "status_interval_s": 1.0},
    })


def _journal(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    runs = [r[0] for r in conn.execute("SELECT DISTINCT run_id FROM journal")]
    assert len(runs) == 1, runs
    rows = conn.execute("SELECT kind, rec_id FROM journal WHERE run_id = ? ORDER BY seq", (runs[0],)).fetchall()
    digest = journal_digest(conn, runs[0])
    conn.close()
    return rows, digest


async def test_replay_ledger_equals_live_ledger(tmp_path):
    live_ledger = tmp_path / "live.sqlite"
    rec = tmp_path / "session.bybit.gz"
    async with ExchangeServer(speed=25.0, loop=False) as ex:
        s = _settings(ex, live_ledger)
        app = App(s, record_path=str(rec))
        task = asyncio.create_task(app.run())
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            await asyncio.sleep(0.25)
            rt = app.runtime
            if rt is not None and sum(st.fills for st in rt.strategies.values()) >= 15:
                break
        app.request_stop("test")
        assert await asyncio.wait_for(task, 10) == 0
    assert rec.exists() and (tmp_path / "session.bybit.gz.instruments.json").exists()
    live_rows, live_digest = _journal(live_ledger)
    assert sum(1 for k, _ in live_rows if k == "fill") >= 15

    replay_ledger = tmp_path / "replay.sqlite"
    summary = replay([str(rec)], _settings(None, replay_ledger), ledger_path=str(replay_ledger))
    assert summary["parse_errors"] == {}
    rep_rows, rep_digest = _journal(replay_ledger)
    # record-for-record equality: same ids, same kinds, same order, same bodies
    if rep_rows != live_rows:  # show where they part
        i = next((k for k, (a, b) in enumerate(zip(rep_rows, live_rows)) if a != b), min(len(rep_rows), len(live_rows)))
        raise AssertionError(f"journals differ at record {i}: replay {rep_rows[i - 2:i + 4]} live {live_rows[i - 2:i + 4]}")
    assert rep_digest == live_digest
