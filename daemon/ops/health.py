"""HTTP endpoints for operators and orchestrators: ``/metrics``, ``/healthz``, ``/readyz``.

* ``GET /metrics``: the private registry of :class:`~daemon.ops.metrics.Metrics` in Prometheus
  text format 0.0.4.
* ``GET /healthz`` (liveness): answered by a handler running on the daemon's own event loop, so
  any answer at all proves the loop turns; the body reports the loop lag measured by
  :class:`~daemon.ops.looplag.LoopLagMonitor`. 200 if ``lag <= max_loop_lag_s``, else 503. A
  blocked loop gives no answer (the client times out), which probes treat as a failure too.
* ``GET /readyz`` (readiness): 200 only when ``ready_check()`` returns ``(True, details)``
  (e.g. every book LIVE and the ledger writable); else 503. The body is JSON
  ``{"ready": bool, ...details}``; a check that raises gives 503 with ``"error"``.

Bind ``metrics_host`` (default ``127.0.0.1``) / ``metrics_port`` (0 = ephemeral: read
:attr:`HealthServer.port` after :meth:`HealthServer.start`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from daemon.logging import get_logger
from daemon.ops.looplag import LoopLagMonitor
from daemon.ops.metrics import Metrics

log = get_logger("daemon.ops.health")

ReadyCheck = Callable[[], "tuple[bool, dict[str, Any]] | Awaitable[tuple[bool, dict[str, Any]]]"]


def _json(status: int, body: Mapping[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body, default=str), content_type="application/json")


def books_and_ledger_ready(
    book_states: Callable[[], Mapping[str, int]],
    ledger_writable: Callable[[], bool],
) -> Callable[[], tuple[bool, dict[str, Any]]]:
    """Build the standard readiness check: every book LIVE (state 2) and the ledger writable.

    ``book_states()`` returns ``{symbol: BookState}``; ``ledger_writable()`` is True when the last
    ledger write/commit succeeded. The details name the books that are not LIVE.
    """
    from daemon.core.book import BookState

    def check() -> tuple[bool, dict[str, Any]]:
        states = book_states()
        not_live = {s: BookState(int(v)).name for s, v in states.items() if int(v) != BookState.LIVE}
        ledger_ok = bool(ledger_writable())
        reasons = []
        if not states:
            reasons.append("no books")
        if not_live:
            reasons.append("books not LIVE: " + ", ".join(f"{s}={n}" for s, n in sorted(not_live.items())))
        if not ledger_ok:
            reasons.append("ledger not writable")
        return (not reasons, {"books": {s: BookState(int(v)).name for s, v in states.items()},
                              "ledger_writable": ledger_ok, "reasons": reasons})

    return check


class HealthServer:
    """aiohttp server for ``/metrics``, ``/healthz`` and ``/readyz`` on the daemon's event loop.

    ``lag_monitor``: a shared :class:`LoopLagMonitor`; if None one is created and owned (started and
    stopped with the server, feeding ``metrics.observe_loop_lag``). ``max_loop_lag_s``: ``/healthz``
    turns 503 above it (seconds).
    """

    def __init__(
        self,
        metrics: Metrics,
        ready_check: ReadyCheck | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        lag_monitor: LoopLagMonitor | None = None,
        max_loop_lag_s: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.ready_check = ready_check
        self.host = host
        self.requested_port = int(port)
        self.max_loop_lag_s = float(max_loop_lag_s)
        self._own_monitor = lag_monitor is None
        self.lag_monitor = lag_monitor or LoopLagMonitor(0.25, on_sample=metrics.observe_loop_lag)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._started_mono = time.monotonic()

    @property
    def port(self) -> int:
        """The bound TCP port (valid after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("HealthServer not started")
        return self._port

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if host in ("0.0.0.0", "[::]", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self) -> int:
        """Bind and serve; returns the bound port. Raises ``OSError`` if the address is taken."""
        if self._runner is not None:
            return self.port
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        addrs = runner.addresses
        self._port = int(addrs[0][1]) if addrs else self.requested_port
        if self._own_monitor:
            self.lag_monitor.start()
        self._started_mono = time.monotonic()
        log.info("health_listening", host=self.host, port=self._port, url=self.url)
        return self._port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if self._own_monitor:
            await self.lag_monitor.stop()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> "HealthServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- handlers --------------------------------------------------------------------------------
    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.render()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = self.metrics.content_type
        return resp

    async def _healthz(self, request: web.Request) -> web.Response:
        lag = self.lag_monitor.current_lag_s()
        ok = lag <= self.max_loop_lag_s and self.lag_monitor.running
        body = {
            "status": "ok" if ok else "unhealthy",
            "loop_lag_s": round(lag, 6),
            "loop_lag_max_s": round(self.lag_monitor.max_lag_s, 6),
            "max_loop_lag_s": self.max_loop_lag_s,
            "monitor_running": self.lag_monitor.running,
            "uptime_s": round(time.monotonic() - self._started_mono, 3),
        }
        return _json(200 if ok else 503, body)

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.ready_check is None:
            return _json(503, {"ready": False, "reasons": ["no readiness check configured"]})
        try:
            res = self.ready_check()
            if inspect.isawaitable(res):
                res = await res
            ready, details = res  # type: ignore[misc]
        except Exception as e:
            log.warning("readiness_check_failed", error=repr(e))
            return _json(503, {"ready": False, "error": f"{type(e).__name__}: {e}"})
        body = {"ready": bool(ready), **(details or {})}
        return _json(200 if ready else 503, body)
