"""``mmd train-adverse`` end to end on the bundled BTCUSDT recording."""

from __future__ import annotations

import gzip
import json
import math
from importlib import resources

import pytest

from daemon.cli import main
from daemon.models.adverse import DEFAULT_FEATURES, AdverseModel

RECORDING = str(resources.files("daemon") / "data" / "linear_BTCUSDT_2024-08-08_5min.bybit.gz")


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI configures structlog onto the (captured) stdout of the test; undo it afterwards so
    later tests do not log into a closed capture stream."""
    yield
    import structlog

    structlog.reset_defaults()


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """The recording cut in two by time (first 60% / last 40%). The second part starts with a
    snapshot frame rebuilt from the book at the cut (same ``u``), so it replays on its own."""
    from daemon.bybit.messages import FrameParser
    from daemon.core.book import OrderBook
    from daemon.core.events import BookUpdate
    from daemon.core.instrument import btcusdt_linear

    d = tmp_path_factory.mktemp("rec")
    a, b = d / "a.bybit.gz", d / "b.bybit.gz"
    with gzip.open(RECORDING, "rb") as f:
        lines = f.readlines()
    k = int(len(lines) * 0.6)
    inst = btcusdt_linear()
    parser = FrameParser({"BTCUSDT": inst})
    book = OrderBook("BTCUSDT", 50)
    for line in lines[:k]:
        recv, frame = line.split(b" ", 1)
        for ev in parser.parse(frame, int(recv)):
            if isinstance(ev, BookUpdate) and ev.depth == 50:
                book.apply(ev)
    assert book.live
    px, qx = inst.price.to_str, inst.qty.to_str
    snap = {
        "topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": book.ts_ms, "cts": book.cts_ms,
        "data": {"s": "BTCUSDT", "b": [[px(p), qx(q)] for p, q in book.bid_levels()],
                 "a": [[px(p), qx(q)] for p, q in book.ask_levels()], "u": book.last_u, "seq": book.last_seq},
    }
    with gzip.open(a, "wb") as f:
        f.writelines(lines[:k])
    with gzip.open(b, "wb") as f:
        f.write(lines[k].split(b" ", 1)[0] + b" " + json.dumps(snap).encode() + b"\n")
        f.writelines(lines[k:])
    return str(a), str(b)


def test_train_adverse_json_end_to_end(tmp_path, capsys):
    out = tmp_path / "adverse.json"
    rc = main(["train-adverse", RECORDING, "--out", str(out), "--json"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    for key in ("val_auc", "val_logloss", "base_rate", "train_rows", "val_rows"):
        assert key in res
    assert res["train_rows"] > 1000 and res["val_rows"] > 400
    assert 0.0 < res["base_rate"] < 1.0
    assert 0.0 <= res["val_auc"] <= 1.0 and math.isfinite(res["val_logloss"])
    assert res["label_ticks"] == 2 and res["horizon_s"] == 5.0  # [adverse] defaults
    m = AdverseModel.load(out)
    assert m.feature_names == list(DEFAULT_FEATURES)
    d = json.loads(out.read_text())
    assert d["data"]["train_rows"] == res["train_rows"] and d["data"]["val_rows"] == res["val_rows"]
    assert d["data"]["train_span_ms"][1] < d["data"]["val_span_ms"][0]  # time split, no overlap
    assert d["metrics"]["val"]["auc"] == pytest.approx(res["val_auc"])
    assert d["threshold_rule"] == "youden_j_on_training_rows"
    # deterministic: a second run writes the same model
    out2 = tmp_path / "again.json"
    assert main(["train-adverse", RECORDING, "--out", str(out2), "--json"]) == 0
    capsys.readouterr()
    assert json.loads(out2.read_text())["weights"] == d["weights"]


def test_train_adverse_eval_flags_and_table(tmp_path, capsys, halves):
    a, b = halves
    out = tmp_path / "m.json"
    rc = main(["train-adverse", a, "--out", str(out), "--eval", b, "--json", "--label-ticks", "3",
               "--horizon-s", "3", "--l2", "10", "--decision-ms", "500", "--warmup-s", "20"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["label_ticks"] == 3 and res["horizon_s"] == 3.0 and res["l2"] == 10.0
    assert "eval_auc" in res and 0.0 <= res["eval_auc"] <= 1.0 and res["eval_rows"] > 200
    # human table
    rc = main(["train-adverse", a, "--out", str(out), "--decision-ms", "500"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "AUC" in text and "val" in text and "vpin" in text


def test_train_adverse_config_and_env(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[adverse]\nlabel_ticks = 1\nlabel_horizon_s = 2.0\n")
    out = tmp_path / "m.json"
    assert main(["train-adverse", RECORDING, "--out", str(out), "--json", "--config", str(cfg), "--decision-ms", "1000"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["label_ticks"] == 1 and res["horizon_s"] == 2.0


def test_train_adverse_errors(tmp_path, capsys):
    out = str(tmp_path / "m.json")
    assert main(["train-adverse", str(tmp_path / "missing.gz"), "--out", out]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["train-adverse", RECORDING, "--out", out, "--features", "vpin,bogus"]) == 2
    assert "unknown feature 'bogus'" in capsys.readouterr().err
    assert main(["train-adverse", RECORDING, "--out", out, "--label-ticks", "0"]) == 2
    capsys.readouterr()
    assert main(["train-adverse", RECORDING, "--out", out, "--symbol", "ETHUSDT"]) == 2
    assert "ETHUSDT" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[adverse]\nlabel_ticks = -3\n")
    with pytest.raises(SystemExit) as e:
        main(["train-adverse", RECORDING, "--out", out, "--config", str(bad)])
    assert e.value.code == 2
