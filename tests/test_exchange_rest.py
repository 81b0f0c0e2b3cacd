"""REST endpoints of the embedded exchange: shapes, paging, parameter errors, injected faults."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from daemon.exchange.faults import FaultPlan
from daemon.exchange.server import ExchangeServer
from test_exchange_support import multi_symbol_recording, small_recording

SAMPLES = Path("/work/shared/bybit-v5/samples")

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


def sample(name: str) -> dict:
    """A real or documented Bybit message (see the samples' SOURCES.md)."""
    return json.loads((SAMPLES / name).read_text())


async def test_time_is_the_wall_clock_like_bybit(ex):
    """ccxt/pybit estimate their clock offset from /v5/market/time: it must be the server's wall clock
    (the replay of 2024 data once read as an ~851-day offset), while the data keeps replay time."""
    doc = sample("rest_time__docs.json")
    before = time.time_ns()
    status, body, _ = await get(ex, "/v5/market/time")
    after = time.time_ns()
    assert status == 200
    res = envelope_ok(body)
    assert set(res) == set(doc["result"]) and all(isinstance(v, str) for v in res.values())
    assert type(body["time"]) is type(doc["time"])
    assert before <= int(res["timeNano"]) <= after
    assert int(res["timeNano"]) // 1_000_000_000 == int(res["timeSecond"])
    assert int(res["timeNano"]) // 1_000_000 == body["time"]  # one clock reading, as in the docs sample
    # every envelope carries the wall clock; the data stays on the recording's (replay) clock
    _, body, _ = await get(ex, "/v5/market/orderbook", category="linear", symbol=SYM)
    assert before // 1_000_000 <= body["time"] <= time.time_ns() // 1_000_000
    assert body["result"]["ts"] < 1_800_000_000_000 and abs(body["result"]["ts"] - body["time"]) > 86_400_000


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


SERVED = ("BTCUSDT", "XBTUSDT", "YBTUSDT")


async def test_instruments_paging_with_cursor_visits_every_trading_symbol_once(tmp_path):
    rec = multi_symbol_recording(tmp_path, 300, SERVED[1:])
    async with ExchangeServer(recording=rec, speed=0) as ex:
        _, body, _ = await get(ex, "/v5/market/instruments-info", category="linear")
        all_syms = [r["symbol"] for r in envelope_ok(body)["list"]]
        assert all_syms == sorted(SERVED)  # exactly the served symbols, no data-less extras
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
        assert envelope_ok(body)["list"] == []  # nothing served is closed
        # every listed symbol answers market data
        for sym in all_syms:
            for path, params in (("/v5/market/orderbook", {}), ("/v5/market/kline", {"interval": "1"}),
                                 ("/v5/market/recent-trade", {}), ("/v5/market/tickers", {})):
                _, body, _ = await get(ex, path, category="linear", symbol=sym, **params)
                res = envelope_ok(body)
                assert res.get("s", res.get("symbol")) == sym or res["list"][0]["symbol"] == sym, (path, sym)


MARKET_DATA = [("/v5/market/orderbook", {}), ("/v5/market/kline", {"interval": "1"}),
               ("/v5/market/recent-trade", {}), ("/v5/market/tickers", {})]


@pytest.mark.parametrize("path,params", MARKET_DATA)
@pytest.mark.parametrize("category,symbol", [("linear", "ETHUSDT"), ("linear", "NOPEUSDT"), ("spot", SYM),
                                             ("inverse", SYM), ("option", SYM)])
async def test_unlisted_symbol_or_unserved_category_is_bybits_error(ex, path, params, category, symbol):
    """Only what instruments-info lists is served. Bybit answers a symbol it does not list in the
    category with HTTP 200, retCode 10001 (PROTOCOL.md 6.7: request parameter error) and retMsg
    "Not supported symbols" (a real answer, quoted in ccxt's bybit error map), in the error envelope of
    the real sample rest_error_10001_illegal_category__roq.json; never with another category's data."""
    err = sample("rest_error_10001_illegal_category__roq.json")
    _, body, _ = await get(ex, "/v5/market/instruments-info", category=category)
    assert symbol not in [r["symbol"] for r in envelope_ok(body)["list"]]
    status, body, _ = await get(ex, path, category=category, symbol=symbol, **params)
    assert status == 200 and set(body) == set(err)
    assert (body["retCode"], body["retMsg"], body["result"]) == (err["retCode"], "Not supported symbols", {})


async def test_unserved_category_lists_nothing(ex):
    for cat in ("spot", "inverse", "option"):
        for path in ("/v5/market/instruments-info", "/v5/market/tickers"):
            _, body, _ = await get(ex, path, category=cat)
            res = envelope_ok(body)
            assert res["category"] == cat and res["list"] == [], (cat, path)


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


def _candles(trades: list[dict], shift_ms: int) -> dict[int, list]:
    """1-minute OHLCV of ``trades`` (recording order) with every T shifted by ``shift_ms``. As the
    exchange's candles always did, a candle opens at the previous candle's close (its high/low count
    that open), the first one at its first trade."""
    out: dict[int, list] = {}
    last: Decimal | None = None
    for t in trades:
        start = (t["T"] + shift_ms) // 60_000 * 60_000
        p, v = Decimal(t["p"]), Decimal(t["v"])
        o = p if last is None or start in out else last
        last = p
        c = out.setdefault(start, [o, o, o, o, Decimal(0)])
        c[1], c[2], c[3], c[4] = max(c[1], p), min(c[2], p), p, c[4] + v
    return out


async def test_kline_history_is_there_right_after_start():
    """The daemon asks for kline_history bars at start-up (default 200); the exchange used to have
    none yet. Now it has what the recording implies: the candles of all its trades (345 s: 7 one-minute
    bars), in place before the first replayed frame, so the replay continues them."""
    from daemon.bybit.rest import BybitRest
    from daemon.config import RestConfig
    from daemon.core.instrument import btcusdt_linear
    from daemon.exchange.recording import load_recording

    rec = load_recording()
    trades = [t for _, f in rec.frames if f["topic"].startswith("publicTrade.") for t in f["data"]]
    shift = -(rec.last_ts - rec.first_ts + 1000)  # one loop earlier (loop_gap_ms=1000)
    want = _candles(trades, shift)
    assert len(want) == 7
    async with ExchangeServer(speed=0, loop=False) as ex:  # nobody subscribed: the replay has not moved
        _, body, _ = await get(ex, "/v5/market/kline", category="linear", symbol=SYM, interval="1", limit="1000")
        rows = envelope_ok(body)["list"][::-1]  # oldest first
        first_data_ts = ex.frames[0][1]["ts"]
        # every closed history candle is exactly the recording's, in time before the replayed data
        closed = sorted(want)[:-1]
        assert [int(r[0]) for r in rows[: len(closed)]] == closed
        for r in rows[: len(closed)]:
            o, h, lo, c, v = want[int(r[0])]
            assert (Decimal(r[1]), Decimal(r[2]), Decimal(r[3]), Decimal(r[4]), Decimal(r[5])) == (o, h, lo, c, v)
            assert int(r[0]) + 60_000 <= first_data_ts
        starts = [int(r[0]) for r in rows]
        assert all(b - a == 60_000 for a, b in zip(starts, starts[1:]))
        # the daemon's own client, asking kline_history=5 bars as the daemon does at start, gets 5
        async with BybitRest(ex.rest_url, RestConfig(timeout_s=3.0)) as rest:
            kl = await rest.klines("linear", btcusdt_linear(), "1", 5)
        assert len(kl) == 5 and sum(k.confirm for k in kl) == 4
