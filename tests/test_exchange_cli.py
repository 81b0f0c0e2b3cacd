"""``mmd exchange`` as a real subprocess: one JSON line, working REST, clean SIGTERM; fault flags."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import websockets

from daemon.commands.exchange import add_arguments, plan_from_args
from test_exchange_support import small_recording

ROOT = Path(__file__).resolve().parents[1]


def spawn(*extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "exchange", "--port", "0", "--speed", "0", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def first_line(proc: subprocess.Popen) -> dict:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read().decode() if proc.stderr else "no output"
    return json.loads(line)


async def test_cli_serves_and_stops_on_sigterm(tmp_path):
    proc = spawn("--recording", str(small_recording(tmp_path, 500)), "--rest-fault", "429")
    try:
        info = await asyncio.to_thread(first_line, proc)
        assert info["event"] == "exchange_listening"
        assert set(info) == {"event", "rest_url", "ws_url"}
        assert info["rest_url"].startswith("http://127.0.0.1:") and info["ws_url"].endswith("/v5/public/linear")
        async with aiohttp.ClientSession() as s:
            async with s.get(info["rest_url"] + "/v5/market/time") as r:
                assert r.status == 429  # the injected fault from the flag
            async with s.get(info["rest_url"] + "/v5/market/time") as r:
                body = await r.json()
                assert r.status == 200 and body["retCode"] == 0 and body["result"]["timeSecond"]
        async with websockets.connect(info["ws_url"], max_queue=None) as ws:
            await ws.send(json.dumps({"op": "ping", "req_id": "x"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["ret_msg"] == "pong"
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 15)
        assert rc == 0
        rest = proc.stdout.read().decode().splitlines()
        events = [json.loads(x)["event"] for x in rest if x.startswith("{")]
        assert "exchange_started" in events and "exchange_stopped" in events
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_cli_bad_recording_exits_2(tmp_path):
    bad = tmp_path / "bad.bybit"
    bad.write_text("not a recording\n")
    proc = spawn("--recording", str(bad))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert b"bad.bybit:1" in err and len(err.decode().strip().splitlines()) == 1


def test_fault_flags_map_to_plan():
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--drop-after", "5", "--gap-every", "7", "--crossed-after", "3", "--malformed-every", "9",
                         "--malformed-kinds", "array,off_grid", "--stall-after", "11", "--stall-seconds", "2.5",
                         "--stall-no-pong", "--rest-fault", "slow", "--rest-fault-count", "4",
                         "--reject-topic", "tickers.BTCUSDT", "--no-loop"])
    plan = plan_from_args(args)
    assert (plan.drop_after, plan.gap_every, plan.crossed_after, plan.malformed_every) == (5, 7, 3, 9)
    assert plan.malformed_kinds == ("array", "off_grid")
    assert (plan.stall_after, plan.stall_seconds, plan.stall_pongs) == (11, 2.5, False)
    assert (plan.rest_fault, plan.rest_fault_count) == ("slow", 4)
    assert plan.reject_topics == {"tickers.BTCUSDT"} and args.no_loop
    with pytest.raises(ValueError):
        plan_from_args(p.parse_args(["--malformed-kinds", "bogus"]))
