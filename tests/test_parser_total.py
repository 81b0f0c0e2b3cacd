"""The parser's contract is total: whatever bytes arrive, ``FrameParser.parse`` returns events or a
Control, or raises ``FrameError`` (counted) -- no other exception, on the C scanner path and on the
pure-Python path, for any msgspec version we allow (0.23 raises ``msgspec.DecodeError`` for invalid
UTF-8 where 0.19-0.22 raised ``UnicodeDecodeError``; a deep nest raises ``RecursionError``).

Oracles: the contract itself (the exception type), the error counters (one per rejected frame), and
Python's own ``bytes.decode('utf-8')`` / ``json.loads`` deciding which inputs are valid at all.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.bybit.messages import Control, FrameError, FrameParser
from daemon.core.book import fastbook
from daemon.core.instrument import btcusdt_linear
from daemon.exchange.faults import MALFORMED_KINDS, malformed_frame
from daemon.recording import bundled_recording

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRADE = (b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Buy",'
         b'"v":"0.010","p":"61800.20","i":"a","seq":3}]}')
BOOK = (b'{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1723161444633,"data":{"s":"BTCUSDT",'
        b'"b":[["61694.00","7.894"]],"a":[["61694.10","0.716"]],"u":6040,"seq":77},"cts":1723161444630}')
TICKER = b'{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1,"data":{"symbol":"BTCUSDT","lastPrice":"61800.20"}}'
KLINE = (b'{"topic":"kline.1.BTCUSDT","type":"snapshot","ts":5,"data":[{"start":0,"end":59999,"interval":"1",'
         b'"open":"100.0","close":"101.0","high":"102.0","low":"99.0","volume":"2.081","confirm":true}]}')
ACK = b'{"success":true,"ret_msg":"","conn_id":"c","req_id":"s1","op":"subscribe"}'
GOOD = [TRADE, BOOK, TICKER, KLINE, ACK]
BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"]


def _paths():
    out = [pytest.param("python", id="pure-python")]
    out.append(pytest.param("c", id="c-scanner", marks=pytest.mark.skipif(fastbook is None, reason="C scanner not built")))
    return out


def _parser(path: str) -> FrameParser:
    p = FrameParser({"BTCUSDT": btcusdt_linear()})
    if path == "python":  # exactly what MMD_PURE_PYTHON=1 gives the parser: no scanner
        p._scanner = p._scan = None
    else:
        assert p._scan is not None
    return p


def _outcome(p: FrameParser, raw) -> str:
    """'ok' or the FrameError kind; any other exception fails the test (the contract)."""
    try:
        out = p.parse(raw, 1)
    except FrameError as e:
        assert e.sample is not None
        return e.kind
    assert type(out) is list or isinstance(out, Control)
    return "ok"


def _invalid_utf8_variants():
    """Each good frame with invalid UTF-8 spliced into a string value, a key, and between tokens."""
    for frame in GOOD:
        for bad in BAD_UTF8:
            for v in (
                frame.replace(b'BTCUSDT"', b'BTC' + bad + b'USDT"', 1) if b'BTCUSDT"' in frame else bad + frame,
                frame.replace(b'":"', b'":"' + bad, 1),  # at the start of the first string value
                frame.replace(b'"op"', b'"o' + bad + b'p"', 1).replace(b'"ts"', b'"t' + bad + b's"', 1),  # a key
                frame[:1] + bad + frame[1:],  # between tokens
                bad + frame,
                frame + bad,
                bad,
            ):
                assert v != frame
                yield v


@pytest.mark.parametrize("path", _paths())
def test_invalid_utf8_is_a_counted_frame_error_never_another_exception(path):
    p = _parser(path)
    frames = list(_invalid_utf8_variants())
    kinds = [_outcome(p, f) for f in frames]
    # the oracle for "invalid": Python's own UTF-8 decoder refuses every one of these inputs
    assert all(_not_utf8(f) for f in frames)
    assert "ok" not in kinds, [f for f, k in zip(frames, kinds) if k == "ok"][:3]
    assert set(kinds) == {"malformed_json"}
    assert sum(p.errors.values()) == len(frames) and p.errors["malformed_json"] == len(frames)
    # and the parser is not poisoned: good frames still parse
    assert [_outcome(p, f) for f in GOOD] == ["ok"] * len(GOOD)


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@pytest.mark.parametrize("path", _paths())
def test_str_frames_with_lone_surrogates_and_hostile_shapes(path):
    """A str frame can hold what no UTF-8 byte string can (lone surrogates); deep nesting makes
    recursive decoders raise RecursionError; numbers past 64 bits overflow the C book's fields."""
    p = _parser(path)
    deep = '{"topic":"publicTrade.BTCUSDT","data":' + "[" * 5000 + "]" * 5000 + "}"
    cases = {
        '{"topic":"publicTrade.BTCUSDT","x":"\ud800"}': "malformed_json",
        "\udcff": "malformed_json",
        '{"x":' + "[" * 1000: "malformed_json",
        deep: "malformed_json",
        '{"op":"subscribe","args":' + "[" * 3000 + "]" * 3000 + "}": "malformed_json",
        "": "malformed_json",
        "\x00": "malformed_json",
    }
    for field in ("u", "seq"):
        for v in (2**63, 2**64, 10**30, -(2**63) - 1):
            cases[BOOK.decode().replace(f'"{field}":{6040 if field == "u" else 77}', f'"{field}":{v}')] = "bad_value"
    for field, old in (("ts", "1723161444633"), ("cts", "1723161444630")):
        cases[BOOK.decode().replace(f'"{field}":{old}', f'"{field}":{2**63}')] = "bad_value"
    cases[TRADE.decode().replace('"T":1', f'"T":{2**63}')] = "bad_value"
    cases[TRADE.decode().replace('"seq":3', f'"seq":{2**70}')] = "bad_value"
    got = {raw: _outcome(p, raw) for raw in cases}
    assert got == cases
    # the largest signed 64-bit value is still a valid sequence number
    (ev,) = p.parse(BOOK.replace(b'"seq":77', b'"seq":%d' % (2**63 - 1)), 1)
    assert ev.seq == 2**63 - 1


@pytest.mark.parametrize("path", _paths())
def test_every_exchange_fault_frame_is_a_frame_error(path):
    p = _parser(path)
    kinds = {k: _outcome(p, malformed_frame(k, "BTCUSDT", 1, 2, "61800.20", 3)) for k in MALFORMED_KINDS}
    assert "ok" not in kinds.values(), kinds
    assert kinds["invalid_utf8"] == kinds["binary"] == kinds["deep_nesting"] == "malformed_json"
    assert kinds["huge_int"] == "bad_value"


def _recording_frames(n: int) -> list[bytes]:
    out = []
    with gzip.open(bundled_recording(), "rb") as f:
        for line in f:
            out.append(line.rstrip(b"\n").split(b" ", 1)[1])
            if len(out) >= n:
                break
    return out


REAL = _recording_frames(400)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(REAL), st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=4)),
                                       min_size=1, max_size=4), st.sampled_from(["python", "c"]))
def test_mutated_real_frames_never_raise_anything_but_frame_error(frame, edits, path):
    if path == "c" and fastbook is None:
        path = "python"
    p = _parser(path)
    b = bytearray(frame)
    for pos, junk in edits:
        i = pos % (len(b) + 1)
        b[i:i + len(junk)] = junk
    _outcome(p, bytes(b))
    _outcome(p, bytes(b).decode("utf-8", "surrogateescape"))  # the same frame as a str


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw):
    for path in ("python", "c") if fastbook is not None else ("python",):
        _outcome(_parser(path), raw)


def test_contract_holds_with_mmd_pure_python():
    """The same corpus in a fresh interpreter with MMD_PURE_PYTHON=1 (no C at all)."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from daemon.core.book import fastbook; assert fastbook is None\n"
        "from tests.test_parser_total import _invalid_utf8_variants, _outcome, GOOD\n"
        "from daemon.bybit.messages import FrameParser\n"
        "from daemon.core.instrument import btcusdt_linear\n"
        "p = FrameParser({'BTCUSDT': btcusdt_linear()}); assert p._scan is None\n"
        "ks = [_outcome(p, f) for f in _invalid_utf8_variants()]\n"
        "assert set(ks) == {'malformed_json'}, set(ks)\n"
        "assert [_outcome(p, f) for f in GOOD] == ['ok'] * len(GOOD)\n"
        "print(len(ks))\n" % ROOT
    )
    env = dict(os.environ, MMD_PURE_PYTHON="1")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split()[-1]) == len(list(_invalid_utf8_variants()))
