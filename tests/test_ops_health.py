"""HealthServer over real HTTP on 127.0.0.1, and the loop-lag monitor."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.core.book import BookState
from daemon.ops.health import HealthServer, books_and_ledger_ready
from daemon.ops.looplag import LoopLagMonitor
from daemon.ops.metrics import Metrics


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


def blocking_get(url: str) -> tuple[int, dict]:
    """Plain urllib in a worker thread: the request reaches the server even while its loop is blocked."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def test_metrics_healthz_readyz_over_http():
    m = Metrics()
    m.bind_symbols(["BTCUSDT"])
    m.symbol("BTCUSDT").on_quote()
    state = {"ready": False}

    def ready_check():
        if state["ready"]:
            return True, {"books": {"BTCUSDT": "LIVE"}}
        return False, {"reasons": ["books not LIVE: BTCUSDT=SYNCING"]}

    srv = HealthServer(m, ready_check, host="127.0.0.1", port=0)
    port = await srv.start()
    try:
        assert port > 0 and srv.port == port
        assert srv.url == f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s:
            status, ctype, text = await get(s, srv.url + "/metrics")
            assert status == 200
            assert ctype.startswith("text/plain")
            fams = {f.name: f for f in text_string_to_metric_families(text)}
            assert "mmd_quotes" in fams and "mmd_book_state" in fams and "mmd_tick_to_quote_seconds" in fams
            assert 'mmd_quotes_total{symbol="BTCUSDT"} 1.0' in text

            status, ctype, text = await get(s, srv.url + "/healthz")
            body = json.loads(text)
            assert status == 200 and ctype.startswith("application/json")
            assert body["status"] == "ok" and body["monitor_running"] is True
            assert 0 <= body["loop_lag_s"] < body["max_loop_lag_s"]

            status, _, text = await get(s, srv.url + "/readyz")
            assert status == 503
            assert json.loads(text) == {"ready": False, "reasons": ["books not LIVE: BTCUSDT=SYNCING"]}

            state["ready"] = True
            status, _, text = await get(s, srv.url + "/readyz")
            assert status == 200
            assert json.loads(text) == {"ready": True, "books": {"BTCUSDT": "LIVE"}}

            status, _, _ = await get(s, srv.url + "/nope")
            assert status == 404
        for _ in range(4000):  # the owned monitor feeds the loop-lag metrics (ceiling 20 s)
            if (m.registry.get_sample_value("mmd_event_loop_lag_seconds_count") or 0) >= 1:
                break
            await asyncio.sleep(0.005)
        assert "mmd_event_loop_lag_seconds_count" in m.render().decode()
        assert m.registry.get_sample_value("mmd_event_loop_lag_seconds_count") >= 1
    finally:
        await srv.stop()
    assert not srv.lag_monitor.running
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as s:
            await get(s, f"http://127.0.0.1:{port}/healthz")


async def test_readyz_async_check_and_failing_check():
    m = Metrics()
    calls = {"n": 0}

    async def async_check():
        calls["n"] += 1
        if calls["n"] == 1:
            return True, {"via": "async"}
        raise RuntimeError("ledger closed")

    async with HealthServer(m, async_check) as srv:
        async with aiohttp.ClientSession() as s:
            status, _, text = await get(s, srv.url + "/readyz")
            assert (status, json.loads(text)) == (200, {"ready": True, "via": "async"})
            status, _, text = await get(s, srv.url + "/readyz")
            assert status == 503
            assert json.loads(text) == {"ready": False, "error": "RuntimeError: ledger closed"}
    async with HealthServer(m, None) as srv:  # no check configured: never ready
        async with aiohttp.ClientSession() as s:
            status, _, _ = await get(s, srv.url + "/readyz")
            assert status == 503


async def test_healthz_503_when_loop_was_blocked_then_recovers():
    m = Metrics()
    mon = LoopLagMonitor(0.02, on_sample=m.observe_loop_lag, warn_lag_s=10)
    mon.start()
    srv = HealthServer(m, lambda: (True, {}), lag_monitor=mon, max_loop_lag_s=0.2)
    await srv.start()
    try:
        url = srv.url + "/healthz"
        status, body = await asyncio.to_thread(blocking_get, url)
        assert status == 200, body

        # The request is sent from a thread while the loop sleeps 0.5 s inside a callback (the
        # thread sends only once the block has begun, whatever the machine's load): the handler
        # only runs after the block and must report the stall.
        loop = asyncio.get_running_loop()
        blocking = threading.Event()

        def block() -> None:
            blocking.set()
            time.sleep(0.5)

        fut = loop.run_in_executor(None, lambda: (blocking.wait(20), blocking_get(url))[1])
        loop.call_soon(block)
        status, body = await fut
        assert status == 503, body
        assert body["status"] == "unhealthy" and body["loop_lag_s"] > 0.2
        assert body["loop_lag_max_s"] > 0.3

        for _ in range(200):  # clean samples follow: healthy again (ceiling ~20 s)
            status, body = await asyncio.to_thread(blocking_get, url)
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200, body
        assert m.registry.get_sample_value("mmd_event_loop_lag_seconds_bucket", {"le": "0.25"}) < \
            m.registry.get_sample_value("mmd_event_loop_lag_seconds_count")
    finally:
        await srv.stop()
        assert mon.running  # a shared monitor is not the server's to stop
        await mon.stop()


async def test_healthz_unhealthy_when_monitor_not_running():
    m = Metrics()
    mon = LoopLagMonitor(0.05)  # never started
    async with HealthServer(m, lag_monitor=mon) as srv:
        status, body = await asyncio.to_thread(blocking_get, srv.url + "/healthz")
    assert status == 503 and body["monitor_running"] is False


async def test_port_in_use_raises_and_leaves_nothing_running():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        srv = HealthServer(Metrics(), host="127.0.0.1", port=port)
        with pytest.raises(OSError):
            await srv.start()
        assert not srv.lag_monitor.running
        with pytest.raises(RuntimeError):
            _ = srv.port


def test_books_and_ledger_ready():
    states = {"BTCUSDT": BookState.LIVE, "ETHUSDT": BookState.SYNCING}
    ledger = {"ok": True}
    check = books_and_ledger_ready(lambda: states, lambda: ledger["ok"])
    ok, d = check()
    assert not ok and d["reasons"] == ["books not LIVE: ETHUSDT=SYNCING"]
    assert d["books"] == {"BTCUSDT": "LIVE", "ETHUSDT": "SYNCING"}
    states["ETHUSDT"] = BookState.LIVE
    assert check()[0] is True
    ledger["ok"] = False
    ok, d = check()
    assert not ok and d["reasons"] == ["ledger not writable"] and d["ledger_writable"] is False
    states.clear()
    ledger["ok"] = True
    assert check() == (False, {"books": {}, "ledger_writable": True, "reasons": ["no books"]})


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_loop_lag_current_lag_covers_an_ongoing_stall():
    clk = FakeClock()
    mon = LoopLagMonitor(0.5, clock=clk)
    assert mon.current_lag_s() == 0.0  # not started
    mon._due = clk.t + 0.5  # as start() sets it
    clk.t += 0.4
    assert mon.current_lag_s() == 0.0
    clk.t += 2.1  # 2.0 s past due and the sampler has not run: still reported
    assert mon.current_lag_s() == pytest.approx(2.0)
    mon._record(2.0)
    mon._due = clk.t + 0.5
    assert mon.current_lag_s() == pytest.approx(2.0)  # last sample until the next one
    mon._record(0.001)
    assert mon.current_lag_s() == pytest.approx(0.001)
    assert mon.max_lag_s == pytest.approx(2.0) and mon.samples == 2
    assert mon.reset_max() == pytest.approx(2.0) and mon.max_lag_s == 0.0


def test_loop_lag_rejects_bad_interval():
    with pytest.raises(ValueError):
        LoopLagMonitor(0)


async def test_loop_lag_measures_a_real_block_and_survives_a_failing_sink():
    seen: list[float] = []

    def sink(lag: float) -> None:
        seen.append(lag)
        if len(seen) == 1:
            raise RuntimeError("sink hiccup")

    mon = LoopLagMonitor(0.01, on_sample=sink, warn_lag_s=0.1)
    mon.start()
    mon.start()  # idempotent
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # block the loop
        await asyncio.sleep(0.05)
    finally:
        await mon.stop()
    assert len(seen) >= 3
    assert max(seen) >= 0.25
    assert mon.max_lag_s == max(seen)
    assert not mon.running
