"""The asyncio shell of ``mmd run``: bootstrap over REST, stream the websocket into the pure core,
carry out the core's actions, serve health/metrics, talk to systemd, stop cleanly.

Lifecycle::

    start: instruments (REST, paged) -> engine + strategies -> kline history (REST) -> websocket
           subscribe -> books LIVE -> READY=1 (systemd) and /readyz 200
    run:   frames -> parser -> engine (book -> features -> classifier -> quoter -> risk -> venue
           -> ledger); a 100 ms timer drives staleness checks; status line every ``status_interval_s``
    stop:  SIGTERM/SIGINT -> cancel all paper orders -> flush the ledger -> close sockets -> exit 0
           (well within 5 s)

The shell is the only place that reads the clock; the core sees time only through events.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from typing import Any

from daemon.backoff import retry_delay
from daemon.bybit.messages import FrameParser
from daemon.bybit.rest import BybitRest, BybitRestError
from daemon.bybit.stream import PublicStream, SubscriptionRejected, topics_for
from daemon.config import Settings
from daemon.core.engine import BookStateChanged, Engine, Resubscribe
from daemon.core.events import StreamState, Timer
from daemon.core.instrument import Instrument
from daemon.logging import get_logger
from daemon.recording import RecordingWriter

log = get_logger("mmd.app")


class StartupError(RuntimeError):
    """The daemon cannot start (unknown symbol, REST unreachable, ...): one clear line.
    ``transient``: a network-side failure that start-up retries (forever, with backoff)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class App:
    """One daemon process: all configured symbols on one event loop."""

    TIMER_MS = 100

    def __init__(self, settings: Settings, *, record_path: str | None = None, ledger_path: str | None = None,
                 resume: bool = False, status_printer: Any = None, trade: bool = True,
                 recorder: RecordingWriter | None = None) -> None:
        self.s = settings
        self.record_path = record_path
        self.ledger_path = ledger_path or settings.ledger.path
        self.resume = resume
        self.status_printer = status_printer
        self.engine: Engine | None = None
        self.stream: PublicStream | None = None
        self.parser: FrameParser | None = None
        self.recorder: RecordingWriter | None = recorder
        self.trade = trade
        self.runtime: Any = None  # daemon.runtime.runtime.Runtime once attached
        self.ops: Any = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._resubscribing: set[str] = set()
        self.ready = False
        #: why start-up is still retrying (None once started): /readyz names it
        self.startup_problem: str | None = None
        self.exit_code = 0
        self.metrics_port = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def request_stop(self, why: str = "signal") -> None:
        if not self._stop.is_set():
            log.info("stopping", reason=why)
            self._stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop, sig.name)
            except (NotImplementedError, RuntimeError):  # pragma: no cover
                pass
        stop_wait = asyncio.create_task(self._stop.wait())
        start = asyncio.create_task(self._start_until_up(), name="startup")
        await asyncio.wait({stop_wait, start}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():  # SIGTERM/SIGINT during start-up (e.g. while retrying): stop now
            start.cancel()
            try:
                await start
            except (asyncio.CancelledError, Exception):
                pass
            await self._shutdown()
            return self.exit_code
        try:
            start.result()
        except StartupError as e:
            stop_wait.cancel()
            log.error("startup_failed", error=str(e))
            self.exit_code = 1
            await self._shutdown()
            return 1
        if self._stop.is_set():  # the signal came with the last start-up step: do not connect
            stop_wait.cancel()
            await self._shutdown()
            return self.exit_code
        stream_task = asyncio.create_task(self.stream.run(), name="stream")  # type: ignore[union-attr]
        self._tasks.append(stream_task)
        self._tasks.append(asyncio.create_task(self._timer(), name="timer"))
        self._tasks.append(asyncio.create_task(self._status(), name="status"))
        done, _ = await asyncio.wait({stop_wait, stream_task}, return_when=asyncio.FIRST_COMPLETED)
        if stream_task in done and not self._stop.is_set():
            exc = stream_task.exception()
            if isinstance(exc, SubscriptionRejected):
                log.error("fatal", error=str(exc))
                self.exit_code = 1
            elif exc is not None:
                log.error("fatal", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
                self.exit_code = 1
        stop_wait.cancel()
        await self._shutdown()
        return self.exit_code

    async def _start_until_up(self) -> None:
        """Serve ops, then bootstrap; a transient failure (REST unreachable, 5xx, rate limits:
        the REST client's own retries ran out) is retried forever with capped, full-jitter
        backoff (``[rest] backoff_base_s`` doubling up to ``startup_retry_max_s``), not ready
        meanwhile (``/readyz`` 503 naming the problem, ``/healthz`` 200). A configuration problem
        (an unknown symbol, a port in use) ends the start-up with :class:`StartupError`."""
        await self._start_ops()
        rng = random.Random()
        attempt = 0
        while True:
            try:
                await self._start()
                self.startup_problem = None
                return
            except StartupError as e:
                if not e.transient:
                    raise
                self.startup_problem = str(e)
                delay = retry_delay(rng, attempt, self.s.rest.backoff_base_s, self.s.rest.startup_retry_max_s)
                attempt += 1
                log.warning("startup_retry", error=str(e)[:300], attempt=attempt, delay_s=round(delay, 3))
                await asyncio.sleep(delay)

    async def _start(self) -> None:
        s = self.s
        m = s.market
        t0 = time.monotonic()
        async with BybitRest(m.rest_url, s.rest) as rest:
            try:
                all_inst = await rest.instruments(m.category) if len(m.symbols) > 1 else await rest.instruments(m.category, m.symbols[0])
            except BybitRestError as e:
                raise StartupError(f"instruments-info failed: {e}", transient=e.transient) from None
            missing = [sym for sym in m.symbols if sym not in all_inst]
            if missing:
                raise StartupError(f"unknown or non-trading symbol(s) for category {m.category}: {', '.join(missing)}")
            instruments: dict[str, Instrument] = {sym: all_inst[sym] for sym in m.symbols}
            for inst in instruments.values():
                log.info("instrument", symbol=inst.symbol, tick_size=inst.tick_size, qty_step=inst.qty_step,
                         min_qty_lots=inst.min_qty_lots, min_notional=inst.min_notional)
            self.engine = Engine(instruments, m.depth, book_stale_ms=s.ws.book_stale_ms)
            if self.record_path:
                self.recorder = RecordingWriter(self.record_path, instruments=instruments)
            elif self.recorder is not None:
                self.recorder.instruments = instruments
            if self.trade:
                self._attach_runtime(instruments)
            if "kline" in m.topics and m.kline_history:
                for inst in instruments.values():
                    try:
                        kl = await rest.klines(m.category, inst, m.kline_interval, m.kline_history, recv_ns=time.time_ns())
                    except BybitRestError as e:
                        log.warning("kline_history_failed", symbol=inst.symbol, error=str(e))
                        continue
                    closed = [k for k in kl if k.confirm]
                    self._feed_history(inst, closed)
        self.parser = FrameParser(instruments, s.ws.max_frame_bytes)
        topics = topics_for(m.symbols, m.depth, [t for t in m.topics], m.kline_interval)
        self.stream = PublicStream(
            m.ws_url, topics, self.parser, self._on_events, self._on_state, s.ws,
            on_raw=self.recorder.write if self.recorder else None,
        )
        log.info("started", symbols=m.symbols, depth=m.depth, topics=len(topics), rest_url=m.rest_url, ws_url=m.ws_url,
                 bootstrap_s=round(time.monotonic() - t0, 3))

    def _feed_history(self, inst: Instrument, closed: list) -> None:
        """Feed REST kline history to the core, and record it as a Bybit kline frame so a replay
        of the recording sees exactly what the live core saw."""
        if not closed:
            return
        now = time.time_ns()
        if self.recorder is not None:
            import orjson

            px = inst.price.to_str
            frame = {
                "topic": f"kline.{closed[0].interval}.{inst.symbol}", "type": "snapshot", "ts": closed[-1].ts_ms,
                "data": [{"start": k.start_ms, "end": k.end_ms, "interval": k.interval, "open": px(k.open), "close": px(k.close),
                          "high": px(k.high), "low": px(k.low), "volume": repr(k.volume), "turnover": "0", "confirm": True,
                          "timestamp": k.ts_ms} for k in closed],
            }
            self.recorder.write(now, orjson.dumps(frame))
        assert self.engine is not None
        self.engine.on_events(closed)
        self._drain()

    def _attach_runtime(self, instruments: dict[str, Instrument]) -> None:
        """Attach the strategy runtime (features, quoter, risk, venue, ledger) when available."""
        try:
            from daemon.runtime.runtime import Runtime
        except ImportError:
            return
        assert self.engine is not None
        try:
            self.runtime = Runtime.live(self.s, self.engine, ledger_path=self.ledger_path, resume=self.resume)
        except Exception as e:  # LedgerError, model load errors, quoter build errors: one clear line
            raise StartupError(f"{type(e).__name__}: {e}") from None
        self.runtime.errors_total = lambda: sum(self.parser.errors.values()) if self.parser else 0

    async def _start_ops(self) -> None:
        from daemon.shell_ops import AppOps

        self.ops = AppOps(self.s, self)
        try:
            port = await self.ops.start()
        except OSError as e:
            self.ops = None
            raise StartupError(f"cannot serve metrics on {self.s.ops.metrics_host}:{self.s.ops.metrics_port}: {e.strerror}") from None
        self.metrics_port = port

    async def _shutdown(self) -> None:
        # 1. freeze the feed, 2. stop quoting and cancel paper orders, 3. flush the ledger,
        # 4. close sockets.
        if self.stream is not None:
            self.stream.halt()
        if self.runtime is not None:
            try:
                self.runtime.stop(reason="stop")
            except Exception as e:  # pragma: no cover - must not block the exit
                log.error("runtime_stop_failed", error=str(e))
        if self.stream is not None:
            await self.stream.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await asyncio.wait_for(t, 2.0)
            except (asyncio.CancelledError, asyncio.TimeoutError, Exception):
                pass
        if self.runtime is not None:
            self.runtime.close()
        if self.recorder is not None:
            self.recorder.close()
        if self.ops is not None:
            await self.ops.stop()
        log.info("stopped", exit_code=self.exit_code)

    # -- event plumbing ------------------------------------------------------------------------

    def _on_events(self, events: list) -> None:
        engine = self.engine
        assert engine is not None
        if self.ops is not None:
            self.ops.before(events)
        engine.on_events(events)
        if self.ops is not None:
            self.ops.after(events)
        if engine.out:
            self._drain()

    def _on_state(self, state: str, reason: str) -> None:
        assert self.engine is not None
        if state == "connected":
            self._resubscribing.clear()
        log.info("stream_state", state=state, reason=reason[:200])
        now = time.time_ns()
        self.engine.on_event(StreamState(state, (), reason, now // 1_000_000, now))
        self._drain()
        if self.ops is not None:
            self.ops.on_stream_state(state, reason)

    def _drain(self) -> None:
        assert self.engine is not None
        for act in self.engine.drain():
            t = type(act)
            if t is BookStateChanged:
                log.info("book_state", symbol=act.symbol, topic=act.topic, old=act.old, new=act.new, reason=act.reason)
                if self.ops is not None:
                    self.ops.on_book_state(act)
            elif t is Resubscribe:
                topics = [x for x in act.topics if x not in self._resubscribing]
                if topics and self.stream is not None:
                    self._resubscribing.update(topics)
                    log.warning("resync", topics=topics, reason=act.reason)
                    asyncio.get_running_loop().create_task(self._resubscribe(topics))
            elif self.runtime is not None:
                self.runtime.on_action(act)
        if not self.ready and self.engine.all_live():
            self.ready = True
            log.info("ready", symbols=list(self.engine.symbols))
            if self.ops is not None:
                self.ops.on_ready()
        elif self.ready and not self.engine.all_live():
            self.ready = False

    async def _resubscribe(self, topics: list[str]) -> None:
        try:
            assert self.stream is not None
            await self.stream.resubscribe(topics)
        finally:
            # allow another resubscribe if this one does not bring a snapshot
            await asyncio.sleep(1.0)
            self._resubscribing.difference_update(topics)

    async def _timer(self) -> None:
        assert self.engine is not None
        ticks = 0
        while True:
            await asyncio.sleep(self.TIMER_MS / 1000)
            now = time.time_ns()
            self.engine.on_event(Timer(now // 1_000_000, now))
            if self.engine.out:
                self._drain()
            ticks += 1
            if ticks % 10 == 0:
                if self.recorder is not None:
                    self.recorder.flush()
                if self.runtime is not None:
                    self.runtime.poll()

    async def _status(self) -> None:
        assert self.engine is not None
        while True:
            await asyncio.sleep(self.s.ops.status_interval_s)
            st = self.status()
            log.info("status", **st)
            if self.status_printer is not None:
                self.status_printer(st)
            if self.ops is not None:
                self.ops.on_status(st)

    def status(self) -> dict[str, Any]:
        assert self.engine is not None
        syms = {}
        for sym, sc in self.engine.symbols.items():
            b = sc.book
            px = sc.inst.price.to_str
            syms[sym] = {
                "book": b.state.name,
                "bid": px(b.best_bid) if b.best_bid is not None else None,
                "ask": px(b.best_ask) if b.best_ask is not None else None,
                "trades": sc.trades,
            }
            if self.runtime is not None:
                syms[sym].update(self.runtime.symbol_status(sym))
        return {
            "symbols": syms,
            "frames": dict(self.parser.frames) if self.parser else {},
            "parse_errors": dict(self.parser.errors) if self.parser else {},
            "reconnects": self.stream.stats["reconnects"] if self.stream else 0,
            "resyncs": self.engine.counts["resync"],
        }
