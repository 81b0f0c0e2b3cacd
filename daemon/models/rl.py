"""Tabular Q-learning market maker (the seed chapter's ``MarketMakingRL``): the policy, trained in
the Avellaneda-Stoikov 2008 simulator (:mod:`daemon.training.rl`) and usable live as a :class:`Quoter`.

**State** (all bins are stored in the policy file):

* time left ``tau = (T - t)/T`` in ``n_time_bins`` equal bins (finite horizon; live: ``t_left_s /
  horizon_s`` clipped to [0, 1]; an infinite ``t_left_s`` maps to the first bin, ``tau = 1``);
* inventory ``q`` (order-size units, one fill = one unit) rounded and clipped to ``[-q_max, q_max]``;
* volatility ratio ``sigma / sigma_ref`` in bins cut at ``vol_edges`` (simulator: ``sigma_ref =
  sigma`` so the ratio is 1 and only the middle bin is trained);
* order-flow imbalance ``ofi / ofi_scale`` in bins cut at ``ofi_edges`` (simulator: no order flow
  exists, OFI = 0, middle bin). Live, a (vol, ofi) cell never visited in training falls back to the
  neutral cell (see :meth:`QPolicy.greedy`).

**Actions**: a grid of (half-spread ``h``, reservation skew per unit of inventory ``psi``) pairs,
both in units of the scale ``u``; the skew is ``c = psi * q`` (q clipped to ``[-q_max, q_max]``)::

    delta_b = (h + psi*q) * u      delta_a = (h - psi*q) * u     (distances from the mid, price units)
    u = (1/gamma) ln(1 + gamma/kappa) + gamma * sigma**2 * H / 2

``u`` is the time-averaged A-S optimal half-spread at q = 0 (half of eq. 30 averaged over a horizon
``H``; 0.745 in the paper's setting at gamma = 0.1), so the policy is unit-free: live it is computed
from the live ``gamma``, ``state.sigma`` (price/sqrt(s)), ``state.kappa`` (per price unit) and
``H = horizon_s`` (seconds). ``psi >= 0``: a long market maker lowers both quotes (leans to sell),
a short one raises them; the grid holds no anti-skew (a prior from A-S and GLFT, stated here).

Training (reward, batch double Q-learning in the simulator) is :mod:`daemon.training.rl`; the
greedy policy in the simulator is :class:`daemon.sim.as2008.RLSimStrategy`. :class:`TrainConfig`
lives here because a policy file carries it (bins, action grid). Live and in the simulator the
greedy action ignores actions never tried in training.

References: seed chapter "Reinforcement Learning for Optimal Quoting" (Q-learning update, reward
``PnL - gamma*q**2``); Spooner et al. (2018) for the inventory-penalised reward idea.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from daemon.models import npzfile
from daemon.models.base import MarketState, RawQuote

POLICY_FORMAT = "mmd-rl-qpolicy"
POLICY_VERSION = 1


class PolicyLoadError(ValueError):
    """A policy file that is missing, corrupt, of another format or of an unsupported version."""


@dataclass(frozen=True)
class TrainConfig:
    """Training configuration (simulator units: the A-S 2008 parameters)."""

    gamma: float = 0.1
    episodes: int = 1500
    paths_per_episode: int = 1000
    seed: int = 0
    # simulator (A-S 2008 section 3.3)
    s0: float = 100.0
    T: float = 1.0
    sigma: float = 2.0
    dt: float = 0.005
    k: float = 1.5
    A: float = 140.0
    # reward: None -> gamma * sigma**2 * dt / 2 (mean-variance per step)
    gamma_inv: float | None = None
    # "expected": the zero-mean inventory term q_{t+1}*dS of dPnL is replaced by its conditional
    # expectation (0) in the learning target (same objective, far less noise); "realized": raw dPnL
    reward_mode: str = "expected"
    # state bins
    n_time_bins: int = 200
    q_max: int = 10
    vol_edges: tuple[float, ...] = (0.75, 1.33)
    ofi_edges: tuple[float, ...] = (-0.5, 0.5)
    # actions (units of u)
    half_mults: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2)
    skew_mults: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6)
    # learning
    lr0: float = 0.005
    lr_min: float = 0.005
    lr_decay_episodes: float = 100.0
    lr_count_half: float = 10.0
    # optimistic initial values: Q0 = steps_left * optimism * (expected capture per step of the
    # symmetric quote at half-spread u), so every action looks worth trying until it is sampled
    optimism: float = 1.2
    eps_start: float = 1.0
    eps_end: float = 0.02
    eval_paths: int = 1000

    def penalty(self) -> float:
        return 0.5 * self.gamma * self.sigma**2 * self.dt if self.gamma_inv is None else self.gamma_inv

    @property
    def n_steps(self) -> int:
        return int(round(self.T / self.dt))


def action_scale(gamma: float, sigma: float, kappa: float, horizon: float) -> float:
    """``u = (1/gamma) ln(1 + gamma/kappa) + gamma*sigma**2*horizon/2`` (price units)."""
    return math.log1p(gamma / kappa) / gamma + 0.5 * gamma * sigma * sigma * horizon


@dataclass
class QPolicy:
    """A Q-table with its bins and action grid. ``q_table`` has shape ``(n_time_bins, 2*q_max+1,
    n_vol_bins, n_ofi_bins, n_actions)``; ``visits`` counts updates per (state, action) cell."""

    config: TrainConfig
    q_table: np.ndarray
    visits: np.ndarray
    metrics: dict = field(default_factory=dict)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls, cfg: TrainConfig) -> "QPolicy":
        shape = (cfg.n_time_bins, 2 * cfg.q_max + 1, len(cfg.vol_edges) + 1, len(cfg.ofi_edges) + 1,
                 len(cfg.half_mults) * len(cfg.skew_mults))
        return cls(cfg, np.zeros(shape), np.zeros(shape, dtype=np.int64))

    @property
    def n_actions(self) -> int:
        return self.q_table.shape[-1]

    def action_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """``(h, psi)`` arrays of length ``n_actions``: half-spread and skew per unit of inventory,
        both in units of u; action ``a = ih*len(psi) + ipsi``."""
        h = np.repeat(np.asarray(self.config.half_mults, float), len(self.config.skew_mults))
        psi = np.tile(np.asarray(self.config.skew_mults, float), len(self.config.half_mults))
        return h, psi

    # ---- state binning ------------------------------------------------------------------
    def time_bin(self, tau_frac):
        n = self.config.n_time_bins
        return np.clip(np.ceil(np.asarray(tau_frac, float) * n - 1e-9).astype(np.int64) - 1, 0, n - 1)

    def q_bin(self, q):
        m = self.config.q_max
        return (np.clip(np.rint(np.asarray(q, float)), -m, m) + m).astype(np.int64)

    def vol_bin(self, ratio):
        return np.searchsorted(np.asarray(self.config.vol_edges), np.asarray(ratio, float), side="right")

    def ofi_bin(self, x):
        return np.searchsorted(np.asarray(self.config.ofi_edges), np.asarray(x, float), side="right")

    def neutral_vol_bin(self) -> int:
        return int(self.vol_bin(1.0))

    def neutral_ofi_bin(self) -> int:
        return int(self.ofi_bin(0.0))

    # ---- acting ---------------------------------------------------------------------------
    def greedy(self, tb, qb, vb, ob):
        """Greedy action indices (arrays) among the actions visited in training. A (vol, ofi) cell
        never visited for that (time, q) falls back to the neutral cell; a (time, q) never visited
        at all falls back to the nearest visited inventory bin towards q = 0. Ties break towards
        the lowest index."""
        tb, qb, vb, ob = (np.array(x, dtype=np.int64) for x in np.broadcast_arrays(tb, qb, vb, ob))
        seen = self.visits[tb, qb, vb, ob].sum(axis=-1) > 0
        vb = np.where(seen, vb, self.neutral_vol_bin())
        ob = np.where(seen, ob, self.neutral_ofi_bin())
        mid = self.config.q_max
        for _ in range(mid):
            unseen = self.visits[tb, qb, vb, ob].sum(axis=-1) == 0
            if not np.any(unseen & (qb != mid)):
                break
            qb = np.where(unseen, qb - np.sign(qb - mid), qb)
        vals = np.where(self.visits[tb, qb, vb, ob] > 0, self.q_table[tb, qb, vb, ob], -np.inf)
        none = ~np.isfinite(vals).any(axis=-1)
        vals = np.where(none[..., None], 0.0, vals)
        return np.argmax(vals, axis=-1)

    def deltas_for(self, actions, u, q):
        """``(delta_b, delta_a) = ((h + psi*q) * u, (h - psi*q) * u)`` with ``q`` clipped to
        ``[-q_max, q_max]`` (price units when ``u`` is)."""
        h, psi = self.action_grid()
        c = psi[actions] * np.clip(q, -self.config.q_max, self.config.q_max)
        return (h[actions] + c) * u, (h[actions] - c) * u

    # ---- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write a versioned ``.npz``: ``meta`` (JSON: format, version, config, metrics),
        ``q_table``, ``visits``."""
        meta = {"format": POLICY_FORMAT, "version": POLICY_VERSION, "config": asdict(self.config),
                "metrics": self.metrics, "shape": list(self.q_table.shape)}
        npzfile.write(path, meta, {"q_table": self.q_table, "visits": self.visits})

    @classmethod
    def load(cls, path: str | Path) -> "QPolicy":
        """Read a file written by :meth:`save`; any problem raises :class:`PolicyLoadError` (one line)."""
        p = Path(path)
        meta, arr = npzfile.read(p, what="policy file", kind="policy", error=PolicyLoadError, fmt=POLICY_FORMAT,
                                 version=POLICY_VERSION, arrays={"q_table": float, "visits": np.int64})
        q_table, visits = arr["q_table"], arr["visits"]
        try:
            cfgd = dict(meta["config"])
            for key in ("vol_edges", "ofi_edges", "half_mults", "skew_mults"):
                cfgd[key] = tuple(cfgd[key])
            cfg = TrainConfig(**cfgd)
        except (KeyError, TypeError) as e:
            raise PolicyLoadError(f"policy file {str(p)!r}: bad config in metadata: {e}") from None
        pol = cls(cfg, q_table, visits, dict(meta.get("metrics", {})))
        expect = cls.empty(cfg).q_table.shape
        if q_table.shape != expect or visits.shape != expect or not np.all(np.isfinite(q_table)):
            raise PolicyLoadError(f"policy file {str(p)!r}: Q-table shape {q_table.shape} does not match"
                                  f" its bins {expect} or holds non-finite values")
        return pol


# ------------------------------------------------------------------------------------ live use
class RLQuoter:
    """The trained policy as a live :class:`daemon.models.base.Quoter`.

    Live units map to the simulator's bins as follows: ``q = state.q`` (order-size units, as in the
    simulator's one-share fills); ``tau = t_left_s / horizon_s`` (infinite -> 1); volatility ratio
    ``state.sigma / sigma_ref`` (``sigma_ref`` None -> ratio 1, the trained bin); OFI
    ``state.ofi / ofi_scale`` (``ofi_scale`` None -> 0, the trained bin). The greedy action's
    ``(h, c)`` are multiplied by ``u = (1/gamma) ln(1 + gamma/kappa) + gamma*sigma**2*horizon_s/2``
    with the live ``gamma``, ``state.sigma`` (price/sqrt(s)) and ``state.kappa`` (per price unit).
    Ticks, sizes, post-only and risk limits are the engine's job."""

    name = "rl"

    def __init__(self, policy: QPolicy, gamma: float | None = None, horizon_s: float = 300.0,
                 sigma_ref: float | None = None, ofi_scale: float | None = None) -> None:
        self.policy = policy
        self.gamma = policy.config.gamma if gamma is None else float(gamma)
        if self.gamma <= 0 or horizon_s <= 0:
            raise ValueError("gamma and horizon_s must be > 0")
        self.horizon_s = float(horizon_s)
        self.sigma_ref = sigma_ref
        self.ofi_scale = ofi_scale

    @classmethod
    def load(cls, path: str | Path, **kw) -> "RLQuoter":
        return cls(QPolicy.load(path), **kw)

    def quote(self, state: MarketState) -> RawQuote:
        pol = self.policy
        tau = 1.0 if not math.isfinite(state.t_left_s) else min(1.0, max(0.0, state.t_left_s / self.horizon_s))
        vr = 1.0 if not self.sigma_ref else state.sigma / self.sigma_ref
        of = 0.0 if not self.ofi_scale else state.ofi / self.ofi_scale
        a = int(pol.greedy(pol.time_bin(tau), pol.q_bin(state.q), pol.vol_bin(vr), pol.ofi_bin(of)))
        u = action_scale(self.gamma, state.sigma, state.kappa, self.horizon_s)
        db, da = pol.deltas_for(a, u, state.q)
        db, da = float(db), float(da)
        s = state.mid
        return RawQuote(bid=s - db, ask=s + da, reservation=s - 0.5 * (db - da), delta_bid=db, delta_ask=da,
                        why=f"rl a={a}")
