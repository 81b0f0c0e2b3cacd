"""Bybit V5 public websocket client (``websockets``): one connection per category.

Behaviour and limits (defaults in :class:`daemon.config.WsConfig`):

* subscribes the configured topics in requests of at most ``args_per_request`` (10) args, each with
  its own ``req_id``; every ack is checked within ``subscribe_timeout_s``; a rejected topic is a
  :class:`SubscriptionRejected` naming it (fatal: it is a configuration error, not a network blip);
* sends ``{"op":"ping"}`` every ``ping_interval_s`` (20 s); no pong within ``pong_timeout_s`` (10 s),
  or no frame at all for ``silence_s`` (30 s), closes the connection and reconnects;
* reconnects with full-jitter exponential backoff (``reconnect_base_s`` doubling up to
  ``reconnect_max_s``), resubscribes, and the books rebuild from the fresh snapshots;
* a frame larger than ``max_frame_bytes`` is refused by the websocket layer (close 1009) and counted
  as ``too_large``; every other bad frame (malformed JSON, invalid UTF-8 in a text or binary frame,
  nesting too deep, unknown topics, missing fields, out-of-range values) is counted per kind by the
  :class:`~daemon.bybit.messages.FrameParser` and logged with a sample, at most a few lines per
  10 s per kind: never a crash, never a reconnect. Frames are read undecoded (``recv(decode=False)``)
  so UTF-8 validity is the parser's to judge, like everything else about a frame.

The client only moves bytes: parsed events go to ``on_events(events)``, lifecycle news to
``on_state(state, reason)``. ``resubscribe(topics)`` asks for fresh snapshots on the live socket
(the engine calls it when a book detects a gap or a crossed book).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidURI

from daemon.backoff import retry_delay
from daemon.bybit.messages import Control, FrameError, FrameParser
from daemon.config import WsConfig
from daemon.logging import RateLimited, get_logger

log = get_logger("mmd.ws")


class SubscriptionRejected(RuntimeError):
    """Bybit answered ``success: false`` to a subscribe request."""

    def __init__(self, topics: list[str], ret_msg: str) -> None:
        super().__init__(f"subscription rejected for {', '.join(topics)}: {ret_msg}")
        self.topics = topics
        self.ret_msg = ret_msg


class PublicStream:
    """One public websocket connection serving ``topics``; reconnects until :meth:`stop`."""

    def __init__(
        self,
        url: str,
        topics: list[str],
        parser: FrameParser,
        on_events: Callable[[list], None],
        on_state: Callable[[str, str], None] | None = None,
        cfg: WsConfig | None = None,
        *,
        rng: random.Random | None = None,
        on_raw: Callable[[int, bytes | str], None] | None = None,
    ) -> None:
        self.url = url
        self.topics = list(dict.fromkeys(topics))
        self.parser = parser
        self.on_events = on_events
        self.on_state = on_state or (lambda state, reason: None)
        self.on_raw = on_raw
        self.cfg = cfg or WsConfig()
        self._rng = rng or random.Random()
        self._ws: ClientConnection | None = None
        self._stopping = False
        self._req_ids = itertools.count(1)
        self._pending: dict[str, tuple[asyncio.Future, list[str]]] = {}
        self._last_frame = time.monotonic()
        self._ping_sent_at: float | None = None
        self._close_reason = ""
        self._log_limit = RateLimited(n=3, per_s=10.0)
        self.stats: Counter[str] = Counter()
        self.connected = asyncio.Event()
        self.fatal: BaseException | None = None

    # -- public --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe and read until :meth:`stop`. Raises :class:`SubscriptionRejected`."""
        attempt = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._session()
            except SubscriptionRejected as e:
                self.fatal = e
                log.error("subscribe_rejected", topics=e.topics, ret_msg=e.ret_msg)
                self.on_state("disconnected", str(e))
                raise
            except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed, asyncio.TimeoutError) as e:
                reason = self._close_reason or f"{type(e).__name__}: {e}"
                self._close_reason = ""
                if self._stopping:
                    break
                self.stats["reconnects"] += 1
                self.on_state("disconnected", reason)
                if time.monotonic() - started > 60:
                    attempt = 0  # a session that lasted resets the backoff
                delay = retry_delay(self._rng, attempt, self.cfg.reconnect_base_s, self.cfg.reconnect_max_s)
                attempt += 1
                log.warning("ws_reconnect", reason=reason[:200], attempt=attempt, delay_s=round(delay, 3))
                await asyncio.sleep(delay)
        self.on_state("disconnected", "stopped")

    def halt(self) -> None:
        """Stop delivering frames now (synchronous): nothing reaches ``on_raw``/``on_events``
        after this call, so a shutdown can cancel orders on a frozen view of the market."""
        self._stopping = True

    async def stop(self) -> None:
        self._stopping = True
        ws = self._ws
        if ws is not None:
            await ws.close()

    async def resubscribe(self, topics: list[str]) -> None:
        """Unsubscribe and subscribe ``topics`` again on the live socket: Bybit then sends a
        fresh snapshot. If the socket is down, the reconnect will resubscribe anyway."""
        ws = self._ws
        if ws is None:
            return
        self.stats["resubscribes"] += 1
        try:
            await ws.send(_dumps({"op": "unsubscribe", "req_id": f"u{next(self._req_ids)}", "args": topics}))
            await self._subscribe(ws, topics)
        except ConnectionClosed:
            pass  # the reader sees the close and reconnects

    # -- one connection ------------------------------------------------------------------------

    async def _session(self) -> None:
        self.stats["connects"] += 1
        async with connect(
            self.url,
            max_size=self.cfg.max_frame_bytes,
            ping_interval=None,  # Bybit wants the application-level {"op":"ping"}
            open_timeout=self.cfg.subscribe_timeout_s,
            close_timeout=2,
            compression=None,
        ) as ws:
            self._ws = ws
            self._last_frame = time.monotonic()
            self._ping_sent_at = None
            reader = asyncio.create_task(self._read(ws))
            keeper = asyncio.create_task(self._keepalive(ws))
            try:
                self.on_state("connected", self.url)
                sub = asyncio.create_task(self._subscribe(ws, self.topics))
                await asyncio.wait({sub, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not sub.done():
                    # the reader ended first: a closed socket (reconnect) or a bug downstream (raise it)
                    sub.cancel()
                    reader.result()
                    raise ConnectionResetError(self._close_reason or "connection closed during subscribe")
                sub.result()
                self.connected.set()
                self.on_state("subscribed", ",".join(self.topics))
                await reader
            finally:
                self.connected.clear()
                keeper.cancel()
                reader.cancel()
                for fut, _ in self._pending.values():
                    if not fut.done():
                        fut.cancel()
                self._pending.clear()
                self._ws = None
            # the reader returned: the connection closed
            raise ConnectionResetError(self._close_reason or "connection closed")

    async def _subscribe(self, ws: ClientConnection, topics: list[str]) -> None:
        n = self.cfg.args_per_request
        waits = []
        for i in range(0, len(topics), n):
            batch = topics[i : i + n]
            req_id = f"s{next(self._req_ids)}"
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            self._pending[req_id] = (fut, batch)
            await ws.send(_dumps({"op": "subscribe", "req_id": req_id, "args": batch}))
            waits.append((req_id, fut, batch))
        for req_id, fut, batch in waits:
            try:
                ctl: Control = await asyncio.wait_for(fut, self.cfg.subscribe_timeout_s)
            except asyncio.TimeoutError:
                self._close_reason = f"no subscribe ack for {batch} within {self.cfg.subscribe_timeout_s} s"
                raise
            if not ctl.success:
                raise SubscriptionRejected(batch, ctl.ret_msg)

    async def _read(self, ws: ClientConnection) -> None:
        parse = self.parser.parse
        on_events = self.on_events
        on_raw = self.on_raw
        recv = ws.recv
        try:
            while True:
                # decode=False: text frames arrive as their UTF-8 bytes, undecoded. The parser reads
                # bytes directly (no str copy) and owns validation: a frame that is not valid UTF-8
                # is one counted ``malformed_json`` error, not a 1007 close of the whole connection.
                raw = await recv(decode=False)
                if self._stopping:
                    break
                now = time.monotonic()
                self._last_frame = now
                recv_ns = time.time_ns()
                if on_raw is not None:
                    on_raw(recv_ns, raw)
                try:
                    out = parse(raw, recv_ns)
                except FrameError as e:
                    self._bad_frame(e)
                    continue
                if type(out) is list:
                    on_events(out)
                else:
                    self._control(out)
            self._fail_pending()
        except ConnectionClosedOK:  # a clean close ends the session as the end of iteration did
            self._fail_pending()
        except ConnectionClosed as e:
            self._fail_pending()
            if e.rcvd is not None and e.rcvd.code == 1009 or (e.sent is not None and e.sent.code == 1009):
                self.parser.errors["too_large"] += 1
                self._close_reason = self._close_reason or f"frame larger than {self.cfg.max_frame_bytes} bytes"
            elif not self._close_reason:
                self._close_reason = f"connection closed: {e}"

    def _fail_pending(self) -> None:
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionResetError("connection closed before the subscribe ack"))
        self._pending.clear()

    def _control(self, ctl: Control) -> None:
        if ctl.is_pong:
            self._ping_sent_at = None
            self.stats["pongs"] += 1
            return
        pend = self._pending.pop(ctl.req_id, None)
        if pend is not None:
            fut, _ = pend
            if not fut.done():
                fut.set_result(ctl)
            return
        if ctl.op == "unsubscribe":
            return
        if not ctl.success:
            # An unmatched failure (no req_id echoed): fail every pending subscribe.
            for fut, batch in self._pending.values():
                if not fut.done():
                    fut.set_result(ctl)
            self._pending.clear()
            log.error("ws_error_reply", op=ctl.op, ret_msg=ctl.ret_msg)

    def _bad_frame(self, e: FrameError) -> None:
        ok, suppressed = self._log_limit.allow(e.kind)
        if ok:
            log.warning("bad_frame", kind=e.kind, detail=e.detail[:200], sample=e.sample, suppressed=suppressed,
                        total=self.parser.errors[e.kind])

    async def _keepalive(self, ws: ClientConnection) -> None:
        cfg = self.cfg
        next_ping = time.monotonic() + cfg.ping_interval_s
        step = min(1.0, cfg.pong_timeout_s / 4, cfg.silence_s / 4, cfg.ping_interval_s / 2)
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            if self._ping_sent_at is not None and now - self._ping_sent_at > cfg.pong_timeout_s:
                self._close_reason = f"no pong within {cfg.pong_timeout_s} s"
                self.stats["pong_timeouts"] += 1
                await _abort(ws)
                return
            if now - self._last_frame > cfg.silence_s:
                self._close_reason = f"no frame for {cfg.silence_s} s"
                self.stats["silences"] += 1
                await _abort(ws)
                return
            if now >= next_ping:
                next_ping = now + cfg.ping_interval_s
                if self._ping_sent_at is None:
                    self._ping_sent_at = now
                try:
                    await ws.send(_dumps({"op": "ping", "req_id": f"p{next(self._req_ids)}"}))
                    self.stats["pings"] += 1
                except ConnectionClosed:
                    return


async def _abort(ws: ClientConnection) -> None:
    """Close without waiting on a peer that may be stalled."""
    try:
        await asyncio.wait_for(ws.close(code=1001, reason="keepalive"), timeout=1.0)
    except (asyncio.TimeoutError, ConnectionClosed):
        pass
    transport = getattr(ws, "transport", None)
    if transport is not None:
        transport.abort()


def _dumps(obj: object) -> str:
    import orjson

    return orjson.dumps(obj).decode()


def topics_for(symbols: list[str], depth: int, extra: list[str], kline_interval: str = "1") -> list[str]:
    """Topic strings for ``symbols``: ``orderbook.{depth}.S`` plus each of ``extra``
    (``publicTrade``, ``tickers``, ``kline`` -> ``kline.{interval}.S``, ``orderbook.1``)."""
    out = []
    for s in symbols:
        out.append(f"orderbook.{depth}.{s}")
        for t in extra:
            if t == "kline":
                out.append(f"kline.{kline_interval}.{s}")
            elif t == "orderbook.1":
                if depth != 1:
                    out.append(f"orderbook.1.{s}")
            else:
                out.append(f"{t}.{s}")
    return out


__all__ = ["PublicStream", "SubscriptionRejected", "topics_for", "websockets"]
