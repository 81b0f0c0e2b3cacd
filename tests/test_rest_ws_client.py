"""The daemon's REST and websocket clients against the embedded exchange (real servers on loopback):
instruments paging, klines, error classes, subscribe batching, the frame size cap, and `mmd record`."""

from __future__ import annotations

import asyncio
import random

import pytest

from daemon.bybit.messages import FrameParser
from daemon.bybit.rest import BybitRest, BybitRestError
from daemon.bybit.stream import PublicStream, SubscriptionRejected, topics_for
from daemon.config import RestConfig, WsConfig
from daemon.core.events import BookUpdate
from daemon.core.instrument import btcusdt_linear
from daemon.exchange.server import ExchangeServer
from daemon.recording import RecordingWriter, load_instruments, read_frames
from test_exchange_support import multi_symbol_recording

FAST = RestConfig(backoff_base_s=0.01, backoff_max_s=0.02, ban_backoff_s=0.05, timeout_s=3.0, max_retries=2)


async def test_instruments_follow_the_cursor_and_klines_come_oldest_first(tmp_path):
    # two served symbols (instruments-info lists only what is served), so limit=1 takes two pages
    async with ExchangeServer(recording=multi_symbol_recording(tmp_path, 4000, ("XBTUSDT",)), speed=50.0) as ex:
        await ex.wait_frames(3000)
        async with BybitRest(ex.rest_url, FAST) as rest:
            one_page = await rest.instruments("linear", limit=1000)
            paged = await rest.instruments("linear", limit=1)
            assert len(one_page) > 1 and paged.keys() == one_page.keys()
            assert rest.stats["requests"] == 1 + len(paged)
            btc = paged["BTCUSDT"]
            assert btc == btcusdt_linear()  # the real filters, exactly
            kl = await rest.klines("linear", btc, "1", 50)
            assert kl and all(a.start_ms < b.start_ms for a, b in zip(kl, kl[1:]))
            assert not kl[-1].confirm and all(k.confirm for k in kl[:-1])
            assert all(k.low <= min(k.open, k.close) and k.high >= max(k.open, k.close) for k in kl)
            ob = await rest.orderbook("linear", "BTCUSDT", 50)
            assert ob["b"] and ob["a"] and float(ob["b"][0][0]) < float(ob["a"][0][0])
            assert await rest.tickers("linear", "BTCUSDT")
            assert await rest.recent_trades("linear", "BTCUSDT", 10)


async def test_parameter_errors_fail_at_once_and_retries_give_up():
    async with ExchangeServer(speed=50.0) as ex:
        async with BybitRest(ex.rest_url, FAST, rng=random.Random(1)) as rest:
            with pytest.raises(BybitRestError) as ei:
                await rest.get("/v5/market/orderbook", {"category": "nope", "symbol": "BTCUSDT"})
            assert ei.value.ret_code == 10001 and rest.stats["requests"] == 1
            ex.inject("rest", fault="500", count=10)
            with pytest.raises(BybitRestError) as ei:
                await rest.get("/v5/market/time")
            assert "giving up after 3 attempts" in str(ei.value)
            assert rest.stats["retry_http_500"] == 3
    for attempt in range(6):
        assert 0 <= BybitRest("http://x", RestConfig(backoff_base_s=0.5, backoff_max_s=4)).backoff(attempt) <= min(4, 0.5 * 2**attempt)


async def _stream(ex, cfg, topics, on_events=None):
    parser = FrameParser({"BTCUSDT": btcusdt_linear()})
    events: list = []
    st = PublicStream(ex.ws_url, topics, parser, on_events or events.extend, cfg=cfg)
    return st, parser, events


async def test_subscribe_is_batched_to_the_args_limit():
    topics = topics_for(["BTCUSDT"], 50, ["publicTrade", "tickers", "kline", "orderbook.1"])
    assert len(topics) == 5
    async with ExchangeServer(speed=50.0, max_args=2) as ex:
        st, parser, events = await _stream(ex, WsConfig(args_per_request=2), topics)
        task = asyncio.create_task(st.run())
        await asyncio.wait_for(st.connected.wait(), 10)
        await asyncio.sleep(0.3)
        assert any(type(e) is BookUpdate for e in events)
        await st.stop()
        await asyncio.wait_for(task, 5)
        # the same topics in one request exceed the server's cap: a clear, fatal rejection
        st2, _, _ = await _stream(ex, WsConfig(args_per_request=10), topics)
        with pytest.raises(SubscriptionRejected) as ei:
            await asyncio.wait_for(st2.run(), 10)
        assert "args size" in ei.value.ret_msg and set(ei.value.topics) == set(topics)


async def test_oversized_frames_are_refused_counted_and_reconnected():
    cfg = WsConfig(max_frame_bytes=1024, reconnect_base_s=0.05, reconnect_max_s=0.1)
    async with ExchangeServer(speed=50.0) as ex:
        st, parser, events = await _stream(ex, cfg, ["orderbook.50.BTCUSDT"])
        task = asyncio.create_task(st.run())
        # the reader counts too_large when the socket closes; run() counts the reconnect after the
        # session unwinds, a moment later: wait for both (ceiling 20 s), not for the first only
        for _ in range(400):
            if parser.errors["too_large"] >= 2 and st.stats["reconnects"] >= 2:
                break
            await asyncio.sleep(0.05)
        assert parser.errors["too_large"] >= 2 and st.stats["reconnects"] >= 2
        assert not any(type(e) is BookUpdate for e in events)  # a 50-level snapshot is > 1 KiB
        await st.stop()
        await asyncio.wait_for(task, 5)


async def test_record_writes_replayable_rotating_files(tmp_path):
    from daemon.app import App
    from daemon.config import load_settings

    async with ExchangeServer(speed=50.0) as ex:
        s = load_settings(overrides={"market": {"rest_url": ex.rest_url, "ws_url": ex.ws_url},
                                     "ops": {"metrics_port": 0}})
        writer = RecordingWriter(tmp_path / "rec", rotate=True, max_bytes=200_000)
        app = App(s, trade=False, recorder=writer)
        task = asyncio.create_task(app.run())
        for _ in range(400):
            if writer.frames > 3000 and len(writer.files) >= 2:
                break
            await asyncio.sleep(0.05)
        app.request_stop("test")
        assert await asyncio.wait_for(task, 10) == 0
    assert len(writer.files) >= 2
    frames = list(read_frames(writer.files))
    assert len(frames) == writer.frames
    assert all(a[0] <= b[0] for a, b in zip(frames, frames[1:]))  # receive times in order
    assert load_instruments(writer.files, ["BTCUSDT"])["BTCUSDT"] == btcusdt_linear()
    from daemon.config import load_settings as ls
    from daemon.replay import replay

    out = replay(writer.files, ls(), trade=False)
    assert out["symbols"]["BTCUSDT"]["book_state"] == "LIVE" and out["parse_errors"] == {}


def test_retry_delay_is_capped_jittered_and_safe_for_any_attempt():
    """The reconnect loop and the start-up retries may retry for days: the delay stays in
    ``[cap/2, cap]`` with ``cap = min(max, base * 2**attempt)`` (by hand below) for every attempt;
    the inline form it replaces, ``base * 2**attempt``, raises OverflowError past ~1,024 attempts."""
    import random

    from daemon.backoff import retry_delay

    rng = random.Random(3)
    for attempt, cap in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (1100, 30.0), (10**6, 30.0)]:
        for _ in range(50):
            d = retry_delay(rng, attempt, 0.5, 30.0)
            assert cap / 2 <= d <= cap, (attempt, d)
    with pytest.raises(OverflowError):
        0.5 * (2**1100)  # noqa: B018 - what the unbounded form did
