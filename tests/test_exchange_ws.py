"""Websocket side of the embedded exchange, with a plain ``websockets`` client: control frames,
book streams checked by an independent reference applier, looping, and every fault on the wire."""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal

import pytest
import websockets

from daemon.exchange.faults import MALFORMED_KINDS, FaultPlan
from daemon.exchange.server import ExchangeServer, ExchangeThread
from test_exchange_support import RefBook, bundled_lines, recv_json, recv_until, small_recording, subscribe

SYM = "BTCUSDT"
OB50 = f"orderbook.50.{SYM}"


@pytest.fixture
def rec300(tmp_path):
    return small_recording(tmp_path, 300)


@pytest.fixture
def rec3000(tmp_path):
    return small_recording(tmp_path, 3000, "r3000.bybit")


def connect(server: ExchangeServer, path: str | None = None):
    url = server.ws_url if path is None else f"ws://127.0.0.1:{server.port}{path}"
    return websockets.connect(url, max_size=None, ping_interval=None, max_queue=None)


async def test_ack_shape_per_req_id_pong_and_rejections(rec300):
    async with ExchangeServer(recording=rec300, speed=0) as ex, connect(ex) as ws:
        await ws.send(json.dumps({"op": "subscribe", "req_id": "a", "args": [OB50, f"publicTrade.{SYM}"]}))
        await ws.send(json.dumps({"op": "ping", "req_id": "p1"}))
        await ws.send(json.dumps({"op": "subscribe", "req_id": "b", "args": ["liquidation.BTCUSDT"]}))
        await ws.send(json.dumps({"op": "subscribe", "req_id": "c", "args": [f"tickers.{SYM}"] * 1 +
                                  [f"kline.{i}.{SYM}" for i in (1, 3, 5, 15, 30, 60)] + [
                                      f"orderbook.1.{SYM}", f"orderbook.200.{SYM}", f"orderbook.1000.{SYM}",
                                      f"publicTrade.{SYM}"]}))
        await ws.send(json.dumps({"op": "subscribe", "req_id": "d", "args": [OB50]}))
        await ws.send(json.dumps({"op": "ping"}))
        ctrl = []
        while len(ctrl) < 6:
            m = await recv_json(ws)
            if "success" in m:
                ctrl.append(m)
        a, pong, b, c, d, pong2 = ctrl
        conn_id = a["conn_id"]
        assert a == {"success": True, "ret_msg": "", "conn_id": conn_id, "req_id": "a", "op": "subscribe"}
        assert pong == {"success": True, "ret_msg": "pong", "conn_id": conn_id, "req_id": "p1", "op": "ping"}
        assert pong2["req_id"] == "" and pong2["op"] == "ping" and pong2["ret_msg"] == "pong"
        assert b == {"success": False, "ret_msg": "error:handler not found,topic:liquidation.BTCUSDT",
                     "conn_id": conn_id, "req_id": "b", "op": "subscribe"}
        assert c["success"] is False and c["ret_msg"] == "args size >10" and c["req_id"] == "c"
        assert d["success"] is False and d["ret_msg"] == f"error:already subscribed,topic:{OB50}"


async def test_spot_path_acks_with_subscribe_and_unknown_symbol_is_rejected(rec300):
    async with ExchangeServer(recording=rec300, speed=0) as ex, connect(ex, "/v5/public/spot") as ws:
        ack = await subscribe(ws, [f"publicTrade.{SYM}"])
        assert ack["success"] is True and ack["ret_msg"] == "subscribe"
        ack = await subscribe(ws, ["orderbook.50.NOPEUSDT"], "r2")
        assert ack["success"] is False and "orderbook.50.NOPEUSDT" in ack["ret_msg"]
        ack = await subscribe(ws, ["orderbook.7.BTCUSDT"], "r3")
        assert ack["success"] is False


async def test_snapshot_then_contiguous_deltas_exactly_50_levels_and_equal_to_exchange_book(rec3000):
    async with ExchangeServer(recording=rec3000, speed=0, loop=True) as ex, connect(ex) as ws:
        ack = await subscribe(ws, [OB50])
        assert ack["success"]
        ref = RefBook()
        first = await recv_json(ws)
        assert first["topic"] == OB50 and first["type"] == "snapshot"
        assert set(first) == {"topic", "type", "ts", "data", "cts"}
        assert set(first["data"]) == {"s", "b", "a", "u", "seq"}
        ref.apply(first)
        assert len(ref.bids) == len(ref.asks) == 50
        n = 0
        last_seq = first["data"]["seq"]
        while n < 300:
            m = await recv_json(ws)
            assert m["topic"] == OB50 and m["type"] == "delta"
            assert m["data"]["u"] == ref.u + 1
            assert m["data"]["seq"] > last_seq
            last_seq = m["data"]["seq"]
            ref.apply(m)
            n += 1
            assert len(ref.bids) == 50 and len(ref.asks) == 50 and not ref.crossed()
        ex.pause()
        await ex.wait_paused()
        u, bids, asks = ex.book(SYM, 50)
        while ref.u < u:
            ref.apply(await recv_json(ws))
        assert ref.u == u
        assert ref.levels() == (bids, asks)
        # and after resuming the stream continues where it stopped
        ex.resume()
        m = await recv_json(ws)
        assert m["data"]["u"] == u + 1


async def test_depth_1_200_1000_streams(rec3000):
    async with ExchangeServer(recording=rec3000, speed=0, loop=False) as ex, connect(ex) as ws:
        topics = [f"orderbook.1.{SYM}", f"orderbook.200.{SYM}", f"orderbook.1000.{SYM}"]
        assert (await subscribe(ws, topics))["success"]
        refs = {t: RefBook() for t in topics}
        counts = dict.fromkeys(topics, 0)
        while min(counts.values()) < 100:
            m = await recv_json(ws)
            t = m["topic"]
            if t == topics[0]:
                assert m["type"] == "snapshot" and len(m["data"]["b"]) == 1 == len(m["data"]["a"])
            ref = refs[t]
            if ref.u is not None:
                assert m["data"]["u"] == ref.u + 1
            ref.apply(m)
            counts[t] += 1
        # 200/1000 are served from the recording's 50 levels (documented): the same book, own u counters
        b200, a200 = refs[topics[1]].levels()
        assert len(b200) == 50


async def test_unsubscribe_stops_data(rec3000):
    async with ExchangeServer(recording=rec3000, speed=0, loop=False) as ex, connect(ex) as ws:
        await subscribe(ws, [OB50, f"publicTrade.{SYM}"])
        await recv_until(ws, lambda m: m.get("topic") == f"publicTrade.{SYM}")
        await ws.send(json.dumps({"op": "unsubscribe", "req_id": "u1", "args": [OB50]}))
        ack, _ = await recv_until(ws, lambda m: m.get("op") == "unsubscribe")
        assert ack["success"] is True and ack["req_id"] == "u1"
        for _ in range(200):
            m = await recv_json(ws)
            assert m["topic"] == f"publicTrade.{SYM}"


async def test_loop_boundary_over_the_wire(rec300):
    async with ExchangeServer(recording=rec300, speed=0, loop=True) as ex, connect(ex) as ws:
        await subscribe(ws, [OB50, f"publicTrade.{SYM}", f"orderbook.1.{SYM}"])
        ref = RefBook()
        snapshots = 0
        last_seq = {}
        last_ts = {}
        ids: set[str] = set()
        ob1_u = None
        while snapshots < 4:  # the subscription snapshot, then one per loop start
            m = await recv_json(ws)
            t = m["topic"]
            if t == OB50:
                if m["type"] == "snapshot":
                    snapshots += 1
                if ref.u is not None:
                    assert m["data"]["u"] == ref.u + 1  # contiguous across loops, snapshot included
                ref.apply(m)
                assert len(ref.bids) == 50 and len(ref.asks) == 50
                seq = m["data"]["seq"]
            elif t == f"orderbook.1.{SYM}":
                if ob1_u is not None:
                    assert m["data"]["u"] == ob1_u + 1
                ob1_u = m["data"]["u"]
                seq = m["data"]["seq"]
            else:
                for tr in m["data"]:
                    assert tr["i"] not in ids
                    ids.add(tr["i"])
                seq = m["data"][-1]["seq"]
            assert seq >= last_seq.get(t, 0) and m["ts"] >= last_ts.get(t, 0)
            if t != f"publicTrade.{SYM}":
                assert seq > last_seq.get(t, 0)
            last_seq[t], last_ts[t] = seq, m["ts"]
        assert ex.loops_completed >= 3
        assert ids and ob1_u is not None


async def test_gap_fault_shows_a_u_jump(rec3000):
    async with ExchangeServer(recording=rec3000, speed=0, loop=False, faults=FaultPlan(gap_every=40)) as ex, \
            connect(ex) as ws:
        await subscribe(ws, [OB50])
        snap = await recv_json(ws)
        u = snap["data"]["u"]
        jumps = 0
        for _ in range(100):
            m = await recv_json(ws)
            if m["data"]["u"] != u + 1:
                assert m["data"]["u"] == u + 2
                jumps += 1
            u = m["data"]["u"]
        assert jumps >= 2 and ex.faults_injected["gap"] >= jumps


async def test_crossed_fault_crosses_the_client_book(rec3000):
    async with ExchangeServer(recording=rec3000, speed=0, loop=False, faults=FaultPlan(crossed_after=5)) as ex, \
            connect(ex) as ws:
        await subscribe(ws, [OB50])
        ref = RefBook()
        crossed_at = []
        for i in range(30):
            m = await recv_json(ws)
            ref.apply(m)
            if ref.crossed():
                crossed_at.append(i)
                break
        assert crossed_at == [6]  # snapshot + 5 clean deltas, then the crossed one
        assert ex.faults_injected["crossed"] == 1
        # the exchange's own book is never crossed
        _, bids, asks = ex.book(SYM, 50)
        assert Decimal(bids[0][0]) < Decimal(asks[0][0])


async def test_malformed_frames_arrive_raw(rec3000):
    async with ExchangeServer(recording=rec3000, speed=0, loop=False, faults=FaultPlan(malformed_every=10)) as ex, \
            connect(ex) as ws:
        await subscribe(ws, [f"publicTrade.{SYM}"])
        # decode=False: a text frame that is not UTF-8 would otherwise fail this client's connection
        frames = [await asyncio.wait_for(ws.recv(decode=False), 5) for _ in range(300)]
    kinds = set()
    for raw in frames:
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            kinds.add("binary" if raw.startswith(b"\x00") else "invalid_utf8")
            assert raw.startswith(b"\x00") or raw.startswith(b'{"topic":"publicTrade'), raw[:40]
            continue
        try:
            m = json.loads(text)
        except RecursionError:
            kinds.add("deep_nesting")
            continue
        except ValueError:
            kinds.add("truncated" if text.startswith('{"topic":"publicTrade') else "invalid_json")
            continue
        if isinstance(m, list):
            kinds.add("array")
        elif m["topic"].startswith("liquidation."):
            kinds.add("unknown_topic")
        elif "data" not in m:
            kinds.add("missing_data")
        elif m["topic"] == OB50 and m["data"].get("seq") == 2**63:
            kinds.add("huge_int")
        elif m["topic"] == OB50:
            assert "u" not in m["data"]
            kinds.add("missing_field")
        elif any(len(t["p"].split(".")[1]) == 3 for t in m["data"]):
            kinds.add("off_grid")
    assert kinds == set(MALFORMED_KINDS)
    assert ex.faults_injected["malformed"] >= len(MALFORMED_KINDS)


async def test_injected_malformed_kind_one_shot(rec3000):
    async with ExchangeServer(recording=rec3000, speed=0, loop=False) as ex, connect(ex) as ws:
        await subscribe(ws, [f"publicTrade.{SYM}"])
        ex.inject("malformed", malformed_kind="array")
        for _ in range(50):
            if (await asyncio.wait_for(ws.recv(), 5)).startswith("["):
                break
        else:
            raise AssertionError("array frame never arrived")
        assert ex.faults_injected["malformed"] == 1


async def test_drop_after_n_frames_closes_the_socket(rec3000):
    async with ExchangeServer(recording=rec3000, speed=0, faults=FaultPlan(drop_after=25)) as ex, connect(ex) as ws:
        await subscribe(ws, [OB50])
        got = 0
        with pytest.raises(websockets.ConnectionClosed) as ei:
            while True:
                await recv_json(ws)
                got += 1
        assert got == 25
        assert ei.value.rcvd is None  # no close frame: an abrupt drop (1006)
        assert ex.faults_injected["drop"] == 1


async def test_inject_drop_closes_current_connections(rec3000):
    async with ExchangeServer(recording=rec3000, speed=0) as ex, connect(ex) as ws:
        await subscribe(ws, [OB50])
        await recv_json(ws)
        ex.inject("drop")
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(10_000):
                await recv_json(ws)
        assert ex.faults_injected["drop"] == 1


@pytest.mark.parametrize("pongs", [True, False])
async def test_stall_silences_data_keeps_socket_and_continues_contiguously(rec3000, pongs):
    async with ExchangeServer(recording=rec3000, speed=0) as ex, connect(ex) as ws:
        await subscribe(ws, [OB50])
        snap = await recv_json(ws)
        u = snap["data"]["u"]
        ex.pause()
        await ex.wait_paused()
        last_u = ex.book(SYM, 50)[0]
        while u < last_u:  # drain what was sent before the stall
            u = (await recv_json(ws))["data"]["u"]
        ex.inject("stall", seconds=2.0, pongs=pongs)
        ex.resume()
        await ws.send(json.dumps({"op": "ping", "req_id": "s"}))
        if pongs:
            m = await recv_json(ws, 0.5)
            assert m["ret_msg"] == "pong"  # pong, and no data frame ahead of it
        with pytest.raises(asyncio.TimeoutError):
            await recv_json(ws, 0.4)  # silence while stalled
        assert ex.stalled
        m = await recv_json(ws, 5.0)
        assert not ex.stalled
        if not pongs:
            assert m.get("topic") == OB50  # the pong was swallowed
        assert m["data"]["u"] == u + 1  # data resumes contiguously
        assert ex.faults_injected["stall"] == 1


async def test_rejected_topic(rec300):
    plan = FaultPlan(reject_topics={f"tickers.{SYM}"})
    async with ExchangeServer(recording=rec300, speed=0, faults=plan) as ex, connect(ex) as ws:
        ack = await subscribe(ws, [f"tickers.{SYM}"])
        assert ack["success"] is False and ack["ret_msg"] == f"error:handler not found,topic:tickers.{SYM}"
        ex.inject("reject", topic=f"kline.1.{SYM}")
        ack = await subscribe(ws, [f"kline.1.{SYM}"], "r2")
        assert ack["success"] is False
        assert ex.faults_injected["reject"] == 2


async def test_tickers_and_klines_on_the_wire(rec3000):
    async with ExchangeServer(recording=rec3000, speed=0, loop=False) as ex, connect(ex) as ws:
        await subscribe(ws, [f"tickers.{SYM}", f"kline.1.{SYM}"])
        merged = None
        kl = []
        while len(kl) < 3 or merged is None:
            m = await recv_json(ws)
            if m["topic"] == f"tickers.{SYM}":
                if merged is None:
                    assert m["type"] == "snapshot"
                    merged = dict(m["data"])
                else:
                    assert m["type"] == "delta"
                    merged.update(m["data"])
                assert isinstance(m["cs"], int) and isinstance(m["ts"], int)
            else:
                (k,) = m["data"]
                assert m["type"] == "snapshot" and set(k) == {
                    "start", "end", "interval", "open", "close", "high", "low", "volume", "turnover", "confirm",
                    "timestamp"}
                kl.append(k)
        ex.pause()
        await ex.wait_paused()
        # drain: the merged ticker equals the exchange's last published state
        try:
            while True:
                m = await recv_json(ws, 0.3)
                if m["topic"] == f"tickers.{SYM}":
                    merged.update(m["data"])
        except asyncio.TimeoutError:
            pass
        assert merged == ex.market.symbols[SYM].ticker_pub


async def test_speed_paced_replay_and_wait_frames(rec3000):
    async with ExchangeServer(recording=rec3000, speed=50.0) as ex:
        n0 = ex.frames_broadcast
        n = await ex.wait_frames(n0 + 200, timeout=10)
        assert n >= n0 + 200
        ex.pause()
        await ex.wait_paused()
        a = ex.frames_broadcast
        await asyncio.sleep(0.2)
        assert ex.frames_broadcast == a  # paused clock
        ex.resume()
        await ex.wait_frames(a + 10, timeout=10)


async def test_two_clients_share_one_market_clock(rec3000):
    async with ExchangeServer(recording=rec3000, speed=0, loop=False) as ex, connect(ex) as w1, connect(ex) as w2:
        await subscribe(w1, [OB50])
        await subscribe(w2, [OB50])
        s1 = await recv_json(w1)
        s2 = await recv_json(w2)
        ex.pause()
        await ex.wait_paused()
        u = ex.book(SYM, 50)[0]
        r1, r2 = RefBook(), RefBook()
        r1.apply(s1)
        r2.apply(s2)
        while r1.u < u:
            r1.apply(await recv_json(w1))
        while r2.u < u:
            r2.apply(await recv_json(w2))
        assert r1.levels() == r2.levels() == ex.book(SYM, 50)[1:]


def test_background_thread_mode(rec300):
    with ExchangeThread(recording=rec300, speed=0) as ex:
        assert threading.current_thread() is threading.main_thread()

        async def client():
            async with connect(ex) as ws:
                ack = await subscribe(ws, [OB50])
                snap = await recv_json(ws)
                return ack, snap

        ack, snap = asyncio.run(client())
        assert ack["success"] and snap["type"] == "snapshot"


async def test_bad_client_requests_get_failure_acks_and_keep_the_socket(rec300):
    async with ExchangeServer(recording=rec300, speed=0) as ex, connect(ex) as ws:
        await ws.send("{nope")
        m = await recv_json(ws)
        assert m["success"] is False and m["conn_id"]
        await ws.send(json.dumps({"op": "fly", "req_id": "f"}))
        m = await recv_json(ws)
        assert m["success"] is False and m["req_id"] == "f" and "fly" in m["ret_msg"]
        await ws.send(json.dumps({"op": "subscribe", "req_id": "s", "args": "orderbook.50.BTCUSDT"}))
        m = await recv_json(ws)
        assert m["success"] is False and m["req_id"] == "s"
        await ws.send(json.dumps({"op": "unsubscribe", "req_id": "x", "args": [OB50]}))
        m = await recv_json(ws)
        assert m["success"] is False and m["op"] == "unsubscribe" and OB50 in m["ret_msg"]
        ack = await subscribe(ws, [OB50])  # still usable
        assert ack["success"] is True
        assert (await recv_json(ws))["type"] == "snapshot"


async def test_speed_zero_waits_for_a_subscriber_and_stops_when_not_looping(rec300):
    async with ExchangeServer(recording=rec300, speed=0, loop=False) as ex:
        n0 = ex.frames_broadcast
        await asyncio.sleep(0.2)
        assert ex.frames_broadcast == n0  # nobody listens: the clock does not run
        async with connect(ex) as ws:
            await subscribe(ws, [f"publicTrade.{SYM}"])
            await asyncio.wait_for(ex.finished.wait(), 5)
        # 300 recorded frames; trades sharing a timestamp go out as one frame (see the trade tests)
        n = 300 - sum(len(g) - 1 for g in _trade_groups(_trade_frames_of(bundled_lines(300))))
        assert n < 300 and ex.frames_broadcast == n and ex.loops_completed == 1
        assert await ex.wait_frames(10_000) == n  # returns at once after the end


async def test_rest_orderbook_u_is_the_1000_level_stream_u(rec3000):
    import aiohttp

    async with ExchangeServer(recording=rec3000, speed=0, loop=True) as ex, connect(ex) as ws:
        await subscribe(ws, [f"orderbook.1000.{SYM}"])
        ref = RefBook()
        ref.apply(await recv_json(ws))
        for _ in range(20):
            ref.apply(await recv_json(ws))
        ex.pause()
        await ex.wait_paused()
        async with aiohttp.ClientSession() as s:
            async with s.get(ex.rest_url + "/v5/market/orderbook",
                             params={"category": "linear", "symbol": SYM, "limit": "1000"}) as r:
                res = (await r.json())["result"]
        while ref.u < res["u"]:
            ref.apply(await recv_json(ws))
        assert ref.u == res["u"]
        assert ref.levels() == ([tuple(x) for x in res["b"]], [tuple(x) for x in res["a"]])


def test_thread_mode_inject_through_call(rec3000):
    th = ExchangeThread(recording=rec3000, speed=0)
    ex = th.start()
    try:
        th.call(ex.inject, "gap")

        async def client():
            async with connect(ex) as ws:
                await subscribe(ws, [OB50])
                u = (await recv_json(ws))["data"]["u"]
                for _ in range(20):
                    nu = (await recv_json(ws))["data"]["u"]
                    if nu != u + 1:
                        return nu - u
                    u = nu
                return 1

        assert asyncio.run(client()) == 2
        assert th.call(lambda: ex.faults_injected["gap"]) == 1
    finally:
        th.stop()


async def test_stall_after_n_frames_from_the_plan(rec3000):
    plan = FaultPlan(stall_after=500, stall_seconds=1.0)
    async with ExchangeServer(recording=rec3000, speed=0, faults=plan) as ex, connect(ex) as ws:
        await subscribe(ws, [f"publicTrade.{SYM}"])
        for _ in range(200):
            if ex.stalled:
                break
            await recv_json(ws)
        assert ex.stalled and ex.faults_injected["stall"] == 1
        n = ex.frames_broadcast
        assert n >= 500
        await asyncio.sleep(0.2)
        assert ex.frames_broadcast == n  # the clock stands still during the stall
        await asyncio.sleep(0.5)
        await ex.wait_frames(n + 10, timeout=5)
        assert ex.faults_injected["stall"] == 1  # one-shot


async def test_drop_once_only_drops_the_first_connection(rec3000):
    plan = FaultPlan(drop_after=5, drop_repeat=False)
    async with ExchangeServer(recording=rec3000, speed=0, faults=plan) as ex:
        async with connect(ex) as ws:
            await subscribe(ws, [OB50])
            with pytest.raises(websockets.ConnectionClosed):
                for _ in range(100):
                    await recv_json(ws)
        async with connect(ex) as ws:
            await subscribe(ws, [OB50])
            for _ in range(50):
                await recv_json(ws)
        assert ex.faults_injected["drop"] == 1


def _trade_frames_of(lines: list[bytes]) -> list[list[dict]]:
    """The recording's publicTrade frames (their trade lists), in file order."""
    out = []
    for ln in lines:
        f = json.loads(ln.split(b" ", 1)[1])
        if f["topic"].startswith("publicTrade."):
            out.append(f["data"])
    return out


def _trade_groups(recorded: list[list[dict]]) -> list[list[dict]]:
    """One-trade frames grouped as Bybit sends them: consecutive trades with equal ``T``."""
    groups: list[list[dict]] = []
    for (t,) in recorded:
        if groups and groups[-1][-1]["T"] == t["T"]:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


async def _received_trade_frames(ex: ExchangeServer) -> list[dict]:
    """Subscribe to publicTrade and collect every trade frame until the (non-looping) replay ends."""
    async with connect(ex) as ws:
        await subscribe(ws, [f"publicTrade.{SYM}"])
        got = []
        while True:
            try:
                m = await recv_json(ws, 1.0 if ex.finished.is_set() else 10.0)
            except asyncio.TimeoutError:
                return got
            if m.get("topic", "").startswith("publicTrade."):
                got.append(m)


async def test_trades_sharing_a_timestamp_come_in_one_frame_as_on_bybit(tmp_path):
    """The bundled recording carries one trade per frame; Bybit sends the fills of one match-engine
    timestamp in one message (ws_publicTrade_linear__capture2026.json: 9 fills, one T)."""
    sample = json.loads(open("/work/shared/bybit-v5/samples/ws_publicTrade_linear__capture2026.json").read())
    assert len(sample["data"]) > 1 and len({t["T"] for t in sample["data"]}) == 1
    lines = bundled_lines(3000)
    recorded = _trade_frames_of(lines)
    assert all(len(d) == 1 for d in recorded)  # the recording splits them
    groups = _trade_groups(recorded)  # the oracle
    assert any(len(g) > 1 for g in groups)
    p = tmp_path / "r.bybit"
    p.write_bytes(b"\n".join(lines) + b"\n")
    async with ExchangeServer(recording=p, speed=0, loop=False) as ex:
        got = await _received_trade_frames(ex)
    assert got
    first = got[0]["data"][0]["i"]
    start = next(k for k, g in enumerate(groups) if g[0]["i"] == first)  # frames before the subscribe primed the market
    want = groups[start:]
    assert [[t["i"] for t in f["data"]] for f in got] == [[t["i"] for t in g] for g in want]
    assert sum(len(f["data"]) > 1 for f in got) > 10
    for f in got:
        assert set(f) == set(sample) and f["type"] == sample["type"] == "snapshot"
        assert all(set(t) == set(sample["data"][0]) for t in f["data"])
        assert len({t["T"] for t in f["data"]}) == 1 and f["ts"] >= f["data"][0]["T"]


async def test_a_recording_that_already_batches_trades_is_passed_through(tmp_path):
    lines = bundled_lines(600)
    idx = [k for k, ln in enumerate(lines) if b'"topic":"publicTrade.' in ln]
    # join two adjacent trade frames of different T, well after the priming frames, into one
    k = next(k for k in idx[40:] if k + 1 in idx and
             json.loads(lines[k].split(b" ", 1)[1])["data"][0]["T"] != json.loads(lines[k + 1].split(b" ", 1)[1])["data"][0]["T"])
    a, b = (json.loads(lines[j].split(b" ", 1)[1]) for j in (k, k + 1))
    a["data"] += b["data"]
    lines[k] = lines[k].split(b" ", 1)[0] + b" " + json.dumps(a, separators=(",", ":")).encode()
    del lines[k + 1]
    recorded = _trade_frames_of(lines)
    assert any(x[0]["T"] == y[0]["T"] for x, y in zip(recorded, recorded[1:]))  # adjacent same-T frames stay split
    p = tmp_path / "batched.bybit"
    p.write_bytes(b"\n".join(lines) + b"\n")
    async with ExchangeServer(recording=p, speed=0, loop=False) as ex:
        got = await _received_trade_frames(ex)
    ids = [[t["i"] for t in f["data"]] for f in got]
    want = [[t["i"] for t in d] for d in recorded]
    assert ids == want[len(want) - len(ids):]  # exactly as recorded (after the priming frames)
    assert [t["i"] for t in a["data"]] in ids


def test_pongs_overtake_a_flood_at_speed_zero():
    """pybit's client timed out (~2.4 s) waiting for a pong behind the speed-0 flood: everything
    queued for the connection, and the MBs Linux lets a loopback socket buffer, went out first.
    A slow client (1 ms per message, a small receive buffer of its own) flooded by every BTCUSDT
    topic must get each pong (Bybit's {"op":"ping"} and the protocol ping) with few frames ahead.
    Before control frames went ahead of data and the send buffer was capped: ~10,000 frames, 11-14 s."""
    import socket
    import time

    async def client(port: int, url: str) -> list[tuple[float, int]]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # the client's side stays small
        sock.connect(("127.0.0.1", port))
        out = []
        async with websockets.connect(url, sock=sock, max_size=None, ping_interval=None, compression=None,
                                      max_queue=1) as ws:
            await ws.send(json.dumps({"op": "subscribe", "req_id": "s", "args": [
                OB50, f"orderbook.1.{SYM}", f"orderbook.200.{SYM}", f"publicTrade.{SYM}", f"tickers.{SYM}"]}))
            for k in range(4):
                for _ in range(300):  # let the flood fill every buffer
                    await ws.recv()
                    time.sleep(0.001)
                sent = time.monotonic()
                proto = await ws.ping() if k % 2 else None
                if proto is None:
                    await ws.send(json.dumps({"op": "ping", "req_id": f"p{k}"}))
                ahead = 0
                while True:
                    m = json.loads(await ws.recv())
                    time.sleep(0.001)
                    if (proto is None and m.get("ret_msg") == "pong") or (proto is not None and proto.done()):
                        break
                    ahead += 1
                out.append((time.monotonic() - sent, ahead))
        return out

    # a deep send queue (queue_high 2000 frames): a pong must not wait behind it either
    with ExchangeThread(speed=0, loop=True, queue_high=2000) as ex:
        got = asyncio.run(client(ex.port, ex.ws_url))
    assert len(got) == 4
    for latency, ahead in got:
        assert ahead < 1000 and latency < 2.0, got
