"""Bybit V5 public REST client (aiohttp, one shared session).

Every response's ``retCode`` is checked (business errors come back with HTTP 200). Retries with full
jitter exponential backoff (``uniform(0, min(backoff_max_s, backoff_base_s * 2**attempt))`` seconds)
on timeouts, connection errors, HTTP 5xx, HTTP 429 and retCodes 10006 (rate limit), 10016 (server
restarting) and 10000 (server timeout). HTTP 403 is Bybit's IP ban ("access too frequent"; also a
restricted region): the client logs why and pauses for ``ban_backoff_s`` (default 600 s) before it
tries again. Other retCodes (e.g. 10001 parameter error) fail at once with :class:`BybitRestError`.
Every request has a total timeout (``timeout_s``).

Endpoints: instruments-info (follows ``nextPageCursor``), orderbook, kline, recent-trade, tickers,
time (PROTOCOL.md §6).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from daemon.config import RestConfig
from daemon.core.events import Kline
from daemon.core.instrument import Instrument
from daemon.logging import get_logger

log = get_logger("mmd.rest")

RETRY_RETCODES = {10006: "rate_limit_10006", 10016: "server_restarting_10016", 10000: "server_timeout_10000"}


class BybitRestError(Exception):
    """A REST call that failed for good: ``ret_code`` (or ``None``), ``http_status``, ``path``."""

    def __init__(self, path: str, message: str, ret_code: int | None = None, http_status: int | None = None,
                 transient: bool = False):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.ret_code = ret_code
        self.http_status = http_status
        #: the retries ran out on a network failure, 5xx, rate limit or busy answer: trying again
        #: later may succeed (a refused request or a malformed answer will not)
        self.transient = transient


class _Retry(Exception):
    def __init__(self, reason: str, detail: str, ban: bool = False):
        super().__init__(detail)
        self.reason = reason
        self.ban = ban


class BybitRest:
    """Async client. Use as ``async with BybitRest(url, cfg) as rest: ...``.

    ``sleep`` and ``rng`` are injectable so tests can observe backoff without waiting.
    ``stats`` counts requests, retries by reason and bans.
    """

    def __init__(
        self,
        base_url: str,
        cfg: RestConfig | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.cfg = cfg or RestConfig()
        self._session = session
        self._own_session = session is None
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.stats: Counter[str] = Counter()

    async def __aenter__(self) -> "BybitRest":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),
                headers={"User-Agent": "mmd/0.1 (+paper market maker)"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    # -- core request loop ---------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Full-jitter delay in seconds for retry number ``attempt`` (0-based)."""
        cap = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * (2**attempt))
        return self._rng.uniform(0.0, cap)

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET ``path`` and return ``result`` of a ``retCode == 0`` envelope."""
        params = {k: str(v) for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            self.stats["requests"] += 1
            try:
                return await self._once(path, params)
            except _Retry as r:
                self.stats[f"retry_{r.reason}"] += 1
                if r.ban:
                    self.stats["bans"] += 1
                    log.error("rest_banned", path=path, reason=str(r), pause_s=self.cfg.ban_backoff_s,
                              hint="HTTP 403: IP rate limit or restricted region; pausing all requests")
                    await self._sleep(self.cfg.ban_backoff_s)
                    # A ban pause does not consume the retry budget; keep trying after it.
                    continue
                if attempt >= self.cfg.max_retries:
                    raise BybitRestError(path, f"giving up after {attempt + 1} attempts: {r}", transient=True) from None
                delay = self.backoff(attempt)
                log.warning("rest_retry", path=path, reason=r.reason, detail=str(r)[:200], attempt=attempt + 1, delay_s=round(delay, 3))
                attempt += 1
                await self._sleep(delay)

    async def _once(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = self.base_url + path
        try:
            async with self.session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s)) as resp:
                body = await resp.read()
                status = resp.status
        except asyncio.TimeoutError:
            raise _Retry("timeout", f"no answer within {self.cfg.timeout_s} s") from None
        except aiohttp.ClientError as e:
            raise _Retry("connection", f"{type(e).__name__}: {e}") from None
        if status == 403:
            raise _Retry("http_403", f"HTTP 403 {body[:120]!r}", ban=True)
        if status == 429:
            raise _Retry("http_429", "HTTP 429 too many requests")
        if status >= 500:
            raise _Retry(f"http_{status}", f"HTTP {status}")
        if status != 200:
            raise BybitRestError(path, f"HTTP {status}: {body[:200]!r}", http_status=status)
        try:
            env = orjson.loads(body)
            code = int(env["retCode"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise BybitRestError(path, f"not a Bybit envelope: {body[:200]!r}", http_status=status) from None
        if code == 0:
            result = env.get("result")
            return result if isinstance(result, dict) else {}
        msg = str(env.get("retMsg", ""))
        if code in RETRY_RETCODES:
            raise _Retry(RETRY_RETCODES[code], f"retCode {code} {msg}")
        raise BybitRestError(path, f"retCode {code}: {msg}", ret_code=code, http_status=status)

    # -- endpoints -----------------------------------------------------------------------------

    async def server_time_ms(self) -> int:
        r = await self.get("/v5/market/time")
        return int(r.get("timeNano", 0)) // 1_000_000 or int(r.get("timeSecond", 0)) * 1000

    async def instruments(self, category: str, symbol: str | None = None, limit: int = 500) -> dict[str, Instrument]:
        """All Trading instruments of ``category`` (or one ``symbol``), following ``nextPageCursor``."""
        out: dict[str, Instrument] = {}
        cursor: str | None = None
        pages = 0
        while True:
            r = await self.get(
                "/v5/market/instruments-info",
                {"category": category, "symbol": symbol, "limit": limit, "cursor": cursor},
            )
            for row in r.get("list") or []:
                try:
                    inst = Instrument.from_bybit(category, row)
                except (ValueError, KeyError) as e:
                    log.warning("instrument_skipped", symbol=row.get("symbol"), error=str(e))
                    continue
                out[inst.symbol] = inst
            pages += 1
            cursor = r.get("nextPageCursor") or None
            if not cursor or symbol or pages > 1000:
                return out

    async def orderbook(self, category: str, symbol: str, limit: int = 50) -> dict[str, Any]:
        """Raw ``result`` of ``/v5/market/orderbook`` (``s``, ``b``, ``a``, ``u``, ``seq``, ``ts``, ``cts``)."""
        return await self.get("/v5/market/orderbook", {"category": category, "symbol": symbol, "limit": limit})

    async def klines(
        self, category: str, inst: Instrument, interval: str = "1", limit: int = 200,
        start_ms: int | None = None, end_ms: int | None = None, recv_ns: int = 0,
    ) -> list[Kline]:
        """Closed and open candles, OLDEST FIRST (Bybit answers newest first). The newest row is the
        still-open candle: it is returned with ``confirm=False``."""
        r = await self.get(
            "/v5/market/kline",
            {"category": category, "symbol": inst.symbol, "interval": interval, "limit": limit, "start": start_ms, "end": end_ms},
        )
        rows = r.get("list") or []
        minutes = {"D": 1440, "W": 10080, "M": 43200}.get(interval) or int(interval)
        span = minutes * 60_000
        pt = inst.price.to_int
        out = []
        for i, row in enumerate(rows):
            start = int(row[0])
            out.append(Kline(inst.symbol, interval, start, start + span - 1, pt(row[1]), pt(row[2]), pt(row[3]), pt(row[4]),
                             float(row[5]), i != 0, start + span - 1 if i else start, recv_ns))
        out.reverse()
        return out

    async def recent_trades(self, category: str, symbol: str, limit: int = 500) -> list[dict[str, Any]]:
        r = await self.get("/v5/market/recent-trade", {"category": category, "symbol": symbol, "limit": limit})
        return list(r.get("list") or [])

    async def tickers(self, category: str, symbol: str | None = None) -> list[dict[str, Any]]:
        r = await self.get("/v5/market/tickers", {"category": category, "symbol": symbol})
        return list(r.get("list") or [])
