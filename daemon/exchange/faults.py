"""Fault injection for the embedded exchange: a declarative :class:`FaultPlan` (periodic or
one-shot faults set at start, e.g. from CLI flags) plus malformed-frame builders. The state of the
faults during a run (what is due, what was injected) is :mod:`daemon.exchange.fault_state`.

Every injected fault increments ``ExchangeServer.faults_injected[kind]`` with one of the kinds in
:data:`FAULT_KINDS`. Counting rules (all counts are of frames actually sent on the wire, i.e. topics
with at least one subscriber):

* ``gap``: a book **delta** is not sent to anyone (the exchange's own book still applies it and the
  topic's ``u`` still advances), so every subscriber sees the next ``u`` jump by 2.
* ``crossed``: a real book delta goes out with one extra bid level at the current best ask price,
  so the client's book crosses (the exchange's own book stays correct).
* ``malformed``: an *extra* frame inserted before a data frame; it consumes no ``u``.
* ``drop``: the TCP connection is aborted without a websocket close frame (client sees 1006).
* ``stall``: the replay clock stops for S seconds: no data frames on any connection (sockets stay
  open; pongs continue unless ``stall_pongs=False``). Book ``u`` stays contiguous across a stall.
* ``rest_*``: the next N REST requests get the fault instead of (``slow``: before) the answer.
* ``reject``: a subscription to a listed topic is refused with ``success:false``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

FAULT_KINDS = (
    "drop", "gap", "crossed", "malformed", "stall",
    "rest_10006", "rest_429", "rest_403", "rest_500", "rest_slow", "reject",
)

#: malformed frame kinds, cycled in this order by ``malformed_every``
MALFORMED_KINDS = (
    "invalid_json",   # not JSON at all (a bare word where a value should be)
    "truncated",      # a real trade frame cut in the middle
    "array",          # valid JSON, but an array instead of an object
    "unknown_topic",  # a well-formed data frame on a topic nobody subscribed to ("liquidation.SYM")
    "missing_data",   # a publicTrade frame without "data"
    "missing_field",  # an orderbook.50 delta whose data has no "u"
    "off_grid",       # a publicTrade frame with an off-grid price ("61800.123" on a 0.10 grid)
    "invalid_utf8",   # a publicTrade frame whose trade id holds bytes that are not UTF-8, as a *text* frame
    "binary",         # a binary websocket frame of bytes that are neither UTF-8 nor JSON
    "deep_nesting",   # a publicTrade frame whose data nests 2,000 arrays deep (a decoder's recursion limit)
    "huge_int",       # an orderbook.50 delta whose seq is 2**63 (past every signed 64-bit field)
)


class TextBytes(bytes):
    """The payload of a *text* websocket frame given as raw bytes, sent without UTF-8 validation.

    RFC 6455 says a text frame is UTF-8 and a peer may fail the connection (1007) otherwise; a
    hostile or broken network sends one anyway, so the exchange can too. Plain ``bytes`` from
    :func:`malformed_frame` go out as a binary frame, ``str`` as an ordinary text frame."""

REST_FAULTS = ("10006", "429", "403", "500", "slow")


@dataclass
class FaultPlan:
    """Faults to inject, all off by default. ``None`` disables a periodic fault."""

    #: abort each websocket connection after it was sent N data frames (``drop_repeat=False``: only the first)
    drop_after: int | None = None
    drop_repeat: bool = True
    #: withhold every Nth book delta (counted over all book topics with subscribers)
    gap_every: int | None = None
    #: make the (N+1)th book delta crossed, once
    crossed_after: int | None = None
    #: insert a malformed frame before every Nth broadcast recording frame, cycling ``malformed_kinds``
    malformed_every: int | None = None
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS
    #: stall the replay for ``stall_seconds`` after N recording frames were broadcast, once
    stall_after: int | None = None
    stall_seconds: float = 5.0
    stall_pongs: bool = True  #: keep answering pings during a stall
    #: REST fault for the first ``rest_fault_count`` requests: one of REST_FAULTS
    rest_fault: str | None = None
    rest_fault_count: int = 1
    rest_slow_seconds: float = 2.0
    #: subscriptions to these topics get success:false
    reject_topics: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for name in ("drop_after", "gap_every", "malformed_every"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        for name in ("crossed_after", "stall_after"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        if self.rest_fault is not None and str(self.rest_fault) not in REST_FAULTS:
            raise ValueError(f"rest_fault must be one of {REST_FAULTS}, got {self.rest_fault!r}")
        bad = [k for k in self.malformed_kinds if k not in MALFORMED_KINDS]
        if bad or not self.malformed_kinds:
            raise ValueError(f"unknown malformed kinds {bad}; choose from {MALFORMED_KINDS}")
        if self.stall_seconds < 0 or self.rest_slow_seconds < 0:
            raise ValueError("stall_seconds and rest_slow_seconds must be >= 0")
        self.reject_topics = set(self.reject_topics)


def malformed_frame(kind: str, symbol: str, ts: int, seq: int, price: str, n: int) -> str | bytes:
    """One malformed frame of ``kind`` (see :data:`MALFORMED_KINDS`). ``n`` makes ids unique.

    ``str``: a text frame; :class:`TextBytes`: a text frame that is not UTF-8; ``bytes``: a binary frame."""
    trade: dict[str, Any] = {"T": ts, "s": symbol, "S": "Buy", "v": "0.001", "p": price, "L": "ZeroPlusTick",
                             "i": f"malformed-{n}", "BT": False, "RPI": False, "seq": seq}
    good = {"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": ts, "data": [trade]}
    if kind == "invalid_json":
        return '{"topic":"orderbook.50.%s","type":delta,"ts":%d}' % (symbol, ts)
    if kind == "truncated":
        s = orjson.dumps(good).decode()
        return s[: len(s) // 2]
    if kind == "array":
        return orjson.dumps([good]).decode()
    if kind == "unknown_topic":
        return orjson.dumps({"topic": f"liquidation.{symbol}", "type": "snapshot", "ts": ts,
                             "data": {"updatedTime": ts, "symbol": symbol, "side": "Buy", "size": "0.001",
                                      "price": price}}).decode()
    if kind == "missing_data":
        return orjson.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": ts}).decode()
    if kind == "missing_field":
        return orjson.dumps({"topic": f"orderbook.50.{symbol}", "type": "delta", "ts": ts,
                             "data": {"s": symbol, "b": [], "a": [], "seq": seq}, "cts": ts}).decode()
    if kind == "off_grid":
        base = price.split(".")[0]
        trade["p"] = f"{base}.123"
        return orjson.dumps(good).decode()
    if kind == "invalid_utf8":
        marker = b"malformed-%d" % n
        return TextBytes(orjson.dumps(good).replace(marker, marker + b"\xff\xfe\xc3"))
    if kind == "binary":
        return b"\x00\xff\xfe\x80binary-%d\xc0\xaf" % n
    if kind == "deep_nesting":
        return '{"topic":"publicTrade.%s","type":"snapshot","ts":%d,"data":%s%s}' % (symbol, ts, "[" * 2000, "]" * 2000)
    if kind == "huge_int":
        return orjson.dumps({"topic": f"orderbook.50.{symbol}", "type": "delta", "ts": ts, "cts": ts,
                             "data": {"s": symbol, "b": [], "a": [], "u": 1, "seq": 2**63}}).decode()
    raise ValueError(f"unknown malformed kind {kind!r}")
