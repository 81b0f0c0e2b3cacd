"""The daemon's market-data plane against the embedded exchange, as real servers on loopback.

Each test starts :class:`daemon.exchange.server.ExchangeServer` (its own simple book) and the
daemon's :class:`daemon.app.App` (REST bootstrap + websocket + verified book) in one event loop,
injects a fault, and checks that it is detected, logged, recovered from, and that the daemon's
book equals the exchange's book afterwards.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from contextlib import redirect_stdout

import pytest

from daemon.app import App
from daemon.config import load_settings
from daemon.core.book import BookState
from daemon.exchange.faults import MALFORMED_KINDS, FaultPlan
from daemon.exchange.server import ExchangeServer
from daemon.logging import configure_logging

SYM = "BTCUSDT"


def settings_for(ex: ExchangeServer, tmp_path, **ws):
    wsc = {"silence_s": 2.0, "pong_timeout_s": 1.0, "ping_interval_s": 0.5, "reconnect_base_s": 0.05,
           "reconnect_max_s": 0.2, "subscribe_timeout_s": 3.0}
    wsc.update(ws)
    return load_settings(overrides={
        "market": {"rest_url": ex.rest_url, "ws_url": ex.ws_url, "symbols": [SYM], "depth": 50,
                   "topics": ["publicTrade", "tickers", "kline"]},
        "rest": {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "ban_backoff_s": 0.3, "timeout_s": 3.0},
        "ws": wsc,
        "ledger": {"path": str(tmp_path / "ledger.sqlite")},
        "ops": {"metrics_port": 0, "status_interval_s": 0.5},
    })


class LogCapture(io.StringIO):
    def events(self) -> list[dict]:
        out = []
        for line in self.getvalue().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def named(self, name: str) -> list[dict]:
        return [e for e in self.events() if e.get("event") == name]


@pytest.fixture
def logs():
    buf = LogCapture()
    configure_logging("info", "json", stream=buf)
    yield buf
    configure_logging("info", "json")


async def wait_for(cond, timeout=10.0, what="condition"):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def book_of(app: App):
    return app.engine.symbols[SYM].book


async def assert_books_equal(ex: ExchangeServer, app: App):
    """Pause the exchange, let the daemon catch up to the exchange's last u, compare all levels."""
    ex.pause()
    await ex.wait_paused()
    u, bids, asks = ex.book(SYM, 50)
    await wait_for(lambda: book_of(app).live and book_of(app).last_u == u, 10, f"daemon book at u={u}")
    b = book_of(app)
    px = app.engine.symbols[SYM].inst.price.to_str
    qx = app.engine.symbols[SYM].inst.qty.to_str
    assert [(px(p), qx(s)) for p, s in b.bid_levels()] == [(p, s) for p, s in bids]
    assert [(px(p), qx(s)) for p, s in b.ask_levels()] == [(p, s) for p, s in asks]
    ex.resume()
    return u


async def start_app(ex, tmp_path, **ws):
    app = App(settings_for(ex, tmp_path, **ws), trade=False)
    task = asyncio.create_task(app.run())
    await wait_for(lambda: app.engine is not None and book_of(app).live, 15, "first LIVE book")
    return app, task


async def stop_app(app, task):
    app.request_stop("test")
    rc = await asyncio.wait_for(task, 10)
    return rc


async def test_book_equals_exchange_book_at_checkpoints(tmp_path, logs):
    async with ExchangeServer(speed=30.0) as ex:
        app, task = await start_app(ex, tmp_path)
        us = []
        for _ in range(4):
            await asyncio.sleep(0.3)
            us.append(await assert_books_equal(ex, app))
        assert us == sorted(us) and us[-1] > us[0]
        assert sum(app.parser.errors.values()) == 0
        assert await stop_app(app, task) == 0
    assert logs.named("ready") and logs.named("stopped")
    assert [e for e in logs.named("book_state") if e["new"] == "LIVE"]


@pytest.mark.parametrize("fault", ["gap", "crossed"])
async def test_sequence_faults_resync_and_recover(tmp_path, logs, fault):
    async with ExchangeServer(speed=30.0) as ex:
        app, task = await start_app(ex, tmp_path)
        states: list[str] = []
        orig = app._drain

        def spy():
            b = book_of(app)
            states.append(b.state.name)
            orig()

        app._drain = spy
        ex.inject(fault)
        await wait_for(lambda: ex.faults_injected[fault] >= 1, 10, f"{fault} injected")
        await wait_for(lambda: app.engine.counts["resync"] >= 1, 10, "resync detected")
        await wait_for(lambda: book_of(app).live, 10, "LIVE again")
        await assert_books_equal(ex, app)
        assert await stop_app(app, task) == 0
    assert "RESYNCING" in states  # reported not LIVE during recovery
    resync = logs.named("resync")
    assert len(resync) >= 1
    want = "gap" if fault == "gap" else "crossed"
    assert want in resync[0]["reason"], resync[0]
    changes = [(e["old"], e["new"]) for e in logs.named("book_state")]
    assert ("LIVE", "RESYNCING") in changes and ("RESYNCING", "LIVE") in changes


async def test_malformed_frames_are_counted_logged_and_harmless(tmp_path, logs):
    """Every kind of garbage the exchange can send (invalid JSON, truncated, wrong shapes, off-grid
    values, a *text* frame that is not UTF-8, a binary frame of junk, 2,000-deep nesting, a 2**63
    sequence number) reaches the running client over a real websocket: each is one counted, logged
    error, the connection stays up (no reconnect) and the book stays exact."""
    kinds = list(MALFORMED_KINDS)
    async with ExchangeServer(speed=30.0) as ex:
        app, task = await start_app(ex, tmp_path)
        await wait_for(lambda: book_of(app).live, 10, "LIVE")
        connects = app.stream.stats["connects"]
        for k in kinds:
            ex.inject("malformed", malformed_kind=k)
        await wait_for(lambda: ex.faults_injected["malformed"] >= len(kinds), 10, "malformed sent")
        await wait_for(lambda: sum(app.parser.errors.values()) >= len(kinds), 10, "errors counted")
        # malformed frames are extra frames: the book stays exact throughout
        await wait_for(lambda: book_of(app).live, 10, "LIVE")
        await assert_books_equal(ex, app)
        errs = dict(app.parser.errors)
        stats = dict(app.stream.stats)
        assert await stop_app(app, task) == 0
    assert sum(errs.values()) == len(kinds), errs  # one error per bad frame, none for the good ones
    # invalid_json, truncated, invalid_utf8, binary, deep_nesting
    assert errs.get("malformed_json", 0) == 5 and errs.get("not_an_object", 0) == 1, errs
    assert errs.get("unknown_topic", 0) == 1 and errs.get("missing_field", 0) == 2, errs
    assert errs.get("bad_value", 0) == 2, errs  # off_grid, huge_int
    assert stats["connects"] == connects and stats.get("reconnects", 0) == 0, stats  # the connection survived
    bad = logs.named("bad_frame")
    assert bad and all("kind" in e and "sample" in e for e in bad)


async def test_dropped_connection_reconnects_and_rebuilds(tmp_path, logs):
    async with ExchangeServer(speed=30.0) as ex:
        app, task = await start_app(ex, tmp_path)
        ex.inject("drop")
        await wait_for(lambda: app.stream.stats["reconnects"] >= 1, 10, "reconnect")
        await wait_for(lambda: book_of(app).live, 10, "LIVE again")
        await assert_books_equal(ex, app)
        assert await stop_app(app, task) == 0
    assert logs.named("ws_reconnect")
    changes = [(e["old"], e["new"]) for e in logs.named("book_state")]
    assert ("LIVE", "RESYNCING") in changes


async def test_stalled_stream_is_detected_by_silence(tmp_path, logs):
    async with ExchangeServer(speed=30.0) as ex:
        app, task = await start_app(ex, tmp_path, silence_s=0.6, ping_interval_s=5.0)
        ex.inject("stall", seconds=2.0, pongs=True)
        await wait_for(lambda: app.stream.stats["silences"] >= 1, 10, "silence detected")
        await wait_for(lambda: app.stream.stats["reconnects"] >= 1, 10, "reconnect after the silence")
        await wait_for(lambda: book_of(app).live and not ex.stalled, 15, "LIVE again after the stall")
        await assert_books_equal(ex, app)
        assert await stop_app(app, task) == 0
    rc = logs.named("ws_reconnect")
    assert rc and "no frame" in rc[0]["reason"]
    changes = [(e["old"], e["new"]) for e in logs.named("book_state")]
    assert ("LIVE", "RESYNCING") in changes  # reported not LIVE while the stream was silent


async def test_stall_without_pongs_is_detected_by_pong_timeout(tmp_path, logs):
    async with ExchangeServer(speed=30.0) as ex:
        app, task = await start_app(ex, tmp_path, silence_s=30.0, ping_interval_s=0.3, pong_timeout_s=0.5)
        ex.inject("stall", seconds=2.0, pongs=False)
        await wait_for(lambda: app.stream.stats["pong_timeouts"] >= 1, 10, "pong timeout")
        await wait_for(lambda: book_of(app).live and not ex.stalled, 15, "LIVE again")
        assert await stop_app(app, task) == 0
    assert any("no pong" in e["reason"] for e in logs.named("ws_reconnect"))


@pytest.mark.parametrize("fault", ["10006", "429", "500", "slow", "403"])
async def test_rest_faults_at_bootstrap_are_retried(tmp_path, logs, fault):
    async with ExchangeServer(speed=30.0, faults=FaultPlan(rest_fault=fault, rest_fault_count=2, rest_slow_seconds=4.0)) as ex:
        app, task = await start_app(ex, tmp_path)
        assert await stop_app(app, task) == 0
    if fault == "403":
        assert logs.named("rest_banned")
    elif fault == "slow":
        # 4 s answers against a 3 s client timeout: two timeouts, then success
        assert [e for e in logs.named("rest_retry") if e["reason"] == "timeout"]
    else:
        reasons = {e["reason"] for e in logs.named("rest_retry")}
        assert reasons & {"rate_limit_10006", "http_429", "http_500"}, reasons


async def test_rejected_subscription_is_a_clear_fatal_error(tmp_path, logs):
    async with ExchangeServer(speed=30.0, faults=FaultPlan(reject_topics={f"tickers.{SYM}"})) as ex:
        app = App(settings_for(ex, tmp_path), trade=False)
        rc = await asyncio.wait_for(app.run(), 15)
    assert rc == 1
    rej = logs.named("subscribe_rejected")
    assert rej and f"tickers.{SYM}" in rej[0]["topics"]


async def test_unknown_symbol_fails_startup_with_one_line(tmp_path, logs):
    async with ExchangeServer(speed=30.0) as ex:
        s = settings_for(ex, tmp_path)
        s.market.symbols = ["NOPEUSDT"]
        rc = await asyncio.wait_for(App(s, trade=False).run(), 15)
    assert rc == 1
    (e,) = logs.named("startup_failed")
    assert "NOPEUSDT" in e["error"]
    assert logs.named("stopped")[-1]["exit_code"] == 1
