"""Logistic regression, metrics, model file round trip and load errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from daemon.features import DIRECTIONAL_FEATURES, FEATURE_NAMES
from daemon.models.adverse import (
    FORMAT,
    VERSION,
    AdverseModel,
    ModelLoadError,
    fit_logistic,
    log_loss,
    mirror,
    roc_auc,
    train,
    youden_threshold,
)

# -- metrics ---------------------------------------------------------------------------------


def test_auc_hand_computed():
    # pairs (pos, neg): (0.35 > 0.1) (0.35 < 0.4) (0.8 > 0.1) (0.8 > 0.4) -> 3/4
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    # ties count one half: pos 0.6 vs negs 0.2 (win) and 0.6 (tie) -> (1 + 0.5) / 2
    assert roc_auc(np.array([0, 0, 1]), np.array([0.2, 0.6, 0.6])) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([1, 0]), np.array([0.9, 0.1])) == 1.0
    assert roc_auc(np.array([1, 0]), np.array([0.1, 0.9])) == 0.0
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.9])))


def test_auc_matches_pairwise_definition_on_random_data():
    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.3
    p = np.round(rng.random(300), 2)  # many ties
    pos, neg = p[y], p[~y]
    pair = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert roc_auc(y, p) == pytest.approx(pair, rel=1e-12)


def test_log_loss_hand_computed():
    assert log_loss(np.array([1, 0]), np.array([0.8, 0.3])) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert log_loss(np.array([1]), np.array([0.0])) == pytest.approx(-math.log(1e-15))  # clipped, finite


def test_youden_threshold_hand_computed():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    # cut at 0.3: TPR 3/3, FPR 1/3 -> J = 2/3 (the best; cut at 0.7: 2/3 - 1/3)
    assert youden_threshold(y, p) == pytest.approx(0.3)


# -- fitting ---------------------------------------------------------------------------------


def _synthetic(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 3))
    w = np.array([1.5, -2.0, 0.5])
    b = -0.3
    p = 1 / (1 + np.exp(-(Z @ w + b)))
    y = rng.random(n) < p
    return Z, y, w, b


def test_logistic_recovers_known_weights():
    Z, y, w_true, b_true = _synthetic()
    w, b = fit_logistic(Z, y, l2=0.0)
    assert np.allclose(w, w_true, atol=0.1), w
    assert b == pytest.approx(b_true, abs=0.08)


def test_logistic_solution_is_the_penalised_optimum():
    Z, y, _, _ = _synthetic(n=3000, seed=1)
    for l2 in (0.0, 1.0, 100.0):
        w, b = fit_logistic(Z, y, l2=l2)
        p = 1 / (1 + np.exp(-(Z @ w + b)))
        grad_w = Z.T @ (p - y) + l2 * w
        grad_b = float(np.sum(p - y))
        assert np.max(np.abs(grad_w)) < 1e-6 and abs(grad_b) < 1e-6
    # more penalty, smaller weights
    assert np.linalg.norm(fit_logistic(Z, y, 1000.0)[0]) < np.linalg.norm(fit_logistic(Z, y, 1.0)[0])


def test_mirror_negates_only_directional_features():
    names = ["vpin", "ofi", "imbalance_top", "spread_bps"]
    X = np.array([[0.3, 2.0, 0.5, 1.0]])
    assert mirror(X, names, +1).tolist() == X.tolist()
    assert mirror(X, names, -1).tolist() == [[0.3, -2.0, -0.5, 1.0]]
    assert "ofi" in DIRECTIONAL_FEATURES and "vpin" not in DIRECTIONAL_FEATURES


def test_train_learns_sides_and_predict_matches_vectorised():
    """Price falls after negative OFI: bids adverse when OFI < 0, asks when OFI > 0."""
    rng = np.random.default_rng(7)
    n = 4000
    ofi = rng.standard_normal(n) * 5
    vpin = rng.random(n)
    X = np.column_stack([ofi, vpin])
    names = ["ofi", "vpin"]
    y_ask = rng.random(n) < 1 / (1 + np.exp(-(0.8 * ofi + 2 * vpin - 1)))
    y_bid = rng.random(n) < 1 / (1 + np.exp(-(-0.8 * ofi + 2 * vpin - 1)))
    m = train(X, y_bid, y_ask, names, l2=1.0)
    assert m.weights[0] > 0 and m.weights[1] > 0
    pb, pa = m.predict({"ofi": 10.0, "vpin": 0.5})
    assert pa > 0.9 and pb < 0.1
    for row in X[:50]:
        pb, pa = m.predict(dict(zip(names, row)))
        assert pb == pytest.approx(m.predict_rows(row[None, :], -1)[0], rel=1e-9)
        assert pa == pytest.approx(m.predict_rows(row[None, :], +1)[0], rel=1e-9)
    # NaN feature = its training mean, on both sides
    pb, pa = m.predict({"ofi": float("nan"), "vpin": 0.5})
    zb = m.predict_rows(np.array([[m.mean[0], 0.5]]), +1)[0]
    assert pa == pytest.approx(zb) and pb == pytest.approx(zb)
    assert 0.0 < m.threshold < 1.0


# -- model file ------------------------------------------------------------------------------


def _model() -> AdverseModel:
    return AdverseModel(["vpin", "ofi"], [0.5, 0.0], [0.2, 3.0], [1.0, 0.5], -0.2, 0.6, 1.0,
                        {"metrics": {"val": {"auc": 0.6}}})


def test_save_load_round_trip(tmp_path):
    m = _model()
    p = tmp_path / "m.json"
    m.save(p)
    d = json.loads(p.read_text())
    assert d["format"] == FORMAT and d["version"] == VERSION
    assert d["directional_features"] == ["ofi"]
    m2 = AdverseModel.load(p)
    assert m2.to_dict() == m.to_dict()
    x = {"vpin": 0.7, "ofi": -4.0}
    assert m2.predict(x) == m.predict(x)
    AdverseModel.load(p, expect_features=["vpin", "ofi"])


def _write(tmp_path, obj) -> str:
    p = tmp_path / "bad.json"
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(p)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.update(version=2), "unsupported version 2"),
        (lambda d: d.update(format="other"), "wrong format 'other' \\(expected 'mmd-adverse-logit'\\)"),
        (lambda d: d.pop("weights"), "missing key 'weights'"),
        (lambda d: d.update(feature_names=["vpin", "nonsense"]), "unknown feature 'nonsense'"),
        (lambda d: d.update(feature_names=["vpin", "vpin"]), "duplicate"),
        (lambda d: d.update(feature_names=[]), "non-empty list"),
        (lambda d: d.update(weights=[1.0]), "weights has 1 values for 2 features"),
        (lambda d: d["scaler"].update(std=[0.0, 1.0]), "std must be > 0"),
        (lambda d: d["scaler"].pop("mean"), "scaler must have"),
        (lambda d: d.update(threshold=1.5), "outside"),
        (lambda d: d.update(intercept="x"), "non-numeric"),
    ],
)
def test_load_errors_are_one_line(tmp_path, mutate, match):
    d = _model().to_dict()
    mutate(d)
    with pytest.raises(ModelLoadError, match=match) as e:
        AdverseModel.load(_write(tmp_path, d))
    assert "\n" not in str(e.value)


def test_load_missing_corrupt_and_wrong_features(tmp_path):
    with pytest.raises(ModelLoadError, match="file not found"):
        AdverseModel.load(tmp_path / "nope.json")
    with pytest.raises(ModelLoadError, match="corrupt JSON"):
        AdverseModel.load(_write(tmp_path, '{"format": "mmd-adverse-logit", "vers'))
    with pytest.raises(ModelLoadError, match="not a JSON object"):
        AdverseModel.load(_write(tmp_path, "[1, 2]"))
    p = tmp_path / "m.json"
    _model().save(p)
    with pytest.raises(ModelLoadError, match="differ from the expected"):
        AdverseModel.load(p, expect_features=["vpin", "ofi", "spread_bps"])
    d = _model().to_dict()
    d["weights"] = [1.0, float("nan")]
    p.write_text(json.dumps(d))  # json writes NaN, which Python reads back
    with pytest.raises(ModelLoadError, match="non-finite"):
        AdverseModel.load(p)


def test_every_feature_name_is_a_float_attribute_of_feature_state():
    from daemon.core.instrument import btcusdt_linear
    from daemon.features import FeatureState

    fs = FeatureState(btcusdt_linear())
    m = AdverseModel(list(FEATURE_NAMES), [0.0] * len(FEATURE_NAMES), [1.0] * len(FEATURE_NAMES),
                     [0.1] * len(FEATURE_NAMES), 0.0, 0.5)
    pb, pa = m.predict(fs)  # empty state: NaNs count as the mean
    assert 0.0 < pb < 1.0 and 0.0 < pa < 1.0


def test_clipping_is_the_same_at_runtime_and_in_batch():
    m = AdverseModel(["vpin", "ofi", "spread_bps"], [0.5, 0.0, 0.016], [0.1, 2.0, 1e-5], [1.0, 0.7, 0.3], -0.1, 0.5)
    for x in ([0.5, 0.0, 0.016], [5.0, -100.0, 0.032], [-3.0, 1e9, 0.0161], [0.6, float("nan"), 1.0]):
        pb, pa = m.predict(dict(zip(m.feature_names, x)))
        assert pb == pytest.approx(m.predict_rows(np.array([x]), -1)[0], rel=1e-12)
        assert pa == pytest.approx(m.predict_rows(np.array([x]), +1)[0], rel=1e-12)
    # a spread 1 bp wider than a pinned training spread saturates at z = +5, not z = 1e5
    pb, pa = m.predict({"vpin": 0.5, "ofi": 0.0, "spread_bps": 1.016})
    assert pa == pytest.approx(1 / (1 + math.exp(-(-0.1 + 0.3 * 5.0))))


def test_load_rejects_bad_z_clip(tmp_path):
    d = _model().to_dict()
    d["scaler"]["z_clip"] = -1
    with pytest.raises(ModelLoadError, match="z_clip"):
        AdverseModel.load(_write(tmp_path, d))


def test_runtime_gate_uses_the_model_threshold_when_none_is_configured():
    """`[adverse] model_path` alone (no `threshold`) must arm the gate with the model file's own
    threshold: over the recording, some decisions pull a side for adverse selection."""
    import gzip

    from daemon.config import load_settings
    from daemon.runtime.runtime import bench_pipeline
    from daemon.recording import bundled_adverse_model, bundled_recording

    s = load_settings(overrides={"adverse": {"model_path": str(bundled_adverse_model()), "action": "pull"}})
    assert s.adverse.threshold is None
    step = bench_pipeline(s)
    st = step.runtime.strategies["BTCUSDT"]
    assert st.pipe.adverse.threshold == step.runtime.adverse.threshold
    pulled = 0
    for line in gzip.open(bundled_recording(), "rb"):
        step(line.split(b" ", 1)[1])
        if "adverse_pull" in st.pulled:
            pulled += 1
    assert pulled > 100
