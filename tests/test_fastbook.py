"""The C fast path (daemon/core/_fastbook.c) against the pure-Python reference it accelerates.

* the C ``OrderBook`` and ``PyOrderBook`` fed the same streams (valid and invalid) agree on every
  return value and every readable field after every update;
* the C orderbook scanner either declines a frame (None: the msgspec path takes it) or returns
  exactly the event the msgspec path returns, over the real recording, generated frames and
  fuzzed/mutated frames; it never accepts a frame the msgspec path rejects;
* the whole replay journal is identical with ``MMD_PURE_PYTHON=1`` (no C at all).
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from daemon.bybit.messages import FrameError, FrameParser
from daemon.core.book import FAST_PATH, PyOrderBook, fastbook
from daemon.core.events import BookUpdate
from daemon.core.instrument import Instrument, btcusdt_linear
from daemon.recording import bundled_recording

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(fastbook is None and os.environ.get("MMD_PURE_PYTHON", "") not in ("", "0"),
                                reason="MMD_PURE_PYTHON set: the C path is switched off on purpose")


def test_the_c_extension_is_built():
    """The product's fast path must exist where the tests run (CI installs with a compiler). Without
    it mmd still works, on the pure-Python book and parser, but several times slower."""
    assert FAST_PATH, "daemon.core._fastbook is not built: `pip install -e .` needs a C compiler (gcc)"


# -- the book ---------------------------------------------------------------------------------


def _ev(snapshot, bids, asks, u, seq=0, t=0):
    return BookUpdate("X", 0, snapshot, bids, asks, u, seq, t, t + 1, t + 2)


def _state(book, probes):
    return (
        int(book.state), book.reason, book.live, book.last_u, book.last_seq, book.ts_ms, book.cts_ms, book.recv_ns,
        book.updates, book.best_bid, book.best_ask, book.best_bid_size(), book.best_ask_size(), len(book),
        book.bid_levels(), book.ask_levels(), book.bid_levels(2), book.ask_levels(0), book.bid_prices(),
        book.ask_prices(), [book.top_depth(k) for k in (0, 1, 3, 100)], [book.top_of_book(k) for k in (0, 1, 3, 100)],
        [book.size_at(side, p) for side in (1, -1) for p in probes],
    )


level = st.tuples(st.integers(90, 110), st.integers(-2, 9))


@st.composite
def streams(draw):
    depth = draw(st.sampled_from([1, 2, 5, 50]))
    frames = []
    u = 0
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["snap", "next", "next", "next", "same", "gap", "back", "reset"]))
        u = {"snap": u + 1, "next": u + 1, "same": u, "gap": u + draw(st.integers(2, 5)), "back": max(0, u - 2),
             "reset": 1}[kind]
        seq = draw(st.sampled_from([0, 0, 1000 + u, 999]))
        frames.append((kind == "snap", draw(st.lists(level, max_size=8)), draw(st.lists(level, max_size=8)), u, seq))
    return depth, frames


@settings(max_examples=500, deadline=None)
@given(streams())
def test_c_book_equals_python_book_on_any_stream(stream):
    depth, frames = stream
    c = fastbook.OrderBook("X", depth)
    py = PyOrderBook("X", depth)
    probes = list(range(88, 113))
    assert _state(c, probes) == _state(py, probes)
    for i, (snap, b, a, u, seq) in enumerate(frames):
        if i == 1:
            c.request_sync()
            py.request_sync()
        ev = _ev(snap, b, a, u, seq, t=i * 10)
        assert c.apply(ev) is py.apply(ev)  # the same Applied member
        assert _state(c, probes) == _state(py, probes)
        assert c.check_stale(now_ns=i * 10 + 2 + 5_000_000, max_age_ms=4) == py.check_stale(i * 10 + 2 + 5_000_000, 4)
        assert _state(c, probes) == _state(py, probes)
    c.invalidate("bye")
    py.invalidate("bye")
    assert _state(c, probes) == _state(py, probes)


def test_c_book_refuses_bad_levels_without_changing():
    c = fastbook.OrderBook("X", 5)
    c.apply(_ev(True, [(99, 1)], [(101, 1)], 1))
    before = (c.bid_levels(), c.ask_levels(), c.last_u)
    with pytest.raises(TypeError):
        c.apply(_ev(False, [(98, 1)], [("x", 1)], 2))
    with pytest.raises(OverflowError):
        c.apply(_ev(False, [(98, 1)], [(1 << 62, 1)], 2))
    with pytest.raises(ValueError):
        c.apply(_ev(False, [(98, 1, 3)], [], 2))
    assert (c.bid_levels(), c.ask_levels(), c.last_u) == before
    assert c.apply(_ev(False, [(98, 1)], [], 2)).name == "OK"


# -- the scanner --------------------------------------------------------------------------------


def _parsers(instruments):
    fast = FrameParser(instruments)
    ref = FrameParser(instruments)
    ref._scan = None  # the msgspec path only
    assert fast._scan is not None
    return fast, ref


def _parse(parser, raw):
    try:
        return parser.parse(raw, 42)
    except FrameError as e:
        return ("error", e.kind)


def _norm(out):
    if isinstance(out, list):
        return [(type(e).__name__, {k: (list(map(tuple, v)) if k in ("bids", "asks") else v)
                                    for k, v in ((f, getattr(e, f)) for f in e.__struct_fields__)}) for e in out]
    return out


def _same(fast_parser, ref_parser, raw):
    """The scanner's answer, if any, equals the reference path's; returns whether it answered."""
    got = fast_parser._scan(raw, 42)
    want = _parse(ref_parser, raw)
    if got is None:
        assert _norm(_parse(fast_parser, raw)) == _norm(want)  # declined: the same reference path
        return False
    assert isinstance(want, list), f"scanner accepted a frame the reference rejects: {raw[:200]!r} -> {want}"
    assert _norm(got) == _norm(want), raw[:200]
    return True


_FRAMES: list[bytes] = []


@pytest.fixture(scope="module")
def recording_frames():
    if not _FRAMES:
        _FRAMES.extend(line.split(b" ", 1)[1] for line in gzip.open(bundled_recording(), "rb").read().splitlines() if line)
    return _FRAMES


def test_scanner_equals_msgspec_path_on_the_whole_recording(recording_frames):
    inst = {"BTCUSDT": btcusdt_linear()}
    fast, ref = _parsers(inst)
    taken = sum(_same(fast, ref, f) for f in recording_frames)
    books = sum(1 for f in recording_frames if f.startswith(b'{"topic":"orderbook.'))
    trades = sum(1 for f in recording_frames if f.startswith(b'{"topic":"publicTrade.'))
    # every orderbook and publicTrade frame of the recording takes the C path
    assert (taken, books, trades) == (39470, 18157, 21313)
    assert (fast._scanner.frames, fast._scanner.trade_frames) == (books, trades)
    # str frames (websockets hands text frames as str) too
    for f in recording_frames[:3000]:
        _same(fast, ref, f.decode())


def test_scanner_counts_into_parser_frames(recording_frames):
    fast = FrameParser({"BTCUSDT": btcusdt_linear()})
    for f in recording_frames[:2000]:
        fast.parse(f, 0)
    ref = FrameParser({"BTCUSDT": btcusdt_linear()})
    ref._scan = None
    for f in recording_frames[:2000]:
        ref.parse(f, 0)
    assert fast.frames == ref.frames and fast.frames["orderbook"] > 500


ODD_INST = {
    "ETHUSDT": Instrument("ETHUSDT", "linear", "0.05", "0.01"),
    "1000PEPEUSDT": Instrument("1000PEPEUSDT", "linear", "0.0000001", "100"),
}


def _frame(topic="orderbook.50.ETHUSDT", typ="delta", data=None, **extra):
    d = {"s": "ETHUSDT", "b": [["3000.05", "1.25"], ["2999.90", "0"]], "a": [["3000.10", "0.01"]], "u": 7, "seq": 99}
    if data is not None:
        d = data
    m = {"topic": topic, "type": typ, "ts": 1723100000123, "data": d, "cts": 1723100000120}
    m.update(extra)
    return json.dumps(m, separators=(",", ":")).encode()


def _trades(rows=None, topic="publicTrade.ETHUSDT", **extra):
    r = [{"T": 1723100000111, "s": "ETHUSDT", "S": "Buy", "v": "0.25", "p": "3000.05", "L": "PlusTick",
          "i": "a1b2-c3", "BT": False, "RPI": False, "seq": 77}]
    m = {"topic": topic, "type": "snapshot", "ts": 1723100000123, "data": r if rows is None else rows}
    m.update(extra)
    return json.dumps(m, separators=(",", ":")).encode()


_ROW = {"T": 5, "s": "ETHUSDT", "S": "Sell", "v": "1", "p": "3000"}

HANDMADE = [
    _trades(),
    _trades([]),
    _trades([_ROW, dict(_ROW, S="Buy", BT=True, i="x", seq=3)]),
    _trades([dict(_ROW, S="Hold")]),
    _trades([dict(_ROW, s="BTCUSDT")]),
    _trades([dict(_ROW, p="3000.01")]),  # off grid
    _trades([dict(_ROW, v="0.001")]),  # off the lot grid
    _trades([dict(_ROW, BT=None)]),
    _trades([dict(_ROW, BT=1)]),
    _trades([dict(_ROW, T=5.0)]),
    _trades([dict(_ROW, i=5)]),
    _trades([dict(_ROW, i="\u00e9")]),
    _trades([{k: v for k, v in _ROW.items() if k != "T"}]),
    _trades([{k: v for k, v in _ROW.items() if k != "S"}]),
    _trades([_ROW, 5]),
    _trades({"T": 5}),
    _trades(topic="publicTrade.BTCUSDT"),
    _trades(type=None),
    _trades(type="delta"),
    _trades(ts="x"),
    b'{"data":[{"T":5,"s":"ETHUSDT","S":"Buy","v":"1","p":"3000"}],"topic":"publicTrade.ETHUSDT"}',
    b'{"topic":"publicTrade.ETHUSDT","data":[{"T":5,"s":"ETHUSDT","S":"Buy","v":"1","p":"3000","p":"3001"}]}',
    b'{"topic":"publicTrade.ETHUSDT","data":[{"T":5,"s":"ETHUSDT","S":"Buy","v":"1","p":"3000"}],}',
    b'{"topic":"publicTrade.ETHUSDT","data":[{"T":5,"s":"ETHUSDT","S":"Buy","v":"1","p":"3000","i":"\xff"}]}',
    _frame(),
    _frame(typ="snapshot"),
    _frame(typ="update"),  # bad type: reference raises, scanner declines
    _frame(topic="orderbook.50.BTCUSDT"),  # not configured here
    _frame(topic="orderbook.7.ETHUSDT"),  # not a Bybit depth
    _frame(data={"s": "ETHUSDT", "b": [["3000.03", "1"]], "a": [], "u": 8}),  # off the 0.05 grid
    _frame(data={"s": "ETHUSDT", "b": [["3000.050000", "1.200"]], "a": [], "u": 8}),  # trailing zeros: fine
    _frame(data={"s": "ETHUSDT", "b": [["3000", "1"]], "a": [], "u": 8}),  # no decimals: fine
    _frame(data={"s": "ETHUSDT", "b": [["3000.", "1"]], "a": [], "u": 8}),
    _frame(data={"s": "ETHUSDT", "b": [[".05", "1"]], "a": [], "u": 8}),
    _frame(data={"s": "ETHUSDT", "b": [["-3000", "1"]], "a": [], "u": 8}),
    _frame(data={"s": "ETHUSDT", "b": [["3e3", "1"]], "a": [], "u": 8}),
    _frame(data={"s": "ETHUSDT", "b": [["99999999999999999999", "1"]], "a": [], "u": 8}),  # >= 2**62 ticks
    _frame(data={"s": "ETHUSDT", "b": [["230584300921369395.20", "1"]], "a": [], "u": 8}),
    _frame(data={"s": "ETHUSDT", "b": [["3000.05", "1", "x"]], "a": [], "u": 8}),
    _frame(data={"s": "ETHUSDT", "b": [["3000.05"]], "a": [], "u": 8}),
    _frame(data={"s": "ETHUSDT", "b": [[3000.05, "1"]], "a": [], "u": 8}),
    _frame(data={"s": "ETHUSDT", "b": [], "a": [], "u": 8.0}),
    _frame(data={"s": "ETHUSDT", "b": [], "a": [], "u": -8}),
    _frame(data={"s": "ETHUSDT", "b": [], "a": [], "u": 8, "seq": None}),
    _frame(data={"s": "ETHUSDT", "b": [], "a": [], "u": 8, "extra": {"x": [1, 2.5e-3, None, True]}}),
    _frame(data={"s": "ETHUSDT", "b": [], "a": []}),  # no u
    _frame(data={"s": "BTCUSDT", "b": [], "a": [], "u": 8}),  # symbol mismatch
    _frame(data={"b": [], "a": [], "u": 8}),  # no s
    _frame(data=[]),
    _frame(ts=None),
    _frame(ts=1.5),
    _frame(ts=123456789012345678901),
    _frame(id="abc", creationTime=1),
    _frame(topic="orderbook.1.1000PEPEUSDT", typ="snapshot",
           data={"s": "1000PEPEUSDT", "b": [["0.0123456", "1200"]], "a": [["0.0123457", "100"]], "u": 1, "seq": 5}),
    _frame(topic="orderbook.1.1000PEPEUSDT", typ="snapshot",
           data={"s": "1000PEPEUSDT", "b": [["0.0123456", "1250"]], "a": [], "u": 1}),  # off the 100 lot grid
    b'{"data":{"s":"ETHUSDT","b":[],"a":[["3000.10","2"]],"u":9},"type":"delta","topic":"orderbook.50.ETHUSDT"}',
    b' { "topic" : "orderbook.50.ETHUSDT" ,\n"type":"delta","data":{"s":"ETHUSDT","b":[ ],"a":[],"u":9} } ',
    b'{"topic":"orderbook.50.ETHUSDT","type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":9}}x',
    b'{"topic":"orderbook.50.ETHUSDT","topic":"orderbook.50.ETHUSDT","type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":9}}',
    b'{"topic":"orderbook.50.ETHUSDT","type":"delta","data":{"s":"ETHUSDT","b":[],"b":[],"a":[],"u":9}}',
    b'{"topic":"orderbook.50.ETH\\u0055SDT","type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":9}}',
    b'{"topic":"orderbook.50.ETHUSDT","type":"delta","data":{"s":"ETHUSDT","b":[["3000.05","1"],],"a":[],"u":9}}',
    b'{"topic":"orderbook.50.ETHUSDT","type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":09}}',
    b'{"topic":"orderbook.50.ETHUSDT","type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":9},"x":"\xc3\xa9"}',
    b'{"topic":"orderbook.50.ETHUSDT","type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":9},"x":"\xff"}',
    b'{"topic":"orderbook.50.ETHUSDT","type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":9},"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}',
    b'{"topic":"orderbook.50.ETHUSDT","type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":9},"x":tru}',
    b'{"topic":"orderbook.50.ETHUSDT","type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":9},"x":-}',
    b'{"topic":"orderbook.50.ETHUSDT","type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":9}',
    b'{"topic":"orderbook.50.ETHUSDT"}',
    b'{}',
    b'[]',
    b'',
    b'{"op":"pong","success":true}',
]


HANDMADE_BOOKS: list = []


@pytest.mark.parametrize("raw", HANDMADE, ids=range(len(HANDMADE)))
def test_scanner_equals_msgspec_path_on_handmade_frames(raw):
    fast, ref = _parsers(ODD_INST)
    _same(fast, ref, raw)


def test_scanner_takes_the_plain_handmade_frames():
    fast, ref = _parsers(ODD_INST)
    assert _same(fast, ref, HANDMADE[0]) and _same(fast, ref, HANDMADE[1]) and _same(fast, ref, HANDMADE[2])
    HANDMADE_BOOKS[:] = HANDMADE[HANDMADE.index(_frame()):]
    b = HANDMADE_BOOKS
    assert _same(fast, ref, b[0]) and _same(fast, ref, b[1]) and _same(fast, ref, b[6])
    assert _same(fast, ref, b[-19]) and _same(fast, ref, b[-18])  # key order, whitespace
    assert _same(fast, ref, HANDMADE[20])  # trade: data before topic, no type


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_scanner_on_mutated_recording_frames(data):
    """Byte-level mutations of real orderbook frames: whatever the scanner accepts, the reference
    accepts with the same event."""
    books = _FRAMES[:3000]  # orderbook and publicTrade frames
    assert books, "needs the recording_frames fixture to have run (module order)"
    f = bytearray(data.draw(st.sampled_from(books)))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        i = data.draw(st.integers(0, len(f) - 1))
        ch = data.draw(st.sampled_from(b'0123456789.,:"[]{}- \\eE\x00\xffabsuq'))
        if op == "replace":
            f[i] = ch
        elif op == "insert":
            f.insert(i, ch)
        else:
            del f[i]
    fast, ref = _cached_parsers()
    _same(fast, ref, bytes(f))


_PARSERS = {}


def _cached_parsers():
    if "btc" not in _PARSERS:
        _PARSERS["btc"] = _parsers({"BTCUSDT": btcusdt_linear()})
    return _PARSERS["btc"]


decimal_str = st.one_of(
    st.from_regex(r"\A[0-9]{1,20}(\.[0-9]{0,12})?\Z"),
    st.from_regex(r"\A[-+ .0-9eE_]{0,8}\Z"),
    st.text(max_size=6),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(decimal_str, decimal_str), max_size=4), st.lists(st.tuples(decimal_str, decimal_str), max_size=4),
       st.integers(-(2**70), 2**70), st.sampled_from(["snapshot", "delta"]))
def test_scanner_on_generated_level_strings(bids, asks, u, typ):
    """Any level strings (signs, exponents, underscores, unicode digits, huge values, off-grid): the
    scanner and the reference agree on accept/reject and on the ticks/lots."""
    data = {"s": "BTCUSDT", "b": [list(x) for x in bids], "a": [list(x) for x in asks], "u": u}
    raw = json.dumps({"topic": "orderbook.50.BTCUSDT", "type": typ, "ts": 5, "data": data}).encode()
    fast, ref = _cached_parsers()
    _same(fast, ref, raw)


def test_scanner_on_generated_stream():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        from bench_marketdata import synthetic
    finally:
        sys.path.pop(0)
    fast, ref = _cached_parsers()
    frames = synthetic(3000, seed=3)
    assert sum(_same(fast, ref, f) for f in frames) == len(frames)  # orderbook and publicTrade: all taken


# -- end to end ---------------------------------------------------------------------------------


def _replay_digest(tmp_path, name, extra_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMD_")}
    env.update(extra_env)
    led = tmp_path / f"{name}.sqlite"
    r = subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--ledger", str(led), "--json", "--no-progress"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    from daemon.paper.ledger import journal_digest

    c = sqlite3.connect(str(led))
    (rid,) = c.execute("SELECT DISTINCT run_id FROM journal").fetchone()
    n = c.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
    d = journal_digest(c, rid)
    c.close()
    return d, n


def test_replay_journal_is_identical_without_the_c_path(tmp_path):
    model = os.path.join(ROOT, "daemon", "data", "adverse_btcusdt.json")
    fast = _replay_digest(tmp_path, "c", {"MMD_ADVERSE__MODEL_PATH": model})
    pure = _replay_digest(tmp_path, "py", {"MMD_ADVERSE__MODEL_PATH": model, "MMD_PURE_PYTHON": "1"})
    assert fast == pure and fast[1] > 1000


# -- inputs at the edge of int64 (issue "Survive a hostile network") ----------------------------


def test_depth_sums_past_int64_agree_with_the_python_book():
    """Each level size is < 2**62 lots, but four of them sum past int64: the C book used to
    overflow (undefined behaviour) and disagree with the Python reference, whose ints are exact."""
    big = 2**62 - 1
    levels = [(100 - i, big) for i in range(4)]
    asks = [(200 + i, big) for i in range(3)]
    c, py = fastbook.OrderBook("X", 50), PyOrderBook("X", 50)
    for b in (c, py):
        b.apply(BookUpdate("X", 50, True, levels, asks, 1, 1, 0, 0, 0))
    for k in (0, 1, 2, 3, 4, 50):
        assert c.top_depth(k) == py.top_depth(k) == (min(k, 4) * big, min(k, 3) * big)
        assert c.top_of_book(k) == py.top_of_book(k)
    assert c.top_depth(4)[0] > 2**63  # past int64, exactly


def test_a_negative_level_count_is_refused_by_both_books():
    c, py = fastbook.OrderBook("X", 50), PyOrderBook("X", 50)
    for b in (c, py):
        b.apply(BookUpdate("X", 50, True, [(100, 1), (99, 2)], [(101, 3)], 1, 1, 0, 0, 0))
        for call in (b.top_depth, b.top_of_book):
            with pytest.raises(ValueError):
                call(-1)
    # an empty change list (no scratch buffer allocated yet) is a no-op in both
    for b in (fastbook.OrderBook("X", 50), PyOrderBook("X", 50)):
        b.apply(BookUpdate("X", 50, True, [], [], 1, 1, 0, 0, 0))
        b.apply(BookUpdate("X", 50, False, [], [], 2, 2, 0, 0, 0))
        assert b.top_depth(5) == (0, 0)


@pytest.mark.parametrize("field", ["u", "seq", "ts", "cts"])
@pytest.mark.parametrize("digits", ["999999999999999999", "1000000000000000000", "9223372036854775807",
                                    "9223372036854775808", "99999999999999999999"])
def test_integers_of_18_to_20_digits_decline_the_scanner_and_agree(field, digits):
    """18 digits is the scanner's limit: a 19th digit is checked before it is multiplied in (it
    used to overflow first), the scanner declines, and the msgspec path decides: the event, or
    ``bad_value`` beyond int64 -- the same with and without the C path."""
    frame = {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1723161444633, "cts": 1723161444630,
             "data": {"s": "BTCUSDT", "b": [["61694.00", "7.894"]], "a": [["61694.10", "0.716"]], "u": 6040, "seq": 5}}
    raw = json.dumps(frame).replace(f'"{field}": {frame.get(field, frame["data"].get(field))}', f'"{field}": {digits}', 1)
    assert digits in raw
    inst = {"BTCUSDT": btcusdt_linear()}
    fast, ref = FrameParser(inst), FrameParser(inst)
    ref._scanner = ref._scan = None
    scanned = fast._scan(raw.encode(), 0)
    if len(digits) > 18:
        assert scanned is None  # declined
    out = []
    for p in (fast, ref):
        try:
            out.append(p.parse(raw.encode(), 0))
        except FrameError as e:
            out.append(e.kind)
    assert out[0] == out[1]
    assert (out[0] == "bad_value") == (int(digits) > 2**63 - 1)


@pytest.mark.parametrize("size", ["4611686018427387.903", "4611686018427387.904", "9999999999999999.999",
                                  "99999999999999999.99", "0.0000000000000000001"])
def test_sizes_at_the_grid_limit_agree_with_the_reference(size):
    frame = ('{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"cts":1,"data":{"s":"BTCUSDT",'
             '"b":[["61694.00","%s"]],"a":[["61694.10","0.716"]],"u":1,"seq":1}}' % size).encode()
    inst = {"BTCUSDT": btcusdt_linear()}
    fast, ref = FrameParser(inst), FrameParser(inst)
    ref._scanner = ref._scan = None
    out = []
    for p in (fast, ref):
        try:
            out.append(p.parse(frame, 0))
        except FrameError as e:
            out.append(e.kind)
    assert out[0] == out[1]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(50, 150), st.integers(0, 5)), min_size=65, max_size=200),
                min_size=1, max_size=5),
       st.sampled_from([5, 50]))
def test_large_deltas_take_the_batch_path_and_equal_a_naive_book(deltas, depth):
    """Deltas over BATCH_CHANGES changes are merged after one sort (C) or rebuilt by one sort
    (Python) instead of one insert each. Oracle: a naive dict applied change by change, cut to
    ``depth`` after each delta. Repeated prices within a delta (the last change wins) and deletes
    of absent prices are in the draw."""
    from daemon.core.book import BATCH_CHANGES

    assert any(len(d) > BATCH_CHANGES for d in deltas)
    c, py = fastbook.OrderBook("X", depth), PyOrderBook("X", depth)
    for b in (c, py):
        b.apply(BookUpdate("X", depth, True, [(99, 1)], [(200, 1)], 1, 1, 0, 0, 0))
    naive = {99: 1}
    for i, d in enumerate(deltas):
        ch = [(p, s) for p, s in d]
        for b in (c, py):
            b.apply(BookUpdate("X", depth, False, ch, [], i + 2, 0, 0, 0, 0))
        for p, s in ch:
            if s:
                naive[p] = s
            else:
                naive.pop(p, None)
        naive = dict(sorted(naive.items(), reverse=True)[:depth])
        want = sorted(naive.items(), reverse=True)
        assert c.bid_levels() == py.bid_levels() == want
        assert c.top_depth(depth) == py.top_depth(depth)
