"""Replay environment: the bundled recording through the real book and paper venue."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from daemon.core.events import BUY
from daemon.models.rl import TrainConfig
from daemon.recording import bundled_recording
from daemon.execution.models import ConstantLatency
from daemon.sim.replay_env import ReplayQuotingEnv, run_policy
from daemon.training.rl import train


@pytest.fixture(scope="module")
def env() -> ReplayQuotingEnv:
    return ReplayQuotingEnv(bundled_recording(), decision_ms=1000, latency=ConstantLatency(20, 20))


def _episode(env, deltas, **kw):
    obs = env.reset(**kw)
    rewards, qs = [], []
    done = False
    while not done:
        obs, r, done, info = env.step(deltas)
        rewards.append(r)
        qs.append(env.q)
    return obs, np.array(rewards), np.array(qs)


def test_rewards_sum_to_mark_to_market_and_fills_reconcile(env) -> None:
    env.gamma_inv = 0.0
    _, rewards, _ = _episode(env, (0.05, 0.05))
    assert len(env.fills) > 20
    assert rewards.sum() == pytest.approx(env.mtm, abs=1e-6)
    px, qty = env.instrument.price.to_float, env.instrument.qty.to_float
    cash = -sum(f.side * px(f.price) * qty(f.qty) + f.fee for f in env.fills)
    assert env.cash == pytest.approx(cash, abs=1e-9)
    assert env.position_lots == sum(f.side * f.qty for f in env.fills)
    assert all((f.side == BUY) or (f.side == -BUY) for f in env.fills)


def test_inventory_penalty_in_reward(env) -> None:
    env.gamma_inv = 0.01
    try:
        _, rewards, qs = _episode(env, (0.05, 0.05))
    finally:
        env.gamma_inv = 0.0
    assert rewards.sum() == pytest.approx(env.mtm - 0.01 * np.sum(qs**2), abs=1e-6)


def test_deterministic(env) -> None:
    _episode(env, (0.1, 0.2))
    a = (env.mtm, [f.fill_id for f in env.fills])
    _episode(env, (0.1, 0.2))
    assert (env.mtm, [f.fill_id for f in env.fills]) == a


def test_far_quotes_never_fill_and_one_sided_quotes(env) -> None:
    _episode(env, (5000.0, 5000.0))
    assert env.fills == [] and env.mtm == 0.0
    _episode(env, (0.05, None))  # bid only: we can only buy
    assert env.fills and all(f.side == BUY for f in env.fills)
    assert env.q > 0


def test_episode_window_and_observation(env) -> None:
    start, end = env.start_ms + 60_000, env.start_ms + 120_000
    obs = env.reset(start, end)
    assert obs.ts_ms >= start and obs.tau == pytest.approx(1.0)
    assert obs.best_bid < obs.mid < obs.best_ask
    n = 0
    done = False
    while not done:
        obs, _, done, _ = env.step((0.1, 0.1))
        n += 1
    assert n == pytest.approx(60, abs=1) and obs.tau == pytest.approx(0.0)
    assert obs.sigma > 0 and -1.0 <= obs.ofi <= 1.0


def test_run_policy_greedy_and_learning(env) -> None:
    pol = train(TrainConfig(episodes=20, paths_per_episode=200, seed=0))
    before = pol.q_table.copy()
    res = run_policy(env, pol, gamma=0.1, kappa=10.0, horizon_s=60.0)
    assert set(res) >= {"pnl", "fills", "final_q", "reward"}
    assert np.array_equal(pol.q_table, before)  # greedy evaluation does not learn
    res2 = run_policy(env, pol, gamma=0.1, kappa=10.0, horizon_s=60.0, sigma_ref=1.0, epsilon=0.3,
                      learn_rate=0.1, seed=1)
    changed = pol.q_table != before
    assert changed.any()
    # cells outside the simulator's neutral (vol, ofi) cell get trained from real data
    vb, ob = pol.neutral_vol_bin(), pol.neutral_ofi_bin()
    mask = np.ones(pol.q_table.shape[2:4], dtype=bool)
    mask[vb, ob] = False
    assert changed[:, :, mask, :].any()
    assert np.isfinite(res2["pnl"])


def test_bad_frames_counted(tmp_path) -> None:
    with gzip.open(bundled_recording(), "rb") as f:
        lines = f.read().splitlines()[:3000]
    lines.insert(10, b"5 {broken")
    p = tmp_path / "r.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    e = ReplayQuotingEnv(p, decision_ms=500)
    assert e.bad_frames == 1
    e.reset()
    e.step((0.1, 0.1))
    with pytest.raises(ValueError):
        ReplayQuotingEnv(p, decision_ms=0)
