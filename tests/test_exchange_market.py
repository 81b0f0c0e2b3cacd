"""Pure tests of the exchange's market state (no network): recording loading, book topics, looping,
tickers, klines, the synthetic stream."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from daemon.exchange.market import Market, next_funding_time
from daemon.exchange.recording import RecordingError, load_recording, parse_lines
from daemon.exchange.synth import synth_frames, synth_lines, write_synth
from test_exchange_support import RefBook, bundled_lines, small_recording

SYM = "BTCUSDT"


@pytest.fixture(scope="module")
def bundled():
    return load_recording()


def test_bundled_recording_loads_with_expected_content(bundled):
    assert len(bundled.frames) == 39470
    assert bundled.symbols == [SYM]
    assert bundled.book_depths == {SYM: [1, 50]}
    assert bundled.bad_lines == 0 and bundled.u_gaps == 0
    assert 340_000 < bundled.span_ms < 350_000
    assert bundled.max_seq > bundled.min_seq


def test_bad_lines_are_errors_with_line_numbers_or_counted(tmp_path):
    good = bundled_lines(3)
    bad = good[:1] + [b"12345 {not json", b"nospace", b'99 [1,2]', b'77 {"no":"topic"}'] + good[1:]
    with pytest.raises(RecordingError, match=":2:"):
        parse_lines(bad)
    rec = parse_lines(bad, skip_bad=True)
    assert rec.bad_lines == 4 and len(rec.frames) == 3
    with pytest.raises(RecordingError, match="no frames"):
        parse_lines([b"", b"  "])
    # a hole in the recorded u sequence is counted at load
    lines = [ln for ln in bundled_lines(60) if b"orderbook.50" in ln]
    assert parse_lines(lines).u_gaps == 0
    assert parse_lines(lines[:3] + lines[4:]).u_gaps == 1
    # plain and gzip files load the same frames
    p = small_recording(tmp_path, 50)
    assert load_recording(p).frames == parse_lines(bundled_lines(50)).frames


def _book_msgs(market: Market, frames, loops=1, topic=f"orderbook.50.{SYM}"):
    for loop in range(loops):
        if loop:
            market.start_loop(loop)
        for _, f in frames:
            for t, p in market.apply(f, loop):
                if t == topic:
                    yield p


def test_depth50_reference_applier_keeps_exactly_50_levels_and_matches_exchange_view(bundled):
    m = Market(bundled)
    ref = RefBook()
    n = 0
    for msg in _book_msgs(m, bundled.frames):
        if ref.u is not None:
            assert msg["data"]["u"] == ref.u + 1
        ref.apply(msg)
        n += 1
        assert len(ref.bids) == 50 and len(ref.asks) == 50, msg["data"]["u"]
        assert not ref.crossed()
    assert n == 6352
    u, bids, asks = m.symbols[SYM].topic_view(50)
    assert u == ref.u
    assert (bids, asks) == ref.levels()
    # the depth-1 stream is snapshot-only and its u also moves by exactly 1
    _, b1, a1 = m.symbols[SYM].topic_view(1)
    assert len(b1) == len(a1) == 1


def test_loop_boundary_keeps_u_contiguous_and_seq_ts_ids_increasing(tmp_path):
    rec = load_recording(small_recording(tmp_path, 300))
    m = Market(rec, loop_gap_ms=1000)
    per_topic_u: dict[str, list[int]] = {}
    per_topic_seq: dict[str, list[int]] = {}
    types: dict[str, list[str]] = {}
    ts_list: dict[str, list[int]] = {}
    trade_ids: list[str] = []
    trade_T: list[int] = []
    for loop in range(3):
        if loop:
            m.start_loop(loop)
        for _, f in rec.frames:
            for topic, p in m.apply(f, loop):
                if topic.startswith("orderbook."):
                    per_topic_u.setdefault(topic, []).append(p["data"]["u"])
                    per_topic_seq.setdefault(topic, []).append(p["data"]["seq"])
                    types.setdefault(topic, []).append(p["type"])
                    ts_list.setdefault(topic, []).append(p["ts"])
                elif topic.startswith("publicTrade."):
                    for tr in p["data"]:
                        trade_ids.append(tr["i"])
                        trade_T.append(tr["T"])
    for topic, us in per_topic_u.items():
        assert us == list(range(us[0], us[0] + len(us))), topic
        seqs = per_topic_seq[topic]
        assert all(a < b for a, b in zip(seqs, seqs[1:])), topic
    # depth 50: exactly one snapshot per loop (the recording's own snapshot re-seeds the book)
    t50 = types[f"orderbook.50.{SYM}"]
    assert t50.count("snapshot") == 3 and t50[0] == "snapshot"
    for topic, tss in ts_list.items():
        assert all(a <= b for a, b in zip(tss, tss[1:])), topic
    assert all(a <= b for a, b in zip(trade_T, trade_T[1:]))
    assert len(set(trade_ids)) == len(trade_ids)


def test_window_topic_from_deeper_recording_keeps_exactly_n_levels(tmp_path):
    # a 200-level synthetic recording: depth 50 and 1 are windows, 1000 forwards the 200 levels
    p = tmp_path / "s200.bybit"
    write_synth(p, 800, seed=3, depth=200)
    rec = load_recording(p)
    assert rec.book_depths == {SYM: [200]}
    m = Market(rec)
    st = m.symbols[SYM]
    assert {d: t.mode for d, t in st.topics.items()} == {1: "window", 50: "window", 200: "native", 1000: "forward"}
    ref50, ref200 = RefBook(), RefBook()
    n1 = 0
    for _, f in rec.frames:
        for topic, msg in m.apply(f):
            if topic == f"orderbook.50.{SYM}":
                if ref50.u is not None:
                    assert msg["data"]["u"] == ref50.u + 1
                ref50.apply(msg)
                assert len(ref50.bids) == 50 and len(ref50.asks) == 50
            elif topic == f"orderbook.200.{SYM}":
                ref200.apply(msg)
            elif topic == f"orderbook.1.{SYM}":
                n1 += 1
                assert msg["type"] == "snapshot" and len(msg["data"]["b"]) == 1 == len(msg["data"]["a"])
        if ref50.u is not None:
            b200, a200 = ref200.levels()
            assert ref50.levels() == (b200[:50], a200[:50])
    assert n1 > 10
    assert st.topic_view(50)[1:] == tuple(ref50.levels())


def test_ticker_snapshot_then_deltas_merge_to_state_and_are_throttled(bundled):
    m = Market(bundled)
    merged: dict = {}
    last_ts = None
    kinds = []
    for _, f in bundled.frames[:8000]:
        for topic, p in m.apply(f):
            if topic != f"tickers.{SYM}":
                continue
            kinds.append(p["type"])
            if p["type"] == "snapshot":
                merged = dict(p["data"])
            else:
                assert p["data"]["symbol"] == SYM and len(p["data"]) >= 2
                changed = {k for k, v in p["data"].items() if k != "symbol"}
                assert all(merged[k] != p["data"][k] for k in changed)  # only fields that changed
                merged.update(p["data"])
            if last_ts is not None:
                assert p["ts"] - last_ts >= 100
            last_ts = p["ts"]
            assert set(p) == {"topic", "type", "data", "cs", "ts"}
    assert kinds[0] == "snapshot" and kinds.count("snapshot") == 1 and len(kinds) > 100
    st = m.symbols[SYM]
    assert merged == st.ticker_pub
    assert Decimal(merged["bid1Price"]) < Decimal(merged["ask1Price"])
    assert merged["fundingIntervalHour"] == "8" and merged["fundingRate"] == "0.0001"
    assert int(merged["nextFundingTime"]) % (8 * 3600 * 1000) == 0
    mid = (Decimal(merged["bid1Price"]) + Decimal(merged["ask1Price"])) / 2
    assert Decimal(merged["markPrice"]) == mid


def test_next_funding_time_grid():
    h = 3600 * 1000
    assert next_funding_time(0) == 8 * h
    assert next_funding_time(8 * h - 1) == 8 * h
    assert next_funding_time(8 * h) == 16 * h
    assert next_funding_time(23 * h) == 24 * h


def test_klines_close_once_per_minute_and_sum_trades(bundled):
    m = Market(bundled)
    closed = []
    vol = Decimal(0)
    for _, f in bundled.frames:
        for topic, p in m.apply(f):
            if topic == f"kline.1.{SYM}":
                (k,) = p["data"]
                assert k["end"] == k["start"] + 59_999 and k["interval"] == "1"
                if k["confirm"]:
                    closed.append(k)
            elif topic == f"publicTrade.{SYM}":
                vol += sum(Decimal(t["v"]) for t in p["data"])
    starts = [k["start"] for k in closed]
    assert starts == sorted(set(starts)) and all(b - a == 60_000 for a, b in zip(starts, starts[1:]))
    # every minute boundary crossed by the data closes exactly one candle
    assert len(closed) == bundled.last_ts // 60_000 - bundled.first_ts // 60_000 == 6
    rest = m.rest_klines("linear", SYM, 1, None, None, 1000)["list"]
    assert [int(r[0]) for r in rest] == sorted((int(r[0]) for r in rest), reverse=True)  # newest first
    assert all(len(r) == 7 and all(isinstance(x, str) for x in r) for r in rest)
    assert sum(Decimal(r[5]) for r in rest) == vol
    for r in rest:
        o, h, lo, c = map(Decimal, r[1:5])
        assert lo <= min(o, c) <= max(o, c) <= h
    # 5-minute candles hold the same volume
    assert sum(Decimal(r[5]) for r in m.rest_klines("linear", SYM, 5, None, None, 1000)["list"]) == vol
    # start/end filters
    mid = int(rest[2][0])
    sub = m.rest_klines("linear", SYM, 1, mid, mid, 10)["list"]
    assert [int(r[0]) for r in sub] == [mid]


def test_synth_stream_is_valid_and_deterministic():
    n = 5000
    ref = RefBook()
    last_seq = 0
    last_ts = 0
    trades_seen = 0
    ids = set()
    pending_trade = None
    for ns, f in synth_frames(n, seed=7):
        if f["topic"].startswith("orderbook"):
            if ref.u is not None:
                assert f["data"]["u"] == ref.u + 1
            assert f["data"]["seq"] >= last_seq
            last_seq = f["data"]["seq"]
            ref.apply(f)
            assert len(ref.bids) == 50 and len(ref.asks) == 50
            assert not ref.crossed()
            for p, s in f["data"]["b"] + f["data"]["a"]:
                assert len(p.split(".")[1]) == 2 and (Decimal(p) * 10) % 1 == 0
                assert s == "0" or len(s.split(".")[1]) == 3
            pending_trade = None
        else:
            assert pending_trade is None, "a trade batch must be followed by its book delta"
            for t in f["data"]:
                assert t["i"] not in ids
                ids.add(t["i"])
                px = Decimal(t["p"])
                if t["S"] == "Buy":
                    assert px >= min(ref.asks) and px in ref.asks  # at/through the ask side
                else:
                    assert px <= max(ref.bids) and px in ref.bids
                trades_seen += 1
            pending_trade = f
        assert f["ts"] >= last_ts
        last_ts = f["ts"]
    assert trades_seen > 500
    a = b"".join(synth_lines(300, seed=11))
    assert a == b"".join(synth_lines(300, seed=11)) != b"".join(synth_lines(300, seed=12))
    # the lines parse back as a recording
    rec = parse_lines(a.split(b"\n"))
    assert len(rec.frames) == 300 and rec.book_depths == {SYM: [50]}
    assert orjson.loads(a.split(b"\n")[0].split(b" ", 1)[1])["type"] == "snapshot"
