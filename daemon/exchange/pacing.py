"""The replay clock of the embedded exchange: one clock for all connections that decides when the
next recording frame goes out, loops the recording, and tells how far the replay got.

Pacing (``speed``): ``1.0`` replays in real time by the recording's ``recv_ns`` gaps, ``x`` is x times
faster, ``0`` sends as fast as the clients read (no sleeps; the websocket hub's bounded queues hold
the replay back) and only while at least one connection has a subscription (otherwise it would spin
through the loop with nobody listening). The clock stops while paused (:meth:`ReplayClock.pause`)
and during a stall fault; after either, and after waiting for a subscriber, it re-anchors to the wall
clock so the replay resumes at its speed instead of catching up.

Looping: loop ``k`` replays the recording's frames shifted by ``k`` recording spans (plus the
exchange-time gap between loops); the market is told when a loop starts so its times, ``u`` and
``seq`` continue (see :mod:`daemon.exchange.market`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from daemon.logging import get_logger

log = get_logger("daemon.exchange")


class ReplayClock:
    """When the replay may send its next frame, and its progress (frames broadcast, loops, finished).

    ``speed`` as in the module docstring; ``has_listeners()`` / ``wait_listener()``: is anybody
    subscribed / wait for a subscription (used at speed 0); ``stall_remaining()``: seconds left of a
    stall fault (<= 0: none). :meth:`start` (on the event loop) before anything else.
    """

    def __init__(self, speed: float, *, has_listeners: Callable[[], bool],
                 wait_listener: Callable[[], Awaitable[None]], stall_remaining: Callable[[], float]) -> None:
        self.speed = speed
        self._has_listeners = has_listeners
        self._wait_listener = wait_listener
        self._stall_remaining = stall_remaining
        self.frames_broadcast = 0  #: recording frames applied and broadcast so far (all loops)
        self.loops_completed = 0
        self.finished: asyncio.Event | None = None  #: set when the replay ends (or is cancelled)
        self._paused = False
        self._resume_evt: asyncio.Event | None = None
        self._parked: asyncio.Event | None = None
        self._interrupt: asyncio.Event | None = None  #: wakes replay sleeps early (pause requested)
        self._waiters: list[tuple[int, asyncio.Future]] = []
        # wall-clock anchor of the pacing: frame time _base_eff (ns) is due at _base_wall (monotonic s)
        self._base_wall = 0.0
        self._base_eff = 0
        self._rebase = True

    def start(self) -> None:
        self._resume_evt = asyncio.Event()
        self._resume_evt.set()
        self._parked = asyncio.Event()
        self._interrupt = asyncio.Event()
        self.finished = asyncio.Event()

    # ------------------------------------------------------------------ control
    def pause(self) -> None:
        """Stop the clock before the next frame (see :meth:`wait_paused`)."""
        self._paused = True
        if self._resume_evt is not None:
            self._resume_evt.clear()
        if self._interrupt is not None:
            self._interrupt.set()

    def resume(self) -> None:
        self._paused = False
        if self._parked is not None:
            self._parked.clear()
        if self._resume_evt is not None:
            self._resume_evt.set()

    async def wait_paused(self, timeout: float = 10.0) -> None:
        """After :meth:`pause`: wait until the replay is parked (the last frame is fully queued)."""
        assert self._parked is not None
        if self.finished is not None and self.finished.is_set():
            return
        done = asyncio.ensure_future(self.finished.wait()) if self.finished else None
        parked = asyncio.ensure_future(self._parked.wait())
        try:
            await asyncio.wait_for(asyncio.wait([parked] + ([done] if done else []),
                                                return_when=asyncio.FIRST_COMPLETED), timeout)
        finally:
            parked.cancel()
            if done:
                done.cancel()

    async def wait_frames(self, n: int, timeout: float = 30.0) -> int:
        """Wait until at least ``n`` recording frames were broadcast (or the replay ended)."""
        if self.frames_broadcast >= n or (self.finished is not None and self.finished.is_set()):
            return self.frames_broadcast
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        await asyncio.wait_for(fut, timeout)
        return self.frames_broadcast

    def cancel_waiters(self) -> None:
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()

    # ------------------------------------------------------------------ the replay
    async def run(self, frames: Sequence[tuple[int, Any]], span_ns: int, *, start_index: int, loop: bool,
                  start_loop: Callable[[int], None], play: Callable[[Any, int, int], Awaitable[None]]) -> None:
        """Replay ``frames`` (``(recv_ns, frame)``, the first pass from ``start_index``), forever if
        ``loop``, each loop ``span_ns`` later than the one before. ``start_loop(k)`` is called as loop
        ``k >= 1`` begins; ``await play(frame, k, n)`` sends a frame when it is due, ``n`` counting
        the frames broadcast (including those before ``start_index``)."""
        first_ns = frames[0][0]
        loop_idx = 0
        try:
            while True:
                off_ns = loop_idx * span_ns - first_ns
                if loop_idx:
                    start_loop(loop_idx)
                for ns, frame in (frames if loop_idx or not start_index else frames[start_index:]):
                    await self._wait_turn(ns + off_ns)
                    n_next = self.frames_broadcast + 1
                    await play(frame, loop_idx, n_next)
                    self.frames_broadcast = n_next
                    if self._waiters:
                        self._notify()
                    if n_next % 16 == 0:
                        await asyncio.sleep(0)  # let writers, REST and client messages in
                self.loops_completed += 1
                if not loop:
                    break
                loop_idx += 1
                log.info("replay_loop", loop=loop_idx, frames=self.frames_broadcast)
        finally:
            assert self.finished is not None
            self.finished.set()
            self._parked.set() if self._parked is not None else None
            self._notify(all_=True)

    async def _wait_turn(self, eff_ns: int) -> None:
        """Return when the frame at (loop-shifted) recording time ``eff_ns`` is due."""
        if await self._gate():
            self._rebase = True
        if self.speed > 0:
            if self._rebase:
                self._anchor(eff_ns)
            delay = self._base_wall + (eff_ns - self._base_eff) / 1e9 / self.speed - time.monotonic()
            if delay > 0.0005:
                await self._sleep(delay)
                if self._paused or self._stall_remaining() > 0:
                    await self._gate()
                    self._anchor(eff_ns)

    def _anchor(self, eff_ns: int) -> None:
        self._base_wall, self._base_eff, self._rebase = time.monotonic(), eff_ns, False

    async def _gate(self) -> bool:
        """Block while paused, stalled or (speed 0) nobody listens. True if the clock must rebase."""
        assert self._resume_evt is not None and self._parked is not None
        rebase = False
        while True:
            if self._paused:
                self._parked.set()
                await self._resume_evt.wait()
                self._parked.clear()
                rebase = True
                continue
            remaining = self._stall_remaining()
            if remaining > 0:
                await self._sleep(remaining)
                rebase = True
                continue
            if self.speed == 0 and not self._has_listeners():
                self._parked.set()
                await self._wait_listener()
                self._parked.clear()
                continue
            return rebase

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up early when :meth:`pause` is called."""
        assert self._interrupt is not None
        self._interrupt.clear()
        if self._paused:
            return
        try:
            await asyncio.wait_for(self._interrupt.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _notify(self, all_: bool = False) -> None:
        n = self.frames_broadcast
        keep = []
        for target, fut in self._waiters:
            if fut.done():
                continue
            if all_ or target <= n:
                fut.set_result(n)
            else:
                keep.append((target, fut))
        self._waiters = keep
