"""sd_notify over a real unix datagram socket; watchdog pings stop while the event loop is blocked."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid

import pytest

from daemon.ops.systemd import SystemdNotifier, Watchdog


class Receiver:
    """A NOTIFY_SOCKET stand-in: a datagram socket read by a thread (independent of the event loop)
    that stamps every message with ``time.monotonic()`` on arrival."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.02)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, predicate, timeout: float = 2.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate(self.messages):
                return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        self._stop.set()
        self._t.join(1)
        self.sock.close()

    def pings(self) -> list[float]:
        return [t for t, msg in self.messages if msg == "WATCHDOG=1"]


@pytest.fixture
def path_receiver(tmp_path):
    path = str(tmp_path / "notify.sock")
    r = Receiver(path)
    yield path, r
    r.close()


def test_disabled_without_notify_socket_is_a_noop():
    n = SystemdNotifier(env={})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    assert n.watchdog_interval_s() is None
    assert n.errors == 0 and n.sent == 0
    assert Watchdog(n).start() is False  # no loop needed: returns before creating a task


def test_unsupported_address_disables_instead_of_raising():
    n = SystemdNotifier(env={"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": "1000000"})
    assert not n.enabled
    assert n.notify("READY=1") is False


def test_ready_status_stopping_reach_a_path_socket(path_receiver):
    path, r = path_receiver
    n = SystemdNotifier(env={"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready(status="books LIVE")
    assert n.status("quoting\nBTCUSDT")
    assert n.extend_timeout(2.5)
    assert n.stopping()
    assert r.wait_for(lambda m: len(m) == 4)
    assert [m for _, m in r.messages] == [
        "READY=1\nSTATUS=books LIVE",
        "STATUS=quoting BTCUSDT",
        "EXTEND_TIMEOUT_USEC=2500000",
        "STOPPING=1",
    ]
    assert n.sent == 4 and n.errors == 0
    n.close()


def test_abstract_namespace_socket():
    name = f"mmd-test-{uuid.uuid4().hex}"
    r = Receiver(b"\0" + name.encode())
    try:
        n = SystemdNotifier(env={"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert n.watchdog()
        assert r.wait_for(lambda m: len(m) == 2)
        assert [m for _, m in r.messages] == ["READY=1", "WATCHDOG=1"]
    finally:
        r.close()


def test_send_failure_is_counted_not_raised(tmp_path):
    n = SystemdNotifier(env={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert n.enabled
    assert n.notify("READY=1") is False
    assert n.errors == 1 and n.sent == 0


def test_watchdog_interval_from_environment():
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000"}
    assert SystemdNotifier(env=env).watchdog_interval_s() == 15.0  # WatchdogSec=30 -> every 15 s
    assert SystemdNotifier(env={**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s() == 15.0
    assert SystemdNotifier(env={**env, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval_s() is None
    assert SystemdNotifier(env={**env, "WATCHDOG_PID": "x"}).watchdog_interval_s() is None
    assert SystemdNotifier(env={**env, "WATCHDOG_USEC": "0"}).watchdog_interval_s() is None
    assert SystemdNotifier(env={**env, "WATCHDOG_USEC": "abc"}).watchdog_interval_s() is None
    assert SystemdNotifier(env={"WATCHDOG_USEC": "30000000"}).watchdog_interval_s() is None


async def test_watchdog_pings_stop_while_the_loop_is_blocked(path_receiver):
    path, r = path_receiver
    # WATCHDOG_USEC=100 ms -> a ping every 50 ms
    n = SystemdNotifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid())})
    wd = Watchdog(n)
    assert wd.interval_s == pytest.approx(0.05)
    assert n.ready()
    assert wd.start()
    try:
        await asyncio.sleep(0.4)
        assert r.wait_for(lambda m: len([x for x in m if x[1] == "WATCHDOG=1"]) >= 4)
        assert r.messages[0][1] == "READY=1"
        before = len(r.pings())

        # Block the event loop for 0.6 s from inside a callback on the loop itself.
        block = {}

        def blocker() -> None:
            block["start"] = time.monotonic()
            time.sleep(0.6)
            block["end"] = time.monotonic()

        asyncio.get_running_loop().call_soon(blocker)
        await asyncio.sleep(0)  # the blocker runs here
        assert "end" in block
        await asyncio.sleep(0.3)  # loop free again: pings resume
        assert r.wait_for(lambda m: len([x for x in m if x[1] == "WATCHDOG=1"]) > before + 2)
    finally:
        await wd.stop()
        n.close()

    pings = r.pings()
    during = [t for t in pings if block["start"] + 0.01 < t < block["end"]]
    assert during == [], f"pings arrived while the loop was blocked: {during}"
    # ... while before the block they were ~50 ms apart, and they came back after it.
    before_block = [t for t in pings if t <= block["start"]]
    gaps = [b - a for a, b in zip(before_block, before_block[1:])]
    assert gaps and any(t > block["end"] for t in pings)
    # the longest silence is the block itself: longer than any gap before it (a relative check, so
    # a loaded machine's slower pings do not fail it; the ping rate itself is a bench/ measurement)
    all_gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(all_gaps) >= 0.55 and max(all_gaps) > max(gaps)
    assert wd.pings == len(pings)


async def test_watchdog_withholds_pings_when_not_alive(path_receiver):
    path, r = path_receiver
    n = SystemdNotifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"})
    alive = {"ok": True}
    wd = Watchdog(n, alive=lambda: alive["ok"])
    wd.start()

    async def until(cond, timeout: float = 20.0) -> None:  # event-driven wait, generous ceiling
        end = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < end, "condition not reached in time"
            await asyncio.sleep(0.005)

    def received() -> int:
        return len([x for x in r.messages if x[1] == "WATCHDOG=1"])

    try:
        await until(lambda: received() >= 2)
        alive["ok"] = False
        sent = wd.pings  # no await since the switch: nothing more can have been sent
        w0 = wd.withheld
        await until(lambda: wd.withheld >= w0 + 3)  # three ping times passed while not alive
        assert wd.pings == sent
        await until(lambda: received() >= sent)  # every ping sent before the switch has landed ...
        assert received() == sent  # ... and no other
        alive["ok"] = True
        await until(lambda: received() > sent)
    finally:
        await wd.stop()
        n.close()
    assert not wd.running


async def test_watchdog_alive_check_that_raises_withholds():
    n = SystemdNotifier(env={})
    wd = Watchdog(n, interval_s=1.0, alive=lambda: 1 / 0)
    assert wd.ping_once() is False
    assert wd.withheld == 1


def test_watchdog_rejects_nonpositive_interval():
    with pytest.raises(ValueError):
        Watchdog(SystemdNotifier(env={}), interval_s=0)
