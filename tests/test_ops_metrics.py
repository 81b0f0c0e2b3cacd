"""Metrics: private registries, names, pre-bound children, exposition text."""

from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from daemon.core.book import BookState
from daemon.core.events import BUY, SELL
from daemon.ops.metrics import PNL_COMPONENTS, TICK_TO_QUOTE_BUCKETS, Metrics


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(m: Metrics, name: str, **labels: str) -> float:
    return samples(m)[(name, tuple(sorted(labels.items())))]


def test_private_registries_are_independent_and_not_global():
    a, b = Metrics(), Metrics()
    a.symbol("BTCUSDT").on_quote()
    a.symbol("BTCUSDT").on_quote()
    b.symbol("BTCUSDT").on_quote()
    assert val(a, "mmd_quotes_total", symbol="BTCUSDT") == 2
    assert val(b, "mmd_quotes_total", symbol="BTCUSDT") == 1
    assert REGISTRY.get_sample_value("mmd_quotes_total", {"symbol": "BTCUSDT"}) is None


def test_every_metric_is_prefixed_and_catalogued():
    m = Metrics()
    fams = {f.name: f.type for f in m.registry.collect()}
    assert all(n.startswith("mmd_") for n in fams)
    expected = {
        "mmd_frames": "counter", "mmd_messages": "counter", "mmd_parse_errors": "counter",
        "mmd_ws_reconnects": "counter", "mmd_book_resyncs": "counter", "mmd_book_state": "gauge",
        "mmd_feed_lag_seconds": "histogram", "mmd_tick_to_quote_seconds": "histogram",
        "mmd_quotes": "counter", "mmd_fills": "counter", "mmd_position": "gauge", "mmd_pnl": "gauge",
        "mmd_p_adverse": "gauge", "mmd_risk_tripped": "gauge", "mmd_risk_gate": "info",
        "mmd_ledger_queue_depth": "gauge", "mmd_ledger_durable_lag_seconds": "gauge",
        "mmd_event_loop_lag_last_seconds": "gauge", "mmd_event_loop_lag_seconds": "histogram",
        "mmd_start_time_seconds": "gauge", "mmd_build": "info",
    }  # fmt: skip
    assert fams == expected
    # every exported name is documented in the module docstring's catalogue
    import daemon.ops.metrics as mod

    for name, typ in expected.items():
        shown = name + "_total" if typ == "counter" else name + "_info" if typ == "info" else name
        assert shown in mod.__doc__, shown


def test_symbol_children_are_cached_and_update_the_right_series():
    m = Metrics()
    s = m.symbol("BTCUSDT")
    assert m.symbol("BTCUSDT") is s
    s.on_fill(BUY)
    s.on_fill(BUY)
    s.on_fill(SELL)
    s.on_fill("sell")
    s.set_position(-0.003)
    s.set_book_state(BookState.LIVE)
    s.set_pnl(spread=1.5, inventory=-0.25, fees=-0.1, funding=0.0)
    s.set_p_adverse(bid=0.3)
    s.set_p_adverse(ask=0.7)
    s.set_p_adverse(bid=None, ask=None)  # unchanged
    s.on_resync("gap")
    s.on_resync("gap")
    s.on_resync("crossed")
    assert val(m, "mmd_fills_total", symbol="BTCUSDT", side="buy") == 2
    assert val(m, "mmd_fills_total", symbol="BTCUSDT", side="sell") == 2
    assert val(m, "mmd_position", symbol="BTCUSDT") == -0.003
    assert val(m, "mmd_book_state", symbol="BTCUSDT") == 2
    comps = {c: val(m, "mmd_pnl", symbol="BTCUSDT", component=c) for c in PNL_COMPONENTS}
    assert comps == {"spread": 1.5, "inventory": -0.25, "fees": -0.1, "funding": 0.0, "total": 1.15}
    assert val(m, "mmd_p_adverse", symbol="BTCUSDT", side="bid") == 0.3
    assert val(m, "mmd_p_adverse", symbol="BTCUSDT", side="ask") == 0.7
    assert val(m, "mmd_book_resyncs_total", symbol="BTCUSDT", reason="gap") == 2
    assert val(m, "mmd_book_resyncs_total", symbol="BTCUSDT", reason="crossed") == 1
    s.set_pnl(1.0, 2.0, -0.5, 0.25, total=99.0)  # explicit total wins
    assert val(m, "mmd_pnl", symbol="BTCUSDT", component="total") == 99.0


@pytest.mark.parametrize("bad", [0, 2, "BUY", None, "bid"])
def test_fill_side_rejects_garbage(bad):
    s = Metrics().symbol("BTCUSDT")
    with pytest.raises(ValueError, match="fill side"):
        s.on_fill(bad)


def test_topic_frames_messages_and_feed_lag():
    m = Metrics()
    t = m.topic("orderbook.50.BTCUSDT")
    assert m.topic("orderbook.50.BTCUSDT") is t
    t.on_frame(1, lag_s=0.004)
    t.on_frame(0)  # a frame that produced nothing
    m.on_frame("publicTrade.BTCUSDT", 3, lag_s=0.03)
    m.on_frame("publicTrade.BTCUSDT", 2, lag_s=-0.002)  # clock skew: lands in the first bucket
    assert val(m, "mmd_frames_total", topic="orderbook.50.BTCUSDT") == 2
    assert val(m, "mmd_messages_total", topic="orderbook.50.BTCUSDT") == 1
    assert val(m, "mmd_frames_total", topic="publicTrade.BTCUSDT") == 2
    assert val(m, "mmd_messages_total", topic="publicTrade.BTCUSDT") == 5
    assert val(m, "mmd_feed_lag_seconds_count", topic="orderbook.50.BTCUSDT") == 1
    assert val(m, "mmd_feed_lag_seconds_bucket", topic="publicTrade.BTCUSDT", le="0.001") == 1
    assert val(m, "mmd_feed_lag_seconds_bucket", topic="publicTrade.BTCUSDT", le="0.05") == 2


def test_tick_to_quote_buckets_are_fine_from_5us_to_50ms():
    assert TICK_TO_QUOTE_BUCKETS[0] == pytest.approx(5e-6)
    assert TICK_TO_QUOTE_BUCKETS[-1] == pytest.approx(50e-3)
    assert list(TICK_TO_QUOTE_BUCKETS) == sorted(set(TICK_TO_QUOTE_BUCKETS))
    assert len(TICK_TO_QUOTE_BUCKETS) >= 15
    m = Metrics()
    for x in (4e-6, 12e-6, 12e-6, 0.0009, 0.2):
        m.observe_tick_to_quote(x)
    assert val(m, "mmd_tick_to_quote_seconds_bucket", le="5e-06") == 1
    assert val(m, "mmd_tick_to_quote_seconds_bucket", le="1.5e-05") == 3
    assert val(m, "mmd_tick_to_quote_seconds_bucket", le="0.001") == 4
    assert val(m, "mmd_tick_to_quote_seconds_bucket", le="0.05") == 4
    assert val(m, "mmd_tick_to_quote_seconds_bucket", le="+Inf") == 5
    assert math.isclose(val(m, "mmd_tick_to_quote_seconds_sum"), 4e-6 + 24e-6 + 0.0009 + 0.2)


def test_shell_level_counters_risk_ledger_loop():
    m = Metrics(version="9.9.9")
    m.on_parse_error("json")
    m.on_parse_error("json")
    m.on_parse_error("schema")
    m.on_reconnect()
    assert val(m, "mmd_parse_errors_total", kind="json") == 2
    assert val(m, "mmd_parse_errors_total", kind="schema") == 1
    assert val(m, "mmd_ws_reconnects_total") == 1
    assert val(m, "mmd_risk_tripped") == 0
    m.set_risk(True, "max_drawdown")
    assert val(m, "mmd_risk_tripped") == 1
    assert val(m, "mmd_risk_gate_info", reason="max_drawdown") == 1
    m.set_risk(False, "max_drawdown")  # reason cleared when not tripped
    assert val(m, "mmd_risk_gate_info", reason="") == 1
    assert ("mmd_risk_gate_info", (("reason", "max_drawdown"),)) not in samples(m)
    m.set_ledger(17, 0.25)
    assert val(m, "mmd_ledger_queue_depth") == 17
    assert val(m, "mmd_ledger_durable_lag_seconds") == 0.25
    m.observe_loop_lag(0.003)
    assert val(m, "mmd_event_loop_lag_last_seconds") == 0.003
    assert val(m, "mmd_event_loop_lag_seconds_count") == 1
    assert val(m, "mmd_build_info", version="9.9.9") == 1
    assert val(m, "mmd_start_time_seconds") > 1.6e9


def test_bind_symbols_exposes_zeros_up_front():
    m = Metrics()
    m.bind_symbols(["BTCUSDT", "ETHUSDT"])
    for sym in ("BTCUSDT", "ETHUSDT"):
        assert val(m, "mmd_book_state", symbol=sym) == 0
        assert val(m, "mmd_quotes_total", symbol=sym) == 0
        assert val(m, "mmd_fills_total", symbol=sym, side="sell") == 0
        assert val(m, "mmd_pnl", symbol=sym, component="funding") == 0


def test_metric_names_lists_exported_sample_names():
    names = Metrics().metric_names()
    for n in ("mmd_frames_total", "mmd_tick_to_quote_seconds_bucket", "mmd_risk_gate_info", "mmd_pnl",
              "mmd_feed_lag_seconds_count", "mmd_event_loop_lag_seconds_sum"):
        assert n in names
    assert "mmd_frames" not in names  # counters are exported only with _total
    assert "mmd_risk_gate" not in names
    assert "mmd_nonexistent" not in names
