"""systemd ``sd_notify`` protocol without dependencies, and an event-loop watchdog.

Protocol (``sd_notify(3)``): newline-separated ``KEY=VALUE`` assignments sent as one datagram to
the ``AF_UNIX``/``SOCK_DGRAM`` socket named by ``$NOTIFY_SOCKET``: a filesystem path
(``/run/systemd/notify``) or, when it starts with ``@``, a Linux abstract-namespace name (the ``@``
becomes a leading NUL byte). Everything here is a no-op when ``NOTIFY_SOCKET`` is unset (not run
by systemd, or ``Type=simple``), so the daemon calls it unconditionally.

Watchdog (``sd_watchdog_enabled(3)``): with ``WatchdogSec=`` systemd sets ``$WATCHDOG_USEC``
(microseconds) and ``$WATCHDOG_PID``; the service must send ``WATCHDOG=1`` more often than that
or be killed (``SIGABRT``) and restarted. :class:`Watchdog` pings every ``WATCHDOG_USEC / 2``
from a task on the daemon's event loop, so a blocked loop stops the pings and systemd restarts
the service. ``$WATCHDOG_PID`` set to another pid means the watchdog is not ours: no pings.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

from daemon.logging import get_logger
from daemon.ops.tasks import cancel_and_wait

log = get_logger("daemon.ops.systemd")


def _address(env: Mapping[str, str]) -> str | bytes | None:
    addr = env.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr.startswith("@"):
        return b"\0" + addr[1:].encode()
    if addr.startswith("/"):
        return addr
    # vsock:CID:PORT and relative paths are not supported here.
    raise ValueError(f"NOTIFY_SOCKET={addr!r}: only absolute paths and @abstract names are supported")


class SystemdNotifier:
    """Send ``sd_notify`` datagrams. ``env`` defaults to ``os.environ`` (read once, at construction).

    All senders return True if a datagram was sent, False if disabled or the send failed (a failure
    is logged and counted in ``errors``; it never raises into the caller).
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.errors = 0
        self.sent = 0
        self._sock: socket.socket | None = None
        try:
            self._addr = _address(env)
        except ValueError as e:
            log.warning("sd_notify_unsupported", error=str(e))
            self._addr = None
        self._watchdog_usec = _watchdog_usec(env)

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram, e.g. ``notify("READY=1", "STATUS=live")``."""
        if self._addr is None:
            return False
        msg = "\n".join(assignments).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # never stall the event loop on a full queue
            self._sock.sendto(msg, self._addr)
        except OSError as e:
            self.errors += 1
            log.warning("sd_notify_failed", error=str(e), message=msg.decode(errors="replace")[:200])
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup done (``Type=notify`` units leave *activating*)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """Free-form one-line status shown by ``systemctl status``."""
        return self.notify(f"STATUS={text.replace(chr(10), ' ')}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def watchdog(self) -> bool:
        """One keep-alive ping."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more to finish starting/stopping (``EXTEND_TIMEOUT_USEC``)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog_interval_s(self) -> float | None:
        """Ping period in seconds (``WATCHDOG_USEC / 2``), or None when the watchdog is off or not ours."""
        if self._addr is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2e6

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("watchdog_usec_invalid", value=raw)
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            log.warning("watchdog_pid_invalid", value=pid)
            return None
    return usec


class Watchdog:
    """Send ``WATCHDOG=1`` every ``interval_s`` seconds from a task on the running event loop.

    ``interval_s`` defaults to :meth:`SystemdNotifier.watchdog_interval_s` (``WatchdogSec/2``);
    when that is None (no watchdog configured) :meth:`start` does nothing. ``alive`` (optional) is
    consulted before each ping: return False to withhold it (e.g. the engine has been stuck), and
    systemd restarts the service after ``WatchdogSec``.
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        interval_s: float | None = None,
        *,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.notifier = notifier
        self.interval_s = interval_s if interval_s is not None else notifier.watchdog_interval_s()
        if self.interval_s is not None and self.interval_s <= 0:
            raise ValueError(f"watchdog interval must be > 0, got {self.interval_s!r}")
        self.alive = alive
        self.pings = 0
        self.withheld = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> bool:
        """Start pinging (first ping at once). Returns False when there is nothing to do."""
        if self.interval_s is None or not self.notifier.enabled:
            return False
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="systemd-watchdog")
            log.info("watchdog_started", interval_s=self.interval_s)
        return True

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def ping_once(self) -> bool:
        if self.alive is not None:
            try:
                ok = bool(self.alive())
            except Exception:
                log.exception("watchdog_alive_check_failed")
                ok = False
            if not ok:
                self.withheld += 1
                log.warning("watchdog_ping_withheld")
                return False
        if self.notifier.watchdog():
            self.pings += 1
            return True
        return False

    async def _run(self) -> None:
        assert self.interval_s is not None
        while True:
            self.ping_once()
            await asyncio.sleep(self.interval_s)
