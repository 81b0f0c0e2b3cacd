"""Neural spread predictor: network maths, labeller, dataset replay, model files, quoter wrapper."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from daemon.cli import main as mmd_main
from daemon.models.avellaneda import AvellanedaStoikov
from daemon.models.base import MarketState
from daemon.models.spread_nn import (
    FEATURES,
    MLP,
    ModelLoadError,
    NNSpreadAS,
    SpreadModel,
    SpreadTrainConfig,
    softplus,
)
from daemon.recording import bundled_recording
from daemon.training.spread_nn import build_dataset, label_optimal_spread, split_time_ordered, train_spread_model


@pytest.fixture(scope="module")
def dataset():
    return build_dataset(bundled_recording(), horizon_s=1.0)


@pytest.fixture(scope="module")
def model(dataset):
    return train_spread_model(dataset, SpreadTrainConfig(epochs=15, seed=3))


def test_gradient_check() -> None:
    rng = np.random.default_rng(0)
    net = MLP(5, (7, 6), seed=1)
    X = rng.normal(size=(9, 5))
    y = rng.uniform(0.5, 4.0, 9)
    _, grads = net.loss_and_grads(X, y)
    eps = 1e-6
    for k, W in net.params.items():
        num = np.zeros_like(W)
        it = np.nditer(W, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = W[i]
            W[i] = old + eps
            lp, _ = net.loss_and_grads(X, y)
            W[i] = old - eps
            lm, _ = net.loss_and_grads(X, y)
            W[i] = old
            num[i] = (lp - lm) / (2 * eps)
        assert np.allclose(grads[k], num, rtol=1e-5, atol=1e-7), k


def test_softplus_output_positive_and_stable() -> None:
    assert np.all(softplus(np.array([-800.0, -30.0, 0.0, 30.0, 800.0])) >= 0)
    assert softplus(np.array([800.0]))[0] == pytest.approx(800.0)
    assert np.isfinite(softplus(np.array([1e6])))[0]
    net = MLP(3, (4, 4), seed=0)
    net.params["b3"][:] = -500.0  # push the pre-activation very negative
    out = net.predict(np.random.default_rng(1).normal(size=(50, 3)) * 100)
    assert np.all(out >= 0) and np.all(np.isfinite(out))
    net.params["b3"][:] = 0.0
    assert np.all(net.predict(np.random.default_rng(2).normal(size=(50, 3))) > 0)


def test_training_reduces_loss_and_is_deterministic(dataset, model) -> None:
    assert model.metrics["loss_last"] < model.metrics["loss_first"]
    again = train_spread_model(dataset, SpreadTrainConfig(epochs=15, seed=3))
    for k in model.net.params:
        assert np.array_equal(model.net.params[k], again.net.params[k])
    # a learnable synthetic target: the loss must fall a lot
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = 2.0 + np.abs(X[:, 0]) * 3
    net = MLP(3, (16, 16), seed=0)
    from daemon.training.spread_nn import Adam

    opt = Adam(net.params, 1e-2)
    l0, _ = net.loss_and_grads(X, y)
    for _ in range(300):
        _, g = net.loss_and_grads(X, y)
        opt.step(net.params, g)
    l1, _ = net.loss_and_grads(X, y)
    assert l1 < 0.05 * l0


def test_label_by_hand() -> None:
    """Mid 100.5 ticks; a SELL trade at 98 and BUY trade at 103 in (t, t+H]; mid at t+H 100.5."""
    mids = np.array([[0, 100.5], [1500, 100.5]])
    trades = np.array([[200, -1, 98.0], [300, 1, 103.0], [1200, 1, 200.0]])  # last one is after H
    grid = (1, 4, 5, 6, 7)
    y, pnl, keep = label_optimal_spread(np.array([0]), mids, trades, horizon_s=1.0, grid=grid,
                                        inventory_penalty_ticks=1.0)
    assert keep[0]
    # s=1: bid 100, ask 101: both fill: capture 0.5 + 0.5 = 1. s=4: bid 98.5 ask 102.5 both: 4.
    # s=5: bid 98 (sell at 98 fills: at or through), ask 103: both: 5. s=6: bid 97.5 no, ask 103.5 no: 0
    assert pnl[0] == pytest.approx([1.0, 4.0, 5.0, 0.0, 0.0])
    assert y[0] == 5
    # one-sided fill: adverse move and the inventory penalty
    mids2 = np.array([[0, 100.5], [900, 97.5], [1500, 97.5]])
    y2, pnl2, _ = label_optimal_spread(np.array([0]), mids2, np.array([[100, -1, 99.0]]), 1.0, (1, 3, 5), 1.0)
    # s=1: bid 100 fills, marked at 97.5: -2.5 - 1 = -3.5; s=3: bid 99 fills: -1.5 - 1 = -2.5; s=5: none: 0
    assert pnl2[0] == pytest.approx([-3.5, -2.5, 0.0])
    assert y2[0] == 5
    # no trades: every spread ties at 0 -> the narrowest
    y3, _, _ = label_optimal_spread(np.array([0]), mids, np.zeros((0, 3)), 1.0, (2, 3), 1.0)
    assert y3[0] == 2
    # a decision whose horizon leaves the data is dropped
    _, _, keep4 = label_optimal_spread(np.array([1000]), mids, trades, 1.0, grid, 1.0)
    assert not keep4[0]


def test_dataset_from_bundled_recording(dataset) -> None:
    assert dataset.X.shape == (len(dataset.t_ms), len(FEATURES))
    assert len(dataset.t_ms) > 1000
    assert np.all(np.diff(dataset.t_ms) > 0)
    assert dataset.bad_frames == 0
    assert np.all(np.isfinite(dataset.X))
    assert np.all(dataset.market_spread >= 1)  # BTCUSDT spread is at least one tick
    assert set(np.unique(dataset.y)) <= set(dataset.grid)


def test_bad_lines_are_counted_not_fatal(tmp_path) -> None:
    import gzip

    src = bundled_recording()
    dst = tmp_path / "rec.gz"
    with gzip.open(src, "rb") as f:
        lines = f.read().splitlines()
    lines.insert(50, b"123 {not json")
    lines.insert(80, b'124 {"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"ETHUSDT","b":[],"a":[],"u":5,"seq":1}}')
    with gzip.open(dst, "wb") as f:
        f.write(b"\n".join(lines[:4000]) + b"\n")
    ds = build_dataset(dst, horizon_s=1.0)
    assert ds.bad_frames == 2
    assert len(ds.t_ms) > 100


def test_time_split_has_purge_gap(dataset) -> None:
    tr, va = split_time_ordered(dataset.t_ms, 0.2, 1000)
    assert not np.any(tr & va)
    assert dataset.t_ms[va].min() > dataset.t_ms[tr].max() + 1000
    with pytest.raises(ValueError):
        split_time_ordered(dataset.t_ms, 0.0, 1000)


def test_metrics_report_baselines(model) -> None:
    m = model.metrics
    assert set(m["baseline_val"]) == {"const_train_mean", "const_train_median", "market_spread"}
    for v in [m["val"], m["train"], *m["baseline_val"].values()]:
        assert v["mae"] >= 0 and v["rmse"] >= v["mae"]


def test_model_file_round_trip_and_errors(tmp_path, model, dataset) -> None:
    f = tmp_path / "m.npz"
    model.save(f)
    back = SpreadModel.load(f)
    assert np.array_equal(back.predict(dataset.X[:20]), model.predict(dataset.X[:20]))
    one = back.predict(dataset.X[0])
    assert isinstance(one, float) and one > 0
    with pytest.raises(ModelLoadError, match="No such file"):
        SpreadModel.load(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match="not a readable model"):
        SpreadModel.load(junk)
    # wrong version / features: rewrite the metadata
    with np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    for change, match in (({"version": 7}, "unsupported version 7"), ({"format": "x"}, "wrong format"),
                          ({"features": ["a"]}, "trained on features")):
        m2 = dict(meta, **change)
        buf = io.BytesIO()
        np.savez(buf, **dict(arrays, meta=np.frombuffer(json.dumps(m2).encode(), dtype=np.uint8)))
        g = tmp_path / "bad.npz"
        g.write_bytes(buf.getvalue())
        with pytest.raises(ModelLoadError, match=match) as ei:
            SpreadModel.load(g)
        assert "\n" not in str(ei.value)
    buf = io.BytesIO()
    np.savez(buf, **dict(arrays, W2=np.zeros((3, 3))))
    g = tmp_path / "shape.npz"
    g.write_bytes(buf.getvalue())
    with pytest.raises(ModelLoadError, match="shape"):
        SpreadModel.load(g)


def test_nn_spread_as_keeps_reservation_skew(model, dataset) -> None:
    asq = AvellanedaStoikov(gamma=0.1, horizon_s=60.0)
    x = dataset.X[100]
    wrapped = NNSpreadAS(asq, model, lambda ts: x)
    st = MarketState(ts_ms=0, mid=60000.0, best_bid=59999.95, best_ask=60000.05, tick=0.1, q=3.0, sigma=0.5,
                     A=1.0, kappa=0.5)
    base = asq.quote(st)
    got = wrapped.quote(st)
    assert got.reservation == pytest.approx(base.reservation)
    assert got.ask - got.bid == pytest.approx(model.predict(x) * 0.1)
    assert 0.5 * (got.bid + got.ask) == pytest.approx(base.reservation)
    assert got.delta_bid == pytest.approx(st.mid - got.bid)
    # features not ready -> plain A-S
    assert NNSpreadAS(asq, model, lambda ts: None).quote(st) == base


def test_cli_train_spread(tmp_path, capsys) -> None:
    out = tmp_path / "s.npz"
    assert mmd_main(["train-spread", "--epochs", "3", "--out", str(out), "--json"]) == 0
    cap = capsys.readouterr()
    info = json.loads(cap.out)
    assert "baseline_val" in info and "val" in info
    assert "train-spread epoch" in cap.err
    assert SpreadModel.load(out).config.epochs == 3
    assert mmd_main(["train-spread", "--epochs", "0", "--out", str(out)]) == 2


def test_spread_features_against_hand_computation() -> None:
    from daemon.core.book import OrderBook
    from daemon.core.events import BookUpdate, Trade
    from daemon.models.spread_nn import SpreadFeatures

    book = OrderBook("BTCUSDT", 50)
    book.request_sync()
    f = SpreadFeatures(trade_window_ms=5_000, vol_window_ms=30_000, vol_sample_ms=500)
    assert f.vector(0) is None
    book.apply(BookUpdate("BTCUSDT", 50, True, [(1000, 3), (999, 5)], [(1002, 1), (1003, 7)], 1, 1, 0, 0, 0))
    f.on_book(book)
    f.on_trade(Trade("BTCUSDT", 1, 1002, 4, "a", 1, 1000, 0))
    f.on_trade(Trade("BTCUSDT", -1, 1000, 1, "b", 2, 2000, 0))
    # at t = 2600 ms: bid 1002 (2) joins, the 1002 ask leaves -> best 1002 / 1003, mid 1001 -> 1002.5
    book.apply(BookUpdate("BTCUSDT", 50, False, [(1002, 2)], [(1004, 2), (1002, 0)], 2, 2, 2600, 0, 0))
    f.on_book(book)
    v = dict(zip(FEATURES, f.vector(3000)))
    assert v["spread_ticks"] == 1
    assert v["imbalance_l1"] == pytest.approx((2 - 7) / 9)
    assert v["imbalance_l5"] == pytest.approx((2 + 3 + 5 - (7 + 2)) / (10 + 9))
    assert v["trade_rate_hz"] == pytest.approx(2 / 5)
    assert v["log_volume_rate"] == pytest.approx(np.log1p(5 / 5))
    assert v["signed_volume_frac"] == pytest.approx((4 - 1) / 5)
    assert v["abs_mid_move_ticks"] == pytest.approx(1.5)
    # sampled mids at 0, 500, ..., 2500 = 1001 and at 3000? no update yet: grid ends at 2500
    mids = np.array([1001.0] * 6)  # 0..2500 carry the first mid
    assert v["realized_vol_ticks"] == pytest.approx(np.std(np.diff(mids)) / np.sqrt(0.5))
    # the first trade leaves the 5 s window at t = 6000
    v2 = dict(zip(FEATURES, f.vector(6000)))
    assert v2["trade_rate_hz"] == pytest.approx(1 / 5) and v2["signed_volume_frac"] == pytest.approx(-1.0)
