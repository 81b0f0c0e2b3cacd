"""The embedded Bybit-V5-compatible exchange: one aiohttp application on 127.0.0.1 serving the public
REST market endpoints and the public websocket, replaying a recording with fault injection.

Usage in a test (same event loop, pytest-asyncio)::

    async with ExchangeServer(recording=path, speed=0, loop=True) as ex:
        ws = await websockets.connect(ex.ws_url)
        ...
        ex.pause(); await ex.wait_paused()
        u, bids, asks = ex.book("BTCUSDT", 50)   # the exchange's own view at the last broadcast frame

or in a background thread (synchronous code, other event loops)::

    with ExchangeThread(speed=10) as ex:   # ex is the ExchangeServer
        requests_against(ex.rest_url)

Pacing (``speed``): ``1.0`` replays in real time by the recording's ``recv_ns`` gaps, ``x`` is x times
faster, ``0`` sends as fast as the clients read: no sleeps, each connection's send queue is bounded
(``queue_high``) and the replay waits for room, and the replay only runs while at least one
connection has a subscription (otherwise it would spin through the loop with nobody listening).
One replay task drives one market clock for all connections. With ``speed > 0`` a connection whose
queue exceeds ``max_queue`` frames is dropped as a slow consumer (as Bybit does).

Times served: all ``ts``/``cts``/``T`` are the recording's exchange times (shifted per loop, see
:mod:`daemon.exchange.market`). ``/v5/market/time`` and the REST envelope ``time`` report the
exchange clock (the ``ts`` of the last applied frame), not the wall clock: the daemon runs on event
time, and a replay of 2024 data is self-consistent that way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from daemon.exchange.fault_state import FaultState
from daemon.exchange.faults import FaultPlan, malformed_frame
from daemon.exchange.hub import WS_PATHS, WsHub
from daemon.exchange.market import Market, fmt
from daemon.exchange.recording import Recording, load_recording
from daemon.exchange.rest import RestApi
from daemon.logging import get_logger

log = get_logger("daemon.exchange")

class ExchangeServer:
    """Bybit V5 public REST + websocket replaying a recording (see the module docstring).

    Parameters: ``recording`` path (``None`` = the bundled BTCUSDT recording) or a loaded
    :class:`Recording`; ``speed`` (0 = as fast as clients read); ``loop`` (replay forever);
    ``faults`` a :class:`FaultPlan`; ``max_args`` subscribe args cap (``"args size >N"``);
    ``funding_rate``/``open_interest`` ticker strings; ``loop_gap_ms`` exchange-time gap between loops.
    """

    def __init__(
        self,
        recording: str | Path | Recording | None = None,
        speed: float = 1.0,
        loop: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
        max_args: int = 10,
        funding_rate: str = "0.0001",
        open_interest: str = "52000.000",
        loop_gap_ms: int = 1000,
        queue_high: int = 256,
        max_queue: int = 100_000,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self.recording = recording if isinstance(recording, Recording) else load_recording(recording)
        self.speed = float(speed)
        self.loop = loop
        self.host = host
        self.port = port
        self.faults = faults or FaultPlan()
        self.max_args = max_args
        self.queue_high = queue_high
        self.max_queue = max_queue
        self._market_kw = dict(funding_rate=funding_rate, open_interest=open_interest, loop_gap_ms=loop_gap_ms)
        self.market = Market(self.recording, **self._market_kw)
        self.fault_state = FaultState(self.faults)
        self.rest = RestApi(self.market, self.fault_state)
        self.hub = WsHub(self.market, self.fault_state, speed=self.speed, max_args=max_args, queue_high=queue_high,
                         max_queue=max_queue)
        self.frames_broadcast = 0  #: recording frames applied and broadcast so far (all loops)
        self.loops_completed = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._replay_task: asyncio.Task | None = None
        self._paused = False
        self._resume_evt: asyncio.Event | None = None
        self._parked: asyncio.Event | None = None
        self._interrupt: asyncio.Event | None = None  #: wakes replay sleeps early (pause requested)
        self.finished: asyncio.Event | None = None
        self._waiters: list[tuple[int, asyncio.Future]] = []

    # ------------------------------------------------------------------ lifecycle
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self.rest.middleware])
        self.rest.add_routes(app.router)
        for path in WS_PATHS:
            app.router.add_get(path, self.hub.handle)
        return app

    async def start(self) -> None:
        """Bind, start serving and start the replay clock."""
        self._resume_evt = asyncio.Event()
        self._resume_evt.set()
        self._parked = asyncio.Event()
        self._interrupt = asyncio.Event()
        self.finished = asyncio.Event()
        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port)
        await self._site.start()
        server = self._site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        if self.recording.u_gaps or self.recording.bad_lines:
            log.warning("recording_imperfect", path=self.recording.path, u_gaps=self.recording.u_gaps,
                        bad_lines=self.recording.bad_lines)
        start_index = self._prime()
        self._replay_task = asyncio.create_task(self._replay(start_index), name="exchange-replay")
        log.debug("exchange_started", rest_url=self.rest_url, ws_url=self.ws_url, speed=self.speed, loop=self.loop,
                 recording=self.recording.path, frames=len(self.recording.frames))

    async def stop(self) -> None:
        """Stop the replay, close every websocket and the listener."""
        if self._replay_task is not None:
            self._replay_task.cancel()
            try:
                await self._replay_task
            except (asyncio.CancelledError, Exception):
                pass
            self._replay_task = None
        await self.hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        log.info("exchange_stopped", frames=self.frames_broadcast, faults=dict(self.faults_injected))

    async def __aenter__(self) -> "ExchangeServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/v5/public/linear"

    # ------------------------------------------------------------------ control API
    def pause(self) -> None:
        """Stop the replay clock before the next frame (see :meth:`wait_paused`)."""
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

    def book(self, symbol: str, depth: int) -> tuple[int, list[tuple[str, str]], list[tuple[str, str]]]:
        """The exchange's own ``(u, bids, asks)`` for ``orderbook.{depth}.{symbol}`` at the last frame,
        price/size strings, best first."""
        return self.market.symbols[symbol].topic_view(depth)

    def inject(self, kind: str, **kw: Any) -> None:
        """One-shot faults. ``kind``:

        * ``"gap"`` / ``"crossed"``: the next book delta (with subscribers) is withheld / crossed;
        * ``"malformed"`` (``malformed_kind=`` one of MALFORMED_KINDS, default ``"invalid_json"``):
          inserted before the next broadcast frame;
        * ``"drop"``: abort every current websocket connection now;
        * ``"stall"`` (``seconds=``, ``pongs=True``): stop data for S seconds;
        * ``"rest"`` (``fault=`` one of ``10006|429|403|500|slow``, ``count=1``, ``seconds=`` for slow);
        * ``"reject"`` (``topic=``): future subscriptions to ``topic`` fail.
        """
        if kind == "drop":
            self.hub.drop_all()
        else:
            self.fault_state.inject(kind, **kw)

    @property
    def faults_injected(self) -> dict[str, int]:
        """Faults injected so far by kind (see :data:`daemon.exchange.faults.FAULT_KINDS`)."""
        return self.fault_state.injected

    @property
    def book_deltas_sent(self) -> int:
        """Book deltas that had at least one subscriber (gap/crossed counting)."""
        return self.fault_state.book_deltas_sent

    @property
    def rest_requests(self) -> int:
        """``/v5/market/*`` requests received so far."""
        return self.rest.requests

    @property
    def stalled(self) -> bool:
        return self.fault_state.stalled

    @property
    def connections(self) -> int:
        return self.hub.connections

    # ------------------------------------------------------------------ replay
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
            remaining = self.fault_state.stall_remaining()
            if remaining > 0:
                await self._sleep(remaining)
                rebase = True
                continue
            if self.speed == 0 and not self.hub.has_listeners():
                self._parked.set()
                await self.hub.wait_subscription()
                self._parked.clear()
                continue
            return rebase

    def _prime(self, max_frames: int = 5000) -> int:
        """Apply the first frames (nobody is connected yet) until every recorded book has its snapshot
        and the tickers have a state, so REST and the first subscribers see a real market.
        Returns the index the replay continues from; primed frames count in ``frames_broadcast``."""
        frames = self.recording.frames
        i = 0
        while i < len(frames) and i < max_frames and not self.market.primed():
            self.market.apply(frames[i][1], 0)
            i += 1
        if i >= len(frames):  # tiny recording: replay it fully from the start instead
            self.market = self.rest.market = self.hub.market = Market(self.recording, **self._market_kw)
            return 0
        self.frames_broadcast = i
        return i

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

    async def _replay(self, start_index: int = 0) -> None:
        rec = self.recording
        frames = rec.frames
        first_ns = frames[0][0]
        span_ns = rec.span_ns + self.market.loop_gap_ms * 1_000_000
        speed = self.speed
        base_wall = 0.0
        base_eff = 0
        rebase = True
        loop_idx = 0
        try:
            while True:
                off_ns = loop_idx * span_ns - first_ns
                if loop_idx:
                    self.market.start_loop(loop_idx)
                for ns, frame in (frames if loop_idx or not start_index else frames[start_index:]):
                    eff = ns + off_ns
                    if await self._gate():
                        rebase = True
                    if speed > 0:
                        if rebase:
                            base_wall, base_eff, rebase = time.monotonic(), eff, False
                        delay = base_wall + (eff - base_eff) / 1e9 / speed - time.monotonic()
                        if delay > 0.0005:
                            await self._sleep(delay)
                            if self._paused or self.stalled:
                                await self._gate()
                                base_wall, base_eff, rebase = time.monotonic(), eff, False
                    outs = self.market.apply(frame, loop_idx)
                    n_next = self.frames_broadcast + 1
                    malformed = self.fault_state.malformed_due(n_next)
                    if malformed:
                        await self._send_malformed(malformed)
                    await self._broadcast(outs)
                    self.frames_broadcast = n_next
                    if self._waiters:
                        self._notify()
                    self.fault_state.after_frame(n_next)
                    if n_next % 16 == 0:
                        await asyncio.sleep(0)  # let writers, REST and client messages in
                self.loops_completed += 1
                if not self.loop:
                    break
                loop_idx += 1
                log.info("replay_loop", loop=loop_idx, frames=self.frames_broadcast)
        finally:
            assert self.finished is not None
            self.finished.set()
            self._parked.set() if self._parked is not None else None
            self._notify(all_=True)

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

    async def _send_malformed(self, malformed: list[tuple[str, int]]) -> None:
        sym = self.recording.symbols[0]
        st = self.market.symbols[sym]
        price = st.last_price or "100.00"
        for kind, n in malformed:
            text = malformed_frame(kind, sym, st.last_ts, st.last_seq, price, n)
            if await self.hub.send_to_listeners(text):
                self.fault_state.malformed_sent(kind)

    async def _broadcast(self, outs: list[tuple[str, dict[str, Any]]]) -> None:
        for topic, payload in outs:
            if not self.hub.has_subscribers(topic):
                continue
            if payload["type"] == "delta" and topic.startswith("orderbook."):
                fault = self.fault_state.book_delta(topic, payload["data"]["u"])
                if fault == "gap":
                    continue
                if fault == "crossed":
                    payload = self._crossed(topic, payload)
            await self.hub.publish(topic, payload)

    def _crossed(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        _, depth, sym = topic.split(".")
        _, bids, asks = self.book(sym, int(depth))
        data = dict(payload["data"])
        if asks:
            size = fmt(Decimal(1), self.market.symbols[sym].qty_dp)
            data["b"] = list(data["b"]) + [[asks[0][0], size]]
        out = dict(payload)
        out["data"] = data
        return out



class ExchangeThread:
    """Run an :class:`ExchangeServer` on its own event loop in a daemon thread.

    ``with ExchangeThread(speed=0) as ex:`` yields the started server; call its sync methods
    through :meth:`call` (thread-safe), e.g. ``th.call(ex.inject, "gap")``.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.server: ExchangeServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 10.0) -> ExchangeServer:
        self._thread = threading.Thread(target=self._run, name="exchange", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("exchange did not start")
        if self._error is not None:
            raise self._error
        assert self.server is not None
        return self.server

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.server = ExchangeServer(**self.kwargs)
                await self.server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            await self._stop.wait()
            await self.server.stop()

        asyncio.run(main())

    def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """Run ``fn(*args, **kw)`` on the server's loop; coroutines are awaited. Returns the result."""
        assert self._loop is not None

        async def _do() -> Any:
            r = fn(*args, **kw)
            if asyncio.iscoroutine(r):
                r = await r
            return r

        return asyncio.run_coroutine_threadsafe(_do(), self._loop).result(60)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> ExchangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
