"""One object that starts and stops the operational side of a daemon process.

:class:`OpsRuntime` owns the shared :class:`~daemon.ops.looplag.LoopLagMonitor`, the
:class:`~daemon.ops.health.HealthServer` (``/metrics``, ``/healthz``, ``/readyz``), the
:class:`~daemon.ops.systemd.SystemdNotifier` and the :class:`~daemon.ops.systemd.Watchdog`.
Lifecycle in the shell (``mmd run``)::

    ops = OpsRuntime(settings.ops, metrics, ready_check)
    await ops.start()                 # binds the HTTP port (OSError if taken), starts watchdog
    ...                               # connect, sync books
    ops.ready("quoting BTCUSDT")      # READY=1 once every book is LIVE (systemd Type=notify)
    ...
    await ops.stop("SIGTERM")         # STOPPING=1, stop watchdog and HTTP server

Without ``NOTIFY_SOCKET`` (not under systemd) the notify calls are no-ops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from daemon.config import OpsConfig
from daemon.logging import get_logger
from daemon.ops.health import HealthServer, ReadyCheck
from daemon.ops.looplag import LoopLagMonitor
from daemon.ops.metrics import Metrics
from daemon.ops.systemd import SystemdNotifier, Watchdog

log = get_logger("daemon.ops.runtime")


class OpsRuntime:
    """Loop-lag monitor + health/metrics HTTP server + sd_notify + watchdog, started together.

    ``env``: environment for the notifier (default ``os.environ``). ``alive``: optional extra
    liveness check consulted before every watchdog ping (False withholds the ping). Pings are also
    withheld while the loop-lag monitor is not running.
    """

    def __init__(
        self,
        cfg: OpsConfig,
        metrics: Metrics,
        ready_check: ReadyCheck | None = None,
        *,
        env: Mapping[str, str] | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.lag_monitor = LoopLagMonitor(
            cfg.loop_lag_interval_s, on_sample=metrics.observe_loop_lag, warn_lag_s=cfg.max_loop_lag_s
        )
        self.health = HealthServer(
            metrics,
            ready_check,
            host=cfg.metrics_host,
            port=cfg.metrics_port,
            lag_monitor=self.lag_monitor,
            max_loop_lag_s=cfg.max_loop_lag_s,
        )
        self.notifier = SystemdNotifier(env)
        self._alive = alive
        # The watchdog shares the loop-lag monitor: pings stop if the monitor task has died
        # (a crashed shell task) as well as when the loop is blocked.
        self.watchdog = Watchdog(self.notifier, alive=self._watchdog_alive)
        self._started = False

    def _watchdog_alive(self) -> bool:
        return self.lag_monitor.running and (self._alive is None or bool(self._alive()))

    @property
    def port(self) -> int:
        return self.health.port

    async def start(self) -> int:
        """Start the monitor, the HTTP server (returns its port) and the watchdog."""
        self.lag_monitor.start()
        try:
            port = await self.health.start()
        except OSError:
            await self.lag_monitor.stop()
            raise
        self.watchdog.start()
        self._started = True
        log.info(
            "ops_started",
            metrics_url=self.health.url + "/metrics",
            systemd=self.notifier.enabled,
            watchdog_interval_s=self.watchdog.interval_s if self.watchdog.running else None,
        )
        return port

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is complete (call once every book is LIVE)."""
        return self.notifier.ready(status)

    def status(self, text: str) -> bool:
        return self.notifier.status(text)

    async def stop(self, reason: str | None = None) -> None:
        """STOPPING=1, then stop watchdog, HTTP server and monitor (idempotent)."""
        if self._started:
            self.notifier.stopping(reason)
        self._started = False
        await self.watchdog.stop()
        await self.health.stop()
        await self.lag_monitor.stop()
        self.notifier.close()

    async def __aenter__(self) -> "OpsRuntime":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
