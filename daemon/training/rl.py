"""Training of the tabular Q-learning quoter (:mod:`daemon.models.rl`) in the Avellaneda-Stoikov
2008 simulator (:mod:`daemon.sim.as2008`), and its evaluation there (``mmd train-rl``).

**Reward** ``r_t = dPnL_t - gamma_inv * q_{t+1}**2`` where ``dPnL_t`` is the mark-to-market change
over the step (spread captured on fills plus ``q_{t+1} * dS``) and ``q_{t+1}`` the inventory carried
through the step's mid move. The default ``gamma_inv = gamma * sigma**2 * dt / 2`` is exactly the
step's contribution to ``gamma/2 * Var(terminal PnL)``, so the sum of rewards is the mean-variance
objective that the A-S policy approximately optimises. The terminal inventory is marked at the mid
(as in the paper's profit); there is no extra liquidation penalty. Undiscounted (finite horizon),
``max_a Q = 0`` after the last step. With ``reward_mode = "expected"`` (default) the zero-mean term
``q_{t+1} * dS`` is replaced by its conditional expectation, 0, in the learning target: the objective
(expected sum of rewards) is unchanged and the target noise drops by an order of magnitude.

**Learning** (batch, vectorised over ``paths_per_episode`` simulated paths):

* one time bin per simulator step by default (``n_time_bins = 200``): coarser bins make the
  undiscounted target bootstrap on its own cell, which biased values badly in our trials;
* the episode's transitions are replayed **backwards in time**, so values propagate through the
  whole horizon in one episode;
* **double Q-learning** (van Hasselt 2010): two tables, alternating per episode, one picks the
  argmax at s' and the other values it. Plain max-bootstrapping overestimated V(start) by ~80%
  because the max-operator bias compounds over 200 steps;
* per step, the TD targets of all paths are averaged per visited (s, a) cell; the cell moves towards
  that mean with ``alpha = max(lr_t, c / (N + lr_count_half))`` (``c`` samples in this batch, ``N`` in
  total: a running sample mean, floored by ``lr_t = max(lr_min, lr0 / (1 + ep / lr_decay_episodes))``);
* Q starts optimistic (``optimism`` x the symmetric quote's expected capture per remaining step);
  behaviour is epsilon-greedy, ``eps`` decaying geometrically from ``eps_start`` to ``eps_end``.

Everything is seeded: the same :class:`TrainConfig` gives the same Q-table bit for bit.

"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from daemon.models.rl import QPolicy, TrainConfig, action_scale
from daemon.sim.as2008 import (
    ASParams,
    InventoryStrategy,
    RLSimStrategy,
    SymmetricStrategy,
    cara_certainty_equivalent,
    draw_randoms,
    simulate,
    summarize,
)


def _sim_params(cfg: TrainConfig) -> ASParams:
    return ASParams(s0=cfg.s0, T=cfg.T, sigma=cfg.sigma, dt=cfg.dt, q0=0, k=cfg.k, A=cfg.A, gamma=cfg.gamma)


def evaluate(policy: QPolicy, n_paths: int = 1000, seed: int = 12345, params=None) -> dict:
    """Greedy policy, inventory and symmetric strategies on the same fresh paths (``seed``):
    ``{name: summary row}`` (see :func:`daemon.sim.as2008.summarize`)."""
    p = params or _sim_params(policy.config)
    rnd = draw_randoms(p, n_paths, seed)
    out = {}
    for strat in (RLSimStrategy(policy, p), InventoryStrategy(p), SymmetricStrategy(p)):
        out[strat.name] = summarize(simulate(strat, p, randoms=rnd), p.gamma)
    return out


ProgressFn = Callable[[int, int, float], None]


def train(cfg: TrainConfig, progress: ProgressFn | None = None) -> QPolicy:
    """Batch Q-learning in the A-S simulator (see module docstring). ``progress(episode, episodes,
    running_ce)`` is called after every episode with the CARA certainty equivalent of that
    episode's (exploring) terminal PnL. Returns the trained policy with ``metrics`` filled."""
    if cfg.episodes < 1 or cfg.paths_per_episode < 1:
        raise ValueError("episodes and paths_per_episode must be >= 1")
    if cfg.reward_mode not in ("expected", "realized"):
        raise ValueError("reward_mode must be 'expected' or 'realized'")
    t0 = time.perf_counter()
    pol = QPolicy.empty(cfg)
    n_t, n_q, n_v, n_o, n_a = pol.q_table.shape
    vb, ob = pol.neutral_vol_bin(), pol.neutral_ofi_bin()
    # the simulator has one volatility and no order flow: only the neutral (vol, ofi) cell is trained
    # double Q-learning (van Hasselt 2010): two tables; the one being updated picks the argmax at
    # s', the other one values it. Removes the max-operator overestimation that otherwise compounds
    # over the 200-step horizon and drowns the small action gaps.
    QAB = np.zeros((2, n_t, n_q, n_a))  # contiguous working copies, averaged into the policy
    Nn = np.zeros((n_t, n_q, n_a), dtype=np.int64)
    rng = np.random.default_rng(cfg.seed)
    n = cfg.paths_per_episode
    n_steps = cfg.n_steps
    u = action_scale(cfg.gamma, cfg.sigma, cfg.k, cfg.T)
    move = cfg.sigma * math.sqrt(cfg.dt)
    pen = cfg.penalty()
    tbins = pol.time_bin((cfg.T - np.arange(n_steps + 1) * cfg.dt) / cfg.T)
    decay = (cfg.eps_end / cfg.eps_start) ** (1.0 / max(1, cfg.episodes - 1)) if cfg.eps_start > 0 else 0.0
    per_step = 2.0 * u * min(1.0, cfg.A * math.exp(-cfg.k * u) * cfg.dt) * cfg.optimism
    steps_left = np.ceil(np.arange(1, n_t + 1) / n_t * n_steps)  # at the start of each time bin
    QAB[...] = (steps_left * per_step)[None, :, None, None]
    Qsum = QAB[0] + QAB[1]
    h_grid, psi_grid = pol.action_grid()
    n_cells = n_q * n_a
    history = []
    for ep in range(cfg.episodes):
        eps = cfg.eps_start * decay**ep
        lr = max(cfg.lr_min, cfg.lr0 / (1.0 + ep / cfg.lr_decay_episodes))
        q = np.zeros(n, dtype=np.int64)
        pnl = np.zeros(n)
        qbs, acts, rewards = [], [], []
        for i in range(n_steps):
            qc = np.clip(q, -cfg.q_max, cfg.q_max)
            qb = qc + cfg.q_max
            greedy = Qsum[tbins[i]].argmax(axis=1)[qb]
            uni = rng.random((4, n))
            a = np.where(uni[0] < eps, rng.integers(0, n_a, n), greedy)
            c = psi_grid[a] * qc
            db, da = (h_grid[a] + c) * u, (h_grid[a] - c) * u
            hit_b = uni[1] < np.minimum(1.0, cfg.A * np.exp(-cfg.k * db) * cfg.dt)
            hit_a = uni[2] < np.minimum(1.0, cfg.A * np.exp(-cfg.k * da) * cfg.dt)
            ds = np.where(uni[3] < 0.5, move, -move)
            q_next = q + hit_b - hit_a
            # mark-to-market step PnL: spread captured on fills + inventory carried through the move
            capture = hit_b * db + hit_a * da
            pnl += capture + q_next * ds
            learn = capture if cfg.reward_mode == "expected" else capture + q_next * ds
            qbs.append(qb)
            acts.append(a)
            rewards.append(learn - pen * q_next.astype(float) ** 2)
            q = q_next
        # Q-learning updates replayed backwards in time over the episode's transitions, so the
        # finite-horizon values propagate through all steps in one episode.
        Qu, Qv = QAB[ep % 2], QAB[1 - ep % 2]  # update Qu, evaluate with Qv
        for i in range(n_steps - 1, -1, -1):
            target = rewards[i]
            if i + 1 < n_steps:
                t1 = tbins[i + 1]
                best = Qu[t1].argmax(axis=1)
                target = target + Qv[t1][np.arange(n_q), best][qbs[i + 1]]
            cell = qbs[i] * n_a + acts[i]
            sums = np.bincount(cell, weights=target, minlength=n_cells)
            cnts = np.bincount(cell, minlength=n_cells)
            hit = cnts > 0
            Qt = Qu[tbins[i]].reshape(-1)  # view into the table
            cn = cnts[hit]
            Nt = Nn[tbins[i]].reshape(-1)
            Nt[hit] += cn
            # per-cell step: the batch's share of all samples the cell has seen (a running sample
            # mean), floored by the global schedule ``lr`` so that old (optimistic) targets fade
            alpha = np.maximum(lr, cn / (Nt[hit] + cfg.lr_count_half))
            Qt[hit] += alpha * (sums[hit] / cn - Qt[hit])
        ce = cara_certainty_equivalent(pnl, cfg.gamma)
        history.append(ce)
        if progress is not None:
            progress(ep + 1, cfg.episodes, ce)
        np.add(QAB[0], QAB[1], out=Qsum)
    pol.q_table[:, :, vb, ob, :] = 0.5 * Qsum
    pol.visits[:, :, vb, ob, :] = Nn
    train_s = time.perf_counter() - t0
    ev = evaluate(pol, cfg.eval_paths, seed=cfg.seed + 1_000_003)
    pol.metrics = {
        "train_seconds": round(train_s, 3),
        "episodes": cfg.episodes,
        "final_running_ce": history[-1],
        "eval_seed": cfg.seed + 1_000_003,
        "eval": ev,
    }
    return pol
