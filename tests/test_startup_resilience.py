"""A daemon that never gives up and always stops (real subprocesses of ``mmd run``).

With its REST endpoint unreachable the daemon does not exit: it retries start-up forever with
capped, jittered backoff, serves ``/healthz`` 200 and ``/readyz`` 503 naming the problem, and a
SIGTERM or SIGINT during those retries ends it cleanly (exit 0) within 5 s. When the exchange
finally appears on that address, the same process starts and becomes ready.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_e2e_daemon import Lines, http_get  # tests/ is on sys.path (rootdir-relative imports)

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _daemon(tmp_path: Path, rest_port: int, ws_port: int) -> tuple[subprocess.Popen, Lines]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMD_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    env.update(
        PYTHONUNBUFFERED="1",
        MMD_MARKET__REST_URL=f"http://127.0.0.1:{rest_port}",
        MMD_MARKET__WS_URL=f"ws://127.0.0.1:{ws_port}/v5/public/linear",
        MMD_MARKET__TOPICS='["publicTrade"]',
        MMD_LEDGER__PATH=str(tmp_path / "ledger.sqlite"),
        MMD_OPS__METRICS_PORT="0",
        MMD_REST__MAX_RETRIES="0",  # each start-up attempt gives up at once: the start-up loop retries
        MMD_REST__TIMEOUT_S="1",
        MMD_REST__BACKOFF_BASE_S="0.2",
        MMD_REST__STARTUP_RETRY_MAX_S="0.5",
    )
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "--log-format", "json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    return proc, Lines(proc.stdout)


def _count(out: Lines, event: str) -> int:
    n = 0
    for line in list(out.lines):
        try:
            n += json.loads(line).get("event") == event
        except ValueError:
            pass
    return n


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_unreachable_rest_is_retried_forever_and_a_signal_still_stops_it(tmp_path, sig):
    port = _free_port()  # nothing listens there
    proc, out = _daemon(tmp_path, port, port)
    try:
        ops = out.wait_event("ops_started", 20)
        base = ops["metrics_url"].removesuffix("/metrics")
        out.wait_event("startup_retry", 20)
        deadline = time.monotonic() + 20
        while _count(out, "startup_retry") < 4:  # more attempts than the old limit of one
            assert proc.poll() is None, "the daemon gave up"
            assert time.monotonic() < deadline, "no further start-up retries"
            time.sleep(0.1)
        assert proc.poll() is None
        assert _count(out, "startup_failed") == 0
        assert http_get(base + "/healthz")[0] == 200
        status, body = http_get(base + "/readyz")
        assert status == 503
        reasons = json.loads(body)["reasons"]
        assert reasons[0].startswith("starting: instruments-info failed"), reasons
        t0 = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(10)
        took = time.monotonic() - t0
        assert rc == 0 and took < 5.0, (rc, took)
        stopped = out.wait_event("stopped", 5)
        assert stopped["exit_code"] == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_startup_succeeds_once_the_exchange_appears(tmp_path):
    port = _free_port()
    proc, out = _daemon(tmp_path, port, port)
    ex = None
    try:
        out.wait_event("startup_retry", 20)
        ex = subprocess.Popen([sys.executable, "-m", "daemon.cli", "exchange", "--port", str(port), "--speed", "20"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={k: v for k, v in os.environ.items() if not k.startswith("MMD_")})
        out.wait_event("ready", 60)
        assert proc.poll() is None and _count(out, "startup_failed") == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        for p in (proc, ex):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
