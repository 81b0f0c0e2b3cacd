"""The embedded exchange's market state: a pure, synchronous function of the replayed frames.

Deliberately simple and independent of the daemon's own book code (``daemon.core.book`` and
``daemon.bybit.messages`` are never imported here): the book is two plain dicts keyed by the decimal
price *strings*, sorted by :class:`~decimal.Decimal` only when a sorted view is needed. The
book-equality tests then compare two independent implementations.

:meth:`Market.apply` takes one recording frame plus the loop index and returns the frames to
broadcast, as ``(topic, payload_dict)`` pairs, in Bybit's exact shapes. Everything here runs on
exchange time (the frames' ``ts``/``cts``/``T`` in ms); nothing reads a clock.

Topics per symbol
-----------------
``orderbook.{1,50,200,1000}.SYM``: each topic has its own ``u`` counter that goes up by exactly 1
per message (Bybit rule). The *source* of a topic is:

* **native**: the recording carries this depth: its frames are forwarded (new ``u``, shifted times).
* **forward** (requested depth deeper than anything recorded, e.g. 200/1000 from a 50-level
  recording): the deepest recorded book's frames are forwarded unchanged, so the book holds only the
  recorded number of levels (50 for the bundled recording), *not* N. Documented limitation.
* **window** (requested depth shallower than the recording and not recorded itself): the top-N
  window of the next deeper recorded book is diffed after every source frame; levels leaving the
  window are sent as size ``"0"``, entering levels with their size, so the client book stays at
  exactly N levels per side. Depth 1 is snapshot-only (Bybit since 2025-03).

``publicTrade.SYM``: forwarded batches. ``tickers.SYM``: a snapshot first, then deltas with only
changed fields, at most one per 100 ms of exchange time. ``kline.{1,3,5,15,30,60}.SYM``: candles
bucketed from trades, with the history the recording implies in place before the replay starts
(:meth:`Market.seed_kline_history`); ``confirm:false`` pushes at most once per second of exchange time while a
candle is open, and one ``confirm:true`` frame when it closes (flat zero-volume candles are emitted
for minutes without trades).

Looping
-------
Loop ``k`` shifts every exchange timestamp (``ts``, ``cts``, ``T``, kline times) by
``k * (span_ms + loop_gap_ms)``, every ``seq`` by ``k * (max_seq - min_seq + 1)`` so both keep
increasing, and rewrites trade ids (``uuid5`` of id and loop) so they stay unique. The per-topic
``u`` counters simply continue; the recording's own first book snapshot re-seeds the book at each
loop start and goes out as a ``snapshot`` whose ``u`` continues the counter.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from typing import Any

from daemon.exchange.recording import Recording

BOOK_DEPTHS = (1, 50, 200, 1000)
KLINE_INTERVALS = (1, 3, 5, 15, 30, 60)
TICKER_MIN_INTERVAL_MS = 100
KLINE_PUSH_INTERVAL_MS = 1000
FUNDING_INTERVAL_MS = 8 * 3600 * 1000
RECENT_TRADES = 1000
KLINE_HISTORY = 1000
_TRADE_NS = uuid.UUID("6b1c1d5e-8a57-4c1f-9a3e-0d1e2c3b4a59")

Out = tuple[str, dict[str, Any]]


@lru_cache(maxsize=1 << 16)
def dec(s: str) -> Decimal:
    """Decimal of a price/size string (cached: book prices repeat constantly)."""
    return Decimal(s)


def _decimals(s: str) -> int:
    i = s.find(".")
    return 0 if i < 0 else len(s) - i - 1


def fmt(d: Decimal, decimals: int) -> str:
    """Fixed-point string with exactly ``decimals`` places."""
    return str(d.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN))


def next_funding_time(ts_ms: int, interval_ms: int = FUNDING_INTERVAL_MS) -> int:
    """Next settlement strictly after ``ts_ms`` on the 00/08/16 UTC grid (ms)."""
    return (ts_ms // interval_ms + 1) * interval_ms


class SimpleBook:
    """One order book: ``{price_str: size_str}`` per side. Size ``"0"`` deletes (absent: ignored)."""

    __slots__ = ("bids", "asks", "ready")

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.ready = False

    def reset(self, b: list, a: list) -> None:
        self.bids = {}
        self.asks = {}
        self.apply(b, a)
        self.ready = True

    def apply(self, b: list, a: list) -> None:
        for side, levels in ((self.bids, b), (self.asks, a)):
            for p, s in levels:
                if dec(s) == 0:
                    side.pop(p, None)
                else:
                    side[p] = s

    def sorted_bids(self, n: int | None = None) -> list[tuple[str, str]]:
        return sorted(self.bids.items(), key=lambda kv: dec(kv[0]), reverse=True)[:n]

    def sorted_asks(self, n: int | None = None) -> list[tuple[str, str]]:
        return sorted(self.asks.items(), key=lambda kv: dec(kv[0]))[:n]


class BookTopic:
    """One ``orderbook.{depth}.{symbol}`` stream: its ``u`` counter and (window mode) its window."""

    __slots__ = ("topic", "symbol", "depth", "source", "mode", "u", "seq", "ts", "cts", "win_b", "win_a", "ready")

    def __init__(self, symbol: str, depth: int, source: int, mode: str) -> None:
        self.topic = f"orderbook.{depth}.{symbol}"
        self.symbol = symbol
        self.depth = depth
        self.source = source  #: recorded depth this topic is built from
        self.mode = mode  #: "native" | "forward" | "window"
        self.u = 0  #: u of the last message emitted on this topic
        self.seq = 0
        self.ts = 0
        self.cts = 0
        self.win_b: dict[str, str] = {}
        self.win_a: dict[str, str] = {}
        self.ready = False  #: a snapshot has been emitted (the topic has a state to show)


class KlineSeries:
    """Candles of one interval (minutes) built from trades. Rows keep Decimal OHLCV."""

    __slots__ = ("interval", "ms", "closed", "cur", "dirty", "last_push")

    def __init__(self, interval_min: int) -> None:
        self.interval = interval_min
        self.ms = interval_min * 60_000
        self.closed: deque[list] = deque(maxlen=KLINE_HISTORY)
        #: [start, open, high, low, close, volume, turnover, last_match_ts] (prices as str)
        self.cur: list | None = None
        self.dirty = False
        self.last_push = -(1 << 62)

    def roll(self, ts: int) -> list[list]:
        """Close every candle that ended before ``ts``; returns the closed rows (oldest first)."""
        out: list[list] = []
        cur = self.cur
        if cur is None:
            return out
        while ts >= cur[0] + self.ms:
            self.closed.append(cur)
            out.append(cur)
            close = cur[4]
            cur = [cur[0] + self.ms, close, close, close, close, Decimal(0), Decimal(0), cur[7]]
            if len(out) > KLINE_HISTORY:  # huge jump: don't emit thousands of flat candles
                start = ts - ts % self.ms
                cur = [start, close, close, close, close, Decimal(0), Decimal(0), cur[7]]
        self.cur = cur
        if out:
            self.dirty = True
        return out

    def on_trade(self, T: int, p: str, v: Decimal, turnover: Decimal) -> list[list]:
        closed = self.roll(T)
        if self.cur is None:
            start = T - T % self.ms
            self.cur = [start, p, p, p, p, v, turnover, T]
        else:
            c = self.cur
            pd = dec(p)
            if pd > dec(c[2]):
                c[2] = p
            if pd < dec(c[3]):
                c[3] = p
            c[4] = p
            c[5] += v
            c[6] += turnover
            c[7] = T
        self.dirty = True
        return closed


@dataclass
class InstrumentSpec:
    """Values served by instruments-info for one symbol."""

    symbol: str
    tick_size: str = "0.10"
    qty_step: str = "0.001"
    min_qty: str = "0.001"
    max_qty: str = "1190.000"
    max_mkt_qty: str = "500.000"
    min_notional: str = "5"
    max_price: str = "1999999.80"
    status: str = "Trading"
    funding_interval_min: int = 480
    price_scale: str = "2"
    launch_time: str = "1585526400000"

    def row(self) -> dict[str, Any]:
        base = self.symbol[:-4] if self.symbol.endswith(("USDT", "USDC")) else self.symbol
        quote = self.symbol[len(base) :] or "USDT"
        return {
            "symbol": self.symbol,
            "contractType": "LinearPerpetual",
            "status": self.status,
            "baseCoin": base,
            "quoteCoin": quote,
            "launchTime": self.launch_time,
            "deliveryTime": "0",
            "deliveryFeeRate": "",
            "priceScale": self.price_scale,
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": self.tick_size, "maxPrice": self.max_price, "tickSize": self.tick_size},
            "lotSizeFilter": {
                "maxOrderQty": self.max_qty,
                "minOrderQty": self.min_qty,
                "qtyStep": self.qty_step,
                "postOnlyMaxOrderQty": self.max_qty,
                "maxMktOrderQty": self.max_mkt_qty,
                "minNotionalValue": self.min_notional,
            },
            "unifiedMarginTrade": True,
            "fundingInterval": self.funding_interval_min,
            "settleCoin": quote,
            "copyTrading": "both",
            "upperFundingRate": "0.00375",
            "lowerFundingRate": "-0.00375",
            "isPreListing": False,
            "preListingInfo": None,
            "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
            "symbolType": "",
        }


def instrument_for(symbol: str, price_example: str | None, qty_example: str | None) -> InstrumentSpec:
    """Real BTCUSDT filters; other recorded symbols get a grid guessed from their strings."""
    if symbol == "BTCUSDT":
        return InstrumentSpec("BTCUSDT")
    pdp = _decimals(price_example or "0.01")
    qdp = _decimals(qty_example or "0.001")
    tick = fmt(Decimal(1).scaleb(-pdp), pdp)
    step = fmt(Decimal(1).scaleb(-qdp), qdp)
    return InstrumentSpec(symbol, tick_size=tick, qty_step=step, min_qty=step, price_scale=str(pdp))


class SymbolState:
    """Everything the exchange knows about one symbol."""

    def __init__(self, symbol: str, native_depths: list[int], funding_rate: str, open_interest: str) -> None:
        self.symbol = symbol
        self.native: dict[int, SimpleBook] = {d: SimpleBook() for d in native_depths}
        self.topics: dict[int, BookTopic] = {}
        self.by_source: dict[int, list[BookTopic]] = {d: [] for d in native_depths}
        for depth in BOOK_DEPTHS:
            if not native_depths:
                break
            if depth in self.native:
                src, mode = depth, "native"
            else:
                deeper = [d for d in native_depths if d > depth]
                src, mode = (min(deeper), "window") if deeper else (max(native_depths), "forward")
            t = BookTopic(symbol, depth, src, mode)
            self.topics[depth] = t
            self.by_source[src].append(t)
        self.price_dp = 2
        self.qty_dp = 3
        self.trades: deque[dict[str, Any]] = deque(maxlen=RECENT_TRADES)
        self.klines: dict[int, KlineSeries] = {i: KlineSeries(i) for i in KLINE_INTERVALS}
        self.last_price: str | None = None
        self.tick_direction = "ZeroPlusTick"
        self.first_price: str | None = None
        self.high: str | None = None
        self.low: str | None = None
        self.volume = Decimal(0)
        self.turnover = Decimal(0)
        self.funding_rate = funding_rate
        self.open_interest = open_interest
        self.last_ts = 0
        self.last_seq = 0
        self.ticker_pub: dict[str, str] | None = None  #: last published ticker fields
        self.ticker_pub_ts = -(1 << 62)
        self.ticker_cs = 0
        self.ticker_ts = 0

    # -- views ---------------------------------------------------------------------------
    def topic_view(self, depth: int) -> tuple[int, list[tuple[str, str]], list[tuple[str, str]]]:
        """``(u, bids, asks)`` of a book topic as last emitted, best first."""
        t = self.topics[depth]
        if t.mode == "window":
            bids = sorted(t.win_b.items(), key=lambda kv: dec(kv[0]), reverse=True)
            asks = sorted(t.win_a.items(), key=lambda kv: dec(kv[0]))
        else:
            book = self.native[t.source]
            bids, asks = book.sorted_bids(depth), book.sorted_asks(depth)
        return t.u, bids, asks

    def top(self) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        """Best bid and ask ``(price, size)`` from the shallowest recorded book."""
        if not self.native:
            return None, None
        book = self.native[min(self.native)]
        if not book.ready:
            return None, None
        bb = max(book.bids.items(), key=lambda kv: dec(kv[0]), default=None)
        ba = min(book.asks.items(), key=lambda kv: dec(kv[0]), default=None)
        return bb, ba

    def ticker_fields(self) -> dict[str, str] | None:
        """Current ticker fields (all strings), or None before the book has a top."""
        bb, ba = self.top()
        if bb is None or ba is None:
            return None
        pdp = self.price_dp
        mid = (dec(bb[0]) + dec(ba[0])) / 2
        mark = fmt(mid, pdp)
        last = self.last_price or bb[0]
        first = self.first_price or last
        pcnt = fmt(dec(last) / dec(first) - 1, 6) if dec(first) != 0 else "0.000000"
        oi = dec(self.open_interest)
        return {
            "symbol": self.symbol,
            "tickDirection": self.tick_direction,
            "price24hPcnt": pcnt,
            "lastPrice": last,
            "prevPrice24h": first,
            "highPrice24h": self.high or last,
            "lowPrice24h": self.low or last,
            "prevPrice1h": first,
            "markPrice": mark,
            "indexPrice": mark,
            "openInterest": self.open_interest,
            "openInterestValue": fmt(oi * dec(mark), 2),
            "turnover24h": fmt(self.turnover, 4),
            "volume24h": fmt(self.volume, 4),
            "fundingIntervalHour": "8",
            "fundingCap": "0.005",
            "nextFundingTime": str(next_funding_time(self.last_ts)),
            "fundingRate": self.funding_rate,
            "bid1Price": bb[0],
            "bid1Size": bb[1],
            "ask1Price": ba[0],
            "ask1Size": ba[1],
            "preOpenPrice": "",
            "preQty": "",
            "curPreListingPhase": "",
        }


def kline_row_ws(row: list, interval: int, confirm: bool, qty_dp: int) -> dict[str, Any]:
    start = row[0]
    return {
        "start": start,
        "end": start + interval * 60_000 - 1,
        "interval": str(interval),
        "open": row[1],
        "close": row[4],
        "high": row[2],
        "low": row[3],
        "volume": fmt(row[5], qty_dp),
        "turnover": fmt(row[6], 4),
        "confirm": confirm,
        "timestamp": row[7],
    }


def kline_row_rest(row: list, qty_dp: int) -> list[str]:
    return [str(row[0]), row[1], row[2], row[3], row[4], fmt(row[5], qty_dp), fmt(row[6], 4)]


class Market:
    """All symbols' state; :meth:`apply` turns one recording frame into outgoing frames."""

    def __init__(
        self,
        recording: Recording,
        funding_rate: str = "0.0001",
        open_interest: str = "52000.000",
        loop_gap_ms: int = 1000,
    ) -> None:
        self.rec = recording
        self.loop_gap_ms = loop_gap_ms
        self.symbols: dict[str, SymbolState] = {}
        for sym in recording.symbols:
            self.symbols[sym] = SymbolState(sym, recording.book_depths.get(sym, []), funding_rate, open_interest)
        self._set_precisions()
        self.instruments: list[InstrumentSpec] = self._instruments()
        self.ts = recording.first_ts  #: exchange clock: ts of the last applied frame (ms, shifted)
        self.frames_applied = 0
        self.unknown_frames = 0
        #: (symbol, depth) of recorded books whose first frame is a delta: not applicable after a loop
        self._starts_with_delta: set[tuple[str, int]] = set()
        seen: set[tuple[str, int]] = set()
        for _, f in recording.frames:
            parts = f["topic"].split(".")
            if parts[0] == "orderbook" and len(parts) == 3 and parts[1].isdigit():
                key = (parts[2], int(parts[1]))
                if key not in seen:
                    seen.add(key)
                    if f.get("type") != "snapshot":
                        self._starts_with_delta.add(key)

    def seed_kline_history(self) -> None:
        """Kline history before the replay starts, as Bybit has it at any moment: the candles of the
        recording's own trades, placed one loop earlier (loop -1: every ``T`` shifted by
        ``-(span + loop_gap)``, the shift looping uses forward), so the history ends just before the
        replay's first frame and the first replayed trades continue its open candle. Call once on a
        fresh market, before any frame is applied; nothing is broadcast."""
        off = self.ts_offset(-1)
        for _, f in self.rec.frames:
            data = f.get("data")
            st = self.symbols.get(f["topic"].split(".")[-1])
            if st is None or not f["topic"].startswith("publicTrade.") or not isinstance(data, list):
                continue
            for tr in data:
                p, v = tr["p"], dec(tr["v"])
                turnover = dec(p) * v
                for ks in st.klines.values():
                    ks.on_trade(tr["T"] + off, p, v, turnover)
        for st in self.symbols.values():
            for ks in st.klines.values():
                ks.dirty = False

    def start_loop(self, loop: int) -> None:
        """Call before replaying loop ``loop`` >= 1: books whose recording starts with deltas wait for
        the next recorded snapshot instead of applying loop-start deltas to the previous loop's book."""
        for sym, depth in self._starts_with_delta:
            self.symbols[sym].native[depth].ready = False

    def primed(self) -> bool:
        """Every recorded book has a snapshot and every symbol has published a ticker."""
        return all(b.ready for st in self.symbols.values() for b in st.native.values()) and all(
            st.ticker_pub is not None for st in self.symbols.values() if st.native)

    def _set_precisions(self) -> None:
        self._examples: dict[str, tuple[str | None, str | None]] = {}
        for _, f in self.rec.frames[:2000]:
            data = f.get("data")
            sym = f.get("topic", "").split(".")[-1]
            st = self.symbols.get(sym)
            if st is None or sym in self._examples:
                continue
            if isinstance(data, dict) and data.get("b"):
                p, q = data["b"][0]
            elif isinstance(data, list) and data and "p" in data[0]:
                p, q = data[0]["p"], data[0]["v"]
            else:
                continue
            st.price_dp, st.qty_dp = _decimals(p), _decimals(q)
            self._examples[sym] = (p, q)

    def _instruments(self) -> list[InstrumentSpec]:
        """What instruments-info lists: exactly the symbols served (the recording's), sorted."""
        return [instrument_for(sym, *self._examples.get(sym, (None, None))) for sym in sorted(self.symbols)]

    # -- offsets -------------------------------------------------------------------------
    def ts_offset(self, loop: int) -> int:
        return loop * (self.rec.span_ms + self.loop_gap_ms)

    def seq_offset(self, loop: int) -> int:
        return loop * (self.rec.max_seq - self.rec.min_seq + 1)

    # -- apply ---------------------------------------------------------------------------
    def apply(self, frame: dict[str, Any], loop: int = 0) -> list[Out]:
        """Apply one recording frame (not mutated) of loop ``loop``; return frames to broadcast."""
        outs: list[Out] = []
        topic: str = frame["topic"]
        parts = topic.split(".")
        st = self.symbols.get(parts[-1])
        ts_off = self.ts_offset(loop)
        seq_off = self.seq_offset(loop)
        ts = frame.get("ts", 0) + ts_off
        self.frames_applied += 1
        if st is None:
            self.unknown_frames += 1
            return outs
        if ts > self.ts:
            self.ts = ts
        st.last_ts = max(st.last_ts, ts)
        kind = parts[0]
        if kind == "orderbook" and len(parts) == 3 and parts[1].isdigit() and int(parts[1]) in st.native:
            self._on_book(st, int(parts[1]), frame, ts, ts_off, seq_off, outs)
        elif kind == "publicTrade":
            self._on_trades(st, frame, loop, ts, ts_off, seq_off, outs)
        else:
            self.unknown_frames += 1  # tickers/klines in a recording are re-derived, not forwarded
        self._klines(st, ts, outs)
        self._ticker(st, ts, outs)
        return outs

    def _on_book(self, st: SymbolState, depth: int, frame: dict, ts: int, ts_off: int, seq_off: int,
                 outs: list[Out]) -> None:
        data = frame["data"]
        b = data.get("b", [])
        a = data.get("a", [])
        snap = frame.get("type") == "snapshot" or data.get("u") == 1
        book = st.native[depth]
        if snap:
            book.reset(b, a)
        elif not book.ready:
            return  # a delta before the first snapshot cannot be applied: skip (never seen on Bybit)
        else:
            book.apply(b, a)
        cts = frame.get("cts", frame.get("ts", 0)) + ts_off
        seq = data.get("seq", 0) + seq_off
        st.last_seq = max(st.last_seq, seq)
        sym = st.symbol
        for t in st.by_source[depth]:
            t.ts, t.cts, t.seq = ts, cts, seq
            if t.mode == "window":
                self._window(st, t, book, snap, outs)
                continue
            t.u += 1
            t.ready = True
            if t.depth == 1 and not snap:  # level 1 is snapshot-only
                typ, ob, oa = "snapshot", book.sorted_bids(1), book.sorted_asks(1)
                ob, oa = [list(x) for x in ob], [list(x) for x in oa]
            else:
                typ, ob, oa = ("snapshot" if snap else "delta"), b, a
            outs.append((t.topic, {"topic": t.topic, "type": typ, "ts": ts,
                                   "data": {"s": sym, "b": ob, "a": oa, "u": t.u, "seq": seq}, "cts": cts}))

    def _window(self, st: SymbolState, t: BookTopic, book: SimpleBook, snap: bool, outs: list[Out]) -> None:
        nb = dict(book.sorted_bids(t.depth))
        na = dict(book.sorted_asks(t.depth))
        if snap or not t.ready or t.depth == 1:
            if t.ready and not snap and nb == t.win_b and na == t.win_a:
                return
            typ = "snapshot"
            ob = [[p, s] for p, s in sorted(nb.items(), key=lambda kv: dec(kv[0]), reverse=True)]
            oa = [[p, s] for p, s in sorted(na.items(), key=lambda kv: dec(kv[0]))]
        else:
            ob = _diff(t.win_b, nb, reverse=True)
            oa = _diff(t.win_a, na, reverse=False)
            if not ob and not oa:
                return
            typ = "delta"
        t.win_b, t.win_a = nb, na
        t.u += 1
        t.ready = True
        outs.append((t.topic, {"topic": t.topic, "type": typ, "ts": t.ts,
                               "data": {"s": st.symbol, "b": ob, "a": oa, "u": t.u, "seq": t.seq}, "cts": t.cts}))

    def _on_trades(self, st: SymbolState, frame: dict, loop: int, ts: int, ts_off: int, seq_off: int,
                   outs: list[Out]) -> None:
        data = frame.get("data")
        if not isinstance(data, list):
            self.unknown_frames += 1
            return
        new = []
        for tr in data:
            nt = dict(tr)
            T = tr["T"] + ts_off
            nt["T"] = T
            if "seq" in tr:
                nt["seq"] = tr["seq"] + seq_off
                st.last_seq = max(st.last_seq, nt["seq"])
            if loop:
                nt["i"] = _remap_id(str(tr.get("i", "")), loop)
            p, v = tr["p"], dec(tr["v"])
            pd = dec(p)
            if st.first_price is None:
                st.first_price = p
            if st.last_price is not None:
                lp = dec(st.last_price)
                st.tick_direction = tr.get("L") or (
                    "PlusTick" if pd > lp else "MinusTick" if pd < lp else st.tick_direction)
            st.last_price = p
            if st.high is None or pd > dec(st.high):
                st.high = p
            if st.low is None or pd < dec(st.low):
                st.low = p
            turnover = pd * v
            st.volume += v
            st.turnover += turnover
            for ks in st.klines.values():
                for row in ks.on_trade(T, p, v, turnover):
                    self._kline_out(st, ks, row, True, ts, outs)
            st.trades.append(nt)
            new.append(nt)
        topic = f"publicTrade.{st.symbol}"
        outs.append((topic, {"topic": topic, "type": "snapshot", "ts": ts, "data": new}))

    def _kline_out(self, st: SymbolState, ks: KlineSeries, row: list, confirm: bool, ts: int,
                   outs: list[Out]) -> None:
        topic = f"kline.{ks.interval}.{st.symbol}"
        outs.append((topic, {"topic": topic, "data": [kline_row_ws(row, ks.interval, confirm, st.qty_dp)],
                             "ts": ts, "type": "snapshot"}))

    def _klines(self, st: SymbolState, ts: int, outs: list[Out]) -> None:
        for ks in st.klines.values():
            for row in ks.roll(ts):
                self._kline_out(st, ks, row, True, ts, outs)
            if ks.cur is not None and ks.dirty and ts - ks.last_push >= KLINE_PUSH_INTERVAL_MS:
                ks.dirty = False
                ks.last_push = ts
                self._kline_out(st, ks, ks.cur, False, ts, outs)

    def _ticker(self, st: SymbolState, ts: int, outs: list[Out]) -> None:
        if ts - st.ticker_pub_ts < TICKER_MIN_INTERVAL_MS:
            return
        fields = st.ticker_fields()
        if fields is None:
            return
        topic = f"tickers.{st.symbol}"
        if st.ticker_pub is None:
            typ, data = "snapshot", dict(fields)
        else:
            old = st.ticker_pub
            data = {k: v for k, v in fields.items() if old.get(k) != v}
            if not data:
                return
            data["symbol"] = st.symbol
            typ = "delta"
        st.ticker_pub = fields
        st.ticker_pub_ts = ts
        st.ticker_ts = ts
        st.ticker_cs = st.last_seq
        outs.append((topic, {"topic": topic, "type": typ, "data": data, "cs": st.last_seq, "ts": ts}))

    # -- snapshots for new subscribers ------------------------------------------------------
    def subscribe_snapshot(self, topic: str) -> dict[str, Any] | None:
        """The frame a new subscriber gets first, or None if the topic has no state yet."""
        parts = topic.split(".")
        st = self.symbols.get(parts[-1])
        if st is None:
            return None
        if parts[0] == "orderbook":
            t = st.topics.get(int(parts[1]))
            if t is None or not t.ready:
                return None
            u, bids, asks = st.topic_view(t.depth)
            return {"topic": topic, "type": "snapshot", "ts": t.ts,
                    "data": {"s": st.symbol, "b": [list(x) for x in bids], "a": [list(x) for x in asks],
                             "u": u, "seq": t.seq}, "cts": t.cts}
        if parts[0] == "tickers":
            if st.ticker_pub is None:
                return None
            return {"topic": topic, "type": "snapshot", "data": dict(st.ticker_pub), "cs": st.ticker_cs,
                    "ts": st.ticker_ts}
        if parts[0] == "kline":
            ks = st.klines[int(parts[1])]
            if ks.cur is None:
                return None
            return {"topic": topic, "data": [kline_row_ws(ks.cur, ks.interval, False, st.qty_dp)],
                    "ts": st.last_ts, "type": "snapshot"}
        return None  # publicTrade: no snapshot on subscribe (as on Bybit)

    def valid_topic(self, topic: str) -> bool:
        parts = topic.split(".")
        if len(parts) == 3 and parts[0] == "orderbook":
            return parts[1].isdigit() and int(parts[1]) in BOOK_DEPTHS and parts[2] in self.symbols \
                and int(parts[1]) in self.symbols[parts[2]].topics
        if len(parts) == 3 and parts[0] == "kline":
            return parts[1].isdigit() and int(parts[1]) in KLINE_INTERVALS and parts[2] in self.symbols
        if len(parts) == 2 and parts[0] in ("publicTrade", "tickers"):
            return parts[1] in self.symbols
        return False

    # -- REST results ----------------------------------------------------------------------
    def rest_orderbook(self, symbol: str, limit: int) -> dict[str, Any]:
        st = self.symbols[symbol]
        t = st.topics[max(st.topics)]  # REST u lines up with the deepest (1000-level) stream
        u, bids, asks = st.topic_view(t.depth)
        return {"s": symbol, "b": [list(x) for x in bids[:limit]], "a": [list(x) for x in asks[:limit]],
                "ts": t.ts, "u": u, "seq": t.seq, "cts": t.cts}

    def rest_recent_trades(self, category: str, symbol: str, limit: int) -> dict[str, Any]:
        st = self.symbols[symbol]
        rows = []
        for tr in reversed(st.trades):  # newest first
            rows.append({"execId": tr.get("i", ""), "symbol": symbol, "price": tr["p"], "size": tr["v"],
                         "side": tr["S"], "time": str(tr["T"]), "isBlockTrade": bool(tr.get("BT", False)),
                         "isRPITrade": bool(tr.get("RPI", False)), "seq": str(tr.get("seq", ""))})
            if len(rows) >= limit:
                break
        return {"category": category, "list": rows}

    def rest_klines(self, category: str, symbol: str, interval: int, start: int | None, end: int | None,
                    limit: int) -> dict[str, Any]:
        st = self.symbols[symbol]
        ks = st.klines[interval]
        rows = list(ks.closed)
        if ks.cur is not None:
            rows.append(ks.cur)
        out = []
        for row in reversed(rows):  # newest first
            if end is not None and row[0] > end:
                continue
            if start is not None and row[0] < start:
                break
            out.append(kline_row_rest(row, st.qty_dp))
            if len(out) >= limit:
                break
        return {"category": category, "symbol": symbol, "list": out}

    def rest_tickers(self, category: str, symbol: str | None) -> dict[str, Any]:
        syms = [symbol] if symbol else list(self.symbols)
        rows = []
        for s in syms:
            f = self.symbols[s].ticker_fields()
            if f is not None:
                f = dict(f)
                f.pop("tickDirection", None)
                f.update({"predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "",
                          "deliveryTime": "0", "basis": "", "basisRateYear": ""})
                rows.append(f)
        return {"category": category, "list": rows}


def _diff(old: dict[str, str], new: dict[str, str], reverse: bool) -> list[list[str]]:
    out = [[p, "0"] for p in old if p not in new]
    out += [[p, s] for p, s in new.items() if old.get(p) != s]
    out.sort(key=lambda ps: dec(ps[0]), reverse=reverse)
    return out


def _remap_id(i: str, loop: int) -> str:
    """A trade id unique per loop: uuid5 for UUID-like ids, a large offset for numeric ids."""
    if i.isdigit():
        return str(int(i) + loop * 10**15)
    return str(uuid.uuid5(_TRADE_NS, f"{i}/{loop}"))
