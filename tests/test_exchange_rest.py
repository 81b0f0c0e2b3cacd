"""REST endpoints of the embedded exchange: shapes, paging, parameter errors, injected faults."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import aiohttp
import pytest

from daemon.exchange.faults import FaultPlan
from daemon.exchange.server import ExchangeServer
from test_exchange_support import small_recording

SYM = "BTCUSDT"


@pytest.fixture
async def ex(tmp_path):
    async with ExchangeServer(recording=small_recording(tmp_path, 2000), speed=0, loop=True) as server:
        yield server


async def get(server: ExchangeServer, path: str, **params) -> tuple[int, dict | str, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(server.rest_url + path, params=params) as r:
            ctype = r.headers.get("Content-Type", "")
            body = await (r.json() if "json" in ctype else r.text())
            return r.status, body, dict(r.headers)


def envelope_ok(body: dict) -> dict:
    assert set(body) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert body["retCode"] == 0 and body["retMsg"] == "OK" and body["retExtInfo"] == {}
    assert isinstance(body["time"], int)
    return body["result"]


async def test_server_binds_loopback_on_an_ephemeral_port(ex):
    assert ex.port > 0 and ex.rest_url == f"http://127.0.0.1:{ex.port}"
    assert ex.ws_url == f"ws://127.0.0.1:{ex.port}/v5/public/linear"


async def test_time(ex):
    status, body, _ = await get(ex, "/v5/market/time")
    assert status == 200
    res = envelope_ok(body)
    assert int(res["timeNano"]) // 1_000_000_000 == int(res["timeSecond"])
    assert int(res["timeSecond"]) == body["time"] // 1000  # the exchange clock (recording time)


async def test_instruments_btcusdt_real_filters(ex):
    status, body, _ = await get(ex, "/v5/market/instruments-info", category="linear", symbol=SYM)
    res = envelope_ok(body)
    (row,) = res["list"]
    assert res["category"] == "linear" and res["nextPageCursor"] == ""
    assert row["symbol"] == SYM and row["status"] == "Trading" and row["contractType"] == "LinearPerpetual"
    assert row["priceFilter"]["tickSize"] == "0.10"
    lot = row["lotSizeFilter"]
    assert (lot["qtyStep"], lot["minOrderQty"], lot["maxOrderQty"], lot["minNotionalValue"]) == (
        "0.001", "0.001", "1190.000", "5")
    assert row["fundingInterval"] == 480


async def test_instruments_paging_with_cursor_visits_every_trading_symbol_once(ex):
    _, body, _ = await get(ex, "/v5/market/instruments-info", category="linear")
    all_syms = [r["symbol"] for r in envelope_ok(body)["list"]]
    assert SYM in all_syms and len(all_syms) >= 6 and "OLDUSDT" not in all_syms  # Trading only by default
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        params = {"category": "linear", "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        _, body, _ = await get(ex, "/v5/market/instruments-info", **params)
        res = envelope_ok(body)
        assert len(res["list"]) <= 2
        seen += [r["symbol"] for r in res["list"]]
        pages += 1
        cursor = res["nextPageCursor"]
        if not cursor:
            break
    assert seen == all_syms and pages == (len(all_syms) + 1) // 2
    _, body, _ = await get(ex, "/v5/market/instruments-info", category="linear", status="Closed")
    assert [r["symbol"] for r in envelope_ok(body)["list"]] == ["OLDUSDT"]


@pytest.mark.parametrize("path,params,msg", [
    ("/v5/market/instruments-info", {"category": "futures"}, "Illegal category"),
    ("/v5/market/instruments-info", {}, "Illegal category"),
    ("/v5/market/orderbook", {"category": "nope", "symbol": SYM}, "Illegal category"),
    ("/v5/market/tickers", {"category": "LINEAR"}, "Illegal category"),
    ("/v5/market/instruments-info", {"category": "linear", "cursor": "garbage!"}, "cursor"),
    ("/v5/market/instruments-info", {"category": "linear", "limit": "0"}, "limit"),
    ("/v5/market/orderbook", {"category": "linear"}, "symbol"),
    ("/v5/market/orderbook", {"category": "linear", "symbol": "NOPEUSDT"}, "symbol"),
    ("/v5/market/orderbook", {"category": "linear", "symbol": SYM, "limit": "x"}, "limit"),
    ("/v5/market/kline", {"symbol": SYM, "interval": "7"}, "interval"),
    ("/v5/market/recent-trade", {"category": "linear", "symbol": SYM, "limit": "1001"}, "limit"),
])
async def test_bad_params_are_10001_over_http_200(ex, path, params, msg):
    status, body, _ = await get(ex, path, **params)
    assert status == 200
    assert body["retCode"] == 10001 and msg in body["retMsg"] and body["result"] == {}


async def test_orderbook_from_replayed_state(ex):
    ex.pause()
    await ex.wait_paused()
    status, body, _ = await get(ex, "/v5/market/orderbook", category="linear", symbol=SYM, limit="10")
    res = envelope_ok(body)
    assert set(res) == {"s", "b", "a", "ts", "u", "seq", "cts"}
    assert len(res["b"]) == len(res["a"]) == 10
    bids = [Decimal(p) for p, _ in res["b"]]
    asks = [Decimal(p) for p, _ in res["a"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    u, eb, ea = ex.book(SYM, 1000)
    assert res["u"] == u and [tuple(x) for x in res["b"]] == eb[:10] and [tuple(x) for x in res["a"]] == ea[:10]
    _, body, _ = await get(ex, "/v5/market/orderbook", category="linear", symbol=SYM)
    assert len(envelope_ok(body)["b"]) == 25  # linear default limit


async def test_kline_recent_trade_tickers_shapes(ex):
    _, body, _ = await get(ex, "/v5/market/kline", symbol=SYM, interval="1", limit="5")
    res = envelope_ok(body)
    assert res["category"] == "linear" and res["symbol"] == SYM and res["list"]
    for row in res["list"]:
        assert len(row) == 7 and all(isinstance(x, str) for x in row)
    starts = [int(r[0]) for r in res["list"]]
    assert starts == sorted(starts, reverse=True)

    _, body, _ = await get(ex, "/v5/market/recent-trade", category="linear", symbol=SYM, limit="3")
    rows = envelope_ok(body)["list"]
    assert len(rows) == 3
    assert set(rows[0]) == {"execId", "symbol", "price", "size", "side", "time", "isBlockTrade", "isRPITrade", "seq"}
    assert rows[0]["side"] in ("Buy", "Sell") and isinstance(rows[0]["time"], str)
    assert int(rows[0]["time"]) >= int(rows[-1]["time"])  # newest first

    _, body, _ = await get(ex, "/v5/market/tickers", category="linear", symbol=SYM)
    (t,) = envelope_ok(body)["list"]
    for k in ("lastPrice", "bid1Price", "ask1Price", "markPrice", "indexPrice", "fundingRate", "nextFundingTime",
              "volume24h", "turnover24h", "openInterest", "fundingIntervalHour"):
        assert isinstance(t[k], str) and t[k], k
    _, body, _ = await get(ex, "/v5/market/tickers", category="linear")
    assert [r["symbol"] for r in envelope_ok(body)["list"]] == [SYM]


async def test_rest_fault_10006_then_normal(ex):
    ex.inject("rest", fault="10006", count=2)
    for _ in range(2):
        status, body, headers = await get(ex, "/v5/market/time")
        assert status == 200 and body["retCode"] == 10006 and body["retMsg"] == "Too many visits!"
        assert headers["X-Bapi-Limit-Status"] == "0" and int(headers["X-Bapi-Limit-Reset-Timestamp"]) > 0
    status, body, _ = await get(ex, "/v5/market/time")
    assert body["retCode"] == 0
    assert ex.faults_injected["rest_10006"] == 2


@pytest.mark.parametrize("fault,status", [("429", 429), ("403", 403), ("500", 500)])
async def test_rest_http_status_faults(tmp_path, fault, status):
    plan = FaultPlan(rest_fault=fault, rest_fault_count=1)
    async with ExchangeServer(recording=small_recording(tmp_path, 300), speed=0, faults=plan) as server:
        st, _, _ = await get(server, "/v5/market/instruments-info", category="linear")
        assert st == status
        st, body, _ = await get(server, "/v5/market/instruments-info", category="linear")
        assert st == 200 and body["retCode"] == 0
        assert server.faults_injected[f"rest_{fault}"] == 1


async def test_rest_slow_fault_delays_the_answer(ex):
    ex.inject("rest", fault="slow", count=1, seconds=0.4)
    t0 = time.monotonic()
    status, body, _ = await get(ex, "/v5/market/time")
    assert time.monotonic() - t0 >= 0.4  # a lower bound: the answer cannot come before the delay
    assert status == 200 and body["retCode"] == 0
    assert ex.faults_injected["rest_slow"] == 1


async def test_slow_rest_does_not_block_other_requests(ex):
    ex.inject("rest", fault="slow", count=1, seconds=3.0)
    slow = asyncio.create_task(get(ex, "/v5/market/time"))
    for _ in range(2000):  # the slow request has taken the fault (event-driven, ceiling 10 s)
        if ex.faults_injected["rest_slow"] == 1:
            break
        await asyncio.sleep(0.005)
    assert ex.faults_injected["rest_slow"] == 1
    fast = await asyncio.wait_for(get(ex, "/v5/market/time"), 2.5)  # answered while the slow one waits
    assert fast[0] == 200 and not slow.done()
    assert (await slow)[0] == 200


def test_fault_plan_validates():
    with pytest.raises(ValueError):
        FaultPlan(rest_fault="418")
    with pytest.raises(ValueError):
        FaultPlan(gap_every=0)
    with pytest.raises(ValueError):
        FaultPlan(malformed_kinds=("nope",))
