"""The REST half of the embedded exchange: Bybit V5 public market endpoints
(``/v5/market/instruments-info``, ``orderbook``, ``kline``, ``recent-trade``, ``tickers``, ``time``)
answered from the exchange's own :class:`~daemon.exchange.market.Market`.

Every answer is Bybit's envelope ``{"retCode", "retMsg", "result", "retExtInfo", "time"}`` where
``time`` is the server's **wall clock** (ms), as on Bybit; ``/v5/market/time`` answers the wall clock
too, so a client's clock-offset estimate (ccxt, pybit) reads ~0 and not the age of the recording.
Replay time stays in the data (``ts``/``cts``/``T``, kline starts). A bad query parameter is
answered as Bybit does: HTTP 200, ``retCode`` 10001, the reason as ``retMsg``
(:meth:`RestApi.middleware`).

Only what is served is listed and answered: the recording's symbols, in category ``linear`` (the
data is a linear perpetual's). ``instruments-info`` lists exactly those; market data for any other
symbol, or for a served symbol under another category (``spot``, ``inverse``, ``option``), is
Bybit's ``10001 "Not supported symbols"``, never the linear data. The same middleware counts requests and carries out REST faults
(``rest_*``, see :mod:`daemon.exchange.faults`) as :class:`FaultState` hands them out.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson
from aiohttp import web

from daemon.exchange.fault_state import FaultState
from daemon.exchange.market import KLINE_INTERVALS, Market

CATEGORIES = ("spot", "linear", "inverse", "option")
SERVED_CATEGORY = "linear"  #: the only category with data (the recordings are linear perpetuals)
#: Bybit's answer to market data for a symbol it does not list in the category (HTTP 200, retCode 10001)
UNSUPPORTED_SYMBOL = "Not supported symbols"


def wall_ms() -> int:
    """The server's wall clock (ms), as Bybit's envelope ``time``."""
    return time.time_ns() // 1_000_000


class _ParamError(Exception):
    """A bad REST query parameter; the middleware answers it as Bybit does (HTTP 200, retCode
    10001, the message as retMsg)."""


class RestApi:
    """The ``/v5/market/*`` handlers over ``market``; REST faults come from ``faults``.
    Install :meth:`middleware` on the application and :meth:`add_routes` on its router."""

    def __init__(self, market: Market, faults: FaultState) -> None:
        self.market = market
        self.faults = faults
        self.requests = 0  #: ``/v5/market/*`` requests received (faulted ones included)

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/v5/market/instruments-info", self._h_instruments)
        r.add_get("/v5/market/orderbook", self._h_orderbook)
        r.add_get("/v5/market/kline", self._h_kline)
        r.add_get("/v5/market/recent-trade", self._h_recent_trade)
        r.add_get("/v5/market/tickers", self._h_tickers)
        r.add_get("/v5/market/time", self._h_time)

    def _env(self, result: dict[str, Any], code: int = 0, msg: str = "OK", status: int = 200,
             headers: dict[str, str] | None = None, now_ms: int | None = None) -> web.Response:
        body = {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {},
                "time": wall_ms() if now_ms is None else now_ms}
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                            headers=headers)

    def _err(self, msg: str, code: int = 10001) -> web.Response:
        return self._env({}, code, msg)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/v5/market/"):
            return await handler(request)
        self.requests += 1
        fault = self.faults.take_rest_fault(request.path)
        if fault:
            if fault == "10006":
                now = wall_ms()
                return self._env({}, 10006, "Too many visits!", headers={
                    "X-Bapi-Limit": "600", "X-Bapi-Limit-Status": "0",
                    "X-Bapi-Limit-Reset-Timestamp": str(now + 1000)})
            if fault == "429":
                return web.Response(status=429, text="Too Many Requests")
            if fault == "403":
                return web.Response(status=403, text="403 Forbidden: access too frequent")
            if fault == "500":
                return web.Response(status=500, text="500 Internal Server Error")
            if fault == "slow":
                await asyncio.sleep(self.faults.rest_slow_seconds)
        try:
            return await handler(request)
        except _ParamError as e:
            return self._err(str(e))

    def _category(self, q: Any, default: str | None = None) -> str:
        cat = q.get("category", default)
        if cat not in CATEGORIES:
            raise _ParamError("Illegal category")
        return cat

    def _int(self, q: Any, name: str, default: int | None, lo: int, hi: int) -> int | None:
        raw = q.get(name)
        if raw is None or raw == "":
            return default
        try:
            v = int(raw)
        except ValueError:
            raise _ParamError(f"params error: {name} invalid") from None
        if not lo <= v <= hi:
            raise _ParamError(f"params error: {name} out of range [{lo}, {hi}]")
        return v

    def _symbol(self, q: Any, cat: str, required: bool = True) -> str | None:
        """The ``symbol`` parameter, which must be served in category ``cat``."""
        sym = q.get("symbol")
        if not sym:
            if required:
                raise _ParamError("params error: symbol invalid")
            return None
        if cat != SERVED_CATEGORY or sym not in self.market.symbols:
            raise _ParamError(UNSUPPORTED_SYMBOL)
        return sym

    async def _h_time(self, request: web.Request) -> web.Response:
        ns = time.time_ns()
        return self._env({"timeSecond": str(ns // 1_000_000_000), "timeNano": str(ns)}, now_ms=ns // 1_000_000)

    async def _h_instruments(self, request: web.Request) -> web.Response:
        q = request.query
        cat = self._category(q)
        limit = self._int(q, "limit", 500, 1, 1000)
        assert limit is not None
        cursor = q.get("cursor", "")
        offset = 0
        if cursor:
            try:
                offset = int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("offset="))
                if offset < 0:
                    raise ValueError
            except Exception:
                return self._err("params error: cursor invalid")
        rows = list(self.market.instruments) if cat == SERVED_CATEGORY else []
        status = q.get("status")
        rows = [s for s in rows if (s.status == status if status else s.status == "Trading")]
        if q.get("symbol"):
            rows = [s for s in rows if s.symbol == q["symbol"]]
        if q.get("baseCoin"):
            rows = [s for s in rows if s.row()["baseCoin"] == q["baseCoin"]]
        page = rows[offset : offset + limit]
        nxt = ""
        if offset + limit < len(rows):
            nxt = base64.urlsafe_b64encode(f"offset={offset + limit}".encode()).decode()
        return self._env({"category": cat, "list": [s.row() for s in page], "nextPageCursor": nxt})

    async def _h_orderbook(self, request: web.Request) -> web.Response:
        q = request.query
        cat = self._category(q)
        sym = self._symbol(q, cat)
        default = {"spot": 1, "option": 1}.get(cat, 25)
        limit = self._int(q, "limit", default, 1, 25 if cat == "option" else 1000)
        assert sym is not None and limit is not None
        return self._env(self.market.rest_orderbook(sym, limit))

    async def _h_kline(self, request: web.Request) -> web.Response:
        q = request.query
        cat = self._category(q, "linear")
        sym = self._symbol(q, cat)
        interval = q.get("interval", "")
        if not interval.isdigit() or int(interval) not in KLINE_INTERVALS:
            return self._err("params error: interval invalid")
        start = self._int(q, "start", None, 0, 1 << 62)
        end = self._int(q, "end", None, 0, 1 << 62)
        limit = self._int(q, "limit", 200, 1, 1000)
        assert sym is not None and limit is not None
        return self._env(self.market.rest_klines(cat, sym, int(interval), start, end, limit))

    async def _h_recent_trade(self, request: web.Request) -> web.Response:
        q = request.query
        cat = self._category(q)
        sym = self._symbol(q, cat)
        limit = self._int(q, "limit", 60 if cat == "spot" else 500, 1, 60 if cat == "spot" else 1000)
        assert sym is not None and limit is not None
        return self._env(self.market.rest_recent_trades(cat, sym, limit))

    async def _h_tickers(self, request: web.Request) -> web.Response:
        q = request.query
        cat = self._category(q)
        sym = self._symbol(q, cat, required=False)
        if cat != SERVED_CATEGORY:  # no symbol: every symbol of the category, and none is served
            return self._env({"category": cat, "list": []})
        return self._env(self.market.rest_tickers(cat, sym))
