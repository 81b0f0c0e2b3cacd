"""Event-loop responsiveness monitor, shared by ``/healthz`` and the systemd watchdog.

A task on the loop sleeps ``interval_s`` and measures how late it wakes up: ``lag = woke - due``
(seconds, monotonic clock). A loop blocked by a synchronous call (a slow callback, a long GC, a
``time.sleep``) wakes the task late by the length of the block.

:meth:`LoopLagMonitor.current_lag_s` also covers a block that is still going on (or a monitor task
that died): it is ``max(last measured lag, now - next due wake-up)``, so a reader running off-loop
(or the loop itself right after a stall) never sees a stale "all good".

This is shell code: it reads the monotonic clock, which the pure core never does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from daemon.logging import get_logger
from daemon.ops.tasks import cancel_and_wait

log = get_logger("daemon.ops.looplag")


class LoopLagMonitor:
    """Measure event-loop lag every ``interval_s`` seconds.

    ``on_sample(lag_s)`` (optional) is called on the loop after every measurement, e.g.
    :meth:`daemon.ops.metrics.Metrics.observe_loop_lag`. ``warn_lag_s``: a lag above it is logged
    (``loop_lag_high``, at most once per ``interval_s``-sample, so a stall gives one line).

    Attributes (seconds): ``last_lag_s`` (most recent sample), ``max_lag_s`` (largest since start or
    :meth:`reset_max`), ``samples`` (count).
    """

    def __init__(
        self,
        interval_s: float = 0.25,
        *,
        on_sample: Callable[[float], None] | None = None,
        warn_lag_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.interval_s = float(interval_s)
        self.warn_lag_s = float(warn_lag_s)
        self._on_sample = on_sample
        self._clock = clock
        self.last_lag_s = 0.0
        self.max_lag_s = 0.0
        self.samples = 0
        self._due: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the sampling task on the running loop (idempotent)."""
        if self.running:
            return
        self._due = self._clock() + self.interval_s
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def current_lag_s(self) -> float:
        """Lag now (seconds, >= 0): the last sample, or the overdue time of the next one if larger."""
        if self._due is None:
            return 0.0
        overdue = self._clock() - self._due
        return max(self.last_lag_s, overdue, 0.0)

    def reset_max(self) -> float:
        """Return ``max_lag_s`` and reset it to 0."""
        m, self.max_lag_s = self.max_lag_s, 0.0
        return m

    async def _run(self) -> None:
        interval = self.interval_s
        while True:
            await asyncio.sleep(interval)
            now = self._clock()
            lag = now - self._due if self._due is not None else 0.0
            if lag < 0.0:
                lag = 0.0
            self._record(lag)
            self._due = now + interval

    def _record(self, lag: float) -> None:
        self.last_lag_s = lag
        self.samples += 1
        if lag > self.max_lag_s:
            self.max_lag_s = lag
        if lag > self.warn_lag_s:
            log.warning("loop_lag_high", lag_s=round(lag, 6), threshold_s=self.warn_lag_s)
        if self._on_sample is not None:
            try:
                self._on_sample(lag)
            except Exception:  # a metrics hiccup must not kill the monitor
                log.exception("loop_lag_callback_failed")
