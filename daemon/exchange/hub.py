"""The websocket half of the embedded exchange: Bybit V5's public stream for every connected client.

:class:`WsHub` serves ``WS_PATHS`` (``/v5/public/spot`` acks a subscribe with ``ret_msg
"subscribe"`` as Bybit does), answers ``ping``/``subscribe``/``unsubscribe`` and publishes frames to
the subscribers of their topic. Each connection (:class:`_Conn`) has two ordered outgoing queues
drained by its own writer task, so a slow client never delays the others: control frames (pongs,
acks) go out ahead of any queued data, so a client's ping/pong stays healthy while the replay floods
it at ``speed 0`` (only what already left the queue, at most :data:`SEND_BUFFER` bytes in the socket
buffers, is ahead of a pong). An unsubscribe that took effect is acked in order, behind the queued
data, so no data of the topic follows its ack. Backpressure, by the
replay ``speed``: with ``speed == 0`` a data frame waits until the connection's queue is below
``queue_high`` frames (the replay runs as fast as the clients read); with ``speed > 0`` a
connection whose queue reaches ``max_queue`` frames is dropped as a slow consumer (as Bybit does).

Faults are carried out here as :class:`FaultState` decides them: ``drop`` (abort the TCP
connection, no close frame; ``drop_after`` counts data frames sent per connection), ``reject``
(refuse a subscription) and pongs withheld during a stall.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import defaultdict, deque
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from daemon.exchange.fault_state import FaultState
from daemon.exchange.faults import TextBytes
from daemon.exchange.market import Market
from daemon.logging import get_logger

log = get_logger("daemon.exchange")

WS_PATHS = ("/v5/public/linear", "/v5/public/spot", "/v5/public/inverse")
#: bytes of data a connection may have written but the client not yet read (kernel send buffer, and
#: the transport's buffer above it). Without a cap Linux grows the send buffer to MBs on loopback,
#: and a pong queued behind thousands of data frames there reaches a slow reader seconds late.
SEND_BUFFER = 32 * 1024


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _cap_send_buffer(request: web.Request) -> None:
    """Bound what a connection holds in flight to :data:`SEND_BUFFER` bytes, so that the writer, and
    with it the control-before-data order, is what decides when a pong goes out."""
    tr = request.transport
    if tr is None:
        return
    sock = tr.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER // 2)  # Linux doubles it
        except OSError:  # pragma: no cover - not a TCP socket
            pass
    tr.set_write_buffer_limits(high=SEND_BUFFER // 2)


class _Conn:
    """One websocket client: its topics and its outgoing queues (control ``ctl`` ahead of data ``q``)
    drained by a writer task."""

    __slots__ = ("ws", "request", "id", "spot", "topics", "q", "ctl", "room", "has_data", "data_sent", "closed",
                 "task", "dropped")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, spot: bool) -> None:
        self.ws = ws
        self.request = request
        self.id = uuid.uuid4().hex[:20] + "-" + uuid.uuid4().hex[:5]
        self.spot = spot
        self.topics: set[str] = set()
        self.q: deque[tuple[str | bytes, bool]] = deque()  #: data frames (bounded by the backpressure)
        self.ctl: deque[str] = deque()  #: control frames: sent before any queued data
        self.room = asyncio.Event()
        self.room.set()
        self.has_data = asyncio.Event()
        self.data_sent = 0
        self.closed = False
        self.dropped = False
        self.task: asyncio.Task | None = None

    def abort(self) -> None:
        """Drop the TCP connection without a websocket close frame."""
        self.closed = True
        tr = self.request.transport
        if tr is not None:
            tr.abort()


class WsHub:
    """All websocket connections, their subscriptions and outgoing queues (see the module docstring).

    ``market`` validates topics and gives the snapshot a new subscriber gets first; ``max_args`` caps
    the topics of one (un)subscribe request (``"args size >N"``).
    """

    def __init__(self, market: Market, faults: FaultState, *, speed: float, max_args: int, queue_high: int,
                 max_queue: int) -> None:
        self.market = market
        self.faults = faults
        self.speed = speed
        self.max_args = max_args
        self.queue_high = queue_high
        self.max_queue = max_queue
        self._subs: dict[str, set[_Conn]] = defaultdict(set)
        self._conns: set[_Conn] = set()
        self._subscribed = asyncio.Event()  #: set by every subscribe that took effect

    @property
    def connections(self) -> int:
        return len(self._conns)

    def has_listeners(self) -> bool:
        """Is any open connection subscribed to anything?"""
        return any(c.topics and not c.closed for c in self._conns)

    async def wait_subscription(self) -> None:
        """Wait for the next subscribe that takes effect (on any connection)."""
        self._subscribed.clear()
        await self._subscribed.wait()

    def has_subscribers(self, topic: str) -> bool:
        return bool(self._subs.get(topic))

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Queue a data frame for every subscriber of ``topic`` (waits for room with ``speed == 0``)."""
        text = _dumps(payload)
        for conn in list(self._subs.get(topic, ())):
            await self._push(conn, text, True)

    async def send_to_listeners(self, frame: str | bytes) -> bool:
        """Queue ``frame`` as a data frame for every connection with a subscription, whatever its
        topics (a malformed frame). False if nobody listens."""
        sent = False
        for conn in list(self._conns):
            if conn.topics and not conn.closed:
                await self._push(conn, frame, True)
                sent = True
        return sent

    def drop_all(self) -> None:
        """The ``drop`` fault on every current connection."""
        for conn in list(self._conns):
            self._drop(conn)

    async def close_all(self) -> None:
        """Close every connection (a close frame, or an abort after 1 s)."""
        for conn in list(self._conns):
            conn.closed = True
            try:
                await asyncio.wait_for(conn.ws.close(), 1.0)
            except Exception:
                conn.abort()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler of ``WS_PATHS``: one client connection, from upgrade to disconnect."""
        ws = web.WebSocketResponse(autoping=True, autoclose=False, heartbeat=None, max_msg_size=1 << 20,
                                   writer_limit=SEND_BUFFER // 2)
        await ws.prepare(request)
        _cap_send_buffer(request)
        conn = _Conn(ws, request, spot=request.path.endswith("/spot"))
        self._conns.add(conn)
        conn.task = asyncio.create_task(self._writer(conn), name=f"ws-writer-{conn.id}")
        log.info("ws_connected", conn_id=conn.id, path=request.path, peer=request.remote)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_client(conn, msg.data)
                elif msg.type == WSMsgType.CLOSE:
                    # stop data at once so our close frame is not queued behind it
                    conn.closed = True
                    conn.q.clear()
                    conn.ctl.clear()
                    self._unsubscribe_all(conn)
                    conn.room.set()
                    self._wake(conn)
                    await ws.close()
                    break
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
        finally:
            conn.closed = True
            conn.room.set()
            self._unsubscribe_all(conn)
            self._conns.discard(conn)
            self._wake(conn)
            if conn.task is not None:
                conn.task.cancel()
            log.info("ws_disconnected", conn_id=conn.id, data_sent=conn.data_sent, dropped=conn.dropped)
        return ws

    async def _push(self, conn: _Conn, text: str | bytes, data: bool) -> None:
        if conn.closed:
            return
        if data and self.speed == 0:
            while len(conn.q) >= self.queue_high and not conn.closed:
                conn.room.clear()
                await conn.room.wait()
            if conn.closed:
                return
        elif data and len(conn.q) >= self.max_queue:
            log.warning("ws_slow_consumer_dropped", conn_id=conn.id, queued=len(conn.q))
            self._drop(conn, fault=False)
            return
        conn.q.append((text, data))
        conn.has_data.set()

    @staticmethod
    def _wake(conn: _Conn) -> None:
        conn.has_data.set()

    def _drop(self, conn: _Conn, fault: bool = True) -> None:
        if conn.closed:
            return
        conn.dropped = True
        conn.abort()
        conn.room.set()
        self._unsubscribe_all(conn)
        if fault:
            self.faults.dropped(conn.id, conn.data_sent)

    async def _writer(self, conn: _Conn) -> None:
        try:
            while not conn.closed:
                if conn.ctl:
                    await conn.ws.send_str(conn.ctl.popleft())
                    continue
                if not conn.q:
                    conn.has_data.clear()
                    await conn.has_data.wait()
                    continue
                text, data = conn.q.popleft()
                if len(conn.q) < self.queue_high:
                    conn.room.set()
                if type(text) is str:
                    await conn.ws.send_str(text)
                elif isinstance(text, TextBytes):  # a text frame that is not UTF-8 (fault injection)
                    await conn.ws.send_frame(text, WSMsgType.TEXT)
                else:
                    await conn.ws.send_bytes(text)
                if data:
                    conn.data_sent += 1
                    if self.faults.drop_due(conn.data_sent):
                        self._drop(conn)
                        return
        except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
            conn.closed = True
            conn.room.set()
        except Exception as exc:  # pragma: no cover - defensive
            conn.closed = True
            conn.room.set()
            log.warning("ws_writer_error", conn_id=conn.id, error=repr(exc))

    def _unsubscribe_all(self, conn: _Conn) -> None:
        for t in conn.topics:
            s = self._subs.get(t)
            if s is not None:
                s.discard(conn)
        conn.topics = set()

    def _control(self, conn: _Conn, obj: dict[str, Any], in_order: bool = False) -> None:
        """Queue a control frame (pong, ack) ahead of the connection's queued data, or behind it
        (``in_order``: an unsubscribe ack, after which no data of the topic may arrive)."""
        if in_order:
            conn.q.append((_dumps(obj), False))
        else:
            conn.ctl.append(_dumps(obj))
        self._wake(conn)

    def _on_client(self, conn: _Conn, text: str) -> None:
        try:
            req = orjson.loads(text)
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError:
            self._control(conn, {"success": False, "ret_msg": "error:request not in JSON object format",
                                 "conn_id": conn.id, "req_id": "", "op": ""})
            return
        op = req.get("op")
        req_id = req.get("req_id", "")
        req_id = req_id if isinstance(req_id, str) else str(req_id)
        if op == "ping":
            if self.faults.pongs_withheld():
                return
            pong: dict[str, Any] = {"success": True, "ret_msg": "pong", "conn_id": conn.id, "req_id": req_id,
                                    "op": "ping"}
            self._control(conn, pong)
        elif op in ("subscribe", "unsubscribe"):
            self._subscription(conn, op, req_id, req.get("args"))
        else:
            self._control(conn, {"success": False, "ret_msg": f"error:handler not found,op:{op}",
                                 "conn_id": conn.id, "req_id": req_id, "op": op if isinstance(op, str) else ""})

    def _subscription(self, conn: _Conn, op: str, req_id: str, args: Any) -> None:
        ack = {"success": True, "ret_msg": "subscribe" if (conn.spot and op == "subscribe") else "",
               "conn_id": conn.id, "req_id": req_id, "op": op}
        if not isinstance(args, list) or not args:
            ack.update(success=False, ret_msg="error:args must be a non-empty list")
            self._control(conn, ack)
            return
        if len(args) > self.max_args:
            ack.update(success=False, ret_msg=f"args size >{self.max_args}")
            self._control(conn, ack)
            return
        ok: list[str] = []
        fail: str | None = None
        for topic in args:
            if not isinstance(topic, str):
                fail = fail or f"error:handler not found,topic:{topic}"
                continue
            if op == "subscribe":
                if self.faults.rejects(topic):
                    fail = fail or f"error:handler not found,topic:{topic}"
                elif not self.market.valid_topic(topic):
                    fail = fail or f"error:handler not found,topic:{topic}"
                elif topic in conn.topics or topic in ok:
                    fail = fail or f"error:already subscribed,topic:{topic}"
                else:
                    ok.append(topic)
            else:
                if topic in conn.topics:
                    ok.append(topic)
                else:
                    fail = fail or f"error:not subscribed,topic:{topic}"
        if fail:
            ack.update(success=False, ret_msg=fail)
        self._control(conn, ack, in_order=(op == "unsubscribe" and bool(ok)))
        for topic in ok:  # valid topics of a partly failed request still take effect
            if op == "subscribe":
                conn.topics.add(topic)
                self._subs[topic].add(conn)
                snap = self.market.subscribe_snapshot(topic)
                if snap is not None:
                    conn.q.append((_dumps(snap), True))
            else:
                conn.topics.discard(topic)
                self._subs[topic].discard(conn)
        self._wake(conn)
        if ok and op == "subscribe":
            self._subscribed.set()
        log.info("ws_" + op, conn_id=conn.id, req_id=req_id, ok=ok, error=fail)
