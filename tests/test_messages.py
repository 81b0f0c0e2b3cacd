"""Frame parser: real samples parse; every kind of bad frame is a counted FrameError, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.bybit.messages import Control, FrameError, FrameParser
from daemon.core.events import BUY, SELL, BookUpdate, Kline, TickerUpdate, Trade
from daemon.core.instrument import Grid, Instrument, OffGridError, btcusdt_linear

SAMPLES = Path("/work/shared/bybit-v5/samples")
if not SAMPLES.exists():  # CI clones shared/ beside the repo
    SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "bybit-v5" / "samples"


def sample(name: str) -> bytes:
    return json.dumps(json.loads((SAMPLES / name).read_text())).encode()


@pytest.fixture
def parser() -> FrameParser:
    return FrameParser({"BTCUSDT": btcusdt_linear()})


def test_grid_exact_conversion():
    g = Grid("0.10")
    assert g.to_int("61800.20") == 618002
    assert g.to_int("61800.2") == 618002
    assert g.to_int("61800") == 618000
    assert g.to_int("61800.200000") == 618002
    assert g.to_str(618002) == "61800.20"
    with pytest.raises(OffGridError):
        g.to_int("61800.25")
    for bad in ["-1.0", "+1.0", " 1.0", "1_0.0", "", "abc", "1e5", "nan"]:
        with pytest.raises(ValueError):
            g.to_int(bad)
    q = Grid("0.001")
    assert q.to_int("2.507") == 2507 and q.to_int("0") == 0 and q.to_str(2507) == "2.507"
    assert Grid("5").to_int("15") == 3


@pytest.mark.skipif(not SAMPLES.exists(), reason="shared samples not available")
def test_real_samples(parser):
    (snap,) = parser.parse(sample("ws_orderbook50_linear_snapshot__capture2026.json"), 7)
    assert isinstance(snap, BookUpdate) and snap.snapshot and snap.depth == 50 and snap.recv_ns == 7
    assert snap.bids[0][0] > snap.asks[0][0] - 100000
    (delta,) = parser.parse(sample("ws_orderbook50_linear_delta__capture2026.json"), 8)
    assert not delta.snapshot and delta.u == snap.u + 1
    trades = parser.parse(sample("ws_publicTrade_linear__capture2026.json"), 9)
    assert trades and all(isinstance(t, Trade) and t.side in (BUY, SELL) for t in trades)
    (tk,) = parser.parse(sample("ws_tickers_linear_perp_snapshot__docs.json"), 10)
    assert isinstance(tk, TickerUpdate) and tk.snapshot and tk.data["fundingRate"] == "-0.005"
    ack = parser.parse(sample("ws_subscribe_ack_linear__capture2026.json"), 0)
    assert isinstance(ack, Control) and ack.success and ack.op == "subscribe" and not ack.is_pong
    pong = parser.parse(sample("ws_pong_linear__docs.json"), 0)
    assert isinstance(pong, Control) and pong.is_pong
    assert parser.parse(sample("ws_pong_option__docs.json"), 0).is_pong
    fail = parser.parse(sample("ws_subscribe_fail_unknown_topic__testnet2026.json"), 0)
    assert not fail.success and "handler not found" in fail.ret_msg
    opt = parser.parse(sample("ws_subscribe_ack_option__docs.json"), 0)
    assert opt.success and opt.fail_topics == []
    assert sum(parser.errors.values()) == 0


def test_kline_frame(parser):
    frame = {
        "topic": "kline.1.BTCUSDT", "type": "snapshot", "ts": 5,
        "data": [{"start": 0, "end": 59999, "interval": "1", "open": "100.0", "close": "101.0", "high": "102.0",
                  "low": "99.0", "volume": "2.081", "turnover": "1", "confirm": True, "timestamp": 5}],
    }
    (k,) = parser.parse(json.dumps(frame), 1)
    assert isinstance(k, Kline) and k.high == 1020 and k.low == 990 and k.confirm and k.volume == 2.081


BAD = [
    ("malformed_json", b'{"topic":"orderbook.50.BTCUSDT","type":"delta","da'),
    ("malformed_json", b"\xff\xfe garbage"),
    # invalid UTF-8 inside a string value of an otherwise valid frame (msgspec raises UnicodeDecodeError)
    ("malformed_json", b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTC\xffUSDT","b":[],"a":[],"u":2}}'),
    ("malformed_json", b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"1.0","i":"\xff"}]}'),
    ("not_an_object", b'[1,2,3]'),
    ("unknown_topic", b'{"topic":"liquidation.BTCUSDT","type":"snapshot","ts":1,"data":{}}'),
    ("unknown_symbol", b'{"topic":"orderbook.50.ETHUSDT","type":"snapshot","ts":1,"data":{"s":"ETHUSDT","b":[],"a":[],"u":1}}'),
    ("missing_field", b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[]}}'),
    ("missing_field", b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1}'),
    ("bad_value", b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[["61800.123","1"]],"a":[],"u":2}}'),
    ("bad_value", b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[["x","1"]],"a":[],"u":2}}'),
    ("bad_value", b'{"topic":"orderbook.50.BTCUSDT","type":"weird","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":2}}'),
    ("bad_value", b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"ETHUSDT","b":[],"a":[],"u":2}}'),
    ("bad_value", b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Hold","v":"1","p":"1.0"}]}'),
    ("bad_value", b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":"x","data":{"s":"BTCUSDT","b":[],"a":[],"u":2}}'),
    ("missing_field", b'{"hello":"world"}'),
]


@pytest.mark.parametrize("kind,frame", BAD)
def test_bad_frames_are_counted_errors(parser, kind, frame):
    with pytest.raises(FrameError) as ei:
        parser.parse(frame, 0)
    assert ei.value.kind == kind, str(ei.value)
    assert parser.errors[kind] == 1
    assert ei.value.sample  # a sample for the rate-limited log line


def test_frame_size_cap():
    p = FrameParser({"BTCUSDT": btcusdt_linear()}, max_frame_bytes=1024)
    with pytest.raises(FrameError) as ei:
        p.parse(b"{" + b" " * 2000 + b"}", 0)
    assert ei.value.kind == "too_large" and p.errors["too_large"] == 1


def test_parser_survives_garbage_then_parses_good_frames(parser):
    good = b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"0.010","p":"61800.20","i":"a","seq":3}]}'
    for _, frame in BAD:
        with pytest.raises(FrameError):
            parser.parse(frame, 0)
    (t,) = parser.parse(good, 5)
    assert t.side == BUY and t.price == 618002 and t.qty == 10 and t.trade_id == "a"
    assert sum(parser.errors.values()) == len(BAD)


def test_instrument_from_bybit_row():
    row = json.loads((SAMPLES / "rest_instruments_linear_btcusdt__docs.json").read_text()) if SAMPLES.exists() else None
    if row is None:
        pytest.skip("samples missing")
    lst = row["result"]["list"]
    inst = Instrument.from_bybit("linear", lst[0])
    assert inst.symbol == "BTCUSDT" and inst.price.step_float > 0 and inst.min_qty_lots >= 1
