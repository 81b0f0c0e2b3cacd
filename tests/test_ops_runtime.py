"""OpsRuntime end to end: HTTP endpoints + sd_notify lifecycle on a real notify socket."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import pytest

from daemon.config import OpsConfig, load_settings
from daemon.ops.metrics import Metrics
from daemon.ops.runtime import OpsRuntime


def drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def until(cond, timeout: float = 20.0, step: float = 0.005) -> None:
    """Wait for ``cond()`` (polled), failing after a generous ``timeout`` (seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(step)


async def test_runtime_lifecycle(tmp_path):
    path = str(tmp_path / "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.setblocking(False)
    cfg = OpsConfig(metrics_port=0, loop_lag_interval_s=0.02, max_loop_lag_s=1.0)
    ready = {"ok": False}
    ops = OpsRuntime(cfg, Metrics(), lambda: (ready["ok"], {}), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000"})
    try:
        port = await ops.start()
        assert port == ops.port > 0
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 503
            ready["ok"] = True
            async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 200
            async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200 and json.loads(await r.text())["status"] == "ok"
        assert ops.ready("books LIVE")
        # event-driven, generous ceiling: the pings and lag samples come every 20-30 ms when the
        # machine is idle, much later on a loaded one; the test waits for them, not for a window
        await until(lambda: ops.watchdog.pings >= 3 and
                    (ops.metrics.registry.get_sample_value("mmd_event_loop_lag_seconds_count") or 0) >= 3)
    finally:
        await ops.stop("signal SIGTERM")
        await ops.stop()  # idempotent, no second STOPPING
    msgs = drain(rx)
    rx.close()
    assert msgs.count("WATCHDOG=1") >= 3
    assert "READY=1\nSTATUS=books LIVE" in msgs
    assert msgs[-1] == "STOPPING=1\nSTATUS=signal SIGTERM"
    assert not ops.lag_monitor.running and not ops.watchdog.running
    # the loop-lag metrics were fed by the shared monitor
    assert ops.metrics.registry.get_sample_value("mmd_event_loop_lag_seconds_count") >= 3


async def test_runtime_without_systemd_and_port_conflict():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = OpsConfig(metrics_port=busy.getsockname()[1])
        ops = OpsRuntime(cfg, Metrics(), env={})
        with pytest.raises(OSError):
            await ops.start()
        assert not ops.lag_monitor.running
    ops = OpsRuntime(OpsConfig(metrics_port=0), Metrics(), env={})
    async with ops:
        assert ops.ready() is False  # no NOTIFY_SOCKET: no-op
        assert not ops.watchdog.running


def test_ops_config_fields_validate():
    from daemon.config import ConfigError

    assert OpsConfig().max_loop_lag_s == 5.0 and OpsConfig().loop_lag_interval_s == 0.25
    with pytest.raises(ConfigError, match="ops.max_loop_lag_s"):
        load_settings(overrides={"ops": {"max_loop_lag_s": 0}})
    with pytest.raises(ConfigError, match="ops.loop_lag_interval_s"):
        load_settings(overrides={"ops": {"loop_lag_interval_s": -1}})


async def test_runtime_watchdog_needs_the_monitor_and_the_alive_check(tmp_path):
    path = str(tmp_path / "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.setblocking(False)
    alive = {"ok": True}
    ops = OpsRuntime(OpsConfig(metrics_port=0), Metrics(), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"},
                     alive=lambda: alive["ok"])
    await ops.start()
    try:
        got: list[str] = []
        await until(lambda: (got.extend(drain(rx)) or got.count("WATCHDOG=1") >= 2))
        # no await between these lines: the watchdog cannot run, so every ping sent while alive
        # is already in the socket and is drained here
        alive["ok"] = False
        drain(rx)
        w0 = ops.watchdog.withheld
        await until(lambda: ops.watchdog.withheld >= w0 + 2)  # two ping times passed, withheld
        assert drain(rx) == []
        alive["ok"] = True
        got = []
        await until(lambda: (got.extend(drain(rx)) or got.count("WATCHDOG=1") >= 2))
        await ops.lag_monitor.stop()  # the monitor died: no more pings
        drain(rx)
        w0 = ops.watchdog.withheld
        await until(lambda: ops.watchdog.withheld >= w0 + 2)
        assert drain(rx) == []
    finally:
        await ops.stop()
        rx.close()
