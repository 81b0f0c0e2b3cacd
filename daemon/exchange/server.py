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

Parts, each readable on its own; :class:`ExchangeServer` composes them:

* :mod:`daemon.exchange.pacing` (``ReplayClock``): when the next recording frame is due (``speed``,
  pause/resume, stalls, looping) and how far the replay got (``frames_broadcast``, ``finished``);
* :mod:`daemon.exchange.hub` (``WsHub``): websocket connections, their send queues and
  backpressure, ping/subscribe/unsubscribe, publishing to subscribers;
* :mod:`daemon.exchange.rest` (``RestApi``): the ``/v5/market/*`` endpoints, the param-error
  middleware and REST faults;
* :mod:`daemon.exchange.fault_state` (``FaultState``): when each fault is due, what was injected;
* :mod:`daemon.exchange.market` (``Market``): the exchange's own market state.

The server primes the market, applies each due frame to it and publishes the outputs through the
hub with the faults that are due, and offers the control API (pause, inject, counters ...).

Pacing (``speed``, see :mod:`~daemon.exchange.pacing`): ``1.0`` replays in real time by the
recording's ``recv_ns`` gaps, ``x`` is x times faster, ``0`` sends as fast as the clients read
(each connection's send queue is bounded by ``queue_high`` and the replay waits for room) and only
while somebody is subscribed. One replay task drives one market clock for all connections. With
``speed > 0`` a connection whose queue exceeds ``max_queue`` frames is dropped as a slow consumer.

Times served: all ``ts``/``cts``/``T`` (and kline starts) are the recording's exchange times (shifted
per loop, see :mod:`daemon.exchange.market`): the daemon runs on event time, and a replay of 2024 data
is self-consistent that way. Kline history is there from the start: the recording's own candles,
one loop before the replay (see :meth:`~daemon.exchange.market.Market.seed_kline_history`).
``/v5/market/time`` and the REST envelope ``time`` are the server's wall
clock, as on Bybit, so a client's clock-offset estimate is ~0 (see :mod:`daemon.exchange.rest`).
"""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from daemon.exchange.fault_state import FaultState
from daemon.exchange.faults import FaultPlan, malformed_frame
from daemon.exchange.hub import WS_PATHS, WsHub
from daemon.exchange.market import Market, fmt
from daemon.exchange.pacing import ReplayClock
from daemon.exchange.recording import Recording, batch_trades, load_recording
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
        #: what the replay sends: the recording's frames, trades one frame per timestamp as on Bybit
        self.frames = batch_trades(self.recording.frames)
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
        self.clock = ReplayClock(self.speed, has_listeners=self.hub.has_listeners,
                                 wait_listener=self.hub.wait_subscription,
                                 stall_remaining=self.fault_state.stall_remaining)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._replay_task: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self.rest.middleware])
        self.rest.add_routes(app.router)
        for path in WS_PATHS:
            app.router.add_get(path, self.hub.handle)
        return app

    async def start(self) -> None:
        """Bind, start serving and start the replay clock."""
        self.clock.start()
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
        rec = self.recording
        span_ns = rec.span_ns + self.market.loop_gap_ms * 1_000_000
        replay = self.clock.run(self.frames, span_ns, start_index=start_index, loop=self.loop,
                                start_loop=self.market.start_loop, play=self._play)
        self._replay_task = asyncio.create_task(replay, name="exchange-replay")
        log.debug("exchange_started", rest_url=self.rest_url, ws_url=self.ws_url, speed=self.speed, loop=self.loop,
                 recording=self.recording.path, frames=len(self.frames))

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
        self.clock.cancel_waiters()
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
        self.clock.pause()

    def resume(self) -> None:
        self.clock.resume()

    async def wait_paused(self, timeout: float = 10.0) -> None:
        """After :meth:`pause`: wait until the replay is parked (the last frame is fully queued)."""
        await self.clock.wait_paused(timeout)

    async def wait_frames(self, n: int, timeout: float = 30.0) -> int:
        """Wait until at least ``n`` replay frames were broadcast (or the replay ended)."""
        return await self.clock.wait_frames(n, timeout)

    @property
    def frames_broadcast(self) -> int:
        """Replay frames (:attr:`frames`: the recording's, trades batched) applied and broadcast so far
        (all loops)."""
        return self.clock.frames_broadcast

    @property
    def loops_completed(self) -> int:
        return self.clock.loops_completed

    @property
    def finished(self) -> asyncio.Event | None:
        """Set when the replay ended (``loop=False``) or was stopped; ``None`` before :meth:`start`."""
        return self.clock.finished

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
    def _prime(self, max_frames: int = 5000) -> int:
        """Apply the first frames (nobody is connected yet) until every recorded book has its snapshot
        and the tickers have a state, so REST and the first subscribers see a real market.
        Returns the index the replay continues from; primed frames count in ``frames_broadcast``."""
        frames = self.frames
        self.market.seed_kline_history()
        i = 0
        while i < len(frames) and i < max_frames and not self.market.primed():
            self.market.apply(frames[i][1], 0)
            i += 1
        if i >= len(frames):  # tiny recording: replay it fully from the start instead, on a fresh
            # market that every part serving from the market must see (nobody is connected yet)
            self.market = self.rest.market = self.hub.market = Market(self.recording, **self._market_kw)
            self.market.seed_kline_history()
            return 0
        self.clock.frames_broadcast = i
        return i

    async def _play(self, frame: dict[str, Any], loop_idx: int, n: int) -> None:
        """The replay's ``n``-th frame is due: apply it to the market and send what it changed to the
        subscribers, with the malformed frames, gaps and crossed books due; then the plan's stall."""
        outs = self.market.apply(frame, loop_idx)
        malformed = self.fault_state.malformed_due(n)
        if malformed:
            await self._send_malformed(malformed)
        await self._broadcast(outs)
        self.fault_state.after_frame(n)

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
