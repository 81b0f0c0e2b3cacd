"""Label construction on hand-built mid paths, and the dataset replay on the real recording."""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np
import pytest

from daemon.core.instrument import btcusdt_linear
from daemon.models.adverse import DEFAULT_FEATURES
from daemon.training.dataset import RecordingError, build_dataset, label_adverse, replay_features

RECORDING = resources.files("daemon") / "data" / "linear_BTCUSDT_2024-08-08_5min.bybit.gz"


def test_labels_on_a_hand_built_mid_path():
    # mid2 = bid + ask in ticks; X = 2 ticks -> a move of more than 4 in mid2
    pt = np.array([0, 1000, 2000, 3000, 4000, 5000, 6000, 10000])
    pm = np.array([200, 198, 195, 196, 201, 205, 205, 205])
    t = np.array([0, 1000, 3000, 4000, 5000])
    m = np.array([200, 198, 196, 201, 205])
    yb, ya, ok = label_adverse(pt, pm, t, m, label_ticks=2, horizon_ms=3000)
    # t=0: future (0, 3000] = 198, 195, 196 -> fall 5 > 4: bid adverse; rise none
    # t=1000: (1000, 4000] = 195, 196, 201 -> fall 3 (no), rise 3 (no)
    # t=3000: (3000, 6000] = 201, 205, 205 -> rise 9: ask adverse
    # t=4000: (4000, 7000] = 205, 205 -> rise 4: NOT more than 4 (strict)
    # t=5000: (5000, 8000] = 205 -> nothing
    assert yb.tolist() == [True, False, False, False, False]
    assert ya.tolist() == [False, False, True, False, False]
    assert ok.all()
    # horizon past the end of the path: invalid
    _, _, ok = label_adverse(pt, pm, np.array([8000]), np.array([205]), 2, 3000)
    assert ok.tolist() == [False]


def test_label_boundaries_and_one_sided_books():
    pt = np.array([0, 500, 1000, 1001, 2000])
    pm = np.array([100, 0, 95, 90, 100])  # 0 = one-sided book: ignored
    yb, ya, ok = label_adverse(pt, pm, np.array([0]), np.array([100]), label_ticks=2, horizon_ms=1000)
    # (0, 1000] holds 0 (ignored) and 95 -> fall 5 > 4; 1001 is outside the horizon
    assert yb.tolist() == [True] and ya.tolist() == [False] and ok.tolist() == [True]
    yb, _, _ = label_adverse(pt, pm, np.array([0]), np.array([100]), label_ticks=3, horizon_ms=1000)
    assert yb.tolist() == [False]  # 5 half-ticks is not more than 6
    yb, _, _ = label_adverse(pt, pm, np.array([0]), np.array([100]), label_ticks=3, horizon_ms=1001)
    assert yb.tolist() == [True]  # 10 > 6


def test_labels_match_a_brute_force_on_random_paths():
    rng = np.random.default_rng(5)
    pt = np.cumsum(rng.integers(0, 300, 400))
    pm = 2000 + np.cumsum(rng.integers(-2, 3, 400))
    t = np.sort(rng.integers(0, pt[-1], 200))
    idx = np.searchsorted(pt, t, side="right") - 1
    m = np.where(idx >= 0, pm[np.maximum(idx, 0)], 2000)
    yb, ya, ok = label_adverse(pt, pm, t, m, 3, 2000)
    for i in range(len(t)):
        fut = [pm[j] for j in range(len(pt)) if t[i] < pt[j] <= t[i] + 2000]
        assert ok[i] == (t[i] + 2000 <= pt[-1])
        if ok[i]:
            assert yb[i] == any(m[i] - x > 6 for x in fut)
            assert ya[i] == any(x - m[i] > 6 for x in fut)


@pytest.fixture(scope="module")
def replay():
    return replay_features(RECORDING, btcusdt_linear(), DEFAULT_FEATURES, decision_ms=500, warmup_s=30)


def test_replay_on_the_recording_is_deterministic_and_on_the_clock(replay):
    r = replay
    assert r.X.shape == (len(r.t_ms), len(DEFAULT_FEATURES))
    assert len(r.t_ms) > 500
    assert np.all(np.diff(r.t_ms) == 500) and np.all(r.t_ms % 500 == 0)
    assert r.t_ms[0] - r.path_t_ms[0] >= 30_000
    assert len(r.path_t_ms) == 6352 and np.all(np.diff(r.path_t_ms) >= 0)
    # the decision mid is the mid of the last book update at or before the tick
    j = np.searchsorted(r.path_t_ms, r.t_ms, side="right") - 1
    assert np.array_equal(r.mid2, r.path_mid2[j])
    r2 = replay_features(RECORDING, btcusdt_linear(), DEFAULT_FEATURES, decision_ms=500, warmup_s=30)
    assert np.array_equal(r.X, r2.X, equal_nan=True) and np.array_equal(r.t_ms, r2.t_ms)
    assert r.bad_lines == 0 and r.frame_errors == {}


def test_dataset_labels_the_recording(replay):
    ds = build_dataset([RECORDING], btcusdt_linear(), DEFAULT_FEATURES, label_ticks=2, horizon_s=5.0,
                       decision_ms=500, warmup_s=30)
    # the last 5 s of decisions have no complete horizon
    assert len(ds) == np.sum(replay.t_ms + 5000 <= replay.path_t_ms[-1])
    assert 0.05 < ds.y_bid.mean() < 0.95 and 0.05 < ds.y_ask.mean() < 0.95
    assert np.all(np.diff(ds.t_ms) > 0)


def test_recording_errors(tmp_path):
    with pytest.raises(RecordingError, match="not found"):
        replay_features(tmp_path / "nope.gz", btcusdt_linear(), ["vpin"])
    # bad lines are counted; a recording without the primary book is an error
    p = tmp_path / "r.bybit"
    p.write_text("garbage line\n123 {not json}\n")
    with pytest.raises(RecordingError, match="no orderbook.50.BTCUSDT"):
        replay_features(p, btcusdt_linear(), ["vpin"])
    # a cut of the real recording with garbage lines in it still replays, counting them
    cut = tmp_path / "cut.bybit.gz"
    with gzip.open(RECORDING, "rb") as src, gzip.open(cut, "wb") as dst:
        for k, line in enumerate(src):
            if k == 100:
                dst.write(b"not-a-number {}\n")
                dst.write(b"1 {\"topic\": \"orderbook.50.BTCUSDT\", \"data\": 5}\n")
            if k > 4000:
                break
            dst.write(line)
    r = replay_features(cut, btcusdt_linear(), ["vpin", "ofi"], decision_ms=1000, warmup_s=5)
    assert r.bad_lines == 1 and sum(r.frame_errors.values()) == 1
    assert len(r.t_ms) > 10
