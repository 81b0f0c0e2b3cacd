"""End to end: ``mmd exchange`` and ``mmd run`` as real subprocesses.

The daemon bootstraps over REST from the embedded exchange (whose first REST answer is delayed so
``/readyz`` can be caught at 503 before the book is LIVE), streams the bundled real BTCUSDT
recording at 20x, quotes and fills on the paper venue and journals to a SQLite ledger. The test
gives it its own ``NOTIFY_SOCKET`` (a unix datagram socket bound in a temp dir) and
``WATCHDOG_USEC``, scrapes ``/metrics`` and ``/readyz``, reads every JSON log line, then stops it
with SIGTERM or SIGINT and checks a clean exit, an intact ledger with no open order and that
``mmd report --json`` reads it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.paper.ledger import Ledger, decode, open_readonly, validate_file

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "BTCUSDT"
REST_DELAY_S = 3.0  # the exchange holds the daemon's first REST request this long
TERMINAL = {"cancelled", "filled", "rejected"}
REQUIRED_KEYS = {"ts", "level", "event", "run_id", "config_hash"}
EVENTS_DOC = ROOT / "docs" / "events.md"
_LOG_CALL = re.compile(
    r"(?:\blog|self\.log|get_logger\([^)]*\))\s*\.(?:debug|info|warning|error|exception|critical)\(\s*\"([A-Za-z0-9_]+)\"\s*[,)]")
# (a name built at run time, like the exchange's "ws_" + op, is not matched: it is documented by hand)


def documented_events() -> set[str]:
    """Event names that appear in backticks in docs/events.md."""
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", EVENTS_DOC.read_text(encoding="utf-8")))


def test_every_logged_event_is_documented():
    found: dict[str, str] = {}
    for path in sorted((ROOT / "daemon").rglob("*.py")):
        for name in _LOG_CALL.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, str(path.relative_to(ROOT)))
    assert len(found) > 40, sorted(found)  # the pattern still matches the code base's log calls
    missing = {n: p for n, p in found.items() if n not in documented_events()}
    assert not missing, f"log events missing from docs/events.md: {missing}"


class Lines:
    """Collect a subprocess's stdout lines on a thread; wait for a JSON event."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._t = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._t.start()

    def _read(self, stream) -> None:
        for raw in stream:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_event(self, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if rec.get("event") == event:
                        return rec
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(f"no {event!r} log line within {timeout} s; last lines: {self.lines[-5:]}")
                self._cond.wait(left)

    def join(self, timeout: float) -> list[str]:
        self._t.join(timeout)
        assert not self._t.is_alive(), "stdout not closed after exit"
        return list(self.lines)


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket; records every datagram."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, list[str]]] = []
        self._stop = False
        self._lock = threading.Lock()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode().split("\n")))

    def received(self, assignment: str) -> list[float]:
        with self._lock:
            return [t for t, lines in self.messages if assignment in lines]

    def all(self) -> list[list[str]]:
        with self._lock:
            return [lines for _, lines in self.messages]

    def close(self) -> None:
        self._stop = True
        self._t.join(2)
        self.sock.close()


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    status, body = http_get(url)
    assert status == 200
    out: dict[tuple[str, tuple], float] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def exchange(tmp_path):
    """``mmd exchange`` at 20x; its first REST answer is delayed by REST_DELAY_S."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    err = tmp_path / "exchange.stderr"
    with open(err, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "exchange", "--port", "0", "--speed", "20",
             "--rest-fault", "slow", "--rest-fault-count", "1", "--rest-slow-seconds", str(REST_DELAY_S)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=fh, env=env,
        )
    try:
        line = proc.stdout.readline()
        assert line, err.read_text()
        info = json.loads(line)
        assert info["event"] == "exchange_listening"
        Lines(proc.stdout)  # keep draining its log so a full pipe never stalls it
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                kill(proc)


@pytest.fixture
def notify():
    d = tempfile.mkdtemp(prefix="mmd-notify-")  # short path: AF_UNIX names are limited to 107 bytes
    ns = NotifySocket(os.path.join(d, "notify"))
    try:
        yield ns
    finally:
        ns.close()
        os.unlink(ns.path)
        os.rmdir(d)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_daemon_end_to_end(tmp_path, exchange, notify, sig):
    ledger = tmp_path / "ledger.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMD_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    env.update(
        PYTHONUNBUFFERED="1",
        MMD_MARKET__REST_URL=exchange["rest_url"],
        MMD_MARKET__WS_URL=exchange["ws_url"],
        MMD_MARKET__TOPICS='["publicTrade","tickers","kline"]',
        MMD_QUOTER__GAMMA="0.0001",
        MMD_LEDGER__PATH=str(ledger),
        MMD_OPS__METRICS_PORT="0",
        MMD_OPS__STATUS_INTERVAL_S="1",
        MMD_OPS__AUDIT_EVERY_N="200",  # one quote_audit line per 200 decisions: exercised, not per tick
        NOTIFY_SOCKET=notify.path,
        WATCHDOG_USEC="1000000",
    )
    err_path = tmp_path / "daemon.stderr"
    with open(err_path, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "run", "--log-format", "json", "--log-level", "info"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=fh, env=env,
        )
    out = Lines(proc.stdout)
    try:
        # -- before LIVE: ops are up while the REST bootstrap is still held by the exchange ----------
        ops = out.wait_event("ops_started", 15)
        assert ops["systemd"] is True and ops["watchdog_interval_s"] == pytest.approx(0.5)
        base = ops["metrics_url"].removesuffix("/metrics")
        status, body = http_get(base + "/readyz")
        assert status == 503, body
        assert json.loads(body)["ready"] is False
        assert not notify.received("READY=1")
        m0 = scrape(base + "/metrics")
        assert total(m0, "mmd_book_state", symbol=SYMBOL) != 2

        # -- LIVE ------------------------------------------------------------------------------
        out.wait_event("ready", 20)
        status, body = http_get(base + "/readyz")
        assert status == 200, body
        assert json.loads(body)["ready"] is True
        assert http_get(base + "/healthz")[0] == 200

        # wait (bounded) for quotes, fills and watchdog pings after READY=1
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"daemon exited ({proc.returncode}) while running: {err_path.read_text()[-2000:]}"
                            f" {out.lines[-3:]}")
            m = scrape(base + "/metrics")
            ready_at = notify.received("READY=1")
            pings_after = [t for t in notify.received("WATCHDOG=1") if ready_at and t > ready_at[0]]
            if (total(m, "mmd_fills_total", symbol=SYMBOL) >= 3 and total(m, "mmd_quotes_total", symbol=SYMBOL) > 0
                    and len(pings_after) >= 3):
                break
            assert time.monotonic() < deadline, (
                f"30 s after ready: quotes={total(m, 'mmd_quotes_total')} fills={total(m, 'mmd_fills_total')} "
                f"READY={len(ready_at)} watchdog pings after it={len(pings_after)}")
            time.sleep(0.5)
        assert total(m, "mmd_frames_total") > 0
        assert total(m, "mmd_frames_total", topic="orderbook") > 0
        assert total(m, "mmd_frames_total", topic="publicTrade") > 0
        assert total(m, "mmd_book_state", symbol=SYMBOL) == 2  # LIVE
        assert total(m, "mmd_tick_to_quote_seconds_count") > 0
        assert total(m, "mmd_tick_to_quote_seconds_sum") > 0
        assert total(m, "mmd_parse_errors_total") == 0
        assert total(m, "mmd_risk_tripped") == 0
        fills_scraped = total(m, "mmd_fills_total", symbol=SYMBOL)
        buys_scraped = total(m, "mmd_fills_total", symbol=SYMBOL, side="buy")

        ready_at = notify.received("READY=1")
        assert len(ready_at) == 1
        pings = notify.received("WATCHDOG=1")
        assert pings[0] < ready_at[0]  # the watchdog runs from the start of the process, not from READY
        assert len([t for t in pings if t > ready_at[0]]) >= 3  # and goes on while the daemon runs

        # -- stop ------------------------------------------------------------------------------
        proc.send_signal(sig)
        try:
            rc = proc.wait(5)  # the brief's contract: exit within 5 s
        except subprocess.TimeoutExpired:
            pytest.fail(f"daemon still running 5 s after {sig.name}")
        lines = out.join(5)
    finally:
        kill(proc)
    err = err_path.read_text()
    assert rc == 0, err[-2000:]
    assert "Traceback" not in err, err[-2000:]

    # -- logs: every line is JSON with the common keys, one run id, one config hash -----------
    recs = []
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            pytest.fail(f"stdout line {i} is not JSON: {line[:200]!r}")
        assert isinstance(rec, dict)
        missing = REQUIRED_KEYS - rec.keys()
        assert not missing, f"line {i} lacks {missing}: {line[:200]}"
        recs.append(rec)
    assert len({r["run_id"] for r in recs}) == 1
    assert len({r["config_hash"] for r in recs}) == 1
    events = Counter(r["event"] for r in recs)
    undocumented = set(events) - documented_events()
    assert not undocumented, f"events logged but not in docs/events.md: {undocumented}"
    assert events["ready"] == 1 and events["started"] == 1
    audits = [r for r in recs if r["event"] == "quote_audit"]
    assert audits and all(r["symbol"] == SYMBOL and r["bid_px"] is not None for r in audits)
    book_states = [(r["old"], r["new"]) for r in recs if r["event"] == "book_state"]
    assert ("SYNCING", "LIVE") in book_states
    assert all(r["level"] in ("info", "warning") for r in recs), [r for r in recs if r["level"] not in ("info", "warning")]
    stopping = [r for r in recs if r["event"] == "stopping"]
    assert len(stopping) == 1 and stopping[0]["reason"] == sig.name
    closed = [r for r in recs if r["event"] == "ledger_closed"]
    assert len(closed) == 1 and closed[0]["durable"] is True
    assert recs[-1]["event"] == "stopped" and recs[-1]["exit_code"] == 0
    # no line per tick: the status lines report the frames seen; the log is a tiny fraction of them
    statuses = [r for r in recs if r["event"] == "status"]
    assert statuses, "no status line"
    frames = sum(statuses[-1]["frames"].values())
    assert frames > 500
    assert len(recs) * 20 < frames, f"{len(recs)} log lines for {frames} frames: {events.most_common(5)}"

    # -- systemd protocol ----------------------------------------------------------------------
    msgs = notify.all()
    assert any("STOPPING=1" in m for m in msgs)
    ready_msg = next(m for m in msgs if "READY=1" in m)
    assert any(x.startswith("STATUS=") for x in ready_msg)

    # -- ledger: intact, fills, every order ended -----------------------------------------------
    assert validate_file(str(ledger)) == "ok"
    conn = open_readonly(str(ledger))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        sessions = conn.execute("SELECT run_id, mode FROM sessions").fetchall()
        assert sessions == [("live", "live")]
        last: dict[str, object] = {}
        fills = []
        for seq, kind, body in conn.execute("SELECT seq, kind, body FROM journal ORDER BY seq"):
            rec = decode(kind, body, seq)
            if kind == "order":
                last[rec.order_id] = rec
            elif kind == "fill":
                fills.append(rec)
    except sqlite3.Error as e:  # pragma: no cover - reported as a failure with the cause
        pytest.fail(f"ledger unreadable: {e}")
    finally:
        conn.close()
    assert len(fills) >= fills_scraped >= 3
    buys = sum(1 for f in fills if f.side == 1)
    assert buys >= buys_scraped and len(fills) - buys >= fills_scraped - buys_scraped  # sides not swapped
    assert last, "no order records"
    open_orders = {oid: r.kind for oid, r in last.items() if r.kind not in TERMINAL}
    assert not open_orders, f"orders left open after {sig.name}: {open_orders}"
    assert all(f.order_id in last for f in fills)
    assert Counter(r.kind for r in last.values())["filled"] >= 1

    # -- mmd report reads it ---------------------------------------------------------------------
    rep = subprocess.run([sys.executable, "-m", "daemon.cli", "report", str(ledger), "--json"],
                         cwd=ROOT, capture_output=True, timeout=60)
    assert rep.returncode == 0, rep.stderr.decode()
    summary = json.loads(rep.stdout)
    assert summary["run_id"] == "live"
    row = summary["symbols"][SYMBOL]
    assert row["fills"] == len(fills)
    assert row["orders"]["placed"] + row["orders"].get("rejected", 0) >= len(last)

    # -- a restart would continue from it: the journal folds to the same position ----------------
    led = Ledger.open(str(ledger), "live", "live")
    try:
        st = led.restore()
    finally:
        assert led.close()
    assert st.risk_tripped is False
    assert st.inventory.position_base(SYMBOL) == pytest.approx(row["position"], abs=1e-12)
    assert st.next_order_n[SYMBOL] > max(int(oid.rsplit("-", 1)[1]) for oid in last)
