"""The Avellaneda-Stoikov (2008) market simulation, vectorised over paths.

M. Avellaneda, S. Stoikov, "High-frequency trading in a limit order book", Quantitative Finance
8(3):217-224, 2008, section 3.3 (p. 222). The setup, verbatim parameters::

    s = 100, T = 1, sigma = 2, dt = 0.005 (200 steps), q = 0, k = 1.5, A = 140, 1000 simulations

At each step ``t`` the strategy quotes ``delta_b, delta_a`` (distances of bid and ask from the mid,
price units) from the state ``(t, s, q)``. Then, independently:

* with probability ``lambda(delta_a) * dt`` the ask is lifted: ``q -= 1``, ``cash += s + delta_a``;
* with probability ``lambda(delta_b) * dt`` the bid is hit: ``q += 1``, ``cash -= s - delta_b``;
* the mid moves by ``+sigma*sqrt(dt)`` or ``-sigma*sqrt(dt)`` with probability 1/2 each;

with ``lambda(delta) = A * exp(-k * delta)`` (paper eq. 12). The paper writes "with probability
lambda*dt" and we read it literally: ``p = min(1, A*exp(-k*delta)*dt)`` (``A*dt = 0.7``, so this is
*not* the small-probability regime; the exact Poisson ``1 - exp(-lambda*dt)`` gives ~10% less
profit and does not reproduce the tables). Each side fills at most once per step. Profit is the
terminal cash plus ``q_T * S_T`` (inventory marked at the mid).

Units: time in the paper's unit (``T = 1``), ``sigma`` per sqrt(time unit), prices in dollars,
``q`` in shares (one share per fill).

All random numbers of a run are drawn up front (:func:`draw_randoms`): three uniform arrays of
shape ``(n_steps, n_paths)`` (bid fill, ask fill, mid direction), so the vectorised simulator and
the scalar reference (:func:`simulate_scalar`) can be fed the very same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from daemon.models import avellaneda as as_formulas
from daemon.models import glft as glft_formulas
from daemon.models.rl import QPolicy, action_scale


@dataclass(frozen=True)
class ASParams:
    """Parameters of the A-S 2008 experiment (defaults = the paper's section 3.3)."""

    s0: float = 100.0
    T: float = 1.0
    sigma: float = 2.0
    dt: float = 0.005
    q0: int = 0
    k: float = 1.5
    A: float = 140.0
    gamma: float = 0.1

    @property
    def n_steps(self) -> int:
        return int(round(self.T / self.dt))

    def with_gamma(self, gamma: float) -> "ASParams":
        return replace(self, gamma=gamma)


@dataclass(frozen=True)
class SimRandoms:
    """Uniform(0,1) draws of a run, each of shape ``(n_steps, n_paths)``."""

    u_bid: np.ndarray
    u_ask: np.ndarray
    u_mid: np.ndarray

    @property
    def n_paths(self) -> int:
        return self.u_bid.shape[1]


def draw_randoms(params: ASParams, n_paths: int, seed: int | None) -> SimRandoms:
    """All uniforms for ``n_paths`` paths from ``numpy.random.default_rng(seed)`` (deterministic)."""
    if n_paths < 1:
        raise ValueError("n_paths must be >= 1")
    rng = np.random.default_rng(seed)
    shape = (params.n_steps, n_paths)
    return SimRandoms(rng.random(shape), rng.random(shape), rng.random(shape))


def fill_probability(delta, params: ASParams):
    """Per-step fill probability of a quote ``delta`` away from the mid: ``min(1, A e^{-k delta} dt)``."""
    return np.minimum(1.0, params.A * np.exp(-params.k * delta) * params.dt)


class SimStrategy(Protocol):
    """A quoting rule for the simulator. ``deltas`` gets the step index, the time ``t``, the mids
    ``s`` and inventories ``q`` of all paths (arrays) and returns ``(delta_b, delta_a)`` arrays
    (price units, distances from the mid). ``reset(n_paths)`` is called before a run."""

    name: str

    def reset(self, n_paths: int) -> None: ...

    def deltas(self, step: int, t: float, s: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def analytic_average_spread(params: ASParams) -> float:
    """Time average over ``[0, T]`` of eq. (30): ``gamma*sigma**2*T/2 + (2/gamma)*ln(1+gamma/k)``.
    1.4908 / 1.3489 / 3.0217 for gamma = 0.1 / 0.01 / 1 (the paper prints 1.49 / 1.35 / 3.02)."""
    g = params.gamma
    return g * params.sigma**2 * params.T / 2.0 + (2.0 / g) * math.log1p(g / params.k)


class InventoryStrategy:
    """The paper's "inventory" strategy: eq. (30)'s total spread centred on eq. (29)'s
    reservation price ``r = s - q*gamma*sigma**2*(T - t)`` (uses :mod:`daemon.models.avellaneda`)."""

    name = "inventory"

    def __init__(self, params: ASParams) -> None:
        self.p = params

    def reset(self, n_paths: int) -> None:
        pass

    def deltas(self, step, t, s, q):
        p = self.p
        return as_formulas.deltas(s, q, p.gamma, p.sigma, p.T - t, p.k)


class SymmetricStrategy:
    """The paper's "symmetric" benchmark: a constant total spread centred on the mid.

    The paper uses "the average bid/ask spread of the inventory strategy over the time period". We
    take it **analytically** (:func:`analytic_average_spread`, the time average of eq. 30, which
    does not depend on q) unless ``spread`` is given. The discrete 200-step average differs by
    ``gamma*sigma**2*dt/2`` (0.001 at gamma = 0.1), far below the printed precision."""

    name = "symmetric"

    def __init__(self, params: ASParams, spread: float | None = None) -> None:
        self.p = params
        self.spread = analytic_average_spread(params) if spread is None else float(spread)
        if self.spread <= 0:
            raise ValueError("symmetric spread must be > 0")

    def reset(self, n_paths: int) -> None:
        self._h = np.full(n_paths, 0.5 * self.spread)

    def deltas(self, step, t, s, q):
        return self._h, self._h


class GLFTStrategy:
    """Gueant-Lehalle-Fernandez-Tapia (2013) infinite-horizon closed form (:mod:`daemon.models.glft`)
    with the simulator's ``gamma, sigma, k, A``."""

    name = "glft"

    def __init__(self, params: ASParams) -> None:
        self.p = params

    def reset(self, n_paths: int) -> None:
        pass

    def deltas(self, step, t, s, q):
        p = self.p
        return glft_formulas.deltas(q, p.gamma, p.sigma, p.k, p.A)


class RLSimStrategy:
    """The greedy action of a trained Q-learning policy (:class:`daemon.models.rl.QPolicy`): the
    simulator has one volatility and no order flow, so the (vol, ofi) bins are the neutral ones."""

    name = "rl"

    def __init__(self, policy: QPolicy, params: ASParams) -> None:
        self.policy = policy
        self.p = params
        self.u = action_scale(params.gamma, params.sigma, params.k, params.T)

    def reset(self, n_paths: int) -> None:
        pol = self.policy
        self._vb = np.full(n_paths, pol.neutral_vol_bin())
        self._ob = np.full(n_paths, pol.neutral_ofi_bin())

    def deltas(self, step, t, s, q):
        pol = self.policy
        tb = pol.time_bin(np.full(q.shape, (self.p.T - t) / self.p.T))
        a = pol.greedy(tb, pol.q_bin(q), self._vb, self._ob)
        return pol.deltas_for(a, self.u, q)


@dataclass
class SimResult:
    """Outcome of a run: per-path ``pnl`` (cash + q_T*S_T) and ``final_q``, the average quoted
    total spread (over steps and paths), mean number of fills per path."""

    strategy: str
    pnl: np.ndarray
    final_q: np.ndarray
    avg_spread: float
    fills: float
    extra: dict = field(default_factory=dict)


def simulate(strategy: SimStrategy, params: ASParams, n_paths: int = 1000, seed: int | None = 0,
             randoms: SimRandoms | None = None) -> SimResult:
    """Run the experiment for all paths at once (numpy, O(n_steps) python iterations)."""
    if randoms is None:
        randoms = draw_randoms(params, n_paths, seed)
    n = randoms.n_paths
    s = np.full(n, params.s0, dtype=float)
    q = np.full(n, float(params.q0))
    cash = np.zeros(n)
    fills = np.zeros(n)
    spread_sum = 0.0
    step_move = params.sigma * math.sqrt(params.dt)
    strategy.reset(n)
    for i in range(params.n_steps):
        t = i * params.dt
        db, da = strategy.deltas(i, t, s, q)
        db = np.broadcast_to(np.asarray(db, dtype=float), (n,))
        da = np.broadcast_to(np.asarray(da, dtype=float), (n,))
        spread_sum += float(np.mean(db + da))
        hit_b = randoms.u_bid[i] < fill_probability(db, params)
        hit_a = randoms.u_ask[i] < fill_probability(da, params)
        cash += np.where(hit_a, s + da, 0.0) - np.where(hit_b, s - db, 0.0)
        q += hit_b.astype(float) - hit_a.astype(float)
        fills += hit_b + hit_a
        s = s + np.where(randoms.u_mid[i] < 0.5, step_move, -step_move)
    pnl = cash + q * s
    return SimResult(strategy.name, pnl, q, spread_sum / params.n_steps, float(fills.mean()))


def simulate_scalar(quote_fn, params: ASParams, randoms: SimRandoms, path: int) -> tuple[float, float]:
    """Slow reference: one path with plain floats. ``quote_fn(step, t, s, q) -> (delta_b, delta_a)``
    (floats). Returns ``(pnl, final_q)``. Used by tests to check :func:`simulate`."""
    s = float(params.s0)
    q = float(params.q0)
    cash = 0.0
    step_move = params.sigma * math.sqrt(params.dt)
    for i in range(params.n_steps):
        t = i * params.dt
        db, da = quote_fn(i, t, s, q)
        pb = min(1.0, params.A * math.exp(-params.k * db) * params.dt)
        pa = min(1.0, params.A * math.exp(-params.k * da) * params.dt)
        if randoms.u_bid[i, path] < pb:
            q += 1.0
            cash -= s - db
        if randoms.u_ask[i, path] < pa:
            q -= 1.0
            cash += s + da
        s += step_move if randoms.u_mid[i, path] < 0.5 else -step_move
    return cash + q * s, q


def cara_certainty_equivalent(pnl: np.ndarray, gamma: float) -> float:
    """``-1/gamma * ln E[exp(-gamma * pnl)]`` computed with a log-sum-exp (no overflow)."""
    x = -gamma * np.asarray(pnl, dtype=float)
    m = float(np.max(x))
    lme = m + math.log(float(np.mean(np.exp(x - m))))
    return -lme / gamma


def summarize(result: SimResult, gamma: float) -> dict:
    """The table row: exactly the keys ``strategy, avg_spread, profit_mean, profit_std,
    final_q_mean, final_q_std, mean_variance, cara_ce`` (std with ddof=1)."""
    pnl = result.pnl
    mean = float(np.mean(pnl))
    var = float(np.var(pnl, ddof=1)) if pnl.size > 1 else 0.0
    return {
        "strategy": result.strategy,
        "avg_spread": float(result.avg_spread),
        "profit_mean": mean,
        "profit_std": math.sqrt(var),
        "final_q_mean": float(np.mean(result.final_q)),
        "final_q_std": float(np.std(result.final_q, ddof=1)) if pnl.size > 1 else 0.0,
        "mean_variance": mean - 0.5 * gamma * var,
        "cara_ce": cara_certainty_equivalent(pnl, gamma),
    }


STRATEGIES = ("inventory", "symmetric", "glft", "rl")


def make_strategy(name: str, params: ASParams, policy_path: str | None = None, policy=None) -> SimStrategy:
    """Build a simulator strategy by name (``inventory``, ``symmetric``, ``glft``, ``rl``).
    ``rl`` needs a policy file (``policy_path``) or a loaded :class:`daemon.models.rl.QPolicy`."""
    if name == "inventory":
        return InventoryStrategy(params)
    if name == "symmetric":
        return SymmetricStrategy(params)
    if name == "glft":
        return GLFTStrategy(params)
    if name == "rl":
        if policy is None:
            if policy_path is None:
                raise ValueError("strategy 'rl' needs --policy FILE (from mmd train-rl)")
            policy = QPolicy.load(policy_path)
        return RLSimStrategy(policy, params)
    raise ValueError(f"unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}")
