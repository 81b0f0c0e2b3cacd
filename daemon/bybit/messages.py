"""Bybit V5 public websocket frames -> typed core events (sans-I/O, no clock).

:class:`FrameParser` takes the raw text/bytes of one frame and its local receive time and returns
either a list of core events (:mod:`daemon.core.events`) for a data frame, or a :class:`Control`
for an ack / pong / error reply. Anything wrong with a frame raises :class:`FrameError` whose
``kind`` is one of :data:`ERROR_KINDS`; the parser also counts errors per kind in
:attr:`FrameParser.errors` so the shell, replay and the exchange tests share one set of counters.

Decoding, fastest first:

1. orderbook and publicTrade frames: the C scanner (``daemon/core/_fastbook.c``, when built) reads
   a plain, valid frame of a configured symbol straight into a :class:`BookUpdate` whose sides are
   packed int levels, or into :class:`Trade` events; it declines (returns None) anything else,
   which then takes the paths below;
2. data frames: one ``msgspec`` decode into a struct chosen by the ``topic`` value (a tagged union);
3. everything the union rejects: a loose envelope decode that recognises control replies or
   classifies the problem into an error kind.

Prices and sizes go straight from Bybit's decimal strings to integer ticks/lots (the C scanner's
own exact conversion, or the instrument's cached grid); both refuse off-grid values and values of
2**62 steps or more.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Union

import msgspec

from daemon.core.events import BUY, SELL, BookUpdate, Kline, TickerUpdate, Trade
from daemon.core.book import fastbook
from daemon.core.instrument import VALUE_LIMIT, Instrument

#: Default cap on one frame's size in bytes (a full 1000-level snapshot is ~60 KB).
MAX_FRAME_BYTES = 4 * 1024 * 1024

ERROR_KINDS = (
    "too_large",
    "malformed_json",
    "not_an_object",
    "unknown_topic",
    "unknown_symbol",
    "missing_field",
    "bad_value",
)


class FrameError(ValueError):
    """A frame we cannot use. ``kind`` names the class of problem (see :data:`ERROR_KINDS`);
    ``sample`` is the start of the offending frame, for rate-limited logging."""

    def __init__(self, kind: str, detail: str, sample: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.sample = sample


class Control(msgspec.Struct):
    """A control frame: subscribe/unsubscribe ack, pong, or an error reply."""

    op: str
    success: bool
    ret_msg: str
    req_id: str
    conn_id: str
    is_pong: bool
    fail_topics: list


# --- wire shapes ------------------------------------------------------------------------------

#: An id, sequence number or epoch-ms timestamp: the books and the engine keep these in signed 64-bit
#: integers, so a wire value outside [-2**63, 2**63 - 1] is a ``bad_value`` here (the C scanner already
#: declines numbers over 18 digits), never an ``OverflowError`` further down.
I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Envelope(msgspec.Struct):
    topic: str | None = None
    type: str | None = None
    ts: int = 0
    cts: int = 0
    data: msgspec.Raw = msgspec.Raw(b"")
    success: bool | None = None
    ret_msg: str | None = None
    op: str | None = None
    req_id: str | None = None
    conn_id: str | None = None
    args: list | None = None


class _BookData(msgspec.Struct):
    s: str
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    u: I64
    seq: I64 = 0


class _TradeRow(msgspec.Struct):
    T: I64
    s: str
    S: str
    v: str
    p: str
    i: str = ""
    seq: I64 = 0
    BT: bool = False


class _KlineRow(msgspec.Struct):
    start: I64
    end: I64
    interval: str
    open: str
    close: str
    high: str
    low: str
    volume: str
    confirm: bool
    timestamp: I64 = 0


class _CommandData(msgspec.Struct):
    failTopics: list = []
    successTopics: list = []


_env_dec = msgspec.json.Decoder(_Envelope)
_cmd_dec = msgspec.json.Decoder(_CommandData)

_BOOK, _TRADE, _TICKER, _KLINE = 1, 2, 3, 4
_SIDES = {"Buy": BUY, "Sell": SELL}


class _GridCache(dict):
    """``str -> int`` grid cache whose misses parse (``cache[s]`` is one C-level lookup on a hit).

    The miss path inlines the grid's fast case (exactly the grid's decimals, ASCII digits, on the
    grid) and defers everything else to :meth:`Grid._parse` (which raises for bad input)."""

    __slots__ = ("_grid",)

    def __init__(self, grid) -> None:
        super().__init__()
        self._grid = grid

    def __missing__(self, s: str) -> int:
        g = self._grid
        i = s.find(".")
        if i > 0 and len(s) - i - 1 == g.decimals:
            t = s[:i] + s[i + 1 :]
            if t.isdigit() and t.isascii():
                v, r = divmod(int(t), g.units)
                if r or v >= VALUE_LIMIT:
                    v = g._parse(s)  # raises OffGridError / out of range
            else:
                v = g._parse(s)
        else:
            v = g._parse(s)
        if len(self) >= 65536:
            self.clear()
        self[s] = v
        return v


#: Bybit kline intervals (PROTOCOL.md §5); a typed decoder is built for each per symbol.
KLINE_INTERVALS = ("1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M")
BOOK_DEPTHS = (1, 25, 50, 100, 200, 500, 1000)


class FrameParser:
    """Parse frames for the symbols in ``instruments`` (symbol -> :class:`Instrument`).

    ``max_frame_bytes`` bounds one frame (default :data:`MAX_FRAME_BYTES`).

    Fast path: one ``msgspec`` decode of the whole frame into a struct type chosen by the value of
    ``topic`` (a tagged union with one struct per known topic of the configured symbols). Frames
    without a known ``topic`` (acks, pongs, garbage, unknown topics) take the slow path, which
    decodes a loose envelope and classifies the frame.
    """

    def __init__(self, instruments: dict[str, Instrument], max_frame_bytes: int = MAX_FRAME_BYTES):
        self.instruments = instruments
        self.max_frame_bytes = max_frame_bytes
        self.errors: Counter[str] = Counter()
        self._frames: Counter[str] = Counter()  # by topic kind: orderbook, publicTrade, ...
        self._routes: dict[type, tuple] = {}
        #: C scanner for plain orderbook/publicTrade frames (None: pure-Python build or MMD_PURE_PYTHON)
        self._scanner = None
        if fastbook is not None and instruments:
            grids = {s: (i.price.decimals, i.price.units, i.qty.decimals, i.qty.units) for s, i in instruments.items()}
            self._scanner = fastbook.Scanner(grids, BookUpdate, BOOK_DEPTHS, Trade, BUY, SELL)
        self._scan = self._scanner.scan if self._scanner is not None else None
        types = []
        for sym, inst in instruments.items():
            pc = _GridCache(inst.price)
            qc = _GridCache(inst.qty)
            for depth in BOOK_DEPTHS:
                types.append(self._route(f"orderbook.{depth}.{sym}", _BookData, (_BOOK, depth, sym, pc, qc)))
            types.append(self._route(f"publicTrade.{sym}", list[_TradeRow], (_TRADE, 0, sym, pc, qc)))
            types.append(self._route(f"tickers.{sym}", dict[str, str | int | float | bool | None], (_TICKER, 0, sym, pc, qc)))
            for iv in KLINE_INTERVALS:
                types.append(self._route(f"kline.{iv}.{sym}", list[_KlineRow], (_KLINE, 0, sym, pc, qc)))
        self._fast = msgspec.json.Decoder(Union[tuple(types)]) if types else None  # type: ignore[valid-type]

    @property
    def frames(self) -> Counter:
        """Data frames parsed, by topic kind (``orderbook``, ``publicTrade``, ``tickers``, ``kline``)."""
        c = Counter(self._frames)
        sc = self._scanner
        if sc is not None:
            if sc.frames:
                c["orderbook"] += sc.frames
            if sc.trade_frames:
                c["publicTrade"] += sc.trade_frames
        return c

    def _route(self, topic: str, data_type: object, info: tuple) -> type:
        name = "F_" + topic.replace(".", "_")
        t = msgspec.defstruct(
            name,
            [("data", data_type), ("type", str, ""), ("ts", I64, 0), ("cts", I64, 0)],
            tag_field="topic",
            tag=topic,
            kw_only=True,
        )
        self._routes[t] = info
        return t

    # -- entry point ---------------------------------------------------------------------------

    def parse(self, raw: bytes | str, recv_ns: int) -> list | Control:
        """Parse one frame: a list of events for a data frame, a :class:`Control` otherwise.

        Total: for any input (bytes or str, any content, whatever the installed msgspec raises for
        it) the only exception that leaves is :class:`FrameError`, counted in :attr:`errors`.
        Library errors outside the known ones (a new ``DecodeError`` subclass, ``RecursionError``
        from a deeply nested frame, ``OverflowError`` from a huge integer, ...) are classified by
        :func:`_classify`; only ``MemoryError`` and non-``Exception`` signals pass through."""
        try:
            if len(raw) > self.max_frame_bytes:
                raise FrameError("too_large", f"{len(raw)} bytes > cap {self.max_frame_bytes}")
            scan = self._scan
            if scan is not None:
                # C fast path: a plain, valid orderbook / publicTrade frame of a configured symbol ->
                # [BookUpdate] / [Trade, ...]; None for anything else (which the msgspec path below
                # decodes or classifies).
                out = scan(raw, recv_ns)
                if out is not None:
                    return out
            if type(raw) is bytes and not raw.isascii():
                # msgspec validates UTF-8 only in the strings it decodes, not in keys or values it
                # skips: a frame that is not UTF-8 anywhere is corrupt, so refuse it whole.
                raw.decode()  # UnicodeDecodeError -> malformed_json (below)
            try:
                msg = self._fast.decode(raw)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - whatever the decoder raises, the slow path classifies
                return self._slow(raw)
            kind, depth, symbol, pc, qc = self._routes[type(msg)]
            data = msg.data
            if kind == _BOOK:
                self._frames["orderbook"] += 1
                typ = msg.type
                if typ != "snapshot" and typ != "delta":
                    raise FrameError("bad_value", f"orderbook: type {typ!r}")
                if data.s != symbol:
                    raise FrameError("bad_value", f"orderbook: data.s {data.s!r} != topic symbol {symbol!r}")
                return [
                    BookUpdate(
                        symbol, depth, typ == "snapshot",
                        [(pc[p], qc[q]) for p, q in data.b],
                        [(pc[p], qc[q]) for p, q in data.a],
                        data.u, data.seq, msg.ts, msg.cts, recv_ns,
                    )
                ]
            if kind == _TRADE:
                self._frames["publicTrade"] += 1
                out = []
                for r in data:
                    sd = _SIDES.get(r.S)
                    if sd is None:
                        raise FrameError("bad_value", f"publicTrade: side {r.S!r}")
                    if r.s != symbol:
                        raise FrameError("bad_value", f"publicTrade: s {r.s!r} != topic symbol {symbol!r}")
                    out.append(Trade(symbol, sd, pc[r.p], qc[r.v], r.i, r.seq, r.T, recv_ns, r.BT))
                return out
            if kind == _TICKER:
                self._frames["tickers"] += 1
                if data.get("symbol", symbol) != symbol:
                    raise FrameError("bad_value", f"tickers: symbol {data.get('symbol')!r} != {symbol!r}")
                return [TickerUpdate(symbol, msg.type == "snapshot", data, msg.ts, recv_ns)]
            self._frames["kline"] += 1
            return [
                Kline(symbol, r.interval, r.start, r.end, pc[r.open], pc[r.high], pc[r.low], pc[r.close],
                      float(r.volume), r.confirm, msg.ts, recv_ns)
                for r in data
            ]
        except FrameError as e:
            return self._fail(e, raw)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - the contract: FrameError or nothing (see docstring)
            return self._fail(_classify(e), raw)

    def _fail(self, e: FrameError, raw: bytes | str):
        self.errors[e.kind] += 1
        if not e.sample:
            e.sample = _sample(raw)
        raise e

    def _slow(self, raw: bytes | str) -> Control:
        """Frames the fast decoder rejected: control replies, or classify the problem."""
        try:
            env = _env_dec.decode(raw)
        except msgspec.ValidationError as e:
            kind = "not_an_object" if "Expected `object`" in str(e) else "bad_value"
            raise FrameError(kind, str(e)) from None
        except (msgspec.DecodeError, UnicodeError) as e:  # invalid UTF-8: UnicodeDecodeError up to msgspec 0.22
            raise FrameError("malformed_json", str(e)) from None
        topic = env.topic
        if topic is None:
            return self._control(env)
        parts = topic.split(".")
        if parts[0] not in ("orderbook", "publicTrade", "tickers", "kline"):
            raise FrameError("unknown_topic", f"topic {topic!r}")
        if parts[-1] not in self.instruments:
            raise FrameError("unknown_symbol", f"topic {topic!r}: symbol not configured")
        known = any(getattr(t, "__struct_config__").tag == topic for t in self._routes)
        if not known:
            raise FrameError("unknown_topic", f"topic {topic!r}")
        # A known topic that failed typed validation: say which field.
        try:
            self._fast.decode(raw)  # type: ignore[union-attr]
        except msgspec.ValidationError as e:
            text = str(e)
            kind = "missing_field" if "missing required" in text else "bad_value"
            raise FrameError(kind, f"{topic}: {text}") from None
        except (msgspec.DecodeError, UnicodeError) as e:
            raise FrameError("malformed_json", f"{topic}: {e}") from None
        raise FrameError("bad_value", f"{topic}: undecodable")  # pragma: no cover

    def _control(self, env: _Envelope) -> Control:
        op = env.op or ""
        msg = env.ret_msg or ""
        if op == "pong" or msg == "pong":
            return Control(op or "ping", True, "pong", env.req_id or "", env.conn_id or "", True, [])
        if env.success is None:
            if env.data and op in ("subscribe", "unsubscribe", ""):
                # option/spread COMMAND_RESP shape
                try:
                    cmd = _cmd_dec.decode(env.data)
                except msgspec.DecodeError as e:
                    raise FrameError("malformed_json", str(e)) from None
                return Control(op, not cmd.failTopics, msg, env.req_id or "", env.conn_id or "", False, list(cmd.failTopics))
            raise FrameError("missing_field", "frame has neither topic nor success")
        return Control(op, bool(env.success), msg, env.req_id or "", env.conn_id or "", False, [])


def _classify(e: Exception) -> FrameError:
    """The :class:`FrameError` for an exception a decoding library raised on a frame.

    Undecodable bytes (any ``msgspec.DecodeError``, ``UnicodeError``) and nesting too deep to decode
    (``RecursionError``) are ``malformed_json``; anything else (``OverflowError`` from an integer
    over 64 bits, a ``TypeError`` on a value of the wrong type, ...) is ``bad_value``. The detail
    names the exception type so an unexpected one is visible in the ``bad_frame`` log line."""
    name = type(e).__name__
    if isinstance(e, RecursionError):
        return FrameError("malformed_json", f"nested too deeply to decode ({name})")
    if isinstance(e, (msgspec.DecodeError, UnicodeError)) and not isinstance(e, msgspec.ValidationError):
        return FrameError("malformed_json", f"{name}: {e}")
    if isinstance(e, ValueError):  # off-grid price, a number out of range
        return FrameError("bad_value", str(e))
    return FrameError("bad_value", f"{name}: {e}")


def _sample(raw: bytes | str, n: int = 160) -> str:
    s = raw[:n]
    if isinstance(s, bytes):
        s = s.decode("utf-8", "replace")
    return s
